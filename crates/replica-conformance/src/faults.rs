//! Fault injection: a wrapper client that makes I/O fail or stall.
//!
//! [`FaultyClient`] wraps any client and, at the [`FaultPoint`]s chosen and
//! with the given probability (from a seed, so a failing run repeats), makes
//! an operation fail with an [`Error::Io`] or stall first. A failed write
//! fails *inside* the input stream after part of the data went through, which
//! is the hard case for a backend: it must leave nothing under the final name.
//! Use it to check that a backend (or code above one) surfaces typed errors,
//! shows no partial objects, and succeeds on retry.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::stream::{self, StreamExt};
use replica_core::{
    async_trait, ByteStream, Error, Generation, Pos, ReplicaClient, Result, SnapshotInfo,
    WalSegmentCursor, WalSegmentInfo,
};

/// Where faults may be injected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FaultPoint {
    /// Writes: the input stream fails after its first chunk.
    Write,
    /// Reads: opening fails, or the stream fails after its first chunk.
    Read,
    /// Listings of generations, snapshots and WAL segments.
    List,
    /// Deletes (nothing is deleted).
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

/// A client that injects the faults of a [`FaultPlan`] into another.
pub struct FaultyClient {
    inner: Arc<dyn ReplicaClient>,
    plan: FaultPlan,
    rng: Mutex<u64>,
    injected: AtomicU64,
}

impl fmt::Debug for FaultyClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FaultyClient")
            .field("inner", &self.inner)
            .field("plan", &self.plan)
            .finish()
    }
}

fn injected() -> Error {
    Error::io("injected fault", std::io::Error::other("injected fault"))
}

impl FaultyClient {
    /// Wraps `inner` with `plan`.
    pub fn new(inner: Arc<dyn ReplicaClient>, plan: FaultPlan) -> Self {
        let seed = plan.seed | 1;
        FaultyClient {
            inner,
            plan,
            rng: Mutex::new(seed),
            injected: AtomicU64::new(0),
        }
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

    /// The input of a write: when faulted, it fails after the first chunk.
    async fn input(&self, data: ByteStream) -> ByteStream {
        if !self.fault(FaultPoint::Write).await {
            return data;
        }
        data.take(1)
            .chain(stream::once(async { Err(injected()) }))
            .boxed()
    }

    async fn output(&self, result: Result<ByteStream>) -> Result<ByteStream> {
        let data = result?;
        if !self.fault(FaultPoint::Read).await {
            return Ok(data);
        }
        Ok(data
            .take(1)
            .chain(stream::once(async { Err(injected()) }))
            .boxed())
    }

    async fn gate(&self, point: FaultPoint) -> Result<()> {
        if self.fault(point).await {
            Err(injected())
        } else {
            Ok(())
        }
    }
}

#[async_trait]
impl ReplicaClient for FaultyClient {
    fn kind(&self) -> &'static str {
        self.inner.kind()
    }
    fn layout(&self) -> replica_core::Layout {
        self.inner.layout()
    }
    async fn generations(&self) -> Result<Vec<Generation>> {
        self.gate(FaultPoint::List).await?;
        self.inner.generations().await
    }
    async fn delete_generation(&self, generation: &Generation) -> Result<()> {
        self.gate(FaultPoint::Delete).await?;
        self.inner.delete_generation(generation).await
    }
    async fn snapshots(&self, generation: &Generation) -> Result<Vec<SnapshotInfo>> {
        self.gate(FaultPoint::List).await?;
        self.inner.snapshots(generation).await
    }
    async fn write_snapshot(
        &self,
        generation: &Generation,
        index: u64,
        data: ByteStream,
    ) -> Result<SnapshotInfo> {
        let data = self.input(data).await;
        self.inner.write_snapshot(generation, index, data).await
    }
    async fn snapshot_reader(&self, generation: &Generation, index: u64) -> Result<ByteStream> {
        self.output(self.inner.snapshot_reader(generation, index).await)
            .await
    }
    async fn delete_snapshot(&self, generation: &Generation, index: u64) -> Result<()> {
        self.gate(FaultPoint::Delete).await?;
        self.inner.delete_snapshot(generation, index).await
    }
    async fn wal_segments(&self, generation: &Generation) -> Result<WalSegmentCursor> {
        self.gate(FaultPoint::List).await?;
        self.inner.wal_segments(generation).await
    }
    async fn write_wal_segment(&self, pos: &Pos, data: ByteStream) -> Result<WalSegmentInfo> {
        let data = self.input(data).await;
        self.inner.write_wal_segment(pos, data).await
    }
    async fn wal_segment_reader(&self, pos: &Pos) -> Result<ByteStream> {
        self.output(self.inner.wal_segment_reader(pos).await).await
    }
    async fn delete_wal_segments(&self, positions: &[Pos]) -> Result<()> {
        self.gate(FaultPoint::Delete).await?;
        self.inner.delete_wal_segments(positions).await
    }
}
