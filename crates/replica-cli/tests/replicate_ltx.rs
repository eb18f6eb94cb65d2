//! `replica replicate` into the LTX layout (Litestream 0.5): a live database
//! under a writer (a long-lived connection, with short-lived `sqlite3`
//! processes between), replicated into file and moto S3 replicas, restored
//! by the real `litestream restore` 0.5.17 and by `replica restore` to the
//! source rows, at the newest TXID and at a mid-run TXID; restarts continue
//! the replica; SIGKILLs lose nothing reported shipped.
//!
//! Needs litestream 0.5.17 and `sqlite3` (see `tests/common`); the S3 test
//! needs the moto server of `.ci/run`.

mod common;

use std::path::Path;
use std::process::Command as Process;
use std::time::Duration;

use common::*;

/// Files of an LTX replica as (level, min TXID, max TXID), from `replica ltx --json`.
fn files(url: &str) -> Vec<(u64, String, String)> {
    json(&run_ok(
        replica().args(["ltx", url, "--level", "all", "--json"]),
    ))
    .into_iter()
    .map(|v| {
        (
            v["level"].as_u64().unwrap(),
            v["min_txid"].as_str().unwrap().to_owned(),
            v["max_txid"].as_str().unwrap().to_owned(),
        )
    })
    .collect()
}

/// Replicates a database under load into `url`; returns every state the
/// source passed through (after each transaction) and the log.
fn replicate_under_load(dir: &Path, url: &str, rounds: u64) -> (Vec<String>, String) {
    let db = dir.join("source.db");
    let mut conn = create_source(&db);
    let args = [db.to_str().unwrap(), url];
    let mut all = args.to_vec();
    all.extend_from_slice(QUICK);
    let running = Running::start(dir, &all);
    let mut states = Vec::new();
    for round in 0..rounds {
        write_round(&mut conn, round);
        states.push(rows(&db));
        if round % 5 == 2 {
            // A short-lived process: its connection closes after one write.
            sqlite3(
                &db,
                &format!(
                    "PRAGMA busy_timeout = 5000; INSERT INTO orders (customer, item, qty, \
                     price) VALUES ('sqlite3 process {round}', 'cli', 1, 1.5);"
                ),
            );
            states.push(rows(&db));
        }
        std::thread::sleep(Duration::from_millis(30));
    }
    let log = running.stop();
    assert!(log.contains("ltx shipped"), "{log}");
    assert!(
        log.contains("the WAL restarted, new index"),
        "no checkpoint: {log}"
    );
    (states, log)
}

/// Both tools restore `theirs_url` / `ours_url` at the newest TXID to the
/// source's last state, and at a mid-run TXID to one same earlier state.
fn assert_both_restore(
    bin: &Path,
    dir: &Path,
    ours_url: &str,
    theirs_url: &str,
    states: &[String],
) {
    let listed = files(ours_url);
    assert!(listed.iter().any(|f| f.0 == 0), "no L0 files: {listed:?}");
    assert!(
        listed.iter().any(|f| f.0 == 9),
        "no L9 snapshot: {listed:?}"
    );
    let (a, b) = (dir.join("ours-latest.db"), dir.join("theirs-latest.db"));
    ours(ours_url, &a, &[]);
    theirs(bin, theirs_url, &b, &[]);
    let last = states.last().unwrap();
    assert!(rows(&a) == *last, "our restore differs from the source");
    assert!(
        rows(&b) == *last,
        "litestream's restore differs from the source"
    );
    let l0: Vec<&String> = listed.iter().filter(|f| f.0 == 0).map(|f| &f.2).collect();
    let mid = l0[l0.len() / 2].clone();
    let (a, b) = (dir.join("ours-mid.db"), dir.join("theirs-mid.db"));
    ours(ours_url, &a, &["--txid", &mid]);
    theirs(bin, theirs_url, &b, &["-txid", &mid]);
    assert!(rows(&a) == rows(&b), "TXID {mid}: the tools disagree");
    assert!(
        states.contains(&rows(&a)),
        "TXID {mid}: not a state the source passed through"
    );
    assert!(rows(&a) != *last, "TXID {mid} is not mid-run");
    run_ok(replica().args(["verify", ours_url]));
}

#[test]
fn a_file_replica_in_ltx_is_restored_by_litestream_05_at_the_newest_and_a_mid_run_txid() {
    let Some(bin) = litestream05() else { return };
    let dir = tempfile::tempdir().unwrap();
    let url = format!(
        "file://{}?layout=litestream-0.5",
        dir.path().join("r").display()
    );
    let (states, _) = replicate_under_load(dir.path(), &url, 36);
    let plain = format!("file://{}", dir.path().join("r").display());
    assert_both_restore(&bin, dir.path(), &plain, &plain, &states);
}

