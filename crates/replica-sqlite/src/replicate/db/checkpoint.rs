//! Checkpoints: when they are due, the restart that closes a WAL index
//! (after the replicas' hooks), and what to say when one keeps failing.

use super::*;

impl Db {
    /// Whether a round's second half has a checkpoint to run: the WAL holds
    /// enough pages or the interval has passed.
    pub(crate) fn checkpoint_due(&self) -> bool {
        let frames = self.shadow.as_ref().map_or(0, Shadow::frames);
        // Zero turns the interval and the forced checkpoint off, as in Litestream.
        let interval = self.options.checkpoint_interval;
        // Our own `_litestream_seq` write is the one frame of an idle WAL.
        let due = !interval.is_zero() && self.last_checkpoint.elapsed() >= interval && frames > 1;
        frames >= u64::from(self.options.min_checkpoint_page_count) || due
    }

    /// One round's second half, when [`Db::checkpoint_due`]: a checkpoint,
    /// forced once the WAL holds `max_checkpoint_page_count` pages.
    pub(crate) fn checkpoint(&mut self, hooks: Hooks) -> Result<(), ReplicateError> {
        let frames = self.shadow.as_ref().map_or(0, Shadow::frames);
        let max = self.options.max_checkpoint_page_count;
        let force = max > 0 && frames >= u64::from(max);
        let started = Instant::now();
        let result = self.checkpoint_with(force, hooks);
        let mode = if force {
            CheckpointMode::Restart
        } else {
            CheckpointMode::Passive
        };
        // One skipped because the application holds the write lock is
        // not a checkpoint.
        match result {
            Ok(false) => Ok(()),
            Ok(true) => {
                self.counters.checkpointed(mode, started.elapsed(), true);
                Ok(())
            }
            Err(e) => {
                self.counters.checkpointed(mode, started.elapsed(), false);
                Err(e)
            }
        }
    }

    /// Checkpoints and restarts the WAL without losing a frame.
    ///
    /// Our read transaction keeps every other connection from restarting
    /// the WAL (a restart needs every reader slot free), so only our own
    /// write may restart it, and we copy every frame before that write:
    ///
    /// 1. under our write lock, copy every frame, and move the read
    ///    transaction to the WAL's end (it then blocks no backfill);
    /// 2. still under the lock, checkpoint (PASSIVE; when `force`, again
    ///    until the backfill is complete, as long as the busy timeout
    ///    allows: application readers may hold it back);
    /// 3. take the write lock afresh, since SQLite restarts the WAL only for
    ///    a writer whose read began after a complete backfill (a writer that
    ///    slips in between appends, never restarts: our read holds it off);
    ///    copy what it appended, end our read transaction, write, commit: if
    ///    the backfill was complete, that write restarted the WAL, and the
    ///    new WAL is the next index.
    pub(super) fn checkpoint_with(
        &mut self,
        force: bool,
        hooks: Hooks,
    ) -> Result<bool, ReplicateError> {
        self.last_checkpoint = Instant::now();
        if let Err(e) = self.conns().writer.execute_batch("BEGIN IMMEDIATE") {
            debug!(error = %e, "checkpoint skipped: the database is busy");
            return Ok(false);
        }
        let result = self.checkpoint_locked(force, hooks);
        let rollback = if self.conns().writer.is_autocommit() {
            Ok(())
        } else {
            self.conns()
                .writer
                .execute_batch("ROLLBACK")
                .map_err(sql("rolling back"))
        };
        let read = self.acquire_read();
        result.and(rollback).and(read).map(|()| true)
    }

    /// Takes in what was appended, under the write lock; on a lost
    /// continuity, ends the write transaction and starts a new generation
    /// (`false`).
    fn copy_under_lock(&mut self) -> Result<bool, ReplicateError> {
        let Err(Discontinuity(why)) = self.copy_frames() else {
            return Ok(true);
        };
        self.conns()
            .writer
            .execute_batch("ROLLBACK")
            .map_err(sql("rolling back"))?;
        self.new_generation(&why)?;
        Ok(false)
    }

