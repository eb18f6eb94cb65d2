//! Conformance fixtures for `replica conformance`: a client plus raw access
//! to plant junk objects, for the built-in backends and for any URL.

use std::path::PathBuf;
use std::sync::Arc;

use replica::{KeyStore, Layout, StoreClient};
use replica_conformance::{DirPlanter, Fixture, FnPlanter};
use replica_file::FileStore;
use replica_memory::MemoryStore;
use replica_object_store::ObjectKeyStore;

pub(crate) fn memory(store: MemoryStore, layout: Layout) -> Fixture {
    let raw = store.clone();
    Fixture::new(StoreClient::with_layout(store, layout)).with_planter(FnPlanter(
        move |path: String, data| {
            raw.insert_raw(&path, data);
            async { Ok(()) }
        },
    ))
}

pub(crate) fn file(root: PathBuf, layout: Layout) -> Fixture {
    Fixture::new(StoreClient::with_layout(FileStore::new(&root), layout))
        .with_planter(DirPlanter(root))
}

pub(crate) fn object_store(store: ObjectKeyStore, layout: Layout) -> Fixture {
    let raw = store.clone();
    Fixture::new(StoreClient::with_layout(store, layout)).with_planter(FnPlanter(
        move |path: String, data| {
            let raw = raw.clone();
            async move { raw.insert_raw(&path, data).await }
        },
    ))
}

/// object_store's LocalFileSystem in a fresh temporary directory.
pub(crate) fn object_store_local(layout: Layout) -> Result<Fixture, String> {
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let store = object_store::local::LocalFileSystem::new_with_prefix(dir.path())
        .map_err(|e| e.to_string())?;
    let store = ObjectKeyStore::new(Arc::new(store), "")
        .with_kind("object_store_local")
        .with_multipart_threshold(5 << 20);
    Ok(Fixture::new(StoreClient::with_layout(store, layout))
        .with_planter(DirPlanter(dir.path().to_owned()))
        .keep(dir))
}

/// The fixture for a replica location as `replica::open` understands it,
/// in `layout`, with raw access where the backend allows it.
pub(crate) async fn for_location(location: &str, layout: Layout) -> Result<Fixture, String> {
    if !location.contains("://") {
        return Ok(file(PathBuf::from(location), layout));
    }
    let url = url::Url::parse(location).map_err(|e| format!("bad URL {location:?}: {e}"))?;
    match url.scheme() {
        "file" => url
            .to_file_path()
            .map(|root| file(root, layout))
            .map_err(|()| format!("bad file URL {location:?}")),
        "memory" => Ok(memory(
            MemoryStore::named(&format!("{}{}", url.host_str().unwrap_or(""), url.path())),
            layout,
        )),
        scheme if replica_object_store::OBJECT_STORE_SCHEMES.contains(&scheme) => {
            let store = replica_object_store::open_url(&url).map_err(|e| e.to_string())?;
            Ok(object_store(
                store.with_multipart_threshold(5 << 20),
                layout,
            ))
        }
        _ => {
            let options = replica::OpenOptions {
                layout: Some(layout),
                ..replica::OpenOptions::default()
            };
            replica::open_with(location, options)
                .await
                .map(Fixture::from_arc)
                .map_err(|e| e.to_string())
        }
    }
}

/// Deletes everything below a location that the cases wrote to.
pub(crate) async fn remove_location(location: &str) -> Result<(), String> {
    if !location.contains("://") {
        return remove_dir(PathBuf::from(location));
    }
    let url = url::Url::parse(location).map_err(|e| format!("bad URL {location:?}: {e}"))?;
    match url.scheme() {
        "file" => remove_dir(
            url.to_file_path()
                .map_err(|()| format!("bad file URL {location:?}"))?,
        ),
        "memory" => {
            let store =
                MemoryStore::named(&format!("{}{}", url.host_str().unwrap_or(""), url.path()));
            store
                .delete(&store.raw_keys())
                .await
                .map_err(|e| e.to_string())
        }
        scheme if replica_object_store::OBJECT_STORE_SCHEMES.contains(&scheme) => {
            let store = replica_object_store::open_url(&url).map_err(|e| e.to_string())?;
            store.delete_everything().await.map_err(|e| e.to_string())
        }
        other => Err(format!("cannot clean up {other}:// locations")),
    }
}

fn remove_dir(path: PathBuf) -> Result<(), String> {
    match std::fs::remove_dir_all(&path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            Err(format!("removing {}: {e}", path.display()))
        }
        _ => Ok(()),
    }
}

/// The location `child` below `location`: a path segment added to a URL's
/// path (its query, e.g. `?endpoint=`, kept), or to a file path.
pub(crate) fn below(location: &str, child: &str) -> Result<String, String> {
    if !location.contains("://") {
        return Ok(format!("{}/{child}", location.trim_end_matches('/')));
    }
    let mut url = url::Url::parse(location).map_err(|e| format!("bad URL {location:?}: {e}"))?;
    let path = format!("{}/{child}", url.path().trim_end_matches('/'));
    url.set_path(&path);
    Ok(url.to_string())
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_location_below_a_url_keeps_its_query() {
        assert_eq!(
            super::below("s3://b/p?endpoint=http://h:1&allow_http=true", "run").unwrap(),
            "s3://b/p/run?endpoint=http://h:1&allow_http=true"
        );
        assert_eq!(
            super::below("memory://m/", "run").unwrap(),
            "memory://m/run"
        );
        assert_eq!(super::below("/tmp/x/", "run").unwrap(), "/tmp/x/run");
    }
}
