//! A Litestream user's habits through the real binary: Litestream's
//! one-dash command lines and a config file on every command, databases
//! that do not exist yet when the replicator starts, and URL typos named.

use std::path::Path;
use std::time::Duration;

mod common;
use common::{create_source, replica, rows, write_round, Running};

/// A Litestream 0.3 config replicating `dbs` (each to `dir/replica-<name>`).
fn config(dir: &Path, dbs: &[&Path]) -> std::path::PathBuf {
    let mut text = String::from("dbs:\n");
    for db in dbs {
        let name = db.file_stem().unwrap().to_str().unwrap();
        text.push_str(&format!(
            "  - path: {}\n    monitor-interval: 50ms\n    replicas:\n      - url: file://{}/replica-{name}\n        sync-interval: 50ms\n",
            db.display(),
            dir.display()
        ));
    }
    let path = dir.join("litestream.yml");
    std::fs::write(&path, text).unwrap();
    path
}

/// `replica restore -o OUT URL` succeeds with the rows of `source`.
fn restores_to(out: &Path, url: &str, source: &Path) {
    let restored = replica()
        .args(["restore", "-o"])
        .arg(out)
        .arg(url)
        .output()
        .unwrap();
    assert!(restored.status.success(), "{}", stderr(&restored));
    assert_eq!(rows(out), rows(source));
}

/// Writes rounds to `conn`, one every `pace_ms`, until the log of
/// `running` holds `needle` (at most 30 s).
fn write_until(running: &Running, conn: &mut rusqlite::Connection, needle: &str, pace_ms: u64) {
    let started = std::time::Instant::now();
    let mut round = 1;
    while !running.text().contains(needle) {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "no {needle:?} in the log within 30 s: {}",
            running.text()
        );
        write_round(conn, round);
        round += 1;
        std::thread::sleep(Duration::from_millis(pace_ms));
    }
}

fn stderr(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// A container entrypoint of Litestream users, unchanged but for the
/// program name: `restore -if-db-not-exists -if-replica-exists -config`
/// (nothing to restore on the first boot), `replicate -config`, then after
/// losing the disk the same restore brings the database back to its path.
#[test]
fn a_litestream_entrypoint_runs_unchanged() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("app.db");
    let cfg = config(dir.path(), &[&db]);
    let cfg = cfg.to_str().unwrap();
    let restore = |db: &Path| {
        replica()
            .args([
                "restore",
                "-if-db-not-exists",
                "-if-replica-exists",
                "-config",
                cfg,
            ])
            .arg(db)
            .env("LITESTREAM_CONFIG", "/nonexistent")
            .output()
            .unwrap()
    };
    // First boot: no replica yet, nothing restored, exit 0.
    let first = restore(&db);
    assert!(first.status.success(), "{}", stderr(&first));
    assert!(!db.exists(), "nothing restored from an empty replica");

    let mut conn = create_source(&db);
    let running = Running::start(dir.path(), &["-config", cfg]);
    for round in 0..20 {
        write_round(&mut conn, round);
    }
    drop(conn);
    std::thread::sleep(Duration::from_millis(500));
    running.stop();
    let source = rows(&db);

    // The database is there: -if-db-not-exists leaves it alone.
    let again = restore(&db);
    assert!(again.status.success(), "{}", stderr(&again));
    assert_eq!(rows(&db), source);

    // The disk is lost: the same command line restores to the db's path.
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", db.display()));
    }
    let restored = restore(&db);
    assert!(restored.status.success(), "{}", stderr(&restored));
    assert_eq!(rows(&db), source);

    // Listings take the config and the database path too.
    let listed = replica()
        .args(["generations", "-config", cfg])
        .arg(&db)
        .output()
        .unwrap();
    assert!(listed.status.success(), "{}", stderr(&listed));
    assert!(
        String::from_utf8_lossy(&listed.stdout).contains("latest"),
        "{}",
        String::from_utf8_lossy(&listed.stdout)
    );
    // -o still picks another output.
    let out = dir.path().join("elsewhere.db");
    let other = replica()
        .args(["restore", "-config", cfg, "-o"])
        .arg(&out)
        .arg(&db)
        .output()
        .unwrap();
    assert!(other.status.success(), "{}", stderr(&other));
    assert_eq!(rows(&out), source);
}

