//! The whole conformance suite on the file backend, in a fresh temp dir per case.

use replica_conformance::{conformance_tests, DirPlanter, Fixture};
use replica_file::FileClient;

conformance_tests!(|| async {
    let dir = tempfile::tempdir()?;
    let root = dir.path().join("replica");
    Ok::<_, std::io::Error>(
        Fixture::new(FileClient::new(&root))
            .with_planter(DirPlanter(root))
            .keep(dir),
    )
});
