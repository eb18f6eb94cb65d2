//! Benchmarks of replica (`cargo xtask bench`).
//!
//! Every figure is a ratio against a baseline measured in the same run, as
//! the median of several alternating repetitions, because these machines are
//! noisy. Prints a table and writes `report.json` and `report.md` into the
//! directory given as the first argument (default `target/bench`).
//!
//! `--quick` shrinks every size (for a smoke run); the figures in the README
//! come from a full run.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::TryStreamExt;
use object_store::memory::InMemory;
use object_store::path::Path as Key;
use object_store::{ObjectStore, ObjectStoreExt};
use replica_core::lz4::{compress_stream, decompress_stream};
use replica_core::{
    bytes_stream, reader_stream, Generation, Pos, ReplicaClient, WalSegmentCursor, WalSegmentInfo,
};
use replica_file::{FileClient, FileStore};
use replica_memory::MemoryClient;
use replica_object_store::{ObjectKeyStore, ObjectStoreClient};
use serde::Serialize;

mod many;
mod replicate;
mod replicate_ltx;
mod restore;
mod restore_ltx;
mod workload;

/// One line of the report.
#[derive(Debug, Serialize)]
struct Figure {
    bench: String,
    ours: String,
    baseline: String,
    /// ours / baseline (higher is better unless the target says otherwise).
    ratio: f64,
    target: String,
    met: Option<bool>,
}

struct Sizes {
    reps: usize,
    durable_writes: u64,
    listing_segments: u64,
    scaling: Vec<u64>,
    stream_bytes: usize,
    overhead_ops: u64,
    cursor_appends: u64,
    restore: restore::RestoreSizes,
    replicate: replicate::ReplicateSizes,
    replicate_ltx: replicate_ltx::LtxReplicateSizes,
    many: many::ManySizes,
}

impl Sizes {
    fn full() -> Self {
        Sizes {
            reps: 5,
            durable_writes: 400,
            listing_segments: 100_000,
            scaling: vec![10_000, 100_000, 1_000_000],
            stream_bytes: 1 << 30,
            overhead_ops: 20_000,
            cursor_appends: 2_000_000,
            restore: restore::RestoreSizes {
                database_bytes: 64 << 20,
                min_transactions: 1_000,
                reps: 3,
            },
            replicate: replicate::ReplicateSizes {
                transactions: 4_000,
                spacing: Duration::from_millis(5),
                runs: 3,
            },
            replicate_ltx: replicate_ltx::LtxReplicateSizes {
                load: replicate::ReplicateSizes {
                    transactions: 3_000,
                    spacing: Duration::from_millis(5),
                    runs: 3,
                },
                idle: Duration::from_secs(60),
                settle: Duration::from_secs(35),
            },
            many: many::ManySizes {
                counts: vec![100, 1_000, 10_000],
                idle: Duration::from_secs(30),
                active: Duration::from_secs(30),
                start_limit: Duration::from_secs(600),
            },
        }
    }

    fn quick() -> Self {
        Sizes {
            reps: 3,
            durable_writes: 50,
            listing_segments: 10_000,
            scaling: vec![1_000, 10_000],
            stream_bytes: 64 << 20,
            overhead_ops: 2_000,
            cursor_appends: 200_000,
            restore: restore::RestoreSizes {
                database_bytes: 4 << 20,
                min_transactions: 100,
                reps: 1,
            },
            replicate: replicate::ReplicateSizes {
                transactions: 400,
                spacing: Duration::from_millis(5),
                runs: 1,
            },
            replicate_ltx: replicate_ltx::LtxReplicateSizes {
                load: replicate::ReplicateSizes {
                    transactions: 400,
                    spacing: Duration::from_millis(5),
                    runs: 1,
                },
                idle: Duration::from_secs(15),
                settle: Duration::from_secs(5),
            },
            many: many::ManySizes {
                counts: vec![100],
                idle: Duration::from_secs(10),
                active: Duration::from_secs(10),
                start_limit: Duration::from_secs(120),
            },
        }
    }
}

