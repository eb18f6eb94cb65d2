//! Object-storage backend of replica, on the [`object_store`] crate.
//!
//! [`ObjectKeyStore`] is a [`KeyStore`] over any [`ObjectStore`] (S3, GCS,
//! Azure, a local directory, memory) under a key prefix; [`ObjectStoreClient`]
//! is the replica client over it. Its keys are the file backend's paths, so a
//! replica directory copied key for key into a bucket reads the same, in
//! either layout (`<prefix>/generations/<generation>/...`).
//!
//! Writes stream: data below [`DEFAULT_MULTIPART_THRESHOLD`] goes up in one
//! atomic put; larger data in a multipart upload that is completed only when
//! the input ended cleanly and aborted otherwise, so nothing partial is ever
//! visible under the final key. Listings use delimiters (one request per
//! directory level), with paging handled by `object_store`; deleting a
//! generation streams its keys into batched deletes.
//!
//! `created_at` in listings is the store's last-modified; in the reply to a
//! write it is the local time the write completed, which saves a request per
//! write (the conformance suite allows the two a few seconds apart).
//!
//! [`open_url`] builds a client from an `s3://`, `gs://`, `az://` (with the
//! matching cargo feature), `file://` or `memory://` URL, taking options from
//! the URL query and the environment in `object_store`'s conventions.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use chrono::Utc;
use futures::stream::{self, BoxStream, StreamExt, TryStreamExt};
use object_store::path::Path;
use object_store::{
    Attribute, Attributes, GetOptions, GetRange, ObjectStore, ObjectStoreExt, PutPayload,
    WriteMultipart,
};
use replica_core::{
    async_trait, read_head, ByteStream, Error, KeyStore, Listing, ObjectMeta, PutOptions, Result,
    StoreClient, AZURE_TIME_METADATA_KEY, TIME_METADATA_KEY,
};

fn empty_stream() -> ByteStream {
    stream::empty().boxed()
}

mod url_open;
pub use url_open::{open_url, OBJECT_STORE_SCHEMES, RETRY_TIMEOUT};

/// Data at least this large is uploaded in parts (8 MiB).
pub const DEFAULT_MULTIPART_THRESHOLD: usize = 8 << 20;
/// Multipart parts uploaded at once.
const PART_CONCURRENCY: usize = 4;
/// The smallest part S3 (and GCS's XML API) accepts for all but the last part.
pub const MIN_PART_SIZE: usize = 5 << 20;

/// A replica in an object store, in any layout.
pub type ObjectStoreClient = StoreClient<ObjectKeyStore>;

/// Keys of an [`ObjectStore`] under a prefix.
#[derive(Clone)]
pub struct ObjectKeyStore {
    inner: Arc<Inner>,
}

struct Inner {
    store: Arc<dyn ObjectStore>,
    prefix: String,
    kind: &'static str,
    multipart_threshold: usize,
    /// Whether the store keeps object metadata: `LocalFileSystem` refuses
    /// any (object_store offers no other way to ask than its name).
    metadata: bool,
}

impl fmt::Debug for ObjectKeyStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ObjectKeyStore")
            .field("kind", &self.inner.kind)
            .field("store", &self.inner.store.to_string())
            .field("prefix", &self.inner.prefix)
            .finish()
    }
}

impl ObjectKeyStore {
    /// Keys of `store` under `prefix` (may be empty). Its
    /// [`kind`](KeyStore::kind) is `object_store`.
    pub fn new(store: Arc<dyn ObjectStore>, prefix: &str) -> Self {
        ObjectKeyStore {
            inner: Arc::new(Inner {
                metadata: !store.to_string().starts_with("LocalFileSystem"),
                store,
                prefix: prefix.trim_matches('/').to_owned(),
                kind: "object_store",
                multipart_threshold: DEFAULT_MULTIPART_THRESHOLD,
            }),
        }
    }

    /// Sets the name [`kind`](KeyStore::kind) reports (`s3`, `gcs`, ...).
    pub fn with_kind(self, kind: &'static str) -> Self {
        self.rebuild(|i| i.kind = kind)
    }

    /// Sets the size from which writes use multipart upload. Parts are
    /// this large, but never smaller than [`MIN_PART_SIZE`] (S3 rejects
    /// smaller parts but the last), whatever the threshold.
    pub fn with_multipart_threshold(self, bytes: usize) -> Self {
        self.rebuild(|i| i.multipart_threshold = bytes.max(1))
    }

