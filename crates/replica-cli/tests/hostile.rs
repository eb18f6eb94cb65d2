//! `replica restore` under hostile replicas, as a process (issue 20): memory
//! stays bounded whatever a segment decompresses to, a signal removes the
//! partial database, a killed restore's temporary file is removed by the
//! next one, and a permanent local error is not retried.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use replica::{bytes_stream, Generation, Pos};
use replica_sqlite::wal::WalBuilder;

fn bin() -> PathBuf {
    assert_cmd::cargo::cargo_bin("replica")
}

/// How a run of the binary ended: exit code (or 128 + signal), stderr,
/// and its peak resident memory in MiB.
struct Run {
    code: i32,
    stderr: String,
    max_rss_mib: u64,
}

/// Runs `replica ARGS`, measuring the child's peak memory (see [`wait`]).
#[allow(clippy::zombie_processes)] // reaped by `wait`, with waitpid
fn run(args: &[&str], before_exec: Option<fn() -> std::io::Result<()>>) -> Run {
    let mut cmd = Command::new(bin());
    cmd.args(args).stdout(Stdio::null()).stderr(Stdio::piped());
    if let Some(f) = before_exec {
        use std::os::unix::process::CommandExt;
        // SAFETY: `f` only calls async-signal-safe libc functions.
        unsafe {
            cmd.pre_exec(f);
        }
    }
    let mut child = cmd.spawn().unwrap();
    let mut stderr = child.stderr.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut s = String::new();
        stderr.read_to_string(&mut s).unwrap();
        s
    });
    let (code, max_rss_mib) = wait(child.id() as i32);
    Run {
        code,
        stderr: reader.join().unwrap(),
        max_rss_mib,
    }
}

/// Waits for the child `pid`: its exit code (or 128 + signal) and its
/// peak resident memory in MiB. The peak is the kernel's high-water mark of
/// the process's memory after `exec` (`VmHWM`), read until it exits:
/// `wait4`'s `ru_maxrss` would include the test process's own peak, which a
/// child spawned with `vfork` inherits.
fn wait(pid: i32) -> (i32, u64) {
    let mut peak_kib = 0u64;
    let mut status = 0;
    loop {
        // SAFETY: waitpid on our own child, with a valid out-pointer.
        let r = unsafe { libc::waitpid(pid, &mut status, libc::WNOHANG) };
        assert!(r >= 0, "waitpid");
        if r == pid {
            break;
        }
        if let Ok(text) = std::fs::read_to_string(format!("/proc/{pid}/status")) {
            let hwm = text
                .lines()
                .find_map(|l| l.strip_prefix("VmHWM:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok());
            peak_kib = peak_kib.max(hwm.unwrap_or(0));
        }
        std::thread::sleep(std::time::Duration::from_millis(2));
    }
    let code = if libc::WIFEXITED(status) {
        libc::WEXITSTATUS(status)
    } else {
        128 + libc::WTERMSIG(status)
    };
    (code, peak_kib / 1024)
}

/// A checkpointed WAL-mode database: its bytes and page size.
fn database(dir: &Path, rows: usize) -> Vec<u8> {
    let db = dir.join("source.db");
    let conn = rusqlite::Connection::open(&db).unwrap();
    conn.pragma_update(None, "journal_mode", "wal").unwrap();
    conn.execute_batch(&format!(
        "CREATE TABLE t (id INTEGER PRIMARY KEY, v BLOB);
         WITH RECURSIVE s(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM s WHERE n < {rows})
         INSERT INTO t (v) SELECT randomblob(4000) FROM s;
         PRAGMA wal_checkpoint(TRUNCATE);"
    ))
    .unwrap();
    drop(conn);
    std::fs::read(&db).unwrap()
}

/// A stored WAL segment: index, offset, bytes (already LZ4).
type Segment = (u64, u64, Vec<u8>);

/// A file replica (0.3 layout) of `snapshot` at index 0 and the given WAL
/// segments.
fn file_replica(dir: &Path, snapshot: &[u8], segments: Vec<Segment>) -> String {
    let url = format!("file://{}?layout=litestream-0.3", dir.display());
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let client = replica::open(&url).await.unwrap();
        let g: Generation = "0123456789abcdef".parse().unwrap();
        client
            .write_snapshot(&g, 0, bytes_stream(replica::lz4::compress(snapshot)))
            .await
            .unwrap();
        for (index, offset, stored) in segments {
            let pos = Pos::new(g.clone(), index, offset).unwrap();
            client
                .write_wal_segment(&pos, bytes_stream(stored))
                .await
                .unwrap();
        }
    });
    url
}

/// An LZ4 frame of `len` zero bytes (the zeroed buffer is never touched,
/// so it costs this process little memory).
fn zeros_lz4(len: usize) -> Vec<u8> {
    replica::lz4::compress(&vec![0u8; len])
}

fn names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

