//! Benchmark 11: many databases in one process, `replica replicate` against
//! `litestream replicate` 0.5.17 with the same Litestream 0.5 config (one
//! directory entry, a file replica, default intervals).
//!
//! N small databases of the orders workload are created; each tool starts
//! on them and is timed until every database has its first LTX file; then
//! it idles (CPU over the idle window; RSS, descriptors and threads at its
//! end), then 1 % of the databases (at least one) take a transaction every
//! 100 ms (CPU per MiB the replica tree grew). After SIGTERM, every active
//! database and a sample of 100 others are restored (by `replica restore`,
//! from each tool's replica) and compared with their source.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::Figure;

/// Sizes of benchmark 11.
pub(crate) struct ManySizes {
    /// Database counts (`REPLICA_BENCH_MANY=100,1000` overrides them).
    pub(crate) counts: Vec<usize>,
    /// The idle window.
    pub(crate) idle: Duration,
    /// The active window.
    pub(crate) active: Duration,
    /// How long a tool may take to replicate every database.
    pub(crate) start_limit: Duration,
}

/// How long a tool settles after replicating everything before the idle
/// window starts: past each database's first L1 compaction (30 s after its
/// first L0 file, Litestream 0.5's default) and the release that follows
/// (10 s of quiet), so the window measures the steady state, not the tail
/// of start-up.
const SETTLE: Duration = Duration::from_secs(45);

/// A process's use of the machine, from `/proc`.
#[derive(Clone, Copy, Default)]
struct Usage {
    rss_kib: u64,
    fds: u64,
    threads: u64,
    cpu_secs: f64,
}

fn usage(pid: u32) -> Usage {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
    };
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command name (which may hold spaces): utime, stime
    // are the 14th and 15th fields of the line.
    let after = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    Usage {
        rss_kib: field("VmRSS:"),
        fds: std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, |d| d.count() as u64),
        threads: field("Threads:"),
        cpu_secs: (ticks(11) + ticks(12)) / hz,
    }
}

/// What one tool did with N databases.
struct Outcome {
    /// Databases with a replica when the start limit ended.
    replicated: usize,
    /// Seconds until every database had its first LTX file.
    start_secs: Option<f64>,
    /// The most threads and descriptors seen while starting (sampled).
    start_peak: Usage,
    idle: Usage,
    idle_cpu: f64,
    /// Held at the end of the active window, 1 % of the databases written.
    active: Usage,
    active_cpu: f64,
    shipped_mib: f64,
    checked: usize,
    restored: usize,
    /// Why it stopped early, if it did.
    exited: Option<String>,
}

fn name(i: usize) -> String {
    format!("db-{i:05}.db")
}

/// N databases of the orders workload (20 orders each) in `data`.
fn create(data: &Path, n: usize) {
    std::fs::create_dir_all(data).expect("data dir");
    for i in 0..n {
        let conn = rusqlite::Connection::open(data.join(name(i))).expect("open");
        conn.pragma_update(None, "journal_mode", "wal")
            .expect("wal");
        conn.pragma_update(None, "synchronous", "OFF")
            .expect("sync");
        crate::workload::create_schema(&conn);
        crate::workload::insert_orders(&conn, 0, 20);
    }
}

/// Whether database `i` has a replica (an L0 or snapshot LTX file).
fn has_replica(rep: &Path, i: usize) -> bool {
    ["0", "0000", "9", "0009"].iter().any(|level| {
        std::fs::read_dir(rep.join(name(i)).join("ltx").join(level))
            .is_ok_and(|mut d| d.next().is_some())
    })
}

fn stop(child: &mut Child) {
    // SAFETY: signalling the child this benchmark started, by its PID.
    unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGTERM) };
    let until = Instant::now() + Duration::from_secs(120);
    while Instant::now() < until {
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    let _ = child.wait();
}

