//! Benchmark 8: `replica replicate` against `litestream replicate` 0.3.13,
//! the same write load, the same config file, to a file replica.
//!
//! A writer commits realistic transactions (orders with text, two indexes)
//! at a steady pace while the tool replicates; a poller watches the
//! replica's WAL directory and decodes every new segment. For each
//! transaction the writer notes when its commit returned and where it ended
//! in the WAL (SQLite's WAL hook gives the frame count; the WAL header's
//! salt-1, which grows by one per restart, gives the index); the poller
//! notes when a segment covering that point appeared. Reported: the tool's
//! CPU seconds per MiB of WAL shipped (from `wait4`), the commit-to-shipped
//! lag at p50 and p99, and peak RSS (`VmHWM` just before SIGTERM).

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::Figure;

/// Sizes of the replicate benchmark.
pub(crate) struct ReplicateSizes {
    /// Transactions written per tool.
    pub(crate) transactions: u64,
    /// The time between commits: the `i`-th begins `i × spacing` after the
    /// load starts (see [`Schedule`]).
    pub(crate) spacing: Duration,
    /// Runs of each tool per setting, alternating which goes first; each
    /// figure is the median over them (see [`run_pair`]).
    pub(crate) runs: usize,
}

/// Commits on a schedule, not after a pause each: the load lasts
/// `transactions × spacing` whatever each transaction takes (a whole number
/// of 1 s rounds in the sizes chosen), so every phase of a tool's rounds
/// meets as many commits as any other. With a pause after each, the load's
/// length varied with the machine, and its last part-round counted the
/// commits of one phase twice: p50 moved ±30 ms between runs of one tool at
/// 1 s (about 16 rounds).
pub(crate) struct Schedule {
    start: Instant,
    spacing: Duration,
}

impl Schedule {
    /// A schedule starting now.
    pub(crate) fn start(s: &ReplicateSizes) -> Schedule {
        Schedule {
            start: Instant::now(),
            spacing: s.spacing,
        }
    }

    /// Waits for the slot of commit `i` (at once when behind).
    pub(crate) fn wait(&self, i: u64) {
        let due = self.start + self.spacing * u32::try_from(i).unwrap_or(u32::MAX);
        std::thread::sleep(due.saturating_duration_since(Instant::now()));
    }

    /// How far the load ran past its scheduled length (transactions slower
    /// than `spacing` on this machine): printed, since the rounds are then
    /// no longer evenly met.
    pub(crate) fn finish(&self, transactions: u64) {
        let planned = self.spacing * u32::try_from(transactions).unwrap_or(u32::MAX);
        let took = self.start.elapsed();
        if took > planned + (planned / 100).max(self.spacing * 2) {
            eprintln!(
                "  the load took {:.2} s, not the {:.2} s scheduled: its commits are not even",
                took.as_secs_f64(),
                planned.as_secs_f64()
            );
        }
    }
}

/// One transaction: when its commit returned, its WAL salt-1 and end.
struct Commit {
    at: Instant,
    salt1: u32,
    end: u64,
}

/// A segment seen in the replica: index, end offset, when first seen.
struct Seen {
    index: u64,
    end: u64,
    at: Instant,
}

#[derive(Clone, Debug)]
pub(crate) struct Outcome {
    pub(crate) cpu_secs: f64,
    pub(crate) wal_mib: f64,
    pub(crate) p50_ms: f64,
    pub(crate) p99_ms: f64,
    pub(crate) rss_mib: f64,
    /// Peak disk space of the tool's local state beside the database (its
    /// hidden directories: our shadow, Litestream's `-litestream` dir),
    /// allocated blocks as `du` counts them, sampled every 5 ms.
    pub(crate) local_mib: f64,
}

/// What a tool writes: Litestream 0.3's generations or 0.5's LTX files.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Flavor {
    Generations,
    Ltx,
}

