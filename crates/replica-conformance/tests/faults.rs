//! Under injected faults, every backend surfaces typed errors, shows no
//! partial object, and succeeds on retry.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::stream::{self, StreamExt};
use replica_conformance::faults::{FaultPlan, FaultPoint, FaultyStore};
use replica_core::{collect_bytes, Error, Generation, KeyStore, Pos, ReplicaClient, StoreClient};

fn data(k: u64) -> Bytes {
    // Several chunks, so a write fault lands after part of the data.
    Bytes::from(
        (0..3000 + k * 7)
            .map(|i| (i ^ k) as u8)
            .collect::<Vec<u8>>(),
    )
}

fn chunked(b: Bytes) -> replica_core::ByteStream {
    let chunks: Vec<_> = b
        .chunks(1000)
        .map(|c| Ok(Bytes::copy_from_slice(c)))
        .collect();
    stream::iter(chunks).boxed()
}

/// Retries `op` until it succeeds; every failure must be the injected I/O error.
async fn retry<T, F, Fut>(mut op: F) -> (T, u32)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = replica_core::Result<T>>,
{
    for attempt in 0..200 {
        match op().await {
            Ok(v) => return (v, attempt),
            Err(Error::Io { context, .. }) if context.contains("injected") => {}
            Err(other) => panic!("a fault surfaced as an unexpected error: {other:?}"),
        }
    }
    panic!("no success after 200 attempts");
}

async fn workload<S: KeyStore>(inner: StoreClient<S>) {
    let plan = FaultPlan {
        seed: 42,
        probability: 0.3,
        points: vec![
            FaultPoint::Write,
            FaultPoint::Read,
            FaultPoint::List,
            FaultPoint::Delete,
        ],
        stall: Some(Duration::from_micros(200)),
    };
    let faulty = FaultyStore::client(&inner, plan);
    let g: Generation = "00000000000000fa".parse().unwrap();
    let mut acked = BTreeMap::new();
    for k in 0..60u64 {
        let pos = Pos::new(g.clone(), k / 10, (k % 10) * 4096).unwrap();
        let (_, attempts) = retry(|| faulty.write_wal_segment(&pos, chunked(data(k)))).await;
        acked.insert((pos.index, pos.offset), k);
        if attempts > 0 {
            // Failed attempts left nothing partial: the object now is whole.
            let got = collect_bytes(inner.wal_segment_reader(&pos).await.unwrap())
                .await
                .unwrap();
            assert_eq!(got, data(k));
        }
        if k % 7 == 3 {
            let (_, _) = retry(|| faulty.delete_wal_segments(std::slice::from_ref(&pos))).await;
            acked.remove(&(pos.index, pos.offset));
        }
        // Nothing unacknowledged is ever visible, faults or not.
        let (listed, _) =
            retry(|| async { faulty.wal_segments(&g).await?.collect_all().await }).await;
        let keys: Vec<(u64, u64)> = listed.iter().map(|s| (s.index, s.offset)).collect();
        assert_eq!(keys, acked.keys().copied().collect::<Vec<_>>());
    }
    for (&(index, offset), &k) in &acked {
        let pos = Pos::new(g.clone(), index, offset).unwrap();
        let (got, _) =
            retry(|| async { collect_bytes(faulty.wal_segment_reader(&pos).await?).await }).await;
        assert_eq!(got, data(k));
    }
    // Deleting a whole generation survives a lost reply too.
    retry(|| faulty.delete_generation(&g)).await;
    assert!(inner.generations().await.unwrap().is_empty());
    let injected = faulty.store().injected();
    assert!(injected > 20, "only {injected} faults injected");
}

#[tokio::test]
async fn memory_backend_under_faults() {
    workload(replica_memory::MemoryClient::default()).await;
}

#[tokio::test]
async fn file_backend_under_faults() {
    let dir = tempfile::tempdir().unwrap();
    workload(replica_file::FileClient::new(replica_file::FileStore::new(
        dir.path(),
    )))
    .await;
    // No temporaries left behind by the failed writes.
    let mut dirs = vec![dir.path().to_owned()];
    while let Some(d) = dirs.pop() {
        for e in std::fs::read_dir(d).unwrap() {
            let p = e.unwrap().path();
            assert!(
                !p.to_string_lossy().ends_with(".tmp"),
                "left behind: {}",
                p.display()
            );
            if p.is_dir() {
                dirs.push(p);
            }
        }
    }
}

#[tokio::test]
async fn object_store_backend_under_faults() {
    let store = Arc::new(object_store::memory::InMemory::new());
    workload(replica_object_store::ObjectStoreClient::new(
        replica_object_store::ObjectKeyStore::new(store, "f"),
    ))
    .await;
}
