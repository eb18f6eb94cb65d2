//! Object-storage backend of replica, on the [`object_store`] crate.
//!
//! [`ObjectStoreClient`] keeps a replica in any [`ObjectStore`] (S3, GCS,
//! Azure, a local directory, memory) under a key prefix, with the same keys
//! as the file backend's paths, so a replica directory copied key for key into
//! a bucket reads the same:
//!
//! ```text
//! <prefix>/generations/<generation>/snapshots/<index>.snapshot.lz4
//! <prefix>/generations/<generation>/wal/<index>/<offset>.wal.lz4
//! ```
//!
//! Writes stream: data below [`DEFAULT_MULTIPART_THRESHOLD`] goes up in one
//! atomic put; larger data in a multipart upload that is completed only when
//! the input ended cleanly and aborted otherwise, so nothing partial is ever
//! visible under the final key. Listings use delimiters (one request per
//! generation, per WAL index), with paging handled by `object_store`.
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

use bytes::Bytes;
use chrono::{DateTime, Utc};
use futures::stream::{self, StreamExt, TryStreamExt};
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload, WriteMultipart};
use replica_core::layout;
use replica_core::{
    async_trait, ByteStream, Error, Generation, Pos, ReplicaClient, Result, SnapshotInfo,
    WalSegmentCursor, WalSegmentInfo, WalSegmentSource,
};

mod url_open;
pub use url_open::{open_url, OBJECT_STORE_SCHEMES};

/// Data at least this large is uploaded in parts (8 MiB).
pub const DEFAULT_MULTIPART_THRESHOLD: usize = 8 << 20;
/// Multipart parts uploaded at once.
const PART_CONCURRENCY: usize = 4;

/// A replica in an object store, under a key prefix.
#[derive(Clone)]
pub struct ObjectStoreClient {
    inner: Arc<Inner>,
}

struct Inner {
    store: Arc<dyn ObjectStore>,
    prefix: String,
    kind: &'static str,
    multipart_threshold: usize,
}

impl fmt::Debug for ObjectStoreClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ObjectStoreClient")
            .field("kind", &self.inner.kind)
            .field("store", &self.inner.store.to_string())
            .field("prefix", &self.inner.prefix)
            .finish()
    }
}

impl ObjectStoreClient {
    /// A client over `store`, with every key under `prefix` (may be empty).
    /// Its [`kind`](ReplicaClient::kind) is `object_store`.
    pub fn new(store: Arc<dyn ObjectStore>, prefix: &str) -> Self {
        ObjectStoreClient {
            inner: Arc::new(Inner {
                store,
                prefix: prefix.trim_matches('/').to_owned(),
                kind: "object_store",
                multipart_threshold: DEFAULT_MULTIPART_THRESHOLD,
            }),
        }
    }

    /// Sets the name [`kind`](ReplicaClient::kind) reports (`s3`, `gcs`, ...).
    pub fn with_kind(self, kind: &'static str) -> Self {
        self.rebuild(|i| i.kind = kind)
    }

    /// Sets the size from which writes use multipart upload (at least 5 MiB
    /// on S3, where every part but the last must be that large).
    pub fn with_multipart_threshold(self, bytes: usize) -> Self {
        self.rebuild(|i| i.multipart_threshold = bytes.max(1))
    }

    fn rebuild(self, change: impl FnOnce(&mut Inner)) -> Self {
        let mut inner = Inner {
            store: self.inner.store.clone(),
            prefix: self.inner.prefix.clone(),
            kind: self.inner.kind,
            multipart_threshold: self.inner.multipart_threshold,
        };
        change(&mut inner);
        ObjectStoreClient {
            inner: Arc::new(inner),
        }
    }

    /// Stores raw bytes under any path below the prefix, canonical or not.
    /// For tests that plant junk a real bucket could hold (`README`, ...).
    pub async fn insert_raw(&self, path: &str, data: Bytes) -> Result<()> {
        let key = self.key(path);
        self.inner
            .store
            .put(&key, data.into())
            .await
            .map(|_| ())
            .map_err(|e| self.error(&format!("writing {key}"), e))
    }

    /// The underlying store.
    pub fn store(&self) -> &Arc<dyn ObjectStore> {
        &self.inner.store
    }

    /// The key of a layout path.
    pub fn key(&self, layout_path: &str) -> Path {
        let joined = if self.inner.prefix.is_empty() {
            layout_path.to_owned()
        } else {
            let mut joined = String::with_capacity(self.inner.prefix.len() + 1 + layout_path.len());
            joined.push_str(&self.inner.prefix);
            joined.push('/');
            joined.push_str(layout_path);
            joined
        };
        // Layout paths are always valid keys; only an odd prefix needs encoding.
        Path::parse(&joined).unwrap_or_else(|_| Path::from_iter(joined.split('/')))
    }

