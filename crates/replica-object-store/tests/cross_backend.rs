//! A file replica copied key for key into an object store reads identically.

use std::sync::Arc;

use object_store::local::LocalFileSystem;
use object_store::memory::InMemory;
use object_store::path::Path;
use object_store::ObjectStoreExt;
use replica_core::{bytes_stream, collect_bytes, Generation, Pos, ReplicaClient};
use replica_file::{FileClient, FileStore};
use replica_object_store::{ObjectKeyStore, ObjectStoreClient};

/// Everything a client shows: listings (without times) and every object's bytes.
async fn everything(c: &dyn ReplicaClient) -> Vec<String> {
    let mut out = Vec::new();
    for g in c.generations().await.unwrap() {
        out.push(format!("generation {g}"));
        for s in c.snapshots(&g).await.unwrap() {
            let data = collect_bytes(c.snapshot_reader(&g, s.index).await.unwrap())
                .await
                .unwrap();
            out.push(format!(
                "snapshot {} size {} data {:?}",
                s.index, s.size, data
            ));
        }
        for s in c
            .wal_segments(&g)
            .await
            .unwrap()
            .collect_all()
            .await
            .unwrap()
        {
            let data = collect_bytes(c.wal_segment_reader(&s.pos()).await.unwrap())
                .await
                .unwrap();
            out.push(format!(
                "segment {} size {} data {:?}",
                s.pos(),
                s.size,
                data
            ));
        }
    }
    out
}

async fn write_file_replica(root: &std::path::Path) -> FileClient {
    let c = FileClient::new(FileStore::new(root));
    for g in ["00000000000000a1", "00000000000000b2"] {
        let g: Generation = g.parse().unwrap();
        for i in 0..3u64 {
            c.write_snapshot(&g, i, bytes_stream(format!("snap {g} {i}")))
                .await
                .unwrap();
            for o in 0..4u64 {
                let pos = Pos::new(g.clone(), i, o * 100).unwrap();
                c.write_wal_segment(&pos, bytes_stream(format!("wal {pos}")))
                    .await
                    .unwrap();
            }
        }
    }
    c
}

#[tokio::test]
async fn a_file_replica_copied_into_a_bucket_reads_the_same() {
    let dir = tempfile::tempdir().unwrap();
    let file = write_file_replica(dir.path()).await;
    let store = Arc::new(InMemory::new());
    for entry in walk(dir.path()) {
        let rel = entry
            .strip_prefix(dir.path())
            .unwrap()
            .to_str()
            .unwrap()
            .to_owned();
        let key = Path::from(format!("backup/db/{rel}"));
        store
            .put(&key, std::fs::read(&entry).unwrap().into())
            .await
            .unwrap();
    }
    let bucket = ObjectStoreClient::new(ObjectKeyStore::new(store, "backup/db"));
    let expected = everything(&file).await;
    assert_eq!(expected.len(), 2 + 2 * 3 + 2 * 12);
    assert_eq!(everything(&bucket).await, expected);
}

#[tokio::test]
async fn object_store_over_the_replica_directory_reads_the_same() {
    let dir = tempfile::tempdir().unwrap();
    let file = write_file_replica(dir.path()).await;
    let local = LocalFileSystem::new_with_prefix(dir.path()).unwrap();
    let over = ObjectStoreClient::new(ObjectKeyStore::new(Arc::new(local), ""));
    assert_eq!(everything(&over).await, everything(&file).await);
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}
