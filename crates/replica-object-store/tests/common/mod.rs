//! Shared by the object-store test binaries.

use bytes::Bytes;
use object_store::path::Path;
use object_store::ObjectStoreExt;
use replica_conformance::Planter;
use replica_core::{async_trait, Error, Result};
use replica_object_store::ObjectStoreClient;

/// Plants raw objects through the store itself, under the client's prefix.
pub(crate) struct Raw(pub(crate) ObjectStoreClient);

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