/// The peer's binary (named by `peer_var`) and ours (`REPLICA_BIN`, set by
/// `cargo xtask bench`), or the one figure saying why benchmark `bench`
/// did not run.
pub(crate) fn binaries(
    peer_var: &str,
    bench: &str,
    target: &str,
) -> Result<(PathBuf, PathBuf), Vec<Figure>> {
    let file = |var: &str| {
        std::env::var_os(var)
            .map(PathBuf::from)
            .filter(|p| p.is_file())
    };
    match (file(peer_var), file("REPLICA_BIN")) {
        (Some(peer), Some(ours)) => Ok((peer, ours)),
        _ => {
            eprintln!("benchmark {bench} not run: needs {peer_var} and REPLICA_BIN");
            Err(vec![Figure {
                bench: bench.into(),
                ours: "not run".into(),
                baseline: format!("needs {peer_var} and REPLICA_BIN"),
                ratio: 0.0,
                target: target.into(),
                met: None,
            }])
        }
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

fn gen() -> Generation {
    "00000000000000be".parse().expect("valid")
}

fn pos(index: u64, offset: u64) -> Pos {
    Pos::new(gen(), index, offset).expect("valid")
}

/// Ops/s of `write_wal_segment` on the file backend.
async fn durable_writes_ours(dir: &Path, s: &Sizes, rep: usize, data: &Bytes) -> f64 {
    let client = FileClient::new(FileStore::new(dir.join(format!("dw-ours-{rep}"))));
    client
        .write_wal_segment(&pos(0, 0), bytes_stream(data.clone()))
        .await
        .expect("warm-up");
    let t = Instant::now();
    for i in 1..=s.durable_writes {
        client
            .write_wal_segment(&pos(0, i * 4096), bytes_stream(data.clone()))
            .await
            .expect("write");
    }
    s.durable_writes as f64 / t.elapsed().as_secs_f64()
}

/// Ops/s of the same syscalls by hand: create, write, fsync, rename, fsync dir.
async fn durable_writes_raw(dir: &Path, s: &Sizes, rep: usize, data: &Bytes) -> f64 {
    let wal = dir.join(format!(
        "dw-raw-{rep}/generations/00000000000000be/wal/0000000000000000"
    ));
    std::fs::create_dir_all(&wal).expect("mkdir");
    let (n, data) = (s.durable_writes, data.clone());
    let secs = tokio::task::spawn_blocking(move || {
        let t = Instant::now();
        for i in 1..=n {
            let name = format!("{:016x}.wal.lz4", i * 4096);
            let tmp = wal.join(format!(".{name}.tmp"));
            let mut f = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&tmp)
                .expect("create");
            f.write_all(&data).expect("write");
            f.sync_all().expect("fsync");
            drop(f);
            std::fs::rename(&tmp, wal.join(&name)).expect("rename");
            std::fs::File::open(&wal)
                .and_then(|d| d.sync_all())
                .expect("fsync dir");
        }
        t.elapsed().as_secs_f64()
    })
    .await
    .expect("raw task");
    n as f64 / secs
}

/// 1. `write_wal_segment` of 4 KiB on the file backend vs the same syscalls by hand.
async fn durable_writes(dir: &Path, s: &Sizes) -> Figure {
    let data = Bytes::from(vec![0x5a; 4096]);
    let (mut ours, mut raw) = (Vec::new(), Vec::new());
    // Flush what earlier work left dirty, so neither side pays for it.
    let _ = Command::new("sync").status();
    for rep in 0..s.reps {
        // Alternate which side goes first, so order effects cancel out.
        if rep % 2 == 0 {
            ours.push(durable_writes_ours(dir, s, rep, &data).await);
            raw.push(durable_writes_raw(dir, s, rep, &data).await);
        } else {
            raw.push(durable_writes_raw(dir, s, rep, &data).await);
            ours.push(durable_writes_ours(dir, s, rep, &data).await);
        }
    }
    let (o, r) = (median(ours), median(raw));
    Figure {
        bench: "1. durable 4 KiB WAL writes, file backend vs raw syscalls".into(),
        ours: format!("{o:.0} ops/s"),
        baseline: format!("{r:.0} ops/s"),
        ratio: o / r,
        target: ">= 0.85".into(),
        met: Some(o / r >= 0.85),
    }
}

/// Lays out `segments` WAL segments, 100 per index, with plain writes.
fn make_wal_tree(root: &Path, segments: u64) {
    let per_index = 100;
    for index in 0..segments.div_ceil(per_index) {
        let dir = root.join(format!("generations/00000000000000be/wal/{index:016x}"));
        std::fs::create_dir_all(&dir).expect("mkdir");
        for k in 0..per_index.min(segments - index * per_index) {
            std::fs::write(dir.join(format!("{:016x}.wal.lz4", k * 4096)), b"x").expect("write");
        }
    }
}

/// A raw walk: readdir of every index directory plus a stat of every entry.
fn raw_walk(root: &Path) -> u64 {
    let wal = root.join("generations/00000000000000be/wal");
    let mut count = 0;
    for index in std::fs::read_dir(wal).expect("readdir") {
        for seg in std::fs::read_dir(index.expect("entry").path()).expect("readdir") {
            let meta = seg.expect("entry").metadata().expect("stat");
            count += u64::from(meta.len() > 0);
        }
    }
    count
}

async fn list_all(client: &dyn ReplicaClient) -> u64 {
    let mut cursor = client.wal_segments(&gen()).await.expect("cursor");
    let mut n = 0;
    while let Some(s) = cursor.next().await {
        s.expect("segment");
        n += 1;
    }
    n
}

/// Median seconds of (file backend listing, raw walk, object_store LocalFileSystem listing).
async fn listing_times(
    root: &Path,
    segments: u64,
    reps: usize,
    with_object_store: bool,
) -> (f64, f64, f64) {
    let file = FileClient::new(FileStore::new(root));
    let local = ObjectStoreClient::new(ObjectKeyStore::new(
        Arc::new(object_store::local::LocalFileSystem::new_with_prefix(root).expect("local fs")),
        "",
    ));
    let (mut ours, mut raw, mut os) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..reps {
        let t = Instant::now();
        assert_eq!(list_all(&file).await, segments);
        ours.push(t.elapsed().as_secs_f64());
        let r = root.to_owned();
        let t = Instant::now();
        let n = tokio::task::spawn_blocking(move || raw_walk(&r))
            .await
            .expect("walk");
        raw.push(t.elapsed().as_secs_f64());
        assert_eq!(n, segments);
        if with_object_store {
            let t = Instant::now();
            assert_eq!(list_all(&local).await, segments);
            os.push(t.elapsed().as_secs_f64());
        }
    }
    let os = if with_object_store {
        median(os)
    } else {
        f64::NAN
    };
    (median(ours), median(raw), os)
}

/// 2. Listing 100k segments in 1,000 indexes.
async fn listing(dir: &Path, s: &Sizes) -> Vec<Figure> {
    let root = dir.join("listing");
    make_wal_tree(&root, s.listing_segments);
    let (ours, raw, os) = listing_times(&root, s.listing_segments, s.reps, true).await;
    let n = s.listing_segments as f64;
    vec![
        Figure {
            bench: format!(
                "2. list {} WAL segments, file backend vs raw readdir+stat walk",
                s.listing_segments
            ),
            ours: format!("{:.0} segments/s", n / ours),
            baseline: format!("{:.0} segments/s", n / raw),
            ratio: raw / ours,
            target: ">= 0.7".into(),
            met: Some(raw / ours >= 0.7),
        },
        Figure {
            bench: format!(
                "2b. list {} WAL segments, object store (LocalFileSystem) vs file backend",
                s.listing_segments
            ),
            ours: format!("{:.0} segments/s", n / os),
            baseline: format!("{:.0} segments/s", n / ours),
            ratio: ours / os,
            target: "report".into(),
            met: None,
        },
    ]
}

/// 6. Listing cost per segment at growing sizes: must stay flat (linear total).
async fn scaling(dir: &Path, s: &Sizes) -> Vec<Figure> {
    let mut per_segment = Vec::new();
    for &n in &s.scaling {
        let root = dir.join(format!("scaling-{n}"));
        make_wal_tree(&root, n);
        let (ours, raw, _) = listing_times(&root, n, s.reps.min(3), false).await;
        per_segment.push((n, ours / n as f64, raw / n as f64));
        std::fs::remove_dir_all(&root).expect("cleanup");
    }
    let (n0, base, _) = per_segment[0];
    per_segment
        .iter()
        .map(|&(n, t, raw)| {
            let growth = t / base;
            Figure {
                bench: format!("6. list {n} segments: time per segment vs at {n0}"),
                ours: format!("{:.0} ns/segment", t * 1e9),
                baseline: format!(
                    "{:.0} ns/segment at {n0} (raw walk here: {:.0} ns)",
                    base * 1e9,
                    raw * 1e9
                ),
                ratio: growth,
                target: "<= 2 (linear)".into(),
                met: Some(growth <= 2.0),
            }
        })
        .collect()
}

fn peak_rss_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse::<f64>().ok())
        .map_or(f64::NAN, |kib| kib / 1024.0)
}