/// The config file both tools run: a Litestream 0.3 one (a `replicas`
/// list) or a 0.5 one (a single `replica`); `interval` is the monitor and
/// sync interval; `replica` the replica's keys (YAML lines, indented 6).
pub(crate) fn config(
    dir: &Path,
    db: &Path,
    flavor: Flavor,
    interval: &str,
    replica: &str,
) -> PathBuf {
    let path = dir.join("litestream.yml");
    let text = match flavor {
        Flavor::Generations => format!(
            "dbs:\n  - path: {}\n    monitor-interval: {interval}\n    checkpoint-interval: 1s\n    \
             min-checkpoint-page-count: 1000\n    replicas:\n      - sync-interval: {interval}\n        \
             snapshot-interval: 24h\n{}",
            db.display(),
            replica.replace("\n      ", "\n        ").replacen("      ", "        ", 1)
        ),
        Flavor::Ltx => format!(
            "snapshot:\n  interval: 24h\ndbs:\n  - path: {}\n    monitor-interval: {interval}\n    \
             checkpoint-interval: 1s\n    min-checkpoint-page-count: 1000\n    replica:\n      \
             sync-interval: {interval}\n{replica}",
            db.display()
        ),
    };
    std::fs::write(&path, text).expect("config");
    path
}

/// A file replica at `dir/replica`, as config lines.
pub(crate) fn file_replica(dir: &Path) -> String {
    format!("      url: file://{}/replica\n", dir.display())
}

fn salt1(wal: &Path) -> u32 {
    use std::os::unix::fs::FileExt;
    let mut b = [0u8; 4];
    std::fs::File::open(wal)
        .and_then(|f| f.read_exact_at(&mut b, 16))
        .map_or(0, |()| u32::from_be_bytes(b))
}

/// Watches the replica at `root` for new WAL: each new segment of
/// `generations/*/wal/` decoded, or each new `ltx/0/` file's header (its
/// WAL salt-1 standing for the index, so the base is 0).
fn poll(root: PathBuf, stop: Arc<AtomicBool>, flavor: Flavor) -> (Vec<Seen>, Option<u32>, u64) {
    if flavor == Flavor::Ltx {
        return poll_ltx(root, stop);
    }
    let mut known = HashSet::new();
    let mut seen = Vec::new();
    let mut base_salt = None;
    let mut bytes = 0u64;
    loop {
        let last = stop.load(Ordering::SeqCst);
        let gens = std::fs::read_dir(root.join("generations"))
            .into_iter()
            .flatten();
        for g in gens.flatten() {
            let dir = g.path().join("wal");
            for e in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
                let name = e.file_name().to_string_lossy().into_owned();
                let Some(stem) = name.strip_suffix(".wal.lz4") else {
                    continue;
                };
                if !known.insert(name.clone()) {
                    continue;
                }
                let at = Instant::now();
                let Some((i, o)) = stem.split_once('_') else {
                    continue;
                };
                let (Ok(index), Ok(offset)) =
                    (u64::from_str_radix(i, 16), u64::from_str_radix(o, 16))
                else {
                    continue;
                };
                let Ok(raw) = std::fs::read(e.path()) else {
                    continue;
                };
                let Ok(plain) = replica_core::lz4::decompress(&raw) else {
                    continue;
                };
                // Any segment at offset 0 starts with its WAL's header: salt-1
                // grows by one per index, so it gives index 0's salt-1 (the
                // first index shipped is not always 0).
                if offset == 0 && plain.len() >= 20 && base_salt.is_none() {
                    let salt = u32::from_be_bytes(plain[16..20].try_into().expect("4"));
                    base_salt = Some(salt.wrapping_sub(index as u32));
                }
                bytes += plain.len() as u64;
                seen.push(Seen {
                    index,
                    end: offset + plain.len() as u64,
                    at,
                });
            }
        }
        if last {
            return (seen, base_salt, bytes);
        }
        std::thread::sleep(Duration::from_millis(2));
    }
}