    /// Steps 1 to 3 of [`Db::checkpoint_with`], the write lock taken.
    pub(super) fn checkpoint_locked(
        &mut self,
        force: bool,
        hooks: Hooks,
    ) -> Result<(), ReplicateError> {
        if !self.copy_under_lock()? {
            return Ok(());
        }
        let before = self.shadow.as_ref().expect("a shadow is open").header;
        // 1. The read transaction moves to the end of what was copied.
        self.renew_read()?;
        // 2. Checkpoint, still under our write lock (nothing is appended,
        //    and no one can restart the WAL while we read).
        let started = Instant::now();
        let (mut log, mut done);
        loop {
            (log, done) = self
                .conns()
                .checkpointer
                .query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |r| {
                    Ok((r.get::<_, i64>(1)?, r.get::<_, i64>(2)?))
                })
                .map_err(sql("checkpointing"))?;
            // (-1, -1): another checkpoint holds the lock.
            let complete = log >= 0 && log == done;
            if complete || !force || started.elapsed() >= self.options.busy_timeout {
                break;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        // Everything committed was taken in above; a WAL holding more
        // frames has some that do not continue the shadow (after a power
        // loss, a frame lost in the middle: the application's new frames
        // follow SQLite's recovered end, not our chain). A restart would
        // drop them from the generation: a new one has them (its snapshot
        // reads the database as it is).
        let frames = self.shadow.as_ref().map_or(0, Shadow::frames);
        if log >= 0 && log.unsigned_abs() != frames {
            self.conns()
                .writer
                .execute_batch("ROLLBACK")
                .map_err(sql("rolling back"))?;
            warn!(path = %self.path.display(), wal_frames = log, taken_in = frames, "the WAL holds frames that do not continue the shadow");
            return self.new_generation("the WAL holds frames that do not continue the shadow");
        }
        // 3. A fresh write lock at once (a writer that slips in between
        //    only postpones the restart); what it appended is copied first.
        self.conns()
            .writer
            .execute_batch("ROLLBACK")
            .map_err(sql("rolling back"))?;
        if self
            .conns()
            .writer
            .execute_batch("BEGIN IMMEDIATE")
            .is_err()
        {
            return Ok(());
        }
        if !self.copy_under_lock()? {
            return Ok(());
        }
        // The replicas ship the whole index (no tail left for a round
        // later) while the restart below runs.
        (hooks.publish)(self.view());
        // The restart overwrites the WAL: what a replica has not shipped
        // must then be on disk in the shadow, and no reader in the WAL.
        let shadow = self.shadow.as_ref().expect("a shadow is open");
        let from = (hooks.unshipped_from)(&shadow.generation, shadow.index, shadow.len);
        self.spill(from)?;
        self.tail.close();
        self.release_read()?;
        if force && log >= 0 && log == done {
            // Readers that began before the backfill completed still hold
            // the WAL (and so the restart) off; those that begin now read the
            // database file only. Give them a moment to finish, as RESTART
            // would, while nothing can be appended.
            std::thread::sleep(self.options.busy_timeout.min(Duration::from_millis(50)));
        }
        self.conns()
            .writer
            .execute_batch(&format!("{BUMP}; COMMIT;"))
            .map_err(sql("writing _litestream_seq"))?;
        self.acquire_read()?;
        let after = self.read_wal_header();
        if after == Some(before) {
            // Still the same index: read from the WAL again.
            self.route()
                .map_err(io(format!("opening {}", self.wal_path.display())))?;
            debug!(
                frames = log,
                checkpointed = done,
                "checkpoint without restart"
            );
            self.stalled += 1;
            if self.stalled == STALLED_WARNING {
                warn!(
                    path = %self.path.display(),
                    checkpoints = self.stalled,
                    wal_frames = log,
                    litestream = %self.litestream_hint(),
                    "our checkpoints have not restarted the WAL {STALLED_WARNING} times in a row: \
                     another connection holds a read transaction open (another replicator, such \
                     as Litestream on the same database, or a long-lived reader), so the WAL \
                     only grows; run one replicator per database"
                );
            }
            return Ok(());
        }
        if self.stalled >= STALLED_WARNING {
            info!(path = %self.path.display(), after = self.stalled, "checkpoints restart the WAL again");
        }
        self.stalled = 0;
        let shadow = self.shadow.as_ref().expect("a shadow is open");
        // A restart adds one to salt-1 (in the header all connections
        // share); anything else means another restart or a truncation in
        // the moment between our commit and our new read, and frames of the
        // new WAL may be gone.
        let expected_salt = be32(&before, 16).wrapping_add(1);
        let ours = |header: &[u8; WAL_HEADER_LEN]| {
            // The restart is ours only if the new WAL begins with our write
            // (salt-1 + 1 alone also fits a restart by another connection in
            // the moment before our new read, after frames we never saw).
            be32(header, 16) == expected_salt
                && File::open(&self.wal_path)
                    .ok()
                    .and_then(|wal| first_transaction_pages(&wal, header))
                    .is_some_and(|pages| pages.contains(&self.seq_root))
        };
        match after {
            Some(header) if ours(&header) => {
                let (generation, index) = (shadow.generation.clone(), shadow.index + 1);
                let closed = (shadow.index, shadow.len);
                let next = self.create_index(&generation, index, header)?;
                self.closed = Some(closed);
                info!(generation = %generation, index, frames = log, "checkpoint: the WAL restarted, new index");
                self.shadow = Some(next);
                if let Err(Discontinuity(why)) = self.copy_frames() {
                    return self.new_generation(&why);
                }
                Ok(())
            }
            other => {
                let seen = other.map(|h| be32(&h, 16));
                debug!(expected_salt, ?seen, "the WAL restarted more than once");
                self.new_generation(
                    "the WAL was restarted or truncated by another connection during a checkpoint",
                )
            }
        }
    }

    /// Whether Litestream's own directory is beside the database, changed
    /// within the last five minutes (then it is replicating it too).
    pub(super) fn litestream_hint(&self) -> String {
        let name = self
            .path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let dir = self.path.with_file_name(format!(".{name}-litestream"));
        let age = fs::metadata(&dir)
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| t.elapsed().ok());
        match age {
            Some(age) if age < Duration::from_secs(300) => format!(
                "{} changed {} s ago: Litestream replicates this database too",
                dir.display(),
                age.as_secs()
            ),
            Some(_) => format!("{} exists (not changed lately)", dir.display()),
            None => "no Litestream directory beside the database".to_owned(),
        }
    }
}