    fn rebuild(self, change: impl FnOnce(&mut Inner)) -> Self {
        let mut inner = Inner {
            store: self.inner.store.clone(),
            prefix: self.inner.prefix.clone(),
            kind: self.inner.kind,
            multipart_threshold: self.inner.multipart_threshold,
            metadata: self.inner.metadata,
        };
        change(&mut inner);
        ObjectKeyStore {
            inner: Arc::new(inner),
        }
    }

    /// Stores raw bytes under any key below the prefix, canonical or not.
    /// For tests that plant junk a real bucket could hold (`README`, ...).
    pub async fn insert_raw(&self, key: &str, data: Bytes) -> Result<()> {
        let key = self.key(key);
        self.inner
            .store
            .put(&key, data.into())
            .await
            .map(|_| ())
            .map_err(|e| self.error(&format!("writing {key}"), e))
    }

    /// Deletes every object below the prefix (streamed into batched
    /// deletes), canonical or not.
    pub async fn delete_everything(&self) -> Result<()> {
        let prefix =
            (!self.inner.prefix.is_empty()).then(|| Path::from(self.inner.prefix.as_str()));
        let store = self.inner.store.clone();
        self.delete_locations(|| store.list(prefix.as_ref()).map_ok(|m| m.location).boxed())
            .await
    }

    /// The underlying store.
    pub fn store(&self) -> &Arc<dyn ObjectStore> {
        &self.inner.store
    }

    /// The object-store location of a key (the prefix, then the key).
    pub fn key(&self, key: &str) -> Path {
        let joined = if self.inner.prefix.is_empty() || key.is_empty() {
            // `""` is the root (a listing of the prefix itself).
            format!("{}{key}", self.inner.prefix)
        } else {
            let mut joined = String::with_capacity(self.inner.prefix.len() + 1 + key.len());
            joined.push_str(&self.inner.prefix);
            joined.push('/');
            joined.push_str(key);
            joined
        };
        // Layout paths are always valid keys; only an odd prefix needs encoding.
        Path::parse(&joined).unwrap_or_else(|_| Path::from_iter(joined.split('/')))
    }

    /// Maps an `object_store` error, keeping its kind: not found, permission
    /// denied, unauthenticated and precondition failures stay matchable.
    fn error(&self, doing: &str, e: object_store::Error) -> Error {
        let backend = self.inner.kind;
        let message = format!("{doing}: {e}");
        match e {
            object_store::Error::NotFound { path, .. } => Error::not_found(path),
            e @ object_store::Error::PermissionDenied { .. } => Error::PermissionDenied {
                backend,
                message,
                source: Some(Arc::new(e)),
            },
            e @ object_store::Error::Unauthenticated { .. } => Error::Unauthenticated {
                backend,
                message,
                source: Some(Arc::new(e)),
            },
            e @ (object_store::Error::Precondition { .. }
            | object_store::Error::NotModified { .. }
            | object_store::Error::AlreadyExists { .. }) => Error::Precondition {
                backend,
                message,
                source: Some(Arc::new(e)),
            },
            e => Error::Backend {
                backend,
                message,
                source: Some(Arc::new(e)),
            },
        }
    }

