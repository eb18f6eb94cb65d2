//! The replica side of replication: one task per replica ships what the
//! shadow WAL holds, writes snapshots, and enforces retention.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use futures::FutureExt;
use replica_core::layout::format_index;
use replica_core::{
    bytes_stream, decompressed_len, lz4, ByteStream, Error, Pos, ReplicaClient, Result,
};
use tokio::sync::{watch, RwLock};
use tracing::{debug, info, warn};

use super::tail::IndexReader;
use super::{ReplicaOptions, ShadowView, Shared};

const CHUNK: usize = 1 << 20;

/// The longest a replica task waits for news or scheduled work.
const IDLE_ROUND: Duration = Duration::from_secs(3600);

/// Ships one replica.
pub(crate) struct Shipper {
    pub(crate) slot: usize,
    pub(crate) options: ReplicaOptions,
    pub(crate) client: Arc<dyn ReplicaClient>,
    pub(crate) views: watch::Receiver<ShadowView>,
    pub(crate) gate: Arc<RwLock<()>>,
    pub(crate) shared: Arc<Shared>,
    pub(crate) pos: Option<Pos>,
    /// When the newest snapshot was written, on the local monotonic clock
    /// (store times only seed it after a restart).
    pub(crate) last_snapshot: Option<Instant>,
    pub(crate) last_retention: Option<Instant>,
    /// Segments shipped so far.
    pub(crate) shipped: u64,
}

pub(crate) fn index_path(view: &ShadowView, index: u64) -> PathBuf {
    view.dir.join(format!("{index:016x}.wal"))
}

/// How long an upload of `bytes` (uncompressed, at most) may take before it
/// is abandoned and its round retried: a store's own retries end within
/// their bound (30 s for object stores), so twice that, plus a second per
/// 64 KiB — as slow as 512 kbit/s still finishes (a 2 GiB snapshot gets
/// 9 hours), while a small segment's hung request (seen once in CI under
/// the outage proxy) is given up after about a minute.
pub(crate) fn upload_bound(bytes: u64) -> Duration {
    Duration::from_secs(60 + (bytes >> 16))
}

/// `upload`, abandoned as a timed-out I/O error (naming `what`) past
/// [`upload_bound`] of `bytes`.
pub(crate) async fn bounded<T>(
    what: impl FnOnce() -> String,
    bytes: u64,
    upload: impl std::future::Future<Output = Result<T>>,
) -> Result<T> {
    let bound = upload_bound(bytes);
    tokio::time::timeout(bound, upload).await.map_err(|_| {
        Error::io(
            what(),
            std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                format!("no answer within {} s", bound.as_secs()),
            ),
        )
    })?
}

/// Tells the database task where replica `slot` stands (shadow indexes
/// every replica has passed are deleted).
pub(crate) fn publish(shared: &Shared, slot: usize, pos: &Option<Pos>) {
    let mut positions = shared.positions.lock().unwrap_or_else(|p| p.into_inner());
    let moved = positions[slot].as_ref().map(|p| (&p.generation, p.index))
        != pos.as_ref().map(|p| (&p.generation, p.index))
        || shared
            .closed_kept
            .load(std::sync::atomic::Ordering::Relaxed);
    positions[slot] = pos.clone();
    drop(positions);
    shared.shipped.notify_one();
    if moved {
        // A shipped index's shadow file goes now, not a monitor interval
        // later (local disk: one index, not two).
        shared.moved.notify_one();
    }
}

/// The shadow index file at `pos` and its committed length, if `pos` is in
/// the view's generation and not past the view.
pub(crate) async fn shadow_extent(view: &ShadowView, pos: &Pos) -> Result<Option<(PathBuf, u64)>> {
    if pos.generation != view.generation || pos.index > view.index {
        return Ok(None);
    }
    let path = index_path(view, pos.index);
    let len = if pos.index == view.index {
        view.len
    } else if let Some((_, len)) = view.closed.filter(|(index, _)| *index == pos.index) {
        // Known without the file, which is gone once every replica is at
        // its end.
        len
    } else if pos.index < view.first_index {
        // Deleted: only once every replica had passed it (at its end).
        pos.offset
    } else {
        tokio::fs::metadata(&path)
            .await
            .map_err(io(format!("reading {}", path.display())))?
            .len()
    };
    Ok(Some((path, len)))
}

/// Whether a replica at `offset` of index `index` (its shadow file, or the
/// current index, `len` long) may be continued from there: in the current
/// index whenever `offset <= len`; in a closed one only where its file
/// holds a frame or at its end, since it holds just what was unshipped at
/// its restart (a position below that, a replica's store rolled back
/// since, is not continued: it would ship a hole).
pub(crate) fn continues(view: &ShadowView, index: u64, offset: u64, len: u64) -> bool {
    offset <= len && (index == view.index || IndexReader::open(view, index, offset, len).is_ok())
}