fn poll_ltx(root: PathBuf, stop: Arc<AtomicBool>) -> (Vec<Seen>, Option<u32>, u64) {
    let mut known = HashSet::new();
    let mut seen = Vec::new();
    let mut bytes = 0u64;
    let dir = root.join("ltx/0");
    loop {
        let last = stop.load(Ordering::SeqCst);
        for e in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if !name.ends_with(".ltx") || !known.insert(name.clone()) {
                continue;
            }
            let at = Instant::now();
            let Ok(raw) = std::fs::read(e.path()) else {
                known.remove(&name);
                continue;
            };
            let Ok(h) = replica_core::ltx::read_header(&raw, &name) else {
                known.remove(&name);
                continue;
            };
            bytes += h.wal_size.max(0) as u64;
            seen.push(Seen {
                index: u64::from(h.wal_salt1),
                end: (h.wal_offset + h.wal_size).max(0) as u64,
                at,
            });
        }
        if last {
            return (seen, Some(0), bytes);
        }
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// Where a tool's stderr goes: with `REPLICA_BENCH_KEEP_LOGS=DIR`,
/// `DIR/<run>.log` (named by the run's directory, which the benchmark
/// removes; to look into an odd figure, with `REPLICA_LOG=debug` for ours),
/// else nowhere.
pub(crate) fn tool_log(run: &Path) -> Stdio {
    let Some(logs) = std::env::var_os("REPLICA_BENCH_KEEP_LOGS") else {
        return Stdio::null();
    };
    let name = run.file_name().unwrap_or_default().to_string_lossy();
    let path = Path::new(&logs).join(format!("{name}.log"));
    std::fs::create_dir_all(&logs)
        .and_then(|()| std::fs::File::create(path))
        .map_or_else(|_| Stdio::null(), Stdio::from)
}

/// Bytes below `dir` (recursively), 0 if missing.
pub(crate) fn tree_bytes(dir: &Path) -> u64 {
    tree_sum(dir, std::fs::Metadata::len)
}

/// Disk space allocated below `dir` (recursively; what `du` counts: a
/// sparse file's holes take none), 0 if missing.
fn tree_allocated(dir: &Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    tree_sum(dir, |m| m.blocks() * 512)
}

fn tree_sum(dir: &Path, size: fn(&std::fs::Metadata) -> u64) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .map(|e| match e.file_type() {
            Ok(t) if t.is_dir() => tree_sum(&e.path(), size),
            _ => e.metadata().map_or(0, |m| size(&m)),
        })
        .sum()
}

/// Disk space of the hidden directories beside the database (local state).
fn local_state(dir: &Path) -> u64 {
    std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with('.'))
        .map(|e| tree_allocated(&e.path()))
        .sum()
}

pub(crate) fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

/// A tool to run: its program and the arguments before the config path.
pub(crate) type Tool<'a> = (&'a Path, &'a [&'a str]);

/// Both tools' figures for one setting, each the median over the runs (each
/// run's lag and CPU go to stderr only).
pub(crate) struct Pair {
    pub(crate) ours: Outcome,
    pub(crate) theirs: Outcome,
    /// How many runs of each tool the medians are over.
    pub(crate) runs: usize,
}

