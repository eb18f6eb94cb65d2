//! Fault injection at the key store: a wrapper store that makes I/O fail or
//! stall *inside* the backend's operations.
//!
//! [`FaultyStore`] wraps any [`KeyStore`] and, at the [`FaultPoint`]s chosen
//! and with the given probability (from a seed, so a failing run repeats),
//! makes a store operation fail with an [`Error::Io`] or stall first. Faults
//! land where a real backend meets them, below the replica client:
//!
//! - a write's input stream fails after part of the data reached the backend,
//!   which must then leave nothing under the final name;
//! - a read fails when opened, or its stream fails after the first chunk;
//! - a listing fails after the backend listed (the reply is lost);
//! - a delete removes only the first half of its keys and then fails, as a
//!   batch cut by a dropped connection does; a recursive delete happens and
//!   then its reply is lost.
//!
//! [`FaultyStore::client`] puts the injector under an existing client's store,
//! in the client's layout; use the result wherever a client is expected and
//! check that the code above surfaces typed errors, shows no partial objects
//! and succeeds on retry.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::stream::{self, StreamExt};
use replica_core::{
    async_trait, ByteStream, Error, KeyStore, Listing, ObjectMeta, PutOptions, Result, StoreClient,
};

/// Where faults may be injected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FaultPoint {
    /// Writes: the input stream fails after its first chunk.
    Write,
    /// Reads: the stream fails after its first chunk.
    Read,
    /// Listings: the backend lists, then the reply is lost.
    List,
    /// Deletes: the first half of the keys is deleted, then the call fails.
    Delete,
}

/// What to inject, and how often.
#[derive(Debug, Clone)]
pub struct FaultPlan {
    /// Seed of the injection decisions.
    pub seed: u64,
    /// Probability (0.0 ..= 1.0) that an operation at a chosen point fails.
    pub probability: f64,
    /// The points where faults are injected.
    pub points: Vec<FaultPoint>,
    /// A stall before every operation at a chosen point, if any.
    pub stall: Option<Duration>,
}

/// A key store that injects the faults of a [`FaultPlan`] into another.
pub struct FaultyStore {
    inner: Arc<dyn KeyStore>,
    plan: FaultPlan,
    rng: Mutex<u64>,
    injected: AtomicU64,
}

impl fmt::Debug for FaultyStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FaultyStore")
            .field("inner", &self.inner)
            .field("plan", &self.plan)
            .finish()
    }
}

fn injected() -> Error {
    Error::io("injected fault", std::io::Error::other("injected fault"))
}

impl FaultyStore {
    /// Wraps `inner` with `plan`.
    pub fn new(inner: Arc<dyn KeyStore>, plan: FaultPlan) -> Self {
        let seed = plan.seed | 1;
        FaultyStore {
            inner,
            plan,
            rng: Mutex::new(seed),
            injected: AtomicU64::new(0),
        }
    }

    /// A client over `client`'s store, in its layout, with `plan`'s faults
    /// injected below it. Both clients see the same objects.
    pub fn client<S: KeyStore>(client: &StoreClient<S>, plan: FaultPlan) -> StoreClient<Self> {
        use replica_core::ReplicaClient;
        StoreClient::with_layout(Self::new(client.shared_store(), plan), client.layout())
    }

    /// How many faults were injected so far.
    pub fn injected(&self) -> u64 {
        self.injected.load(Ordering::Relaxed)
    }

    /// Decides (and stalls) for one operation at `point`.
    async fn fault(&self, point: FaultPoint) -> bool {
        if !self.plan.points.contains(&point) {
            return false;
        }
        if let Some(stall) = self.plan.stall {
            tokio::time::sleep(stall).await;
        }
        let draw = {
            let mut x = self.rng.lock().unwrap_or_else(|p| p.into_inner());
            *x ^= *x << 13;
            *x ^= *x >> 7;
            *x ^= *x << 17;
            (*x >> 11) as f64 / (1u64 << 53) as f64
        };
        let hit = draw < self.plan.probability;
        if hit {
            self.injected.fetch_add(1, Ordering::Relaxed);
        }
        hit
    }
}

/// `data` cut after its first chunk by an injected error.
fn cut(data: ByteStream) -> ByteStream {
    data.take(1)
        .chain(stream::once(async { Err(injected()) }))
        .boxed()
}

#[async_trait]
impl KeyStore for FaultyStore {
    fn kind(&self) -> &'static str {
        self.inner.kind()
    }

    async fn put_opts(
        &self,
        key: &str,
        data: ByteStream,
        options: &PutOptions,
    ) -> Result<ObjectMeta> {
        let data = if self.fault(FaultPoint::Write).await {
            cut(data)
        } else {
            data
        };
        self.inner.put_opts(key, data, options).await
    }

    async fn get(&self, key: &str) -> Result<ByteStream> {
        self.get_range(key, 0..u64::MAX).await
    }

    async fn object_time(&self, key: &str) -> Result<Option<chrono::DateTime<chrono::Utc>>> {
        self.inner.object_time(key).await
    }

    async fn get_range(&self, key: &str, range: std::ops::Range<u64>) -> Result<ByteStream> {
        let data = self.inner.get_range(key, range).await?;
        Ok(if self.fault(FaultPoint::Read).await {
            cut(data)
        } else {
            data
        })
    }

    async fn delete(&self, keys: &[String]) -> Result<()> {
        if self.fault(FaultPoint::Delete).await {
            self.inner.delete(&keys[..keys.len() / 2]).await?;
            return Err(injected());
        }
        self.inner.delete(keys).await
    }

    async fn list(&self, dir: &str) -> Result<Listing> {
        let listing = self.inner.list(dir).await?;
        if self.fault(FaultPoint::List).await {
            return Err(injected());
        }
        Ok(listing)
    }

    async fn delete_all(&self, dir: &str) -> Result<()> {
        // Done, then the reply is lost: the caller must cope with retrying
        // a delete that already happened.
        self.inner.delete_all(dir).await?;
        if self.fault(FaultPoint::Delete).await {
            return Err(injected());
        }
        Ok(())
    }
}