/// The `through` of shipping index `index` up to `len`: the view's copy
/// time (every transaction committed before it is shipped) when that is
/// the view's end, else nothing.
pub(crate) fn through(view: &ShadowView, index: u64, len: u64) -> Option<String> {
    (index == view.index && len == view.len).then(|| {
        DateTime::<Utc>::from(view.copied_at).to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
    })
}

pub(crate) fn io(context: String) -> impl FnOnce(std::io::Error) -> Error {
    move |e| Error::io(context, e)
}

impl Shipper {
    /// A shipper for replica `slot` that has shipped nothing yet (its
    /// first round finds where the replica stands).
    pub(crate) fn new(
        slot: usize,
        options: ReplicaOptions,
        client: Arc<dyn ReplicaClient>,
        views: watch::Receiver<ShadowView>,
        gate: Arc<RwLock<()>>,
        shared: Arc<Shared>,
    ) -> Self {
        Self {
            slot,
            options,
            client,
            views,
            gate,
            shared,
            pos: None,
            last_snapshot: None,
            last_retention: None,
            shipped: 0,
        }
    }

    pub(crate) fn name(&self) -> &str {
        &self.options.name
    }

    /// One round: position in the current generation if needed, ship every
    /// committed byte, snapshot and enforce retention when due.
    pub(crate) async fn sync(&mut self) -> Result<()> {
        let mut view = self.views.borrow_and_update().clone();
        if self.pos.as_ref().map(|p| &p.generation) != Some(&view.generation) {
            self.pos = None;
            self.publish();
            self.position(&view).await?;
            // Positioning (a snapshot) may have taken a while.
            view = self.views.borrow_and_update().clone();
        }
        self.ship(&view).await?;
        if let Some(interval) = self.options.snapshot_interval {
            let due = self.last_snapshot.is_none_or(|at| at.elapsed() >= interval);
            if due {
                self.snapshot().await?;
            }
        }
        if retention_due(&self.options, &mut self.last_retention) {
            self.enforce_retention().await?;
        }
        Ok(())
    }

    fn publish(&self) {
        publish(&self.shared, self.slot, &self.pos);
    }

    /// Where this replica stands in the view's generation: after its last
    /// segment, or at a fresh snapshot when it has none or cannot continue.
    async fn position(&mut self, view: &ShadowView) -> Result<()> {
        let g = &view.generation;
        let snapshots = self.client.snapshots(g).await?;
        let Some(newest) = snapshots.iter().max_by_key(|s| s.index) else {
            return self.snapshot().await;
        };
        self.last_snapshot = snapshots.iter().map(|s| s.created_at).max().map(|at| {
            let age = (Utc::now() - at).to_std().unwrap_or_default();
            Instant::now().checked_sub(age).unwrap_or_else(Instant::now)
        });
        // Only the last segment matters: walk the listing, keep one.
        let mut cursor = self.client.wal_segments(g).await?;
        let mut last = None;
        while let Some(segment) = cursor.next().await {
            last = Some(segment?);
        }
        let pos = match last {
            Some(last) => {
                let at = Pos::new(g.clone(), last.index, last.offset)?;
                let len = decompressed_len(self.client.wal_segment_reader(&at).await?).await?;
                Pos::new(g.clone(), last.index, last.offset + len)?
            }
            None => Pos::new(g.clone(), newest.index, 0)?,
        };
        let shadow_len = if pos.index == view.index {
            Some(view.len)
        } else if pos.index >= view.first_index && pos.index < view.index {
            tokio::fs::metadata(index_path(view, pos.index))
                .await
                .ok()
                .map(|m| m.len())
        } else {
            None
        };
        match shadow_len {
            Some(len) if continues(view, pos.index, pos.offset, len) => {
                info!(replica = self.name(), generation = %g, index = %format_index(pos.index), offset = %format_index(pos.offset), "continuing the generation");
                self.pos = Some(pos);
                self.publish();
                Ok(())
            }
            _ => {
                self.shared
                    .diverged
                    .store(true, std::sync::atomic::Ordering::SeqCst);
                // A released database wakes to start the new generation.
                self.shared.wake.notify_one();
                Err(Error::Backend {
                    backend: self.client.kind(),
                    source: None,
                    message: format!(
                        "replica {} holds generation {g} up to index {} offset {}, which the \
                         local shadow WAL does not continue; a new generation is started",
                        self.name(),
                        pos.index,
                        pos.offset
                    ),
                })
            }
        }
    }

