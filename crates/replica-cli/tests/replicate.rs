//! `replica replicate` as a user runs it: a live database under a writer,
//! replicated into file and S3 replicas, restored by the real `litestream
//! restore` 0.3.13 and by `replica restore` to the source rows; SIGKILLed at
//! random moments and restarted, never losing what it reported shipped.
//!
//! Needs `litestream` and `sqlite3` (see `tests/common`); the S3 test needs
//! the moto server of `.ci/run`.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command as Process, Stdio};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use common::*;

/// The latest `through` time of a "wal shipped" event: every transaction
/// committed before it is in the replica.
fn shipped_through(log: &str) -> Option<DateTime<Utc>> {
    common::shipped_through(log, "wal shipped")
}

fn replica_restore(url: &str, out: &Path) {
    run_ok(replica().args([
        "restore",
        url,
        "-o",
        out.to_str().unwrap(),
        "--integrity-check",
    ]));
}

fn replicate_under_load(dir: &Path, urls: &[&str]) -> (String, String) {
    let db = dir.join("source.db");
    let mut conn = create_source(&db);
    let mut args = vec![db.to_str().unwrap()];
    args.extend_from_slice(urls);
    args.extend_from_slice(QUICK);
    let running = Running::start(dir, &args);
    for round in 0..36 {
        write_round(&mut conn, round);
        std::thread::sleep(Duration::from_millis(30));
    }
    let log = running.stop();
    assert!(log.contains("wal shipped"), "{log}");
    assert!(
        log.contains("the WAL restarted, new index"),
        "no checkpoint: {log}"
    );
    assert!(log.contains("stopped after a final sync"), "{log}");
    drop(conn);
    (rows(&db), log)
}

#[test]
fn a_live_database_replicated_to_files_is_restored_by_litestream_and_replica() {
    let Some(litestream) = litestream() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let flat = format!("file://{}", dir.path().join("flat").display());
    let nested = format!(
        "file://{}?layout=litestream-0.4",
        dir.path().join("nested").display()
    );
    let (expected, _) = replicate_under_load(dir.path(), &[&flat, &nested]);
    // The 0.3 layout by default: the real Litestream restores it.
    assert_litestream_restores(&litestream, dir.path(), &flat, &expected);
    for (name, url) in [("flat", &flat), ("nested", &nested)] {
        let out = dir.path().join(format!("{name}.db"));
        replica_restore(url, &out);
        assert!(rows(&out) == expected, "{name}: restored rows differ");
    }
    let listed = run_ok(replica().args(["generations", &flat]));
    assert!(listed.contains("layout: litestream-0.3"), "{listed}");
    run_ok(replica().args(["verify", &flat]));
}

#[test]
fn a_live_database_replicated_to_s3_is_restored_by_litestream_and_replica() {
    let Some(litestream) = litestream() else {
        return;
    };
    let Some((bucket, _endpoint)) = s3_settings() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let path = format!("replicate-{:08x}", rand::random::<u32>());
    let url = format!("s3://{bucket}/{path}");
    let local = format!("file://{}", dir.path().join("local").display());
    let (expected, _) = replicate_under_load(dir.path(), &[&url, &local]);
    assert_litestream_restores_s3(&litestream, dir.path(), &bucket, &path, &expected);
    let out = dir.path().join("from-s3.db");
    replica_restore(&url, &out);
    assert!(rows(&out) == expected, "restored rows differ");
}

/// The crash test's writer: transaction `n` inserts row `n`; `committed[n]`
/// is when its commit returned (after the commit, so never before it).
fn crash_writer(
    db: PathBuf,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    committed: std::sync::Arc<std::sync::Mutex<Vec<DateTime<Utc>>>>,
) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        let conn = rusqlite::Connection::open(&db).unwrap();
        conn.busy_timeout(Duration::from_secs(10)).unwrap();
        let mut n = 0i64;
        while !stop.load(std::sync::atomic::Ordering::SeqCst) {
            conn.execute(
                "INSERT INTO log (n, payload) VALUES (?1, ?2)",
                rusqlite::params![
                    n,
                    format!("transaction {n} {}", "x".repeat((n % 300) as usize))
                ],
            )
            .unwrap();
            committed.lock().unwrap().push(Utc::now());
            n += 1;
            std::thread::sleep(Duration::from_millis(2));
        }
    })
}

/// Rows restored from `url` into `out`: (count, whether they are 0..count).
fn restored_log(url: &str, out: &Path) -> i64 {
    replica_restore(url, out);
    let restored = rusqlite::Connection::open(out).unwrap();
    let (count, max): (i64, Option<i64>) = restored
        .query_row("SELECT COUNT(*), MAX(n) FROM log", [], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })
        .unwrap();
    assert_eq!(
        max.map_or(0, |m| m + 1),
        count,
        "the restored transactions have no holes"
    );
    count
}