/// Benchmark 3: a real SQLite database (1 GiB of orders) through LZ4 and
/// the file backend vs the reference `lz4` tool.
async fn streaming(dir: &Path, s: &Sizes) -> Vec<Figure> {
    let input = dir.join("stream-input.db");
    let target = s.stream_bytes as u64;
    let built = input.clone();
    tokio::task::spawn_blocking(move || workload::build_database(&built, target))
        .await
        .expect("database built");
    let input_bytes = std::fs::metadata(&input).expect("input").len() as usize;
    let mib = input_bytes as f64 / (1 << 20) as f64;
    let lz4 = Command::new("lz4").arg("--version").output().is_ok();
    let client = FileClient::new(FileStore::new(dir.join("stream-replica")));
    // Reset the peak-RSS mark so earlier phases do not count.
    let _ = std::fs::write("/proc/self/clear_refs", "5");
    let (mut write, mut read, mut tool, mut tool_read) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let mut compressed = 0;
    for rep in 0..s.reps.min(3) {
        let file = tokio::fs::File::open(&input).await.expect("open input");
        let t = Instant::now();
        let info = client
            .write_snapshot(
                &gen(),
                rep as u64,
                compress_stream(reader_stream(file, 1 << 20)),
            )
            .await
            .expect("write snapshot");
        write.push(mib / t.elapsed().as_secs_f64());
        let t = Instant::now();
        let n = decompress_stream(
            client
                .snapshot_reader(&gen(), rep as u64)
                .await
                .expect("reader"),
        )
        .try_fold(0usize, |n, c| async move { Ok(n + c.len()) })
        .await
        .expect("read back");
        read.push(mib / t.elapsed().as_secs_f64());
        assert_eq!(n, input_bytes);
        compressed = info.size;
        if lz4 {
            let out = dir.join("stream-tool.lz4");
            let t = Instant::now();
            let st = Command::new("lz4")
                .args(["-1", "-q", "-f"])
                .arg(&input)
                .arg(&out)
                .status()
                .expect("lz4");
            assert!(st.success());
            tool.push(mib / t.elapsed().as_secs_f64());
            let t = Instant::now();
            let st = Command::new("lz4")
                .args(["-d", "-q", "-f"])
                .arg(&out)
                .arg("/dev/null")
                .status()
                .expect("lz4 -d");
            assert!(st.success());
            tool_read.push(mib / t.elapsed().as_secs_f64());
        }
    }
    let rss = peak_rss_mib();
    let (w, r) = (median(write), median(read));
    let mut figures = Vec::new();
    if lz4 {
        let (tw, tr) = (median(tool), median(tool_read));
        figures.push(Figure {
            bench: format!(
                "3. {mib:.0} MiB SQLite database (orders; LZ4 to {:.0}% of its size): LZ4 compress + durable file write vs `lz4 -1` to a file",
                100.0 * compressed as f64 / input_bytes as f64
            ),
            ours: format!("{w:.0} MiB/s"),
            baseline: format!("{tw:.0} MiB/s"),
            ratio: w / tw,
            target: ">= 0.8".into(),
            met: Some(w / tw >= 0.8),
        });
        figures.push(Figure {
            bench: format!(
                "3b. {mib:.0} MiB snapshot: read back + decompress vs `lz4 -d` to /dev/null"
            ),
            ours: format!("{r:.0} MiB/s"),
            baseline: format!("{tr:.0} MiB/s"),
            ratio: r / tr,
            target: "report".into(),
            met: None,
        });
    } else {
        figures.push(Figure {
            bench: "3. snapshot streaming vs `lz4` tool: SKIPPED, `lz4` not installed (apt-get install lz4)".into(),
            ours: format!("{w:.0} MiB/s write, {r:.0} MiB/s read"),
            baseline: "-".into(),
            ratio: f64::NAN,
            target: ">= 0.8".into(),
            met: None,
        });
    }
    if lz4 {
        figures.push(tiny_frames(dir).await);
    }
    figures.push(Figure {
        bench: format!("3c. peak RSS while streaming {mib:.0} MiB (process VmHWM)"),
        ours: format!("{rss:.1} MiB"),
        baseline: "64 MiB".into(),
        ratio: rss / 64.0,
        target: "< 1 (under 64 MiB)".into(),
        met: Some(rss < 64.0),
    });
    let _ = std::fs::remove_file(&input);
    figures
}

