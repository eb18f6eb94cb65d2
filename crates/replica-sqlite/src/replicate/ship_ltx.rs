//! The replica side of replication into the LTX layout (Litestream 0.5):
//! one task per replica turns what the shadow WAL holds into LTX files.
//!
//! Each round writes one L0 file per shadow index it reaches, holding the
//! newest copy of every page committed in `[shipped, end)` of that index, at
//! the next TXID, with the WAL fields Litestream fills (offset, size, salts)
//! and the round's time as both header timestamp and object time. A replica
//! without a position — no files, or a newest file whose WAL fields the
//! shadow does not continue — gets an L0 holding the whole database (as
//! Litestream's "snapshotting" sync writes); an L9 snapshot `1-TXID` is
//! written when the replica has none and every `snapshot_interval`. The
//! database side (shadow WAL, checkpoints, generations) is the 0.3
//! replicator's: a new generation there is a new whole-database L0 here,
//! TXIDs go on.

use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use replica_core::layout::format_index;
use replica_core::ltx::{compact, format, LtxClient, LtxFileInfo, TxId, SNAPSHOT_LEVEL};
use replica_core::{Error, Pos, Result};
use tokio::sync::{watch, RwLock};
use tracing::info;

use super::image::{overlay, Image};
use super::ship::{continues, index_path, io, retention_due, shadow_extent, through, Ship};
use super::tail::IndexReader;
use super::{ReplicaOptions, ShadowView, Shared};
use crate::wal::WAL_HEADER_LEN;
use replica_core::ltx::encode_stream;

/// Ships one replica in the LTX layout.
pub(crate) struct LtxShipper {
    pub(crate) slot: usize,
    pub(crate) options: ReplicaOptions,
    pub(crate) client: LtxClient,
    pub(crate) views: watch::Receiver<ShadowView>,
    pub(crate) gate: Arc<RwLock<()>>,
    pub(crate) shared: Arc<Shared>,
    /// The shadow position shipped up to.
    pub(crate) pos: Option<Pos>,
    /// The newest TXID in the replica (0: none yet).
    pub(crate) txid: u64,
    /// Whether the replica holds an L9 snapshot.
    pub(crate) has_snapshot: bool,
    pub(crate) last_snapshot: Option<Instant>,
    /// When each level (1, 2, ...) was last compacted (empty until the
    /// first round: then every level counts from the start).
    pub(crate) last_compaction: Vec<Instant>,
    /// Per level: the newest TXID of the level below when it was last
    /// brought up to date, and the newest TXID it holds, once known; a
    /// level whose source has nothing new is not even listed (an idle
    /// database costs no requests).
    pub(crate) compacted: Vec<(Option<u64>, Option<u64>)>,
    /// The max TXID of the newest snapshot (an unchanged database is not
    /// snapshotted again).
    pub(crate) snapshot_txid: u64,
    pub(crate) last_retention: Option<Instant>,
    /// Retention is skipped until this time unless files were written
    /// since its last run (nothing could have become deletable before).
    pub(crate) retention_idle_until: Option<(u64, Instant)>,
    pub(crate) shipped: u64,
}

/// Snapshots are written this often when no interval is set (Litestream
/// 0.5's `snapshot.interval` default).
const DEFAULT_SNAPSHOT_INTERVAL: Duration = Duration::from_secs(24 * 3600);

