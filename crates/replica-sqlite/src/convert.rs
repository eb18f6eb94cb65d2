//! Conversion that keeps history: a generation of a Litestream 0.3 / 0.4
//! replica turned into a Litestream 0.5 (LTX) replica that `litestream
//! restore` 0.5 restores at every commit after the first snapshot's index.
//!
//! The state at the end of the generation's first snapshot's index becomes
//! the L9 snapshot `1-1` (TXID 1): Litestream 0.3 takes a snapshot while
//! that index is written, so the snapshot alone may already hold some of its
//! transactions, and only the index's end is a state a restore could reach.
//! Then every committed transaction of the following WAL indexes, in order,
//! becomes one L0 file
//! `T-T` holding the newest version of each page it wrote, with the WAL
//! offset, size and salts it came from and the segment's time as its
//! timestamp (so `-timestamp` restores work). At each later snapshot of the
//! source, an L9 file `1-T` of the state reached is written (built from the
//! converted history itself, not copied, so its TXID is exact). The WAL is
//! checked as restore checks it (contiguity, salts, running checksums);
//! frames after the last commit of the newest index (a transaction still
//! being shipped) are left out. No compaction levels are written.
//!
//! A conversion that fails deletes every file it wrote; the destination must
//! hold no LTX files to begin with.

use std::os::unix::fs::FileExt;
use std::sync::Arc;

use bytes::Bytes;
use chrono::{DateTime, Utc};
use futures::TryStreamExt;
use replica_core::ltx::{format, LtxClient, LtxFileInfo, TxId, SNAPSHOT_LEVEL};
use replica_core::{ByteStream, Error, Generation, ReplicaClient, ReplicaClientExt, WalContiguity};

use crate::restore::{apply_error, apply_stored, io, read_page_size, RestoreError};
use crate::wal::{FilePages, Transaction, WalApplier};

/// What a conversion wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Converted {
    /// The generation converted.
    pub generation: Generation,
    /// L9 snapshots written.
    pub snapshots: u64,
    /// L0 files written (one per transaction).
    pub transactions: u64,
    /// The newest TXID.
    pub txid: TxId,
    /// Stored bytes written.
    pub bytes: u64,
}

/// A transaction of the source, ready to encode.
struct Txn {
    pages: std::collections::BTreeMap<u32, Bytes>,
    commit: u32,
    wal_offset: u64,
    wal_size: u64,
    salts: (u32, u32),
}

fn txn(t: &Transaction<'_>, lock: u32) -> std::io::Result<Txn> {
    let mut pages = std::collections::BTreeMap::new();
    for frame in t.frames() {
        let (_, pgno, page) = frame?;
        if pgno <= t.commit && pgno != lock {
            pages.insert(pgno, page);
        }
    }
    Ok(Txn {
        pages,
        commit: t.commit,
        wal_offset: t.start(),
        wal_size: t.end - t.start(),
        salts: t.salts,
    })
}

fn millis(at: DateTime<Utc>) -> i64 {
    at.timestamp_millis()
}

/// Encodes one transaction as an L0 file.
fn encode_l0(t: &Txn, txid: TxId, page_size: u32, at: DateTime<Utc>) -> Result<Bytes, Error> {
    let mut header = format::Header::new(page_size, t.commit, txid.0, txid.0);
    header.timestamp = millis(at);
    header.wal_offset = t.wal_offset as i64;
    header.wal_size = t.wal_size as i64;
    (header.wal_salt1, header.wal_salt2) = t.salts;
    let encode = || -> format::Result<Vec<u8>> {
        let mut enc = format::Encoder::new(Vec::new(), header)?;
        for (pgno, page) in &t.pages {
            enc.encode_page(*pgno, page)?;
        }
        Ok(enc.finish(0)?.1)
    };
    encode()
        .map(Bytes::from)
        .map_err(|e| Error::invalid(format!("encoding TXID {txid}: {e}")))
}

