//! The whole conformance suite on the memory backend.

use replica_conformance::{conformance_tests, Fixture, Planter};
use replica_core::{async_trait, Result};
use replica_memory::MemoryClient;

struct Raw(MemoryClient);

#[async_trait]
impl Planter for Raw {
    async fn plant_file(&self, path: &str, data: bytes::Bytes) -> Result<()> {
        self.0.insert_raw(path, data);
        Ok(())
    }
    async fn plant_dir(&self, _path: &str) -> Result<bool> {
        Ok(false)
    }
}

conformance_tests!(|| async {
    let client = MemoryClient::new();
    Ok::<_, std::convert::Infallible>(Fixture::new(client.clone()).with_planter(Raw(client)))
});
