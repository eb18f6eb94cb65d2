//! Key stores, and the one replica client written over any of them.
//!
//! A backend implements [`KeyStore`]: bytes under `/`-separated keys, in the
//! spirit of `object_store`'s `ObjectStore` — an atomic put from a stream, a
//! get as a stream, delete many, list one level of a directory, delete
//! everything below a directory. It knows nothing of generations or names.
//!
//! [`StoreClient`] turns any key store into a [`ReplicaClient`] in one
//! [`Layout`]: it builds every key, parses every listing (skipping junk),
//! sorts, and applies the rule that a generation exists while it holds at
//! least one snapshot or segment. Every backend therefore lists, sorts and
//! skips junk in exactly the same way.

use std::collections::BTreeMap;
use std::fmt;
use std::ops::Range;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use futures::{StreamExt, TryStreamExt};

use crate::client::{ByteStream, ReplicaClient, WalSegmentSource};
use crate::cursor::WalSegmentCursor;
use crate::error::{Error, Result};
use crate::layout::{self, Layout, WalShape};
use crate::types::{Generation, Pos, SnapshotInfo, WalSegmentInfo};

/// Size and time of a stored object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ObjectMeta {
    /// Stored byte count.
    pub size: u64,
    /// When the store last wrote it (file mtime, object last-modified).
    pub modified: DateTime<Utc>,
}

/// How an object is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PutOptions {
    /// The object's time, kept as the store can (see [`KeyStore::put_opts`]).
    pub time: Option<DateTime<Utc>>,
}

/// The metadata key under which object stores keep [`PutOptions::time`]
/// (as Litestream 0.5 does).
pub const TIME_METADATA_KEY: &str = "litestream-timestamp";

/// The same key on Azure, whose metadata names must be C# identifiers (no
/// hyphen): Litestream 0.5's `abs` client uses this one.
pub const AZURE_TIME_METADATA_KEY: &str = "litestreamtimestamp";

/// Bytes `range` of a stream (see [`KeyStore::get_range`]).
pub fn slice_stream(stream: ByteStream, range: Range<u64>) -> ByteStream {
    let mut at = 0u64;
    stream
        .try_filter_map(move |chunk| {
            let start = at;
            at += chunk.len() as u64;
            let from = range.start.max(start);
            let to = range.end.min(at);
            futures::future::ready(Ok(
                (from < to).then(|| chunk.slice((from - start) as usize..(to - start) as usize))
            ))
        })
        .boxed()
}

/// One level of a directory: the names of its child directories and objects.
#[derive(Debug, Clone, Default)]
pub struct Listing {
    /// Names (last key part) of child directories (common prefixes).
    pub dirs: Vec<String>,
    /// Names (last key part) and metadata of the objects directly inside.
    pub objects: Vec<(String, ObjectMeta)>,
}

