//! The real `replica` binary on replicas made in temp dirs.

use assert_cmd::Command;

fn replica() -> Command {
    Command::cargo_bin("replica").expect("binary built")
}

/// Writes `data` at `rel` under `root`, creating directories.
fn write_file(root: &std::path::Path, rel: &str, data: &[u8]) {
    let p = root.join(rel);
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(p, data).unwrap();
}

/// A file replica with two generations, written by hand in the SPEC layout.
fn make_replica() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let put = |rel: &str, data: &[u8]| write_file(dir.path(), rel, data);
    put(
        "generations/00000000000000a1/snapshots/0000000000000001.snapshot.lz4",
        b"0123456789",
    );
    put(
        "generations/00000000000000a1/wal/0000000000000001/0000000000000000.wal.lz4",
        b"abc",
    );
    put(
        "generations/00000000000000a1/wal/0000000000000001/0000000000000020.wal.lz4",
        b"defg",
    );
    put(
        "generations/00000000000000a1/wal/0000000000000001/README",
        b"junk",
    );
    put(
        "generations/00000000000000b2/snapshots/0000000000000003.snapshot.lz4",
        b"xy",
    );
    dir
}

fn json(out: &[u8]) -> serde_json::Value {
    serde_json::from_slice(out).expect("valid JSON")
}

#[test]
fn snapshots_json_lists_every_snapshot_with_plain_integers() {
    let dir = make_replica();
    let out = replica()
        .args(["snapshots", dir.path().to_str().unwrap(), "--json"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let rows = json(&out.stdout);
    let rows = rows.as_array().unwrap();
    assert_eq!(rows.len(), 2);
    assert_eq!(rows[0]["generation"], "00000000000000a1");
    assert_eq!(rows[0]["index"], 1);
    assert_eq!(rows[0]["size"], 10);
    assert!(rows[0]["created_at"].as_str().unwrap().ends_with('Z'));
    assert_eq!(rows[1]["index"], 3);
}

#[test]
fn wal_json_lists_segments_in_order_and_skips_junk() {
    let dir = make_replica();
    let url = format!("file://{}", dir.path().display());
    let out = replica()
        .args(["wal", &url, "--generation", "00000000000000a1", "--json"])
        .output()
        .unwrap();
    assert!(out.status.success());
    let rows = json(&out.stdout);
    let offsets: Vec<u64> = rows
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["offset"].as_u64().unwrap())
        .collect();
    assert_eq!(offsets, [0, 32]);
}

#[test]
fn generations_table_marks_the_latest_and_counts_objects() {
    let dir = make_replica();
    let out = replica()
        .args(["generations", dir.path().to_str().unwrap(), "--json"])
        .output()
        .unwrap();
    assert!(out.status.success());
    let rows = json(&out.stdout);
    let a1 = &rows[0];
    assert_eq!(
        (
            a1["snapshots"].as_u64(),
            a1["wal_segments"].as_u64(),
            a1["bytes"].as_u64()
        ),
        (Some(1), Some(2), Some(17))
    );
    let latest: Vec<bool> = rows
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["latest"].as_bool().unwrap())
        .collect();
    assert_eq!(latest.iter().filter(|l| **l).count(), 1);
    let table = replica()
        .args(["generations", dir.path().to_str().unwrap()])
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&table.stdout).contains("(latest)"));
}

