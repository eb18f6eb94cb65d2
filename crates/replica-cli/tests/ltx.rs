//! Litestream 0.5 (LTX) replicas written live by the real `litestream`
//! 0.5.17: listed exactly, verified, restored at the newest TXID, at a
//! mid-run TXID and by timestamp to what `litestream restore` gives, from a
//! file replica and from S3; corruptions refused with nothing left behind.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command as Process, Stdio};
use std::time::{Duration, Instant};

use common::{
    create_source, json, litestream05, ours, replica, rows, run_ok, sqlite3, theirs, write_round,
};

/// `litestream` 0.5 as a child process: `AWS_CA_BUNDLE` removed (with it
/// set, its S3 client refuses to start).
fn litestream_cmd(bin: &Path) -> Process {
    let mut cmd = Process::new(bin);
    cmd.env_remove("AWS_CA_BUNDLE");
    cmd
}

/// `litestream replicate` 0.5 with a config file, stopped by SIGTERM.
struct Running {
    child: Child,
    log: PathBuf,
}

impl Running {
    fn start(bin: &Path, dir: &Path, dbs_yaml: &str) -> Running {
        // Short intervals so a few seconds make every kind of file: L0 per
        // sync, compactions at L1 and L2, snapshots at L9.
        let config = dir.join("litestream.yml");
        std::fs::write(
            &config,
            format!(
                "levels:\n  - interval: 1s\n  - interval: 3s\nsnapshot:\n  interval: 4s\n  \
                 retention: 1h\ndbs:\n{dbs_yaml}"
            ),
        )
        .unwrap();
        let log = dir.join("litestream.log");
        let child = litestream_cmd(bin)
            .args(["replicate", "-config"])
            .arg(&config)
            .stdout(Stdio::from(std::fs::File::create(&log).unwrap()))
            .stderr(Stdio::from(
                std::fs::OpenOptions::new().append(true).open(&log).unwrap(),
            ))
            .spawn()
            .expect("litestream 0.5 starts");
        Running { child, log }
    }

