//! What a running replication reports about itself: counters the database
//! and replica tasks bump as they work (atomics, never a lock on the hot
//! path), and [`Status`], a point-in-time reading of them for metrics,
//! health checks and `replica status`.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, SystemTime};

use replica_core::{Generation, Pos};

/// A checkpoint mode, as Litestream labels its checkpoint metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CheckpointMode {
    /// A checkpoint that never waits for readers.
    Passive,
    /// A checkpoint that waits for readers so the WAL can restart
    /// (`max-checkpoint-page-count` reached).
    Restart,
}

impl CheckpointMode {
    /// Both modes, in metric order.
    pub const ALL: [CheckpointMode; 2] = [CheckpointMode::Passive, CheckpointMode::Restart];

    /// Litestream's label value: `PASSIVE`, `RESTART`.
    pub fn name(self) -> &'static str {
        match self {
            CheckpointMode::Passive => "PASSIVE",
            CheckpointMode::Restart => "RESTART",
        }
    }
}

/// Counts and time spent of one kind of work.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Work {
    /// Times it ran.
    pub count: u64,
    /// Times it failed.
    pub errors: u64,
    /// Time spent in it.
    pub seconds: f64,
}

#[derive(Default)]
struct WorkCounters {
    count: AtomicU64,
    errors: AtomicU64,
    nanos: AtomicU64,
}

impl WorkCounters {
    fn record(&self, took: Duration, ok: bool) {
        self.count.fetch_add(1, Ordering::Relaxed);
        if !ok {
            self.errors.fetch_add(1, Ordering::Relaxed);
        }
        let nanos = u64::try_from(took.as_nanos()).unwrap_or(u64::MAX);
        self.nanos.fetch_add(nanos, Ordering::Relaxed);
    }

    fn read(&self) -> Work {
        Work {
            count: self.count.load(Ordering::Relaxed),
            errors: self.errors.load(Ordering::Relaxed),
            seconds: self.nanos.load(Ordering::Relaxed) as f64 / 1e9,
        }
    }
}

/// The last error of a task, and since when it has been failing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    /// The error of the last round, as logged.
    pub error: String,
    /// When the rounds began to fail (the first failure in a row).
    pub since: SystemTime,
}

#[derive(Default)]
struct Health {
    last_ok: Option<SystemTime>,
    failing: Option<Failure>,
}

impl Health {
    fn record(&mut self, result: Result<(), String>) {
        let now = SystemTime::now();
        match result {
            Ok(()) => {
                self.last_ok = Some(now);
                self.failing = None;
            }
            Err(error) => {
                let since = self.failing.as_ref().map_or(now, |f| f.since);
                self.failing = Some(Failure { error, since });
            }
        }
    }
}

/// The database task's counters.
#[derive(Default)]
pub(crate) struct DbCounters {
    /// Bytes of WAL taken into the shadow (Litestream's
    /// `litestream_total_wal_bytes`).
    pub(crate) wal_bytes: AtomicU64,
    /// Frames taken into the shadow.
    pub(crate) wal_frames: AtomicU64,
    /// Bytes written into shadow files.
    pub(crate) shadow_bytes: AtomicU64,
    /// Times the database was released when idle.
    pub(crate) releases: AtomicU64,
    /// Times shadow frames were synced to disk (before a WAL restart, when
    /// a replica had not shipped them).
    pub(crate) shadow_syncs: AtomicU64,
    sync: WorkCounters,
    checkpoints: [WorkCounters; 2],
    health: Mutex<Health>,
    /// Since when a released database, woken, waits for descriptors.
    waiting: Mutex<Option<SystemTime>>,
}

impl DbCounters {
    pub(crate) fn copied(&self, bytes: u64, frames: u64) {
        self.wal_bytes.fetch_add(bytes, Ordering::Relaxed);
        self.wal_frames.fetch_add(frames, Ordering::Relaxed);
    }

    pub(crate) fn checkpointed(&self, mode: CheckpointMode, took: Duration, ok: bool) {
        self.checkpoints[mode as usize].record(took, ok);
    }

    /// Marks the start (`Some`) or the end (`None`) of a wait for
    /// descriptors.
    pub(crate) fn waiting(&self, since: Option<SystemTime>) {
        *lock(&self.waiting) = since;
    }

    pub(crate) fn synced(&self, took: Duration, result: Result<(), String>) {
        self.sync.record(took, result.is_ok());
        lock(&self.health).record(result);
    }
}

/// One replica task's counters.
#[derive(Default)]
pub(crate) struct ReplicaCounters {
    /// WAL bytes shipped, uncompressed (Litestream 0.3's
    /// `litestream_replica_wal_bytes`).
    wal_bytes: AtomicU64,
    /// An LTX replica's newest TXID written (0: none, or not LTX).
    txid: AtomicU64,
    sync: WorkCounters,
    health: Mutex<Health>,
    /// The copy time of the newest shadow view this replica had wholly
    /// shipped at the end of a round: every transaction committed before
    /// it is in the replica.
    caught_up: Mutex<Option<SystemTime>>,
}

impl ReplicaCounters {
    pub(crate) fn shipped(&self, bytes: u64) {
        self.wal_bytes.fetch_add(bytes, Ordering::Relaxed);
    }

    pub(crate) fn set_txid(&self, txid: u64) {
        self.txid.store(txid, Ordering::Relaxed);
    }

