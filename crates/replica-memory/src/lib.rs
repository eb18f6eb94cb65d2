//! In-memory backend of replica.
//!
//! [`MemoryStore`] is a [`KeyStore`] that keeps every object in a map keyed
//! by its key (`generations/<g>/...`); [`MemoryClient`] is the replica client
//! over it, so it lists exactly as a real store does: from names, skipping
//! anything non-canonical. It is meant for tests and for tools that want a
//! scratch replica; nothing survives the process. Clones share the same
//! objects, and [`MemoryStore::named`] hands out one store per name for the
//! whole process (what `memory://name` opens).

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, OnceLock, RwLock};

use bytes::Bytes;
use chrono::{DateTime, Utc};
use replica_core::{
    async_trait, bytes_stream, collect_bytes, ByteStream, Error, KeyStore, Listing, ObjectMeta,
    PutOptions, Result, StoreClient,
};

/// A replica held in memory, in any layout.
pub type MemoryClient = StoreClient<MemoryStore>;

#[derive(Debug, Clone)]
struct Object {
    data: Bytes,
    modified: DateTime<Utc>,
}

type Objects = RwLock<BTreeMap<String, Object>>;

/// Objects in memory under their keys. Cheap to clone; clones share the objects.
#[derive(Debug, Clone, Default)]
pub struct MemoryStore {
    objects: Arc<Objects>,
}

impl MemoryStore {
    /// A new, empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// The process-wide store called `name`, created empty on first use.
    pub fn named(name: &str) -> Self {
        static REGISTRY: OnceLock<Mutex<HashMap<String, MemoryStore>>> = OnceLock::new();
        let registry = REGISTRY.get_or_init(Default::default);
        let mut registry = registry.lock().unwrap_or_else(|p| p.into_inner());
        registry.entry(name.to_owned()).or_default().clone()
    }

    /// Stores raw bytes under any key, canonical or not. For tests that plant
    /// junk a real store could hold (`README`, temporary names, ...).
    pub fn insert_raw(&self, key: &str, data: impl Into<Bytes>) {
        let object = Object {
            data: data.into(),
            modified: Utc::now(),
        };
        self.write_objects().insert(key.to_owned(), object);
    }

    /// Every stored key, canonical or not, in order.
    pub fn raw_keys(&self) -> Vec<String> {
        self.read_objects().keys().cloned().collect()
    }

    fn read_objects(&self) -> std::sync::RwLockReadGuard<'_, BTreeMap<String, Object>> {
        self.objects.read().unwrap_or_else(|p| p.into_inner())
    }

    fn write_objects(&self) -> std::sync::RwLockWriteGuard<'_, BTreeMap<String, Object>> {
        self.objects.write().unwrap_or_else(|p| p.into_inner())
    }
}

#[async_trait]
impl KeyStore for MemoryStore {
    fn kind(&self) -> &'static str {
        "memory"
    }

    async fn put_opts(
        &self,
        key: &str,
        data: ByteStream,
        options: &PutOptions,
    ) -> Result<ObjectMeta> {
        // Collect first: a failed stream stores nothing.
        let data = collect_bytes(data).await?;
        let object = Object {
            data,
            modified: options.time.unwrap_or_else(Utc::now),
        };
        let meta = ObjectMeta {
            size: object.data.len() as u64,
            modified: object.modified,
        };
        self.write_objects().insert(key.to_owned(), object);
        Ok(meta)
    }

    async fn get(&self, key: &str) -> Result<ByteStream> {
        self.get_range(key, 0..u64::MAX).await
    }

    async fn get_range(&self, key: &str, range: std::ops::Range<u64>) -> Result<ByteStream> {
        let object = self.read_objects().get(key).cloned();
        match object {
            Some(o) => {
                let len = o.data.len() as u64;
                let (start, end) = (
                    range.start.min(len),
                    range.end.min(len).max(range.start.min(len)),
                );
                Ok(bytes_stream(o.data.slice(start as usize..end as usize)))
            }
            None => Err(Error::not_found(key)),
        }
    }

    async fn delete(&self, keys: &[String]) -> Result<()> {
        let mut objects = self.write_objects();
        for key in keys {
            objects.remove(key);
        }
        Ok(())
    }

    async fn list(&self, dir: &str) -> Result<Listing> {
        let prefix = if dir.is_empty() {
            String::new()
        } else {
            format!("{dir}/")
        };
        let mut listing = Listing::default();
        let objects = self.read_objects();
        for (key, object) in objects
            .range(prefix.clone()..)
            .take_while(|(k, _)| k.starts_with(&prefix))
        {
            let rest = &key[prefix.len()..];
            match rest.split_once('/') {
                Some((child, _)) => {
                    if listing.dirs.last().map(String::as_str) != Some(child) {
                        listing.dirs.push(child.to_owned());
                    }
                }
                None => listing.objects.push((
                    rest.to_owned(),
                    ObjectMeta {
                        size: object.data.len() as u64,
                        modified: object.modified,
                    },
                )),
            }
        }
        Ok(listing)
    }

    async fn delete_all(&self, dir: &str) -> Result<()> {
        let prefix = format!("{dir}/");
        self.write_objects().retain(|k, _| !k.starts_with(&prefix));
        Ok(())
    }
}
