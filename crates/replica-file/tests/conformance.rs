//! The whole conformance suite on the file backend, in a fresh temp dir per case.

use std::path::PathBuf;

use replica_conformance::{conformance_tests, Fixture, Planter};
use replica_core::{async_trait, Error, Result};
use replica_file::FileClient;

struct Raw(PathBuf);

#[async_trait]
impl Planter for Raw {
    async fn plant_file(&self, path: &str, data: bytes::Bytes) -> Result<()> {
        let path = self.0.join(path);
        let parent = path.parent().expect("planted paths have a parent");
        std::fs::create_dir_all(parent).map_err(|e| Error::io("planting", e))?;
        std::fs::write(&path, data).map_err(|e| Error::io("planting", e))
    }
    async fn plant_dir(&self, path: &str) -> Result<bool> {
        std::fs::create_dir_all(self.0.join(path)).map_err(|e| Error::io("planting", e))?;
        Ok(true)
    }
}

conformance_tests!(|| async {
    let dir = tempfile::tempdir()?;
    let root = dir.path().join("replica");
    Ok::<_, std::io::Error>(
        Fixture::new(FileClient::new(&root))
            .with_planter(Raw(root))
            .keep(dir),
    )
});