    /// Writes a snapshot of the database at the current index and, when the
    /// replica had no position in the generation, starts shipping there.
    async fn snapshot(&mut self) -> Result<()> {
        // No checkpoint can restart the WAL while the file is read, so the
        // file holds the state at the start of `view.index` plus frames of
        // that index only; with the shadow's committed pages laid over it,
        // it is the database as of `view.len`, and replaying the index from
        // offset 0 over it is exact.
        let turn = super::image::turn().await;
        let (_gate, view, db_file) =
            super::snapshot_gate(&self.gate, &self.views, &self.shared).await?;
        let shadow = IndexReader::open(&view, view.index, 0, view.len)
            .map_err(|e| Error::io("reading a snapshot of the database", e))?;
        let size = db_file.metadata().map_or(0, |m| m.len()) + view.len;
        let data = lz4::compress_stream(super::image::image(db_file, shadow, view.len, turn));
        let info = bounded(
            || format!("writing the snapshot of generation {}", view.generation),
            size,
            self.client
                .write_snapshot(&view.generation, view.index, data),
        )
        .await?;
        info!(
            replica = self.name(),
            generation = %view.generation,
            index = %format_index(view.index),
            bytes = info.size,
            "snapshot written"
        );
        self.last_snapshot = Some(Instant::now());
        // Only a replica with no position in this generation starts at the
        // snapshot; one that has a position ships the rest of its index first
        // (a jump would leave that tail out of the WAL for good).
        let unpositioned = self
            .pos
            .as_ref()
            .is_none_or(|p| p.generation != view.generation);
        if unpositioned {
            self.pos = Some(Pos::new(view.generation.clone(), view.index, 0)?);
            self.publish();
        }
        Ok(())
    }

    /// Ships every committed byte of the shadow beyond the position.
    async fn ship(&mut self, view: &ShadowView) -> Result<()> {
        loop {
            let Some(pos) = self.pos.clone() else {
                return Ok(());
            };
            // A view older than the position: the next round ships.
            let Some((path, len)) = shadow_extent(view, &pos).await? else {
                return Ok(());
            };
            if pos.offset < len {
                let data = read_range(view, pos.index, path, pos.offset, len).await?;
                bounded(
                    || format!("writing WAL segment {pos}"),
                    len - pos.offset,
                    self.client.write_wal_segment(&pos, data),
                )
                .await?;
                self.shipped += 1;
                self.shared.replicas[self.slot].shipped(len - pos.offset);
                let through = through(view, pos.index, len);
                info!(
                    replica = self.name(),
                    generation = %pos.generation,
                    index = %format_index(pos.index),
                    offset = %format_index(pos.offset),
                    end = %format_index(len),
                    through = through.as_deref().unwrap_or(""),
                    "wal shipped"
                );
                self.pos = Some(Pos::new(pos.generation.clone(), pos.index, len)?);
                self.publish();
            }
            if pos.index < view.index {
                self.pos = Some(Pos::new(pos.generation.clone(), pos.index + 1, 0)?);
                self.publish();
            } else {
                if self
                    .pos
                    .as_ref()
                    .is_some_and(|p| super::at_view_end(view, p))
                {
                    caught_up(&self.shared, self.slot, view);
                }
                return Ok(());
            }
        }
    }

    /// Deletes what the retention window no longer needs, never the newest
    /// snapshot or anything after it, and never what a restore that started
    /// within the grace period could still read.
    async fn enforce_retention(&mut self) -> Result<()> {
        let Some(pos) = self.pos.clone() else {
            return Ok(());
        };
        let g = pos.generation.clone();
        let now = Utc::now();
        let window =
            chrono::Duration::from_std(self.options.retention).unwrap_or(chrono::Duration::MAX);
        let grace =
            chrono::Duration::from_std(self.options.restore_grace).unwrap_or(chrono::Duration::MAX);
        let mut snapshots = self.client.snapshots(&g).await?;
        snapshots.sort_by_key(|s| s.index);
        let Some(newest) = snapshots.last() else {
            return Ok(());
        };
        if now - newest.created_at >= window {
            // Nothing inside the window: a fresh snapshot keeps restores short.
            self.snapshot().await?;
            snapshots = self.client.snapshots(&g).await?;
            snapshots.sort_by_key(|s| s.index);
            if snapshots.is_empty() {
                // A listing that lags its writes: try again next time.
                return Ok(());
            }
        }
        let in_window = snapshots.iter().position(|s| now - s.created_at < window);
        let mut keep = in_window.unwrap_or(snapshots.len() - 1);
        // A restore that started within the grace period may have chosen the
        // snapshot before the first kept one.
        while keep > 0 && now - snapshots[keep].created_at < grace {
            keep -= 1;
        }
        let floor = snapshots[keep].index;
        for old in &snapshots[..keep] {
            self.client.delete_snapshot(&g, old.index).await?;
        }
        // Segments below the floor, in batches (the listing is sorted).
        let mut cursor = self.client.wal_segments(&g).await?;
        let mut batch = Vec::new();
        let mut deleted = 0usize;
        while let Some(segment) = cursor.next().await {
            let segment = segment?;
            if segment.index >= floor {
                break;
            }
            batch.push(Pos::new(g.clone(), segment.index, segment.offset)?);
            if batch.len() == 1000 {
                self.client.delete_wal_segments(&batch).await?;
                deleted += batch.len();
                batch.clear();
            }
        }
        if !batch.is_empty() {
            self.client.delete_wal_segments(&batch).await?;
            deleted += batch.len();
        }
        // One line per pass: what was kept, why, and what went.
        let first = &snapshots[keep];
        let why = match in_window {
            None => "the newest snapshot (always kept; none is inside the window)",
            Some(w) if keep < w => "the restore grace (a restore begun within it may read it)",
            Some(_) => "the retention window",
        };
        info!(
            replica = self.name(),
            generation = %g,
            kept_from = %format_index(floor),
            kept_snapshot_created = %first.created_at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            kept_by = why,
            deleted_snapshots = keep,
            deleted_segments = deleted,
            window = ?self.options.retention,
            grace = ?self.options.restore_grace,
            "retention"
        );
        // Older generations, once a restore can no longer be reading them.
        if now - snapshots[0].created_at >= grace {
            for other in self.client.generations().await? {
                if other == g {
                    continue;
                }
                let recent = self
                    .client
                    .snapshots(&other)
                    .await?
                    .iter()
                    .any(|s| now - s.created_at < window);
                if !recent {
                    self.client.delete_generation(&other).await?;
                    info!(replica = self.name(), generation = %other, "retention: deleted an old generation");
                }
            }
        }
        Ok(())
    }