/// An L9 snapshot `1-txid` of the database in `image`, encoded as the
/// stream is read (one page and one chunk in memory).
fn snapshot_stream(
    image: Arc<std::fs::File>,
    page_size: u32,
    pages: u32,
    txid: TxId,
    at: DateTime<Utc>,
) -> ByteStream {
    let mut header = format::Header::new(page_size, pages, 1, txid.0);
    header.timestamp = millis(at);
    let lock = format::lock_pgno(page_size);
    replica_core::ltx::encode_stream(
        header,
        Box::new(move |encode| {
            let mut page = vec![0u8; page_size as usize];
            for pgno in (1..=pages).filter(|p| *p != lock) {
                image
                    .read_exact_at(&mut page, u64::from(pgno - 1) * u64::from(page_size))
                    .map_err(|e| Error::io("reading the converted database", e))?;
                encode(pgno, &page)?;
            }
            Ok(())
        }),
    )
}

/// The time of the snapshot due when an index ends: the base snapshot until
/// it is written, then a later source snapshot's if one is pending; never
/// before the newest segment already converted.
fn due(
    base_written: bool,
    pending: &mut Option<DateTime<Utc>>,
    last_time: DateTime<Utc>,
) -> Option<DateTime<Utc>> {
    let at = if base_written {
        pending.take()
    } else {
        Some(last_time)
    };
    at.map(|at| at.max(last_time))
}

/// Converts `generation` (default: the latest) of `src` into the empty LTX
/// replica `dst`; see the module docs.
pub async fn convert_to_ltx(
    src: &dyn ReplicaClient,
    generation: Option<Generation>,
    dst: &LtxClient,
) -> Result<Converted, RestoreError> {
    if !dst.all_files().await?.is_empty() {
        return Err(Error::invalid(
            "the destination already holds LTX files: convert into an empty location (one \
             lineage of TXIDs cannot take a second history)",
        )
        .into());
    }
    let generation = match generation {
        Some(g) => g,
        None => src.latest_generation().await?.ok_or_else(|| {
            RestoreError::NoReplica(format!(
                "no generations found (read as the {} layout)",
                src.layout()
            ))
        })?,
    };
    let snapshots = src.snapshots(&generation).await?;
    let Some(first) = snapshots.first().cloned() else {
        return Err(Error::not_found(format!("a snapshot of generation {generation}")).into());
    };
    let mut written: Vec<LtxFileInfo> = Vec::new();
    let outcome = convert(src, &generation, &snapshots, &first, dst, &mut written).await;
    match outcome {
        Err(e) if !written.is_empty() => {
            // Nothing half-converted is left behind; a cleanup that fails
            // is said, with what to remove.
            match dst.delete(&written).await {
                Ok(()) => Err(e),
                Err(cleanup) => Err(RestoreError::Replica(Error::invalid(format!(
                    "{e}; removing the {} LTX files already written failed too ({cleanup}): \
                     delete the destination's ltx files by hand before converting again",
                    written.len()
                )))),
            }
        }
        other => other,
    }
}