/// A config naming a database that does not exist yet: the replicator
/// logs that it waits, replicates the other one meanwhile, and starts the
/// missing one when it appears; both restore to their rows.
#[test]
fn a_missing_database_is_waited_for_and_never_stops_the_others() {
    let dir = tempfile::tempdir().unwrap();
    let present = dir.path().join("present.db");
    let later = dir.path().join("later.db");
    let cfg = config(dir.path(), &[&present, &later]);
    let mut conn = create_source(&present);
    let running = Running::start(dir.path(), &["--config", cfg.to_str().unwrap()]);
    running.wait_for("does not exist yet");
    for round in 0..5 {
        write_round(&mut conn, round);
    }
    std::thread::sleep(Duration::from_millis(300));
    let mut late = create_source(&later);
    for round in 0..7 {
        write_round(&mut late, round);
    }
    // Started within a few polls of appearing.
    let started = std::time::Instant::now();
    while running.text().matches("\"replicating\"").count() < 2 {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "the second database never started: {}",
            running.text()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    drop((conn, late));
    std::thread::sleep(Duration::from_millis(500));
    let log = running.stop();
    assert_eq!(
        log.matches("does not exist yet").count(),
        1,
        "the wait is logged once: {log}"
    );
    for (db, name) in [(&present, "present"), (&later, "later")] {
        let out = dir.path().join(format!("{name}-restored.db"));
        let url = dir.path().join(format!("replica-{name}"));
        restores_to(&out, url.to_str().unwrap(), db);
    }
}

/// The same with the database and URL on the command line.
#[test]
fn replicate_db_url_waits_for_the_database_to_be_created() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("app.db");
    let url = format!("file://{}/replica", dir.path().display());
    let log = dir.path().join("log");
    let child = std::process::Command::new(assert_cmd::cargo::cargo_bin("replica"))
        .arg("replicate")
        .arg(&db)
        .arg(&url)
        .args(["--monitor-interval", "50ms", "--sync-interval", "50ms"])
        .args(["--log-format", "json"])
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let running = Running { child, log };
    running.wait_for("does not exist yet");
    let mut conn = create_source(&db);
    write_round(&mut conn, 1);
    running.wait_for("replicating");
    drop(conn);
    std::thread::sleep(Duration::from_millis(500));
    let log = running.stop();
    // One numbering: logs and listings print indexes and offsets as 16 hex
    // digits, and `cat` takes them (or any shorter hex spelling).
    let shipped = log
        .lines()
        .find(|l| l.contains("\"wal shipped\""))
        .expect("a wal shipped event");
    let event: serde_json::Value = serde_json::from_str(shipped).unwrap();
    let (index, offset) = (
        event["index"].as_str().unwrap(),
        event["offset"].as_str().unwrap(),
    );
    assert_eq!((index.len(), offset.len()), (16, 16), "{shipped}");
    let listed = replica().arg("wal").arg(&url).output().unwrap();
    let table = String::from_utf8_lossy(&listed.stdout).into_owned();
    let generation = event["generation"].as_str().unwrap();
    assert!(table.contains(&format!("{index} {offset}")), "{table}");
    let hex = |s: &str| u64::from_str_radix(s, 16).unwrap();
    let short = format!("0x{:x}:{:x}", hex(index), hex(offset));
    for spelling in [format!("{index}:{offset}"), short] {
        let cat = replica()
            .arg("cat")
            .arg(&url)
            .arg(format!("{generation}/{spelling}"))
            .output()
            .unwrap();
        assert!(cat.status.success(), "{spelling}: {}", stderr(&cat));
    }
    let out = dir.path().join("restored.db");
    restores_to(&out, &url, &db);
    // An index past the end restores to the end, as Litestream, and says so.
    let past = dir.path().join("past.db");
    let restored = replica()
        .args(["restore", "-index", "0x7fff", "-o"])
        .arg(&past)
        .arg(&url)
        .output()
        .unwrap();
    assert!(restored.status.success(), "{}", stderr(&restored));
    assert!(
        stderr(&restored).contains("index 0000000000007fff is past the end"),
        "{}",
        stderr(&restored)
    );
    assert_eq!(rows(&past), rows(&db));
}

