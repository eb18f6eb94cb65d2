//! `replica::copy` keeps requests in flight: against a store that adds
//! latency to every request (as any cloud store does), copying with
//! parallelism N has up to N requests outstanding and takes a fraction of
//! the time of one at a time.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use replica::{
    async_trait, bytes_stream, ByteStream, Generation, KeyStore, Listing, ObjectMeta, Pos,
    PutOptions, ReplicaClient, Result, StoreClient,
};
use replica_memory::MemoryStore;

/// A key store that sleeps in each put and get, and counts the most
/// requests it ever had in flight.
#[derive(Debug, Default)]
struct Slow {
    inner: MemoryStore,
    in_flight: AtomicUsize,
    most: AtomicUsize,
}

impl Slow {
    async fn delayed<T>(&self, op: impl std::future::Future<Output = T>) -> T {
        let now = self.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        self.most.fetch_max(now, Ordering::SeqCst);
        tokio::time::sleep(Duration::from_millis(20)).await;
        let out = op.await;
        self.in_flight.fetch_sub(1, Ordering::SeqCst);
        out
    }
}

#[async_trait]
impl KeyStore for Slow {
    fn kind(&self) -> &'static str {
        "slow"
    }
    async fn put_opts(
        &self,
        key: &str,
        data: ByteStream,
        options: &PutOptions,
    ) -> Result<ObjectMeta> {
        self.delayed(self.inner.put_opts(key, data, options)).await
    }
    async fn get(&self, key: &str) -> Result<ByteStream> {
        self.delayed(self.inner.get(key)).await
    }
    async fn delete(&self, keys: &[String]) -> Result<()> {
        self.inner.delete(keys).await
    }
    async fn list(&self, dir: &str) -> Result<Listing> {
        self.inner.list(dir).await
    }
    async fn delete_all(&self, dir: &str) -> Result<()> {
        self.inner.delete_all(dir).await
    }
}

/// A snapshot and 63 segments over 8 indexes.
async fn source(g: &Generation) -> StoreClient<MemoryStore> {
    let src = StoreClient::new(MemoryStore::new());
    src.write_snapshot(g, 0, bytes_stream("snapshot"))
        .await
        .unwrap();
    for i in 0..63u64 {
        let pos = Pos::new(g.clone(), i / 8, (i % 8) * 32).unwrap();
        src.write_wal_segment(&pos, bytes_stream(vec![i as u8; 32]))
            .await
            .unwrap();
    }
    src
}

async fn timed_copy(parallelism: usize) -> (Duration, usize, StoreClient<Slow>) {
    let g = Generation::random();
    let src = source(&g).await;
    let dst = StoreClient::new(Slow::default());
    let started = Instant::now();
    let copied = replica::copy(&src, &dst, std::slice::from_ref(&g), parallelism, &())
        .await
        .unwrap();
    assert_eq!(copied.objects, 64);
    let most = dst.store().most.load(Ordering::SeqCst);
    (started.elapsed(), most, dst)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn copy_keeps_the_asked_number_of_requests_in_flight() {
    let (serial, most_serial, _) = timed_copy(1).await;
    assert_eq!(most_serial, 1, "parallelism 1 is one request at a time");
    let (parallel, most, dst) = timed_copy(16).await;
    assert!(most > 8 && most <= 16, "requests in flight: {most}");
    assert!(
        parallel * 4 < serial,
        "16 at once took {parallel:?}, one at a time {serial:?}"
    );
    let g = dst.generations().await.unwrap().pop().unwrap();
    let segments = dst
        .wal_segments(&g)
        .await
        .unwrap()
        .collect_all()
        .await
        .unwrap();
    assert_eq!(segments.len(), 63);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rerun_copies_nothing_and_what_the_destination_cannot_name_is_refused() {
    let g = Generation::random();
    let src = source(&g).await;
    let dst = StoreClient::new(MemoryStore::new());
    let gens = std::slice::from_ref(&g);
    let first = replica::copy(&src, &dst, gens, 4, &()).await.unwrap();
    assert_eq!(first.objects, 64);
    let again = replica::copy(&src, &dst, gens, 4, &()).await.unwrap();
    assert_eq!((again.objects, again.skipped), (0, 64));

    let far = Pos::new(g.clone(), 1 << 40, 0).unwrap();
    src.write_wal_segment(&far, bytes_stream("x"))
        .await
        .unwrap();
    let into_03 = StoreClient::with_layout(MemoryStore::new(), replica::Layout::Litestream03);
    let err = replica::copy(&src, &into_03, gens, 4, &())
        .await
        .unwrap_err();
    assert!(err.to_string().contains("nothing was copied"), "{err}");
    assert!(into_03.generations().await.unwrap().is_empty());
}