    pub(crate) async fn final_sync(&mut self) -> Result<()> {
        let view = self.views.borrow().clone();
        if self.pos.as_ref().map(|p| &p.generation) != Some(&view.generation) {
            self.pos = None;
            self.position(&view).await?;
        }
        self.ship(&view).await
    }
}

/// Whether retention is due (zero retention keeps everything, as in
/// Litestream); if so, records now as its last run.
pub(crate) fn retention_due(options: &ReplicaOptions, last: &mut Option<Instant>) -> bool {
    let due = !options.retention.is_zero()
        && last.is_none_or(|at| at.elapsed() >= options.retention_check_interval);
    if due {
        *last = Some(Instant::now());
    }
    due
}

/// What the replica tasks have in common, whatever the layout they ship.
#[replica_core::async_trait]
pub(crate) trait Ship: Send {
    /// The replica's name, for logs.
    fn name(&self) -> &str;
    /// Its sync interval.
    fn sync_interval(&self) -> Duration;
    /// Uploads made so far (a round that made none waits for news).
    fn shipped(&self) -> u64;
    /// The shadow views it follows.
    fn views(&mut self) -> &mut watch::Receiver<ShadowView>;
    /// Its slot among the replicas, and the state they share.
    fn shared(&self) -> (usize, &Shared);
    /// One round.
    async fn sync(&mut self) -> Result<()>;
    /// The last round, at stop.
    async fn final_sync(&mut self) -> Result<()>;
    /// An LTX replica's newest TXID written.
    fn txid(&self) -> Option<u64> {
        None
    }
    /// How soon a round has scheduled work (compaction, snapshots,
    /// retention) without news from the shadow; `None`: none.
    fn next_due(&self) -> Option<Duration> {
        None
    }
}

#[replica_core::async_trait]
impl Ship for Shipper {
    fn name(&self) -> &str {
        Shipper::name(self)
    }
    fn sync_interval(&self) -> Duration {
        self.options.sync_interval
    }
    fn shipped(&self) -> u64 {
        self.shipped
    }
    fn views(&mut self) -> &mut watch::Receiver<ShadowView> {
        &mut self.views
    }
    fn shared(&self) -> (usize, &Shared) {
        (self.slot, &self.shared)
    }
    async fn sync(&mut self) -> Result<()> {
        Shipper::sync(self).await
    }
    async fn final_sync(&mut self) -> Result<()> {
        Shipper::final_sync(self).await
    }
    fn next_due(&self) -> Option<Duration> {
        let after = |last: Option<Instant>, every: Duration| {
            last.map_or(Duration::ZERO, |at| every.saturating_sub(at.elapsed()))
        };
        let snapshot = self
            .options
            .snapshot_interval
            .map(|every| after(self.last_snapshot, every));
        let retention = (!self.options.retention.is_zero())
            .then(|| after(self.last_retention, self.options.retention_check_interval));
        snapshot.into_iter().chain(retention).min()
    }
}