/// Bytes under `/`-separated keys: all a backend has to provide.
///
/// Keys and directories are relative to the store's root (a directory, a
/// bucket prefix), never empty (except the directory given to
/// [`list`](KeyStore::list), where `""` is the root itself), never start
/// with `/` and never hold `.` or `..` parts: [`StoreClient`] only builds
/// them from validated names.
#[async_trait]
pub trait KeyStore: Send + Sync + fmt::Debug + 'static {
    /// A short static name of the backend: `file`, `memory`, `s3`, ...
    fn kind(&self) -> &'static str;

    /// Stores `data` under `key`, replacing what is there atomically: a reader
    /// sees the old object or the whole new one, and a failed input stream
    /// leaves nothing new under `key`. With [`PutOptions::time`] set, the
    /// object carries that time: a file's mtime, an object's
    /// `litestream-timestamp` metadata (RFC 3339, milliseconds), as
    /// Litestream 0.5 keeps LTX file times.
    async fn put_opts(
        &self,
        key: &str,
        data: ByteStream,
        options: &PutOptions,
    ) -> Result<ObjectMeta>;

    /// Whether a listing's times are the times objects carry (a file's
    /// mtime is both). `false` for stores that keep [`PutOptions::time`] as
    /// metadata beside a last-modified time they set themselves: there
    /// [`object_time`](KeyStore::object_time) reads the kept time.
    fn times_listed(&self) -> bool {
        true
    }

    /// [`put_opts`](KeyStore::put_opts) without options.
    async fn put(&self, key: &str, data: ByteStream) -> Result<ObjectMeta> {
        self.put_opts(key, data, &PutOptions::default()).await
    }

    /// Streams the object under `key`; a missing one is [`Error::NotFound`]
    /// from the call itself.
    async fn get(&self, key: &str) -> Result<ByteStream>;

    /// Streams bytes `range` of the object under `key`: a range reaching past
    /// the end gives the bytes up to the end, one starting at or past the end
    /// gives none; a missing object is [`Error::NotFound`]. The provided
    /// version reads the object from its start and drops what lies outside;
    /// stores that can read a range natively should.
    async fn get_range(&self, key: &str, range: Range<u64>) -> Result<ByteStream> {
        let whole = self.get(key).await?;
        Ok(slice_stream(whole, range))
    }

    /// The time the object under `key` carries ([`PutOptions::time`], or
    /// when it was written), `None` when the store keeps no time of its
    /// own for objects; a missing object is [`Error::NotFound`]. The
    /// provided version reads it from the listing of the object's directory
    /// (a file's mtime); stores that keep times as metadata read that.
    async fn object_time(&self, key: &str) -> Result<Option<DateTime<Utc>>> {
        let (dir, name) = key.rsplit_once('/').unwrap_or(("", key));
        let listed = self.list(dir).await?;
        listed
            .objects
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, meta)| Some(meta.modified))
            .ok_or_else(|| Error::not_found(key))
    }

    /// Deletes the objects under `keys`; missing ones are `Ok`.
    async fn delete(&self, keys: &[String]) -> Result<()>;

    /// One level of `dir`, in any order; a missing directory (or an object in
    /// its place) lists as empty. Symbolic links are neither. `""` lists the
    /// root: the top-level directories and objects (the LTX layout on S3
    /// finds its levels there).
    async fn list(&self, dir: &str) -> Result<Listing>;

    /// Deletes every object below `dir`; a missing directory is `Ok`.
    async fn delete_all(&self, dir: &str) -> Result<()>;
}

/// A [`ReplicaClient`] over any [`KeyStore`], in one [`Layout`].
///
/// Cheap to clone; clones share the store.
pub struct StoreClient<S> {
    store: Arc<S>,
    layout: Layout,
}

impl<S> Clone for StoreClient<S> {
    fn clone(&self) -> Self {
        StoreClient {
            store: self.store.clone(),
            layout: self.layout,
        }
    }
}

impl<S: KeyStore> fmt::Debug for StoreClient<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StoreClient")
            .field("store", &self.store)
            .field("layout", &self.layout)
            .finish()
    }
}

impl<S: KeyStore + Default> Default for StoreClient<S> {
    fn default() -> Self {
        Self::new(S::default())
    }
}

impl<S: KeyStore> StoreClient<S> {
    /// A client over `store` in the default layout (Litestream 0.4).
    pub fn new(store: S) -> Self {
        Self::with_layout(store, Layout::default())
    }

    /// A client over `store` in `layout`.
    pub fn with_layout(store: S, layout: Layout) -> Self {
        StoreClient {
            store: Arc::new(store),
            layout,
        }
    }

    /// A client over a store already shared, in `layout`.
    pub fn from_shared(store: Arc<S>, layout: Layout) -> Self {
        StoreClient { store, layout }
    }

    /// The same store seen through another layout.
    pub fn in_layout(&self, layout: Layout) -> Self {
        StoreClient {
            store: self.store.clone(),
            layout,
        }
    }

    /// The key store underneath.
    pub fn store(&self) -> &S {
        &self.store
    }

    /// The key store underneath, shared (for wrappers that add behaviour to
    /// the same objects, such as fault injection).
    pub fn shared_store(&self) -> Arc<S> {
        self.store.clone()
    }

    /// The generations of this layout among those `listed` (a listing of
    /// the generations directory).
    async fn generations_in(&self, listed: &Listing) -> Result<Vec<Generation>> {
        // The per-generation checks run 16 at a time: on an object store
        // each is a request, and a replica may hold many generations.
        let candidates: Vec<Generation> = listed
            .dirs
            .iter()
            .filter_map(|d| Generation::new(d).ok())
            .collect();
        let checked: Vec<Option<Generation>> = futures::stream::iter(candidates)
            .map(|g| async move { Ok::<_, Error>(self.holds_objects(&g).await?.then_some(g)) })
            .buffered(16)
            .try_collect()
            .await?;
        let mut found: Vec<Generation> = checked.into_iter().flatten().collect();
        found.sort();
        found.dedup();
        Ok(found)
    }

