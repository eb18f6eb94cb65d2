//! Many databases in one `replica replicate`: the descriptor limit is
//! raised and budgeted, so a database past it fails to start with the
//! limit named, and the others replicate.

use std::os::unix::process::CommandExt;
use std::process::{Command as Process, Stdio};
use std::time::{Duration, Instant};

mod common;
use common::{create_source, ours, replica, rows, write_round, Running};

/// A hard (and soft) descriptor limit of `n` for a child.
fn limit_descriptors(cmd: &mut Process, n: u64) {
    // SAFETY: setrlimit is async-signal-safe; it only touches the child.
    unsafe {
        cmd.pre_exec(move || {
            let limit = libc::rlimit {
                rlim_cur: n,
                rlim_max: n,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &limit) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

/// `replica replicate -config CFG` with stderr to `log`, under a
/// descriptor limit of `limit`.
fn replicate_limited(
    cfg: &std::path::Path,
    log: &std::path::Path,
    limit: u64,
) -> std::process::Child {
    let mut cmd = Process::new(assert_cmd::cargo::cargo_bin("replica"));
    cmd.args(["replicate", "-config", cfg.to_str().unwrap()])
        .stdout(Stdio::null())
        .stderr(Stdio::from(std::fs::File::create(log).unwrap()));
    limit_descriptors(&mut cmd, limit);
    cmd.spawn().unwrap()
}

/// `DIR/litestream.yml`: one directory entry (`data`, `*.db`, then the
/// entry's `keys`), its replica `file://REP` (then `replica_keys`).
fn dir_config(
    dir: &std::path::Path,
    data: &std::path::Path,
    rep: &std::path::Path,
    keys: &str,
    replica_keys: &str,
) -> std::path::PathBuf {
    let cfg = dir.join("litestream.yml");
    std::fs::write(
        &cfg,
        format!(
            "dbs:\n  - dir: {}\n    pattern: \"*.db\"\n{keys}    replica:\n      url: file://{}\n{replica_keys}",
            data.display(),
            rep.display()
        ),
    )
    .unwrap();
    cfg
}

#[test]
fn a_database_past_the_descriptor_limit_is_refused_by_name_and_the_others_replicate() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (dir.path().join("a.db"), dir.path().join("b.db"));
    drop(create_source(&a));
    drop(create_source(&b));
    let cfg = dir.path().join("litestream.yml");
    let mut text = String::from("dbs:\n");
    for db in [&a, &b] {
        text.push_str(&format!(
            "  - path: {}\n    monitor-interval: 50ms\n    replicas:\n      - url: file://{}-replica\n",
            db.display(),
            db.display()
        ));
    }
    std::fs::write(&cfg, text).unwrap();
    let log = dir.path().join("log");
    // The reserve (256) and one database with one replica awake (1 + 11),
    // not two.
    let mut child = replicate_limited(&cfg, &log, 256 + 12);
    let read = || std::fs::read_to_string(&log).unwrap_or_default();
    let started = Instant::now();
    while !(read().contains("descriptor limit would be exceeded") && read().contains("replicating"))
    {
        assert!(started.elapsed() < Duration::from_secs(30), "{}", read());
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(read().contains("descriptor_limit=268"), "{}", read());
    // SAFETY: signalling the child this test started, by its PID.
    unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGTERM) };
    let status = child.wait().unwrap();
    let text = read();
    // One database never started: named in the exit, not a crash.
    assert_eq!(status.code(), Some(2), "{text}");
    assert!(text.contains("ulimit -Hn"), "{text}");
    let replicated = [&a, &b]
        .into_iter()
        .filter(|db| {
            std::path::Path::new(&format!("{}-replica", db.display()))
                .join("generations")
                .exists()
        })
        .count();
    assert_eq!(replicated, 1, "{text}");
}

/// Three databases where the descriptor limit lets one be awake at a time
/// (each holds one descriptor always, eleven more while awake): they take
/// turns (a quiet one releases what it holds as soon as another waits),
/// and every one is replicated and restores to its rows.
#[test]
fn databases_past_what_may_be_awake_at_once_take_turns_and_all_replicate() {
    let dir = tempfile::tempdir().unwrap();
    let dbs: Vec<_> = ["a", "b", "c"]
        .iter()
        .map(|n| dir.path().join(format!("{n}.db")))
        .collect();
    let cfg = dir.path().join("litestream.yml");
    let mut text = String::from("dbs:\n");
    for (i, db) in dbs.iter().enumerate() {
        let mut conn = create_source(db);
        write_round(&mut conn, i as u64 + 1);
        text.push_str(&format!(
            "  - path: {}\n    monitor-interval: 50ms\n    replicas:\n      - url: file://{}-replica\n        sync-interval: 50ms\n",
            db.display(),
            db.display()
        ));
    }
    std::fs::write(&cfg, text).unwrap();
    let log = dir.path().join("log");
    let mut child = replicate_limited(&cfg, &log, 256 + 3 + 11);
    let read = || std::fs::read_to_string(&log).unwrap_or_default();
    let replicated = |db: &std::path::Path| {
        std::path::Path::new(&format!("{}-replica", db.display()))
            .join("generations")
            .exists()
    };
    let started = Instant::now();
    while !dbs.iter().all(|db| replicated(db)) {
        assert!(started.elapsed() < Duration::from_secs(40), "{}", read());
        std::thread::sleep(Duration::from_millis(50));
    }
    // SAFETY: signalling the child this test started, by its PID.
    unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGTERM) };
    let status = child.wait().unwrap();
    let text = read();
    assert_eq!(status.code(), Some(0), "{text}");
    assert!(!text.contains("os error 24"), "{text}");
    for db in &dbs {
        let out = dir.path().join("out.db");
        let _ = std::fs::remove_file(&out);
        ours(&format!("file://{}-replica", db.display()), &out, &[]);
        assert_eq!(rows(&out), rows(db), "{}", db.display());
    }
}

