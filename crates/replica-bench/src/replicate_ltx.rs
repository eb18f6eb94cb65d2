//! Benchmark 10: `replica replicate` into the LTX layout against
//! `litestream replicate` 0.5.17, the same Litestream 0.5 config file and
//! the same paced load: CPU seconds per MiB of WAL shipped and the
//! commit-to-shipped lag (to a file replica; a poller reads each new L0
//! file's WAL fields), at 10 ms intervals and at Litestream's defaults
//! (1 s), peak RSS and local disk; and S3 requests by kind on a moto server
//! (its request log) during the load and during an idle minute.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::replicate::{config, run_pair, Flavor, Outcome, ReplicateSizes, Schedule};
use crate::restore::Moto;
use crate::Figure;

/// Sizes of benchmark 10.
pub(crate) struct LtxReplicateSizes {
    /// The load (at 10 ms intervals; the default-interval run writes the
    /// same number of transactions).
    pub(crate) load: ReplicateSizes,
    /// How long the idle phase of the request count lasts.
    pub(crate) idle: Duration,
    /// How long after the load the idle phase starts (work that falls due
    /// after the load, a first compaction and retention pass, is done).
    pub(crate) settle: Duration,
}

/// Requests by kind.
type Kinds = BTreeMap<&'static str, u64>;

/// Requests by kind (LIST, GET, HEAD, PUT, DELETE) in moto's request log
/// lines `lines`.
fn kinds(lines: &[String]) -> Kinds {
    let mut out = BTreeMap::new();
    for line in lines {
        let Some(request) = line.split('"').nth(1) else {
            continue;
        };
        let mut parts = request.split_whitespace();
        let (Some(method), Some(target)) = (parts.next(), parts.next()) else {
            continue;
        };
        let (path, query) = target.split_once('?').unwrap_or((target, ""));
        let bucket_only = path.trim_matches('/').split('/').count() <= 1;
        let kind = match method {
            "GET" if query.contains("list-type") || bucket_only => "LIST",
            "GET" => "GET",
            "HEAD" => "HEAD",
            "PUT" => "PUT",
            "POST" if query.contains("delete") => "DELETE",
            "POST" => "PUT",
            "DELETE" => "DELETE",
            _ => continue,
        };
        *out.entry(kind).or_default() += 1;
    }
    out
}

fn log_lines(log: &Path) -> Vec<String> {
    std::fs::read_to_string(log)
        .unwrap_or_default()
        .lines()
        .filter(|l| l.contains("HTTP/1."))
        .map(str::to_owned)
        .collect()
}

/// S3 requests of `program` replicating under the load, then idle.
fn requests(
    program: &Path,
    args: &[&str],
    dir: &Path,
    s: &LtxReplicateSizes,
) -> Option<(Kinds, Kinds)> {
    std::fs::create_dir_all(dir).ok()?;
    let log = dir.join("moto.log");
    let moto = Moto::start_logging(Some(&log))?;
    let db = dir.join("source.db");
    let conn = rusqlite::Connection::open(&db).expect("open");
    conn.pragma_update(None, "journal_mode", "wal")
        .expect("wal");
    conn.busy_timeout(Duration::from_secs(10)).expect("busy");
    crate::workload::create_schema(&conn);
    let replica = format!(
        "      type: s3\n      bucket: bench\n      path: db\n      endpoint: {}\n      region: us-east-1\n      force-path-style: true\n",
        moto.endpoint
    );
    let config = config(dir, &db, Flavor::Ltx, "1s", &replica);
    let before = log_lines(&log).len();
    let mut child = Command::new(program)
        .args(args)
        .arg(&config)
        .env("AWS_ACCESS_KEY_ID", "test")
        .env("AWS_SECRET_ACCESS_KEY", "test")
        .env("AWS_ALLOW_HTTP", "true")
        .env_remove("AWS_ENDPOINT")
        .env_remove("AWS_CA_BUNDLE")
        .stdout(Stdio::null())
        .stderr(crate::replicate::tool_log(dir))
        .spawn()
        .expect("the replicator starts");
    std::thread::sleep(Duration::from_millis(1500));
    let schedule = Schedule::start(&s.load);
    for round in 0..s.load.transactions {
        schedule.wait(round);
        let tx = conn.unchecked_transaction().expect("begin");
        crate::workload::insert_orders(&tx, round * 20, 20);
        tx.commit().expect("commit");
    }
    schedule.finish(s.load.transactions);
    // Everything shipped (Litestream's default sync is 1 s), then the work
    // that falls due after a load, then idle.
    std::thread::sleep(Duration::from_secs(3));
    let loaded = log_lines(&log);
    std::thread::sleep(s.settle);
    let settled = log_lines(&log);
    let started_idle = Instant::now();
    std::thread::sleep(s.idle);
    let idle_lines = log_lines(&log);
    let idle_for = started_idle.elapsed();
    // SAFETY: signalling and reaping the child started above, by its PID.
    unsafe {
        libc::kill(child.id() as libc::pid_t, libc::SIGTERM);
    }
    let _ = child.wait();
    let load = kinds(&loaded[before.min(loaded.len())..]);
    let idle = kinds(&idle_lines[settled.len().min(idle_lines.len())..]);
    eprintln!(
        "  {}: requests during the load {load:?}, during {:.0} s idle {idle:?}",
        program.display(),
        idle_for.as_secs_f64()
    );
    Some((load, idle))
}

