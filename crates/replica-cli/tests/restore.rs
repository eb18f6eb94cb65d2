//! `replica restore` on replicas written by the real Litestream 0.3.13:
//! exact rows, point in time, both layouts, file and S3; and every
//! corruption Litestream restores silently is refused here, with nothing
//! left at the output path.
//!
//! Needs `litestream` and `sqlite3` (see `tests/common`); `.ci/run` installs
//! them and makes them required.

mod common;

use std::path::{Path, PathBuf};
use std::process::Output;

use common::*;

/// A Litestream replica made once per test, plus the source it came from.
struct Fixture {
    dir: tempfile::TempDir,
    replica: PathBuf,
    source: Source,
    litestream: PathBuf,
}

fn fixture() -> Option<Fixture> {
    fixture_with(FREQUENT)
}

fn fixture_with(checkpoints: Checkpoints) -> Option<Fixture> {
    let litestream = litestream()?;
    let dir = tempfile::tempdir().unwrap();
    let replica = dir.path().join("replica");
    let source = replicate_with(
        &litestream,
        dir.path(),
        checkpoints,
        &file_replica_yaml(&replica),
    );
    Some(Fixture {
        dir,
        replica,
        source,
        litestream,
    })
}

fn restore(args: &[&str]) -> Output {
    replica().arg("restore").args(args).output().unwrap()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// The generation directory of a single-generation replica.
fn generation_dir(replica: &Path) -> PathBuf {
    let mut gens: Vec<PathBuf> = std::fs::read_dir(replica.join("generations"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(gens.len(), 1, "one generation: {gens:?}");
    gens.pop().unwrap()
}

/// (index, offset, path) of every WAL segment of a 0.3 replica, in order.
fn segments(replica: &Path) -> Vec<(u64, u64, PathBuf)> {
    let mut out: Vec<(u64, u64, PathBuf)> = std::fs::read_dir(generation_dir(replica).join("wal"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .map(|p| {
            let name = p.file_name().unwrap().to_str().unwrap().to_owned();
            let (i, o) = name.trim_end_matches(".wal.lz4").split_once('_').unwrap();
            (
                u64::from_str_radix(i, 16).unwrap(),
                u64::from_str_radix(o, 16).unwrap(),
                p,
            )
        })
        .collect();
    out.sort();
    out
}

/// A copy of the replica with only its first snapshot, so that a restore
/// applies every WAL index.
fn copy_with_first_snapshot_only(f: &Fixture, name: &str) -> PathBuf {
    let to = f.dir.path().join(name);
    for (rel, data) in files(&f.replica) {
        let p = to.join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, data).unwrap();
    }
    let snapshots = generation_dir(&to).join("snapshots");
    let mut names: Vec<PathBuf> = std::fs::read_dir(&snapshots)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    names.sort();
    for later in &names[1..] {
        std::fs::remove_file(later).unwrap();
    }
    to
}

/// `replica restore` of `replica` fails, names `needle`, and leaves nothing
/// in the output directory.
fn assert_refused(replica: &Path, needle: &str) {
    let out_dir = tempfile::tempdir().unwrap();
    let out = out_dir.path().join("restored.db");
    let result = restore(&[replica.to_str().unwrap(), "-o", out.to_str().unwrap()]);
    assert_eq!(result.status.code(), Some(2), "{}", stderr(&result));
    let err = stderr(&result);
    assert!(err.contains(needle), "expected {needle:?} in: {err}");
    let left: Vec<_> = std::fs::read_dir(out_dir.path()).unwrap().collect();
    assert!(left.is_empty(), "left behind: {left:?}");
}

fn restored_rows(replica_url: &str, extra: &[&str]) -> String {
    let out_dir = tempfile::tempdir().unwrap();
    let out = out_dir.path().join("restored.db");
    let mut args = vec![
        replica_url,
        "-o",
        out.to_str().unwrap(),
        "--integrity-check",
    ];
    args.extend_from_slice(extra);
    let result = restore(&args);
    assert!(result.status.success(), "{}", stderr(&result));
    assert_eq!(sqlite3(&out, "PRAGMA integrity_check"), "ok\n");
    rows(&out)
}

#[test]
fn a_litestream_file_replica_restores_to_the_source_rows_in_either_layout() {
    let Some(f) = fixture() else { return };
    let url = format!("file://{}", f.replica.display());
    assert!(restored_rows(&url, &[]) == f.source.rows, "rows differ");
    // Every WAL index applied, from the first snapshot.
    let full = copy_with_first_snapshot_only(&f, "first-snapshot-only");
    assert!(
        restored_rows(full.to_str().unwrap(), &[]) == f.source.rows,
        "rows differ when every WAL index is applied"
    );
    // The same replica in the 0.4 layout.
    let nested = f.dir.path().join("as-0.4");
    run_ok(replica().args([
        "copy",
        full.to_str().unwrap(),
        nested.to_str().unwrap(),
        "--dst-layout",
        "litestream-0.4",
    ]));
    assert!(
        restored_rows(nested.to_str().unwrap(), &[]) == f.source.rows,
        "rows differ from the 0.4 layout"
    );
}

#[test]
fn point_in_time_restores_match_litestream_and_a_state_of_the_source() {
    let Some(f) = fixture() else { return };
    let full = copy_with_first_snapshot_only(&f, "full");
    let url = format!("file://{}", full.display());
    let segs = segments(&full);
    let last_index = segs.last().unwrap().0;
    assert!(last_index >= 4, "too few indexes: {last_index}");
    for index in [1, last_index / 2, last_index - 1] {
        let ours = restored_rows(&url, &["--index", &format!("{index:x}")]);
        assert!(
            f.source.passed_through(&ours),
            "index {index}: not a source state"
        );
        let theirs = litestream_restore(&f, &url, &["-index", &format!("{index:x}")]);
        assert!(
            ours == theirs,
            "index {index}: differs from litestream restore"
        );
    }
    // By time: the modification time of a middle segment.
    let (_, _, middle) = &segs[segs.len() / 2];
    let at: chrono::DateTime<chrono::Utc> = std::fs::metadata(middle)
        .unwrap()
        .modified()
        .unwrap()
        .into();
    let at = at.to_rfc3339_opts(chrono::SecondsFormat::Nanos, true);
    let ours = restored_rows(&url, &["--timestamp", &at]);
    assert!(f.source.passed_through(&ours), "{at}: not a source state");
    assert!(ours != f.source.rows, "{at}: restored to the end instead");
    let theirs = litestream_restore(&f, &url, &["-timestamp", &at]);
    assert!(ours == theirs, "{at}: differs from litestream restore");
}

fn litestream_restore(f: &Fixture, url: &str, args: &[&str]) -> String {
    let out = f
        .dir
        .path()
        .join(format!("litestream-{:08x}.db", rand::random::<u32>()));
    let result = std::process::Command::new(&f.litestream)
        .arg("restore")
        .args(args)
        .arg("-o")
        .arg(&out)
        .arg(url)
        .output()
        .unwrap();
    assert!(result.status.success(), "{}", stderr(&result));
    rows(&out)
}

#[test]
fn every_corruption_is_refused_with_nothing_left_at_the_path() {
    // Rare checkpoints, so that an index has a middle segment to lose.
    let Some(f) = fixture_with(RARE) else { return };
    let base = copy_with_first_snapshot_only(&f, "sound");
    let segs = segments(&base);
    let by_index =
        |i: u64| -> Vec<&(u64, u64, PathBuf)> { segs.iter().filter(|s| s.0 == i).collect() };
    // An index after the first with at least three segments.
    let busy = (1..=segs.last().unwrap().0)
        .find(|i| by_index(*i).len() >= 3)
        .expect("an index with three segments");
    let rel = |p: &Path| p.strip_prefix(&base).unwrap().to_owned();
    let variant = |name: &str, change: &dyn Fn(&Path)| -> PathBuf {
        let copy = f.dir.path().join(name);
        for (r, data) in files(&base) {
            let p = copy.join(r);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, data).unwrap();
        }
        change(&copy);
        copy
    };
    let rewrite = |p: &Path, edit: &dyn Fn(&mut Vec<u8>)| {
        let mut plain = replica::lz4::decompress(&std::fs::read(p).unwrap()).unwrap();
        edit(&mut plain);
        std::fs::write(p, replica::lz4::compress(&plain)).unwrap();
    };

    let middle = rel(&by_index(busy)[1].2);
    let missing_middle = variant("missing-middle", &|d| {
        std::fs::remove_file(d.join(&middle)).unwrap()
    });
    assert_refused(&missing_middle, "WAL gap");

    let first = rel(&by_index(busy)[0].2);
    let missing_first = variant("missing-first", &|d| {
        std::fs::remove_file(d.join(&first)).unwrap()
    });
    assert_refused(&missing_first, "WAL gap");

    let whole_index: Vec<PathBuf> = by_index(busy).iter().map(|s| rel(&s.2)).collect();
    let missing_index = variant("missing-index", &|d| {
        for p in &whole_index {
            std::fs::remove_file(d.join(p)).unwrap();
        }
    });
    assert_refused(&missing_index, &format!("{busy:016x}:0000000000000000"));

    // The snapshot's own index lost while later ones remain: its rows
    // would silently be missing (Litestream 0.3.13: "missing WAL index").
    let snapshot_index = {
        let snapshots = generation_dir(&base).join("snapshots");
        let name = std::fs::read_dir(&snapshots)
            .unwrap()
            .next()
            .unwrap()
            .unwrap()
            .file_name();
        u64::from_str_radix(&name.to_string_lossy()[..8], 16).unwrap()
    };
    let own: Vec<PathBuf> = by_index(snapshot_index).iter().map(|s| rel(&s.2)).collect();
    assert!(
        !own.is_empty(),
        "the snapshot's index has segments in the sound replica"
    );
    let missing_own = variant("missing-own-index", &|d| {
        for p in &own {
            std::fs::remove_file(d.join(p)).unwrap();
        }
    });
    assert_refused(&missing_own, "missing WAL index");
    let verify = replica()
        .args(["verify", missing_own.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(
        verify.status.code(),
        Some(1),
        "verify must report the lost index"
    );
    assert!(
        String::from_utf8_lossy(&verify.stdout).contains("missing WAL index"),
        "{}",
        String::from_utf8_lossy(&verify.stdout)
    );

    let stored_flip = variant("stored-flip", &|d| {
        let p = d.join(&middle);
        let mut bytes = std::fs::read(&p).unwrap();
        let at = bytes.len() / 2;
        bytes[at] ^= 0x10;
        std::fs::write(&p, bytes).unwrap();
    });
    assert_refused(&stored_flip, "corrupt data in");

    let page_flip = variant("page-flip", &|d| {
        rewrite(&d.join(&middle), &|plain| {
            let at = plain.len() - 100;
            plain[at] ^= 0x01;
        })
    });
    assert_refused(&page_flip, "frame checksum mismatch");

    let last = rel(&segs.last().unwrap().2);
    let truncated = variant("truncated", &|d| {
        rewrite(&d.join(&last), &|plain| plain.truncate(plain.len() - 100))
    });
    assert_refused(&truncated, "ends inside a frame");

    let page_size = variant("page-size", &|d| {
        let small = f.dir.path().join("small-pages.db");
        let _ = std::fs::remove_file(&small);
        sqlite3(
            &small,
            "PRAGMA page_size=1024; CREATE TABLE orders(id INTEGER PRIMARY KEY, customer, item, qty, price); PRAGMA journal_mode=wal;",
        );
        let snapshots = generation_dir(d).join("snapshots");
        let snapshot = std::fs::read_dir(&snapshots)
            .unwrap()
            .next()
            .unwrap()
            .unwrap()
            .path();
        std::fs::write(
            snapshot,
            replica::lz4::compress(&std::fs::read(&small).unwrap()),
        )
        .unwrap();
    });
    assert_refused(&page_size, "page size");

    // The sound copy still restores: each refusal was for its own defect.
    assert!(restored_rows(base.to_str().unwrap(), &[]) == f.source.rows);
}

#[test]
fn an_existing_path_is_refused_unless_told_to_skip() {
    let replica_dir = tempfile::tempdir().unwrap();
    let out_dir = tempfile::tempdir().unwrap();
    let out = out_dir.path().join("app.db");
    std::fs::write(&out, b"precious").unwrap();
    let args = [
        replica_dir.path().to_str().unwrap(),
        "-o",
        out.to_str().unwrap(),
    ];
    let result = restore(&args);
    assert_eq!(result.status.code(), Some(2));
    assert!(
        stderr(&result).contains("already exists"),
        "{}",
        stderr(&result)
    );
    let result = restore(&[args[0], args[1], args[2], "--if-db-not-exists"]);
    assert!(result.status.success(), "{}", stderr(&result));
    assert_eq!(std::fs::read(&out).unwrap(), b"precious");
    // A stale -wal beside a missing database would be applied by SQLite to
    // the restored file: refused too.
    std::fs::remove_file(&out).unwrap();
    std::fs::write(out_dir.path().join("app.db-wal"), b"old wal").unwrap();
    let result = restore(&args);
    assert_eq!(result.status.code(), Some(2));
    assert!(
        stderr(&result).contains("app.db-wal"),
        "{}",
        stderr(&result)
    );
}

#[test]
fn an_empty_replica_fails_unless_told_to_skip() {
    let replica_dir = tempfile::tempdir().unwrap();
    let out_dir = tempfile::tempdir().unwrap();
    let out = out_dir.path().join("app.db");
    let args = [
        replica_dir.path().to_str().unwrap(),
        "-o",
        out.to_str().unwrap(),
    ];
    let result = restore(&args);
    assert_eq!(result.status.code(), Some(2));
    assert!(
        stderr(&result).contains("no replica to restore"),
        "{}",
        stderr(&result)
    );
    let result = restore(&[args[0], args[1], args[2], "--if-replica-exists"]);
    assert!(result.status.success(), "{}", stderr(&result));
    assert!(!out.exists());
}

#[test]
fn an_s3_replica_written_by_litestream_restores_to_the_source_rows() {
    let Some(litestream) = litestream() else {
        return;
    };
    let Some((bucket, endpoint)) = s3_settings() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let prefix = format!("restore-{:016x}", rand::random::<u64>());
    let source = replicate_live(
        &litestream,
        dir.path(),
        &s3_replica_yaml(&bucket, &format!("{prefix}/replica"), &endpoint),
    );
    let url = format!("s3://{bucket}/{prefix}/replica");
    assert!(restored_rows(&url, &[]) == source.rows, "rows differ");
}
