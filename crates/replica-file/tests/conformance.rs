//! The whole conformance suite on the file backend, in a fresh temp dir per
//! case, under both layouts.

use replica_conformance::{conformance_tests, DirPlanter, Fixture, Layout};
use replica_file::{FileClient, FileStore};

conformance_tests!(layouts: |layout: Layout| async move {
    let dir = tempfile::tempdir()?;
    let root = dir.path().join("replica");
    Ok::<_, std::io::Error>(
        Fixture::new(FileClient::with_layout(FileStore::new(&root), layout))
            .with_planter(DirPlanter(root))
            .keep(dir),
    )
});
