//! Benchmark 9: `replica restore` against `litestream restore` 0.5.17 on a
//! Litestream 0.5 (LTX) replica the real litestream 0.5.17 wrote live.
//!
//! The source is the orders database of benchmark 7, written one
//! transaction at a time while litestream 0.5.17 replicates it to a file
//! replica, with compactions every 5 s (L1) and 20 s (L2) and one snapshot
//! at the start: the latest state is restored from the L9 snapshot, the L2
//! and L1 compactions and the newest L0 files. Litestream 0.5 replicates a
//! database to one replica, so the S3 replica (on moto) is the same files
//! copied byte for byte, with their times, by `replica copy`; its restores
//! go through a TCP proxy that holds every request for 20 ms (a nearby
//! region's round trip), where fetching files one after another is what
//! costs. Both tools run as processes, alternately, and their outputs
//! must hold the same rows.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::restore::{compare, write_round, Moto, RestoreSizes};
use crate::Figure;

/// A TCP proxy to `upstream` that holds each chunk a client sends for
/// `delay` before forwarding it (so each HTTP request waits that long);
/// its threads end with the benchmark process.
fn delaying_proxy(upstream: String, delay: Duration) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").expect("proxy port");
    let addr = listener.local_addr().expect("proxy address");
    std::thread::spawn(move || {
        for client in listener.incoming().flatten() {
            let Ok(server) = TcpStream::connect(upstream.trim_start_matches("http://")) else {
                continue;
            };
            let (mut c_read, mut s_write) = (
                client.try_clone().expect("clone"),
                server.try_clone().expect("clone"),
            );
            std::thread::spawn(move || {
                let mut buf = vec![0u8; 64 * 1024];
                while let Ok(n) = c_read.read(&mut buf) {
                    if n == 0 {
                        break;
                    }
                    std::thread::sleep(delay);
                    if s_write.write_all(&buf[..n]).is_err() {
                        break;
                    }
                }
                let _ = s_write.shutdown(std::net::Shutdown::Write);
            });
            let (mut s_read, mut c_write) = (server, client);
            std::thread::spawn(move || {
                let _ = std::io::copy(&mut s_read, &mut c_write);
                let _ = c_write.shutdown(std::net::Shutdown::Write);
            });
        }
    });
    format!("http://{addr}")
}

/// The replica's files by level: (level, count).
fn levels(replica: &Path) -> Vec<(String, usize)> {
    let mut out: Vec<(String, usize)> = std::fs::read_dir(replica.join("ltx"))
        .map(|dirs| {
            dirs.flatten()
                .map(|d| {
                    let n = std::fs::read_dir(d.path()).map_or(0, |f| f.count());
                    (d.file_name().to_string_lossy().into_owned(), n)
                })
                .collect()
        })
        .unwrap_or_default();
    out.sort();
    out
}

/// Writes the source while litestream 0.5.17 replicates it; returns the
/// database size and the number of transactions.
fn replicate(litestream: &Path, dir: &Path, replica: &str, s: &RestoreSizes) -> (u64, u64) {
    let db = dir.join("source.db");
    let mut conn = rusqlite::Connection::open(&db).expect("open source");
    conn.pragma_update(None, "journal_mode", "wal")
        .expect("wal");
    crate::workload::create_schema(&conn);
    let dbs = format!(
        "  - path: {}\n    monitor-interval: 100ms\n    replica:\n{replica}",
        db.display()
    );
    let config = dir.join("litestream.yml");
    std::fs::write(
        &config,
        format!(
            "levels:\n  - interval: 5s\n  - interval: 20s\nsnapshot:\n  interval: 24h\n  \
             retention: 72h\ndbs:\n{dbs}"
        ),
    )
    .expect("config");
    let mut child = Command::new(litestream)
        .args(["replicate", "-config"])
        .arg(&config)
        .env_remove("AWS_CA_BUNDLE")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("litestream replicate");
    let mut round = 0;
    loop {
        write_round(&mut conn, round);
        round += 1;
        std::thread::sleep(Duration::from_millis(25));
        let size: i64 = conn
            .query_row(
                "SELECT page_count * page_size FROM pragma_page_count(), pragma_page_size()",
                [],
                |r| r.get(0),
            )
            .expect("database size");
        if size as u64 >= s.database_bytes && round >= s.min_transactions {
            break;
        }
    }
    std::thread::sleep(Duration::from_millis(2500));
    // SAFETY: signalling the child started above, by its PID.
    unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGTERM) };
    let status = child.wait().expect("litestream exit");
    assert!(status.success(), "litestream replicate: {status}");
    drop(conn);
    (std::fs::metadata(&db).map_or(0, |m| m.len()), round)
}

