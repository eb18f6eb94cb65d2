//! In-memory backend of replica.
//!
//! [`MemoryClient`] keeps every object in a map keyed by its layout path
//! (`generations/<g>/...`), so it lists exactly as a real store does: from
//! names, skipping anything non-canonical. It is meant for tests and for
//! tools that want a scratch replica; nothing survives the process. Clones
//! share the same store, and [`MemoryClient::named`] hands out one store per
//! name for the whole process (what `memory://name` opens).

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, OnceLock, RwLock};

use bytes::Bytes;
use chrono::{DateTime, Utc};
use replica_core::layout::{self, Entry};
use replica_core::{
    async_trait, bytes_stream, collect_bytes, ByteStream, Error, Generation, Pos, ReplicaClient,
    Result, SnapshotInfo, WalSegmentCursor, WalSegmentInfo, WalSegmentSource,
};

#[derive(Debug, Clone)]
struct Object {
    data: Bytes,
    created_at: DateTime<Utc>,
}

type Objects = RwLock<BTreeMap<String, Object>>;

/// A replica held in memory. Cheap to clone; clones share the same objects.
#[derive(Debug, Clone, Default)]
pub struct MemoryClient {
    objects: Arc<Objects>,
}

impl MemoryClient {
    /// A new, empty replica.
    pub fn new() -> Self {
        Self::default()
    }

    /// The process-wide replica called `name`, created empty on first use.
    pub fn named(name: &str) -> Self {
        static REGISTRY: OnceLock<Mutex<HashMap<String, MemoryClient>>> = OnceLock::new();
        let registry = REGISTRY.get_or_init(Default::default);
        let mut registry = registry.lock().unwrap_or_else(|p| p.into_inner());
        registry.entry(name.to_owned()).or_default().clone()
    }

    /// Stores raw bytes under any path, canonical or not. For tests that plant
    /// junk a real store could hold (`README`, temporary names, ...).
    pub fn insert_raw(&self, path: &str, data: impl Into<Bytes>) {
        let object = Object {
            data: data.into(),
            created_at: Utc::now(),
        };
        self.write_objects().insert(path.to_owned(), object);
    }

    /// Every stored path, canonical or not, in order.
    pub fn raw_paths(&self) -> Vec<String> {
        self.read_objects().keys().cloned().collect()
    }

    fn read_objects(&self) -> std::sync::RwLockReadGuard<'_, BTreeMap<String, Object>> {
        self.objects.read().unwrap_or_else(|p| p.into_inner())
    }

    fn write_objects(&self) -> std::sync::RwLockWriteGuard<'_, BTreeMap<String, Object>> {
        self.objects.write().unwrap_or_else(|p| p.into_inner())
    }

    /// Canonical entries whose path starts with `prefix`, in path order.
    fn entries(&self, prefix: &str) -> Vec<(Entry, u64, DateTime<Utc>)> {
        self.read_objects()
            .range(prefix.to_owned()..)
            .take_while(|(k, _)| k.starts_with(prefix))
            .filter_map(|(k, o)| {
                layout::parse_path(k).map(|e| (e, o.data.len() as u64, o.created_at))
            })
            .collect()
    }

    async fn put(&self, path: String, data: ByteStream) -> Result<(u64, DateTime<Utc>)> {
        // Collect first: a failed stream stores nothing.
        let data = collect_bytes(data).await?;
        let object = Object {
            data,
            created_at: Utc::now(),
        };
        let reply = (object.data.len() as u64, object.created_at);
        self.write_objects().insert(path, object);
        Ok(reply)
    }

    fn get(&self, path: &str) -> Result<ByteStream> {
        let object = self.read_objects().get(path).cloned();
        match object {
            Some(o) => Ok(bytes_stream(o.data)),
            None => Err(Error::not_found(path)),
        }
    }
}

struct Wal {
    client: MemoryClient,
    generation: Generation,
}