fn run(program: &Path, args: &[&str], dir: &Path, n: usize, s: &ManySizes) -> Outcome {
    let data = dir.join("data");
    let rep = dir.join("replica");
    create(&data, n);
    let config = dir.join("litestream.yml");
    std::fs::write(
        &config,
        format!(
            "dbs:\n  - dir: {}\n    pattern: \"*.db\"\n    replica:\n      url: file://{}\n",
            data.display(),
            rep.display()
        ),
    )
    .expect("config");
    let log = std::fs::File::create(dir.join("log")).expect("log");
    let mut child = Command::new(program)
        .args(args)
        .arg(&config)
        .stdout(Stdio::null())
        .stderr(Stdio::from(log))
        .spawn()
        .expect("the replicator starts");
    let pid = child.id();
    let started = Instant::now();
    let mut done = vec![false; n];
    let mut replicated = 0;
    let mut exited = None;
    let mut peak = Usage::default();
    while replicated < n && started.elapsed() < s.start_limit {
        if let Ok(Some(status)) = child.try_wait() {
            exited = Some(format!("exited with {status} after {replicated} of {n}"));
            break;
        }
        let now = usage(pid);
        peak.threads = peak.threads.max(now.threads);
        peak.fds = peak.fds.max(now.fds);
        for (i, d) in done.iter_mut().enumerate() {
            if !*d && has_replica(&rep, i) {
                *d = true;
                replicated += 1;
            }
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    let start_secs = (replicated == n).then(|| started.elapsed().as_secs_f64());
    let mut outcome = Outcome {
        replicated,
        start_secs,
        start_peak: peak,
        idle: Usage::default(),
        idle_cpu: f64::NAN,
        active: Usage::default(),
        active_cpu: f64::NAN,
        shipped_mib: f64::NAN,
        checked: 0,
        restored: 0,
        exited,
    };
    if outcome.exited.is_some() {
        let _ = child.wait();
        return outcome;
    }
    // Idle: what the tool costs while nothing is written, once it has
    // settled (see SETTLE: past the first L1 compaction and the release,
    // so both tools are measured in their steady state).
    std::thread::sleep(SETTLE);
    let before = usage(pid);
    std::thread::sleep(s.idle);
    outcome.idle = usage(pid);
    outcome.idle_cpu = outcome.idle.cpu_secs - before.cpu_secs;
    // Active: 1 % of the databases, a transaction each every 100 ms.
    let active: Vec<usize> = (0..n).step_by(100).collect();
    let grown_before = crate::replicate::tree_bytes(&rep);
    let cpu_before = usage(pid).cpu_secs;
    let stop_writing = Arc::new(AtomicBool::new(false));
    let writer = {
        let (data, active, stop) = (data.clone(), active.clone(), stop_writing.clone());
        std::thread::spawn(move || {
            let conns: Vec<rusqlite::Connection> = active
                .iter()
                .map(|i| {
                    let c = rusqlite::Connection::open(data.join(name(*i))).expect("open");
                    c.busy_timeout(Duration::from_secs(10)).expect("busy");
                    c
                })
                .collect();
            let mut round = 1;
            while !stop.load(Ordering::SeqCst) {
                for c in &conns {
                    crate::workload::insert_orders(c, round * 5 + 1000, 5);
                }
                round += 1;
                std::thread::sleep(Duration::from_millis(100));
            }
        })
    };
    std::thread::sleep(s.active);
    outcome.active = usage(pid);
    stop_writing.store(true, Ordering::SeqCst);
    writer.join().expect("writer");
    outcome.active_cpu = usage(pid).cpu_secs - cpu_before;
    std::thread::sleep(Duration::from_secs(3));
    outcome.shipped_mib = (crate::replicate::tree_bytes(&rep).saturating_sub(grown_before)) as f64
        / f64::from(1 << 20);
    stop(&mut child);
    // Every active database and a sample of 100 others restore to their rows.
    let ours = std::env::var_os("REPLICA_BIN").map(PathBuf::from);
    let mut sample: Vec<usize> = active;
    let step = (n / 100).max(1);
    sample.extend(
        (step / 2..n)
            .step_by(step)
            .filter(|i| i % 100 != 0)
            .take(100),
    );
    if let Some(ours) = ours {
        for i in sample {
            outcome.checked += 1;
            let out = dir.join(format!("restored-{i}.db"));
            let ok = Command::new(&ours)
                .args(["restore", "-o"])
                .arg(&out)
                .arg(format!("file://{}", rep.join(name(i)).display()))
                .output()
                .is_ok_and(|o| o.status.success());
            if ok
                && crate::restore::rows_digest(&out)
                    == crate::restore::rows_digest(&data.join(name(i)))
            {
                outcome.restored += 1;
            }
            let _ = std::fs::remove_file(&out);
        }
    }
    outcome
}

/// Benchmark 11. Needs litestream 0.5 (`REPLICA_LITESTREAM_05`) and the
/// `replica` binary (`REPLICA_BIN`).
pub(crate) fn many(scratch: &Path, s: &ManySizes) -> Vec<Figure> {
    let (litestream, ours) = match crate::binaries(
        "REPLICA_LITESTREAM_05",
        "11. many databases: replica vs litestream 0.5.17",
        "report",
    ) {
        Ok(both) => both,
        Err(not_run) => return not_run,
    };
    let counts: Vec<usize> = std::env::var("REPLICA_BENCH_MANY")
        .ok()
        .map(|v| v.split(',').filter_map(|n| n.trim().parse().ok()).collect())
        .unwrap_or_else(|| s.counts.clone());
    let mut figures = Vec::new();
    let mut held = Vec::new();
    for n in counts {
        eprintln!("  benchmark 11: {n} databases, litestream 0.5.17");
        let theirs = run(
            &litestream,
            &["replicate", "-config"],
            &scratch.join(format!("many-{n}-litestream")),
            n,
            s,
        );
        eprintln!("  benchmark 11: {n} databases, replica");
        let o = run(
            &ours,
            &["replicate", "--config"],
            &scratch.join(format!("many-{n}-replica")),
            n,
            s,
        );
        figures.extend(rows(n, &o, &theirs, s));
        held.push(Held {
            n,
            ours: o.start_secs.map(|_| o.idle),
            theirs: theirs.start_secs.map(|_| theirs.idle),
        });
    }
    figures.extend(growth(&held));
    figures
}

/// What each tool held idle at one count; `None` where it did not
/// replicate every database.
struct Held {
    n: usize,
    ours: Option<Usage>,
    theirs: Option<Usage>,
}

/// What one more idle database costs, from the smallest and the largest
/// count of the run (RSS per database, and the change in threads), so the
/// fixed base of each tool does not count. Only a tool that replicated
/// every database at both counts is measured.
fn growth(held: &[Held]) -> Option<Figure> {
    let small = held.iter().min_by_key(|h| h.n)?;
    let large = held.iter().max_by_key(|h| h.n)?;
    if large.n == small.n {
        return None;
    }
    let dbs = (large.n - small.n) as f64;
    let per_db = |l: &Usage, s: &Usage| (l.rss_kib as f64 - s.rss_kib as f64) / dbs;
    let threads = |l: &Usage, s: &Usage| l.threads as i64 - s.threads as i64;
    let both = |l: Option<Usage>, s: Option<Usage>| {
        l.zip(s).filter(|(l, s)| l.rss_kib > 0 && s.rss_kib > 0)
    };
    let shown = |pair: Option<(Usage, Usage)>| match pair {
        Some((l, s)) => format!(
            "{:.0} KiB RSS per db, {:+} threads",
            per_db(&l, &s),
            threads(&l, &s)
        ),
        None => "did not replicate every database at both counts".into(),
    };
    let (ours, theirs) = (
        both(large.ours, small.ours),
        both(large.theirs, small.theirs),
    );
    let ratio = match (ours, theirs) {
        (Some((ol, os)), Some((tl, ts))) => per_db(&ol, &os) / per_db(&tl, &ts),
        _ => f64::NAN,
    };
    Some(Figure {
        bench: format!(
            "11f. idle cost of one more database, {} to {} databases",
            small.n, large.n
        ),
        ours: shown(ours),
        baseline: shown(theirs),
        ratio,
        target: "< 64 KiB per db, threads within 4 at any N".into(),
        met: Some(ours.is_some_and(|(l, s)| per_db(&l, &s) < 64.0 && threads(&l, &s) <= 4)),
    })
}

fn start(o: &Outcome, n: usize) -> String {
    match (&o.exited, o.start_secs) {
        (Some(why), _) => why.clone(),
        (None, Some(secs)) => format!(
            "{secs:.1} s (peak {} threads, {} fds)",
            o.start_peak.threads, o.start_peak.fds
        ),
        (None, None) => format!("{} of {n} within the limit", o.replicated),
    }
}

fn rows(n: usize, o: &Outcome, t: &Outcome, s: &ManySizes) -> Vec<Figure> {
    let idle = |x: &Outcome| {
        format!(
            "{:.2} s CPU ({:.1} % of a core)",
            x.idle_cpu,
            100.0 * x.idle_cpu / s.idle.as_secs_f64()
        )
    };
    let held = |x: &Outcome| {
        format!(
            "{:.0} MiB RSS, {} fds, {} threads",
            x.idle.rss_kib as f64 / 1024.0,
            x.idle.fds,
            x.idle.threads
        )
    };
    let per_mib = |x: &Outcome| x.active_cpu / x.shipped_mib;
    let both_started = o.start_secs.is_some() && t.start_secs.is_some();
    vec![
        Figure {
            bench: format!("11. {n} databases: time until every one is replicated"),
            ours: start(o, n),
            baseline: start(t, n),
            ratio: o.start_secs.unwrap_or(f64::NAN) / t.start_secs.unwrap_or(f64::NAN),
            target: "report".into(),
            met: None,
        },
        Figure {
            bench: format!(
                "11b. {n} databases idle for {:.0} s: CPU",
                s.idle.as_secs_f64()
            ),
            ours: idle(o),
            baseline: idle(t),
            ratio: o.idle_cpu / t.idle_cpu,
            target: "< 5 % of a core".into(),
            met: Some(o.start_secs.is_some() && o.idle_cpu / s.idle.as_secs_f64() < 0.05),
        },
        Figure {
            bench: format!("11c. {n} databases idle: memory, descriptors, threads"),
            ours: held(o),
            baseline: held(t),
            ratio: o.idle.fds as f64 / t.idle.fds as f64,
            target: "fds < 1.5 per db".into(),
            met: Some(o.start_secs.is_some() && (o.idle.fds as f64) < 1.5 * n as f64),
        },
        Figure {
            bench: format!("11c'. {n} databases, 1 % active: descriptors"),
            ours: format!("{} fds", o.active.fds),
            baseline: format!("{} fds", t.active.fds),
            ratio: o.active.fds as f64 / t.active.fds as f64,
            target: "fds < 1.5 per db".into(),
            met: Some(o.start_secs.is_some() && (o.active.fds as f64) < 1.5 * n as f64),
        },
        Figure {
            bench: format!(
                "11d. {n} databases, 1 % active for {:.0} s: CPU s per MiB the replica grew",
                s.active.as_secs_f64()
            ),
            ours: format!("{:.2} s/MiB ({:.2} MiB)", per_mib(o), o.shipped_mib),
            baseline: format!("{:.2} s/MiB ({:.2} MiB)", per_mib(t), t.shipped_mib),
            ratio: per_mib(o) / per_mib(t),
            target: "report".into(),
            met: None,
        },
        Figure {
            bench: format!("11e. {n} databases: restores equal to their source"),
            ours: format!("{} of {}", o.restored, o.checked),
            baseline: format!("{} of {}", t.restored, t.checked),
            ratio: f64::NAN,
            target: "all".into(),
            met: Some(both_started && o.restored == o.checked && o.checked > 0),
        },
    ]
}