/// Runs a replica task until `stop` says so, then ships what the final
/// view holds: rounds at most once per sync interval, woken by new shadow
/// views, retried with backoff on errors (a panicking round is an error).
pub(crate) async fn run<S: Ship>(mut ship: S, mut stop: watch::Receiver<bool>) -> Result<()> {
    let mut failures = 0u32;
    loop {
        let started = Instant::now();
        // When the view this round takes woke the replicas.
        let announced = ship.views().borrow().announced;
        let shipped_before = ship.shipped();
        let round = std::panic::AssertUnwindSafe(ship.sync())
            .catch_unwind()
            .await;
        let round = round.unwrap_or_else(|panic| {
            let what = panic
                .downcast_ref::<&str>()
                .map(|s| (*s).to_owned())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_default();
            Err(Error::io(
                "a replica round panicked",
                std::io::Error::other(what),
            ))
        });
        record(&mut ship, started.elapsed(), &round);
        let wait = match round {
            Ok(()) => {
                if failures > 0 {
                    info!(replica = ship.name(), "replica reachable again");
                }
                failures = 0;
                // At most one upload per sync interval (see
                // `interval_left`); a round that shipped nothing waits for
                // news at once. (Tried and measured worse in benchmark 10
                // at 1 s, while intervals always counted from a round's
                // start: starting rounds a tenth early, and a fixed grid of
                // intervals; both let a round between the database's take
                // the next one's turn.)
                if ship.shipped() == shipped_before {
                    Duration::ZERO
                } else {
                    interval_left(ship.sync_interval(), announced, started, Instant::now())
                }
            }
            Err(e) => {
                failures += 1;
                let backoff = backoff(ship.sync_interval(), failures);
                warn!(replica = ship.name(), error = %e, retry_in = ?backoff, "sync failed; retrying");
                backoff
            }
        };
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = stop.wait_for(|s| *s) => break,
        }
        if failures == 0 {
            // Wait for something new, unless scheduled work is due sooner
            // (an idle replica has no periodic work: a round an hour at
            // most, as a safety net).
            let idle = ship.next_due().map_or(IDLE_ROUND, |due| {
                due.clamp(Duration::from_millis(10), IDLE_ROUND)
            });
            let ended = tokio::select! {
                changed = ship.views().changed() => changed.is_err(),
                _ = tokio::time::sleep(idle) => false,
                _ = stop.wait_for(|s| *s) => break,
            };
            if ended {
                // The database task is gone: no view will come (`changed`
                // would return at once, every time); wait to be stopped,
                // then the final sync. (A stop ends the database task
                // before the replicas are told: the usual way here.)
                debug!(
                    replica = ship.name(),
                    "the database task ended: waiting for the stop"
                );
                let _ = stop.wait_for(|s| *s).await;
                break;
            }
        }
    }
    // Final sync: a few tries, then report.
    let mut last = Ok(());
    for attempt in 1..=3u32 {
        match ship.final_sync().await {
            Ok(()) => return Ok(()),
            Err(e) => {
                warn!(replica = ship.name(), error = %e, attempt, "final sync failed");
                last = Err(e);
                tokio::time::sleep(backoff(Duration::from_millis(200), attempt)).await;
            }
        }
    }
    last
}

/// What is left at `now` of the sync interval after a round that started
/// at `started` and took a view announced at `announced`.
///
/// The interval counts from the announcement, less a timer's slack, so the
/// database's next view, one interval on, wakes the replica at once: its
/// rounds keep the database's phase (counted from their own start, each
/// late wake-up made every later round later; and a timer ending with the
/// round fired 1–2 ms after it, added to every round's lag). It counts
/// from no earlier than [`FRESH`] before the round began, so uploads stay
/// at least an interval, less the slack and [`FRESH`], apart, also when
/// views come more often than the sync interval (a shorter monitor
/// interval); a round that began late (after a long one, or a retry)
/// regains the phase by that much a round.
fn interval_left(
    interval: Duration,
    announced: Instant,
    started: Instant,
    now: Instant,
) -> Duration {
    let tenth = interval / 10;
    let earliest = started.checked_sub(FRESH.min(tenth)).unwrap_or(started);
    let from = announced.max(earliest);
    (interval - TIMER_SLACK.min(tenth)).saturating_sub(now.saturating_duration_since(from))
}

/// How soon after its view's announcement a round counts as woken by it
/// (at most a tenth of the interval).
const FRESH: Duration = Duration::from_millis(20);

/// How much sooner than a sync interval a replica starts waiting for the
/// next view (at most a tenth of the interval).
const TIMER_SLACK: Duration = Duration::from_millis(5);