/// 3d. Input of many tiny LZ4 frames (400,000 frames of one byte each, as a
/// hostile or odd writer may produce): our stream decoder vs `lz4 -d`.
async fn tiny_frames(dir: &Path) -> Figure {
    const FRAMES: usize = 400_000;
    let framed = replica_core::lz4::compress(b"x").repeat(FRAMES);
    let path = dir.join("tiny-frames.lz4");
    std::fs::write(&path, &framed).expect("write tiny frames");
    let (mut ours, mut tool) = (Vec::new(), Vec::new());
    for _ in 0..3 {
        let t = Instant::now();
        let n = decompress_stream(bytes_stream(framed.clone()))
            .try_fold(0usize, |n, c| async move { Ok(n + c.len()) })
            .await
            .expect("decode tiny frames");
        ours.push(t.elapsed().as_secs_f64());
        assert_eq!(n, FRAMES);
        let t = Instant::now();
        let st = Command::new("lz4")
            .args(["-d", "-q", "-f"])
            .arg(&path)
            .arg("/dev/null")
            .status()
            .expect("lz4 -d");
        assert!(st.success());
        tool.push(t.elapsed().as_secs_f64());
    }
    let _ = std::fs::remove_file(&path);
    let (o, t) = (median(ours), median(tool));
    Figure {
        bench: format!("3d. {FRAMES} one-byte LZ4 frames: stream decode vs `lz4 -d` (time)"),
        ours: format!("{o:.3} s"),
        baseline: format!("{t:.3} s"),
        ratio: t / o,
        target: ">= 0.5".into(),
        met: Some(t / o >= 0.5),
    }
}