/// Runs each tool `s.runs` times under the same load (in
/// `scratch/<name>-{litestream,replica}-<run>`), alternating which goes
/// first (litestream on even runs at 10 ms, on odd ones at other intervals,
/// so that over a benchmark's two settings each goes first as often), each
/// on a quiet disk ([`run_one`] syncs first); each run's directory is
/// removed once measured. Every figure is the median over a tool's runs.
/// One run is at the mercy of the machine:
/// one upload stalled behind the disk's writeback moves a tool's p99 at
/// 1 s by hundreds of milliseconds (seen in session 17, for either tool).
pub(crate) fn run_pair(
    theirs: Tool,
    ours: Tool,
    scratch: &Path,
    name: &str,
    s: &ReplicateSizes,
    flavor: Flavor,
    interval: &str,
) -> Pair {
    let runs = s.runs.max(1);
    let offset = usize::from(interval != "10ms");
    let (mut t_all, mut o_all) = (Vec::new(), Vec::new());
    for run in 0..runs {
        let one = |(program, args): Tool, who: &str| {
            let dir = scratch.join(format!("{name}-{who}-{run}"));
            let outcome = run_one(program, args, &dir, s, flavor, interval);
            // Its WAL and replica (160 MiB in benchmark 8) are not needed
            // again, and the next runs' syncs need not write them back.
            let _ = std::fs::remove_dir_all(&dir);
            outcome
        };
        let (t, o) = if (run + offset) % 2 == 0 {
            let t = one(theirs, "litestream");
            (t, one(ours, "replica"))
        } else {
            let o = one(ours, "replica");
            (one(theirs, "litestream"), o)
        };
        eprintln!(
            "  {name} at {interval}, run {} of {runs}: lag p50 / p99 ours {:.1} / {:.1} ms, \
             theirs {:.1} / {:.1} ms; CPU ours {:.2} s, theirs {:.2} s",
            run + 1,
            o.p50_ms,
            o.p99_ms,
            t.p50_ms,
            t.p99_ms,
            o.cpu_secs,
            t.cpu_secs
        );
        t_all.push(t);
        o_all.push(o);
    }
    Pair {
        ours: median_outcome(&o_all),
        theirs: median_outcome(&t_all),
        runs,
    }
}