    fn error(&self, doing: &str, e: object_store::Error) -> Error {
        if let object_store::Error::NotFound { path, .. } = &e {
            return Error::not_found(path.clone());
        }
        Error::Backend {
            backend: self.inner.kind,
            message: format!("{doing}: {e}"),
            source: Some(Arc::new(e)),
        }
    }

    /// Children of a "directory": (common prefixes' last parts, objects).
    async fn list_dir(
        &self,
        layout_dir: &str,
    ) -> Result<(Vec<String>, Vec<object_store::ObjectMeta>)> {
        let key = self.key(layout_dir);
        let listed = self
            .inner
            .store
            .list_with_delimiter(Some(&key))
            .await
            .map_err(|e| self.error(&format!("listing {key}"), e))?;
        let dirs = listed
            .common_prefixes
            .iter()
            .filter_map(|p| p.filename().map(str::to_owned))
            .collect();
        Ok((dirs, listed.objects))
    }

    /// Whether a generation holds at least one canonical object; stops at the first.
    async fn holds_objects(&self, generation: &Generation) -> Result<bool> {
        let key = self.key(&layout::generation_dir(generation));
        let skip = key.parts().count() - 2;
        let mut objects = self.inner.store.list(Some(&key));
        while let Some(meta) = objects
            .try_next()
            .await
            .map_err(|e| self.error(&format!("listing {key}"), e))?
        {
            let relative: Vec<String> = meta
                .location
                .parts()
                .skip(skip)
                .map(|p| p.as_ref().to_owned())
                .collect();
            if layout::parse_path(&relative.join("/")).is_some() {
                return Ok(true);
            }
        }
        Ok(false)
    }

    async fn put(&self, layout_path: &str, mut data: ByteStream) -> Result<(u64, DateTime<Utc>)> {
        let key = self.key(layout_path);
        let threshold = self.inner.multipart_threshold;
        let mut head: Vec<Bytes> = Vec::new();
        let mut buffered = 0usize;
        let mut ended = false;
        while buffered < threshold {
            match data.try_next().await? {
                Some(chunk) => {
                    buffered += chunk.len();
                    head.push(chunk);
                }
                None => {
                    ended = true;
                    break;
                }
            }
        }
        let size = if ended {
            self.inner
                .store
                .put(&key, PutPayload::from_iter(head))
                .await
                .map_err(|e| self.error(&format!("writing {key}"), e))?;
            buffered as u64
        } else {
            self.put_multipart(&key, head, data).await?
        };
        // The reply's created_at is the local time the write completed (as in
        // Litestream): asking the store for its own time would cost a request
        // per write. Listings report the store's last-modified.
        Ok((size, Utc::now()))
    }

    async fn put_multipart(
        &self,
        key: &Path,
        head: Vec<Bytes>,
        mut rest: ByteStream,
    ) -> Result<u64> {
        let upload = self
            .inner
            .store
            .put_multipart(key)
            .await
            .map_err(|e| self.error(&format!("starting upload of {key}"), e))?;
        let mut writer =
            WriteMultipart::new_with_chunk_size(upload, self.inner.multipart_threshold);
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
        match outcome {
            Ok(()) => {
                writer
                    .finish()
                    .await
                    .map_err(|e| self.error(&format!("completing upload of {key}"), e))?;
                Ok(size)
            }
            Err(err) => {
                // Abort so no part becomes visible; the input's error is what matters.
                let _ = writer.abort().await;
                Err(err)
            }
        }
    }

    async fn get(&self, layout_path: String) -> Result<ByteStream> {
        let key = self.key(&layout_path);
        match self.inner.store.get(&key).await {
            Ok(result) => {
                let client = self.clone();
                Ok(result
                    .into_stream()
                    .map_err(move |e| client.error(&format!("reading {key}"), e))
                    .boxed())
            }
            Err(object_store::Error::NotFound { .. }) => Err(Error::not_found(layout_path)),
            Err(e) => Err(self.error(&format!("reading {key}"), e)),
        }
    }

    /// Deletes keys; missing ones are fine.
    async fn delete_keys(&self, keys: Vec<Path>) -> Result<()> {
        let locations = stream::iter(keys.into_iter().map(Ok)).boxed();
        let mut deleted = self.inner.store.delete_stream(locations);
        while let Some(result) = deleted.next().await {
            match result {
                Ok(_) | Err(object_store::Error::NotFound { .. }) => {}
                Err(e) => return Err(self.error("deleting", e)),
            }
        }
        Ok(())
    }
}

