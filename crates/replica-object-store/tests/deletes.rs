//! A delete whose batch fails with a transient error (a bulk delete is a
//! POST, which `object_store` does not retry once sent) is retried until it
//! succeeds, a bounded number of times; a refusal is not retried.

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
use replica_core::{Error, Generation, KeyStore, ReplicaClient};
use replica_object_store::{ObjectKeyStore, ObjectStoreClient, DELETE_ATTEMPTS};

/// InMemory whose first `failures` delete batches fail with `error`
/// before deleting anything.
#[derive(Debug)]
struct Flaky {
    inner: InMemory,
    failures: usize,
    error: fn() -> object_store::Error,
    batches: AtomicUsize,
}

impl fmt::Display for Flaky {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Flaky({})", self.inner)
    }
}

#[async_trait]
impl ObjectStore for Flaky {
    async fn put_opts(&self, l: &Path, p: PutPayload, o: PutOptions) -> Result<PutResult> {
        self.inner.put_opts(l, p, o).await
    }
    async fn put_multipart_opts(
        &self,
        l: &Path,
        o: PutMultipartOptions,
    ) -> Result<Box<dyn MultipartUpload>> {
        self.inner.put_multipart_opts(l, o).await
    }
    async fn get_opts(&self, l: &Path, o: GetOptions) -> Result<GetResult> {
        self.inner.get_opts(l, o).await
    }
    fn delete_stream(
        &self,
        locations: BoxStream<'static, Result<Path>>,
    ) -> BoxStream<'static, Result<Path>> {
        if self.batches.fetch_add(1, Ordering::SeqCst) < self.failures {
            return stream::once(futures::future::ready(Err((self.error)()))).boxed();
        }
        self.inner.delete_stream(locations)
    }
    fn list(&self, p: Option<&Path>) -> BoxStream<'static, Result<ObjectMeta>> {
        self.inner.list(p)
    }
    async fn list_with_delimiter(&self, p: Option<&Path>) -> Result<ListResult> {
        self.inner.list_with_delimiter(p).await
    }
    async fn copy_opts(&self, f: &Path, t: &Path, o: CopyOptions) -> Result<()> {
        self.inner.copy_opts(f, t, o).await
    }
}

fn sending() -> object_store::Error {
    object_store::Error::Generic {
        store: "MicrosoftAzure",
        source: "Error performing bulk delete request: error sending request".into(),
    }
}

fn denied() -> object_store::Error {
    object_store::Error::PermissionDenied {
        path: "p".into(),
        source: "denied by the test store".into(),
    }
}

/// A store holding two snapshots of a generation, and its key store.
async fn planted(
    failures: usize,
    error: fn() -> object_store::Error,
) -> (Arc<Flaky>, ObjectKeyStore, Generation) {
    let flaky = Arc::new(Flaky {
        inner: InMemory::new(),
        failures,
        error,
        batches: AtomicUsize::new(0),
    });
    let keys = ObjectKeyStore::new(flaky.clone(), "p");
    let client = ObjectStoreClient::new(keys.clone());
    let g = Generation::random();
    for index in [1, 2] {
        client
            .write_snapshot(
                &g,
                index,
                replica_core::bytes_stream(Bytes::from_static(b"x")),
            )
            .await
            .unwrap();
    }
    (flaky, keys, g)
}

#[tokio::test]
async fn a_failed_delete_batch_is_retried_until_everything_is_gone() {
    let (flaky, keys, _) = planted(DELETE_ATTEMPTS as usize - 1, sending).await;
    keys.delete_all("").await.unwrap();
    assert_eq!(
        flaky.batches.load(Ordering::SeqCst),
        DELETE_ATTEMPTS as usize
    );
    assert!(
        flaky.inner.list(None).next().await.is_none(),
        "objects left"
    );

    let (flaky, keys, g) = planted(1, sending).await;
    let client = ObjectStoreClient::new(keys);
    client.delete_snapshot(&g, 1).await.unwrap();
    assert_eq!(flaky.batches.load(Ordering::SeqCst), 2);
    assert_eq!(client.snapshots(&g).await.unwrap().len(), 1);
}

#[tokio::test]
async fn a_delete_failing_every_attempt_is_an_error_and_a_refusal_is_not_retried() {
    let (flaky, keys, _) = planted(usize::MAX, sending).await;
    let e = keys.delete_all("").await.unwrap_err();
    assert!(matches!(e, Error::Backend { .. }), "{e}");
    assert!(e.to_string().contains("error sending request"), "{e}");
    assert_eq!(
        flaky.batches.load(Ordering::SeqCst),
        DELETE_ATTEMPTS as usize
    );

    let (flaky, keys, _) = planted(usize::MAX, denied).await;
    let e = keys.delete_all("").await.unwrap_err();
    assert!(matches!(e, Error::PermissionDenied { .. }), "{e}");
    assert_eq!(flaky.batches.load(Ordering::SeqCst), 1);
}