/// Each figure's median over `all` (the upper middle one of an even count),
/// figure by figure (they may come from different runs); `cpu_secs` is not
/// a median of its own but the one that makes `cpu_secs / wal_mib` the
/// median of the runs' CPU seconds per MiB.
fn median_outcome(all: &[Outcome]) -> Outcome {
    let median = |f: fn(&Outcome) -> f64| {
        let mut v: Vec<f64> = all.iter().map(f).collect();
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let wal_mib = median(|o| o.wal_mib);
    Outcome {
        // So that CPU per MiB is the median of the runs' CPU per MiB.
        cpu_secs: median(|o| o.cpu_secs / o.wal_mib) * wal_mib,
        wal_mib,
        p50_ms: median(|o| o.p50_ms),
        p99_ms: median(|o| o.p99_ms),
        rss_mib: median(|o| o.rss_mib),
        local_mib: median(|o| o.local_mib),
    }
}

/// Runs `program ARGS CONFIG` under the paced load, with a file replica,
/// after the disk has written back what earlier runs left (so that one
/// tool's writeback does not stall the next tool's fsyncs).
pub(crate) fn run_one(
    program: &Path,
    args: &[&str],
    dir: &Path,
    s: &ReplicateSizes,
    flavor: Flavor,
    interval: &str,
) -> Outcome {
    std::fs::create_dir_all(dir).expect("mkdir");
    // SAFETY: sync(2) takes no arguments and cannot fail.
    unsafe { libc::sync() };
    std::thread::sleep(Duration::from_secs(1));
    let db = dir.join("source.db");
    let mut conn = rusqlite::Connection::open(&db).expect("open");
    conn.pragma_update(None, "journal_mode", "wal")
        .expect("wal");
    conn.busy_timeout(Duration::from_secs(10)).expect("busy");
    crate::workload::create_schema(&conn);
    let frames = Arc::new(Mutex::new(0i32));
    let f = frames.clone();
    conn.wal_hook(Some(
        move |_: &mut rusqlite::hooks::Wal, pages: std::ffi::c_int| {
            *f.lock().expect("lock") = pages;
            Ok(())
        },
    ))
    .expect("wal hook");
    let page_size: u64 = conn
        .query_row("PRAGMA page_size", [], |r| r.get::<_, i64>(0))
        .expect("page size") as u64;
    let config = config(dir, &db, flavor, interval, &file_replica(dir));
    let mut child = Command::new(program)
        .args(args)
        .arg(&config)
        .stdout(Stdio::null())
        .stderr(tool_log(dir))
        .spawn()
        .expect("the replicator starts");
    let stop = Arc::new(AtomicBool::new(false));
    let poller = {
        let (root, stop) = (dir.join("replica"), stop.clone());
        std::thread::spawn(move || poll(root, stop, flavor))
    };
    let sampler = {
        let (dir, stop) = (dir.to_owned(), stop.clone());
        std::thread::spawn(move || {
            let mut peak = 0u64;
            while !stop.load(Ordering::SeqCst) {
                peak = peak.max(local_state(&dir));
                // Often: a shadow index can live for milliseconds only.
                std::thread::sleep(Duration::from_millis(5));
            }
            peak
        })
    };
    std::thread::sleep(Duration::from_millis(500));
    let wal = dir.join("source.db-wal");
    let mut commits = Vec::new();
    let schedule = Schedule::start(s);
    for round in 0..s.transactions {
        schedule.wait(round);
        let tx = conn.transaction().expect("begin");
        crate::workload::insert_orders(&tx, round * 20, 20);
        tx.execute(
            "UPDATE orders SET qty = qty + 1 WHERE id = ?1",
            [(round * 7) as i64 % (round as i64 * 20 + 1) + 1],
        )
        .expect("update");
        tx.commit().expect("commit");
        let at = Instant::now();
        let end = 32 + *frames.lock().expect("lock") as u64 * (24 + page_size);
        commits.push(Commit {
            at,
            salt1: salt1(&wal),
            end,
        });
    }
    schedule.finish(s.transactions);
    // Let the last transactions ship, then stop the tool.
    std::thread::sleep(Duration::from_secs(2));
    let rss_mib = std::fs::read_to_string(format!("/proc/{}/status", child.id()))
        .ok()
        .and_then(|t| {
            t.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|k| k.parse::<f64>().ok())
        })
        .map_or(f64::NAN, |kib| kib / 1024.0);
    // SAFETY: signalling and reaping the child started above, by its PID.
    let cpu_secs = unsafe {
        libc::kill(child.id() as libc::pid_t, libc::SIGTERM);
        let mut status = 0;
        let mut usage: libc::rusage = std::mem::zeroed();
        libc::wait4(child.id() as libc::pid_t, &mut status, 0, &mut usage);
        let secs = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
        secs(usage.ru_utime) + secs(usage.ru_stime)
    };
    let _ = child.try_wait();
    stop.store(true, Ordering::SeqCst);
    let (seen, base_salt, bytes) = poller.join().expect("poller");
    let local = sampler.join().expect("sampler");
    let base = base_salt.expect("the replica holds a WAL header");
    // Earliest time each (index) reached at least a given end.
    let mut by_index: BTreeMap<u64, Vec<(u64, Instant)>> = BTreeMap::new();
    for s in &seen {
        by_index.entry(s.index).or_default().push((s.end, s.at));
    }
    let mut lags: Vec<f64> = commits
        .iter()
        .filter_map(|c| {
            let index = u64::from(c.salt1.wrapping_sub(base));
            let shipped = seen
                .iter()
                .filter(|s| (s.index == index && s.end >= c.end) || s.index > index)
                .map(|s| s.at)
                .min()?;
            Some(shipped.saturating_duration_since(c.at).as_secs_f64() * 1000.0)
        })
        .collect();
    lags.sort_by(f64::total_cmp);
    assert!(
        lags.len() as u64 >= s.transactions * 99 / 100,
        "{} of {} transactions seen shipped",
        lags.len(),
        s.transactions
    );
    Outcome {
        cpu_secs,
        wal_mib: bytes as f64 / f64::from(1 << 20),
        p50_ms: percentile(&lags, 0.5),
        p99_ms: percentile(&lags, 0.99),
        rss_mib,
        local_mib: local as f64 / f64::from(1 << 20),
    }
}

