//! Live replication of a SQLite database into any number of replicas, as
//! Litestream 0.3 does it, restorable by `litestream restore` and by
//! [`restore`](crate::restore()).
//!
//! [`Replicator::start`] opens the database and runs two kinds of tasks:
//!
//! - the **database task** (every `monitor_interval`) copies newly committed
//!   WAL frames, checked by salt and running checksum, into a *shadow WAL*
//!   on local disk (`.<name>-replica/` beside the database), checkpoints
//!   (PASSIVE at `min_checkpoint_page_count`, waiting for readers at
//!   `max_checkpoint_page_count`, and every `checkpoint_interval`) and
//!   continues in index + 1 after each WAL restart, and starts a new
//!   generation whenever continuity is lost (no state, the WAL restarted or
//!   truncated by another connection, the database file replaced);
//! - one **replica task** per replica ships the shadow's committed bytes as
//!   WAL segments at their (index, offset), writes a snapshot first in every
//!   generation and then every `snapshot_interval`, and enforces retention.
//!   A failing replica retries with backoff and catches up from the shadow
//!   WAL; it never holds back the others, and unshipped WAL waits on disk,
//!   not in memory.
//!
//! [`Replicator::stop`] makes a final sync of the database and of every
//! replica. Progress is logged through `tracing`: "wal shipped" events carry
//! the position and `through`, the time of the WAL copy they contain — every
//! transaction committed before that time is in the replica.

mod budget;
mod db;
mod image;
mod rounds;
mod trim;
pub use image::MAX_IMAGES;
pub use rounds::MAX_ROUNDS;
mod ship;
mod ship_ltx;
mod stats;
mod tail;
mod wake;

pub use budget::{awake_cost, Descriptors, Taken, AWAKE_DESCRIPTORS, DESCRIPTORS_PER_REPLICA};
pub use stats::{CheckpointMode, Failure, ReplicaStatus, Status, Work};

use stats::{DbCounters, ReplicaCounters};

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use futures::FutureExt;
use replica_core::{Generation, Pos, ReplicaClient};
use tokio::sync::{watch, RwLock};
use tokio::task::JoinHandle;
use tracing::{error, info, warn};

/// Settings of the database side (Litestream's `dbs[]` keys).
#[derive(Debug, Clone)]
pub struct DbOptions {
    /// How often the WAL is checked for new frames (`monitor-interval`).
    pub monitor_interval: Duration,
    /// A checkpoint runs at least this often when the WAL holds frames
    /// (`checkpoint-interval`; zero: never by time).
    pub checkpoint_interval: Duration,
    /// WAL pages that trigger a PASSIVE checkpoint (`min-checkpoint-page-count`).
    pub min_checkpoint_page_count: u32,
    /// WAL pages that trigger a checkpoint that waits for readers
    /// (`max-checkpoint-page-count`; zero: never).
    pub max_checkpoint_page_count: u32,
    /// How long to wait for locks held by the application.
    pub busy_timeout: Duration,
    /// Where the shadow WAL and position state live (default
    /// `.<name>-replica` beside the database).
    pub shadow_dir: Option<PathBuf>,
    /// Release the database when idle: once every replica holds the whole
    /// shadow WAL and nothing new has come for this long, the connections
    /// and files are closed (the database then holds one descriptor, its
    /// shadow lock, and almost no memory) until its WAL changes, which a
    /// file-system event (inotify) or, as the safety net, a check every
    /// [`RELEASED_POLL`] (every `monitor_interval` where no event can be
    /// had) notices. A checkpoint by the application while released can
    /// cost a new generation, never a transaction. `None` (the default):
    /// held for the replicator's lifetime.
    ///
    /// Only for a process that hosts no SQLite connection of its own to
    /// the database: closing a descriptor of the database file drops every
    /// POSIX lock the process holds on it.
    pub release_when_idle: Option<Duration>,
    /// A descriptor budget shared by replicators: an awake database holds
    /// [`awake_cost`] of it, and waits for them (at start and to wake),
    /// logging why, instead of failing on the process's descriptor limit.
    pub descriptors: Option<Descriptors>,
}

/// How often a released database checks its WAL when file-system events
/// are to be had (they wake it at once, and a lost event makes the watcher
/// wake every database: this is only the safety net, long enough that ten
/// thousand released databases cost almost nothing).
pub const RELEASED_POLL: Duration = Duration::from_secs(60);

impl Default for DbOptions {
    fn default() -> Self {
        DbOptions {
            monitor_interval: Duration::from_secs(1),
            checkpoint_interval: Duration::from_secs(60),
            min_checkpoint_page_count: 1000,
            max_checkpoint_page_count: 10_000,
            busy_timeout: Duration::from_secs(1),
            shadow_dir: None,
            release_when_idle: None,
            descriptors: None,
        }
    }
}