async fn convert(
    src: &dyn ReplicaClient,
    generation: &Generation,
    snapshots: &[replica_core::SnapshotInfo],
    first: &replica_core::SnapshotInfo,
    dst: &LtxClient,
    written: &mut Vec<LtxFileInfo>,
) -> Result<Converted, RestoreError> {
    let image = tempfile::tempfile().map_err(io("creating a temporary database"))?;
    let mut plain = src.snapshot_plain(generation, first.index).await?;
    while let Some(chunk) = plain.try_next().await? {
        use std::io::Write;
        (&image)
            .write_all(&chunk)
            .map_err(io("writing a temporary database"))?;
    }
    let page_size = read_page_size(&image)?.ok_or_else(|| RestoreError::NotADatabase {
        generation: generation.clone(),
        index: first.index,
    })?;
    let image = Arc::new(image);
    let pages_of = |image: &std::fs::File| -> Result<u32, RestoreError> {
        let len = image
            .metadata()
            .map_err(io("sizing the temporary database"))?
            .len();
        Ok((len / u64::from(page_size)) as u32)
    };
    let mut summary = Converted {
        generation: generation.clone(),
        snapshots: 0,
        transactions: 0,
        txid: TxId(1),
        bytes: 0,
    };
    // Every file is recorded before its write starts, so a write that
    // fails after the object became visible is cleaned up too.
    let planned = |level: u8, min: TxId, max: TxId, at: DateTime<Utc>| LtxFileInfo {
        level,
        min_txid: min,
        max_txid: max,
        size: 0,
        created_at: at,
    };
    let put_snapshot = |txid: TxId, at: DateTime<Utc>| {
        let image = image.clone();
        async move {
            let pages = pages_of(&image)?;
            let stream = snapshot_stream(image.clone(), page_size, pages, txid, at);
            Ok::<_, RestoreError>(dst.write(SNAPSHOT_LEVEL, TxId(1), txid, stream, at).await?)
        }
    };

    let lock = format::lock_pgno(page_size);
    let later: Vec<u64> = snapshots.iter().skip(1).map(|s| s.index).collect();
    let mut contiguity = WalContiguity::from_snapshot(generation.clone(), first.index);
    let mut cursor = src.wal_segments(generation).await?;
    let mut current: Option<(u64, WalApplier)> = None;
    let mut txid = TxId(1);
    let mut l0_bytes = 0u64;
    let mut l0_count = 0u64;
    // A Litestream 0.3 snapshot named after index k is taken while index k
    // is being written, so it may already hold some of k's transactions:
    // TXID 1 is the state at the *end* of the first snapshot's index (the
    // snapshot with that index's WAL laid over it), and L0 files begin with
    // the next index. Later snapshots are built the same way, from the
    // replayed image at the end of the index before theirs.
    let mut base_written = false;
    let mut last_time = first.created_at;
    let mut pending_snapshot: Option<DateTime<Utc>> = None;
    while let Some(info) = cursor.next().await {
        let info = info?;
        if info.index < first.index {
            continue;
        }
        let key = src.layout().wal_segment_key(&info.pos())?;
        let stored =
            replica_core::collect_bytes(src.wal_segment_reader(&info.pos()).await?).await?;
        contiguity.check_start(&info)?;
        if current
            .as_ref()
            .is_none_or(|(index, _)| *index != info.index)
        {
            if let Some((index, done)) = current.take() {
                done.finish(&mut FilePages::new(&image, page_size), false)
                    .map_err(|e| apply_error(generation, index, e))?;
                // An index ended: the base snapshot, or a later one, is due.
                if let Some(at) = due(base_written, &mut pending_snapshot, last_time) {
                    written.push(planned(SNAPSHOT_LEVEL, TxId(1), txid, at));
                    let stored = put_snapshot(txid, at).await?;
                    summary.snapshots += 1;
                    summary.bytes += stored.size;
                    base_written = true;
                }
            }
            let before = u64::from(pages_of(&image)?);
            current = Some((info.index, WalApplier::new(page_size, before)));
        }
        let (index, applier) = current.as_mut().expect("set above");
        let mut txns = Vec::new();
        let len = apply_stored(applier, &stored, &key, &mut |applier, piece| {
            applier
                .apply_segment_observed(&piece, &mut FilePages::new(&image, page_size), &mut |t| {
                    txns.push(txn(t, lock)?);
                    Ok(())
                })
                .map_err(|e| apply_error(generation, *index, e))
        })?;
        contiguity.extend(&info, len);
        last_time = last_time.max(info.created_at);
        if *index == first.index {
            // Part of TXID 1, not transactions of their own.
            continue;
        }
        for t in txns {
            txid = TxId(txid.0 + 1);
            let file = encode_l0(&t, txid, page_size, info.created_at)?;
            written.push(planned(0, txid, txid, info.created_at));
            let stored = dst
                .write(
                    0,
                    txid,
                    txid,
                    replica_core::bytes_stream(file),
                    info.created_at,
                )
                .await?;
            l0_bytes += stored.size;
            l0_count += 1;
        }
        // A later snapshot of the source is the state at the end of the
        // index before its own: written once that index is finished.
        if later.contains(&(info.index + 1)) {
            pending_snapshot = snapshots
                .iter()
                .find(|s| s.index == info.index + 1)
                .map(|s| s.created_at);
        }
    }
    if let Some((index, done)) = current.take() {
        done.finish(&mut FilePages::new(&image, page_size), true)
            .map_err(|e| apply_error(generation, index, e))?;
    }
    if let Some(at) = due(base_written, &mut pending_snapshot, last_time) {
        written.push(planned(SNAPSHOT_LEVEL, TxId(1), txid, at));
        let stored = put_snapshot(txid, at).await?;
        summary.snapshots += 1;
        summary.bytes += stored.size;
    }
    summary.transactions = l0_count;
    summary.bytes += l0_bytes;
    summary.txid = txid;
    Ok(summary)
}