    /// Whether a generation holds at least one snapshot or segment of this
    /// layout; lists as little as it can (snapshots first, then WAL).
    async fn holds_objects(&self, generation: &Generation) -> Result<bool> {
        let snapshots = self.store.list(&layout::snapshots_dir(generation)).await?;
        if snapshots
            .objects
            .iter()
            .any(|(n, _)| self.layout.parse_snapshot_name(n).is_some())
        {
            return Ok(true);
        }
        let wal = self.store.list(&layout::wal_dir(generation)).await?;
        match self.layout.wal_shape() {
            WalShape::Flat => Ok(wal
                .objects
                .iter()
                .any(|(n, _)| self.layout.parse_segment_name(n).is_some())),
            WalShape::Nested => {
                for index in wal
                    .dirs
                    .iter()
                    .filter_map(|d| self.layout.parse_index_dir_name(d))
                {
                    let Some(dir) = self.layout.wal_index_dir(generation, index)? else {
                        continue;
                    };
                    let found = self.store.list(&dir).await?;
                    if found
                        .objects
                        .iter()
                        .any(|(n, _)| self.layout.parse_segment_name(n).is_some())
                    {
                        return Ok(true);
                    }
                }
                Ok(false)
            }
        }
    }
}

/// The layouts whose objects a store holds (in [`Layout::ALL`] order): what
/// opening a replica without an explicit layout decides from.
pub async fn layouts_present<S: KeyStore>(store: Arc<S>) -> Result<Vec<Layout>> {
    // Both layouts keep generations in one directory: one listing of it.
    let listed = store.list(layout::GENERATIONS_DIR).await?;
    let mut found = Vec::new();
    for layout in Layout::ALL {
        let client = StoreClient {
            store: store.clone(),
            layout,
        };
        if !client.generations_in(&listed).await?.is_empty() {
            found.push(layout);
        }
    }
    Ok(found)
}

impl<S: KeyStore> StoreClient<S> {
    /// Opens `store` in `layout` if given, else in the layout its objects
    /// are in: only one layout's names → that layout; none → `default`;
    /// several → [`Error::InvalidArgument`] naming them and asking for one.
    pub async fn detect(store: S, layout: Option<Layout>, default: Layout) -> Result<Self> {
        if let Some(layout) = layout {
            return Ok(Self::with_layout(store, layout));
        }
        let store = Arc::new(store);
        let found = layouts_present(store.clone()).await?;
        let layout = match found.as_slice() {
            [] => default,
            [one] => *one,
            several => {
                let names: Vec<&str> = several.iter().map(|l| l.name()).collect();
                return Err(Error::invalid(format!(
                    "the replica holds objects of several layouts ({}); choose one with \
                     ?layout={} (or --layout)",
                    names.join(" and "),
                    names.join(" / ?layout=")
                )));
            }
        };
        Ok(StoreClient { store, layout })
    }
}