    fn stop(mut self) -> String {
        let pid = self.child.id() as libc::pid_t;
        // SAFETY: signalling the child this test started, by its PID.
        assert_eq!(unsafe { libc::kill(pid, libc::SIGTERM) }, 0);
        let started = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                let log = std::fs::read_to_string(&self.log).unwrap_or_default();
                assert!(status.success(), "litestream exited with {status}: {log}");
                return log;
            }
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "litestream did not stop"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn db_yaml(db: &Path, replica_yaml: &str) -> String {
    format!(
        "  - path: {}\n    monitor-interval: 100ms\n    replica:\n{replica_yaml}",
        db.display()
    )
}

fn file_replica_yaml(dir: &Path) -> String {
    format!(
        "      type: file\n      path: {}\n      sync-interval: 200ms\n",
        dir.display()
    )
}

/// A source database written for `rounds` rounds while litestream 0.5
/// replicates it (and each extra database written alongside), returning the
/// rows after each round.
fn replicate(bin: &Path, dir: &Path, replicas: &[(&Path, String)], rounds: u64) -> Vec<String> {
    let dbs: String = replicas
        .iter()
        .map(|(db, yaml)| db_yaml(db, yaml))
        .collect();
    let mut conns: Vec<_> = replicas.iter().map(|(db, _)| create_source(db)).collect();
    let running = Running::start(bin, dir, &dbs);
    let mut states = Vec::new();
    for round in 0..rounds {
        for conn in &mut conns {
            write_round(conn, round);
        }
        states.push(rows(replicas[0].0));
        std::thread::sleep(Duration::from_millis(200));
    }
    std::thread::sleep(Duration::from_millis(1500));
    running.stop();
    states
}

/// (level, min, max, size) of every LTX file, as `replica ltx --json` lists them.
fn listed(url: &str) -> Vec<(u64, String, String, u64)> {
    let mut out: Vec<_> = json(&run_ok(
        replica().args(["ltx", url, "--level", "all", "--json"]),
    ))
    .into_iter()
    .map(|r| {
        (
            r["level"].as_u64().unwrap(),
            r["min_txid"].as_str().unwrap().to_owned(),
            r["max_txid"].as_str().unwrap().to_owned(),
            r["size"].as_u64().unwrap(),
        )
    })
    .collect();
    out.sort();
    out
}

/// The same from raw keys (`<level dir>/<min>-<max>.ltx`), parsed here
/// independently of the library; `hex_levels` for S3's `%04x` directories.
fn from_keys(
    objects: &BTreeMap<String, Vec<u8>>,
    hex_levels: bool,
) -> Vec<(u64, String, String, u64)> {
    let mut out: Vec<_> = objects
        .iter()
        .map(|(key, data)| {
            let (dir, name) = key.rsplit_once('/').unwrap();
            let level = if hex_levels {
                u64::from_str_radix(dir, 16).unwrap()
            } else {
                dir.strip_prefix("ltx/").unwrap().parse().unwrap()
            };
            let (min, max) = name.strip_suffix(".ltx").unwrap().split_once('-').unwrap();
            (level, min.to_owned(), max.to_owned(), data.len() as u64)
        })
        .collect();
    out.sort();
    out
}

fn assert_all_kinds(files: &[(u64, String, String, u64)]) {
    let levels: std::collections::BTreeSet<u64> = files.iter().map(|f| f.0).collect();
    assert!(
        levels.contains(&0) && levels.contains(&9) && levels.range(1..9).count() >= 2,
        "expected files at L0, two compaction levels and L9: {levels:?}"
    );
}

/// Both tools restore `url` at the newest TXID, at a mid-run TXID and at a
/// mid-run time, to the same rows (and those are states the source passed
/// through, the newest its final rows).
fn assert_restores_match(
    bin: &Path,
    dir: &Path,
    url: &str,
    states: &[String],
    files: &[(u64, String, String, u64)],
) {
    let latest = dir.join("ours-latest.db");
    ours(url, &latest, &[]);
    assert!(
        rows(&latest) == *states.last().unwrap(),
        "latest restore differs from the source"
    );
    let l0: Vec<&String> = files.iter().filter(|f| f.0 == 0).map(|f| &f.2).collect();
    let mid = l0[l0.len() / 2].clone();
    let (a, b) = (dir.join("ours-mid.db"), dir.join("theirs-mid.db"));
    ours(url, &a, &["--txid", &mid]);
    theirs(bin, url, &b, &["-txid", &mid]);
    let mid_rows = rows(&a);
    assert!(
        mid_rows == rows(&b),
        "TXID {mid}: our restore differs from litestream's"
    );
    assert!(
        states.contains(&mid_rows),
        "TXID {mid} is no state the source passed through"
    );
    assert!(
        mid_rows != rows(&latest),
        "TXID {mid} is the latest state: not a mid-run test"
    );

    // A time between two L0 files: the header timestamp of the middle one.
    let header_time = {
        let client_dir = dir.join("ours-mid-time-probe.db");
        let _ = client_dir;
        let out = run_ok(replica().args(["ltx", url, "--level", "0", "--json"]));
        let row = json(&out)
            .into_iter()
            .find(|r| r["max_txid"].as_str() == Some(mid.as_str()))
            .unwrap();
        row["created"].as_str().unwrap().to_owned()
    };
    // Listing times are whole seconds; a second after the middle file's
    // second lies between files whatever the store's clock.
    let at =
        chrono::DateTime::parse_from_rfc3339(&header_time).unwrap() + chrono::Duration::seconds(1);
    let at = at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let (a, b) = (dir.join("ours-time.db"), dir.join("theirs-time.db"));
    ours(url, &a, &["--timestamp", &at]);
    theirs(bin, url, &b, &["-timestamp", &at]);
    assert!(
        rows(&a) == rows(&b),
        "timestamp {at}: our restore differs from litestream's"
    );
    assert!(
        states.contains(&rows(&a)),
        "timestamp {at}: no state the source passed through"
    );
}

#[test]
fn a_file_replica_of_litestream_05_is_listed_verified_and_restored() {
    let Some(bin) = litestream05() else { return };
    let dir = tempfile::tempdir().unwrap();
    let (db, replica_dir) = (dir.path().join("source.db"), dir.path().join("replica"));
    let states = replicate(
        &bin,
        dir.path(),
        &[(&db, file_replica_yaml(&replica_dir))],
        40,
    );
    let url = format!("file://{}", replica_dir.display());

    let files = listed(&url);
    assert_eq!(files, from_keys(&common::files(&replica_dir), false));
    assert_all_kinds(&files);
    let out = run_ok(replica().args(["verify", &url]));
    assert!(out.contains("OK:"), "{out}");
    assert_restores_match(&bin, dir.path(), &url, &states, &files);
    assert_eq!(
        sqlite3(&dir.path().join("ours-latest.db"), "PRAGMA integrity_check"),
        "ok\n"
    );

    // The generation commands say what this is and where to look.
    let out = replica().args(["generations", &url]).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("replica ltx"),
        "{err}"
    );
}

