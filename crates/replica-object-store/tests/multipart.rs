//! Writes above the threshold go through multipart upload, below it through
//! one put; a failed multipart input is aborted and leaves nothing.

use std::fmt;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use futures::stream::{self, BoxStream, StreamExt};
use object_store::memory::InMemory;
use object_store::path::Path;
use object_store::{
    CopyOptions, GetOptions, GetResult, ListResult, MultipartUpload, ObjectMeta, ObjectStore,
    PutMultipartOptions, PutOptions, PutPayload, PutResult, Result,
};
use replica_core::{collect_bytes, Generation, ReplicaClient};
use replica_object_store::{ObjectKeyStore, ObjectStoreClient};

/// InMemory, counting how objects are written.
#[derive(Debug, Default)]
struct Counting {
    inner: InMemory,
    puts: AtomicUsize,
    multiparts: AtomicUsize,
}

impl fmt::Display for Counting {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Counting({})", self.inner)
    }
}

#[async_trait]
impl ObjectStore for Counting {
    async fn put_opts(
        &self,
        location: &Path,
        payload: PutPayload,
        opts: PutOptions,
    ) -> Result<PutResult> {
        self.puts.fetch_add(1, Ordering::SeqCst);
        self.inner.put_opts(location, payload, opts).await
    }
    async fn put_multipart_opts(
        &self,
        location: &Path,
        opts: PutMultipartOptions,
    ) -> Result<Box<dyn MultipartUpload>> {
        self.multiparts.fetch_add(1, Ordering::SeqCst);
        self.inner.put_multipart_opts(location, opts).await
    }
    async fn get_opts(&self, location: &Path, options: GetOptions) -> Result<GetResult> {
        self.inner.get_opts(location, options).await
    }
    fn delete_stream(
        &self,
        locations: BoxStream<'static, Result<Path>>,
    ) -> BoxStream<'static, Result<Path>> {
        self.inner.delete_stream(locations)
    }
    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, Result<ObjectMeta>> {
        self.inner.list(prefix)
    }
    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> Result<ListResult> {
        self.inner.list_with_delimiter(prefix).await
    }
    async fn copy_opts(&self, from: &Path, to: &Path, options: CopyOptions) -> Result<()> {
        self.inner.copy_opts(from, to, options).await
    }
}

const THRESHOLD: usize = 5 << 20;

fn chunks(total: usize) -> Vec<replica_core::Result<Bytes>> {
    (0..total.div_ceil(1 << 20))
        .map(|i| {
            Ok(Bytes::from(vec![
                i as u8;
                (1 << 20).min(total - i * (1 << 20))
            ]))
        })
        .collect()
}

#[tokio::test]
async fn a_snapshot_above_the_threshold_is_uploaded_in_parts() {
    let store = Arc::new(Counting::default());
    let client = ObjectStoreClient::new(
        ObjectKeyStore::new(store.clone(), "p").with_multipart_threshold(THRESHOLD),
    );
    let g = Generation::random();
    let total = 3 * THRESHOLD + 12345;
    let info = client
        .write_snapshot(&g, 1, stream::iter(chunks(total)).boxed())
        .await
        .unwrap();
    assert_eq!(info.size, total as u64);
    assert_eq!(store.multiparts.load(Ordering::SeqCst), 1);
    assert_eq!(store.puts.load(Ordering::SeqCst), 0);
    let back = collect_bytes(client.snapshot_reader(&g, 1).await.unwrap())
        .await
        .unwrap();
    let want: Vec<u8> = chunks(total)
        .into_iter()
        .flat_map(|c| c.unwrap().to_vec())
        .collect();
    assert!(back == want, "multipart content differs");
}

#[tokio::test]
async fn a_snapshot_below_the_threshold_is_one_put() {
    let store = Arc::new(Counting::default());
    let client = ObjectStoreClient::new(
        ObjectKeyStore::new(store.clone(), "").with_multipart_threshold(THRESHOLD),
    );
    let g = Generation::random();
    client
        .write_snapshot(&g, 1, stream::iter(chunks(THRESHOLD - 1)).boxed())
        .await
        .unwrap();
    assert_eq!(store.puts.load(Ordering::SeqCst), 1);
    assert_eq!(store.multiparts.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn a_failed_multipart_input_is_aborted_and_leaves_nothing() {
    let store = Arc::new(Counting::default());
    let client = ObjectStoreClient::new(
        ObjectKeyStore::new(store.clone(), "").with_multipart_threshold(THRESHOLD),
    );
    let g = Generation::random();
    let mut input = chunks(2 * THRESHOLD);
    input.push(Err(replica_core::Error::io(
        "input",
        std::io::Error::other("cut"),
    )));
    let err = client
        .write_snapshot(&g, 1, stream::iter(input).boxed())
        .await
        .unwrap_err();
    assert!(err.to_string().contains("cut"), "{err}");
    assert_eq!(store.multiparts.load(Ordering::SeqCst), 1);
    assert!(client.snapshots(&g).await.unwrap().is_empty());
    assert!(client
        .snapshot_reader(&g, 1)
        .await
        .map(|_| ())
        .unwrap_err()
        .is_not_found());
}
