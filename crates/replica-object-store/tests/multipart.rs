//! Writes above the threshold go through multipart upload, below it through
//! one put; a failed multipart input is aborted and leaves nothing.

use std::fmt;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use bytes::Bytes;
use futures::stream::{self, BoxStream, StreamExt};
use object_store::memory::InMemory;
use object_store::path::Path;
use object_store::{
    CopyOptions, GetOptions, GetResult, ListResult, MultipartUpload, ObjectMeta, ObjectStore,
    PutMultipartOptions, PutOptions, PutPayload, PutResult, Result, UploadPart,
};
use replica_core::{collect_bytes, Generation, ReplicaClient};
use replica_object_store::{ObjectKeyStore, ObjectStoreClient};

/// InMemory, counting how objects are written, the size of every part
/// uploaded, and every multipart abort.
#[derive(Debug, Default)]
struct Counting {
    inner: InMemory,
    puts: AtomicUsize,
    multiparts: AtomicUsize,
    parts: Arc<Mutex<Vec<usize>>>,
    aborts: Arc<AtomicUsize>,
}

/// A multipart upload of [`Counting`].
#[derive(Debug)]
struct CountingUpload {
    inner: Box<dyn MultipartUpload>,
    parts: Arc<Mutex<Vec<usize>>>,
    aborts: Arc<AtomicUsize>,
}

#[async_trait]
impl MultipartUpload for CountingUpload {
    fn put_part(&mut self, data: PutPayload) -> UploadPart {
        self.parts.lock().unwrap().push(data.content_length());
        self.inner.put_part(data)
    }
    async fn complete(&mut self) -> Result<PutResult> {
        self.inner.complete().await
    }
    async fn abort(&mut self) -> Result<()> {
        self.aborts.fetch_add(1, Ordering::SeqCst);
        self.inner.abort().await
    }
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
        let inner = self.inner.put_multipart_opts(location, opts).await?;
        Ok(Box::new(CountingUpload {
            inner,
            parts: self.parts.clone(),
            aborts: self.aborts.clone(),
        }))
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
    assert_eq!(
        store.aborts.load(Ordering::SeqCst),
        1,
        "the upload was aborted"
    );
    assert!(client.snapshots(&g).await.unwrap().is_empty());
    assert!(client
        .snapshot_reader(&g, 1)
        .await
        .map(|_| ())
        .unwrap_err()
        .is_not_found());
}

#[tokio::test]
async fn a_write_cancelled_mid_upload_aborts_its_upload() {
    let store = Arc::new(Counting::default());
    let client = ObjectStoreClient::new(
        ObjectKeyStore::new(store.clone(), "").with_multipart_threshold(THRESHOLD),
    );
    let g = Generation::random();
    // Two parts' worth, then an input that never ends.
    let input = stream::iter(chunks(2 * THRESHOLD))
        .chain(stream::pending())
        .boxed();
    let write = tokio::spawn(async move { client.write_snapshot(&g, 1, input).await });
    for _ in 0..200 {
        if store.parts.lock().unwrap().len() >= 2 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    assert_eq!(
        store.multiparts.load(Ordering::SeqCst),
        1,
        "an upload started"
    );
    write.abort();
    assert!(write.await.unwrap_err().is_cancelled());
    for _ in 0..200 {
        if store.aborts.load(Ordering::SeqCst) == 1 {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    panic!("the cancelled write's upload was never aborted");
}

#[tokio::test]
async fn parts_are_never_smaller_than_s3_accepts() {
    let store = Arc::new(Counting::default());
    // A threshold below S3's minimum part size still uploads 5 MiB parts.
    let client = ObjectStoreClient::new(
        ObjectKeyStore::new(store.clone(), "").with_multipart_threshold(1 << 20),
    );
    let g = Generation::random();
    let total = 12 << 20;
    client
        .write_snapshot(&g, 1, stream::iter(chunks(total)).boxed())
        .await
        .unwrap();
    let parts = store.parts.lock().unwrap().clone();
    assert_eq!(parts.iter().sum::<usize>(), total);
    let (last, rest) = parts.split_last().unwrap();
    assert!(
        rest.iter()
            .all(|p| *p >= replica_object_store::MIN_PART_SIZE),
        "parts {parts:?}"
    );
    assert!(*last > 0);
}
