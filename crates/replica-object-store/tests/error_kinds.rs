//! Object-store errors keep their kind: a refused, unauthenticated or
//! precondition-failed request is a matchable variant, not one generic
//! backend error.

use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;
use futures::stream::{self, BoxStream, StreamExt};
use object_store::path::Path;
use object_store::{
    CopyOptions, GetOptions, GetResult, ListResult, MultipartUpload, ObjectMeta, ObjectStore,
    PutMultipartOptions, PutOptions, PutPayload, PutResult, Result,
};
use replica_core::{bytes_stream, Error, Generation, ReplicaClient};
use replica_object_store::{ObjectKeyStore, ObjectStoreClient};

/// A store that answers every request with one kind of error.
#[derive(Debug)]
struct Refusing(fn() -> object_store::Error);

impl fmt::Display for Refusing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Refusing")
    }
}

#[async_trait]
impl ObjectStore for Refusing {
    async fn put_opts(&self, _: &Path, _: PutPayload, _: PutOptions) -> Result<PutResult> {
        Err((self.0)())
    }
    async fn put_multipart_opts(
        &self,
        _: &Path,
        _: PutMultipartOptions,
    ) -> Result<Box<dyn MultipartUpload>> {
        Err((self.0)())
    }
    async fn get_opts(&self, _: &Path, _: GetOptions) -> Result<GetResult> {
        Err((self.0)())
    }
    fn delete_stream(
        &self,
        _: BoxStream<'static, Result<Path>>,
    ) -> BoxStream<'static, Result<Path>> {
        stream::once(futures::future::ready(Err((self.0)()))).boxed()
    }
    fn list(&self, _: Option<&Path>) -> BoxStream<'static, Result<ObjectMeta>> {
        stream::once(futures::future::ready(Err((self.0)()))).boxed()
    }
    async fn list_with_delimiter(&self, _: Option<&Path>) -> Result<ListResult> {
        Err((self.0)())
    }
    async fn copy_opts(&self, _: &Path, _: &Path, _: CopyOptions) -> Result<()> {
        Err((self.0)())
    }
}

fn source() -> Box<dyn std::error::Error + Send + Sync> {
    "refused by the test store".into()
}

async fn errors_of(make: fn() -> object_store::Error) -> Vec<Error> {
    let client = ObjectStoreClient::new(ObjectKeyStore::new(Arc::new(Refusing(make)), "p"));
    let g = Generation::random();
    vec![
        client.generations().await.unwrap_err(),
        client.snapshot_reader(&g, 1).await.map(drop).unwrap_err(),
        client
            .write_snapshot(&g, 1, bytes_stream("x"))
            .await
            .unwrap_err(),
        client.delete_snapshot(&g, 1).await.unwrap_err(),
    ]
}

#[tokio::test]
async fn permission_denied_unauthenticated_and_precondition_stay_matchable() {
    let denied = || object_store::Error::PermissionDenied {
        path: "p".into(),
        source: source(),
    };
    for e in errors_of(denied).await {
        assert!(
            matches!(
                e,
                Error::PermissionDenied {
                    backend: "object_store",
                    ..
                }
            ),
            "{e}"
        );
        assert!(e.to_string().contains("permission denied"), "{e}");
    }
    let unauthenticated = || object_store::Error::Unauthenticated {
        path: "p".into(),
        source: source(),
    };
    for e in errors_of(unauthenticated).await {
        assert!(matches!(e, Error::Unauthenticated { .. }), "{e}");
    }
    let precondition = || object_store::Error::Precondition {
        path: "p".into(),
        source: source(),
    };
    for e in errors_of(precondition).await {
        assert!(matches!(e, Error::Precondition { .. }), "{e}");
    }
    let generic = || object_store::Error::Generic {
        store: "test",
        source: source(),
    };
    for e in errors_of(generic).await {
        assert!(matches!(e, Error::Backend { .. }), "{e}");
    }
}
