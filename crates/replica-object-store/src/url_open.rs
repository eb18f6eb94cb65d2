//! Building a client from a URL, in `object_store`'s conventions.

#[cfg(any(feature = "aws", feature = "gcp", feature = "azure"))]
use std::collections::HashMap;
use std::sync::Arc;
#[cfg(any(feature = "aws", feature = "gcp", feature = "azure"))]
use std::sync::{Mutex, Weak};
use std::time::Duration;

#[cfg(any(feature = "aws", feature = "gcp", feature = "azure"))]
use object_store::RetryConfig;
use object_store::{ObjectStore, ObjectStoreScheme};

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

/// How long one request is retried (transient errors, refused or timed-out
/// connections) before its error is reported: a misconfigured endpoint fails
/// within this bound, and the error says what was tried and for how long.
pub const RETRY_TIMEOUT: Duration = Duration::from_secs(30);

/// Cloud clients already built, by what built them (scheme, bucket, URL
/// options and the environment's): opened again, as ten thousand databases
/// replicated into one bucket open it, a client and its connection pool
/// and credentials are shared, not built once per replica (each with its
/// own idle connections, each a descriptor). Held weakly: a client no
/// replica uses is dropped.
#[cfg(any(feature = "aws", feature = "gcp", feature = "azure"))]
static CLIENTS: Mutex<Option<HashMap<String, Weak<dyn ObjectStore>>>> = Mutex::new(None);

/// What builds a cloud client: the URL without its path (the key prefix,
/// which `ObjectKeyStore` applies) but with its user part (an Azure
/// container may be named there), host and port; its query options in
/// their order (a name given twice is the builder's last-wins); the
/// environment's options. Two URLs that differ in any of these never
/// share a client.
#[cfg(any(feature = "aws", feature = "gcp", feature = "azure"))]
fn client_key(bare: &Url, query: &[(String, String)], env: &[(String, String)]) -> String {
    let mut base = bare.clone();
    base.set_path("");
    let mut env = env.to_vec();
    env.sort();
    format!("{base}\n{query:?}\n{env:?}")
}

/// The client that `key` names, built by `build` unless one is in use.
#[cfg(any(feature = "aws", feature = "gcp", feature = "azure"))]
fn shared(
    key: String,
    build: impl FnOnce() -> Result<Arc<dyn ObjectStore>>,
) -> Result<Arc<dyn ObjectStore>> {
    let mut clients = CLIENTS.lock().unwrap_or_else(|p| p.into_inner());
    let clients = clients.get_or_insert_with(HashMap::new);
    if let Some(store) = clients.get(&key).and_then(Weak::upgrade) {
        return Ok(store);
    }
    let store = build()?;
    clients.retain(|_, weak| weak.strong_count() > 0);
    clients.insert(key, Arc::downgrade(&store));
    Ok(store)
}