/// Counts a round, and when it left the replica at the end of the current
/// view, that view's copy time as what it has caught up to.
fn record<S: Ship>(ship: &mut S, took: Duration, round: &Result<()>) {
    let view = ship.views().borrow().clone();
    let (slot, shared) = ship.shared();
    let counters = &shared.replicas[slot];
    counters.synced(took, round.as_ref().map(|_| ()).map_err(|e| e.to_string()));
    if let Some(txid) = ship.txid() {
        counters.set_txid(txid);
    }
    let pos = shared.positions.lock().unwrap_or_else(|p| p.into_inner())[slot].clone();
    if pos.is_some_and(|p| super::at_view_end(&view, &p)) {
        counters.caught_up(view.copied_at);
    }
}

/// Records that replica `slot` holds everything `view` held (called where
/// shipping reaches the end of the view a round borrowed: a newer view
/// published meanwhile does not hide it).
pub(crate) fn caught_up(shared: &Shared, slot: usize, view: &ShadowView) {
    shared.replicas[slot].caught_up(view.copied_at);
}

/// Ranges up to this size are read and compressed in one blocking call;
/// larger ones (a backlog after an outage) are streamed.
const WHOLE: u64 = 8 << 20;

/// `[offset, len)` of shadow index `index` (its file is `path`),
/// LZ4-compressed.
async fn read_range(
    view: &ShadowView,
    index: u64,
    path: PathBuf,
    offset: u64,
    len: u64,
) -> Result<ByteStream> {
    let context = format!("reading {}", path.display());
    let view = view.clone();
    let opened = super::rounds::run(move || IndexReader::open(&view, index, offset, len))
        .await
        .map_err(|e| Error::io(context.clone(), std::io::Error::other(e)))?;
    let reader = Arc::new(opened.map_err(io(context))?);
    if len - offset <= WHOLE {
        let plain = read_at(reader, offset, len - offset).await?;
        return Ok(bytes_stream(lz4::compress(&plain)));
    }
    // A backlog: streamed, a chunk at a time.
    let chunks = futures::stream::try_unfold(offset, move |at| {
        let reader = reader.clone();
        async move {
            if at >= len {
                return Ok(None);
            }
            let n = (len - at).min(CHUNK as u64);
            let plain = read_at(reader, at, n).await?;
            Ok(Some((bytes::Bytes::from(plain), at + n)))
        }
    });
    Ok(lz4::compress_stream(Box::pin(chunks)))
}

/// `n` bytes at `at` of a shadow index, read on a blocking thread.
async fn read_at(reader: Arc<IndexReader>, at: u64, n: u64) -> Result<Vec<u8>> {
    let context = format!("reading {}", reader.name());
    let plain = super::rounds::run(move || {
        let mut plain = vec![0u8; n as usize];
        reader.read_exact_at(&mut plain, at).map(|()| plain)
    })
    .await
    .map_err(|e| Error::io(context.clone(), std::io::Error::other(e)))?;
    plain.map_err(io(context))
}