/// What a checkpoint asks of the replicas' side.
#[derive(Clone, Copy)]
pub(crate) struct Hooks<'a> {
    /// The lowest offset of index `index` (of `generation`, committed up to
    /// `len`) that some replica has not shipped, `len` when none: what the
    /// shadow file must hold, synced, before the WAL restarts.
    pub(crate) unshipped_from: &'a dyn Fn(&Generation, u64, u64) -> u64,
    /// Publishes the view just before a restart closes its index: all the
    /// index will hold (nothing can be appended under our write lock).
    pub(crate) publish: &'a dyn Fn(ShadowView),
}

/// Checkpoints in a row without a WAL restart before a warning.
pub(super) const STALLED_WARNING: u32 = 10;

/// The pages the first transaction of the WAL `header` names writes, if its
/// frames up to the first commit are valid (salts, running checksum).
pub(super) fn first_transaction_pages(
    wal: &File,
    header: &[u8; WAL_HEADER_LEN],
) -> Option<Vec<u32>> {
    let header = WalHeader::parse(header).ok()?;
    let frame_len = FRAME_HEADER_LEN + header.page_size as usize;
    let mut frame = vec![0u8; frame_len];
    let mut chain = header.checksum;
    let mut at = WAL_HEADER_LEN as u64;
    let mut pages = Vec::new();
    loop {
        wal.read_exact_at(&mut frame, at).ok()?;
        let head = &frame[..FRAME_HEADER_LEN];
        chain = header.continued_by(chain, &frame).ok()?;
        pages.push(be32(head, 0));
        if be32(head, 4) != 0 {
            return Some(pages);
        }
        at += frame_len as u64;
    }
}
