//! Interop with the real Litestream 0.3.13 binary and the real `sqlite3`.
//!
//! Litestream replicates a live database (a writer inserting, updating and
//! deleting across several checkpoints, so there are several WAL indexes and
//! snapshots) to a file replica and to an S3 replica on moto; it is stopped
//! with SIGTERM (which makes it sync one last time). Then the `replica`
//! binary must list exactly the objects that are there, verify them, and copy
//! the replica into the 0.4 layout and back into 0.3 in another backend with
//! byte-identical objects, which `litestream restore` restores to the
//! source's rows (compared with `sqlite3`, plus `PRAGMA integrity_check`).
//!
//! Needs `litestream` (`REPLICA_LITESTREAM`, else `PATH`) and `sqlite3` on
//! `PATH`; the S3 case also needs the moto settings of `.ci/run`
//! (`AWS_ENDPOINT`, `REPLICA_S3_BUCKET`, ...). `.ci/run` installs and starts
//! everything and sets `REPLICA_REQUIRE_LITESTREAM=1`, so there a missing tool
//! fails the test instead of skipping it.

mod common;

use common::*;

#[test]
fn a_file_replica_written_by_litestream_lists_verifies_and_round_trips_through_0_4() {
    let Some(litestream) = litestream() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let replica_dir = dir.path().join("replica");
    let expected = replicate_live(&litestream, dir.path(), &file_replica_yaml(&replica_dir)).rows;
    let url = format!("file://{}", replica_dir.display());
    let on_disk = files(&replica_dir);
    let listed = listed_keys(&url);
    assert_eq!(listed, on_disk.keys().cloned().collect::<Vec<_>>());
    assert_rich(&listed);
    let verified = run_ok(replica().args(["verify", &url]));
    assert!(
        verified.contains("layout litestream-0.3") && verified.contains(": OK"),
        "{verified}"
    );

    // 0.3 → 0.4 in an object store (LocalFileSystem under the facade's
    // `file://` is the file backend, so go through a second directory and
    // memory is not shared across processes): a 0.4 directory, then back.
    let nested = dir.path().join("as-0.4");
    run_ok(replica().args([
        "copy",
        &url,
        &format!("file://{}?layout=litestream-0.4", nested.display()),
    ]));
    let nested_files = files(&nested);
    assert_eq!(nested_files.len(), on_disk.len());
    assert!(
        nested_files.keys().all(|k| !k.contains('_')),
        "0.4 names have no '_': {:?}",
        nested_files.keys().next()
    );
    let back = dir.path().join("back-0.3");
    run_ok(replica().args([
        "copy",
        &format!("file://{}", nested.display()),
        &format!("file://{}", back.display()),
        "--dst-layout",
        "litestream-0.3",
    ]));
    assert!(files(&back) == on_disk, "objects changed in the round trip");
    assert_litestream_restores(
        &litestream,
        dir.path(),
        &format!("file://{}", back.display()),
        &expected,
    );
    assert_litestream_restores(&litestream, dir.path(), &url, &expected);
}

#[test]
fn an_s3_replica_written_by_litestream_lists_verifies_and_round_trips_through_0_4() {
    let Some(litestream) = litestream() else {
        return;
    };
    let Some((bucket, endpoint)) = s3_settings() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let prefix = format!("litestream-{:016x}", rand::random::<u64>());
    let expected = replicate_live(
        &litestream,
        dir.path(),
        &s3_replica_yaml(&bucket, &format!("{prefix}/replica"), &endpoint),
    )
    .rows;
    let url = format!("s3://{bucket}/{prefix}/replica");
    let in_bucket = bucket_objects(&bucket, &format!("{prefix}/replica"));
    let listed = listed_keys(&url);
    assert_eq!(listed, in_bucket.keys().cloned().collect::<Vec<_>>());
    assert_rich(&listed);
    let verified = run_ok(replica().args(["verify", &url]));
    assert!(verified.contains(": OK"), "{verified}");

    // S3 (0.3) → a 0.4 directory → S3 again under another prefix, in 0.3.
    let nested = dir.path().join("as-0.4");
    run_ok(replica().args([
        "copy",
        &url,
        nested.to_str().unwrap(),
        "--dst-layout",
        "litestream-0.4",
    ]));
    let back = format!("s3://{bucket}/{prefix}/back?layout=litestream-0.3");
    run_ok(replica().args(["copy", nested.to_str().unwrap(), &back]));
    assert!(
        bucket_objects(&bucket, &format!("{prefix}/back")) == in_bucket,
        "objects changed in the round trip"
    );
    assert_litestream_restores_s3(
        &litestream,
        dir.path(),
        &bucket,
        &format!("{prefix}/back"),
        &expected,
    );
}