#[test]
fn bad_input_gives_one_clear_line_and_a_non_zero_exit() {
    for args in [
        vec!["snapshots", "ftp://host/x"],
        vec!["snapshots", "/tmp", "--generation", "../../etc"],
        vec!["wal", "s3://[bad"],
        vec!["snapshots", "/tmp", "--generation", "00000000000000ff"],
        vec!["verify", "/tmp", "--generation", "00000000000000ff"],
        vec!["cat", "/tmp", "00000000000000ff/0000000000000001"],
    ] {
        let out = replica().args(&args).output().unwrap();
        assert!(!out.status.success(), "{args:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(err.lines().count(), 1, "{args:?}: {err}");
        assert!(err.starts_with("replica: "), "{err}");
        assert!(!err.contains("panicked"), "{err}");
    }
}

#[test]
fn conformance_prints_the_parity_matrix_of_the_builtin_backends() {
    let out_dir = tempfile::tempdir().unwrap();
    let out = replica()
        .args([
            "conformance",
            "--filter",
            "sorted",
            "--out",
            out_dir.path().to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("snapshots::snapshots_are_sorted_by_index"),
        "{text}"
    );
    for backend in ["memory", "file", "os-local"] {
        for layout in ["0.3", "0.4", "0.5"] {
            assert!(
                text.contains(&format!("{backend} {layout}: ")),
                "{backend} {layout} missing: {text}"
            );
        }
    }
    let report = json(&std::fs::read(out_dir.path().join("report.json")).unwrap());
    assert_eq!(report.as_array().unwrap().len(), 9);
    assert!(out_dir.path().join("report.md").exists());
}

#[test]
fn conformance_on_a_url_gives_each_case_a_fresh_location() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("file://{}", dir.path().display());
    let out = replica()
        .args(["conformance", &url, "--filter", "generations_"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert!(text.contains(" 0 failed"), "{text}");
    let left: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
    assert!(left.is_empty(), "the run cleans up after itself: {left:?}");
    // --keep keeps each case's location.
    let out = replica()
        .args([
            "conformance",
            &url,
            "--filter",
            "generations_are_listed",
            "--keep",
        ])
        .output()
        .unwrap();
    assert!(out.status.success());
    let runs: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(runs.len(), 2, "one run per layout, kept: {runs:?}");
    for run in runs {
        let name = run.file_name().unwrap().to_str().unwrap().to_owned();
        assert!(name.starts_with("conformance-"), "{name}");
        assert_eq!(
            std::fs::read_dir(&run).unwrap().count(),
            1,
            "the case's location"
        );
    }
}

#[test]
fn cat_writes_decompressed_bytes_and_rejects_corrupt_objects() {
    let dir = tempfile::tempdir().unwrap();
    let put = |rel: &str, data: &[u8]| write_file(dir.path(), rel, data);
    let g = "generations/00000000000000a1";
    put(
        &format!("{g}/snapshots/0000000000000001.snapshot.lz4"),
        &replica::lz4::compress(b"database"),
    );
    put(
        &format!("{g}/wal/0000000000000001/0000000000000020.wal.lz4"),
        &replica::lz4::compress(b"wal bytes"),
    );
    put(
        &format!("{g}/snapshots/0000000000000002.snapshot.lz4"),
        b"not lz4 at all",
    );
    let root = dir.path().to_str().unwrap();
    let out = replica()
        .args(["cat", root, "00000000000000a1/0000000000000001"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(out.stdout, b"database");
    let out = replica()
        .args([
            "cat",
            root,
            "00000000000000a1/0000000000000001:0000000000000020",
        ])
        .output()
        .unwrap();
    assert_eq!(out.stdout, b"wal bytes");
    for bad in [
        "00000000000000a1/0000000000000002",
        "00000000000000a1/0000000000000009",
        "x/y",
    ] {
        let out = replica().args(["cat", root, bad]).output().unwrap();
        assert!(!out.status.success(), "{bad}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(err.lines().count(), 1, "{bad}: {err}");
    }
}

/// The objects of a sound replica: a SQLite database (512-byte pages) as
/// the snapshot at index 1; WAL index 1 in two contiguous segments (its
/// 32-byte header, then a commit frame); index 2 (a header and a commit
/// frame). Each WAL rewrites page 2 as the snapshot has it.
fn sound_objects() -> [Vec<u8>; 4] {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db");
    let conn = rusqlite::Connection::open(&path).unwrap();
    conn.execute_batch("PRAGMA page_size = 512; PRAGMA journal_mode = wal; CREATE TABLE t (x);")
        .unwrap();
    conn.execute_batch("PRAGMA wal_checkpoint(TRUNCATE);")
        .unwrap();
    drop(conn);
    let db = std::fs::read(&path).unwrap();
    assert_eq!(db.len(), 1024, "two 512-byte pages");
    let page2 = &db[512..];
    let mut one = replica_sqlite::wal::WalBuilder::new(512, false);
    one.frame_of(2, 2, page2);
    let mut two = replica_sqlite::wal::WalBuilder::new(512, false);
    two.frame_of(2, 2, page2);
    [
        db.clone(),
        one.bytes[..32].to_vec(),
        one.bytes[32..].to_vec(),
        two.bytes,
    ]
}

/// A sound replica: snapshot at 1, WAL index 1 with two contiguous segments, index 2.
fn sound_replica() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let put = |rel: &str, data: &[u8]| write_file(dir.path(), rel, &replica::lz4::compress(data));
    let g = "generations/00000000000000a1";
    let [db, a, b, c] = sound_objects();
    put(&format!("{g}/snapshots/0000000000000001.snapshot.lz4"), &db);
    put(
        &format!("{g}/wal/0000000000000001/0000000000000000.wal.lz4"),
        &a,
    );
    put(
        &format!("{g}/wal/0000000000000001/0000000000000020.wal.lz4"),
        &b,
    );
    put(
        &format!("{g}/wal/0000000000000002/0000000000000000.wal.lz4"),
        &c,
    );
    dir
}

#[test]
fn verify_passes_a_sound_replica_with_junk_names_beside_it() {
    let dir = sound_replica();
    std::fs::write(
        dir.path()
            .join("generations/00000000000000a1/wal/0000000000000001/README"),
        "junk",
    )
    .unwrap();
    std::fs::write(dir.path().join("generations/README"), "junk").unwrap();
    let out = replica()
        .args(["verify", dir.path().to_str().unwrap()])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert!(
        text.contains("generation 00000000000000a1: OK (1 snapshots, 3 WAL segments)"),
        "{text}"
    );
}

#[test]
fn verify_names_a_corrupt_frame_and_a_gap_and_exits_1() {
    let dir = sound_replica();
    let g = dir.path().join("generations/00000000000000a1");
    std::fs::write(
        g.join("snapshots/0000000000000001.snapshot.lz4"),
        b"\x04\x22\x4d\x18garbage",
    )
    .unwrap();
    std::fs::remove_file(g.join("wal/0000000000000001/0000000000000000.wal.lz4")).unwrap();
    let out = replica()
        .args(["verify", dir.path().to_str().unwrap()])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(text.contains("2 DEFECTS"), "{text}");
    assert!(
        text.contains(
            "corrupt data in generations/00000000000000a1/snapshots/0000000000000001.snapshot.lz4"
        ),
        "{text}"
    );
    assert!(
        text.contains("wal/0000000000000001/0000000000000020.wal.lz4: WAL gap: expected 00000000000000a1/0000000000000001:0000000000000000"),
        "{text}"
    );
}

#[test]
fn verify_reports_a_generation_without_snapshot() {
    let dir = sound_replica();
    std::fs::remove_file(
        dir.path()
            .join("generations/00000000000000a1/snapshots/0000000000000001.snapshot.lz4"),
    )
    .unwrap();
    let out = replica()
        .args(["verify", dir.path().to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stdout).contains("no snapshot to start from"));
}

/// Every file under a directory with its bytes, relative paths sorted.
fn files(root: &std::path::Path) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    let mut dirs = vec![root.to_owned()];
    while let Some(d) = dirs.pop() {
        for e in std::fs::read_dir(d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                dirs.push(p);
            } else {
                let rel = p.strip_prefix(root).unwrap().to_string_lossy().into_owned();
                out.push((rel, std::fs::read(&p).unwrap()));
            }
        }
    }
    out.sort();
    out
}

#[test]
fn copy_mirrors_byte_exactly_and_a_rerun_skips_everything() {
    let src = sound_replica();
    let dst = tempfile::tempdir().unwrap();
    let (s, d) = (src.path().to_str().unwrap(), dst.path().to_str().unwrap());
    let out = replica().args(["copy", s, d]).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("copied 4 objects"));
    assert!(out.stderr.is_empty(), "no progress bar when not a terminal");
    assert_eq!(files(src.path()), files(dst.path()));
    let again = replica().args(["copy", s, d]).output().unwrap();
    assert!(
        String::from_utf8_lossy(&again.stdout).contains("copied 0 objects (0 bytes), skipped 4")
    );
}

#[test]
fn copy_through_an_object_store_round_trips_byte_exactly() {
    // file → S3 → file when an S3 server is configured (CI), else file → file → file.
    let src = sound_replica();
    let back = tempfile::tempdir().unwrap();
    let middle_dir = tempfile::tempdir().unwrap();
    let middle = match std::env::var("REPLICA_S3_BUCKET") {
        Ok(bucket) if std::env::var("AWS_ENDPOINT").is_ok() => {
            format!("s3://{bucket}/cli-copy-{}", std::process::id())
        }
        _ => middle_dir.path().to_str().unwrap().to_owned(),
    };
    for (from, to) in [
        (src.path().to_str().unwrap(), middle.as_str()),
        (middle.as_str(), back.path().to_str().unwrap()),
    ] {
        let out = replica().args(["copy", from, to]).output().unwrap();
        assert!(
            out.status.success(),
            "{from} -> {to}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    assert_eq!(files(src.path()), files(back.path()));
}

/// The replica of [`sound_replica`], named in the Litestream 0.3 layout.
fn sound_replica_0_3() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let put = |rel: &str, data: &[u8]| write_file(dir.path(), rel, &replica::lz4::compress(data));
    let g = "generations/00000000000000a1";
    let [db, a, b, c] = sound_objects();
    put(&format!("{g}/snapshots/00000001.snapshot.lz4"), &db);
    put(&format!("{g}/wal/00000001_00000000.wal.lz4"), &a);
    put(&format!("{g}/wal/00000001_00000020.wal.lz4"), &b);
    put(&format!("{g}/wal/00000002_00000000.wal.lz4"), &c);
    dir
}

fn stdout_of(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn stderr_of(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn listings_name_the_layout_they_read_and_follow_the_layout_flag() {
    let dir = sound_replica_0_3();
    let path = dir.path().to_str().unwrap();
    let out = replica().args(["wal", path]).output().unwrap();
    assert!(out.status.success(), "{}", stderr_of(&out));
    let text = stdout_of(&out);
    assert_eq!(
        text.lines().next(),
        Some("layout: litestream-0.3"),
        "{text}"
    );
    assert_eq!(text.lines().count(), 2 + 3, "{text}");
    let rows = json(
        &replica()
            .args(["snapshots", path, "--json"])
            .output()
            .unwrap()
            .stdout,
    );
    assert_eq!(rows[0]["layout"], "litestream-0.3");
    assert_eq!(rows[0]["index"], 1);
    // Read as 0.4, the same directory holds nothing.
    let out = replica()
        .args(["wal", path, "--layout", "litestream-0.4"])
        .output()
        .unwrap();
    let text = stdout_of(&out);
    assert_eq!(
        text.lines().next(),
        Some("layout: litestream-0.4"),
        "{text}"
    );
    assert_eq!(text.lines().count(), 2, "{text}");
    // An unknown layout is a clear error listing the known ones.
    let out = replica()
        .args(["wal", path, "--layout", "litestream-9"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        stderr_of(&out).contains("litestream-0.3"),
        "{}",
        stderr_of(&out)
    );
}

#[test]
fn a_store_holding_both_layouts_asks_which_one() {
    let dir = sound_replica_0_3();
    write_file(
        dir.path(),
        "generations/00000000000000b2/snapshots/0000000000000003.snapshot.lz4",
        &replica::lz4::compress(b"x"),
    );
    let path = dir.path().to_str().unwrap();
    let out = replica().args(["generations", path]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(out.stdout.is_empty());
    let err = stderr_of(&out);
    assert!(
        err.contains("litestream-0.3") && err.contains("litestream-0.4") && err.contains("layout="),
        "{err}"
    );
    let out = replica()
        .args([
            "generations",
            &format!("file://{path}?layout=litestream-0.4"),
        ])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr_of(&out));
    assert!(stdout_of(&out).contains("00000000000000b2"));
    assert!(!stdout_of(&out).contains("00000000000000a1"));
}

#[test]
fn a_flipped_byte_in_a_frame_is_corrupt_and_names_the_object() {
    let dir = sound_replica_0_3();
    let key = "generations/00000000000000a1/wal/00000001_00000000.wal.lz4";
    let path = dir.path().join(key);
    let mut bytes = std::fs::read(&path).unwrap();
    let at = bytes.len() - 2; // in the content checksum
    bytes[at] ^= 0x01;
    std::fs::write(&path, bytes).unwrap();
    let root = dir.path().to_str().unwrap();
    let out = replica().args(["verify", root]).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let text = stdout_of(&out);
    assert!(
        text.contains(&format!("corrupt data in {key}")) && text.contains("checksum"),
        "{text}"
    );
    let out = replica()
        .args([
            "cat",
            root,
            "00000000000000a1/0000000000000001:0000000000000000",
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(stderr_of(&out).contains(key), "{}", stderr_of(&out));
}

#[test]
fn copy_into_an_empty_destination_keeps_the_source_layout() {
    let src = sound_replica_0_3();
    let dst = tempfile::tempdir().unwrap();
    let out = replica()
        .args([
            "copy",
            src.path().to_str().unwrap(),
            dst.path().to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr_of(&out));
    assert!(
        stdout_of(&out).contains("(litestream-0.3 to litestream-0.3)"),
        "{}",
        stdout_of(&out)
    );
    assert_eq!(files(src.path()), files(dst.path()));
}

#[test]
fn copy_between_layouts_rewrites_names_and_refuses_what_0_3_cannot_name() {
    let src = sound_replica();
    let dst = tempfile::tempdir().unwrap();
    let out = replica()
        .args([
            "copy",
            src.path().to_str().unwrap(),
            dst.path().to_str().unwrap(),
            "--dst-layout",
            "litestream-0.3",
        ])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr_of(&out));
    assert_eq!(files(dst.path()), files(sound_replica_0_3().path()));

    // An index above 0x7fffffff fits 16 hex digits but not 8.
    write_file(
        src.path(),
        "generations/00000000000000a1/wal/0000000100000000/0000000000000000.wal.lz4",
        &replica::lz4::compress(b"far"),
    );
    let empty = tempfile::tempdir().unwrap();
    let out = replica()
        .args([
            "copy",
            src.path().to_str().unwrap(),
            &format!("file://{}?layout=litestream-0.3", empty.path().display()),
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = stderr_of(&out);
    assert!(
        err.contains("litestream-0.3")
            && err.contains("0x100000000")
            && err.contains("nothing was copied"),
        "{err}"
    );
    assert!(files(empty.path()).is_empty(), "nothing copied");
}

#[test]
fn json_output_is_all_or_nothing() {
    let dir = sound_replica_0_3();
    for command in ["snapshots", "wal"] {
        let out = replica()
            .args([
                command,
                dir.path().to_str().unwrap(),
                "--json",
                "--generation",
                "00000000000000ff",
            ])
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{command}");
        assert!(
            out.stdout.is_empty(),
            "{command}: partial JSON: {}",
            stdout_of(&out)
        );
        assert!(stderr_of(&out).contains("not found"), "{}", stderr_of(&out));
    }
}

#[test]
fn verify_of_a_location_without_a_replica_fails_and_names_another_layout_found_there() {
    let empty = tempfile::tempdir().unwrap();
    let out = replica()
        .args(["verify", &format!("{}/typo", empty.path().display())])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr_of(&out).contains("no replica found at"),
        "{}",
        stderr_of(&out)
    );

    let dir = sound_replica_0_3();
    let out = replica()
        .args([
            "verify",
            dir.path().to_str().unwrap(),
            "--layout",
            "litestream-0.4",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = stderr_of(&out);
    assert!(
        err.contains("no replica found") && err.contains("--layout litestream-0.3"),
        "{err}"
    );
}

#[test]
fn an_http_endpoint_without_allow_http_names_the_fix() {
    let out = replica()
        .args([
            "generations",
            "s3://bucket/prefix?endpoint=http://127.0.0.1:9&region=us-east-1",
            "--layout",
            "litestream-0.3",
        ])
        .env_remove("AWS_ALLOW_HTTP")
        .env("AWS_ACCESS_KEY_ID", "key")
        .env("AWS_SECRET_ACCESS_KEY", "secret")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = stderr_of(&out);
    assert!(
        err.contains("allow_http=true") && err.contains("AWS_ALLOW_HTTP"),
        "{err}"
    );
    assert_eq!(err.lines().count(), 1, "one line: {err}");
}

/// `replica generations` on an S3 URL with no AWS keys, under `envs`.
fn without_credentials(envs: &[(&str, &str)]) -> std::process::Output {
    replica()
        .args([
            "generations",
            "s3://bucket/prefix?endpoint=http://127.0.0.1:9&allow_http=true&region=us-east-1",
            "--layout",
            "litestream-0.3",
        ])
        .env_remove("AWS_ACCESS_KEY_ID")
        .env_remove("AWS_SECRET_ACCESS_KEY")
        .env_remove("AWS_PROFILE")
        .env_remove("AWS_EC2_METADATA_DISABLED")
        .envs(envs.iter().copied())
        .timeout(std::time::Duration::from_secs(120))
        .output()
        .unwrap()
}

#[test]
fn missing_credentials_are_named_as_the_cause() {
    // AWS_EC2_METADATA_DISABLED=true (the AWS SDKs' convention): no request
    // to the instance metadata service at all, an immediate error. (The
    // metadata endpoint is a closed local port, should one be made.)
    let started = std::time::Instant::now();
    let out = without_credentials(&[
        ("AWS_EC2_METADATA_DISABLED", "true"),
        ("AWS_METADATA_ENDPOINT", "http://127.0.0.1:9"),
    ]);
    assert_eq!(out.status.code(), Some(2));
    let err = stderr_of(&out);
    assert!(err.contains("AWS_ACCESS_KEY_ID"), "{err}");
    assert!(
        err.contains("AWS_EC2_METADATA_DISABLED=true forbids"),
        "{err}"
    );
    assert!(
        !err.contains("latest/api/token"),
        "no metadata request: {err}"
    );
    assert!(started.elapsed() < std::time::Duration::from_secs(10));
    // Without it, object_store asks the metadata service: here a closed
    // local port (never the cloud's address from a test), and the message
    // names the missing keys as the cause, not the endpoint.
    let out = without_credentials(&[("AWS_METADATA_ENDPOINT", "http://127.0.0.1:9")]);
    assert_eq!(out.status.code(), Some(2));
    let err = stderr_of(&out);
    assert!(err.contains("127.0.0.1:9/latest/api/token"), "{err}");
    assert!(err.contains("no AWS credentials were configured"), "{err}");
}

#[test]
fn an_unknown_option_in_the_url_is_named_not_ignored() {
    let out = replica()
        .args([
            "generations",
            "s3://bucket/prefix?endpoint=http://127.0.0.1:9&alow_http=true",
        ])
        .env("AWS_ACCESS_KEY_ID", "key")
        .env("AWS_SECRET_ACCESS_KEY", "secret")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = stderr_of(&out);
    assert!(err.contains("unknown option `alow_http`"), "{err}");
}

#[test]
fn an_endpoint_that_never_answers_fails_in_bounded_time_saying_so() {
    // Accepts connections and never answers, as a black-holed proxy does.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let (stop_tx, stop_rx) = std::sync::mpsc::channel::<()>();
    listener.set_nonblocking(true).unwrap();
    let holder = std::thread::spawn(move || {
        let mut held = Vec::new();
        while stop_rx.try_recv().is_err() {
            match listener.accept() {
                Ok((conn, _)) => held.push(conn),
                Err(_) => std::thread::sleep(std::time::Duration::from_millis(5)),
            }
        }
    });
    let started = std::time::Instant::now();
    let out = replica()
        .args([
            "generations",
            &format!(
                "s3://bucket/prefix?endpoint=http://127.0.0.1:{port}&allow_http=true&region=us-east-1&timeout=300ms"
            ),
        ])
        .env("AWS_ACCESS_KEY_ID", "key")
        .env("AWS_SECRET_ACCESS_KEY", "secret")
        .timeout(std::time::Duration::from_secs(120))
        .output()
        .unwrap();
    let waited = started.elapsed();
    stop_tx.send(()).unwrap();
    holder.join().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = stderr_of(&out);
    // Ten retries of 300 ms requests with backoff, all within the 30 s
    // retry window; the message says what was waited for and the fix.
    assert!(
        waited < std::time::Duration::from_secs(60),
        "waited {waited:?}"
    );
    assert!(
        err.contains("timed out") && err.contains("retry_timeout: 30s"),
        "{err}"
    );
    assert!(err.contains("did not answer in time"), "{err}");
}