/// A bad replica URL is invalid configuration: fatal at start, named.
#[test]
fn a_typo_in_a_replica_url_is_fatal_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("app.db");
    drop(create_source(&db));
    let out = replica()
        .arg("replicate")
        .arg(&db)
        .arg(format!(
            "file://{}/r?layot=litestream-0.3",
            dir.path().display()
        ))
        .timeout(Duration::from_secs(20))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("unknown option \"layot\""),
        "{}",
        stderr(&out)
    );
    // Read commands name it too.
    let listed = replica()
        .arg("generations")
        .arg(format!(
            "file://{}/r?layot=litestream-0.3",
            dir.path().display()
        ))
        .output()
        .unwrap();
    assert_eq!(listed.status.code(), Some(2));
    assert!(
        stderr(&listed).contains("unknown option \"layot\""),
        "{}",
        stderr(&listed)
    );
}

/// A database file where a replica URL belongs: said so, with the fix.
#[test]
fn a_database_path_without_a_config_asks_for_one() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("app.db");
    drop(create_source(&db));
    let out = replica()
        .arg("generations")
        .arg(&db)
        .env("LITESTREAM_CONFIG", dir.path().join("none.yml"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let text = stderr(&out);
    assert!(text.contains("is a file, not a replica location"), "{text}");
    assert!(text.contains("--config FILE"), "{text}");
    // With LITESTREAM_CONFIG naming it, the path resolves.
    let cfg = config(dir.path(), &[&db]);
    let resolved = replica()
        .arg("generations")
        .arg(&db)
        .env("LITESTREAM_CONFIG", &cfg)
        .output()
        .unwrap();
    // The replica is empty: listed as such, not an error about a file.
    assert!(
        !stderr(&resolved).contains("is a file"),
        "{}",
        stderr(&resolved)
    );
}

/// As Litestream, a restore creates the output's missing directories; a
/// failed one removes those it created (nothing left behind).
#[test]
fn restore_creates_the_output_directory_and_a_failed_one_removes_it() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("app.db");
    let url = format!("file://{}/replica", dir.path().display());
    let mut conn = create_source(&db);
    write_round(&mut conn, 1);
    drop(conn);
    let snap = replica()
        .arg("snapshot")
        .arg(&db)
        .arg(&url)
        .output()
        .unwrap();
    assert!(snap.status.success(), "{}", stderr(&snap));
    let out = dir.path().join("new/sub/app.db");
    restores_to(&out, &url, &db);

    // A replica whose snapshot is no database: refused after the directory
    // was made, and the directory goes again.
    let bad = dir.path().join("bad");
    let put = bad.join("generations/00000000000000a1/snapshots/00000000.snapshot.lz4");
    std::fs::create_dir_all(put.parent().unwrap()).unwrap();
    std::fs::write(&put, replica::lz4::compress(&[7u8; 8192])).unwrap();
    let target = dir.path().join("fresh/deeper/app.db");
    let failed = replica()
        .args(["restore", "-o"])
        .arg(&target)
        .arg(&bad)
        .output()
        .unwrap();
    assert_eq!(failed.status.code(), Some(2), "{}", stderr(&failed));
    assert!(
        stderr(&failed).contains("not a SQLite database"),
        "{}",
        stderr(&failed)
    );
    assert!(
        !dir.path().join("fresh").exists(),
        "the directories it made are gone"
    );
}

/// A rollback-journal database is switched to WAL, and the log says so.
#[test]
fn a_rollback_journal_database_is_switched_to_wal_with_a_warning() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("app.db");
    common::sqlite3(
        &db,
        "PRAGMA journal_mode=delete; CREATE TABLE t (x); INSERT INTO t VALUES (1);",
    );
    let url = format!("file://{}/replica", dir.path().display());
    let running = Running::start(dir.path(), &[db.to_str().unwrap(), &url]);
    let log = running.stop();
    assert_eq!(log.matches("switched it to WAL").count(), 1, "{log}");
    assert!(log.contains("\"was\":\"delete\""), "{log}");
    assert_eq!(common::sqlite3(&db, "PRAGMA journal_mode").trim(), "wal");
}