    /// The metadata key of object times, as Litestream names it on this store.
    fn time_key(&self) -> &'static str {
        if self.inner.kind == "azure" {
            AZURE_TIME_METADATA_KEY
        } else {
            TIME_METADATA_KEY
        }
    }

    /// The object's metadata: its time as `litestream-timestamp`, on stores
    /// that keep metadata (`LocalFileSystem` keeps none and refuses any).
    fn attributes(&self, time: Option<chrono::DateTime<Utc>>) -> Attributes {
        let mut attributes = Attributes::new();
        if let Some(time) = time.filter(|_| self.inner.metadata) {
            attributes.insert(
                Attribute::Metadata(self.time_key().into()),
                time.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
                    .into(),
            );
        }
        attributes
    }

    async fn write(
        &self,
        key: &str,
        mut data: ByteStream,
        time: Option<chrono::DateTime<Utc>>,
    ) -> Result<ObjectMeta> {
        let key = self.key(key);
        let threshold = self.inner.multipart_threshold;
        let head = read_head(&mut data, threshold).await?;
        let attributes = self.attributes(time);
        let size = if head.complete {
            let options = object_store::PutOptions {
                attributes,
                ..Default::default()
            };
            self.inner
                .store
                .put_opts(&key, PutPayload::from_iter(head.chunks), options)
                .await
                .map_err(|e| self.error(&format!("writing {key}"), e))?;
            head.len as u64
        } else {
            self.put_multipart(&key, head.chunks, data, attributes)
                .await?
        };
        // The reply's created_at is the local time the write completed (as in
        // Litestream): asking the store for its own time would cost a request
        // per write. Listings report the store's last-modified.
        Ok(ObjectMeta {
            size,
            modified: Utc::now(),
        })
    }

    async fn put_multipart(
        &self,
        key: &Path,
        head: Vec<Bytes>,
        mut rest: ByteStream,
        attributes: Attributes,
    ) -> Result<u64> {
        let options = object_store::PutMultipartOptions {
            attributes,
            ..Default::default()
        };
        let upload = self
            .inner
            .store
            .put_multipart_opts(key, options)
            .await
            .map_err(|e| self.error(&format!("starting upload of {key}"), e))?;
        let part_size = self.inner.multipart_threshold.max(MIN_PART_SIZE);
        let mut upload = Upload(Some(WriteMultipart::new_with_chunk_size(upload, part_size)));
        let writer = upload.0.as_mut().expect("set above");
        let mut size = 0u64;
        let mut pending = stream::iter(head.into_iter().map(Ok)).chain(&mut rest);
        let outcome: Result<()> = async {
            while let Some(chunk) = pending.try_next().await? {
                writer
                    .wait_for_capacity(PART_CONCURRENCY)
                    .await
                    .map_err(|e| self.error(&format!("uploading {key}"), e))?;
                size += chunk.len() as u64;
                writer.put(chunk);
            }
            Ok(())
        }
        .await;
        let writer = upload.0.take().expect("still there");
        match outcome {
            Ok(()) => {
                writer
                    .finish()
                    .await
                    .map_err(|e| self.error(&format!("completing upload of {key}"), e))?;
                Ok(size)
            }
            // Abort so no part becomes visible (or stays billed); the
            // input's error is what matters, unless the abort fails too.
            Err(err) => match writer.abort().await {
                Ok(()) => Err(err),
                Err(abort) => Err(Error::Backend {
                    backend: self.inner.kind,
                    message: format!(
                        "{err}; aborting the multipart upload of {key} failed too: {abort} (its \
                         parts stay in the bucket until a lifecycle rule for incomplete uploads \
                         removes them)"
                    ),
                    source: Some(Arc::new(abort)),
                }),
            },
        }
    }

    async fn read(&self, path: &str, range: std::ops::Range<u64>) -> Result<ByteStream> {
        let key = self.key(path);
        let whole = range == (0..u64::MAX);
        let options = GetOptions {
            range: (!whole).then(|| {
                if range.end == u64::MAX {
                    GetRange::Offset(range.start)
                } else {
                    GetRange::Bounded(range.clone())
                }
            }),
            ..Default::default()
        };
        if range.start >= range.end {
            return match self.inner.store.head(&key).await {
                Ok(_) => Ok(empty_stream()),
                Err(object_store::Error::NotFound { .. }) => Err(Error::not_found(path)),
                Err(e) => Err(self.error(&format!("reading {key}"), e)),
            };
        }
        match self.inner.store.get_opts(&key, options).await {
            Ok(result) => {
                let client = self.clone();
                Ok(result
                    .into_stream()
                    .map_err(move |e| client.error(&format!("reading {key}"), e))
                    .boxed())
            }
            Err(object_store::Error::NotFound { .. }) => Err(Error::not_found(path)),
            // A range starting at or past the end is refused by the store
            // (HTTP 416); by the KeyStore contract it reads as nothing.
            Err(e) if !whole => match self.inner.store.head(&key).await {
                Ok(meta) if range.start >= meta.size => Ok(empty_stream()),
                Err(object_store::Error::NotFound { .. }) => Err(Error::not_found(path)),
                _ => Err(self.error(&format!("reading {key}"), e)),
            },
            Err(e) => Err(self.error(&format!("reading {key}"), e)),
        }
    }

    /// Deletes the locations `listed` yields, in the store's batches;
    /// missing ones are fine.
    ///
    /// Deleting is idempotent, so a batch that fails with a transport or
    /// server error (a bulk delete is a POST, which `object_store` does not
    /// retry once sent) is retried: the locations are listed again and the
    /// whole delete redone, up to [`DELETE_ATTEMPTS`] times with a growing
    /// pause. Errors that are not [`Error::is_transient`] (permission,
    /// credentials, preconditions) are not retried.
    async fn delete_locations(
        &self,
        listed: impl Fn() -> BoxStream<'static, object_store::Result<Path>>,
    ) -> Result<()> {
        let mut pause = DELETE_RETRY_PAUSE;
        let mut attempt = 1;
        loop {
            let mut deleted = self.inner.store.delete_stream(listed());
            let failed = loop {
                match deleted.next().await {
                    None => return Ok(()),
                    Some(Ok(_)) | Some(Err(object_store::Error::NotFound { .. })) => {}
                    Some(Err(e)) => break self.error("deleting", e),
                }
            };
            if attempt >= DELETE_ATTEMPTS || !failed.is_transient() {
                return Err(failed);
            }
            tokio::time::sleep(pause).await;
            pause *= 2;
            attempt += 1;
        }
    }
}