/// Settings of one replica (Litestream's `replicas[]` keys).
#[derive(Debug, Clone)]
pub struct ReplicaOptions {
    /// A name for logs.
    pub name: String,
    /// At most one upload round this often (`sync-interval`).
    pub sync_interval: Duration,
    /// A new snapshot this often, if set (`snapshot-interval`).
    pub snapshot_interval: Option<Duration>,
    /// Snapshots and WAL older than this are deleted, except the newest
    /// snapshot and everything after it (`retention`; zero keeps everything).
    pub retention: Duration,
    /// How often retention is enforced (`retention-check-interval`).
    pub retention_check_interval: Duration,
    /// Nothing a restore that started this long ago could still need is
    /// deleted: a snapshot is removed only once the snapshot after it is
    /// this old (Litestream issues #224, #805), an L0 file only once the L1
    /// file holding it is (#1307).
    pub restore_grace: Duration,
    /// LTX layout: compaction intervals of levels 1, 2, ... (Litestream
    /// 0.5's `levels`; default 30 s, 5 min, 1 h; at most 8).
    pub levels: Vec<Duration>,
    /// LTX layout: an L0 file compacted into L1 is deleted once it is this
    /// old (Litestream 0.5's `l0-retention`, default 5 min) and the restore
    /// grace has passed since its L1 file was written.
    pub l0_retention: Duration,
    /// LTX layout: at most about this many WAL bytes in one L0 file (cut at
    /// a commit frame), so a backlog is shipped in pieces (Litestream 0.5's
    /// `max-sync-wal-bytes`); `None`: one file per sync.
    pub max_sync_wal_bytes: Option<u64>,
}

impl Default for ReplicaOptions {
    fn default() -> Self {
        ReplicaOptions {
            name: "replica".into(),
            sync_interval: Duration::from_secs(1),
            snapshot_interval: None,
            retention: Duration::from_secs(24 * 3600),
            retention_check_interval: Duration::from_secs(3600),
            restore_grace: Duration::from_secs(3600),
            levels: vec![
                Duration::from_secs(30),
                Duration::from_secs(300),
                Duration::from_secs(3600),
            ],
            l0_retention: Duration::from_secs(300),
            max_sync_wal_bytes: None,
        }
    }
}

/// A replica to ship to.
#[derive(Clone)]
pub struct Replica {
    /// Its settings.
    pub options: ReplicaOptions,
    /// Where it is and in which layout.
    pub client: ReplicaTarget,
}

/// A replica's client: generations (Litestream 0.3, 0.4; the layout is the
/// client's) or LTX files in levels (Litestream 0.5).
#[derive(Clone)]
pub enum ReplicaTarget {
    /// Snapshots and WAL segments in generations.
    Generations(Arc<dyn ReplicaClient>),
    /// LTX files in levels.
    Ltx(replica_core::ltx::LtxClient),
}

impl From<Arc<dyn ReplicaClient>> for ReplicaTarget {
    fn from(client: Arc<dyn ReplicaClient>) -> Self {
        ReplicaTarget::Generations(client)
    }
}

impl From<replica_core::ltx::LtxClient> for ReplicaTarget {
    fn from(client: replica_core::ltx::LtxClient) -> Self {
        ReplicaTarget::Ltx(client)
    }
}

/// Why replication cannot start or stopped.
#[derive(Debug, thiserror::Error)]
pub enum ReplicateError {
    /// The database file does not exist.
    #[error("no database at {0}: replicate an existing SQLite database")]
    NoDatabase(PathBuf),
    /// The database cannot use WAL mode.
    #[error("{0} cannot be put in WAL mode (journal_mode is {1}); replication needs WAL")]
    NotWal(PathBuf, String),
    /// A local file operation failed.
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// SQLite refused something.
    #[error("{context}: {source}")]
    Sqlite {
        /// What was being done.
        context: &'static str,
        /// The cause.
        #[source]
        source: rusqlite::Error,
    },
    /// Another replicator holds the shadow directory.
    #[error("another replicator is running for this database (it holds {0}/lock); stop it first")]
    Busy(PathBuf),
    /// Replicas failed their final sync.
    #[error("the final sync failed for {0}")]
    FinalSync(String),
}

/// What the replicas see of the shadow WAL.
#[derive(Debug, Clone)]
pub(crate) struct ShadowView {
    generation: Generation,
    dir: PathBuf,
    first_index: u64,
    index: u64,
    len: u64,
    copied_at: SystemTime,
    /// The database file, while the database is awake (a snapshot needs
    /// it: see [`snapshot_gate`]).
    db_file: Option<Arc<std::fs::File>>,
    /// Whether the database is released (idle, its files closed).
    released: bool,
    /// The index the last WAL restart closed, with its length.
    closed: Option<(u64, u64)>,
    /// Where the current index's bytes are read from.
    tail: Arc<tail::Tail>,
    /// When the replicas were last woken by a view (a quiet publish keeps
    /// the time of the view before it): a replica's sync interval counts
    /// from the one it ships, so its rounds follow the database's.
    announced: std::time::Instant,
}

