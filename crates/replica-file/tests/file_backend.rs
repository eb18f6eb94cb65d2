//! Behaviour specific to the file backend: exact paths, modes, durability
//! mechanics, and argument checks that must happen before any I/O.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use replica_core::{bytes_stream, collect_bytes, Generation, Pos, ReplicaClient};
use replica_file::{FileClient, FileOptions, FileStore};

fn gen() -> Generation {
    "0123456789abcdef".parse().unwrap()
}

/// Every file under `root`, as relative paths, sorted.
fn tree(root: &Path) -> Vec<String> {
    fn walk(base: &Path, dir: &Path, out: &mut Vec<String>) {
        for e in std::fs::read_dir(dir).unwrap() {
            let e = e.unwrap();
            let p = e.path();
            if e.file_type().unwrap().is_dir() {
                walk(base, &p, out);
            } else {
                out.push(p.strip_prefix(base).unwrap().to_string_lossy().into_owned());
            }
        }
    }
    let mut out = Vec::new();
    if root.exists() {
        walk(root, root, &mut out);
    }
    out.sort();
    out
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o7777
}

#[tokio::test]
async fn a_replica_has_exactly_the_spec_paths() {
    let dir = tempfile::tempdir().unwrap();
    let c = FileClient::new(FileStore::new(dir.path()));
    c.write_snapshot(&gen(), 1000, bytes_stream("snap"))
        .await
        .unwrap();
    c.write_wal_segment(&Pos::new(gen(), 1000, 0).unwrap(), bytes_stream("w0"))
        .await
        .unwrap();
    c.write_wal_segment(&Pos::new(gen(), 1000, 4152).unwrap(), bytes_stream("w1"))
        .await
        .unwrap();
    assert_eq!(
        tree(dir.path()),
        [
            "generations/0123456789abcdef/snapshots/00000000000003e8.snapshot.lz4",
            "generations/0123456789abcdef/wal/00000000000003e8/0000000000000000.wal.lz4",
            "generations/0123456789abcdef/wal/00000000000003e8/0000000000001038.wal.lz4",
        ],
        "no temporaries left behind, nothing else written"
    );
    let stored = std::fs::read(
        dir.path()
            .join("generations/0123456789abcdef/snapshots/00000000000003e8.snapshot.lz4"),
    )
    .unwrap();
    assert_eq!(stored, b"snap", "bytes are stored as given");
}

#[tokio::test]
async fn files_default_to_0600_and_directories_to_0700() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("r");
    let c = FileClient::new(FileStore::new(&root));
    c.write_snapshot(&gen(), 1, bytes_stream("x"))
        .await
        .unwrap();
    let g = root.join("generations/0123456789abcdef");
    assert_eq!(
        mode(&g.join("snapshots/0000000000000001.snapshot.lz4")),
        0o600
    );
    for d in [&root, &root.join("generations"), &g, &g.join("snapshots")] {
        assert_eq!(mode(d), 0o700, "{}", d.display());
    }
}

#[tokio::test]
async fn modes_are_configurable_and_exact_despite_the_umask() {
    let dir = tempfile::tempdir().unwrap();
    let opts = FileOptions {
        file_mode: 0o664,
        dir_mode: 0o775,
        ..FileOptions::default()
    };
    let c = FileClient::new(FileStore::with_options(dir.path().join("r"), opts));
    let pos = Pos::new(gen(), 2, 0).unwrap();
    c.write_wal_segment(&pos, bytes_stream("x")).await.unwrap();
    let idx = dir
        .path()
        .join("r/generations/0123456789abcdef/wal/0000000000000002");
    assert_eq!(mode(&idx.join("0000000000000000.wal.lz4")), 0o664);
    assert_eq!(mode(&idx), 0o775);
}