#[test]
fn sigkill_at_random_moments_never_loses_what_was_reported_shipped() {
    let kills: usize = std::env::var("REPLICA_CRASH_KILLS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20);
    let litestream = litestream();
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("source.db");
    let conn = rusqlite::Connection::open(&db).unwrap();
    conn.pragma_update(None, "journal_mode", "wal").unwrap();
    conn.execute_batch("CREATE TABLE log (n INTEGER PRIMARY KEY, payload TEXT NOT NULL)")
        .unwrap();
    let url = format!("file://{}", dir.path().join("replica").display());
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let committed = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let writer = crash_writer(db.clone(), stop.clone(), committed.clone());
    let mut required_max = 0;
    let mut checked = 0;
    for kill in 0..kills {
        let mut args = vec![db.to_str().unwrap(), url.as_str()];
        args.extend_from_slice(QUICK);
        let running = Running::start(dir.path(), &args);
        // Anywhere from start-up to well into steady replication.
        std::thread::sleep(Duration::from_millis(rand::random::<u64>() % 1200));
        let log = running.kill();
        // After every kill: the replica restores, and it holds every
        // transaction committed before the last point this run reported.
        let out = dir.path().join(format!("after-kill-{kill}.db"));
        let count = restored_log(&url, &out);
        std::fs::remove_file(&out).unwrap();
        if let Some(through) = shipped_through(&log) {
            let required = committed
                .lock()
                .unwrap()
                .iter()
                .filter(|at| **at < through)
                .count() as i64;
            assert!(
                count >= required,
                "kill {kill}: {count} transactions restored, {required} were committed before {through}"
            );
            required_max = required_max.max(required);
            checked += 1;
        }
    }
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    writer.join().unwrap();
    assert!(
        checked * 2 >= kills,
        "only {checked} of {kills} runs reported a shipped point"
    );
    let out = dir.path().join("final.db");
    let count = restored_log(&url, &out);
    assert!(count >= required_max);
    // Every generation the kills left is sound by restore's own rules (no
    // missing index, every frame and commit as SQLite would trust it).
    run_ok(replica().args(["verify", &url]));
    // The real Litestream restores the same replica after all this.
    if let Some(litestream) = litestream {
        let theirs = dir.path().join("final-litestream.db");
        let status = Process::new(&litestream)
            .args(["restore", "-o"])
            .arg(&theirs)
            .arg(&url)
            .output()
            .unwrap();
        assert!(
            status.status.success(),
            "{}",
            String::from_utf8_lossy(&status.stderr)
        );
        assert_eq!(sqlite3(&theirs, "PRAGMA integrity_check"), "ok\n");
        assert_eq!(
            sqlite3(&theirs, "SELECT COUNT(*), MAX(n) FROM log"),
            sqlite3(&out, "SELECT COUNT(*), MAX(n) FROM log")
        );
    }
    eprintln!(
        "{kills} kills ({checked} with a shipped point): {} transactions committed, {count} in the final restore",
        committed.lock().unwrap().len()
    );
}

#[test]
fn an_s3_outage_of_ten_seconds_under_load_is_caught_up() {
    let Some(litestream) = litestream() else {
        return;
    };
    let Some((bucket, endpoint)) = s3_settings() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let path = format!("outage-{:08x}", rand::random::<u32>());
    let (db, _) = replicate_through_an_outage(
        dir.path(),
        &endpoint,
        |port| {
            format!(
                "s3://{bucket}/{path}?endpoint=http://127.0.0.1:{port}&allow_http=true&timeout=2s"
            )
        },
        "wal shipped",
        Duration::from_secs(30),
    );
    let expected = rows(&db);
    assert_litestream_restores_s3(&litestream, dir.path(), &bucket, &path, &expected);
    let out = dir.path().join("after-outage.db");
    replica_restore(&format!("s3://{bucket}/{path}"), &out);
    assert!(rows(&out) == expected, "restored rows differ");
}

#[test]
fn a_litestream_config_file_runs_unchanged_and_litestream_restores_with_it() {
    let Some(litestream) = litestream() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("source.db");
    let mut conn = create_source(&db);
    // The file an existing Litestream user has: intervals, checkpoints,
    // an environment variable for the replica's place.
    let config = dir.path().join("litestream.yml");
    std::fs::write(
        &config,
        format!(
            "dbs:\n  - path: {}\n    monitor-interval: 50ms\n    checkpoint-interval: 400ms\n    \
             min-checkpoint-page-count: 60\n    replicas:\n      - url: file://${{REPLICA_DIR}}/backup\n        \
             sync-interval: 50ms\n        snapshot-interval: 1s\n        retention: 24h\n",
            db.display()
        ),
    )
    .unwrap();
    let log = dir.path().join("config-run.log");
    let mut child = Process::new(assert_cmd::cargo::cargo_bin("replica"))
        .args(["replicate", "--config"])
        .arg(&config)
        .env("REPLICA_DIR", dir.path())
        .stderr(Stdio::from(std::fs::File::create(&log).unwrap()))
        .spawn()
        .unwrap();
    let started = Instant::now();
    while !std::fs::read_to_string(&log)
        .unwrap()
        .contains("replicating")
    {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "{}",
            std::fs::read_to_string(&log).unwrap()
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    for round in 0..24 {
        write_round(&mut conn, round);
        std::thread::sleep(Duration::from_millis(40));
    }
    // SAFETY: signalling the child this test started, by its PID.
    assert_eq!(
        unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGINT) },
        0
    );
    let status = child.wait().unwrap();
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(status.success(), "{text}");
    assert!(text.contains("SIGINT"), "{text}");
    drop(conn);
    let expected = rows(&db);
    // `litestream restore -config` with the very same file.
    let out = dir.path().join("restored.db");
    let restored = Process::new(&litestream)
        .args(["restore", "-config"])
        .arg(&config)
        .arg("-o")
        .arg(&out)
        .arg(&db)
        .env("REPLICA_DIR", dir.path())
        .output()
        .unwrap();
    assert!(
        restored.status.success(),
        "{}",
        String::from_utf8_lossy(&restored.stderr)
    );
    assert!(rows(&out) == expected, "restored rows differ");
}