/// `replica cat ... | head`: a reader that stops early is no error.
#[test]
fn cat_into_a_closed_pipe_exits_quietly() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("app.db");
    let mut conn = create_source(&db);
    for round in 0..40 {
        write_round(&mut conn, round);
    }
    drop(conn);
    let root = dir.path().join("replica");
    let snap = replica()
        .arg("snapshot")
        .arg(&db)
        .arg(&root)
        .output()
        .unwrap();
    assert!(snap.status.success(), "{}", stderr(&snap));
    let listed = replica()
        .args(["generations", "--json"])
        .arg(&root)
        .output()
        .unwrap();
    let rows: serde_json::Value = serde_json::from_slice(&listed.stdout).unwrap();
    let generation = rows[0]["generation"].as_str().unwrap().to_owned();
    let size = |p: &Path| std::fs::metadata(p).map_or(0, |m| m.len());
    let bytes = size(&db) + size(&dir.path().join("app.db-wal"));
    assert!(bytes > 1 << 18, "more than a pipe holds: {bytes}");
    let mut child = std::process::Command::new(assert_cmd::cargo::cargo_bin("replica"))
        .arg("cat")
        .arg(&root)
        .arg(format!("{generation}/0"))
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Read a little, then close the pipe, as `head` does.
    let mut stdout = child.stdout.take().unwrap();
    let mut first = [0u8; 100];
    std::io::Read::read_exact(&mut stdout, &mut first).unwrap();
    assert_eq!(&first[..16], b"SQLite format 3\0");
    drop(stdout);
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "exit {:?}: {}",
        out.status,
        stderr(&out)
    );
    assert_eq!(stderr(&out), "", "nothing on stderr");
}

/// A bucket that does not exist: one line naming it, no raw S3 XML.
#[test]
fn a_missing_bucket_is_named_without_raw_xml() {
    let Some((_, endpoint)) = common::s3_settings() else {
        return;
    };
    let out = replica()
        .args([
            "generations",
            "s3://replica-no-such-bucket/x?allow_http=true",
        ])
        .env("AWS_ENDPOINT", &endpoint)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let text = stderr(&out);
    assert!(text.contains("NoSuchBucket"), "{text}");
    assert!(text.contains("the bucket does not exist"), "{text}");
    assert!(
        !text.contains("<?xml") && !text.contains("<Error>"),
        "{text}"
    );
    assert_eq!(text.lines().count(), 1, "{text}");
}

/// `replica copy` keeps each object's time (a file's mtime, an object's
/// `litestream-timestamp` metadata read back for point-in-time restores),
/// so a replica copied file → S3 → file restores by timestamp exactly as
/// its source: the state between two bursts of writes.
#[test]
fn copy_keeps_object_times_so_a_copy_restores_by_timestamp_as_its_source() {
    let Some((bucket, _)) = common::s3_settings() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("app.db");
    let src = format!("file://{}/src", dir.path().display());
    let mut conn = create_source(&db);
    let running = Running::start(
        dir.path(),
        &[
            db.to_str().unwrap(),
            &src,
            "--monitor-interval",
            "50ms",
            "--sync-interval",
            "50ms",
        ],
    );
    for round in 0..5 {
        write_round(&mut conn, round);
    }
    std::thread::sleep(Duration::from_millis(1500));
    let between = chrono::Utc::now();
    let first_burst = rows(&db);
    std::thread::sleep(Duration::from_millis(1500));
    for round in 5..10 {
        write_round(&mut conn, round);
    }
    std::thread::sleep(Duration::from_millis(800));
    drop(conn);
    running.stop();
    let s3 = format!("s3://{bucket}/copy-times-{:08x}", rand::random::<u32>());
    let back = format!("file://{}/back", dir.path().display());
    for (from, to) in [(&src, &s3), (&s3, &back)] {
        let copied = replica().args(["copy", from, to]).output().unwrap();
        assert!(
            copied.status.success(),
            "{from} -> {to}: {}",
            stderr(&copied)
        );
    }
    let at = between.to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    for (name, url) in [("source", &src), ("s3", &s3), ("back", &back)] {
        let out = dir.path().join(format!("{name}.db"));
        let restored = replica()
            .args(["restore", "-timestamp", &at, "-o"])
            .arg(&out)
            .arg(url)
            .output()
            .unwrap();
        assert!(restored.status.success(), "{name}: {}", stderr(&restored));
        assert_eq!(rows(&out), first_burst, "{name}: the state at {at}");
    }
    // The file copy's mtimes are the source's.
    let times = |root: &str| -> Vec<(String, std::time::SystemTime)> {
        let root = Path::new(root.strip_prefix("file://").unwrap());
        let mut all = Vec::new();
        let mut stack = vec![root.to_owned()];
        while let Some(d) = stack.pop() {
            for e in std::fs::read_dir(&d).unwrap().flatten() {
                let m = e.metadata().unwrap();
                if m.is_dir() {
                    stack.push(e.path());
                } else {
                    let rel = e.path().strip_prefix(root).unwrap().display().to_string();
                    all.push((rel, m.modified().unwrap()));
                }
            }
        }
        all.sort();
        all
    };
    let (a, b) = (times(&src), times(&back));
    assert_eq!(a.len(), b.len());
    for ((ka, ta), (kb, tb)) in a.iter().zip(&b) {
        assert_eq!(ka, kb);
        let gap = ta.duration_since(*tb).unwrap_or_else(|e| e.duration());
        assert!(gap < Duration::from_millis(2), "{ka}: {ta:?} vs {tb:?}");
    }
}

