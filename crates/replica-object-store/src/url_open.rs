//! Building a client from a URL, in `object_store`'s conventions.

use std::sync::Arc;

use replica_core::{Error, Result};
use url::Url;

use crate::ObjectKeyStore;

/// The cloud URL schemes this build can open (by cargo feature).
pub const OBJECT_STORE_SCHEMES: &[&str] = &[
    #[cfg(feature = "aws")]
    "s3",
    #[cfg(feature = "gcp")]
    "gs",
    #[cfg(feature = "azure")]
    "az",
];

/// Opens the object store (and key prefix) a URL names, such as
/// `s3://bucket/prefix?endpoint=http://127.0.0.1:9000&allow_http=true`.
///
/// Options come from the environment (`AWS_*`, `GOOGLE_*`, `AZURE_*`, as the
/// `object_store` builders name them, e.g. `AWS_ENDPOINT`, `AWS_REGION`,
/// `AWS_ALLOW_HTTP`) and then from the URL query, which wins. The URL's path
/// is the key prefix.
pub fn open_url(url: &Url) -> Result<ObjectKeyStore> {
    let mut options: Vec<(String, String)> = std::env::vars()
        .filter(|(k, _)| {
            ["AWS_", "GOOGLE_", "AZURE_"]
                .iter()
                .any(|p| k.starts_with(p))
        })
        .map(|(k, v)| (k.to_ascii_lowercase(), v))
        .collect();
    options.extend(
        url.query_pairs()
            .map(|(k, v)| (k.into_owned(), v.into_owned())),
    );
    let mut bare = url.clone();
    bare.set_query(None);
    let (store, prefix) = object_store::parse_url_opts(&bare, options)
        .map_err(|e| Error::invalid(format!("cannot open {url}: {e}")))?;
    let kind = match url.scheme() {
        "s3" | "s3a" => "s3",
        "gs" => "gcs",
        "az" | "azure" | "abfs" | "abfss" | "adl" => "azure",
        "file" => "object_store_local",
        "memory" => "object_store_memory",
        _ => "object_store",
    };
    Ok(ObjectKeyStore::new(Arc::from(store), prefix.as_ref()).with_kind(kind))
}
