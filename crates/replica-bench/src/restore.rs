//! Benchmark 7: `replica restore` against `litestream restore` 0.3.13, on
//! the same replica, written by the real Litestream from a live database.
//!
//! The source is a database of realistic rows (orders: customer, item text,
//! quantity, price, with an index), written one transaction at a time while
//! Litestream replicates it to a file replica and to an S3 replica on a moto
//! server started here (when `moto_server` is installed). Litestream syncs
//! every 20 ms and checkpoints every second, so the replica holds thousands
//! of small WAL segments over dozens of indexes; its one snapshot is taken
//! when the generation starts, so a restore applies the whole WAL. Both tools
//! run as processes, alternately, and their outputs must hold the same rows.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::{median, Figure};

/// Sizes of the restore benchmark.
#[derive(Clone, Copy)]
pub(crate) struct RestoreSizes {
    /// Stop writing once the database is this large.
    pub(crate) database_bytes: u64,
    /// Write at least this many transactions.
    pub(crate) min_transactions: u64,
    /// Timed restores per tool and replica.
    pub(crate) reps: usize,
}

/// A finished child: wall time and peak RSS.
pub(crate) struct Run {
    pub(crate) secs: f64,
    pub(crate) max_rss_mib: f64,
}

/// Runs a command to completion, measuring wall time and its peak RSS.
///
/// The peak RSS comes from GNU `time` (Debian package `time`) running the
/// command: `wait4` here would report at least this benchmark's own RSS,
/// since Linux carries a process's pre-`exec` high-water mark into its
/// `ru_maxrss`, and `time` forks from a small process.
pub(crate) fn measured(cmd: &Command) -> Run {
    let rss = tempfile::NamedTempFile::new().expect("a temporary file");
    let mut timed = Command::new("/usr/bin/time");
    timed
        .args(["-f", "%M", "-o"])
        .arg(rss.path())
        .arg(cmd.get_program())
        .args(cmd.get_args());
    for (key, value) in cmd.get_envs() {
        match value {
            Some(v) => timed.env(key, v),
            None => timed.env_remove(key),
        };
    }
    let started = Instant::now();
    let out = timed
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .output()
        .unwrap_or_else(|e| panic!("/usr/bin/time (apt-get install time): {e}"));
    let secs = started.elapsed().as_secs_f64();
    assert!(
        out.status.success(),
        "{cmd:?} failed ({}): {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    let kib: f64 = std::fs::read_to_string(rss.path())
        .ok()
        .and_then(|t| t.lines().last().and_then(|l| l.trim().parse().ok()))
        .unwrap_or(f64::NAN);
    Run {
        secs,
        max_rss_mib: kib / 1024.0,
    }
}

pub(crate) fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// A moto S3 server on 127.0.0.1, stopped (by PID) on drop.
pub(crate) struct Moto {
    child: std::process::Child,
    pub(crate) endpoint: String,
}

impl Moto {
    pub(crate) fn start() -> Option<Moto> {
        Moto::start_logging(None)
    }

    /// A moto server whose request log (one line per request) goes to `log`.
    pub(crate) fn start_logging(log: Option<&Path>) -> Option<Moto> {
        let port = free_port();
        let stderr = match log {
            Some(path) => Stdio::from(std::fs::File::create(path).ok()?),
            None => Stdio::null(),
        };
        let child = Command::new("moto_server")
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .ok()?;
        let endpoint = format!("http://127.0.0.1:{port}");
        let moto = Moto { child, endpoint };
        for _ in 0..100 {
            let made = Command::new("curl")
                .args(["-sf", "-X", "PUT", &format!("{}/bench", moto.endpoint)])
                .stdout(Stdio::null())
                .status()
                .is_ok_and(|s| s.success());
            if made {
                return Some(moto);
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        None
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One round of realistic writes: 200 orders, a few earlier orders
/// changed and a few cancelled (by id, as an application does: an update
/// that scanned the whole table would rewrite every page in every round).
pub(crate) fn write_round(conn: &mut rusqlite::Connection, round: u64) {
    let tx = conn.transaction().expect("begin");
    crate::workload::insert_orders(&tx, round * 200, 200);
    let earlier = ((round * 7919) % (round * 200 + 1)) as i64;
    tx.execute(
        "UPDATE orders SET qty = qty + 1 WHERE id BETWEEN ?1 AND ?1 + 20",
        [earlier],
    )
    .expect("update");
    tx.execute(
        "DELETE FROM orders WHERE id BETWEEN ?1 AND ?1 + 3",
        [earlier / 2],
    )
    .expect("delete");
    tx.commit().expect("commit");
}

/// What the live replication produced.
struct Source {
    database_bytes: u64,
    transactions: u64,
    file_segments: usize,
    file_indexes: usize,
}

/// Replicates a live database into the given replicas until it reaches the
/// size asked for; Litestream is stopped by SIGTERM (a final sync).
fn replicate(litestream: &Path, dir: &Path, replicas_yaml: &str, s: &RestoreSizes) -> Source {
    let db = dir.join("source.db");
    let mut conn = rusqlite::Connection::open(&db).expect("open source");
    conn.pragma_update(None, "journal_mode", "wal")
        .expect("wal");
    crate::workload::create_schema(&conn);
    let config = dir.join("litestream.yml");
    std::fs::write(
        &config,
        format!(
            "dbs:\n  - path: {}\n    monitor-interval: 10ms\n    checkpoint-interval: 1s\n    \
             min-checkpoint-page-count: 1000\n    replicas:\n{replicas_yaml}",
            db.display()
        ),
    )
    .expect("config");
    let mut child = Command::new(litestream)
        .args(["replicate", "-config"])
        .arg(&config)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("litestream replicate");
    let mut round = 0;
    loop {
        write_round(&mut conn, round);
        round += 1;
        std::thread::sleep(Duration::from_millis(25));
        // The database's logical size (its pages, wherever they are now).
        let size: i64 = conn
            .query_row(
                "SELECT page_count * page_size FROM pragma_page_count(), pragma_page_size()",
                [],
                |r| r.get(0),
            )
            .expect("database size");
        let size = size as u64;
        if size >= s.database_bytes && round >= s.min_transactions {
            break;
        }
    }
    std::thread::sleep(Duration::from_millis(500));
    // SAFETY: signalling the child started above, by its PID.
    unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGTERM) };
    let status = child.wait().expect("litestream exit");
    assert!(status.success(), "litestream replicate: {status}");
    conn.execute_batch("PRAGMA wal_checkpoint(TRUNCATE)")
        .expect("checkpoint");
    drop(conn);
    let wal: Vec<String> = std::fs::read_dir(dir.join("replica/generations"))
        .and_then(|gens| {
            let g = gens.flatten().next().expect("a generation").path();
            std::fs::read_dir(g.join("wal"))
        })
        .map(|entries| {
            entries
                .flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    let mut indexes: Vec<&str> = wal.iter().map(|n| &n[..8]).collect();
    indexes.sort();
    indexes.dedup();
    Source {
        database_bytes: std::fs::metadata(&db).map_or(0, |m| m.len()),
        transactions: round,
        file_segments: wal.len(),
        file_indexes: indexes.len(),
    }
}

pub(crate) fn rows_digest(db: &Path) -> (i64, i64, f64) {
    let conn = rusqlite::Connection::open(db).expect("open restored");
    conn.query_row(
        "SELECT count(*), sum(qty), sum(price) FROM orders",
        [],
        |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
    )
    .expect("digest")
}

/// Medians of both tools' restores of one replica.
pub(crate) struct Comparison {
    pub(crate) ours_secs: f64,
    pub(crate) theirs_secs: f64,
    pub(crate) ours_rss: f64,
    pub(crate) theirs_rss: f64,
}

/// Times both tools on one replica, alternating (each restore checked to
/// hold the same rows as the other's).
pub(crate) fn compare(
    name: &str,
    dir: &Path,
    reps: usize,
    ours: &dyn Fn(&Path) -> Command,
    theirs: &dyn Fn(&Path) -> Command,
) -> Comparison {
    let (mut ours_t, mut theirs_t, mut ours_rss, mut theirs_rss) = (vec![], vec![], vec![], vec![]);
    for rep in 0..reps {
        let a = dir.join(format!("{name}-ours-{rep}.db"));
        let b = dir.join(format!("{name}-litestream-{rep}.db"));
        let run_ours = |t: &mut Vec<f64>, r: &mut Vec<f64>| {
            let run = measured(&ours(&a));
            t.push(run.secs);
            r.push(run.max_rss_mib);
        };
        let run_theirs = |t: &mut Vec<f64>, r: &mut Vec<f64>| {
            let run = measured(&theirs(&b));
            t.push(run.secs);
            r.push(run.max_rss_mib);
        };
        let _ = Command::new("sync").status();
        if rep % 2 == 0 {
            run_ours(&mut ours_t, &mut ours_rss);
            run_theirs(&mut theirs_t, &mut theirs_rss);
        } else {
            run_theirs(&mut theirs_t, &mut theirs_rss);
            run_ours(&mut ours_t, &mut ours_rss);
        }
        assert_eq!(
            rows_digest(&a),
            rows_digest(&b),
            "{name}: the two restores differ"
        );
        let _ = std::fs::remove_file(&a);
        let _ = std::fs::remove_file(&b);
    }
    Comparison {
        ours_secs: median(ours_t),
        theirs_secs: median(theirs_t),
        ours_rss: median(ours_rss),
        theirs_rss: median(theirs_rss),
    }
}

impl Comparison {
    /// The speed-up figure and the peak-RSS figure, numbered `n`.
    pub(crate) fn figures(&self, n: &str, what: &str, peer: &str, name: &str) -> Vec<Figure> {
        let speedup = self.theirs_secs / self.ours_secs;
        vec![
            Figure {
                bench: format!("{n}. {what}: replica vs {peer}"),
                ours: format!("{:.2} s", self.ours_secs),
                baseline: format!("{:.2} s", self.theirs_secs),
                ratio: speedup,
                target: ">= 2 (speed-up)".into(),
                met: Some(speedup >= 2.0),
            },
            Figure {
                bench: format!("{n}b. peak RSS of that restore ({name})"),
                ours: format!("{:.1} MiB", self.ours_rss),
                baseline: format!("{:.1} MiB", self.theirs_rss),
                ratio: self.ours_rss / self.theirs_rss,
                target: "report".into(),
                met: None,
            },
        ]
    }
}

/// Benchmark 7. Needs `litestream` (`REPLICA_LITESTREAM` or `PATH`) and the
/// `replica` binary (`REPLICA_BIN`, set by `cargo xtask bench`); the S3 half
/// needs `moto_server`. Whatever is missing is reported, not faked.
/// `REPLICA_BENCH_KEEP_REPLICA=DIR` keeps a copy of the file replica (for
/// profiling a restore).
pub(crate) fn restore(scratch: &Path, s: &RestoreSizes) -> Vec<Figure> {
    let missing = |what: &str| {
        eprintln!("benchmark 7 not run: {what}");
        vec![Figure {
            bench: "7. restore: replica vs litestream 0.3.13".into(),
            ours: "not run".into(),
            baseline: what.into(),
            ratio: 0.0,
            target: ">= 2 (speed-up)".into(),
            met: None,
        }]
    };
    let Some(litestream) = std::env::var_os("REPLICA_LITESTREAM")
        .map(PathBuf::from)
        .filter(|p| p.is_file())
    else {
        return missing("no litestream binary (set REPLICA_LITESTREAM)");
    };
    let Some(ours) = std::env::var_os("REPLICA_BIN")
        .map(PathBuf::from)
        .filter(|p| p.is_file())
    else {
        return missing("no replica binary (set REPLICA_BIN; cargo xtask bench does)");
    };
    let dir = scratch.join("restore");
    std::fs::create_dir_all(&dir).expect("mkdir");
    let moto = Moto::start();
    let mut replicas = format!(
        "      - url: file://{}/replica\n        sync-interval: 20ms\n        snapshot-interval: 24h\n",
        dir.display()
    );
    if let Some(m) = &moto {
        replicas.push_str(&format!(
            "      - type: s3\n        bucket: bench\n        path: replica\n        endpoint: {}\n        \
             region: us-east-1\n        force-path-style: true\n        access-key-id: test\n        \
             secret-access-key: test\n        sync-interval: 20ms\n        snapshot-interval: 24h\n",
            m.endpoint
        ));
    }
    let t = Instant::now();
    let source = replicate(&litestream, &dir, &replicas, s);
    eprintln!(
        "  replicated {} transactions in {:.0} s: database {} MiB, file replica {} segments over {} indexes",
        source.transactions,
        t.elapsed().as_secs_f64(),
        source.database_bytes >> 20,
        source.file_segments,
        source.file_indexes
    );
    let detail = format!(
        "{} MiB database, {} segments, {} indexes",
        source.database_bytes >> 20,
        source.file_segments,
        source.file_indexes
    );
    if let Some(keep) = std::env::var_os("REPLICA_BENCH_KEEP_REPLICA") {
        // For profiling: a copy of the generated file replica.
        let status = Command::new("cp")
            .arg("-a")
            .arg(dir.join("replica"))
            .arg(&keep)
            .status()
            .expect("cp");
        assert!(status.success(), "copying the replica to {keep:?}");
    }
    let file_url = format!("file://{}/replica", dir.display());
    let mut figures = compare(
        "file",
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
        "7",
        &format!("restore from a file replica ({detail})"),
        "litestream 0.3.13",
        "file",
    );
    match &moto {
        Some(m) => {
            let config = dir.join("restore-s3.yml");
            let s3_url = "s3://bench/replica".to_owned();
            figures.extend(compare(
                "moto S3",
                &dir,
                s.reps,
                &|out| {
                    let mut c = Command::new(&ours);
                    c.args(["restore", &s3_url, "-o"])
                        .arg(out)
                        .envs([
                            ("AWS_ENDPOINT", m.endpoint.as_str()),
                            ("AWS_ALLOW_HTTP", "true"),
                            ("AWS_ACCESS_KEY_ID", "test"),
                            ("AWS_SECRET_ACCESS_KEY", "test"),
                            ("AWS_REGION", "us-east-1"),
                        ]);
                    c
                },
                &|out| {
                    std::fs::write(
                        &config,
                        format!(
                            "dbs:\n  - path: {}\n    replicas:\n      - type: s3\n        bucket: bench\n        \
                             path: replica\n        endpoint: {}\n        region: us-east-1\n        \
                             force-path-style: true\n        access-key-id: test\n        \
                             secret-access-key: test\n",
                            out.display(),
                            m.endpoint
                        ),
                    )
                    .expect("config");
                    let mut c = Command::new(&litestream);
                    c.args(["restore", "-config"]).arg(&config).arg(out);
                    c
                },
            )
            .figures(
                "7",
                "restore from a moto S3 replica (same database, its S3 replica)",
                "litestream 0.3.13",
                "moto S3",
            ));
        }
        None => figures.extend(missing("no moto_server for the S3 half")),
    }
    figures
}