/// 4. The object-store backend over InMemory vs the same operations on InMemory directly.
async fn overhead(s: &Sizes) -> Vec<Figure> {
    let data = Bytes::from(vec![1u8; 1024]);
    let (mut ours, mut direct, mut memory) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..s.reps {
        let store = Arc::new(InMemory::new());
        let client = ObjectStoreClient::new(ObjectKeyStore::new(
            store.clone() as Arc<dyn ObjectStore>,
            "p",
        ));
        let t = Instant::now();
        for i in 0..s.overhead_ops {
            let p = pos(i / 100, (i % 100) * 1024);
            client
                .write_wal_segment(&p, bytes_stream(data.clone()))
                .await
                .expect("write");
            let got =
                replica_core::collect_bytes(client.wal_segment_reader(&p).await.expect("read"))
                    .await
                    .expect("bytes");
            assert_eq!(got.len(), 1024);
        }
        assert_eq!(list_all(&client).await, s.overhead_ops);
        ours.push(s.overhead_ops as f64 / t.elapsed().as_secs_f64());

        let raw = InMemory::new();
        let t = Instant::now();
        for i in 0..s.overhead_ops {
            let key = Key::from(format!(
                "p/generations/00000000000000be/wal/{:016x}/{:016x}.wal.lz4",
                i / 100,
                (i % 100) * 1024
            ));
            raw.put(&key, data.clone().into()).await.expect("put");
            let got = raw
                .get(&key)
                .await
                .expect("get")
                .bytes()
                .await
                .expect("bytes");
            assert_eq!(got.len(), 1024);
        }
        let mut n = 0;
        let wal = Key::from("p/generations/00000000000000be/wal");
        for index in raw
            .list_with_delimiter(Some(&wal))
            .await
            .expect("list")
            .common_prefixes
        {
            n += raw
                .list_with_delimiter(Some(&index))
                .await
                .expect("list")
                .objects
                .len() as u64;
        }
        assert_eq!(n, s.overhead_ops);
        direct.push(s.overhead_ops as f64 / t.elapsed().as_secs_f64());

        let mem = MemoryClient::default();
        let t = Instant::now();
        for i in 0..s.overhead_ops {
            let p = pos(i / 100, (i % 100) * 1024);
            mem.write_wal_segment(&p, bytes_stream(data.clone()))
                .await
                .expect("write");
            let got = replica_core::collect_bytes(mem.wal_segment_reader(&p).await.expect("read"))
                .await
                .expect("bytes");
            assert_eq!(got.len(), 1024);
        }
        assert_eq!(list_all(&mem).await, s.overhead_ops);
        memory.push(s.overhead_ops as f64 / t.elapsed().as_secs_f64());
    }
    let (o, d, m) = (median(ours), median(direct), median(memory));
    vec![
        Figure {
            bench: "4. object-store backend over InMemory vs InMemory directly (write+read 1 KiB, list)".into(),
            ours: format!("{o:.0} ops/s"),
            baseline: format!("{d:.0} ops/s"),
            ratio: o / d,
            target: ">= 0.9 (overhead <= 10%)".into(),
            met: Some(o / d >= 0.9),
        },
        Figure {
            bench: "4b. memory backend (write+read 1 KiB, list) vs InMemory directly".into(),
            ours: format!("{m:.0} ops/s"),
            baseline: format!("{d:.0} ops/s"),
            ratio: m / d,
            target: "report".into(),
            met: None,
        },
    ]
}

