//! The whole conformance suite on the memory backend, under both layouts.

use replica_conformance::{conformance_tests, Fixture, FnPlanter, Layout};
use replica_memory::{MemoryClient, MemoryStore};

conformance_tests!(layouts: |layout: Layout| async move {
    let store = MemoryStore::new();
    let raw = store.clone();
    let planter = FnPlanter(move |path: String, data| {
        raw.insert_raw(&path, data);
        async { Ok(()) }
    });
    Ok::<_, std::convert::Infallible>(
        Fixture::new(MemoryClient::with_layout(store, layout)).with_planter(planter),
    )
});