#[test]
fn an_s3_replica_of_litestream_05_is_listed_verified_and_restored() {
    let Some(bin) = litestream05() else { return };
    let Some((bucket, endpoint)) = common::s3_settings() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("source.db");
    let prefix = format!("ltx05-{:08x}", rand::random::<u32>());
    let yaml = format!(
        "      type: s3\n      bucket: {bucket}\n      path: {prefix}\n      endpoint: {endpoint}\n      \
         region: us-east-1\n      force-path-style: true\n      sync-interval: 200ms\n"
    );
    let states = replicate(&bin, dir.path(), &[(&db, yaml)], 30);
    let ours_url = format!("s3://{bucket}/{prefix}");
    let files = listed(&ours_url);
    assert_eq!(
        files,
        from_keys(&common::bucket_objects(&bucket, &prefix), true)
    );
    assert_all_kinds(&files);
    let out = run_ok(replica().args(["verify", &ours_url]));
    assert!(out.contains("OK:"), "{out}");

    // litestream 0.5 takes the endpoint in the URL; ours from AWS_ENDPOINT.
    let theirs_url =
        format!("{ours_url}?endpoint={endpoint}&region=us-east-1&force-path-style=true");
    let latest = dir.path().join("ours-latest.db");
    ours(&ours_url, &latest, &[]);
    assert!(
        rows(&latest) == *states.last().unwrap(),
        "latest S3 restore differs from the source"
    );
    let l0: Vec<&String> = files.iter().filter(|f| f.0 == 0).map(|f| &f.2).collect();
    let mid = l0[l0.len() / 2].clone();
    let (a, b) = (
        dir.path().join("ours-mid.db"),
        dir.path().join("theirs-mid.db"),
    );
    ours(&ours_url, &a, &["--txid", &mid]);
    theirs(&bin, &theirs_url, &b, &["-txid", &mid]);
    assert!(
        rows(&a) == rows(&b),
        "TXID {mid}: our S3 restore differs from litestream's"
    );
    assert!(states.contains(&rows(&a)));
}

/// Runs `replica restore` expecting a refusal: exit 2, `needle` in the
/// message, nothing at the output path and no temporary file beside it.
fn assert_refused(url: &str, args: &[&str], dir: &Path, needle: &str) {
    let out_dir = dir.join(format!("refused-{:08x}", rand::random::<u32>()));
    std::fs::create_dir(&out_dir).unwrap();
    let output = out_dir.join("restored.db");
    let out = replica()
        .args(["restore", url, "-o"])
        .arg(&output)
        .args(args)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{needle}: {err}");
    assert!(err.contains(needle), "expected {needle:?} in: {err}");
    let left: Vec<_> = std::fs::read_dir(&out_dir).unwrap().collect();
    assert!(left.is_empty(), "{needle}: left behind {left:?}");
}

