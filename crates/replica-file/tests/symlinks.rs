//! No symbolic link is followed at any level: with a link at the generation,
//! `snapshots`, `wal`, index-directory or object level pointing outside the
//! root (at a tree that holds canonical objects), no operation reads, lists,
//! creates or removes anything outside the root.

use std::collections::BTreeMap;
use std::path::Path;

use replica_core::{bytes_stream, lz4, Generation, Pos, ReplicaClient};
use replica_file::{FileClient, FileStore};

const G: &str = "0123456789abcdef";

fn gen() -> Generation {
    G.parse().unwrap()
}

fn pos(index: u64, offset: u64) -> Pos {
    Pos::new(gen(), index, offset).unwrap()
}

/// Every file (and link) under `root` with its bytes (or link target).
fn contents(root: &Path) -> BTreeMap<String, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut dirs = vec![root.to_owned()];
    while let Some(d) = dirs.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let e = e.unwrap();
            let p = e.path();
            let rel = p.strip_prefix(root).unwrap().to_string_lossy().into_owned();
            let t = e.file_type().unwrap();
            if t.is_dir() {
                dirs.push(p);
            } else if t.is_symlink() {
                out.insert(
                    rel,
                    std::fs::read_link(&p)
                        .unwrap()
                        .into_os_string()
                        .into_encoded_bytes(),
                );
            } else {
                out.insert(rel, std::fs::read(&p).unwrap());
            }
        }
    }
    out
}

fn write(root: &Path, rel: &str, data: &[u8]) {
    let p = root.join(rel);
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(p, data).unwrap();
}

/// Where the link is planted, and what it points at (a tree of canonical
/// objects as they would be found through the link).
struct Case {
    /// The link's path below the root.
    link: &'static str,
    /// Objects below the link's target, relative to it.
    outside: &'static [&'static str],
}

const CASES: &[Case] = &[
    Case {
        link: "generations/0123456789abcdef",
        outside: &[
            "snapshots/0000000000000001.snapshot.lz4",
            "wal/0000000000000001/0000000000000000.wal.lz4",
        ],
    },
    Case {
        link: "generations/0123456789abcdef/snapshots",
        outside: &["0000000000000001.snapshot.lz4"],
    },
    Case {
        link: "generations/0123456789abcdef/wal",
        outside: &["0000000000000001/0000000000000000.wal.lz4"],
    },
    Case {
        link: "generations/0123456789abcdef/wal/0000000000000001",
        outside: &["0000000000000000.wal.lz4"],
    },
];

#[tokio::test]
async fn a_link_at_any_directory_level_is_not_followed_by_any_operation() {
    for case in CASES {
        let root = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        for rel in case.outside {
            write(outside.path(), rel, &lz4::compress(b"outside"));
        }
        let link = root.path().join(case.link);
        std::fs::create_dir_all(link.parent().unwrap()).unwrap();
        std::os::unix::fs::symlink(outside.path(), &link).unwrap();
        let before = contents(outside.path());
        let c = FileClient::new(FileStore::new(root.path()));
        let what = case.link;

        // Listings and reads see nothing through the link.
        assert!(c.generations().await.unwrap().is_empty(), "{what}");
        assert!(c.snapshots(&gen()).await.unwrap().is_empty(), "{what}");
        let segments = c
            .wal_segments(&gen())
            .await
            .unwrap()
            .collect_all()
            .await
            .unwrap();
        assert!(segments.is_empty(), "{what}: {segments:?}");
        assert!(
            c.snapshot_reader(&gen(), 1)
                .await
                .map(drop)
                .unwrap_err()
                .is_not_found(),
            "{what}"
        );
        assert!(
            c.wal_segment_reader(&pos(1, 0))
                .await
                .map(drop)
                .unwrap_err()
                .is_not_found(),
            "{what}"
        );

        // Writes through the link are refused; nothing is created outside.
        let snapshot = c.write_snapshot(&gen(), 2, bytes_stream("new")).await;
        let segment = c.write_wal_segment(&pos(1, 64), bytes_stream("new")).await;
        let through_link = |path: &str| path.starts_with(case.link);
        if through_link("generations/0123456789abcdef/snapshots/x") {
            let err = snapshot.unwrap_err();
            assert!(
                err.to_string().contains("refusing to write through"),
                "{what}: {err}"
            );
        }
        if through_link("generations/0123456789abcdef/wal/0000000000000001/x") {
            assert!(segment.is_err(), "{what}");
        }

        // Deletes remove nothing outside.
        c.delete_snapshot(&gen(), 1).await.unwrap();
        c.delete_wal_segments(&[pos(1, 0)]).await.unwrap();
        assert_eq!(contents(outside.path()), before, "{what}: outside changed");

        // Deleting the generation removes the link, never its target's objects.
        c.delete_generation(&gen()).await.unwrap();
        assert_eq!(contents(outside.path()), before, "{what}: outside changed");
        assert!(
            std::fs::symlink_metadata(&link).is_err(),
            "{what}: link left"
        );
    }
}

#[tokio::test]
async fn a_link_at_an_object_is_neither_read_nor_written_through() {
    let root = tempfile::tempdir().unwrap();
    let outside = tempfile::tempdir().unwrap();
    let secret = outside.path().join("secret");
    std::fs::write(&secret, lz4::compress(b"secret")).unwrap();
    let snaps = root.path().join("generations/0123456789abcdef/snapshots");
    std::fs::create_dir_all(&snaps).unwrap();
    let link = snaps.join("0000000000000001.snapshot.lz4");
    std::os::unix::fs::symlink(&secret, &link).unwrap();
    let c = FileClient::new(FileStore::new(root.path()));
    assert!(c.snapshots(&gen()).await.unwrap().is_empty());
    assert!(c
        .snapshot_reader(&gen(), 1)
        .await
        .map(drop)
        .unwrap_err()
        .is_not_found());
    // A write replaces the link itself (rename), never the target's bytes.
    c.write_snapshot(&gen(), 1, bytes_stream("mine"))
        .await
        .unwrap();
    assert_eq!(std::fs::read(&secret).unwrap(), lz4::compress(b"secret"));
    assert!(!std::fs::symlink_metadata(&link)
        .unwrap()
        .file_type()
        .is_symlink());
    std::os::unix::fs::symlink(&secret, snaps.join("0000000000000002.snapshot.lz4")).unwrap();
    c.delete_snapshot(&gen(), 2).await.unwrap();
    assert!(secret.exists(), "the target of a deleted link stays");
}