/// Listing a location that holds nothing: an empty listing (exit 0, valid
/// JSON), and stderr says nothing is there, with the typo hint.
#[test]
fn listing_an_empty_location_says_so_on_stderr() {
    let dir = tempfile::tempdir().unwrap();
    let typo = dir.path().join("replcia");
    for command in ["generations", "snapshots", "wal", "ltx"] {
        let out = replica()
            .args([command, "--json"])
            .arg(&typo)
            .output()
            .unwrap();
        assert!(out.status.success(), "{command}: {}", stderr(&out));
        let rows: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(rows, serde_json::json!([]), "{command}");
        let text = stderr(&out);
        assert!(text.contains("no replica found at"), "{command}: {text}");
        assert!(text.contains("a typo in the path"), "{command}: {text}");
    }
}

/// The real Litestream replicating the same database at the same time: we
/// say so at start (its directory beside the database is fresh), and again
/// when our checkpoints keep failing to restart the WAL (its read
/// transaction holds the WAL), instead of letting the WAL grow unnoticed.
#[test]
fn litestream_on_the_same_database_is_noticed() {
    let Some(litestream) = common::litestream() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("app.db");
    let mut conn = create_source(&db);
    write_round(&mut conn, 0);
    let theirs_cfg = dir.path().join("theirs.yml");
    std::fs::write(
        &theirs_cfg,
        format!(
            "dbs:\n  - path: {}\n    replicas:\n      - path: {}/theirs\n",
            db.display(),
            dir.path().display()
        ),
    )
    .unwrap();
    let mut theirs = std::process::Command::new(&litestream)
        .args(["replicate", "-config"])
        .arg(&theirs_cfg)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let lite_dir = dir.path().join(".app.db-litestream");
    let started = std::time::Instant::now();
    while !lite_dir.exists() {
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "litestream never started"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(Duration::from_millis(300));
    let url = format!("file://{}/ours", dir.path().display());
    let running = Running::start(
        dir.path(),
        &[
            db.to_str().unwrap(),
            &url,
            "--monitor-interval",
            "20ms",
            "--sync-interval",
            "20ms",
            "--checkpoint-interval",
            "50ms",
            "--min-checkpoint-page-count",
            "1",
        ],
    );
    write_until(&running, &mut conn, "have not restarted the WAL", 20);
    // SAFETY: signalling the litestream child this test started, by its PID.
    unsafe {
        libc::kill(theirs.id() as libc::pid_t, libc::SIGTERM);
    }
    let _ = theirs.wait();
    let log = running.stop();
    assert!(
        log.contains("Litestream replicates this database too"),
        "{log}"
    );
    assert!(
        log.contains("have not restarted the WAL 10 times in a row"),
        "{log}"
    );
}

/// Retention says what it kept, why, and what it deleted, once per pass.
#[test]
fn retention_logs_what_it_kept_and_why() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("app.db");
    let cfg = dir.path().join("litestream.yml");
    std::fs::write(
        &cfg,
        format!(
            "dbs:\n  - path: {}\n    monitor-interval: 50ms\n    replicas:\n      - url: file://{}/replica\n        sync-interval: 50ms\n        snapshot-interval: 500ms\n        retention: 1s\n        retention-check-interval: 500ms\n",
            db.display(),
            dir.path().display()
        ),
    )
    .unwrap();
    let mut conn = create_source(&db);
    let running = Running::start(dir.path(), &["-config", cfg.to_str().unwrap()]);
    // Snapshots older than the 1 s window are kept by the restore grace
    // (an hour): the log says so.
    write_until(&running, &mut conn, "the restore grace", 50);
    drop(conn);
    let log = running.stop();
    let passes: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("\"message\":\"retention\""))
        .collect();
    assert!(!passes.is_empty(), "{log}");
    for pass in &passes {
        for field in [
            "kept_from",
            "kept_by",
            "deleted_snapshots",
            "deleted_segments",
            "window",
            "grace",
        ] {
            assert!(
                pass.contains(&format!("\"{field}\"")),
                "{field} missing: {pass}"
            );
        }
    }
    assert!(
        passes.iter().any(|p| p.contains("\"deleted_snapshots\":0")),
        "{log}"
    );
}