/// 5. Validated cursor appends per second.
fn cursor(s: &Sizes) -> Figure {
    let mut rates = Vec::new();
    let now = chrono::Utc::now();
    for _ in 0..s.reps {
        let infos: Vec<WalSegmentInfo> = (0..s.cursor_appends)
            .map(|i| WalSegmentInfo::new(&pos(i / 1000, (i % 1000) * 8), 8, now))
            .collect();
        let cursor = WalSegmentCursor::empty(gen());
        let t = Instant::now();
        for info in infos {
            cursor.append(info).expect("append");
        }
        let yielded = futures::executor::block_on(cursor.collect_all()).expect("drain");
        rates.push(s.cursor_appends as f64 / t.elapsed().as_secs_f64());
        assert_eq!(
            yielded.len() as u64,
            s.cursor_appends,
            "every append yielded"
        );
    }
    let r = median(rates);
    Figure {
        bench: "5. cursor: appends validated, kept and yielded per second".into(),
        ours: format!("{r:.0} appends/s"),
        baseline: "1000000 appends/s".into(),
        ratio: r / 1e6,
        target: ">= 1".into(),
        met: Some(r >= 1e6),
    }
}

fn render(figures: &[Figure], machine: &str) -> String {
    let mut md = format!("Machine: {machine}\n\n| benchmark | ours | baseline | ratio | target | met |\n|---|---|---|---|---|---|\n");
    for f in figures {
        let met = match f.met {
            Some(true) => "yes",
            Some(false) => "NO",
            None => "-",
        };
        md.push_str(&format!(
            "| {} | {} | {} | {:.2} | {} | {} |\n",
            f.bench, f.ours, f.baseline, f.ratio, f.target, met
        ));
    }
    md
}

fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines()
                .find(|l| l.starts_with("model name"))
                .map(|l| l.split(':').nth(1).unwrap_or("").trim().to_owned())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let mem = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines()
                .next()
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|k| k.parse::<u64>().ok())
        })
        .map_or(0, |kib| kib / (1 << 20));
    format!("{cpu}, {cores} cores, {mem} GiB RAM")
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let quick = args.iter().any(|a| a == "--quick");
    let out: PathBuf = args
        .first()
        .filter(|a| !a.starts_with("--"))
        .map_or_else(|| "target/bench".into(), PathBuf::from);
    let sizes = if quick { Sizes::quick() } else { Sizes::full() };
    let scratch = tempfile::Builder::new()
        .prefix("replica-bench")
        .tempdir_in(std::env::temp_dir())
        .expect("scratch dir");
    let started = Instant::now();
    let mut figures = Vec::new();

    // `--only N` runs benchmark N alone (for profiling).
    let only = args
        .iter()
        .position(|a| a == "--only")
        .and_then(|i| args.get(i + 1))
        .cloned();
    let run = |n: &str| {
        let yes = only.as_deref().is_none_or(|o| o == n);
        if yes {
            eprintln!("[{:>6.1}s] benchmark {n}", started.elapsed().as_secs_f64());
        }
        yes
    };
    if run("1") {
        figures.push(durable_writes(scratch.path(), &sizes).await);
    }
    if run("3") {
        figures.extend(streaming(scratch.path(), &sizes).await);
    }
    if run("2") {
        figures.extend(listing(scratch.path(), &sizes).await);
    }
    if run("4") {
        figures.extend(overhead(&sizes).await);
    }
    if run("5") {
        figures.push(cursor(&sizes));
    }
    if run("6") {
        figures.extend(scaling(scratch.path(), &sizes).await);
    }
    if run("8") {
        let (dir, sizes) = (scratch.path().to_owned(), sizes.replicate);
        figures.extend(
            tokio::task::spawn_blocking(move || replicate::replicate(&dir, &sizes))
                .await
                .expect("benchmark 8"),
        );
    }
    if run("7") {
        let (dir, sizes) = (scratch.path().to_owned(), sizes.restore);
        figures.extend(
            tokio::task::spawn_blocking(move || restore::restore(&dir, &sizes))
                .await
                .expect("benchmark 7"),
        );
    }
    if run("9") {
        let (dir, sizes) = (scratch.path().to_owned(), sizes.restore);
        figures.extend(
            tokio::task::spawn_blocking(move || restore_ltx::restore_ltx(&dir, &sizes))
                .await
                .expect("benchmark 9"),
        );
    }
    if run("10") {
        let dir = scratch.path().to_owned();
        let sizes = sizes.replicate_ltx;
        figures.extend(
            tokio::task::spawn_blocking(move || replicate_ltx::replicate_ltx(&dir, &sizes))
                .await
                .expect("benchmark 10"),
        );
    }
    if run("11") {
        let dir = scratch.path().to_owned();
        let sizes = sizes.many;
        figures.extend(
            tokio::task::spawn_blocking(move || many::many(&dir, &sizes))
                .await
                .expect("benchmark 11"),
        );
    }
    figures.sort_by(|a, b| a.bench.cmp(&b.bench));

    let machine = machine();
    let md = render(&figures, &machine);
    println!("{md}");
    println!(
        "total time: {:?}",
        Duration::from_secs(started.elapsed().as_secs())
    );
    std::fs::create_dir_all(&out).expect("output dir");
    let json = serde_json::json!({ "machine": machine, "quick": quick, "figures": figures });
    std::fs::write(
        out.join("report.json"),
        serde_json::to_string_pretty(&json).expect("json"),
    )
    .expect("write json");
    std::fs::write(out.join("report.md"), md).expect("write md");
}