pub(crate) fn backoff(base: Duration, failures: u32) -> Duration {
    let factor = 1u32 << failures.min(6);
    (base.max(Duration::from_millis(100)) * factor).min(Duration::from_secs(30))
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use std::sync::Mutex;

    /// A replica that ships in its first `ships` rounds, noting when each
    /// round began and when the view it took was announced.
    struct Fake {
        views: watch::Receiver<ShadowView>,
        shared: Arc<Shared>,
        shipped: u64,
        rounds: Rounds,
        /// How long its first round takes.
        first_round: Duration,
        /// How many rounds ship something (the rest find nothing new).
        ships: u64,
    }

    #[replica_core::async_trait]
    impl Ship for Fake {
        fn name(&self) -> &str {
            "fake"
        }
        fn sync_interval(&self) -> Duration {
            INTERVAL
        }
        fn shipped(&self) -> u64 {
            self.shipped
        }
        fn views(&mut self) -> &mut watch::Receiver<ShadowView> {
            &mut self.views
        }
        fn shared(&self) -> (usize, &Shared) {
            (0, &self.shared)
        }
        async fn sync(&mut self) -> Result<()> {
            let announced = self.views.borrow_and_update().announced;
            self.rounds
                .lock()
                .unwrap()
                .push((Instant::now(), announced));
            let first = self.rounds.lock().unwrap().len() == 1;
            if self.shipped < self.ships {
                self.shipped += 1;
            }
            if first {
                tokio::time::sleep(self.first_round).await;
            }
            Ok(())
        }
        async fn final_sync(&mut self) -> Result<()> {
            Ok(())
        }
    }

    const INTERVAL: Duration = Duration::from_millis(1000);

    type Rounds = Arc<Mutex<Vec<(Instant, Instant)>>>;

    /// Runs a [`Fake`] over `views`: its rounds, the stop and the task.
    fn spawn_fake(
        views: watch::Receiver<ShadowView>,
        shared: Arc<Shared>,
        first_round: Duration,
        ships: u64,
    ) -> (
        Rounds,
        watch::Sender<bool>,
        tokio::task::JoinHandle<Result<()>>,
    ) {
        let rounds = Rounds::default();
        let (stop_tx, stop) = watch::channel(false);
        let fake = Fake {
            views,
            shared,
            shipped: 0,
            rounds: rounds.clone(),
            first_round,
            ships,
        };
        (rounds, stop_tx, tokio::spawn(run(fake, stop)))
    }

    /// A view of an index holding only its header, announced now.
    pub(in crate::replicate) fn empty_view(dir: &std::path::Path) -> ShadowView {
        ShadowView {
            generation: replica_core::Generation::random(),
            dir: dir.to_owned(),
            first_index: 0,
            index: 0,
            len: 32,
            copied_at: std::time::SystemTime::UNIX_EPOCH,
            db_file: None,
            released: false,
            closed: None,
            tail: Default::default(),
            announced: Instant::now(),
        }
    }

    /// The interval counts from the announcement, less a timer's slack
    /// (5 ms, at most a tenth of the interval), but from no earlier than
    /// `FRESH` (20 ms) before the round began; never below zero.
    #[test]
    fn the_wait_counts_from_the_announcement_but_not_from_long_before_the_round() {
        let t = Instant::now() + Duration::from_secs(10);
        let ms = Duration::from_millis;
        // Woken by its view 3 ms after the announcement, now 400 ms on.
        assert_eq!(interval_left(ms(1000), t, t + ms(3), t + ms(400)), ms(595));
        assert_eq!(interval_left(ms(10), t, t, t), ms(9));
        // Began 395 ms after the announcement (it waited out the interval,
        // or the last round overran): from 20 ms before it began.
        assert_eq!(
            interval_left(ms(1000), t, t + ms(395), t + ms(400)),
            ms(970)
        );
        assert_eq!(interval_left(ms(1000), t, t, t + ms(2000)), Duration::ZERO);
    }

    /// A round that takes long (here 400 ms, as a compaction may) does not
    /// make the next one late: the next view, announced one interval after
    /// the one it shipped, ships at once.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_long_round_does_not_delay_the_next_view() {
        let dir = tempfile::tempdir().unwrap();
        let shared = Arc::new(Shared::new(1, Default::default()));
        let view = empty_view(dir.path());
        let (tx, views) = watch::channel(view.clone());
        super::super::publish(
            &tx,
            &shared,
            ShadowView {
                len: 64,
                ..view.clone()
            },
        );
        let first = tx.borrow().announced;
        let (rounds, stop_tx, task) =
            spawn_fake(views, shared.clone(), Duration::from_millis(400), u64::MAX);
        tokio::time::sleep_until((first + INTERVAL).into()).await;
        super::super::publish(
            &tx,
            &shared,
            ShadowView {
                len: 96,
                ..view.clone()
            },
        );
        let second = tx.borrow().announced;
        tokio::time::sleep(Duration::from_millis(600)).await;
        stop_tx.send(true).unwrap();
        task.await.unwrap().unwrap();
        let rounds = rounds.lock().unwrap().clone();
        assert_eq!(rounds.len(), 2, "one round per view announced");
        assert_eq!(rounds[0].1, first);
        assert_eq!(rounds[1].1, second);
        let late = rounds[1].0 - second;
        assert!(
            late < Duration::from_millis(200),
            "the second round began {late:?} after its view was announced"
        );
    }

    /// Views announced more often than the sync interval (a monitor
    /// interval of 600 ms against a sync interval of 1 s) never bring two
    /// uploads closer than the interval, less the slack and `FRESH`.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn views_announced_more_often_than_the_interval_do_not_speed_uploads_up() {
        let dir = tempfile::tempdir().unwrap();
        let shared = Arc::new(Shared::new(1, Default::default()));
        let view = empty_view(dir.path());
        let (tx, views) = watch::channel(view.clone());
        let (rounds, stop_tx, task) = spawn_fake(views, shared.clone(), Duration::ZERO, u64::MAX);
        for i in 1..=8u64 {
            super::super::publish(
                &tx,
                &shared,
                ShadowView {
                    len: 32 + i * 32,
                    ..view.clone()
                },
            );
            tokio::time::sleep(Duration::from_millis(600)).await;
        }
        stop_tx.send(true).unwrap();
        task.await.unwrap().unwrap();
        let rounds = rounds.lock().unwrap().clone();
        assert!(rounds.len() >= 4, "{} rounds in 4.8 s", rounds.len());
        for pair in rounds.windows(2) {
            let apart = pair[1].0 - pair[0].0;
            assert!(
                // (A millisecond of margin: the times are taken in the
                // round, not where `run` takes them.)
                apart + Duration::from_millis(1) >= INTERVAL - TIMER_SLACK - FRESH,
                "two uploads {apart:?} apart: {rounds:?}"
            );
        }
    }

    /// With the database task gone (the views' sender dropped), a replica
    /// that has nothing new to ship waits to be stopped instead of running
    /// rounds back to back.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_replica_whose_views_end_waits_for_the_stop() {
        let dir = tempfile::tempdir().unwrap();
        let shared = Arc::new(Shared::new(1, Default::default()));
        let (tx, views) = watch::channel(empty_view(dir.path()));
        drop(tx);
        let (rounds, stop_tx, task) = spawn_fake(views, shared.clone(), Duration::ZERO, 0);
        tokio::time::sleep(Duration::from_millis(300)).await;
        let ran = rounds.lock().unwrap().len();
        stop_tx.send(true).unwrap();
        tokio::time::timeout(Duration::from_secs(5), task)
            .await
            .expect("the replica stops when told")
            .unwrap()
            .unwrap();
        assert_eq!(ran, 1, "rounds in 300 ms with no view to come");
    }

    /// The offset of frame `n` (0-based) in [`view_after_a_spill`]'s WAL.
    pub(in crate::replicate) fn frame_at(n: u64) -> u64 {
        use crate::wal::{FRAME_HEADER_LEN, WAL_HEADER_LEN};
        WAL_HEADER_LEN as u64 + n * (FRAME_HEADER_LEN + 512) as u64
    }

    /// A view whose current index (1) holds its header only (salt-1 one
    /// more, as a restart writes it), after index 0, closed with three
    /// one-frame transactions (512-byte pages) of which only the third,
    /// unshipped at the restart, was spilled into its file: below it, a
    /// hole. With index 0's WAL header.
    pub(in crate::replicate) fn view_after_a_spill(
        dir: &std::path::Path,
    ) -> (ShadowView, crate::wal::WalHeader) {
        use crate::wal::{WalBuilder, WalHeader, WAL_HEADER_LEN};
        use std::os::unix::fs::FileExt;
        let mut wal = WalBuilder::new(512, false);
        wal.frame(1, 1, 1).frame(2, 2, 2).frame(1, 2, 3);
        let header = &wal.bytes[..WAL_HEADER_LEN];
        let closed = std::fs::File::create(dir.join(format!("{:016x}.wal", 0))).unwrap();
        closed.write_all_at(header, 0).unwrap();
        let third = frame_at(2) as usize..frame_at(3) as usize;
        closed.write_all_at(&wal.bytes[third], frame_at(2)).unwrap();
        let parsed = WalHeader::parse(header).unwrap();
        let next = WalBuilder::with_salts(512, false, (parsed.salts.0 + 1, parsed.salts.1));
        std::fs::write(dir.join(format!("{:016x}.wal", 1)), &next.bytes).unwrap();
        let view = ShadowView {
            index: 1,
            closed: Some((0, frame_at(3))),
            ..empty_view(dir)
        };
        (view, parsed)
    }

    /// RELIABILITY.md's second defensive check: a closed index's shadow
    /// file holds only what was unshipped at its restart (a hole below).
    /// A replica whose last segment ends in the hole (its store rolled back
    /// since the restart) is not continued: a new generation is asked for.
    /// One whose last segment ends where the file holds a frame is.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_position_in_the_hole_of_a_closed_index_is_not_continued() {
        use replica_core::{bytes_stream, lz4};
        let dir = tempfile::tempdir().unwrap();
        let (view, _) = view_after_a_spill(dir.path());
        let g = view.generation.clone();
        for (end, continued) in [(frame_at(1), false), (frame_at(2), true)] {
            let client = Arc::new(replica_memory::MemoryClient::default());
            client
                .write_snapshot(&g, 0, bytes_stream(lz4::compress(b"database")))
                .await
                .unwrap();
            let segment = vec![0u8; end as usize];
            client
                .write_wal_segment(
                    &Pos::new(g.clone(), 0, 0).unwrap(),
                    bytes_stream(lz4::compress(&segment)),
                )
                .await
                .unwrap();
            let shared = Arc::new(Shared::new(1, Default::default()));
            let (_tx, views) = watch::channel(view.clone());
            let mut shipper = Shipper::new(
                0,
                ReplicaOptions::default(),
                client,
                views,
                Default::default(),
                shared.clone(),
            );
            let result = shipper.position(&view).await;
            let diverged = shared.diverged.load(std::sync::atomic::Ordering::SeqCst);
            if continued {
                result.unwrap();
                assert_eq!(shipper.pos, Some(Pos::new(g.clone(), 0, end).unwrap()));
                assert!(!diverged);
            } else {
                let err = result.expect_err("a position in the hole was continued");
                assert!(err.to_string().contains("does not continue"), "{err}");
                assert!(diverged, "no new generation asked for");
                assert_eq!(shipper.pos, None);
            }
        }
    }
}