/// `replicate -exec CMD -config FILE` (Litestream's entrypoint): the command
/// starts once replication runs, its writes are replicated, and when it
/// exits a final sync runs and the replicator exits with its status.
#[test]
fn exec_runs_the_application_and_exits_with_its_status() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("app.db");
    drop(create_source(&db));
    let cfg = config(dir.path(), &[&db]);
    let app = format!(
        "sh -c 'for i in 1 2 3 4 5; do sqlite3 {} \"INSERT INTO orders (customer, item, qty, price) VALUES (\\\"c$i\\\", \\\"i\\\", $i, 1.5)\"; done; exit 3'",
        db.display()
    );
    let out = replica()
        .args(["replicate", "-exec", &app, "-config", cfg.to_str().unwrap()])
        .timeout(Duration::from_secs(60))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    assert!(stderr(&out).contains("exec: started"), "{}", stderr(&out));
    // Everything the command wrote is in the replica (the final sync).
    let restored = dir.path().join("restored.db");
    let url = dir.path().join("replica-app");
    restores_to(&restored, url.to_str().unwrap(), &db);
    assert_eq!(rows(&restored).lines().count(), 5);
}

/// SIGTERM to the replicator goes to the `exec` command; its status is ours.
#[test]
fn exec_passes_sigterm_on_to_the_command() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("app.db");
    drop(create_source(&db));
    let cfg = dir.path().join("litestream.yml");
    std::fs::write(
        &cfg,
        format!(
            "exec: sh -c 'trap \"exit 7\" TERM; while true; do sleep 0.05; done'\ndbs:\n  - path: {}\n    replicas:\n      - url: file://{}/replica\n",
            db.display(),
            dir.path().display()
        ),
    )
    .unwrap();
    let running = Running::start(dir.path(), &["-config", cfg.to_str().unwrap()]);
    running.wait_for("exec: started");
    std::thread::sleep(Duration::from_millis(300));
    running.signal(libc::SIGTERM);
    let mut running = running;
    let status = running.child.wait().unwrap();
    let log = running.text();
    assert_eq!(status.code(), Some(7), "{log}");
    assert!(log.contains("passing the signal on"), "{log}");
}

/// Credentials named in a config file never reach the messages of a read
/// command that resolved the database's replica through it.
#[test]
fn credentials_from_a_config_are_never_printed() {
    let Some((bucket, endpoint)) = common::s3_settings() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("app.db");
    let cfg = dir.path().join("litestream.yml");
    std::fs::write(
        &cfg,
        format!(
            "access-key-id: test\nsecret-access-key: SUPERSECRET123\ndbs:\n  - path: {}\n    replicas:\n      - type: s3\n        bucket: {bucket}\n        path: empty-{:08x}\n        endpoint: {endpoint}\n        region: us-east-1\n        force-path-style: true\n",
            db.display(),
            rand::random::<u32>()
        ),
    )
    .unwrap();
    for command in ["generations", "verify", "ltx"] {
        let out = replica()
            .args([command, "-config", cfg.to_str().unwrap()])
            .arg(&db)
            .output()
            .unwrap();
        let text = format!("{}{}", stderr(&out), String::from_utf8_lossy(&out.stdout));
        assert!(text.contains("no replica found"), "{command}: {text}");
        assert!(
            !text.contains("SUPERSECRET123"),
            "{command} printed the secret: {text}"
        );
    }
}