/// Opens the object store (and key prefix) a URL names, such as
/// `s3://bucket/prefix?endpoint=http://127.0.0.1:9000&allow_http=true`.
///
/// Options come from the environment (`AWS_*`, `GOOGLE_*`, `AZURE_*`, as the
/// `object_store` builders name them, e.g. `AWS_ENDPOINT`, `AWS_REGION`,
/// `AWS_ALLOW_HTTP`) and then from the URL query, which wins. An option in
/// the query that the scheme's builder does not know is an
/// [`Error::InvalidArgument`] naming it (a typo must not be ignored); unknown
/// environment variables are ignored, as there are many unrelated ones. The
/// URL's path is the key prefix. Requests are retried for at most
/// [`RETRY_TIMEOUT`]. URLs of one bucket with the same options share one
/// client (see `CLIENTS`).
pub fn open_url(url: &Url) -> Result<ObjectKeyStore> {
    let env: Vec<(String, String)> = std::env::vars()
        .filter(|(k, _)| {
            ["AWS_", "GOOGLE_", "AZURE_"]
                .iter()
                .any(|p| k.starts_with(p))
        })
        .map(|(k, v)| (k.to_ascii_lowercase(), v))
        .collect();
    let query: Vec<(String, String)> = url
        .query_pairs()
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    let mut bare = url.clone();
    bare.set_query(None);
    let cannot = |e: &dyn std::fmt::Display| Error::invalid(format!("cannot open {url}: {e}"));
    let (scheme, path) = ObjectStoreScheme::parse(&bare).map_err(|e| cannot(&e))?;
    let prefix = object_store::path::Path::parse(path).map_err(|e| cannot(&e))?;
    #[cfg(any(feature = "aws", feature = "gcp", feature = "azure"))]
    let retry = RetryConfig {
        retry_timeout: RETRY_TIMEOUT,
        ..RetryConfig::default()
    };
    #[cfg(any(feature = "aws", feature = "gcp", feature = "azure"))]
    let client_key = client_key(&bare, &query, &env);
    #[cfg(any(feature = "aws", feature = "gcp", feature = "azure"))]
    macro_rules! build {
        ($builder:ty, $key:ty, $check:expr) => {{
            shared(client_key, || {
                let mut builder = <$builder>::new().with_url(bare.as_str());
                for (key, value) in env {
                    if let Ok(key) = key.parse::<$key>() {
                        builder = builder.with_config(key, value);
                    }
                }
                for (name, value) in query {
                    let key = name.to_ascii_lowercase().parse::<$key>().map_err(|_| {
                        Error::invalid(format!(
                            "cannot open {url}: unknown option `{name}` in the URL query \
                         (object_store's {} options, such as endpoint, region or allow_http)",
                            url.scheme()
                        ))
                    })?;
                    builder = builder.with_config(key, value);
                }
                $check(&builder)?;
                Ok(
                    Arc::new(builder.with_retry(retry).build().map_err(|e| cannot(&e))?)
                        as Arc<dyn ObjectStore>,
                )
            })?
        }};
    }
    let (store, kind): (Arc<dyn ObjectStore>, &'static str) = match scheme {
        #[cfg(feature = "aws")]
        ObjectStoreScheme::AmazonS3 => (
            build!(
                object_store::aws::AmazonS3Builder,
                object_store::aws::AmazonS3ConfigKey,
                |b: &object_store::aws::AmazonS3Builder| aws_credentials_possible(url, b)
            ),
            "s3",
        ),
        #[cfg(feature = "gcp")]
        ObjectStoreScheme::GoogleCloudStorage => (
            build!(
                object_store::gcp::GoogleCloudStorageBuilder,
                object_store::gcp::GoogleConfigKey,
                |_: &object_store::gcp::GoogleCloudStorageBuilder| Ok::<(), Error>(())
            ),
            "gcs",
        ),
        #[cfg(feature = "azure")]
        ObjectStoreScheme::MicrosoftAzure => (
            build!(
                object_store::azure::MicrosoftAzureBuilder,
                object_store::azure::AzureConfigKey,
                |_: &object_store::azure::MicrosoftAzureBuilder| Ok::<(), Error>(())
            ),
            "azure",
        ),
        ObjectStoreScheme::Memory | ObjectStoreScheme::Local if !query.is_empty() => {
            return Err(Error::invalid(format!(
                "cannot open {url}: this scheme takes no options in the URL query"
            )))
        }
        ObjectStoreScheme::Memory => (
            Arc::new(object_store::memory::InMemory::new()) as _,
            "object_store_memory",
        ),
        ObjectStoreScheme::Local => (
            Arc::new(object_store::local::LocalFileSystem::new()) as _,
            "object_store_local",
        ),
        _ => {
            return Err(Error::invalid(format!(
                "cannot open {url}: the scheme is not supported by this build \
                 (supported: {})",
                OBJECT_STORE_SCHEMES.join(", ")
            )))
        }
    };
    #[cfg(not(any(feature = "aws", feature = "gcp", feature = "azure")))]
    drop(env);
    Ok(ObjectKeyStore::new(store, prefix.as_ref()).with_kind(kind))
}