/// State shared between the tasks.
pub(crate) struct Shared {
    positions: Mutex<Vec<Option<Pos>>>,
    diverged: AtomicBool,
    /// Notified when a replica's position moves to another index (or
    /// moves at all while `closed_kept`).
    moved: tokio::sync::Notify,
    /// Set while the index a WAL restart closed is still on disk: a
    /// replica reaching its end lets it go (see `Db::closed`).
    closed_kept: AtomicBool,
    /// The database task's counters.
    db: Arc<DbCounters>,
    /// Each replica task's counters, by slot.
    replicas: Vec<ReplicaCounters>,
    /// The shadow's end before it last moved, and its last copy time.
    previous: Mutex<Option<(Pos, SystemTime)>>,
    /// Notified by a replica that needs the database awake (a snapshot, a
    /// new generation).
    wake: tokio::sync::Notify,
    /// Notified whenever a replica's position moves.
    shipped: tokio::sync::Notify,
    /// Set while a view published quietly has not been announced.
    quiet: AtomicBool,
}

impl Shared {
    /// The state of a database task (its counters `db`) and `replicas`
    /// replica tasks, before any round.
    fn new(replicas: usize, db: Arc<DbCounters>) -> Shared {
        Shared {
            positions: Mutex::new(vec![None; replicas]),
            diverged: AtomicBool::new(false),
            moved: tokio::sync::Notify::new(),
            closed_kept: AtomicBool::new(false),
            db,
            replicas: (0..replicas).map(|_| ReplicaCounters::default()).collect(),
            previous: Mutex::new(None),
            wake: tokio::sync::Notify::new(),
            shipped: tokio::sync::Notify::new(),
            quiet: AtomicBool::new(false),
        }
    }
}

/// A running replication of one database.
pub struct Replicator {
    stop_db: watch::Sender<bool>,
    stop_replicas: watch::Sender<bool>,
    db_task: Option<JoinHandle<()>>,
    replica_tasks: Vec<(String, JoinHandle<replica_core::Result<()>>)>,
    views: watch::Receiver<ShadowView>,
    shared: Arc<Shared>,
    monitor: Monitor,
}

/// Reads a running replication's [`Status`] from anywhere (cheap to clone).
/// It shares the replicator's last shadow view, which keeps the database
/// file open: drop it once the replication has stopped.
#[derive(Clone)]
pub struct Monitor {
    views: watch::Receiver<ShadowView>,
    shared: Arc<Shared>,
    /// The database and WAL files, for their sizes.
    files: Arc<(PathBuf, PathBuf)>,
    /// Each replica's name and sync interval, by slot.
    replica_settings: Arc<Vec<(String, Duration)>>,
    started: SystemTime,
}

impl std::fmt::Debug for Monitor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Monitor")
            .field("db", &self.files.0)
            .finish_non_exhaustive()
    }
}

impl std::fmt::Debug for Replicator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Replicator").finish_non_exhaustive()
    }
}

impl Replicator {
    /// Opens `path` and starts replicating it into `replicas`.
    pub async fn start(
        path: &Path,
        options: DbOptions,
        replicas: Vec<Replica>,
    ) -> Result<Replicator, ReplicateError> {
        let path = path.to_owned();
        let settings = LoopSettings {
            monitor: options.monitor_interval,
            release: options.release_when_idle,
            descriptors: options.descriptors.clone(),
            cost: awake_cost(replicas.len()),
            watch: None,
        };
        let permit = match &settings.descriptors {
            Some(budget) => Some(budget.take(settings.cost, &path).await),
            None => None,
        };
        let db = rounds::run(move || db::Db::open(&path, options, permit))
            .await
            .expect("opening the database does not panic")?;
        let (view_tx, views) = watch::channel(db.view());
        let gate = Arc::new(RwLock::new(()));
        let shared = Arc::new(Shared::new(replicas.len(), db.counters.clone()));
        let files = (db.path().to_owned(), db.wal_path().to_owned());
        let replica_settings = replicas
            .iter()
            .map(|r| (r.options.name.clone(), r.options.sync_interval))
            .collect();
        let (stop_db, stop_db_rx) = watch::channel(false);
        let (stop_replicas, stop_replicas_rx) = watch::channel(false);
        let settings = LoopSettings {
            watch: settings.release.map(|_| db.wal_path().to_owned()),
            ..settings
        };
        let db = Arc::new(Mutex::new(db));
        let db_task = tokio::spawn(db_loop(
            db.clone(),
            settings,
            view_tx,
            gate.clone(),
            shared.clone(),
            stop_db_rx,
        ));
        let replica_tasks = replicas
            .into_iter()
            .enumerate()
            .map(|(slot, replica)| {
                let name = replica.options.name.clone();
                let stop = stop_replicas_rx.clone();
                let task = match replica.client {
                    ReplicaTarget::Generations(client) => tokio::spawn(keep_open(
                        db.clone(),
                        ship::run(
                            ship::Shipper::new(
                                slot,
                                replica.options,
                                client,
                                views.clone(),
                                gate.clone(),
                                shared.clone(),
                            ),
                            stop,
                        ),
                    )),
                    ReplicaTarget::Ltx(client) => tokio::spawn(keep_open(
                        db.clone(),
                        ship::run(
                            ship_ltx::LtxShipper::new(
                                slot,
                                replica.options,
                                client,
                                views.clone(),
                                gate.clone(),
                                shared.clone(),
                            ),
                            stop,
                        ),
                    )),
                };
                (name, task)
            })
            .collect();
        Ok(Replicator {
            stop_db,
            stop_replicas,
            db_task: Some(db_task),
            replica_tasks,
            monitor: Monitor {
                views: views.clone(),
                shared: shared.clone(),
                files: Arc::new(files),
                replica_settings: Arc::new(replica_settings),
                started: SystemTime::now(),
            },
            views,
            shared,
        })
    }

