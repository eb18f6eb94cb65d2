//! Building a client from a URL, in `object_store`'s conventions.

use std::sync::Arc;
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
/// [`RETRY_TIMEOUT`].
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
    macro_rules! build {
        ($builder:ty, $key:ty, $check:expr) => {{
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
            Arc::new(builder.with_retry(retry).build().map_err(|e| cannot(&e))?)
                as Arc<dyn ObjectStore>
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