/// With `AWS_EC2_METADATA_DISABLED=true` (the AWS SDKs' convention), no
/// request may go to the instance metadata service: without credentials
/// from the environment or the URL, opening fails at once saying so, where
/// object_store would ask the metadata address.
#[cfg(feature = "aws")]
fn aws_credentials_possible(url: &Url, b: &object_store::aws::AmazonS3Builder) -> Result<()> {
    use object_store::aws::AmazonS3ConfigKey as K;
    let disabled =
        std::env::var("AWS_EC2_METADATA_DISABLED").is_ok_and(|v| v.eq_ignore_ascii_case("true"));
    let set = |k: K| b.get_config_value(&k).is_some_and(|v| !v.is_empty());
    let skip = b
        .get_config_value(&K::SkipSignature)
        .is_some_and(|v| v.eq_ignore_ascii_case("true"));
    let other_source = [
        "AWS_WEB_IDENTITY_TOKEN_FILE",
        "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
        "AWS_CONTAINER_CREDENTIALS_FULL_URI",
    ]
    .iter()
    .any(|k| std::env::var_os(k).is_some_and(|v| !v.is_empty()));
    let keys = set(K::AccessKeyId) && set(K::SecretAccessKey);
    let credentials = skip || other_source || keys;
    if disabled && !credentials {
        return Err(Error::invalid(format!(
            "cannot open {url}: no AWS credentials, and AWS_EC2_METADATA_DISABLED=true forbids \
             asking the instance metadata service for some: set AWS_ACCESS_KEY_ID and \
             AWS_SECRET_ACCESS_KEY (or ?access_key_id=...&secret_access_key=...), or \
             AWS_SKIP_SIGNATURE=true for a public bucket"
        )));
    }
    Ok(())
}

#[cfg(all(test, any(feature = "aws", feature = "gcp", feature = "azure")))]
mod key_tests {
    use super::*;

    fn key(url: &str, query: &[(&str, &str)]) -> String {
        let query: Vec<(String, String)> = query
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let env = vec![("aws_region".to_owned(), "us-east-1".to_owned())];
        client_key(&Url::parse(url).unwrap(), &query, &env)
    }

    #[test]
    fn only_the_path_may_differ_between_urls_sharing_a_client() {
        let same = key("az://c1@acct.dfs.core.windows.net/a", &[]);
        assert_eq!(same, key("az://c1@acct.dfs.core.windows.net/b/c", &[]));
        for other in [
            key("az://c2@acct.dfs.core.windows.net/a", &[]),
            key("az://c1@other.dfs.core.windows.net/a", &[]),
            key("az://c1@acct.dfs.core.windows.net:8443/a", &[]),
            key("s3://c1@acct.dfs.core.windows.net/a", &[]),
            key("az://c1@acct.dfs.core.windows.net/a", &[("endpoint", "x")]),
        ] {
            assert_ne!(same, other);
        }
        // Query options keep their order: the builder's last one wins.
        assert_ne!(
            key("s3://b/p", &[("region", "a"), ("region", "b")]),
            key("s3://b/p", &[("region", "b"), ("region", "a")])
        );
    }
}

#[cfg(all(test, feature = "aws"))]
mod tests {
    use super::*;

    fn open(url: &str) -> ObjectKeyStore {
        open_url(&Url::parse(url).unwrap()).unwrap()
    }

    #[test]
    fn urls_of_one_bucket_share_a_client_while_it_is_in_use() {
        let url = |bucket: &str, path: &str, region: &str| {
            format!(
                "s3://{bucket}/{path}?endpoint=http://127.0.0.1:9&allow_http=true\
                 &region={region}&access_key_id=k&secret_access_key=s"
            )
        };
        let a = open(&url("shared-a", "tenants/one.db", "us-east-1"));
        let b = open(&url("shared-a", "tenants/two.db", "us-east-1"));
        assert!(Arc::ptr_eq(a.store(), b.store()), "one bucket, one client");
        let other_bucket = open(&url("shared-b", "tenants/one.db", "us-east-1"));
        assert!(!Arc::ptr_eq(a.store(), other_bucket.store()));
        let other_options = open(&url("shared-a", "tenants/one.db", "eu-west-1"));
        assert!(
            !Arc::ptr_eq(a.store(), other_options.store()),
            "other options build another client"
        );
        // The prefixes stay each replica's own.
        assert_ne!(format!("{a:?}"), format!("{b:?}"));
        let weak = Arc::downgrade(a.store());
        drop((a, b));
        assert!(
            weak.upgrade().is_none(),
            "a client no replica uses is dropped"
        );
    }
}