#[test]
fn an_s3_replica_in_ltx_is_restored_by_litestream_05() {
    let Some(bin) = litestream05() else { return };
    let Some((bucket, endpoint)) = s3_settings() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let prefix = format!("ltx-replicate-{:08x}", rand::random::<u32>());
    let url = format!("s3://{bucket}/{prefix}?layout=litestream-0.5");
    let (states, _) = replicate_under_load(dir.path(), &url, 24);
    let ours_url = format!("s3://{bucket}/{prefix}");
    let theirs_url =
        format!("{ours_url}?endpoint={endpoint}&region=us-east-1&force-path-style=true");
    assert_both_restore(&bin, dir.path(), &ours_url, &theirs_url, &states);
}

#[test]
fn a_restart_continues_the_replica_without_a_whole_database_file() {
    let Some(bin) = litestream05() else { return };
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("source.db");
    let mut conn = create_source(&db);
    let url = format!(
        "file://{}?layout=litestream-0.5",
        dir.path().join("r").display()
    );
    let mut args = vec![db.to_str().unwrap(), url.as_str()];
    args.extend_from_slice(QUICK);
    let mut states = Vec::new();
    for run in 0..3u64 {
        let running = Running::start(dir.path(), &args);
        for round in 0..6 {
            write_round(&mut conn, run * 100 + round);
            states.push(rows(&db));
            std::thread::sleep(Duration::from_millis(40));
        }
        let log = running.stop();
        let wholes = log.matches("whole database written").count();
        if run == 0 {
            assert_eq!(wholes, 1, "the first run starts the replica: {log}");
        } else {
            assert_eq!(wholes, 0, "run {run} started over: {log}");
            assert!(log.contains("continuing the replica"), "{log}");
        }
        // Written while stopped: the next run ships it.
        write_round(&mut conn, run * 100 + 50);
        states.push(rows(&db));
    }
    let plain = format!("file://{}", dir.path().join("r").display());
    let running = Running::start(dir.path(), &args);
    std::thread::sleep(Duration::from_millis(300));
    running.stop();
    assert_both_restore(&bin, dir.path(), &plain, &plain, &states);
}

#[test]
fn sigkills_lose_nothing_reported_shipped() {
    let Some(bin) = litestream05() else { return };
    let kills: usize = std::env::var("REPLICA_CRASH_KILLS")
        .ok()
        .and_then(|v| v.parse().ok())
        .map_or(20, |n: usize| n.min(200));
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("source.db");
    let mut conn = create_source(&db);
    let url = format!(
        "file://{}?layout=litestream-0.5",
        dir.path().join("r").display()
    );
    let plain = format!("file://{}", dir.path().join("r").display());
    let mut args = vec![db.to_str().unwrap(), url.as_str()];
    args.extend_from_slice(QUICK);
    let mut committed: Vec<(chrono::DateTime<chrono::Utc>, u64)> = Vec::new();
    let mut round = 0u64;
    for kill in 0..kills {
        let running = Running::start(dir.path(), &args);
        let until =
            std::time::Instant::now() + Duration::from_millis(100 + rand::random::<u64>() % 700);
        while std::time::Instant::now() < until {
            write_round(&mut conn, round);
            committed.push((chrono::Utc::now(), round));
            round += 1;
            std::thread::sleep(Duration::from_millis(15));
        }
        let log = running.kill();
        let Some(through) = shipped_through(&log, "ltx shipped") else {
            continue;
        };
        let required = committed.iter().filter(|(at, _)| *at < through).count() as u64;
        let out = dir.path().join(format!("after-kill-{kill}.db"));
        ours(&plain, &out, &[]);
        let restored: u64 = sqlite3(
            &out,
            "SELECT COUNT(*) FROM orders WHERE customer NOT LIKE 'sqlite3%'",
        )
        .trim()
        .parse()
        .unwrap();
        // Each round inserts 150 rows and deletes some older ones: the
        // restored database holds at least the rounds' newest inserts.
        let max_id: u64 = sqlite3(&out, "SELECT IFNULL(MAX(id), 0) FROM orders")
            .trim()
            .parse()
            .unwrap();
        assert!(
            max_id >= required * 150,
            "kill {kill}: restored up to id {max_id} ({restored} rows), {required} rounds were \
             committed before {through}"
        );
        std::fs::remove_file(&out).unwrap();
    }
    // After all the kills, a clean run: both tools restore the source.
    let running = Running::start(dir.path(), &args);
    std::thread::sleep(Duration::from_millis(300));
    running.stop();
    let (a, b) = (
        dir.path().join("final-ours.db"),
        dir.path().join("final-theirs.db"),
    );
    ours(&plain, &a, &[]);
    theirs(&bin, &plain, &b, &[]);
    assert!(
        rows(&a) == rows(&db),
        "our final restore differs from the source"
    );
    assert!(
        rows(&b) == rows(&db),
        "litestream's final restore differs from the source"
    );
    run_ok(replica().args(["verify", &plain]));
}