#[test]
fn a_decompression_bomb_in_a_wal_segment_is_refused_in_bounded_memory() {
    let dir = tempfile::tempdir().unwrap();
    let snapshot = database(dir.path(), 10);
    // 1 GiB of zeros in a few MB: not a WAL (no header).
    let bomb = zeros_lz4(1 << 30);
    assert!(bomb.len() < 8 << 20, "{} stored bytes", bomb.len());
    let url = file_replica(&dir.path().join("r"), &snapshot, vec![(0, 0, bomb)]);
    let out_dir = tempfile::tempdir().unwrap();
    let out = out_dir.path().join("out.db");
    let r = run(&["restore", &url, "-o", out.to_str().unwrap()], None);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(r.stderr.contains("bad WAL magic"), "{}", r.stderr);
    assert!(r.stderr.contains("0123456789abcdef"), "{}", r.stderr);
    eprintln!("bomb: peak RSS {} MiB", r.max_rss_mib);
    assert!(r.max_rss_mib < 100, "peak RSS {} MiB", r.max_rss_mib);
    assert!(names(out_dir.path()).is_empty());
}

#[test]
fn uncommitted_frames_across_many_segments_take_bounded_memory() {
    let dir = tempfile::tempdir().unwrap();
    let snapshot = database(dir.path(), 10);
    let page_size = u32::from(u16::from_be_bytes([snapshot[16], snapshot[17]]));
    // 64 segments of 5 MiB of sound frames, none of them a commit: 320 MiB
    // that never commits, then a later index.
    let mut wal = WalBuilder::new(page_size, false);
    let per_segment = (5 << 20) / (24 + page_size as usize);
    let mut segments = Vec::new();
    let mut offset = 0u64;
    for s in 0..64 {
        let start = wal.bytes.len();
        for f in 0..per_segment {
            wal.frame(2 + (f % 50) as u32, 0, (s + f) as u8);
        }
        let segment = &wal.bytes[if s == 0 { 0 } else { start }..];
        segments.push((0, offset, replica::lz4::compress(segment)));
        offset += segment.len() as u64;
    }
    let decompressed = wal.bytes.len();
    drop(wal);
    let mut next = WalBuilder::new(page_size, false);
    next.frame(2, 3, 9);
    segments.push((1, 0, replica::lz4::compress(&next.bytes)));
    let url = file_replica(&dir.path().join("r"), &snapshot, segments);
    let out_dir = tempfile::tempdir().unwrap();
    let out = out_dir.path().join("out.db");
    let r = run(&["restore", &url, "-o", out.to_str().unwrap()], None);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(
        r.stderr.contains("after its last commit frame"),
        "{}",
        r.stderr
    );
    eprintln!(
        "{} MiB uncommitted: peak RSS {} MiB",
        decompressed >> 20,
        r.max_rss_mib
    );
    assert!(
        r.max_rss_mib < 200 && (r.max_rss_mib as usize) < decompressed / 2 / (1 << 20),
        "peak RSS {} MiB for {} MiB of uncommitted frames",
        r.max_rss_mib,
        decompressed >> 20
    );
    assert!(
        names(out_dir.path()).is_empty(),
        "{:?}",
        names(out_dir.path())
    );
}

/// A replica whose restore takes a while: a 96 MiB incompressible snapshot.
fn slow_replica(dir: &Path) -> String {
    let snapshot = database(dir, 24 * 1024);
    file_replica(&dir.join("r"), &snapshot, Vec::new())
}

/// Starts `replica restore URL -o OUT` and returns its pid once its
/// temporary file exists (the caller reaps it with [`wait`]).
#[allow(clippy::zombie_processes)]
fn restore_started(url: &str, out: &Path) -> (i32, std::thread::JoinHandle<String>) {
    let mut child = Command::new(bin())
        .args(["restore", url, "-o", out.to_str().unwrap()])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stderr = child.stderr.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stderr.read_to_string(&mut s);
        s
    });
    let dir = out.parent().unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while !names(dir).iter().any(|n| n.ends_with(".restore.tmp")) {
        assert!(
            std::time::Instant::now() < deadline,
            "no temporary file appeared"
        );
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
    (child.id() as i32, reader)
}

#[test]
fn sigint_and_sigterm_remove_the_partial_database() {
    let dir = tempfile::tempdir().unwrap();
    let url = slow_replica(dir.path());
    for (signal, code) in [(libc::SIGTERM, 143), (libc::SIGINT, 130)] {
        let out_dir = tempfile::tempdir().unwrap();
        let out = out_dir.path().join("out.db");
        let (pid, stderr) = restore_started(&url, &out);
        // SAFETY: signalling our own child.
        assert_eq!(unsafe { libc::kill(pid, signal) }, 0);
        let (status, _) = wait(pid);
        let stderr = stderr.join().unwrap();
        assert_eq!(status, code, "{stderr}");
        assert!(stderr.contains("partial database was removed"), "{stderr}");
        assert!(
            names(out_dir.path()).is_empty(),
            "{:?}",
            names(out_dir.path())
        );
    }
}

