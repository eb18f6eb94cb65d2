//! The Litestream 0.5 layout: LTX files in levels, over any [`KeyStore`].
//!
//! ```text
//! file, GCS, Azure, memory:  ltx/<level>/<min>-<max>.ltx      (level in decimal)
//! S3:                        <level as 4 hex digits>/<min>-<max>.ltx
//! ```
//!
//! No generations: one lineage of transaction IDs. Level 0 holds one file
//! per sync, levels 1..=8 compactions, level 9 snapshots (min TXID 1).
//! [`LtxClient`] is the one client of this layout, written once over any key
//! store (so a backend author still writes one `KeyStore` and gets every
//! layout): it names keys by the kind of store ([`KeyShape`]), lists a level
//! sorted by TXID (junk skipped), reads whole files and byte ranges, writes
//! with the file's time kept as Litestream keeps it, and deletes. The
//! restore plan is [`plan_restore`]; decoding a stored file is
//! [`decode_file`]. The format itself is the `replica-ltx` crate, re-exported
//! as [`format`](mod@format).

mod compact;
mod decode;
mod encode;
mod plan;

use std::sync::Arc;

use chrono::{DateTime, Utc};
use futures::stream::{self, StreamExt, TryStreamExt};

pub use compact::compact;
pub use decode::{decode_file, read_header, Decoded};
pub use encode::{encode_stream, PageSource, MAX_ENCODERS};
pub use plan::{plan_restore, LtxPlan, LtxTarget};
pub use replica_ltx as format;
pub use replica_ltx::{file_name, parse_file_name, Header, TxId};

use crate::client::{collect_bytes, ByteStream};
use crate::error::{Error, Result};
use crate::store::{KeyStore, Listing, PutOptions};

/// The level of snapshots.
pub const SNAPSHOT_LEVEL: u8 = 9;
/// The highest level.
pub const MAX_LEVEL: u8 = 9;
/// The parent of the levels on stores with [`KeyShape::LtxDirs`].
pub const LTX_DIR: &str = "ltx";
/// The layout's name in URLs (`?layout=`), flags and listings.
pub const LAYOUT_NAME: &str = "litestream-0.5";

/// One LTX file as listed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LtxFileInfo {
    /// Its level (0 ..= 9).
    pub level: u8,
    /// First TXID it holds.
    pub min_txid: TxId,
    /// Last TXID it holds.
    pub max_txid: TxId,
    /// Stored bytes.
    pub size: u64,
    /// The store's time for it: a file's mtime (Litestream sets it to the
    /// header's timestamp), an object's last-modified (its upload time; the
    /// header's timestamp is in its metadata, see [`LtxClient::with_header_times`]).
    pub created_at: DateTime<Utc>,
}

impl LtxFileInfo {
    /// `L<level> <min>-<max>`, as messages name a file.
    pub fn name(&self) -> String {
        format!("L{} {}-{}", self.level, self.min_txid, self.max_txid)
    }
}

/// How a store names levels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyShape {
    /// `ltx/<level>/` (file, GCS, Azure, SFTP, WebDAV replicas of Litestream).
    LtxDirs,
    /// `<level as %04x>/` straight under the prefix (S3 and OSS replicas).
    HexLevels,
}

impl KeyShape {
    /// The shape Litestream 0.5 uses on a store of this
    /// [`kind`](KeyStore::kind).
    pub fn for_kind(kind: &str) -> KeyShape {
        if kind == "s3" {
            KeyShape::HexLevels
        } else {
            KeyShape::LtxDirs
        }
    }

    /// The directory of `level`.
    pub fn level_dir(self, level: u8) -> String {
        match self {
            KeyShape::LtxDirs => format!("{LTX_DIR}/{level}"),
            KeyShape::HexLevels => format!("{level:04x}"),
        }
    }
}

/// A replica in the Litestream 0.5 layout over any key store.
///
/// Cheap to clone; clones share the store.
#[derive(Debug, Clone)]
pub struct LtxClient {
    store: Arc<dyn KeyStore>,
    shape: KeyShape,
}

fn check_level(level: u8) -> Result<u8> {
    if level > MAX_LEVEL {
        return Err(Error::invalid(format!(
            "level {level} does not exist: levels are 0 to {MAX_LEVEL}"
        )));
    }
    Ok(level)
}

fn check_range(min: TxId, max: TxId) -> Result<()> {
    if min.0 == 0 || min > max {
        return Err(Error::invalid(format!(
            "bad TXID range {min}-{max}: TXIDs start at 1 and min must not exceed max"
        )));
    }
    Ok(())
}

impl LtxClient {
    /// A client over `store`, naming keys as Litestream does on its kind.
    pub fn new(store: Arc<dyn KeyStore>) -> Self {
        let shape = KeyShape::for_kind(store.kind());
        Self::with_shape(store, shape)
    }