impl LtxShipper {
    /// A shipper for replica `slot` that has shipped nothing yet (its
    /// first round finds where the replica stands).
    pub(crate) fn new(
        slot: usize,
        options: ReplicaOptions,
        client: LtxClient,
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
            txid: 0,
            has_snapshot: false,
            last_snapshot: None,
            last_compaction: Vec::new(),
            compacted: Vec::new(),
            snapshot_txid: 0,
            last_retention: None,
            retention_idle_until: None,
            shipped: 0,
        }
    }

    fn publish(&self) {
        super::ship::publish(&self.shared, self.slot, &self.pos);
    }

    async fn round(&mut self) -> Result<()> {
        let mut view = self.views.borrow_and_update().clone();
        if self.pos.as_ref().map(|p| &p.generation) != Some(&view.generation) {
            self.pos = None;
            self.publish();
            self.position(&view).await?;
            view = self.views.borrow_and_update().clone();
        }
        self.ship(&view).await?;
        let interval = self
            .options
            .snapshot_interval
            .unwrap_or(DEFAULT_SNAPSHOT_INTERVAL);
        if !self.has_snapshot || self.last_snapshot.is_none_or(|at| at.elapsed() >= interval) {
            self.snapshot().await?;
        }
        self.compact_due().await?;
        let idle = self
            .retention_idle_until
            .is_some_and(|(shipped, until)| shipped == self.shipped && Instant::now() < until);
        if !idle && retention_due(&self.options, &mut self.last_retention) {
            self.enforce_retention().await?;
        }
        Ok(())
    }

    /// Compacts each level whose interval has passed into it from the level
    /// below (level 1 from L0, 2 from 1, ...).
    async fn compact_due(&mut self) -> Result<()> {
        let levels = self.options.levels.len().min(8);
        if self.last_compaction.len() != levels {
            self.last_compaction = vec![Instant::now(); levels];
            self.compacted = vec![(None, None); levels];
        }
        for i in 0..levels {
            if self.last_compaction[i].elapsed() < self.options.levels[i] {
                continue;
            }
            self.last_compaction[i] = Instant::now();
            let source = if i == 0 {
                Some(self.txid)
            } else {
                self.compacted[i - 1].1
            };
            if source.is_some() && self.compacted[i].0 == source {
                continue;
            }
            let dst = (i + 1) as u8;
            match compact(&self.client, dst - 1, dst).await? {
                Some(info) => {
                    info!(replica = %self.options.name, level = dst, min = %info.min_txid, max = %info.max_txid, bytes = info.size, "compacted");
                    self.compacted[i].1 = Some(info.max_txid.0);
                }
                // Nothing newer below: this level reaches as far.
                None => self.compacted[i].1 = self.compacted[i].1.max(source),
            }
            self.compacted[i].0 = source;
        }
        Ok(())
    }

    /// Litestream 0.5's retention with a restore grace: snapshots older than
    /// `retention` go (the newest stays, and the one before the first kept
    /// stays while that one is younger than the grace); L1+ files up to the
    /// last deleted snapshot's TXID go (each level's newest stays); L0 files
    /// older than `l0_retention` go once compacted into an L1 file that is
    /// itself older than the grace (the newest L0 stays).
    async fn enforce_retention(&mut self) -> Result<()> {
        let now = Utc::now();
        let age = |f: &LtxFileInfo| (now - f.created_at).to_std().unwrap_or_default();
        let grace = self.options.restore_grace;
        let snapshots = self.client.files(SNAPSHOT_LEVEL).await?;
        if snapshots.is_empty() {
            return Ok(());
        }
        let mut keep = snapshots
            .iter()
            .position(|s| age(s) < self.options.retention)
            .unwrap_or(snapshots.len() - 1);
        while keep > 0 && age(&snapshots[keep]) < grace {
            keep -= 1;
        }
        let mut deleted = 0;
        if keep > 0 {
            let floor = snapshots[keep - 1].max_txid;
            self.client.delete(&snapshots[..keep]).await?;
            deleted += keep;
            for level in 1..=self.options.levels.len().min(8) as u8 {
                let files = self.client.files(level).await?;
                let old: Vec<LtxFileInfo> = files
                    .iter()
                    .take(files.len().saturating_sub(1))
                    .filter(|f| f.max_txid < floor)
                    .cloned()
                    .collect();
                deleted += old.len();
                self.client.delete(&old).await?;
            }
        }
        let l1 = self.client.files(1).await?;
        let mut l0 = Vec::new();
        if !l1.is_empty() {
            l0 = self.client.files(0).await?;
            let mut old = Vec::new();
            for f in l0.iter().take(l0.len().saturating_sub(1)) {
                if age(f) < self.options.l0_retention {
                    break;
                }
                let covered = l1
                    .iter()
                    .find(|c| c.min_txid <= f.min_txid && f.max_txid <= c.max_txid);
                match covered {
                    Some(c) if age(c) >= grace => old.push(f.clone()),
                    _ => break,
                }
            }
            deleted += old.len();
            self.client.delete(&old).await?;
            l0.drain(..old.len());
        }
        if deleted > 0 {
            info!(replica = %self.options.name, files = deleted, "retention: deleted files no restore needs");
        }
        // The earliest moment a file kept now could become deletable.
        let waits = snapshots
            .iter()
            .flat_map(|f| [self.options.retention, grace].map(|d| (f, d)))
            .chain(l1.iter().map(|f| (f, grace)))
            .chain(l0.iter().map(|f| (f, self.options.l0_retention)))
            .filter_map(|(f, d)| d.checked_sub(age(f)))
            .filter(|w| !w.is_zero())
            .min()
            // Nothing pending: only new files can make anything deletable.
            .unwrap_or(Duration::from_secs(365 * 24 * 3600));
        self.retention_idle_until = Some((self.shipped, Instant::now() + waits));
        Ok(())
    }

    /// Where the replica stands: after its newest file, if the shadow
    /// continues that file's WAL; else a whole-database L0 starts anew.
    async fn position(&mut self, view: &ShadowView) -> Result<()> {
        let files = self.client.all_files().await?;
        self.has_snapshot = files.iter().any(|f| f.level == SNAPSHOT_LEVEL);
        self.snapshot_txid = files
            .iter()
            .filter(|f| f.level == SNAPSHOT_LEVEL)
            .map(|f| f.max_txid.0)
            .max()
            .unwrap_or(0);
        if let Some(at) = files
            .iter()
            .filter(|f| f.level == SNAPSHOT_LEVEL)
            .map(|f| f.created_at)
            .max()
        {
            let age = (Utc::now() - at).to_std().unwrap_or_default();
            self.last_snapshot = Some(Instant::now().checked_sub(age).unwrap_or_else(Instant::now));
        }
        // The newest file; an L0 rather than a snapshot of the same TXID.
        let newest = files
            .iter()
            .max_by_key(|f| (f.max_txid, std::cmp::Reverse(f.level)));
        let Some(newest) = newest else {
            self.txid = 0;
            return self.whole().await;
        };
        self.txid = newest.max_txid.0;
        let header = self.client.header(newest).await?;
        let salts = (header.wal_salt1, header.wal_salt2);
        let end = u64::try_from(header.wal_offset.saturating_add(header.wal_size)).unwrap_or(0);
        for index in view.first_index..=view.index {
            let path = index_path(view, index);
            let Ok(file) = std::fs::File::open(&path) else {
                continue;
            };
            let len = if index == view.index {
                view.len
            } else {
                file.metadata().map(|m| m.len()).unwrap_or(0)
            };
            let mut head = [0u8; WAL_HEADER_LEN];
            use std::os::unix::fs::FileExt;
            if file.read_exact_at(&mut head, 0).is_err() {
                continue;
            }
            let Ok(wal) = crate::wal::WalHeader::parse(&head) else {
                continue;
            };
            if header.wal_offset > 0 && wal.salts == salts && continues(view, index, end, len) {
                info!(replica = %self.options.name, txid = %TxId(self.txid), index = %format_index(index), offset = %format_index(end), "continuing the replica");
                self.pos = Some(Pos::new(view.generation.clone(), index, end)?);
                self.publish();
                return Ok(());
            }
        }
        self.whole().await
    }

    /// An L0 at the next TXID holding the whole database as of the view.
    async fn whole(&mut self) -> Result<()> {
        let turn = super::image::turn().await;
        let (_gate, view, db_file) =
            super::snapshot_gate(&self.gate, &self.views, &self.shared).await?;
        let txid = self.txid + 1;
        let at = Utc::now();
        let image = open_image(&view, db_file)?;
        let header = image_header(&image, txid, txid, view.len, at);
        self.write(0, header, image_pages(image, turn), at).await?;
        info!(replica = %self.options.name, txid = %TxId(txid), generation = %view.generation, "whole database written (a new position)");
        self.txid = txid;
        self.pos = Some(Pos::new(view.generation.clone(), view.index, view.len)?);
        self.publish();
        Ok(())
    }

    /// An L9 snapshot `1-TXID` of the database as of the newest TXID.
    async fn snapshot(&mut self) -> Result<()> {
        let turn = super::image::turn().await;
        let (_gate, view, db_file) =
            super::snapshot_gate(&self.gate, &self.views, &self.shared).await?;
        if self.pos.as_ref().map(|p| &p.generation) != Some(&view.generation) {
            return Ok(());
        }
        // The snapshot is the state at the newest TXID: ship up to the view
        // first (no checkpoint moves the database file meanwhile).
        self.ship(&view).await?;
        if self.txid == 0 {
            return Ok(());
        }
        if self.txid == self.snapshot_txid {
            // Nothing changed since the newest snapshot.
            self.last_snapshot = Some(Instant::now());
            return Ok(());
        }
        let at = Utc::now();
        let image = open_image(&view, db_file)?;
        let header = image_header(&image, 1, self.txid, view.len, at);
        self.write(SNAPSHOT_LEVEL, header, image_pages(image, turn), at)
            .await?;
        info!(replica = %self.options.name, txid = %TxId(self.txid), "snapshot written");
        self.has_snapshot = true;
        self.snapshot_txid = self.txid;
        self.last_snapshot = Some(Instant::now());
        Ok(())
    }

    async fn write(
        &mut self,
        level: u8,
        header: format::Header,
        pages: replica_core::ltx::PageSource,
        at: chrono::DateTime<Utc>,
    ) -> Result<()> {
        let (min, max) = (header.min_txid, header.max_txid);
        let data = encode_stream(header, pages);
        let bytes = u64::from(header.commit) * u64::from(header.page_size);
        let written = super::ship::bounded(
            || format!("writing TXIDs {min}-{max} at level {level}"),
            bytes,
            self.client.write(level, min, max, data, at),
        )
        .await;
        written?;
        self.shipped += 1;
        Ok(())
    }

    /// One L0 per shadow index with committed bytes beyond the position (or
    /// per `max_sync_wal_bytes` of them, cut at a commit frame). What the
    /// index a restart just closed holds beyond the position goes into the
    /// same L0 as the current index (one upload a round, as Litestream's one
    /// L0 a sync; the header's WAL fields are the current index's).
    async fn ship(&mut self, view: &ShadowView) -> Result<()> {
        loop {
            let Some(pos) = self.pos.clone() else {
                return Ok(());
            };
            let Some((_, full)) = shadow_extent(view, &pos).await? else {
                return Ok(());
            };
            let start = pos.offset.max(WAL_HEADER_LEN as u64);
            if start < full {
                let read = |index: u64, from: u64, to: u64| {
                    let context = || format!("reading {}", index_path(view, index).display());
                    let shadow = IndexReader::open(view, index, from, to).map_err(io(context()))?;
                    let to = match self.options.max_sync_wal_bytes {
                        Some(max) => commit_cut(&shadow, from, to, max).map_err(io(context()))?,
                        None => to,
                    };
                    let overlay = overlay(&shadow, from, to).map_err(io(context()))?;
                    Ok::<_, Error>(Part {
                        index,
                        from,
                        to,
                        shadow,
                        overlay,
                    })
                };
                let mut parts = vec![read(pos.index, start, full)?];
                let whole = parts[0].to == full && self.options.max_sync_wal_bytes.is_none();
                if whole && pos.index + 1 == view.index && view.len > WAL_HEADER_LEN as u64 {
                    let next = read(view.index, 0, view.len)?;
                    if next.overlay.page_size == parts[0].overlay.page_size {
                        parts.push(next);
                    }
                }
                let last = parts.last().expect("one part at least");
                let (end_index, end) = (last.index, last.to);
                let (offset, salts) = (
                    last.from.max(WAL_HEADER_LEN as u64),
                    last.overlay.header.salts,
                );
                let bytes: u64 = parts
                    .iter()
                    .map(|p| p.to - p.from.max(WAL_HEADER_LEN as u64))
                    .sum();
                if let Some(commit) = parts.iter().rev().find_map(|p| p.overlay.db_pages) {
                    let page_size = parts[0].overlay.header.page_size;
                    let txid = self.txid + 1;
                    let at = Utc::now();
                    let mut header = format::Header::new(page_size, commit, txid, txid);
                    header.timestamp = at.timestamp_millis();
                    header.wal_offset = offset as i64;
                    header.wal_size = (end - offset) as i64;
                    (header.wal_salt1, header.wal_salt2) = salts;
                    let source = page_source(parts, commit, page_size);
                    self.write(0, header, source, at).await?;
                    self.txid = txid;
                    self.shared.replicas[self.slot].shipped(bytes);
                    let through = through(view, end_index, end);
                    info!(
                        replica = %self.options.name,
                        txid = %TxId(txid),
                        generation = %pos.generation,
                        index = %format_index(end_index),
                        offset = %format_index(offset),
                        end = %format_index(end),
                        from_index = %format_index(pos.index),
                        from_offset = %format_index(start),
                        through = through.as_deref().unwrap_or(""),
                        "ltx shipped"
                    );
                }
                self.pos = Some(Pos::new(pos.generation.clone(), end_index, end)?);
                self.publish();
                // A piece (`max_sync_wal_bytes`), or through the current index.
                if end < full || end_index != pos.index {
                    continue;
                }
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
                    super::ship::caught_up(&self.shared, self.slot, view);
                }
                return Ok(());
            }
        }
    }
}

