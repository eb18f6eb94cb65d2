//! Conformance fixtures for `replica conformance`: a client plus raw access
//! to plant junk objects, for the built-in backends and for any URL.

use std::path::PathBuf;
use std::sync::Arc;

use replica_conformance::{DirPlanter, Fixture, FnPlanter};
use replica_file::FileClient;
use replica_memory::MemoryClient;
use replica_object_store::ObjectStoreClient;

pub(crate) fn memory(client: MemoryClient) -> Fixture {
    let raw = client.clone();
    Fixture::new(client).with_planter(FnPlanter(move |path: String, data| {
        raw.insert_raw(&path, data);
        async { Ok(()) }
    }))
}

pub(crate) fn file(root: PathBuf) -> Fixture {
    Fixture::new(FileClient::new(&root)).with_planter(DirPlanter(root))
}

pub(crate) fn object_store(client: ObjectStoreClient) -> Fixture {
    let raw = client.clone();
    Fixture::new(client).with_planter(FnPlanter(move |path: String, data| {
        let raw = raw.clone();
        async move { raw.insert_raw(&path, data).await }
    }))
}

/// object_store's LocalFileSystem in a fresh temporary directory.
pub(crate) fn object_store_local() -> Result<Fixture, String> {
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let store = object_store::local::LocalFileSystem::new_with_prefix(dir.path())
        .map_err(|e| e.to_string())?;
    let client = ObjectStoreClient::new(Arc::new(store), "")
        .with_kind("object_store_local")
        .with_multipart_threshold(5 << 20);
    Ok(Fixture::new(client)
        .with_planter(DirPlanter(dir.path().to_owned()))
        .keep(dir))
}

/// The fixture for a replica location as `replica::open` understands it,
/// with raw access where the backend allows it.
pub(crate) fn for_location(location: &str) -> Result<Fixture, String> {
    if !location.contains("://") {
        return Ok(file(PathBuf::from(location)));
    }
    let url = url::Url::parse(location).map_err(|e| format!("bad URL {location:?}: {e}"))?;
    match url.scheme() {
        "file" => url
            .to_file_path()
            .map(file)
            .map_err(|()| format!("bad file URL {location:?}")),
        "memory" => Ok(memory(MemoryClient::named(&format!(
            "{}{}",
            url.host_str().unwrap_or(""),
            url.path()
        )))),
        scheme if replica_object_store::OBJECT_STORE_SCHEMES.contains(&scheme) => {
            let client = replica_object_store::open_url(&url).map_err(|e| e.to_string())?;
            Ok(object_store(client.with_multipart_threshold(5 << 20)))
        }
        _ => replica::open(location)
            .map(Fixture::from_arc)
            .map_err(|e| e.to_string()),
    }
}