    /// A reading of what the replication has done and where it stands.
    pub fn status(&self) -> Status {
        self.monitor.status()
    }

    /// A handle that reads [`Status`] while the replicator runs elsewhere.
    pub fn monitor(&self) -> Monitor {
        self.monitor.clone()
    }

    /// The generation being written.
    pub fn generation(&self) -> Generation {
        self.views.borrow().generation.clone()
    }

    /// Each replica's next position to write (`None` while it positions).
    pub fn positions(&self) -> Vec<Option<Pos>> {
        self.shared
            .positions
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Stops: one last copy of the WAL, then every replica ships it.
    pub async fn stop(mut self) -> Result<(), ReplicateError> {
        let _ = self.stop_db.send(true);
        let db_task = match self.db_task.take() {
            Some(task) => task.await,
            None => Ok(()),
        };
        let _ = self.stop_replicas.send(true);
        let mut failed = Vec::new();
        if let Err(e) = db_task {
            error!(error = %e, "the database task failed");
            failed.push("the database task".to_owned());
        }
        for (name, task) in std::mem::take(&mut self.replica_tasks) {
            match task.await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => {
                    error!(replica = %name, error = %e, "final sync failed");
                    failed.push(name);
                }
                Err(e) => {
                    error!(replica = %name, error = %e, "replica task failed");
                    failed.push(name);
                }
            }
        }
        if failed.is_empty() {
            info!("stopped after a final sync");
            Ok(())
        } else {
            Err(ReplicateError::FinalSync(failed.join(", ")))
        }
    }
}

impl Monitor {
    /// A reading of what the replication has done and where it stands.
    pub fn status(&self) -> Status {
        let view = self.views.borrow().clone();
        let size = |p: &Path| std::fs::metadata(p).map_or(0, |m| m.len());
        let positions = self
            .shared
            .positions
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        let previous = self
            .shared
            .previous
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        let replicas = self
            .replica_settings
            .iter()
            .zip(&self.shared.replicas)
            .zip(positions)
            .map(|(((name, interval), counters), pos)| {
                let at_end = pos.as_ref().is_some_and(|p| at_view_end(&view, p));
                // At the end the shadow had before it last moved: caught up
                // as of that end's last copy.
                let at_previous = previous
                    .as_ref()
                    .filter(|(end, _)| pos.as_ref() == Some(end))
                    .map(|(_, at)| *at);
                counters.read(
                    name.clone(),
                    *interval,
                    pos,
                    at_end,
                    at_previous,
                    self.started,
                )
            })
            .collect();
        let stats::DbReading {
            sync,
            checkpoints,
            last_sync,
            failing,
            waiting,
        } = self.shared.db.read();
        Status {
            generation: view.generation.clone(),
            shadow: (view.index, view.len),
            db_size: size(&self.files.0),
            wal_size: size(&self.files.1),
            wal_bytes: self.shared.db.wal_bytes.load(Ordering::Relaxed),
            wal_frames: self.shared.db.wal_frames.load(Ordering::Relaxed),
            sync,
            checkpoints,
            last_sync,
            started: self.started,
            failing,
            released: view.released,
            releases: self.shared.db.releases.load(Ordering::Relaxed),
            shadow_syncs: self.shared.db.shadow_syncs.load(Ordering::Relaxed),
            shadow_bytes: self.shared.db.shadow_bytes.load(Ordering::Relaxed),
            waiting_for_descriptors: waiting,
            replicas,
        }
    }
}

/// Wakes the replicas only when there is something new for them; a round
/// that copied nothing refreshes the copy time silently.
///
/// When the end moves, the old end and its last copy time are kept in
/// `shared.previous`: a replica still there held every transaction
/// committed before that time (its lag starts then, not at its last round).
fn publish(views: &watch::Sender<ShadowView>, shared: &Shared, view: ShadowView) {
    publish_with(views, shared, view, true);
}

/// Publishes `view` without waking the replicas: they ship it with the
/// next view published (a round's), in the same round of theirs.
fn publish_quietly(views: &watch::Sender<ShadowView>, shared: &Shared, view: ShadowView) {
    publish_with(views, shared, view, false);
}

