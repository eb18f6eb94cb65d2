//! The whole conformance suite on object_store's `InMemory` and `LocalFileSystem`.

use std::sync::Arc;

use bytes::Bytes;
use object_store::local::LocalFileSystem;
use object_store::memory::InMemory;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt};
use replica_conformance::{Fixture, Planter};
use replica_core::{async_trait, Error, Result};
use replica_object_store::ObjectStoreClient;

/// Plants raw objects through the store itself, under the client's prefix.
struct Raw(ObjectStoreClient);

#[async_trait]
impl Planter for Raw {
    async fn plant_file(&self, path: &str, data: Bytes) -> Result<()> {
        let key = Path::from_iter(self.0.key(path).parts());
        self.0
            .store()
            .put(&key, data.into())
            .await
            .map(|_| ())
            .map_err(|e| Error::io("planting", std::io::Error::other(e)))
    }
    async fn plant_dir(&self, _path: &str) -> Result<bool> {
        Ok(false)
    }
}

fn fixture(store: Arc<dyn ObjectStore>, prefix: &str) -> Fixture {
    // A small threshold so that the 64 MiB and 9 MiB cases go through multipart upload.
    let client = ObjectStoreClient::new(store, prefix).with_multipart_threshold(5 << 20);
    Fixture::new(client.clone()).with_planter(Raw(client))
}

mod in_memory {
    use super::*;
    replica_conformance::conformance_tests!(|| async {
        Ok::<_, String>(fixture(Arc::new(InMemory::new()), "some/prefix"))
    });
}

mod local_file_system {
    use super::*;
    replica_conformance::conformance_tests!(|| async {
        let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
        let store = LocalFileSystem::new_with_prefix(dir.path()).map_err(|e| e.to_string())?;
        let client = ObjectStoreClient::new(Arc::new(store), "").with_multipart_threshold(5 << 20);
        // A real directory underneath, so directories can be planted too.
        Ok::<_, String>(
            Fixture::new(client)
                .with_planter(replica_conformance::DirPlanter(dir.path().to_owned()))
                .keep(dir),
        )
    });
}