/// A Litestream 0.5 config's directory entry (`dir`, `pattern`,
/// `recursive`, `watch`): every WAL database in the tree is replicated
/// under the replica URL plus its relative path, as Litestream names it; a
/// file that is not one is skipped with one log line; a database created
/// later is replicated within 2 s; a removed one is stopped cleanly. Each
/// replica restores to its database's rows, by us and by litestream 0.5.
#[test]
fn a_watched_directory_replicates_what_appears_and_stops_what_goes() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir_all(data.join("tenants")).unwrap();
    let (a, b) = (data.join("a.db"), data.join("tenants/b.db"));
    let mut conn_a = create_source(&a);
    write_round(&mut conn_a, 1);
    drop(create_source(&b));
    std::fs::write(data.join("notes.db"), b"not a database").unwrap();
    let rep = dir.path().join("replicas");
    let cfg = dir_config(
        dir.path(),
        &data,
        &rep,
        "    recursive: true\n    watch: true\n    monitor-interval: 50ms\n",
        "      sync-interval: 50ms\n",
    );
    let running = Running::start(dir.path(), &["-config", cfg.to_str().unwrap()]);
    let has_ltx = |db: &str| rep.join(db).join("ltx").exists();
    let started = Instant::now();
    while !(has_ltx("a.db") && has_ltx("tenants/b.db")) {
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "{}",
            running.text()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    // A database created while running: replicated within 2 s.
    let c = data.join("tenants/c.db");
    let created = Instant::now();
    let mut conn_c = create_source(&c);
    while !has_ltx("tenants/c.db") {
        assert!(
            created.elapsed() < Duration::from_secs(2),
            "not replicated within 2 s: {}",
            running.text()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    write_round(&mut conn_c, 2);
    write_round(&mut conn_a, 3);
    // A removed database: stopped after a final sync, the others go on.
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", b.display()));
    }
    running.wait_for("the database is gone from its directory");
    running.wait_for(&format!(
        "\"message\":\"stopped\",\"db\":\"{}\"",
        b.display()
    ));
    std::thread::sleep(Duration::from_millis(300));
    drop((conn_a, conn_c));
    let log = running.stop();
    assert_eq!(
        log.matches("directory replication skips it").count(),
        1,
        "{log}"
    );
    assert!(
        log.contains(&data.join("notes.db").display().to_string()),
        "{log}"
    );
    let litestream = common::litestream05();
    for (db, rel) in [(&a, "a.db"), (&c, "tenants/c.db")] {
        let url = format!("file://{}", rep.join(rel).display());
        let ours = dir.path().join(format!("ours-{}", rel.replace('/', "-")));
        common::ours(&url, &ours, &[]);
        assert_eq!(rows(&ours), rows(db), "{rel}");
        if let Some(bin) = &litestream {
            let theirs = dir.path().join(format!("theirs-{}", rel.replace('/', "-")));
            common::theirs(bin, &url, &theirs, &[]);
            assert_eq!(rows(&theirs), rows(db), "{rel}");
        }
    }
}

/// A database of a directory entry is released once idle. The replicator
/// is SIGKILLed while it is released; the application writes, checkpoints
/// with TRUNCATE and writes again while it is down; the restarted
/// replicator starts a new generation (the WAL no longer continues its
/// shadow) and is SIGKILLed again just after a write woke the database; a
/// third run catches up and releases it: every row restores, by us and by
/// litestream 0.5.
#[test]
fn a_released_database_survives_kills_and_an_application_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    let db = data.join("a.db");
    let mut conn = create_source(&db);
    write_round(&mut conn, 1);
    let rep = dir.path().join("replicas");
    let cfg = dir_config(
        dir.path(),
        &data,
        &rep,
        "    monitor-interval: 50ms\n",
        "      sync-interval: 50ms\n",
    );
    let args = ["-config", cfg.to_str().unwrap()];
    let debug = [("REPLICA_LOG", "info,replica_sqlite=debug")];
    let released = "released: nothing new to copy";
    let start = || Running::start_env(dir.path(), &args, &debug);
    // Killed while released.
    let running = start();
    running.wait_for_within(released, Duration::from_secs(40));
    let first = running.kill();
    assert_eq!(first.matches(released).count(), 1, "{first}");
    write_round(&mut conn, 2);
    let busy: i64 = conn
        .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |r| r.get(0))
        .unwrap();
    assert_eq!(busy, 0, "the application's checkpoint completed");
    assert_eq!(
        std::fs::metadata(format!("{}-wal", db.display()))
            .unwrap()
            .len(),
        0
    );
    write_round(&mut conn, 3);
    // Killed just after a write woke it.
    let running = start();
    running.wait_for_within(released, Duration::from_secs(40));
    write_round(&mut conn, 4);
    std::thread::sleep(Duration::from_millis(300));
    let second = running.kill();
    assert!(second.contains("new generation"), "{second}");
    write_round(&mut conn, 5);
    let running = start();
    write_round(&mut conn, 6);
    running.wait_for_within(released, Duration::from_secs(40));
    let log = running.stop();
    assert!(!log.contains("os error 24"), "{log}");
    drop(conn);
    let url = format!("file://{}", rep.join("a.db").display());
    let ours = dir.path().join("ours.db");
    common::ours(&url, &ours, &[]);
    assert_eq!(rows(&ours), rows(&db));
    if let Some(bin) = common::litestream05() {
        let theirs = dir.path().join("theirs.db");
        common::theirs(&bin, &url, &theirs, &[]);
        assert_eq!(rows(&theirs), rows(&db));
    }
}