/// The committed frames `[from, to)` of one shadow index, read for an L0.
struct Part {
    index: u64,
    from: u64,
    to: u64,
    shadow: IndexReader,
    overlay: super::image::Overlay,
}

/// The pages of an L0 built from `parts` (later parts' copies win), up to
/// page `commit`, without the lock page, in page order.
fn page_source(parts: Vec<Part>, commit: u32, page_size: u32) -> replica_core::ltx::PageSource {
    let lock = format::lock_pgno(page_size);
    let mut newest: std::collections::HashMap<u32, (usize, u64)> = std::collections::HashMap::new();
    for (i, part) in parts.iter().enumerate() {
        for (&pgno, &at) in &part.overlay.pages {
            newest.insert(pgno, (i, at));
        }
    }
    let mut pages: Vec<(u32, (usize, u64))> = newest
        .into_iter()
        .filter(|(p, _)| *p <= commit && *p != lock)
        .collect();
    pages.sort_unstable();
    let readers: Vec<IndexReader> = parts.into_iter().map(|p| p.shadow).collect();
    Box::new(move |encode| {
        let mut page = vec![0u8; page_size as usize];
        for (pgno, (i, at)) in pages {
            readers[i]
                .read_exact_at(&mut page, at)
                .map_err(|e| Error::io("reading the shadow WAL", e))?;
            encode(pgno, &page)?;
        }
        Ok(())
    })
}