fn publish_with(
    views: &watch::Sender<ShadowView>,
    shared: &Shared,
    view: ShadowView,
    notify: bool,
) {
    // A view published quietly wakes the replicas with the next one
    // published aloud, even if that one is the same.
    let quiet = if notify {
        shared.quiet.swap(false, Ordering::SeqCst)
    } else {
        shared.quiet.store(true, Ordering::SeqCst);
        false
    };
    views.send_if_modified(|current| {
        let moved = current.generation != view.generation
            || current.index != view.index
            || current.len != view.len;
        let new = moved
            || current.first_index != view.first_index
            || current.db_file.is_some() != view.db_file.is_some()
            || current.released != view.released
            || current.closed != view.closed;
        if moved {
            *shared.previous.lock().unwrap_or_else(|p| p.into_inner()) = Some((
                Pos {
                    generation: current.generation.clone(),
                    index: current.index,
                    offset: current.len,
                },
                current.copied_at,
            ));
        }
        let wake = (new && notify) || quiet;
        let announced = if wake {
            std::time::Instant::now()
        } else {
            current.announced
        };
        *current = ShadowView { announced, ..view };
        wake
    });
}

impl Drop for Replicator {
    /// Dropped without [`Replicator::stop`]: the tasks are told to stop
    /// (each makes its final sync in the background while the runtime lives).
    fn drop(&mut self) {
        let _ = self.stop_db.send(true);
        let _ = self.stop_replicas.send(true);
    }
}

/// Runs a replica task, keeping the database open (its read transaction
/// keeps the WAL the replica reads from unchanged) until the task's final
/// sync is over: the database task stops first.
async fn keep_open<T>(db: Arc<Mutex<db::Db>>, task: impl std::future::Future<Output = T>) -> T {
    let out = task.await;
    drop(db);
    out
}

/// How the database task runs.
struct LoopSettings {
    monitor: Duration,
    release: Option<Duration>,
    descriptors: Option<Descriptors>,
    /// What an awake database takes from the budget.
    cost: u32,
    /// The WAL whose file-system events wake the database while released
    /// (watched only then: every write of an awake database would cost the
    /// watcher thread an event).
    watch: Option<PathBuf>,
}

/// The gate that holds off checkpoints and new generations while a
/// snapshot reads the database, taken once the database is awake (a
/// released one is asked to wake), with the view it is awake in and its
/// database file.
pub(crate) async fn snapshot_gate(
    gate: &Arc<RwLock<()>>,
    views: &watch::Receiver<ShadowView>,
    shared: &Shared,
) -> replica_core::Result<(
    tokio::sync::OwnedRwLockReadGuard<()>,
    ShadowView,
    Arc<std::fs::File>,
)> {
    // A receiver of our own: the caller's notion of what is new stays.
    let mut views = views.clone();
    loop {
        if views.borrow_and_update().db_file.is_none() {
            shared.wake.notify_one();
            if views.changed().await.is_err() {
                return Err(replica_core::Error::io(
                    "reading the database for a snapshot",
                    std::io::Error::other("the database task has stopped"),
                ));
            }
            continue;
        }
        // A release needs the gate: once it is held, an awake view stays so.
        let held = gate.clone().read_owned().await;
        let view = views.borrow_and_update().clone();
        if let Some(file) = view.db_file.clone() {
            return Ok((held, view, file));
        }
    }
}