#[tokio::test]
async fn owner_can_be_set_on_created_files() {
    use std::os::unix::fs::MetadataExt;
    let dir = tempfile::tempdir().unwrap();
    let me = std::fs::metadata(dir.path()).unwrap();
    let opts = FileOptions {
        uid: Some(me.uid()),
        gid: Some(me.gid()),
        ..FileOptions::default()
    };
    let c = FileClient::new(FileStore::with_options(dir.path(), opts));
    c.write_snapshot(&gen(), 1, bytes_stream("x"))
        .await
        .unwrap();
    let f = std::fs::metadata(
        dir.path()
            .join("generations/0123456789abcdef/snapshots/0000000000000001.snapshot.lz4"),
    )
    .unwrap();
    assert_eq!((f.uid(), f.gid()), (me.uid(), me.gid()));
}

#[tokio::test]
async fn an_empty_root_is_replica_path_required_on_every_operation() {
    let c = FileClient::new(FileStore::new(""));
    let pos = Pos::new(gen(), 0, 0).unwrap();
    let results = vec![
        c.generations().await.map(|_| ()),
        c.delete_generation(&gen()).await,
        c.snapshots(&gen()).await.map(|_| ()),
        c.write_snapshot(&gen(), 0, bytes_stream("x"))
            .await
            .map(|_| ()),
        c.snapshot_reader(&gen(), 0).await.map(|_| ()),
        c.delete_snapshot(&gen(), 0).await,
        c.wal_segments(&gen()).await.map(|_| ()),
        c.write_wal_segment(&pos, bytes_stream("x"))
            .await
            .map(|_| ()),
        c.wal_segment_reader(&pos).await.map(|_| ()),
        c.delete_wal_segments(std::slice::from_ref(&pos)).await,
    ];
    for (i, r) in results.into_iter().enumerate() {
        let err = r.expect_err("must fail");
        assert!(err.is_invalid_argument(), "op {i}: {err}");
        assert_eq!(
            err.to_string(),
            "invalid argument: replica path required",
            "op {i}"
        );
    }
}

#[tokio::test]
async fn rejected_arguments_never_touch_the_disk() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("r");
    let c = FileClient::new(FileStore::new(&root));
    let over = 1u64 << 63;
    assert!(c
        .write_snapshot(&gen(), over, bytes_stream("x"))
        .await
        .is_err());
    assert!(c
        .write_wal_segment(
            &Pos {
                generation: gen(),
                index: 0,
                offset: over
            },
            bytes_stream("x")
        )
        .await
        .is_err());
    for hostile in [
        "../../etc",
        "/etc/passwd",
        "0123456789abcde\0",
        &"a".repeat(300),
    ] {
        assert!(hostile.parse::<Generation>().is_err());
    }
    assert!(!root.exists(), "a rejected call created {}", root.display());
    assert_eq!(tree(dir.path()), Vec::<String>::new());
}

#[tokio::test]
async fn a_failed_write_leaves_no_temporary_file() {
    let dir = tempfile::tempdir().unwrap();
    let c = FileClient::new(FileStore::new(dir.path()));
    c.write_snapshot(&gen(), 1, bytes_stream("old"))
        .await
        .unwrap();
    let failing = futures::stream::iter(vec![
        Ok(bytes::Bytes::from_static(b"partial")),
        Err(replica_core::Error::io(
            "input",
            std::io::Error::other("boom"),
        )),
    ]);
    let err = c
        .write_snapshot(&gen(), 1, Box::pin(failing))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("boom"), "{err}");
    assert_eq!(
        tree(dir.path()),
        ["generations/0123456789abcdef/snapshots/0000000000000001.snapshot.lz4"]
    );
    let data = collect_bytes(c.snapshot_reader(&gen(), 1).await.unwrap())
        .await
        .unwrap();
    assert_eq!(&data[..], b"old");
}

