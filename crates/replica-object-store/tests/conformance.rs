//! The whole conformance suite on object_store's `InMemory` and `LocalFileSystem`.

use std::sync::Arc;

use object_store::local::LocalFileSystem;
use object_store::memory::InMemory;
use object_store::ObjectStore;
use replica_conformance::{Fixture, Layout};
use replica_object_store::{ObjectKeyStore, ObjectStoreClient};

/// A client with a small multipart threshold, so that the 64 MiB and 9 MiB
/// cases go through multipart upload.
fn client(store: Arc<dyn ObjectStore>, prefix: &str, layout: Layout) -> ObjectStoreClient {
    let store = ObjectKeyStore::new(store, prefix).with_multipart_threshold(5 << 20);
    ObjectStoreClient::with_layout(store, layout)
}

fn fixture(store: Arc<dyn ObjectStore>, prefix: &str, layout: Layout) -> Fixture {
    let client = client(store, prefix, layout);
    Fixture::new(client.clone()).with_planter(planter(client))
}

mod in_memory {
    use super::*;
    replica_conformance::conformance_tests!(layouts: |layout| async move {
        Ok::<_, String>(fixture(Arc::new(InMemory::new()), "some/prefix", layout))
    });
}

mod local_file_system {
    use super::*;
    replica_conformance::conformance_tests!(layouts: |layout| async move {
        let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
        let store = LocalFileSystem::new_with_prefix(dir.path()).map_err(|e| e.to_string())?;
        let client = client(Arc::new(store), "", layout);
        // A real directory underneath, so directories can be planted too.
        Ok::<_, String>(
            Fixture::new(client)
                .with_planter(replica_conformance::DirPlanter(dir.path().to_owned()))
                .keep(dir),
        )
    });
}

/// Plants raw objects through the store itself, under the client's prefix.
fn planter(client: ObjectStoreClient) -> impl replica_conformance::Planter {
    replica_conformance::FnPlanter(move |path: String, data| {
        let client = client.clone();
        async move { client.store().insert_raw(&path, data).await }
    })
}