async fn db_loop(
    db: Arc<Mutex<db::Db>>,
    settings: LoopSettings,
    views: watch::Sender<ShadowView>,
    gate: Arc<RwLock<()>>,
    shared: Arc<Shared>,
    mut stop: watch::Receiver<bool>,
) {
    let monitor = settings.monitor;
    let lock = |db: &Mutex<db::Db>| {
        let db = db.lock().unwrap_or_else(|p| p.into_inner());
        (
            db.is_released(),
            db.is_released() && db.changed_since_release(),
        )
    };
    let mut failures = 0u32;
    let mut idle_checkpointed = false;
    // A checkpoint put off until the replicas have shipped what the round
    // copied (see below).
    let mut deferred = false;
    // Registered once released (a write after the release's probe changes
    // the WAL's metadata; one after this registration is an event too).
    let mut watch: Option<wake::Registration> = None;
    // When the pause after the last round was to end.
    let mut scheduled: Option<tokio::time::Instant> = None;
    loop {
        let last = *stop.borrow();
        let (released, changed) = lock(&db);
        let mut waking = None;
        if released {
            if !changed {
                if last {
                    // Nothing came since everything was shipped.
                    return;
                }
                if watch.is_none() {
                    watch = settings.watch.as_deref().and_then(wake::Registration::new);
                    // Written between the release and the registration?
                    if lock(&db).1 {
                        continue;
                    }
                }
                let poll = match watch {
                    Some(_) => RELEASED_POLL.max(monitor),
                    None => monitor,
                };
                let mut asked = false;
                tokio::select! {
                    _ = async { watch.as_ref().expect("set").changed().await }, if watch.is_some() => {}
                    _ = shared.wake.notified() => asked = true,
                    _ = tokio::time::sleep(poll) => {}
                    _ = stop.changed() => {}
                    _ = shared.moved.notified() => prune_now(&db, &shared, &views).await,
                }
                if !asked {
                    continue;
                }
            }
            let permit = match &settings.descriptors {
                Some(budget) => Some(match budget.try_take(settings.cost) {
                    Some(taken) => taken,
                    None => {
                        shared.db.waiting(Some(SystemTime::now()));
                        let taken = budget.take(settings.cost, &shared_path(&db)).await;
                        shared.db.waiting(None);
                        taken
                    }
                }),
                None => None,
            };
            waking = Some((permit, gate.clone().write_owned().await));
            // Awake, its own rounds see every write.
            watch = None;
        }
        let started = std::time::Instant::now();
        let tick = tick_of(scheduled.take(), tokio::time::Instant::now(), monitor);
        let round = {
            let db = db.clone();
            let views = views.clone();
            let gate = gate.clone();
            let shared = shared.clone();
            let release = settings.release.filter(|_| !last);
            // Others wait for descriptors: release as soon as quiet.
            let release = match &settings.descriptors {
                Some(budget) if budget.contended() => release.map(|_| Duration::ZERO),
                _ => release,
            };
            rounds::run(move || {
                let mut db = db.lock().unwrap_or_else(|p| p.into_inner());
                // A snapshot being read holds the gate: then no checkpoint
                // and no new generation (they wait for the next round). A
                // database waking holds it already.
                let (permit, held) = match waking {
                    Some((permit, held)) => (permit, Some(held)),
                    None => (None, gate.try_write_owned().ok()),
                };
                let free = held.is_some();
                if let Err(e) = db.wake(permit) {
                    return (Err(e), idle_checkpointed, false);
                }
                let diverged = shared.diverged.swap(false, Ordering::SeqCst);
                // Replicas see new frames before any checkpoint runs.
                if diverged && !free {
                    shared.diverged.store(true, Ordering::SeqCst);
                }
                let mut result = db.sync(diverged, free);
                let hooks = db::Hooks {
                    unshipped_from: &|g, i, len| unshipped_from(&shared, g, i, len),
                    publish: &|view| publish(&views, &shared, view),
                };
                let checkpoint = result.is_ok() && free && db.checkpoint_due();
                // The restart overwrites the WAL the replicas read from:
                // what they have not shipped is copied into the shadow
                // first. So a checkpoint is put off (once) until they have
                // shipped what this round copied; between rounds, as soon
                // as they have, it copies only what came meanwhile.
                let defer = checkpoint && !deferred && !last && !all_at_end(&shared, &db.view());
                if defer {
                    publish(&views, &shared, db.view());
                } else if checkpoint {
                    // It publishes the index it closes just before the
                    // restart (all of it: one upload). The index the restart
                    // starts (our one write) is published by the next round
                    // with what that copies: one upload, and the replicas
                    // stay in step with the rounds.
                    let before = db.view();
                    result = db.checkpoint(hooks);
                    let view = db.view();
                    // Restarted here: the hook published the closed index.
                    // Anything else (skipped, busy, failed, a new
                    // generation) publishes what the round holds now.
                    let restarted =
                        view.generation == before.generation && view.index == before.index + 1;
                    if last || !restarted {
                        publish(&views, &shared, view);
                    } else {
                        // Seen by a snapshot (the closed index may have a
                        // hole), shipped with the next round's view.
                        publish_quietly(&views, &shared, view);
                    }
                } else {
                    publish(&views, &shared, db.view());
                }
                let mut idle_checkpointed = idle_checkpointed;
                if let Some(after) = release {
                    let idle = db.quiet_for() >= after;
                    if !idle {
                        idle_checkpointed = false;
                    } else if result.is_ok()
                        && free
                        && !checkpoint
                        && !shared.diverged.load(Ordering::SeqCst)
                        && all_at_end(&shared, &db.view())
                    {
                        if db.wal_holds_frames() && !idle_checkpointed {
                            // Once per idle spell: a WAL holding only our
                            // write is not restarted by the next writer.
                            idle_checkpointed = true;
                            result = db.checkpoint(hooks);
                            publish(&views, &shared, db.view());
                        } else {
                            db.begin_release();
                            publish(&views, &shared, db.view());
                            db.release();
                            publish(&views, &shared, db.view());
                        }
                    }
                }
                drop(held);
                prune(&mut db, &shared, &views);
                (result, idle_checkpointed, defer)
            })
            .await
            .expect("a sync does not panic")
        };
        let (round, checkpointed, defer) = round;
        idle_checkpointed = checkpointed;
        deferred = defer;
        shared.db.synced(
            started.elapsed(),
            round.as_ref().map(|_| ()).map_err(|e| e.to_string()),
        );
        match round {
            Ok(()) => failures = 0,
            Err(e) => {
                failures += 1;
                error!(error = %e, failures, "database sync failed; retrying");
            }
        }
        if last {
            return;
        }
        if lock(&db).0 {
            // Released: what was asked or seen while awake is stale.
            // (The WAL is watched from the next pass on, afresh.)
            let _ = shared.wake.notified().now_or_never();
            continue;
        }
        // A tick every monitor interval, on a grid (as Litestream's
        // ticker): neither a long round (a large copy, a checkpoint) nor a
        // timer firing late stretches a long interval (counted from each
        // round's start, rounds at 1 s came every 1.002 s, which the
        // shipping lag showed). Short intervals keep a full pause between
        // rounds (measured: back-to-back rounds at 10 ms cost the other
        // tasks their CPU and raised the shipping lag by half).
        let next = if monitor >= Duration::from_millis(100) {
            tick + monitor
        } else {
            tokio::time::Instant::now() + monitor
        };
        scheduled = Some(next);
        loop {
            tokio::select! {
                _ = tokio::time::sleep_until(next) => break,
                _ = stop.changed() => break,
                // Between rounds, shadow files the replicas have passed go.
                _ = shared.moved.notified() => prune_now(&db, &shared, &views).await,
                // Else the next round checkpoints, whatever they shipped.
                _ = shared.shipped.notified(), if deferred => {
                    deferred = !checkpoint_now(&db, &gate, &shared, &views).await;
                }
            }
        }
    }
}

