//! replica: store SQLite replication data — snapshots and WAL segments in
//! generations, in the Litestream layout — in any backend, chosen at run
//! time from a URL.
//!
//! This facade re-exports the core API ([`ReplicaClient`], [`Generation`],
//! [`Pos`], ...) and offers [`open`], which maps a URL to a backend:
//!
//! | URL | backend | cargo feature |
//! |---|---|---|
//! | `file:///abs/path`, `/abs/path`, `rel/path` | local directory | `file` (default) |
//! | `memory://name` | process-wide in-memory store `name` | `memory` (default) |
//! | `s3://bucket/prefix` | Amazon S3 and S3-compatible stores | `s3` |
//! | `gs://bucket/prefix` | Google Cloud Storage | `gcs` |
//! | `az://container/prefix` | Azure Blob Storage | `azure` |
//!
//! Object-store options (endpoint, region, credentials, `allow_http`) come
//! from the environment (`AWS_ENDPOINT`, `AWS_REGION`, `GOOGLE_*`, `AZURE_*`,
//! ...) and from the URL query (`?endpoint=...&allow_http=true`), in the
//! conventions of the `object_store` crate.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")] async fn main() -> replica::Result<()> {
//! let client = replica::open("memory://doc-example")?;
//! assert_eq!(client.kind(), "memory");
//! assert!(client.generations().await?.is_empty());
//! # Ok(()) }
//! ```

use std::sync::Arc;

pub use replica_core::*;

/// The URL schemes [`open`] understands in this build.
pub fn known_schemes() -> Vec<&'static str> {
    let mut schemes = Vec::new();
    if cfg!(feature = "file") {
        schemes.push("file");
    }
    if cfg!(feature = "memory") {
        schemes.push("memory");
    }
    #[cfg(any(feature = "s3", feature = "gcs", feature = "azure"))]
    schemes.extend_from_slice(replica_object_store::OBJECT_STORE_SCHEMES);
    schemes
}

/// Opens the backend a URL names (see the crate docs for the table).
///
/// A string without `://` is a file path. A bad URL or an unknown scheme is
/// [`Error::InvalidArgument`] with a message that lists the known schemes.
pub fn open(location: &str) -> Result<Arc<dyn ReplicaClient>> {
    let known = || known_schemes().join(", ");
    if location.is_empty() {
        return Err(Error::invalid("replica path required"));
    }
    if !location.contains("://") {
        return open_path(std::path::PathBuf::from(location));
    }
    let url = url::Url::parse(location).map_err(|e| {
        Error::invalid(format!(
            "bad replica URL {location:?}: {e}; known schemes: {}",
            known()
        ))
    })?;
    match url.scheme() {
        #[cfg(feature = "file")]
        "file" => {
            let path = url.to_file_path().map_err(|()| {
                Error::invalid(format!(
                    "bad file URL {location:?}: expected file:///absolute/path"
                ))
            })?;
            open_path(path)
        }
        #[cfg(feature = "memory")]
        "memory" => {
            let name = format!("{}{}", url.host_str().unwrap_or(""), url.path());
            Ok(Arc::new(replica_memory::MemoryClient::named(&name)))
        }
        #[cfg(any(feature = "s3", feature = "gcs", feature = "azure"))]
        scheme if replica_object_store::OBJECT_STORE_SCHEMES.contains(&scheme) => {
            Ok(Arc::new(replica_object_store::open_url(&url)?))
        }
        other => Err(Error::invalid(format!(
            "unknown scheme {other:?} in replica URL {location:?}; known schemes: {}",
            known()
        ))),
    }
}

#[cfg(feature = "file")]
fn open_path(path: std::path::PathBuf) -> Result<Arc<dyn ReplicaClient>> {
    Ok(Arc::new(replica_file::FileClient::new(path)))
}

#[cfg(not(feature = "file"))]
fn open_path(path: std::path::PathBuf) -> Result<Arc<dyn ReplicaClient>> {
    Err(Error::invalid(format!(
        "{} is a file path, but this build has no file backend (feature `file`)",
        path.display()
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn paths_and_file_urls_open_the_file_backend() {
        let dir = tempfile::tempdir().unwrap();
        let g = Generation::random();
        let a = open(dir.path().to_str().unwrap()).unwrap();
        a.write_snapshot(&g, 1, bytes_stream("x")).await.unwrap();
        let url = format!("file://{}", dir.path().display());
        let b = open(&url).unwrap();
        assert_eq!(b.kind(), "file");
        assert_eq!(b.generations().await.unwrap(), vec![g]);
    }

    #[tokio::test]
    async fn memory_urls_name_one_shared_store() {
        let g = Generation::random();
        open("memory://shared-test")
            .unwrap()
            .write_snapshot(&g, 1, bytes_stream("x"))
            .await
            .unwrap();
        assert_eq!(
            open("memory://shared-test")
                .unwrap()
                .generations()
                .await
                .unwrap(),
            vec![g]
        );
        assert!(open("memory://other-test")
            .unwrap()
            .generations()
            .await
            .unwrap()
            .is_empty());
    }

    #[test]
    fn unknown_schemes_and_bad_urls_are_clear_errors() {
        let err = open("ftp://host/x").unwrap_err();
        assert!(err.is_invalid_argument());
        let msg = err.to_string();
        assert!(
            msg.contains("unknown scheme \"ftp\"")
                && msg.contains("file")
                && msg.contains("memory"),
            "{msg}"
        );
        let err = open("s3://[bad").unwrap_err();
        assert!(
            err.is_invalid_argument() && err.to_string().contains("known schemes"),
            "{err}"
        );
        assert!(open("").unwrap_err().is_invalid_argument());
        assert!(open("file://relative/x").is_err());
    }
}

#[cfg(test)]
mod fuzz {
    use proptest::prelude::*;
    use proptest::test_runner::{Config, TestRunner};

    /// Any string given to `open` is a backend or a clear error, never a panic.
    #[test]
    fn open_never_panics_on_any_url() {
        let cases = std::env::var("REPLICA_FUZZ_CASES")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(5_000);
        let mut runner = TestRunner::new(Config {
            cases,
            failure_persistence: None,
            ..Config::default()
        });
        let urls = prop_oneof![
            any::<String>(),
            "(file|memory|s3|gs|az|ftp|)(:|://|:/)[a-z0-9./%?=&\\[\\]@:_-]{0,30}",
        ];
        runner
            .run(&urls, |url| {
                if let Err(e) = super::open(&url) {
                    prop_assert!(e.is_invalid_argument(), "{url:?}: {e}");
                }
                Ok(())
            })
            .unwrap();
    }
}