    pub(crate) fn synced(&self, took: Duration, result: Result<(), String>) {
        self.sync.record(took, result.is_ok());
        lock(&self.health).record(result);
    }

    pub(crate) fn caught_up(&self, through: SystemTime) {
        let mut at = lock(&self.caught_up);
        if at.is_none_or(|t| t < through) {
            *at = Some(through);
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// A reading of one running replication.
#[derive(Debug, Clone)]
pub struct Status {
    /// The generation being written.
    pub generation: Generation,
    /// The shadow WAL's current index and committed length.
    pub shadow: (u64, u64),
    /// The database file's size (Litestream's `litestream_db_size`).
    pub db_size: u64,
    /// The WAL file's size (`litestream_wal_size`).
    pub wal_size: u64,
    /// WAL bytes taken into the shadow: checked and made available to the
    /// replicas (`litestream_total_wal_bytes`).
    pub wal_bytes: u64,
    /// WAL frames taken into the shadow.
    pub wal_frames: u64,
    /// Bytes written into the shadow's files: only what our checkpoint's
    /// WAL restart would have overwritten before every replica shipped it
    /// (until then the replicas read the WAL itself); every frame on a
    /// system without a boot id.
    pub shadow_bytes: u64,
    /// Database rounds (`litestream_sync_count`, `_error_count`, `_seconds`).
    pub sync: Work,
    /// Checkpoints by mode (`litestream_checkpoint_count`, ...).
    pub checkpoints: Vec<(CheckpointMode, Work)>,
    /// When a database round last succeeded.
    pub last_sync: Option<SystemTime>,
    /// When the replication started.
    pub started: SystemTime,
    /// Set while the database rounds fail.
    pub failing: Option<Failure>,
    /// Whether the database is released (idle, its files closed, no
    /// rounds until its WAL changes: see `DbOptions::release_when_idle`).
    pub released: bool,
    /// Times it was released so far.
    pub releases: u64,
    /// Times the shadow WAL was synced to disk: only before our checkpoint
    /// restarts the WAL while a replica has not shipped all it holds, and
    /// at a clean stop (and every round without a boot id).
    pub shadow_syncs: u64,
    /// Set while the released database, woken (its WAL changed, or a
    /// replica asked), waits for file descriptors that the databases awake
    /// hold (see `DbOptions::descriptors`): since when it waits. Its new
    /// transactions wait in its WAL meanwhile.
    pub waiting_for_descriptors: Option<SystemTime>,
    /// Each replica, in configuration order.
    pub replicas: Vec<ReplicaStatus>,
}

/// A reading of one replica.
#[derive(Debug, Clone)]
pub struct ReplicaStatus {
    /// Its name.
    pub name: String,
    /// Its sync interval.
    pub sync_interval: Duration,
    /// The next position it writes (`None` while it positions itself).
    pub pos: Option<Pos>,
    /// WAL bytes shipped, uncompressed.
    pub wal_bytes: u64,
    /// An LTX replica's newest TXID (`None` for other layouts, or before
    /// it has positioned itself).
    pub txid: Option<u64>,
    /// Its rounds.
    pub sync: Work,
    /// When a round last succeeded.
    pub last_sync: Option<SystemTime>,
    /// Set while its rounds fail.
    pub failing: Option<Failure>,
    /// Whether it holds everything the shadow holds now.
    pub caught_up: bool,
    /// How far behind the database it is: zero when caught up, else the
    /// time since the newest moment of which it holds every transaction
    /// (since it started, if it never caught up).
    pub lag: Duration,
}

impl ReplicaCounters {
    pub(crate) fn read(
        &self,
        name: String,
        sync_interval: Duration,
        pos: Option<Pos>,
        at_end: bool,
        at_previous: Option<SystemTime>,
        started: SystemTime,
    ) -> ReplicaStatus {
        let health = lock(&self.health);
        let now = SystemTime::now();
        let since = lock(&self.caught_up)
            .into_iter()
            .chain(at_previous)
            .max()
            .unwrap_or(started);
        ReplicaStatus {
            name,
            sync_interval,
            pos,
            wal_bytes: self.wal_bytes.load(Ordering::Relaxed),
            txid: Some(self.txid.load(Ordering::Relaxed)).filter(|t| *t > 0),
            sync: self.sync.read(),
            last_sync: health.last_ok,
            failing: health.failing.clone(),
            caught_up: at_end,
            lag: if at_end {
                Duration::ZERO
            } else {
                now.duration_since(since).unwrap_or_default()
            },
        }
    }
}

/// What [`DbCounters::read`] gives.
pub(crate) struct DbReading {
    pub(crate) sync: Work,
    pub(crate) checkpoints: Vec<(CheckpointMode, Work)>,
    pub(crate) last_sync: Option<SystemTime>,
    pub(crate) failing: Option<Failure>,
    pub(crate) waiting: Option<SystemTime>,
}

impl DbCounters {
    pub(crate) fn read(&self) -> DbReading {
        let health = lock(&self.health);
        DbReading {
            sync: self.sync.read(),
            checkpoints: CheckpointMode::ALL
                .iter()
                .map(|m| (*m, self.checkpoints[*m as usize].read()))
                .collect(),
            last_sync: health.last_ok,
            failing: health.failing.clone(),
            waiting: *lock(&self.waiting),
        }
    }
}