/// The tick a round starting `now` is for, when the pause before it was to
/// end at `scheduled`: that, unless the round began a whole interval later
/// (after idling, or a round that long), then `now`. Timers fire late by a
/// millisecond or so: counting the next pause from the tick keeps rounds
/// on their grid.
fn tick_of(
    scheduled: Option<tokio::time::Instant>,
    now: tokio::time::Instant,
    monitor: Duration,
) -> tokio::time::Instant {
    scheduled.filter(|at| now < *at + monitor).unwrap_or(now)
}

/// The checkpoint a round put off, if every replica is at the end of what
/// was published and no snapshot holds the gate; returns whether it ran.
async fn checkpoint_now(
    db: &Arc<Mutex<db::Db>>,
    gate: &Arc<RwLock<()>>,
    shared: &Arc<Shared>,
    views: &watch::Sender<ShadowView>,
) -> bool {
    let (db, gate, shared, views) = (db.clone(), gate.clone(), shared.clone(), views.clone());
    rounds::run(move || {
        let mut db = db.lock().unwrap_or_else(|p| p.into_inner());
        if db.is_released() || !all_at_end(&shared, &db.view()) {
            return false;
        }
        let Ok(held) = gate.try_write_owned() else {
            return false;
        };
        // What came since the round is published quietly: woken by it,
        // a replica would ship it alone and then miss the next round's
        // view by a sync interval (so the checkpoint after that could not
        // find it caught up).
        let hooks = db::Hooks {
            unshipped_from: &|g, i, len| unshipped_from(&shared, g, i, len),
            publish: &|view| publish_quietly(&views, &shared, view),
        };
        let before = db.view();
        if let Err(e) = db.checkpoint(hooks) {
            warn!(error = %e, "checkpoint failed; the next round retries");
        }
        let view = db.view();
        if view.generation == before.generation && view.index == before.index + 1 {
            // Restarted: the hook published the closed index; the new one
            // is seen by a snapshot and shipped with the next round's view.
            publish_quietly(&views, &shared, view);
        } else {
            // Not restarted (busy, failed, a new generation): what the
            // hook published quietly, or anything new, wakes the replicas.
            publish(&views, &shared, view);
        }
        drop(held);
        prune(&mut db, &shared, &views);
        true
    })
    .await
    .unwrap_or(false)
}

/// Prunes on a blocking thread.
async fn prune_now(
    db: &Arc<Mutex<db::Db>>,
    shared: &Arc<Shared>,
    views: &watch::Sender<ShadowView>,
) {
    let (db, shared, views) = (db.clone(), shared.clone(), views.clone());
    let _ = rounds::run(move || {
        let mut db = db.lock().unwrap_or_else(|p| p.into_inner());
        prune(&mut db, &shared, &views);
    })
    .await;
}

fn shared_path(db: &Mutex<db::Db>) -> PathBuf {
    db.lock()
        .unwrap_or_else(|p| p.into_inner())
        .path()
        .to_owned()
}

/// Whether every replica stands at the end of `view`.
fn all_at_end(shared: &Shared, view: &ShadowView) -> bool {
    shared
        .positions
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .iter()
        .all(|p| p.as_ref().is_some_and(|p| at_view_end(view, p)))
}