#[tokio::test]
async fn a_symlink_is_never_listed_or_followed_out_of_the_root() {
    let dir = tempfile::tempdir().unwrap();
    let outside = tempfile::tempdir().unwrap();
    std::fs::write(outside.path().join("secret"), "x").unwrap();
    let snaps = dir.path().join("generations/0123456789abcdef/snapshots");
    std::fs::create_dir_all(&snaps).unwrap();
    std::os::unix::fs::symlink(
        outside.path().join("secret"),
        snaps.join("0000000000000001.snapshot.lz4"),
    )
    .unwrap();
    std::os::unix::fs::symlink(
        outside.path(),
        dir.path().join("generations/00000000000000ff"),
    )
    .unwrap();
    let c = FileClient::new(FileStore::new(dir.path()));
    assert!(c.snapshots(&gen()).await.unwrap().is_empty());
    assert!(c.generations().await.unwrap().is_empty());
    let err = c.snapshot_reader(&gen(), 1).await.map(|_| ()).unwrap_err();
    assert!(err.is_not_found(), "a symlink must not be followed: {err}");
}

#[tokio::test]
async fn stale_temporaries_are_removed_by_age_and_nothing_else_is() {
    let dir = tempfile::tempdir().unwrap();
    let c = FileClient::new(FileStore::new(dir.path()));
    c.write_snapshot(&gen(), 1, bytes_stream("keep"))
        .await
        .unwrap();
    let snaps = dir.path().join("generations/0123456789abcdef/snapshots");
    std::fs::write(
        snaps.join(".0000000000000002.snapshot.lz4.00000000deadbeef.tmp"),
        "stale",
    )
    .unwrap();
    std::fs::write(snaps.join("notes.tmp"), "not ours").unwrap();
    std::fs::write(snaps.join(".README.00000000deadbeef.tmp"), "not ours").unwrap();
    assert_eq!(
        c.store()
            .remove_stale_temporaries(std::time::Duration::from_secs(3600))
            .await
            .unwrap(),
        0,
        "too young"
    );
    assert_eq!(
        c.store()
            .remove_stale_temporaries(std::time::Duration::ZERO)
            .await
            .unwrap(),
        1
    );
    let mut left = tree(dir.path());
    left.sort();
    assert_eq!(
        left,
        [
            "generations/0123456789abcdef/snapshots/.README.00000000deadbeef.tmp",
            "generations/0123456789abcdef/snapshots/0000000000000001.snapshot.lz4",
            "generations/0123456789abcdef/snapshots/notes.tmp",
        ]
    );
}

#[tokio::test]
async fn a_file_where_a_directory_belongs_reads_as_not_found_and_deletes_as_ok() {
    let dir = tempfile::tempdir().unwrap();
    let index_dir = dir
        .path()
        .join("generations/0123456789abcdef/wal/0000000000000001");
    std::fs::create_dir_all(index_dir.parent().unwrap()).unwrap();
    std::fs::write(&index_dir, "a file, not a directory").unwrap();
    let c = FileClient::new(FileStore::new(dir.path()));
    let pos = Pos::new(gen(), 1, 0).unwrap();
    let err = c.wal_segment_reader(&pos).await.map(drop).unwrap_err();
    assert!(err.is_not_found(), "{err}");
    c.delete_wal_segments(&[pos]).await.unwrap();
    assert!(index_dir.is_file(), "not an object: left alone");
}

#[tokio::test]
async fn deleting_the_last_segment_of_an_index_removes_its_directory() {
    let dir = tempfile::tempdir().unwrap();
    let c = FileClient::new(FileStore::new(dir.path()));
    let (a, b) = (
        Pos::new(gen(), 1, 0).unwrap(),
        Pos::new(gen(), 1, 8).unwrap(),
    );
    for p in [&a, &b] {
        c.write_wal_segment(p, bytes_stream("w")).await.unwrap();
    }
    let index_dir = dir
        .path()
        .join("generations/0123456789abcdef/wal/0000000000000001");
    c.delete_wal_segments(std::slice::from_ref(&a))
        .await
        .unwrap();
    assert!(index_dir.is_dir(), "still holds a segment");
    c.delete_wal_segments(&[b]).await.unwrap();
    assert!(!index_dir.exists(), "an emptied index directory is removed");
    // And it comes back with the next write.
    c.write_wal_segment(&a, bytes_stream("w")).await.unwrap();
    assert_eq!(
        collect_bytes(c.wal_segment_reader(&a).await.unwrap())
            .await
            .unwrap(),
        "w"
    );
}