#[test]
fn a_killed_restores_temporary_file_is_removed_by_the_next_restore() {
    let dir = tempfile::tempdir().unwrap();
    let url = slow_replica(dir.path());
    let out_dir = tempfile::tempdir().unwrap();
    let out = out_dir.path().join("out.db");
    let (pid, stderr) = restore_started(&url, &out);
    // SAFETY: signalling our own child.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGKILL) }, 0);
    assert_eq!(wait(pid).0, 128 + libc::SIGKILL);
    drop(stderr.join());
    let left = names(out_dir.path());
    assert!(
        left.len() == 1 && left[0].starts_with(".out.db.") && left[0].ends_with(".restore.tmp"),
        "{left:?}"
    );
    let r = run(&["restore", &url, "-o", out.to_str().unwrap()], None);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(
        r.stderr.contains(&format!(
            "removed {}",
            out_dir.path().join(&left[0]).display()
        )),
        "{}",
        r.stderr
    );
    assert_eq!(names(out_dir.path()), ["out.db"]);
}

#[test]
fn a_permanent_local_error_fails_at_once_without_retries() {
    let dir = tempfile::tempdir().unwrap();
    let snapshot = database(dir.path(), 100);
    let url = file_replica(&dir.path().join("r"), &snapshot, Vec::new());
    let out_dir = tempfile::tempdir().unwrap();
    let out = out_dir.path().join("out.db");
    // Files may not grow past 64 KiB: writing the snapshot fails with EFBIG.
    fn limit_file_size() -> std::io::Result<()> {
        let limit = libc::rlimit {
            rlim_cur: 64 << 10,
            rlim_max: 64 << 10,
        };
        // SAFETY: async-signal-safe calls between fork and exec.
        unsafe {
            libc::signal(libc::SIGXFSZ, libc::SIG_IGN);
            if libc::setrlimit(libc::RLIMIT_FSIZE, &limit) != 0 {
                return Err(std::io::Error::last_os_error());
            }
        }
        Ok(())
    }
    let r = run(
        &["restore", &url, "-o", out.to_str().unwrap()],
        Some(limit_file_size),
    );
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(r.stderr.contains("too large"), "{}", r.stderr);
    assert!(!r.stderr.contains("retrying"), "{}", r.stderr);
    assert!(
        names(out_dir.path()).is_empty(),
        "{:?}",
        names(out_dir.path())
    );
}

/// `replica verify` reports each defect `replica restore` refuses, in the
/// same words (one rule, in `WalApplier`, for both).
#[test]
fn verify_reports_what_restore_refuses() {
    let dir = tempfile::tempdir().unwrap();
    let snapshot = database(dir.path(), 3);
    let page_size = u32::from(u16::from_be_bytes([snapshot[16], snapshot[17]]));
    let pages = (snapshot.len() / page_size as usize) as u32;
    let page2 = snapshot[page_size as usize..2 * page_size as usize].to_vec();
    let wal = |frames: &[(u32, u32)]| {
        let mut b = WalBuilder::new(page_size, false);
        for &(pgno, commit) in frames {
            b.frame_of(pgno, commit, &page2);
        }
        b.bytes
    };
    let lz = |b: &[u8]| replica::lz4::compress(b);
    let sound = wal(&[(2, pages)]);
    let mut flipped = sound.clone();
    let at = flipped.len() - 100;
    flipped[at] ^= 1;
    let cases: Vec<(&str, Vec<Segment>)> = vec![
        (
            "SQLite would call the database malformed",
            vec![(0, 0, lz(&wal(&[(2, 0xffff_ffff)])))],
        ),
        (
            "the database header says",
            vec![(0, 0, lz(&wal(&[(2, pages + 3)])))],
        ),
        (
            "after its last commit frame",
            vec![(0, 0, lz(&wal(&[(2, 0)]))), (1, 0, lz(&sound))],
        ),
        ("frame checksum mismatch", vec![(0, 0, lz(&flipped))]),
        ("bad WAL magic", vec![(0, 0, zeros_lz4(64 << 20))]),
    ];
    for (i, (needle, segments)) in cases.into_iter().enumerate() {
        let url = file_replica(&dir.path().join(format!("r{i}")), &snapshot, segments);
        let out_dir = tempfile::tempdir().unwrap();
        let out = out_dir.path().join("out.db");
        let restored = run(&["restore", &url, "-o", out.to_str().unwrap()], None);
        assert_eq!(restored.code, 2, "{needle}: {}", restored.stderr);
        assert!(
            restored.stderr.contains(needle),
            "{needle}: {}",
            restored.stderr
        );
        assert!(names(out_dir.path()).is_empty());
        let verified = Command::new(bin()).args(["verify", &url]).output().unwrap();
        let text = String::from_utf8_lossy(&verified.stdout);
        assert_eq!(verified.status.code(), Some(1), "{needle}: {text}");
        assert!(text.contains(needle), "{needle}: verify said {text}");
        assert_eq!(
            text.lines().filter(|l| l.starts_with("  ")).count(),
            1,
            "{needle}: one defect, once: {text}"
        );
    }
    // The sound WAL restores, and verify passes it.
    let url = file_replica(
        &dir.path().join("sound"),
        &snapshot,
        vec![(0, 0, lz(&sound))],
    );
    let verified = Command::new(bin()).args(["verify", &url]).output().unwrap();
    assert!(
        verified.status.success(),
        "{}",
        String::from_utf8_lossy(&verified.stdout)
    );
}
