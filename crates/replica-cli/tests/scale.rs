//! Many databases in one `replica replicate`: the descriptor limit is
//! raised and budgeted, so a database past it fails to start with the
//! limit named, and the others replicate.

use std::os::unix::process::CommandExt;
use std::process::{Command as Process, Stdio};
use std::time::{Duration, Instant};

mod common;
use common::create_source;

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
    let mut cmd = Process::new(assert_cmd::cargo::cargo_bin("replica"));
    cmd.args(["replicate", "-config", cfg.to_str().unwrap()])
        .stdout(Stdio::null())
        .stderr(Stdio::from(std::fs::File::create(&log).unwrap()));
    // The reserve (64) and one database with one replica (12), not two.
    limit_descriptors(&mut cmd, 64 + 12 + 6);
    let mut child = cmd.spawn().unwrap();
    let read = || std::fs::read_to_string(&log).unwrap_or_default();
    let started = Instant::now();
    while !(read().contains("descriptor limit would be exceeded") && read().contains("replicating"))
    {
        assert!(started.elapsed() < Duration::from_secs(30), "{}", read());
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(read().contains("descriptor_limit=82"), "{}", read());
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