fn show(m: &BTreeMap<&'static str, u64>) -> String {
    if m.is_empty() {
        return "none".into();
    }
    m.iter()
        .map(|(k, v)| format!("{k} {v}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Benchmark 10. Needs litestream 0.5 (`REPLICA_LITESTREAM_05`), the
/// `replica` binary (`REPLICA_BIN`) and, for the request counts,
/// `moto_server`.
pub(crate) fn replicate_ltx(scratch: &Path, s: &LtxReplicateSizes) -> Vec<Figure> {
    let (litestream, ours) = match crate::binaries(
        "REPLICA_LITESTREAM_05",
        "10. replicate into LTX: replica vs litestream 0.5.17",
        "<= 0.5 (CPU per MiB)",
    ) {
        Ok(both) => both,
        Err(not_run) => return not_run,
    };
    let theirs_args = ["replicate", "-config"];
    let ours_args = ["replicate", "--config"];
    let mut figures = Vec::new();
    for (interval, tag) in [("10ms", "10 ms"), ("1s", "1 s (defaults)")] {
        let pair = run_pair(
            (litestream.as_path(), &theirs_args),
            (ours.as_path(), &ours_args),
            scratch,
            &format!("ltx-{interval}"),
            &s.load,
            Flavor::Ltx,
            interval,
        );
        figures.extend(rows(
            &pair.ours,
            &pair.theirs,
            tag,
            s.load.transactions,
            pair.runs,
        ));
    }
    match (
        requests(
            &litestream,
            &theirs_args,
            &scratch.join("ltx-s3-litestream"),
            s,
        ),
        requests(&ours, &ours_args, &scratch.join("ltx-s3-replica"), s),
    ) {
        (Some((t_load, t_idle)), Some((o_load, o_idle))) => {
            let total = |m: &BTreeMap<&str, u64>| m.values().sum::<u64>() as f64;
            let no_more = o_load
                .iter()
                .all(|(k, v)| *v <= t_load.get(k).copied().unwrap_or(0));
            figures.push(Figure {
                bench: format!(
                    "10g. S3 requests (moto) during {} transactions, by kind",
                    s.load.transactions
                ),
                ours: show(&o_load),
                baseline: show(&t_load),
                ratio: total(&o_load) / total(&t_load),
                target: "no kind above litestream's".into(),
                met: Some(no_more),
            });
            let lists = o_idle.get("LIST").copied().unwrap_or(0);
            figures.push(Figure {
                bench: format!(
                    "10h. S3 requests while idle for {:.0} s ({:.0} s after the load)",
                    s.idle.as_secs_f64(),
                    s.settle.as_secs_f64() + 3.0
                ),
                ours: show(&o_idle),
                baseline: show(&t_idle),
                ratio: total(&o_idle) / total(&t_idle).max(1.0),
                target: "0 LISTs".into(),
                met: Some(lists == 0),
            });
        }
        _ => figures.push(Figure {
            bench: "10g. S3 requests: not run (no moto_server)".into(),
            ours: "-".into(),
            baseline: "-".into(),
            ratio: f64::NAN,
            target: "no kind above litestream's".into(),
            met: None,
        }),
    }
    figures
}

fn rows(o: &Outcome, theirs: &Outcome, tag: &str, transactions: u64, runs: usize) -> Vec<Figure> {
    let per_mib = |x: &Outcome| x.cpu_secs / x.wal_mib;
    let cpu = per_mib(o) / per_mib(theirs);
    vec![
        Figure {
            bench: format!(
                "10. replicate into LTX at {tag}: CPU seconds per MiB of WAL shipped ({transactions} \
                 transactions, {:.1} MiB by replica, {:.1} MiB by litestream 0.5.17; every 10, 10b, 10c row: \
                 medians of {runs} runs)",
                o.wal_mib, theirs.wal_mib
            ),
            ours: format!("{:.3} s/MiB", per_mib(o)),
            baseline: format!("{:.3} s/MiB", per_mib(theirs)),
            ratio: cpu,
            target: "<= 0.5".into(),
            met: Some(cpu <= 0.5),
        },
        Figure {
            bench: format!("10b. LTX at {tag}: commit-to-shipped lag p50 / p99"),
            ours: format!("{:.1} / {:.1} ms", o.p50_ms, o.p99_ms),
            baseline: format!("{:.1} / {:.1} ms", theirs.p50_ms, theirs.p99_ms),
            ratio: o.p99_ms / theirs.p99_ms,
            target: "<= 1 (both)".into(),
            met: Some(o.p50_ms <= theirs.p50_ms && o.p99_ms <= theirs.p99_ms),
        },
        Figure {
            bench: format!("10c. LTX at {tag}: peak RSS / peak local disk"),
            ours: format!("{:.1} MiB / {:.1} MiB", o.rss_mib, o.local_mib),
            baseline: format!("{:.1} MiB / {:.1} MiB", theirs.rss_mib, theirs.local_mib),
            ratio: o.local_mib / theirs.local_mib,
            target: "disk <= 1".into(),
            met: Some(o.local_mib <= theirs.local_mib),
        },
    ]
}
