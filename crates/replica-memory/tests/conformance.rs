//! The whole conformance suite on the memory backend.

use replica_conformance::{conformance_tests, Fixture, FnPlanter};
use replica_memory::MemoryClient;

conformance_tests!(|| async {
    let client = MemoryClient::new();
    let raw = client.clone();
    let planter = FnPlanter(move |path: String, data| {
        raw.insert_raw(&path, data);
        async { Ok(()) }
    });
    Ok::<_, std::convert::Infallible>(Fixture::new(client).with_planter(planter))
});