#[test]
fn an_unknown_key_in_the_config_file_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("litestream.yml");
    std::fs::write(
        &config,
        "dbs:\n  - path: /tmp/x.db\n    replicas:\n      - url: file:///tmp/r\n        sync-intervl: 1s\n",
    )
    .unwrap();
    let out = replica()
        .args(["replicate", "--config", config.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("sync-intervl") && err.contains("dbs[0].replicas[0]"),
        "{err}"
    );
}

#[test]
fn a_one_off_snapshot_is_restored_by_litestream() {
    let Some(litestream) = litestream() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("source.db");
    let mut conn = create_source(&db);
    for round in 0..5 {
        write_round(&mut conn, round);
    }
    let url = format!("file://{}", dir.path().join("snap").display());
    let printed = run_ok(replica().args(["snapshot", db.to_str().unwrap(), &url]));
    assert!(
        printed.contains("index 0") && printed.contains("litestream-0.3"),
        "{printed}"
    );
    drop(conn);
    assert_litestream_restores(&litestream, dir.path(), &url, &rows(&db));
}

/// A database that does not exist is waited for, as Litestream does (a
/// container may start the replicator before the application), and never
/// created; SIGTERM while waiting exits 0.
#[test]
fn a_missing_database_is_waited_for_and_never_created() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("nope.db");
    let url = format!("file://{}", dir.path().join("r").display());
    let log = dir.path().join("log");
    let child = std::process::Command::new(assert_cmd::cargo::cargo_bin("replica"))
        .args([
            "replicate",
            db.to_str().unwrap(),
            &url,
            "--log-format",
            "json",
        ])
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let running = Running { child, log };
    running.wait_for("does not exist yet");
    std::thread::sleep(std::time::Duration::from_millis(1500));
    assert!(!db.exists(), "nothing is created");
    let text = running.stop();
    assert!(text.contains("nope.db"), "{text}");
    assert!(!db.exists(), "nothing is created");
}

#[test]
fn writes_by_short_lived_sqlite3_processes_are_all_replicated() {
    // Each `sqlite3` run opens, writes and closes: on close SQLite deletes
    // the WAL if it thinks it is the last connection. The replicator's
    // connections must keep it from thinking so, snapshots included.
    let Some(litestream) = litestream() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("app.db");
    sqlite3(
        &db,
        "PRAGMA journal_mode=wal; CREATE TABLE t (x INTEGER); INSERT INTO t VALUES (1), (2), (3);",
    );
    let url = format!("file://{}", dir.path().join("backup").display());
    let mut args = vec![db.to_str().unwrap(), url.as_str()];
    args.extend_from_slice(QUICK);
    let running = Running::start(dir.path(), &args);
    running.wait_for("snapshot written");
    for x in 4..=12 {
        sqlite3(&db, &format!("INSERT INTO t VALUES ({x});"));
        std::thread::sleep(Duration::from_millis(60));
    }
    let log = running.stop();
    assert!(!log.contains("sync failed"), "{log}");
    let expected = sqlite3(&db, "SELECT COUNT(*), SUM(x) FROM t");
    assert_eq!(expected, "12|78\n");
    let ours = dir.path().join("ours.db");
    replica_restore(&url, &ours);
    assert_eq!(sqlite3(&ours, "SELECT COUNT(*), SUM(x) FROM t"), expected);
    let theirs = dir.path().join("theirs.db");
    let out = Process::new(&litestream)
        .args(["restore", "-o"])
        .arg(&theirs)
        .arg(&url)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(sqlite3(&theirs, "SELECT COUNT(*), SUM(x) FROM t"), expected);
}