/// Benchmark 9. Needs litestream 0.5.17 (`REPLICA_LITESTREAM_05`) and the
/// `replica` binary (`REPLICA_BIN`); the S3 half needs `moto_server`.
pub(crate) fn restore_ltx(scratch: &Path, s: &RestoreSizes) -> Vec<Figure> {
    let missing = |what: &str| {
        eprintln!("benchmark 9 not run: {what}");
        vec![Figure {
            bench: "9. LTX restore: replica vs litestream 0.5.17".into(),
            ours: "not run".into(),
            baseline: what.into(),
            ratio: 0.0,
            target: ">= 2 (speed-up)".into(),
            met: None,
        }]
    };
    let Some(litestream) = std::env::var_os("REPLICA_LITESTREAM_05")
        .map(PathBuf::from)
        .filter(|p| p.is_file())
    else {
        return missing("no litestream 0.5.17 binary (set REPLICA_LITESTREAM_05)");
    };
    let Some(ours) = std::env::var_os("REPLICA_BIN")
        .map(PathBuf::from)
        .filter(|p| p.is_file())
    else {
        return missing("no replica binary (set REPLICA_BIN; cargo xtask bench does)");
    };
    let dir = scratch.join("restore-ltx");
    std::fs::create_dir_all(&dir).expect("mkdir");
    let moto = Moto::start();
    let replica = format!(
        "      type: file\n      path: {}/replica\n      sync-interval: 1s\n",
        dir.display()
    );
    let t = Instant::now();
    let (db_bytes, transactions) = replicate(&litestream, &dir, &replica, s);
    let files = levels(&dir.join("replica"));
    let shape: Vec<String> = files.iter().map(|(l, n)| format!("L{l}: {n}")).collect();
    eprintln!(
        "  replicated {transactions} transactions in {:.0} s: database {} MiB, files {}",
        t.elapsed().as_secs_f64(),
        db_bytes >> 20,
        shape.join(", ")
    );
    let detail = format!(
        "{} MiB database; files {}",
        db_bytes >> 20,
        shape.join(", ")
    );
    let file_url = format!("file://{}/replica", dir.display());
    let mut figures = compare(
        "ltx-file",
        &dir,
        s.reps,
        &|out| {
            let mut c = Command::new(&ours);
            c.args(["restore", &file_url, "-o"]).arg(out);
            c
        },
        &|out| {
            let mut c = Command::new(&litestream);
            c.args(["restore", "-o"]).arg(out).arg(&file_url);
            c
        },
    )
    .figures(
        "9",
        &format!("LTX restore from a file replica ({detail})"),
        "litestream 0.5.17",
        "file",
    );
    match &moto {
        Some(m) => {
            // Litestream 0.5 replicates a database to one replica: the S3
            // replica is its file replica's files, copied byte for byte
            // (with their times) by `replica copy`.
            let copied = Command::new(&ours)
                .args(["copy", &file_url, "s3://bench/ltx"])
                .envs([
                    ("AWS_ENDPOINT", m.endpoint.as_str()),
                    ("AWS_ALLOW_HTTP", "true"),
                    ("AWS_ACCESS_KEY_ID", "test"),
                    ("AWS_SECRET_ACCESS_KEY", "test"),
                    ("AWS_REGION", "us-east-1"),
                ])
                .status()
                .expect("replica copy");
            assert!(copied.success(), "copying the LTX replica to moto");
            let proxy = delaying_proxy(m.endpoint.clone(), Duration::from_millis(20));
            let ours_url = "s3://bench/ltx".to_owned();
            let theirs_url =
                format!("s3://bench/ltx?endpoint={proxy}&region=us-east-1&force-path-style=true");
            figures.extend(
                compare(
                    "ltx-s3",
                    &dir,
                    s.reps,
                    &|out| {
                        let mut c = Command::new(&ours);
                        c.args(["restore", &ours_url, "-o"]).arg(out).envs([
                            ("AWS_ENDPOINT", proxy.as_str()),
                            ("AWS_ALLOW_HTTP", "true"),
                            ("AWS_ACCESS_KEY_ID", "test"),
                            ("AWS_SECRET_ACCESS_KEY", "test"),
                            ("AWS_REGION", "us-east-1"),
                        ]);
                        c
                    },
                    &|out| {
                        let mut c = Command::new(&litestream);
                        c.args(["restore", "-o"])
                            .arg(out)
                            .arg(&theirs_url)
                            .env_remove("AWS_CA_BUNDLE")
                            .envs([
                                ("AWS_ACCESS_KEY_ID", "test"),
                                ("AWS_SECRET_ACCESS_KEY", "test"),
                            ]);
                        c
                    },
                )
                .figures(
                    "9",
                    "LTX restore from moto S3, 20 ms added to each request (same database)",
                    "litestream 0.5.17",
                    "S3 + 20 ms",
                ),
            );
        }
        None => figures.extend(missing("no moto_server for the S3 half")),
    }
    figures
}