/// `replica replicate --dir DIR URL` without `--watch` and nothing in DIR
/// stops at once, saying so and how to wait instead.
#[test]
fn an_empty_unwatched_directory_is_an_error_that_names_it() {
    let dir = tempfile::tempdir().unwrap();
    let out = replica()
        .args(["replicate", "--dir"])
        .arg(dir.path())
        .arg(format!("file://{}/r", dir.path().display()))
        .timeout(Duration::from_secs(30))
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&dir.path().display().to_string()) && stderr.contains("watch"),
        "{stderr}"
    );
}

/// `/proc/PID`: descriptors, threads and resident KiB of a process.
fn usage(pid: u32) -> (usize, u64, u64) {
    let fds = std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, |d| d.count());
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(u64::MAX)
    };
    (fds, field("Threads:"), field("VmRSS:"))
}

/// The quick size of benchmark 11 (`cargo xtask bench --only 11` runs
/// 100, 1,000 and 10,000 databases and reports the figures): 300
/// databases of a directory entry in one process, Litestream 0.5's default
/// intervals. Once idle, every database is released: the process holds
/// one descriptor per database plus a few, few threads (tokio's workers
/// and a handful more, not one per database) and under 64 KiB of memory
/// per database over a base of 32 MiB (measured: 37 MiB in all, debug
/// build; 500 KiB per database, as before the trim, would be 180 MiB).
/// Then 1 % of them are written while it runs: each is woken and ships
/// (its replica grows), descriptors stay under 1.5 per database, and every
/// written one and a sample of the others restore to their rows.
#[test]
fn three_hundred_idle_databases_hold_about_one_descriptor_each_few_threads_and_little_memory() {
    const N: usize = 300;
    /// The process's own descriptors and memory, whatever N.
    const BASE_FDS: usize = 32;
    const BASE_RSS_KIB: u64 = 32 << 10;
    let workers = std::thread::available_parallelism().map_or(2, |n| n.get()) as u64;
    let max_threads = workers + 10;
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    let name = |i: usize| format!("db-{i:03}.db");
    for i in 0..N {
        let mut conn = create_source(&data.join(name(i)));
        write_round(&mut conn, 1);
    }
    let rep = dir.path().join("replicas");
    let cfg = dir_config(dir.path(), &data, &rep, "", "");
    let running = Running::start(dir.path(), &["-config", cfg.to_str().unwrap()]);
    let pid = running.child.id();
    let started = Instant::now();
    while !(0..N).all(|i| rep.join(name(i)).join("ltx").exists()) {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "not all replicated within 60 s: {}",
            running.text()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    // Released 10 s after their last change; the threads that started them
    // end 10 s after their last work.
    let idle_bound = |(fds, threads, rss): (usize, u64, u64)| {
        fds < BASE_FDS + N && threads <= max_threads && rss < BASE_RSS_KIB + 64 * N as u64
    };
    let mut idle = usage(pid);
    while !idle_bound(idle) {
        assert!(
            started.elapsed() < Duration::from_secs(90),
            "{N} idle databases: {} descriptors (bound {}), {} threads (bound {max_threads}), {} KiB \
             resident (bound {})",
            idle.0,
            BASE_FDS + N,
            idle.1,
            idle.2,
            BASE_RSS_KIB + 64 * N as u64
        );
        std::thread::sleep(Duration::from_millis(200));
        idle = usage(pid);
    }
    // 1 % written: woken, shipped, and the bound on descriptors still holds.
    let active: Vec<usize> = (0..N).step_by(100).collect();
    let mut conns: Vec<_> = active
        .iter()
        .map(|i| rusqlite::Connection::open(data.join(name(*i))).unwrap())
        .collect();
    for round in 2..5 {
        for conn in &mut conns {
            write_round(conn, round);
        }
        std::thread::sleep(Duration::from_millis(500));
        let (fds, ..) = usage(pid);
        assert!(fds < N * 3 / 2, "{fds} descriptors with 1 % active");
    }
    // Shipped while it runs (not only by the final sync at the stop).
    for i in &active {
        let out = dir.path().join(format!("live-{i}.db"));
        let url = format!("file://{}", rep.join(name(*i)).display());
        let source = rows(&data.join(name(*i)));
        let written = Instant::now();
        loop {
            let _ = std::fs::remove_file(&out);
            common::ours(&url, &out, &[]);
            if rows(&out) == source {
                break;
            }
            assert!(
                written.elapsed() < Duration::from_secs(20),
                "{} not shipped within 20 s of its writes",
                name(*i)
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }
    drop(conns);
    let log = running.stop();
    assert!(!log.contains("os error 24"), "{log}");
    let sample = active.iter().copied().chain((7..N).step_by(29));
    for i in sample {
        let out = dir.path().join(format!("out-{i}.db"));
        let url = format!("file://{}", rep.join(name(i)).display());
        common::ours(&url, &out, &[]);
        assert_eq!(rows(&out), rows(&data.join(name(i))), "{}", name(i));
    }
    eprintln!(
        "{N} idle databases: {} descriptors, {} threads, {} KiB resident",
        idle.0, idle.1, idle.2
    );
}