    /// A client over `store` with an explicit key shape.
    pub fn with_shape(store: Arc<dyn KeyStore>, shape: KeyShape) -> Self {
        LtxClient { store, shape }
    }

    /// The backend's kind (`file`, `s3`, ...).
    pub fn kind(&self) -> &'static str {
        self.store.kind()
    }

    /// How this client names levels.
    pub fn shape(&self) -> KeyShape {
        self.shape
    }

    /// The key store underneath.
    pub fn store(&self) -> &Arc<dyn KeyStore> {
        &self.store
    }

    /// The key of a file.
    pub fn key(&self, level: u8, min: TxId, max: TxId) -> Result<String> {
        check_level(level)?;
        check_range(min, max)?;
        Ok(format!(
            "{}/{}",
            self.shape.level_dir(level),
            file_name(min, max)
        ))
    }

    fn info_key(&self, info: &LtxFileInfo) -> Result<String> {
        self.key(info.level, info.min_txid, info.max_txid)
    }

    /// The files of `level`, ascending by (min TXID, max TXID); names that
    /// are not canonical are skipped; a missing level is empty.
    pub async fn files(&self, level: u8) -> Result<Vec<LtxFileInfo>> {
        let listed = self
            .store
            .list(&self.shape.level_dir(check_level(level)?))
            .await?;
        let mut files: Vec<LtxFileInfo> = listed
            .objects
            .into_iter()
            .filter_map(|(name, meta)| {
                let (min_txid, max_txid) = parse_file_name(&name)?;
                Some(LtxFileInfo {
                    level,
                    min_txid,
                    max_txid,
                    size: meta.size,
                    created_at: meta.modified,
                })
            })
            .collect();
        files.sort_by_key(|f| (f.min_txid, f.max_txid));
        files.dedup_by_key(|f| (f.min_txid, f.max_txid));
        Ok(files)
    }

    /// The files of `level` whose min TXID is at least `seek`.
    pub async fn files_from(&self, level: u8, seek: TxId) -> Result<Vec<LtxFileInfo>> {
        let mut files = self.files(level).await?;
        let first = files.partition_point(|f| f.min_txid < seek);
        files.drain(..first);
        Ok(files)
    }

    /// The levels whose directory exists, ascending: one listing (of `ltx/`,
    /// or with hex levels of the replica's root). A level listed here may
    /// still hold no file; one not listed holds none. With hex levels the
    /// listing names everything at the top of the prefix, as Litestream's
    /// own S3 layout puts levels there: a replica keeps a prefix of its own
    /// (a bucket's root shared with other data costs a LIST per 1,000 keys
    /// there).
    pub async fn levels(&self) -> Result<Vec<u8>> {
        let parent = match self.shape {
            KeyShape::LtxDirs => LTX_DIR,
            KeyShape::HexLevels => "",
        };
        Ok(self.levels_in(&self.store.list(parent).await?))
    }

    /// The levels named in `listed`, a listing of the levels' parent: `ltx/`,
    /// or with hex levels the root (`list("")`).
    pub fn levels_in(&self, listed: &Listing) -> Vec<u8> {
        (0..=MAX_LEVEL)
            .filter(|&l| {
                let dir = self.shape.level_dir(l);
                let name = dir.rsplit('/').next().unwrap_or(&dir);
                listed.dirs.iter().any(|d| d == name)
            })
            .collect()
    }

    /// Every file of every level, by level, then TXID: one listing of the
    /// levels present, then one of each.
    pub async fn all_files(&self) -> Result<Vec<LtxFileInfo>> {
        let mut all = Vec::new();
        for level in self.levels().await? {
            all.extend(self.files(level).await?);
        }
        Ok(all)
    }

    /// Whether the store holds an LTX replica (what opening by URL detects):
    /// one listing of the levels present, then [`any_file_in`](Self::any_file_in).
    /// A file at any level counts, in either key shape (a replica holding
    /// only compactions is one).
    pub async fn holds_files(&self) -> Result<bool> {
        let levels = self.levels().await?;
        self.any_file_in(levels).await
    }

    /// Whether one of `levels` holds a file: one listing of each, snapshots
    /// first (every Litestream 0.5 replica has one, or an unsnapshotted L0),
    /// until one does.
    pub async fn any_file_in(&self, mut levels: Vec<u8>) -> Result<bool> {
        levels.sort_by_key(|&l| (l != SNAPSHOT_LEVEL, l));
        for level in levels {
            if !self.files(level).await?.is_empty() {
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// Streams a whole file; missing → [`Error::NotFound`].
    pub async fn read(&self, info: &LtxFileInfo) -> Result<ByteStream> {
        self.store.get(&self.info_key(info)?).await
    }

    /// Streams bytes `range` of a file (see [`KeyStore::get_range`]).
    pub async fn read_range(
        &self,
        info: &LtxFileInfo,
        range: std::ops::Range<u64>,
    ) -> Result<ByteStream> {
        self.store.get_range(&self.info_key(info)?, range).await
    }

    /// Stores a file at `level`, replacing any atomically, with `time` (its
    /// header's timestamp) kept as the file's mtime or the object's
    /// `litestream-timestamp` metadata.
    pub async fn write(
        &self,
        level: u8,
        min: TxId,
        max: TxId,
        data: ByteStream,
        time: DateTime<Utc>,
    ) -> Result<LtxFileInfo> {
        let key = self.key(level, min, max)?;
        let options = PutOptions { time: Some(time) };
        let meta = self.store.put_opts(&key, data, &options).await?;
        Ok(LtxFileInfo {
            level,
            min_txid: min,
            max_txid: max,
            size: meta.size,
            created_at: meta.modified,
        })
    }

    /// Deletes files; missing ones are `Ok`.
    pub async fn delete(&self, files: &[LtxFileInfo]) -> Result<()> {
        let keys = files
            .iter()
            .map(|f| self.info_key(f))
            .collect::<Result<Vec<_>>>()?;
        if keys.is_empty() {
            return Ok(());
        }
        self.store.delete(&keys).await
    }

    /// Deletes every file of every level.
    pub async fn delete_all(&self) -> Result<()> {
        match self.shape {
            KeyShape::LtxDirs => self.store.delete_all(LTX_DIR).await,
            KeyShape::HexLevels => {
                for level in self.levels().await? {
                    self.store.delete_all(&self.shape.level_dir(level)).await?;
                }
                Ok(())
            }
        }
    }

    /// The header of a file, read with one ranged request.
    pub async fn header(&self, info: &LtxFileInfo) -> Result<Header> {
        let key = self.info_key(info)?;
        let head = collect_bytes(
            self.read_range(info, 0..replica_ltx::HEADER_SIZE as u64)
                .await?,
        )
        .await?;
        read_header(&head, &key)
    }

    /// `files` with each `created_at` replaced by its header's timestamp
    /// (what point-in-time restore goes by), headers read `parallelism` at
    /// a time.
    pub async fn with_header_times(
        &self,
        files: Vec<LtxFileInfo>,
        parallelism: usize,
    ) -> Result<Vec<LtxFileInfo>> {
        stream::iter(files)
            .map(|mut info| async move {
                let header = self.header(&info).await?;
                info.created_at = header_time(&header, &info)?;
                Ok::<_, Error>(info)
            })
            .buffered(parallelism.max(1))
            .try_collect()
            .await
    }
}

/// A header's timestamp as a time; one no calendar holds is corrupt.
fn header_time(header: &Header, info: &LtxFileInfo) -> Result<DateTime<Utc>> {
    DateTime::from_timestamp_millis(header.timestamp).ok_or_else(|| Error::Corrupt {
        path: info.name(),
        message: format!("header timestamp {} ms is out of range", header.timestamp),
    })
}

/// What [`copy_ltx`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct LtxCopied {
    /// Files copied.
    pub files: u64,
    /// Stored bytes copied.
    pub bytes: u64,
    /// Files already present with the same size, skipped.
    pub skipped: u64,
}

/// Copies every LTX file of `src` to `dst`, `parallelism` at a time, each
/// under the key shape of the destination's store (`ltx/<level>/` ⇄
/// `<%04x>/`) and with its header's timestamp as its time, so that times
/// survive the copy; files already in `dst` with the same size are skipped
/// (an interrupted copy resumes).
pub async fn copy_ltx(src: &LtxClient, dst: &LtxClient, parallelism: usize) -> Result<LtxCopied> {
    let present: std::collections::HashMap<(u8, TxId, TxId), u64> = dst
        .all_files()
        .await?
        .into_iter()
        .map(|f| ((f.level, f.min_txid, f.max_txid), f.size))
        .collect();
    let mut done = LtxCopied::default();
    let todo: Vec<LtxFileInfo> = src
        .all_files()
        .await?
        .into_iter()
        .filter(|f| {
            let skip = present.get(&(f.level, f.min_txid, f.max_txid)) == Some(&f.size);
            done.skipped += u64::from(skip);
            !skip
        })
        .collect();
    let sizes: Vec<u64> = stream::iter(todo)
        .map(|info| async move {
            let header = src.header(&info).await?;
            let time = header_time(&header, &info)?;
            let data = src.read(&info).await?;
            let stored = dst
                .write(info.level, info.min_txid, info.max_txid, data, time)
                .await?;
            Ok::<_, Error>(stored.size)
        })
        .buffer_unordered(parallelism.max(1))
        .try_collect()
        .await?;
    done.files = sizes.len() as u64;
    done.bytes = sizes.iter().sum();
    Ok(done)
}