/// Where to end a sync of the committed frames `[start, end)` of `shadow`
/// holding at most about `max` bytes: after the first commit frame at or
/// past `max` bytes (so a transaction is never split), else `end`.
fn commit_cut(shadow: &IndexReader, start: u64, end: u64, max: u64) -> std::io::Result<u64> {
    let mut head = [0u8; WAL_HEADER_LEN];
    shadow.read_exact_at(&mut head, 0)?;
    let page_size = u64::from(u32::from_be_bytes(head[8..12].try_into().expect("4 bytes")));
    let frame = crate::wal::FRAME_HEADER_LEN as u64 + page_size;
    let mut at = start;
    let mut fh = [0u8; 8];
    while at + frame <= end {
        shadow.read_exact_at(&mut fh, at)?;
        at += frame;
        let commit = u32::from_be_bytes(fh[4..8].try_into().expect("4 bytes"));
        if commit != 0 && at - start >= max {
            return Ok(at);
        }
    }
    Ok(end)
}

fn open_image(view: &ShadowView, db_file: Arc<std::fs::File>) -> Result<Image> {
    IndexReader::open(view, view.index, 0, view.len)
        .and_then(|shadow| Image::open(db_file, shadow, view.len))
        .map_err(|e| Error::io("reading a snapshot of the database", e))
}