/// How many times a delete that fails with a transient error is tried.
pub const DELETE_ATTEMPTS: u32 = 4;

/// The pause before the first retry of a failed delete (doubled each time).
const DELETE_RETRY_PAUSE: Duration = Duration::from_millis(250);

/// A multipart upload in progress, aborted if it is dropped before it was
/// completed or aborted (a write cancelled mid-upload): no orphan upload
/// keeps its parts in the bucket.
struct Upload(Option<WriteMultipart>);

impl Drop for Upload {
    fn drop(&mut self) {
        if let Some(writer) = self.0.take() {
            if let Ok(runtime) = tokio::runtime::Handle::try_current() {
                runtime.spawn(async move {
                    let _ = writer.abort().await;
                });
            }
        }
    }
}

#[async_trait]
impl KeyStore for ObjectKeyStore {
    fn kind(&self) -> &'static str {
        self.inner.kind
    }

    async fn put_opts(
        &self,
        key: &str,
        data: ByteStream,
        options: &PutOptions,
    ) -> Result<ObjectMeta> {
        self.write(key, data, options.time).await
    }

    async fn get(&self, key: &str) -> Result<ByteStream> {
        self.read(key, 0..u64::MAX).await
    }

    async fn get_range(&self, key: &str, range: std::ops::Range<u64>) -> Result<ByteStream> {
        self.read(key, range).await
    }

    fn times_listed(&self) -> bool {
        // Listings give last-modified; a kept time is metadata.
        !self.inner.metadata
    }

    /// The `litestream-timestamp` metadata of one HEAD request; without it,
    /// the store's last-modified. `LocalFileSystem` keeps no metadata: `None`.
    async fn object_time(&self, key: &str) -> Result<Option<chrono::DateTime<Utc>>> {
        if !self.inner.metadata {
            return Ok(None);
        }
        let path = self.key(key);
        let options = GetOptions {
            head: true,
            ..Default::default()
        };
        let result = match self.inner.store.get_opts(&path, options).await {
            Ok(r) => r,
            Err(object_store::Error::NotFound { .. }) => return Err(Error::not_found(key)),
            Err(e) => return Err(self.error(&format!("reading the metadata of {path}"), e)),
        };
        let stamped = result
            .attributes
            .get(&Attribute::Metadata(self.time_key().into()))
            .and_then(|v| chrono::DateTime::parse_from_rfc3339(v.as_ref()).ok())
            .map(|t| t.with_timezone(&Utc));
        Ok(Some(stamped.unwrap_or(result.meta.last_modified)))
    }

    async fn delete(&self, keys: &[String]) -> Result<()> {
        let locations: Vec<Path> = keys.iter().map(|k| self.key(k)).collect();
        self.delete_locations(|| stream::iter(locations.clone().into_iter().map(Ok)).boxed())
            .await
    }

    async fn list(&self, dir: &str) -> Result<Listing> {
        let key = self.key(dir);
        let listed = self
            .inner
            .store
            .list_with_delimiter(Some(&key))
            .await
            .map_err(|e| self.error(&format!("listing {key}"), e))?;
        Ok(Listing {
            dirs: listed
                .common_prefixes
                .iter()
                .filter_map(|p| p.filename().map(str::to_owned))
                .collect(),
            objects: listed
                .objects
                .into_iter()
                .filter_map(|m| {
                    let name = m.location.filename()?.to_owned();
                    Some((
                        name,
                        ObjectMeta {
                            size: m.size,
                            modified: m.last_modified,
                        },
                    ))
                })
                .collect(),
        })
    }

    async fn delete_all(&self, dir: &str) -> Result<()> {
        let key = self.key(dir);
        // Streamed: keys go to the batched deletes as they are listed, never
        // all held at once.
        let store = self.inner.store.clone();
        self.delete_locations(|| store.list(Some(&key)).map_ok(|m| m.location).boxed())
            .await
    }
}