/// (level, min, max) of the files the library plans for `target`: which
/// files a corruption must touch to be in a restore's way.
fn plan(url: &str, target: replica::ltx::LtxTarget) -> Vec<(u8, u64, u64)> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let client = replica::open_ltx(url).await.unwrap();
        let files = client.all_files().await.unwrap();
        replica::ltx::plan_restore(&files, target)
            .unwrap()
            .files
            .iter()
            .map(|f| (f.level, f.min_txid.0, f.max_txid.0))
            .collect()
    })
}

fn ltx_path(root: &Path, (level, min, max): (u8, u64, u64)) -> PathBuf {
    root.join(format!("ltx/{level}/{min:016x}-{max:016x}.ltx"))
}

fn copy_dir(from: &Path, to: &Path) {
    for (rel, data) in common::files(from) {
        let path = to.join(rel);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, data).unwrap();
    }
}

#[test]
fn corrupt_ltx_replicas_are_refused_with_nothing_left() {
    let Some(bin) = litestream05() else { return };
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (dir.path().join("a.db"), dir.path().join("b.db"));
    let (ra, rb) = (dir.path().join("replica-a"), dir.path().join("replica-b"));
    replicate(
        &bin,
        dir.path(),
        &[(&a, file_replica_yaml(&ra)), (&b, file_replica_yaml(&rb))],
        25,
    );
    let url_a = format!("file://{}", ra.display());
    let files = listed(&url_a);
    let newest = *plan(&url_a, replica::ltx::LtxTarget::Latest)
        .last()
        .unwrap();
    let newest_name = format!("L{} {:016x}-{:016x}", newest.0, newest.1, newest.2);
    let case = |name: &str| {
        let root = dir.path().join(name);
        copy_dir(&ra, &root);
        (root.clone(), format!("file://{}", root.display()))
    };

    // A flipped byte inside a page of the newest file of the plan.
    let (root, url) = case("flipped");
    let path = ltx_path(&root, newest);
    let mut data = std::fs::read(&path).unwrap();
    data[100 + 10 + 3] ^= 0x55;
    std::fs::write(&path, data).unwrap();
    assert_refused(&url, &[], dir.path(), &newest_name);
    let out = replica().args(["verify", &url]).output().unwrap();
    assert_eq!(
        out.status.code(),
        Some(1),
        "verify must report the flipped byte"
    );

    // The same file truncated.
    let (root, url) = case("truncated");
    let path = ltx_path(&root, newest);
    let data = std::fs::read(&path).unwrap();
    std::fs::write(&path, &data[..data.len() / 2]).unwrap();
    assert_refused(&url, &[], dir.path(), &newest_name);

    // Every file holding one mid-run TXID removed: a hole, for the latest
    // state as for any target past it.
    let (root, url) = case("hole");
    let l0: Vec<_> = files.iter().filter(|f| f.0 == 0).collect();
    let k = u64::from_str_radix(&l0[l0.len() / 2].2, 16).unwrap();
    for f in &files {
        let (min, max) = (
            u64::from_str_radix(&f.1, 16).unwrap(),
            u64::from_str_radix(&f.2, 16).unwrap(),
        );
        if min <= k && k <= max {
            std::fs::remove_file(ltx_path(&root, (f.0 as u8, min, max))).unwrap();
        }
    }
    assert_refused(&url, &[], dir.path(), &format!("TXIDs {k:016x} to"));
    let past = format!("{:016x}", k + 1);
    assert_refused(
        &url,
        &["--txid", &past],
        dir.path(),
        &format!("TXIDs {k:016x} to"),
    );
    let out = replica().args(["verify", &url]).output().unwrap();
    assert_eq!(out.status.code(), Some(1), "verify must report the hole");

    // An L0 file of another database under the same name, where the plan
    // holds it right after another L0 file (whose WAL it must continue).
    let (root, url) = case("foreign");
    let target = l0
        .iter()
        .map(|f| u64::from_str_radix(&f.2, 16).unwrap())
        .find(|&t| {
            let p = plan(&url_a, replica::ltx::LtxTarget::Txid(replica::ltx::TxId(t)));
            p.len() >= 2
                && p[p.len() - 2].0 == 0
                && p[p.len() - 1] == (0, t, t)
                && ltx_path(&rb, (0, t, t)).exists()
        })
        .expect("a TXID planned as two L0 files in a row");
    std::fs::copy(
        ltx_path(&rb, (0, target, target)),
        ltx_path(&root, (0, target, target)),
    )
    .unwrap();
    assert_refused(
        &url,
        &["--txid", &format!("{target:016x}")],
        dir.path(),
        "another database",
    );

    // The untouched replica still restores.
    let output = dir.path().join("good.db");
    run_ok(replica().args(["restore", &url_a, "-o"]).arg(&output));
}