/// The header of a file holding the whole database `image` (TXIDs
/// `min..=max`), with the WAL fields of the shadow index up to `len`.
fn image_header(
    image: &Image,
    min: u64,
    max: u64,
    len: u64,
    at: chrono::DateTime<Utc>,
) -> format::Header {
    let mut header = format::Header::new(image.page_size(), image.pages(), min, max);
    header.timestamp = at.timestamp_millis();
    if len > WAL_HEADER_LEN as u64 {
        header.wal_offset = WAL_HEADER_LEN as i64;
        header.wal_size = (len - WAL_HEADER_LEN as u64) as i64;
        (header.wal_salt1, header.wal_salt2) = image.wal_header().salts;
    }
    header
}

/// Every page of `image` but the lock page, in order.
/// The pages of `image`, read by the encoder's blocking thread, which
/// holds `turn` until they are all read.
fn image_pages(image: Image, turn: super::image::Turn) -> replica_core::ltx::PageSource {
    Box::new(move |encode| {
        let _turn = turn;
        let lock = format::lock_pgno(image.page_size());
        let mut page = vec![0u8; image.page_size() as usize];
        for pgno in (1..=image.pages()).filter(|p| *p != lock) {
            image
                .read_page(pgno, &mut page)
                .map_err(|e| Error::io("reading a snapshot of the database", e))?;
            encode(pgno, &page)?;
        }
        Ok(())
    })
}

