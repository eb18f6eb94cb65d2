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
use replica_core::ltx::{format, LtxClient, TxId, SNAPSHOT_LEVEL};
use replica_core::{Error, Pos, Result};
use tokio::sync::{watch, RwLock};
use tracing::info;

use super::image::{overlay, Image};
use super::ship::{index_path, shadow_extent, through, Ship};
use super::{ReplicaOptions, ShadowView, Shared};
use crate::ltx_write::encode_stream;
use crate::wal::WAL_HEADER_LEN;

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
    pub(crate) shipped: u64,
}

fn io(context: String) -> impl FnOnce(std::io::Error) -> Error {
    move |e| Error::io(context, e)
}

impl LtxShipper {
    fn publish(&self) {
        let mut positions = self
            .shared
            .positions
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        positions[self.slot] = self.pos.clone();
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
        let due = match self.options.snapshot_interval {
            _ if !self.has_snapshot => true,
            Some(interval) => self.last_snapshot.is_none_or(|at| at.elapsed() >= interval),
            None => false,
        };
        if due {
            self.snapshot().await?;
        }
        Ok(())
    }

    /// Where the replica stands: after its newest file, if the shadow
    /// continues that file's WAL; else a whole-database L0 starts anew.
    async fn position(&mut self, view: &ShadowView) -> Result<()> {
        let files = self.client.all_files().await?;
        self.has_snapshot = files.iter().any(|f| f.level == SNAPSHOT_LEVEL);
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
            if header.wal_offset > 0 && wal.salts == salts && end <= len {
                info!(replica = %self.options.name, txid = %TxId(self.txid), index, offset = end, "continuing the replica");
                self.pos = Some(Pos::new(view.generation.clone(), index, end)?);
                self.publish();
                return Ok(());
            }
        }
        self.whole().await
    }

    /// An L0 at the next TXID holding the whole database as of the view.
    async fn whole(&mut self) -> Result<()> {
        let _gate = self.gate.clone().read_owned().await;
        let view = self.views.borrow().clone();
        let txid = self.txid + 1;
        let at = Utc::now();
        let image = open_image(&view)?;
        let header = image_header(&image, txid, txid, view.len, at);
        self.write(0, header, image_pages(image), at).await?;
        info!(replica = %self.options.name, txid = %TxId(txid), generation = %view.generation, "whole database written (a new position)");
        self.txid = txid;
        self.pos = Some(Pos::new(view.generation.clone(), view.index, view.len)?);
        self.publish();
        Ok(())
    }

    /// An L9 snapshot `1-TXID` of the database as of the newest TXID.
    async fn snapshot(&mut self) -> Result<()> {
        let _gate = self.gate.clone().read_owned().await;
        let view = self.views.borrow().clone();
        if self.pos.as_ref().map(|p| &p.generation) != Some(&view.generation) {
            return Ok(());
        }
        // The snapshot is the state at the newest TXID: ship up to the view
        // first (no checkpoint moves the database file meanwhile).
        self.ship(&view).await?;
        if self.txid == 0 {
            return Ok(());
        }
        let at = Utc::now();
        let image = open_image(&view)?;
        let header = image_header(&image, 1, self.txid, view.len, at);
        self.write(SNAPSHOT_LEVEL, header, image_pages(image), at)
            .await?;
        info!(replica = %self.options.name, txid = %TxId(self.txid), "snapshot written");
        self.has_snapshot = true;
        self.last_snapshot = Some(Instant::now());
        Ok(())
    }

    async fn write(
        &mut self,
        level: u8,
        header: format::Header,
        pages: crate::ltx_write::PageSource,
        at: chrono::DateTime<Utc>,
    ) -> Result<()> {
        let (min, max) = (header.min_txid, header.max_txid);
        let data = encode_stream(header, pages);
        self.client.write(level, min, max, data, at).await?;
        self.shipped += 1;
        Ok(())
    }

    /// One L0 per shadow index with committed bytes beyond the position.
    async fn ship(&mut self, view: &ShadowView) -> Result<()> {
        loop {
            let Some(pos) = self.pos.clone() else {
                return Ok(());
            };
            let Some((path, len)) = shadow_extent(view, &pos).await? else {
                return Ok(());
            };
            let start = pos.offset.max(WAL_HEADER_LEN as u64);
            if start < len {
                let shadow = std::fs::File::open(&path)
                    .map_err(io(format!("opening {}", path.display())))?;
                let overlay = overlay(&shadow, start, len)
                    .map_err(io(format!("reading {}", path.display())))?;
                if let Some(commit) = overlay.db_pages {
                    let txid = self.txid + 1;
                    let at = Utc::now();
                    let mut header =
                        format::Header::new(overlay.header.page_size, commit, txid, txid);
                    header.timestamp = at.timestamp_millis();
                    header.wal_offset = start as i64;
                    header.wal_size = (len - start) as i64;
                    (header.wal_salt1, header.wal_salt2) = overlay.header.salts;
                    let lock = format::lock_pgno(overlay.header.page_size);
                    let mut pages: Vec<(u32, u64)> = overlay
                        .pages
                        .into_iter()
                        .filter(|(p, _)| *p <= commit && *p != lock)
                        .collect();
                    pages.sort_unstable();
                    let page_size = overlay.header.page_size as usize;
                    let source: crate::ltx_write::PageSource = Box::new(move |encode| {
                        use std::os::unix::fs::FileExt;
                        let mut page = vec![0u8; page_size];
                        for (pgno, at) in pages {
                            shadow
                                .read_exact_at(&mut page, at)
                                .map_err(|e| Error::io("reading the shadow WAL", e))?;
                            encode(pgno, &page)?;
                        }
                        Ok(())
                    });
                    self.write(0, header, source, at).await?;
                    self.txid = txid;
                    let through = through(view, pos.index, len);
                    info!(
                        replica = %self.options.name,
                        txid = %TxId(txid),
                        generation = %pos.generation,
                        index = pos.index,
                        offset = start,
                        end = len,
                        through = through.as_deref().unwrap_or(""),
                        "ltx shipped"
                    );
                }
                self.pos = Some(Pos::new(pos.generation.clone(), pos.index, len)?);
                self.publish();
            }
            if pos.index < view.index {
                self.pos = Some(Pos::new(pos.generation.clone(), pos.index + 1, 0)?);
                self.publish();
            } else {
                return Ok(());
            }
        }
    }
}

fn open_image(view: &ShadowView) -> Result<Image> {
    let shadow = index_path(view, view.index);
    Image::open(view.db_file.clone(), &shadow, view.len)
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
fn image_pages(image: Image) -> crate::ltx_write::PageSource {
    Box::new(move |encode| {
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
    async fn sync(&mut self) -> Result<()> {
        self.round().await
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