#[async_trait]
impl WalSegmentSource for Wal {
    async fn indexes(&self) -> Result<Vec<u64>> {
        let prefix = format!("{}/", layout::wal_dir(&self.generation));
        let mut indexes: Vec<u64> = self
            .client
            .entries(&prefix)
            .into_iter()
            .filter_map(|(e, _, _)| match e {
                Entry::WalSegment(pos) => Some(pos.index),
                Entry::Snapshot { .. } => None,
            })
            .collect();
        indexes.dedup();
        Ok(indexes)
    }

    async fn segments(&self, index: u64) -> Result<Vec<WalSegmentInfo>> {
        let prefix = format!("{}/", layout::wal_index_dir(&self.generation, index)?);
        Ok(self
            .client
            .entries(&prefix)
            .into_iter()
            .filter_map(|(e, size, created_at)| match e {
                Entry::WalSegment(pos) => Some(WalSegmentInfo::new(&pos, size, created_at)),
                Entry::Snapshot { .. } => None,
            })
            .collect())
    }
}

#[async_trait]
impl ReplicaClient for MemoryClient {
    fn kind(&self) -> &'static str {
        "memory"
    }

    async fn generations(&self) -> Result<Vec<Generation>> {
        let mut generations: Vec<Generation> = self
            .entries(&format!("{}/", layout::GENERATIONS_DIR))
            .into_iter()
            .map(|(e, _, _)| match e {
                Entry::Snapshot { generation, .. } => generation,
                Entry::WalSegment(pos) => pos.generation,
            })
            .collect();
        generations.dedup();
        Ok(generations)
    }

    async fn delete_generation(&self, generation: &Generation) -> Result<()> {
        let prefix = format!("{}/", layout::generation_dir(generation));
        self.write_objects().retain(|k, _| !k.starts_with(&prefix));
        Ok(())
    }

    async fn snapshots(&self, generation: &Generation) -> Result<Vec<SnapshotInfo>> {
        let prefix = format!("{}/", layout::snapshots_dir(generation));
        Ok(self
            .entries(&prefix)
            .into_iter()
            .filter_map(|(e, size, created_at)| match e {
                Entry::Snapshot { generation, index } => Some(SnapshotInfo {
                    generation,
                    index,
                    size,
                    created_at,
                }),
                Entry::WalSegment(_) => None,
            })
            .collect())
    }

    async fn write_snapshot(
        &self,
        generation: &Generation,
        index: u64,
        data: ByteStream,
    ) -> Result<SnapshotInfo> {
        let path = layout::snapshot_path(generation, index)?;
        let (size, created_at) = self.put(path, data).await?;
        Ok(SnapshotInfo::new(generation, index, size, created_at))
    }

    async fn snapshot_reader(&self, generation: &Generation, index: u64) -> Result<ByteStream> {
        self.get(&layout::snapshot_path(generation, index)?)
    }

    async fn delete_snapshot(&self, generation: &Generation, index: u64) -> Result<()> {
        let path = layout::snapshot_path(generation, index)?;
        self.write_objects().remove(&path);
        Ok(())
    }

    async fn wal_segments(&self, generation: &Generation) -> Result<WalSegmentCursor> {
        let source = Wal {
            client: self.clone(),
            generation: generation.clone(),
        };
        WalSegmentCursor::open(generation.clone(), Arc::new(source)).await
    }

    async fn write_wal_segment(&self, pos: &Pos, data: ByteStream) -> Result<WalSegmentInfo> {
        let path = layout::wal_segment_path(pos)?;
        let (size, created_at) = self.put(path, data).await?;
        Ok(WalSegmentInfo::new(pos, size, created_at))
    }

    async fn wal_segment_reader(&self, pos: &Pos) -> Result<ByteStream> {
        self.get(&layout::wal_segment_path(pos)?)
    }

    async fn delete_wal_segments(&self, positions: &[Pos]) -> Result<()> {
        let paths = layout::wal_segment_paths(positions)?;
        let mut objects = self.write_objects();
        for path in paths {
            objects.remove(&path);
        }
        Ok(())
    }
}