#[replica_core::async_trait]
impl Ship for LtxShipper {
    fn name(&self) -> &str {
        &self.options.name
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
    fn txid(&self) -> Option<u64> {
        Some(self.txid)
    }
    async fn sync(&mut self) -> Result<()> {
        self.round().await
    }
    fn next_due(&self) -> Option<Duration> {
        let now = Instant::now();
        let after = |last: Option<Instant>, every: Duration| {
            last.map_or(Duration::ZERO, |at| every.saturating_sub(at.elapsed()))
        };
        let mut due = Vec::new();
        if !self.options.retention.is_zero() {
            match self.retention_idle_until {
                Some((shipped, until)) if shipped == self.shipped => {
                    due.push(until.saturating_duration_since(now));
                }
                _ => due.push(after(
                    self.last_retention,
                    self.options.retention_check_interval,
                )),
            }
        }
        for (i, every) in self.options.levels.iter().take(8).enumerate() {
            let (Some(last), Some(done)) = (self.last_compaction.get(i), self.compacted.get(i))
            else {
                continue;
            };
            let source = if i == 0 {
                Some(self.txid)
            } else {
                self.compacted[i - 1].1
            };
            if source.is_none() || done.0 != source {
                due.push(every.saturating_sub(last.elapsed()));
            }
        }
        if self.txid != self.snapshot_txid {
            let every = self
                .options
                .snapshot_interval
                .unwrap_or(DEFAULT_SNAPSHOT_INTERVAL);
            due.push(after(self.last_snapshot, every));
        }
        due.into_iter().min()
    }
    async fn final_sync(&mut self) -> Result<()> {
        let view = self.views.borrow().clone();
        if self.pos.as_ref().map(|p| &p.generation) != Some(&view.generation) {
            self.pos = None;
            self.position(&view).await?;
        }
        self.ship(&view).await
    }
}

#[cfg(test)]
mod tests {
    use super::super::ship::tests::{frame_at, view_after_a_spill};
    use super::*;

    /// RELIABILITY.md's second defensive check, for LTX: a replica whose
    /// newest file ends (its WAL fields) in the hole of a closed index's
    /// shadow file (the store rolled back since the restart) is not
    /// continued; a whole-database L0 is to start anew (here the database
    /// task is gone, so that fails: no position is taken). One ending
    /// where the file holds a frame is continued there.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_end_in_the_hole_of_a_closed_index_is_not_continued() {
        let dir = tempfile::tempdir().unwrap();
        let (view, wal) = view_after_a_spill(dir.path());
        for (end, continued) in [(frame_at(1), false), (frame_at(2), true)] {
            let client = LtxClient::new(Arc::new(replica_memory::MemoryStore::default()));
            let mut header = format::Header::new(512, 2, 1, 1);
            header.timestamp = Utc::now().timestamp_millis();
            header.wal_offset = WAL_HEADER_LEN as i64;
            header.wal_size = (end - WAL_HEADER_LEN as u64) as i64;
            (header.wal_salt1, header.wal_salt2) = wal.salts;
            let pages: replica_core::ltx::PageSource = Box::new(|encode| {
                encode(1, &[1u8; 512])?;
                encode(2, &[2u8; 512])
            });
            client
                .write(
                    0,
                    TxId(1),
                    TxId(1),
                    encode_stream(header, pages),
                    Utc::now(),
                )
                .await
                .unwrap();
            let shared = Arc::new(Shared::new(1, Default::default()));
            let (tx, views) = watch::channel(view.clone());
            drop(tx);
            let mut shipper = LtxShipper::new(
                0,
                ReplicaOptions::default(),
                client,
                views,
                Default::default(),
                shared,
            );
            let result = shipper.position(&view).await;
            if continued {
                result.unwrap();
                assert_eq!(
                    shipper.pos,
                    Some(Pos::new(view.generation.clone(), 0, end).unwrap())
                );
            } else {
                let err = result.expect_err("an end in the hole was continued");
                assert!(
                    err.to_string().contains("database task has stopped"),
                    "{err}"
                );
                assert_eq!(shipper.pos, None);
            }
            assert_eq!(shipper.txid, 1);
        }
    }
}