/// The lowest offset of index `index` of `generation` (committed up to
/// `len`) that some replica has not shipped: 0 for one without a position
/// in it yet, `len` when every replica is past it.
fn unshipped_from(shared: &Shared, generation: &Generation, index: u64, len: u64) -> u64 {
    shared
        .positions
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .iter()
        .map(|p| match p {
            Some(p) if p.generation == *generation && p.index > index => len,
            Some(p) if p.generation == *generation && p.index == index => p.offset.min(len),
            _ => 0,
        })
        .min()
        .unwrap_or(len)
}

/// Whether `pos` is the end of what `view` holds.
pub(crate) fn at_view_end(view: &ShadowView, pos: &Pos) -> bool {
    pos.generation == view.generation && pos.index == view.index && pos.offset == view.len
}

/// Deletes the shadow index files below every replica's position.
fn prune(db: &mut db::Db, shared: &Shared, views: &watch::Sender<ShadowView>) {
    let generation = db.view().generation;
    // A replica at the end of the index a restart closed has passed it,
    // before it sees the next one published.
    let closed = db.closed();
    let keep = shared
        .positions
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .iter()
        .map(|p| {
            p.as_ref()
                .filter(|p| p.generation == generation)
                .map(|p| match closed {
                    Some((index, len)) if p.index == index && p.offset >= len => index + 1,
                    _ => p.index,
                })
        })
        .collect::<Option<Vec<u64>>>()
        .map(|v| v.into_iter().min().unwrap_or(u64::MAX));
    if let Some(keep) = keep {
        db.prune(keep);
        // The view says so at once, without waking anyone: a replica at the
        // end of an index below the first one has passed it (see
        // `ship::shadow_extent`).
        let first = db.view().first_index;
        views.send_if_modified(|current| {
            if current.generation == generation && current.first_index < first {
                current.first_index = first;
            }
            false
        });
    }
    shared
        .closed_kept
        .store(db.closed_kept(), Ordering::Relaxed);
}

/// Writes a one-off snapshot of the database at `path` into `client`, as a
/// new generation holding that snapshot at index 0 (restorable on its own).
/// The copy is consistent: SQLite writes it (`VACUUM INTO`) into a temporary
/// file beside the database, which is streamed and then removed.
pub async fn snapshot_once(
    path: &Path,
    client: &dyn ReplicaClient,
) -> Result<replica_core::SnapshotInfo, SnapshotError> {
    if !path.is_file() {
        return Err(ReplicateError::NoDatabase(path.to_owned()).into());
    }
    let dir = path.parent().unwrap_or(Path::new("."));
    let temp = tempfile::Builder::new()
        .prefix(".replica-snapshot-")
        .tempdir_in(dir)
        .map_err(|source| ReplicateError::Io {
            context: format!("creating a temporary directory in {}", dir.display()),
            source,
        })?;
    let copy = temp.path().join("snapshot.db");
    let (from, to) = (path.to_owned(), copy.clone());
    tokio::task::spawn_blocking(move || -> Result<(), ReplicateError> {
        let conn = rusqlite::Connection::open_with_flags(
            &from,
            rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
        )
        .map_err(|source| ReplicateError::Sqlite {
            context: "opening the database",
            source,
        })?;
        conn.busy_timeout(Duration::from_secs(5))
            .and_then(|()| conn.execute("VACUUM INTO ?1", [to.to_string_lossy()]))
            .map_err(|source| ReplicateError::Sqlite {
                context: "copying the database (VACUUM INTO)",
                source,
            })?;
        Ok(())
    })
    .await
    .expect("VACUUM INTO does not panic")?;
    let file = tokio::fs::File::open(&copy)
        .await
        .map_err(|source| ReplicateError::Io {
            context: format!("opening {}", copy.display()),
            source,
        })?;
    let data =
        replica_core::lz4::compress_stream(replica_core::client::reader_stream(file, 1 << 20));
    let info = client
        .write_snapshot(&Generation::random(), 0, data)
        .await?;
    info!(generation = %info.generation, bytes = info.size, "snapshot written");
    Ok(info)
}

/// Why a one-off snapshot failed.
#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    /// The database could not be read.
    #[error(transparent)]
    Database(#[from] ReplicateError),
    /// The replica refused the snapshot.
    #[error(transparent)]
    Replica(#[from] replica_core::Error),
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Rounds woken a little late stay on their grid; one a whole interval
    /// late (or the first) starts a new grid.
    #[test]
    fn database_rounds_keep_their_grid() {
        let second = Duration::from_secs(1);
        let t0 = tokio::time::Instant::now();
        let late = Duration::from_millis(2);
        assert_eq!(tick_of(None, t0, second), t0);
        // Ten rounds, each woken 2 ms after its tick: the tenth is for t0 + 10 s.
        let mut tick = t0;
        for _ in 0..10 {
            tick = tick_of(Some(tick + second), tick + second + late, second);
        }
        assert_eq!(tick, t0 + 10 * second);
        // Woken a whole interval late: a new grid from then.
        let now = t0 + 2 * second;
        assert_eq!(tick_of(Some(t0 + second), now, second), now);
    }
}