#[async_trait]
impl<S: KeyStore> ReplicaClient for StoreClient<S> {
    fn kind(&self) -> &'static str {
        self.store.kind()
    }

    fn layout(&self) -> Layout {
        self.layout
    }

    // One listing of `generations/`, then one (or two) per generation: a
    // prefix (or directory) holding only junk must not be listed, so each
    // is checked for a canonical object; replicas hold few generations.
    async fn generations(&self) -> Result<Vec<Generation>> {
        let listed = self.store.list(layout::GENERATIONS_DIR).await?;
        self.generations_in(&listed).await
    }

    async fn delete_generation(&self, generation: &Generation) -> Result<()> {
        self.store
            .delete_all(&layout::generation_dir(generation))
            .await
    }

    async fn snapshots(&self, generation: &Generation) -> Result<Vec<SnapshotInfo>> {
        let listed = self.store.list(&layout::snapshots_dir(generation)).await?;
        let mut found: Vec<SnapshotInfo> = listed
            .objects
            .iter()
            .filter_map(|(name, meta)| {
                let index = self.layout.parse_snapshot_name(name)?;
                Some(SnapshotInfo::new(
                    generation,
                    index,
                    meta.size,
                    meta.modified,
                ))
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
        let key = self.layout.snapshot_key(generation, index)?;
        let meta = self.store.put(&key, data).await?;
        Ok(SnapshotInfo::new(
            generation,
            index,
            meta.size,
            meta.modified,
        ))
    }

    async fn snapshot_reader(&self, generation: &Generation, index: u64) -> Result<ByteStream> {
        self.store
            .get(&self.layout.snapshot_key(generation, index)?)
            .await
    }

    async fn delete_snapshot(&self, generation: &Generation, index: u64) -> Result<()> {
        let key = self.layout.snapshot_key(generation, index)?;
        self.store.delete(&[key]).await
    }

    async fn wal_segments(&self, generation: &Generation) -> Result<WalSegmentCursor> {
        let source = WalSource {
            client: self.clone(),
            generation: generation.clone(),
            flat: Mutex::new(BTreeMap::new()),
        };
        WalSegmentCursor::open(generation.clone(), Arc::new(source)).await
    }

    async fn write_wal_segment(&self, pos: &Pos, data: ByteStream) -> Result<WalSegmentInfo> {
        let key = self.layout.wal_segment_key(pos)?;
        let meta = self.store.put(&key, data).await?;
        Ok(WalSegmentInfo::new(pos, meta.size, meta.modified))
    }

    async fn wal_segment_reader(&self, pos: &Pos) -> Result<ByteStream> {
        self.store.get(&self.layout.wal_segment_key(pos)?).await
    }

    async fn delete_wal_segments(&self, positions: &[Pos]) -> Result<()> {
        let keys = self.layout.wal_segment_keys(positions)?;
        if keys.is_empty() {
            return Ok(());
        }
        self.store.delete(&keys).await
    }

    fn key_store(&self) -> Option<Arc<dyn KeyStore>> {
        Some(self.store.clone())
    }
}

/// The WAL of one generation, listed for the cursor.
///
/// Nested layouts list one index directory at a time. A flat layout keeps
/// every segment in one directory, so the whole directory is listed at once
/// and grouped by index; the groups serve the cursor's later reads, except
/// the newest index, which is listed afresh (a writer may still be adding
/// segments to it).
struct WalSource<S> {
    client: StoreClient<S>,
    generation: Generation,
    flat: Mutex<BTreeMap<u64, Vec<WalSegmentInfo>>>,
}

impl<S: KeyStore> WalSource<S> {
    fn layout(&self) -> Layout {
        self.client.layout
    }

    async fn list_flat(&self) -> Result<BTreeMap<u64, Vec<WalSegmentInfo>>> {
        let listed = self
            .client
            .store
            .list(&layout::wal_dir(&self.generation))
            .await?;
        let mut grouped: BTreeMap<u64, Vec<WalSegmentInfo>> = BTreeMap::new();
        for (name, meta) in &listed.objects {
            if let Some((Some(index), offset)) = self.layout().parse_segment_name(name) {
                grouped.entry(index).or_default().push(WalSegmentInfo {
                    generation: self.generation.clone(),
                    index,
                    offset,
                    size: meta.size,
                    created_at: meta.modified,
                });
            }
        }
        Ok(grouped)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<u64, Vec<WalSegmentInfo>>> {
        self.flat.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[async_trait]
impl<S: KeyStore> WalSegmentSource for WalSource<S> {
    async fn indexes(&self) -> Result<Vec<u64>> {
        match self.layout().wal_shape() {
            WalShape::Nested => {
                let listed = self
                    .client
                    .store
                    .list(&layout::wal_dir(&self.generation))
                    .await?;
                Ok(listed
                    .dirs
                    .iter()
                    .filter_map(|d| self.layout().parse_index_dir_name(d))
                    .collect())
            }
            WalShape::Flat => {
                let grouped = self.list_flat().await?;
                let indexes = grouped.keys().copied().collect();
                *self.lock() = grouped;
                Ok(indexes)
            }
        }
    }

    async fn segments(&self, index: u64) -> Result<Vec<WalSegmentInfo>> {
        let Some(dir) = self.layout().wal_index_dir(&self.generation, index)? else {
            {
                let mut cached = self.lock();
                let newest = cached.keys().next_back().copied();
                if newest.is_some_and(|n| index < n) {
                    return Ok(cached.remove(&index).unwrap_or_default());
                }
            }
            let mut grouped = self.list_flat().await?;
            let found = grouped.remove(&index).unwrap_or_default();
            grouped.retain(|i, _| *i > index);
            *self.lock() = grouped;
            return Ok(found);
        };
        let listed = self.client.store.list(&dir).await?;
        Ok(listed
            .objects
            .iter()
            .filter_map(|(name, meta)| {
                let (_, offset) = self.layout().parse_segment_name(name)?;
                Some(WalSegmentInfo {
                    generation: self.generation.clone(),
                    index,
                    offset,
                    size: meta.size,
                    created_at: meta.modified,
                })
            })
            .collect())
    }
}