/// Benchmark 8. Needs `litestream` (`REPLICA_LITESTREAM`) and the `replica`
/// binary (`REPLICA_BIN`, set by `cargo xtask bench`).
pub(crate) fn replicate(scratch: &Path, s: &ReplicateSizes) -> Vec<Figure> {
    let (litestream, ours) = match crate::binaries(
        "REPLICA_LITESTREAM",
        "8. replicate: replica vs litestream 0.3.13",
        "<= 0.5 (CPU per MiB)",
    ) {
        Ok(both) => both,
        Err(not_run) => return not_run,
    };
    let theirs_tool: Tool = (&litestream, &["replicate", "-config"]);
    let ours_tool: Tool = (&ours, &["replicate", "--config"]);
    let pair = |name: &str, interval: &str| {
        run_pair(
            theirs_tool,
            ours_tool,
            scratch,
            name,
            s,
            Flavor::Generations,
            interval,
        )
    };
    let at_10ms = pair("replicate", "10ms");
    // At Litestream's default intervals (1 s monitor and sync) too.
    let at_1s = pair("replicate-1s", "1s");
    let runs = at_10ms.runs;
    let (o, theirs, o_1s, theirs_1s) = (at_10ms.ours, at_10ms.theirs, at_1s.ours, at_1s.theirs);
    let per_mib = |x: &Outcome| x.cpu_secs / x.wal_mib;
    let cpu_ratio = per_mib(&o) / per_mib(&theirs);
    let cpu_ratio_1s = per_mib(&o_1s) / per_mib(&theirs_1s);
    let detail = format!(
        "{} transactions, {:.1} MiB of WAL shipped by replica, {:.1} MiB by litestream; \
         every row: medians of {runs} runs",
        s.transactions, o.wal_mib, theirs.wal_mib
    );
    vec![
        Figure {
            bench: format!("8. replicate CPU seconds per MiB of WAL shipped ({detail})"),
            ours: format!("{:.3} s/MiB", per_mib(&o)),
            baseline: format!("{:.3} s/MiB", per_mib(&theirs)),
            ratio: cpu_ratio,
            target: "<= 0.5".into(),
            met: Some(cpu_ratio <= 0.5),
        },
        Figure {
            bench: "8e. replicate CPU seconds per MiB at Litestream's default intervals (1 s)"
                .into(),
            ours: format!("{:.3} s/MiB", per_mib(&o_1s)),
            baseline: format!("{:.3} s/MiB", per_mib(&theirs_1s)),
            ratio: cpu_ratio_1s,
            target: "<= 0.5".into(),
            met: Some(cpu_ratio_1s <= 0.5),
        },
        Figure {
            bench: "8b. commit-to-shipped lag, p50".into(),
            ours: format!("{:.1} ms", o.p50_ms),
            baseline: format!("{:.1} ms", theirs.p50_ms),
            ratio: o.p50_ms / theirs.p50_ms,
            target: "<= 1".into(),
            met: Some(o.p50_ms <= theirs.p50_ms),
        },
        Figure {
            bench: "8c. commit-to-shipped lag, p99".into(),
            ours: format!("{:.1} ms", o.p99_ms),
            baseline: format!("{:.1} ms", theirs.p99_ms),
            ratio: o.p99_ms / theirs.p99_ms,
            target: "<= 1".into(),
            met: Some(o.p99_ms <= theirs.p99_ms),
        },
        Figure {
            bench: "8d. peak RSS while replicating".into(),
            ours: format!("{:.1} MiB", o.rss_mib),
            baseline: format!("{:.1} MiB", theirs.rss_mib),
            ratio: o.rss_mib / theirs.rss_mib,
            target: "report".into(),
            met: None,
        },
    ]
}