#[test]
fn a_litestream_03_replica_converts_to_ltx_that_litestream_05_restores_at_every_commit() {
    let Some(bin) = litestream05() else { return };
    let Some(bin03) = common::litestream() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let r03 = dir.path().join("replica-03");
    let source = common::replicate_live(&bin03, dir.path(), &common::file_replica_yaml(&r03));
    let (url03, url05) = (
        format!("file://{}", r03.display()),
        format!("file://{}", dir.path().join("replica-05").display()),
    );
    let out = run_ok(replica().args(["copy", &url03, &url05, "--dst-layout", "litestream-0.5"]));
    assert!(out.contains("converted generation"), "{out}");
    let files = listed(&url05);
    let snapshots = files.iter().filter(|f| f.0 == 9).count();
    assert!(
        snapshots >= 2,
        "every source snapshot an L9 file: {files:?}"
    );

    let latest = dir.path().join("theirs-latest.db");
    theirs(&bin, &url05, &latest, &[]);
    assert_eq!(sqlite3(&latest, "PRAGMA integrity_check"), "ok\n");
    assert!(
        rows(&latest) == source.rows,
        "litestream 0.5's restore of the conversion differs from the source"
    );

    // Every commit: both tools restore the same state, one the source passed
    // through, never going back.
    let mut last_state = 0;
    for (i, f) in files.iter().filter(|f| f.0 == 0).enumerate() {
        let (a, b) = (
            dir.path().join(format!("o{i}.db")),
            dir.path().join(format!("t{i}.db")),
        );
        theirs(&bin, &url05, &b, &["-txid", &f.2]);
        ours(&url05, &a, &["--txid", &f.2]);
        let state = rows(&b);
        assert!(rows(&a) == state, "TXID {}: the tools disagree", f.2);
        let at = source
            .states
            .iter()
            .enumerate()
            .skip(last_state)
            .find(|(_, s)| **s == state)
            .map(|(n, _)| n)
            .unwrap_or_else(|| {
                panic!(
                    "TXID {}: not a state the source passed through, or out of order",
                    f.2
                )
            });
        last_state = at;
    }
    assert_eq!(
        last_state,
        source.states.len() - 1,
        "the last commit is the final state"
    );

    // Converting into a location that holds LTX files is refused; a copy of
    // the LTX replica to S3 takes S3's key shape and litestream restores it.
    let out = replica()
        .args(["copy", &url03, &url05, "--dst-layout", "litestream-0.5"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    if let Some((bucket, endpoint)) = common::s3_settings() {
        let prefix = format!("converted-{:08x}", rand::random::<u32>());
        let s3 = format!("s3://{bucket}/{prefix}");
        run_ok(replica().args(["copy", &url05, &s3]));
        let keys = common::bucket_objects(&bucket, &prefix);
        assert_eq!(
            from_keys(&keys, true),
            files,
            "the S3 copy holds the same files, %04x levels"
        );
        let restored = dir.path().join("theirs-s3.db");
        let theirs_url = format!("{s3}?endpoint={endpoint}&region=us-east-1&force-path-style=true");
        theirs(&bin, &theirs_url, &restored, &[]);
        assert!(
            rows(&restored) == source.rows,
            "litestream's restore of the S3 copy differs"
        );
    }
}