fn file_name(meta: &object_store::ObjectMeta) -> Option<&str> {
    meta.location.filename()
}

struct Wal {
    client: ObjectStoreClient,
    generation: Generation,
}

#[async_trait]
impl WalSegmentSource for Wal {
    async fn indexes(&self) -> Result<Vec<u64>> {
        let (dirs, _) = self
            .client
            .list_dir(&layout::wal_dir(&self.generation))
            .await?;
        Ok(dirs
            .iter()
            .filter_map(|d| layout::parse_index_name(d))
            .collect())
    }

    async fn segments(&self, index: u64) -> Result<Vec<WalSegmentInfo>> {
        let dir = layout::wal_index_dir(&self.generation, index)?;
        let (_, objects) = self.client.list_dir(&dir).await?;
        Ok(objects
            .iter()
            .filter_map(|m| {
                let offset = layout::parse_wal_segment_file_name(file_name(m)?)?;
                Some(WalSegmentInfo {
                    generation: self.generation.clone(),
                    index,
                    offset,
                    size: m.size,
                    created_at: m.last_modified,
                })
            })
            .collect())
    }
}

#[async_trait]
impl ReplicaClient for ObjectStoreClient {
    fn kind(&self) -> &'static str {
        self.inner.kind
    }

    async fn generations(&self) -> Result<Vec<Generation>> {
        let (dirs, _) = self.list_dir(layout::GENERATIONS_DIR).await?;
        let mut found = Vec::new();
        for g in dirs.iter().filter_map(|d| layout::parse_generation_name(d)) {
            if self.holds_objects(&g).await? {
                found.push(g);
            }
        }
        found.sort();
        Ok(found)
    }

    async fn delete_generation(&self, generation: &Generation) -> Result<()> {
        let key = self.key(&layout::generation_dir(generation));
        let keys: Vec<Path> = self
            .inner
            .store
            .list(Some(&key))
            .map_ok(|m| m.location)
            .try_collect()
            .await
            .map_err(|e| self.error(&format!("listing {key}"), e))?;
        self.delete_keys(keys).await
    }

    async fn snapshots(&self, generation: &Generation) -> Result<Vec<SnapshotInfo>> {
        let (_, objects) = self.list_dir(&layout::snapshots_dir(generation)).await?;
        let mut found: Vec<SnapshotInfo> = objects
            .iter()
            .filter_map(|m| {
                Some(SnapshotInfo {
                    generation: generation.clone(),
                    index: layout::parse_snapshot_file_name(file_name(m)?)?,
                    size: m.size,
                    created_at: m.last_modified,
                })
            })
            .collect();
        found.sort_by_key(|s| s.index);
        Ok(found)
    }

    async fn write_snapshot(
        &self,
        generation: &Generation,
        index: u64,
        data: ByteStream,
    ) -> Result<SnapshotInfo> {
        let (size, created_at) = self
            .put(&layout::snapshot_path(generation, index)?, data)
            .await?;
        Ok(SnapshotInfo::new(generation, index, size, created_at))
    }

    async fn snapshot_reader(&self, generation: &Generation, index: u64) -> Result<ByteStream> {
        self.get(layout::snapshot_path(generation, index)?).await
    }

    async fn delete_snapshot(&self, generation: &Generation, index: u64) -> Result<()> {
        let key = self.key(&layout::snapshot_path(generation, index)?);
        self.delete_keys(vec![key]).await
    }

    async fn wal_segments(&self, generation: &Generation) -> Result<WalSegmentCursor> {
        let source = Wal {
            client: self.clone(),
            generation: generation.clone(),
        };
        WalSegmentCursor::open(generation.clone(), Arc::new(source)).await
    }

    async fn write_wal_segment(&self, pos: &Pos, data: ByteStream) -> Result<WalSegmentInfo> {
        let (size, created_at) = self.put(&layout::wal_segment_path(pos)?, data).await?;
        Ok(WalSegmentInfo::new(pos, size, created_at))
    }

    async fn wal_segment_reader(&self, pos: &Pos) -> Result<ByteStream> {
        self.get(layout::wal_segment_path(pos)?).await
    }

    async fn delete_wal_segments(&self, positions: &[Pos]) -> Result<()> {
        let keys = layout::wal_segment_paths(positions)?
            .iter()
            .map(|p| self.key(p))
            .collect();
        self.delete_keys(keys).await
    }
}