#[test]
fn a_wal_restarted_while_stopped_writes_the_whole_database_and_both_tools_restore() {
    let Some(bin) = litestream05() else { return };
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("source.db");
    let mut conn = create_source(&db);
    let url = format!(
        "file://{}?layout=litestream-0.5",
        dir.path().join("r").display()
    );
    // No checkpoints: the WAL (and its salts) stays the same across runs.
    let args = [
        db.to_str().unwrap(),
        url.as_str(),
        "--monitor-interval",
        "30ms",
        "--sync-interval",
        "30ms",
        "--checkpoint-interval",
        "0s",
        "--min-checkpoint-page-count",
        "1000000",
    ];
    let mut states = Vec::new();
    for run in 0..2u64 {
        let running = Running::start(dir.path(), &args);
        for round in 0..5 {
            write_round(&mut conn, run * 100 + round);
            states.push(rows(&db));
            std::thread::sleep(Duration::from_millis(40));
        }
        let log = running.stop();
        assert_eq!(log.matches("whole database written").count(), 1, "{log}");
        // The application checkpoints and restarts the WAL while we are not
        // running: the WAL the replica's newest file continues is gone.
        conn.execute_batch("PRAGMA wal_checkpoint(TRUNCATE);")
            .unwrap();
        write_round(&mut conn, run * 100 + 50);
        states.push(rows(&db));
    }
    let running = Running::start(dir.path(), &args);
    running.wait_for("whole database written");
    running.stop();
    let plain = format!("file://{}", dir.path().join("r").display());
    assert_both_restore(&bin, dir.path(), &plain, &plain, &states);
}

#[test]
fn a_litestream_05_config_runs_unchanged_and_litestream_restores_with_it() {
    let Some(bin) = litestream05() else { return };
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("source.db");
    let backups = dir.path().join("backups");
    let config = dir.path().join("litestream.yml");
    std::fs::write(
        &config,
        format!(
            "levels:\n  - interval: 200ms\n  - interval: 600ms\nsnapshot:\n  interval: 1s\n  \
             retention: 1h\ndbs:\n  - path: {}\n    monitor-interval: 30ms\n    \
             checkpoint-interval: 400ms\n    min-checkpoint-page-count: 60\n    replica:\n      \
             type: file\n      path: {}\n      sync-interval: 30ms\n",
            db.display(),
            backups.display()
        ),
    )
    .unwrap();
    let mut conn = create_source(&db);
    let running = Running::start(dir.path(), &["--config", config.to_str().unwrap()]);
    for round in 0..60 {
        write_round(&mut conn, round);
        std::thread::sleep(Duration::from_millis(30));
    }
    let log = running.stop();
    assert!(!log.contains("ignored"), "{log}");
    let url = format!("file://{}", backups.display());
    let listed = files(&url);
    for level in [0u64, 1, 2, 9] {
        assert!(
            listed.iter().any(|f| f.0 == level),
            "no L{level}: {listed:?}"
        );
    }
    let theirs = dir.path().join("theirs.db");
    let status = Process::new(&bin)
        .args(["restore", "-config"])
        .arg(&config)
        .arg("-o")
        .arg(&theirs)
        .arg(&db)
        .output()
        .unwrap();
    assert!(
        status.status.success(),
        "litestream restore -config: {}",
        String::from_utf8_lossy(&status.stderr)
    );
    assert!(
        rows(&theirs) == rows(&db),
        "litestream's restore differs from the source"
    );
    let ours_db = dir.path().join("ours.db");
    ours(&url, &ours_db, &[]);
    assert!(
        rows(&ours_db) == rows(&db),
        "our restore differs from the source"
    );
}

#[test]
fn an_s3_outage_of_ten_seconds_under_load_is_caught_up() {
    let Some(bin) = litestream05() else { return };
    let Some((bucket, endpoint)) = s3_settings() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let prefix = format!("ltx-outage-{:08x}", rand::random::<u32>());
    // A request cut mid-flight may hang until the replicator abandons it
    // (60 s after it began): then the round is retried.
    let (db, _) = replicate_through_an_outage(
        dir.path(),
        &endpoint,
        |port| {
            format!(
                "s3://{bucket}/{prefix}?endpoint=http://127.0.0.1:{port}&allow_http=true&timeout=2s&layout=litestream-0.5"
            )
        },
        "ltx shipped",
        Duration::from_secs(90),
    );
    let ours_url = format!("s3://{bucket}/{prefix}");
    let theirs_url =
        format!("{ours_url}?endpoint={endpoint}&region=us-east-1&force-path-style=true");
    let (a, b) = (dir.path().join("ours.db"), dir.path().join("theirs.db"));
    ours(&ours_url, &a, &[]);
    theirs(&bin, &theirs_url, &b, &[]);
    assert!(rows(&a) == rows(&db), "our restore differs from the source");
    assert!(
        rows(&b) == rows(&db),
        "litestream's restore differs from the source"
    );
}
