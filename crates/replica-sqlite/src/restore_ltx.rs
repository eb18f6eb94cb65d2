//! Restore from a Litestream 0.5 (LTX) replica: a verified database at a
//! TXID or a time, each page read once and written once.
//!
//! 1. List every level; plan with [`plan_restore`] (a hole before the target
//!    is an error for every target, unlike Litestream).
//! 2. Read each planned file's page index (one ranged read of its tail) and
//!    the last file's header: for every page, the newest planned file that
//!    holds it owns it. Every page up to the final commit (but the lock page)
//!    must have an owner, or the replica cannot make a whole database.
//! 3. Decode every planned file — in parallel, streamed, each checked
//!    whole (header, page order, index, file checksum, page size equal to
//!    the others', TXIDs equal to its name) — writing only the pages it
//!    owns, straight to their offsets in a temporary file beside the output.
//!    Owners never overlap, so files may finish in any order.
//! 4. Check the database header against the files, optionally run
//!    `PRAGMA integrity_check`, and link the file into place (never over an
//!    existing one). Any failure removes the temporary file.
//!
//! Memory: `parallelism` × (one page + read buffers) plus 4 bytes per page of
//! the database for the owner map, allocated only once the files' page
//! indexes account for every page (a hostile commit cannot make it larger
//! than what was downloaded).

use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::Arc;

use futures::stream::{self, StreamExt, TryStreamExt};
use replica_core::ltx::{
    decode_file, format, plan_restore, read_header, Header, LtxClient, LtxFileInfo, LtxPlan,
    LtxTarget, TxId,
};
use replica_core::{collect_bytes, Error};

use crate::restore::{
    check_output, check_restored_header, integrity_check, io, Progress, RestoreError, Restored,
    Retry, TempDb,
};

/// How an LTX restore behaves; [`Default`] is `replica restore` without flags.
#[derive(Clone)]
pub struct LtxRestoreOptions {
    /// How far to restore.
    pub target: LtxTarget,
    /// Files fetched and decoded at once (at least 1).
    pub parallelism: usize,
    /// Run `PRAGMA integrity_check` on the result before it is put in place.
    pub integrity_check: bool,
    /// An existing output path is a skip, not an error.
    pub if_db_not_exists: bool,
    /// A replica with nothing to restore is a skip, not an error.
    pub if_replica_exists: bool,
    /// Retries of transient backend errors.
    pub retry: Retry,
    /// Told of progress, if set.
    pub progress: Option<Arc<dyn Progress>>,
}

impl Default for LtxRestoreOptions {
    fn default() -> Self {
        LtxRestoreOptions {
            target: LtxTarget::Latest,
            parallelism: 8,
            integrity_check: false,
            if_db_not_exists: false,
            if_replica_exists: false,
            retry: Retry::default(),
            progress: None,
        }
    }
}

impl std::fmt::Debug for LtxRestoreOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LtxRestoreOptions")
            .field("target", &self.target)
            .field("parallelism", &self.parallelism)
            .field("integrity_check", &self.integrity_check)
            .finish_non_exhaustive()
    }
}

/// What a finished LTX restore did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LtxRestoreSummary {
    /// The TXID the database is at.
    pub txid: TxId,
    /// The files applied, in plan order.
    pub files: Vec<LtxFileInfo>,
    /// Pages written (each once).
    pub pages_written: u64,
    /// Stored bytes fetched.
    pub fetched_bytes: u64,
    /// Size of the restored database.
    pub database_bytes: u64,
}

fn corrupt(info: &LtxFileInfo, message: String) -> Error {
    Error::Corrupt {
        path: info.name(),
        message,
    }
}

/// A planned file's header and the page numbers its page index lists:
/// one read of a small file, else its header and its tail (plus one more
/// read when the index is larger than the tail).
/// What the header and tail of a planned file said.
struct FileMap {
    header: Header,
    /// Page numbers its page index lists.
    pgnos: Vec<u32>,
    /// The file checksum its trailer holds: the decode must find the same,
    /// or the file changed (or the listing lied about its size) between the
    /// two reads.
    file_checksum: u64,
}

async fn file_map(client: &LtxClient, info: &LtxFileInfo) -> Result<FileMap, Error> {
    const TAIL: u64 = 64 * 1024;
    let trailer = format::TRAILER_SIZE as u64;
    let header_size = format::HEADER_SIZE as u64;
    if info.size < header_size + 6 + 8 + trailer {
        return Err(corrupt(
            info,
            format!("{} bytes is too short for an LTX file", info.size),
        ));
    }
    let from = info.size.saturating_sub(TAIL);
    let tail = collect_bytes(client.read_range(info, from..info.size).await?).await?;
    if tail.len() as u64 != info.size - from {
        return Err(corrupt(
            info,
            format!(
                "the listing says {} bytes, the store returned fewer",
                info.size
            ),
        ));
    }
    let header = if from == 0 {
        read_header(&tail, &info.name())?
    } else {
        client.header(info).await?
    };
    let size_at = tail.len() - format::TRAILER_SIZE - 8;
    let index_len = u64::from_be_bytes(tail[size_at..size_at + 8].try_into().expect("8 bytes"));
    let index_end = info.size - trailer - 8;
    let Some(index_start) = index_end
        .checked_sub(index_len)
        .filter(|s| *s >= header_size + 6)
    else {
        return Err(corrupt(
            info,
            format!("page index size {index_len} does not fit in the file"),
        ));
    };
    let index = if index_start >= from {
        tail.slice((index_start - from) as usize..(index_end - from) as usize)
    } else {
        collect_bytes(client.read_range(info, index_start..index_end).await?).await?
    };
    let mut pgnos = Vec::new();
    let mut at = 0usize;
    let uvarint = |at: &mut usize| -> Option<u64> {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let b = *index.get(*at)?;
            *at += 1;
            v |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return Some(v);
            }
        }
        None
    };
    loop {
        let bad = || corrupt(info, "malformed page index".to_owned());
        let pgno = uvarint(&mut at).ok_or_else(bad)?;
        if pgno == 0 {
            break;
        }
        uvarint(&mut at).ok_or_else(bad)?;
        uvarint(&mut at).ok_or_else(bad)?;
        let pgno = u32::try_from(pgno).map_err(|_| bad())?;
        if pgnos.last().is_some_and(|p| *p >= pgno) {
            return Err(corrupt(info, "page index out of order".to_owned()));
        }
        pgnos.push(pgno);
    }
    if at as u64 != index_len {
        return Err(corrupt(
            info,
            "page index size does not match its entries".to_owned(),
        ));
    }
    let file_checksum = u64::from_be_bytes(tail[tail.len() - 8..].try_into().expect("8 bytes"));
    Ok(FileMap {
        header,
        pgnos,
        file_checksum,
    })
}

/// For every page 1..=commit, the plan position (1-based) of the file that
/// owns it, 0 for the lock page.
fn owners(
    plan: &LtxPlan,
    indexes: &[Vec<u32>],
    commit: u32,
    page_size: u32,
) -> Result<Vec<u32>, Error> {
    let lock = format::lock_pgno(page_size);
    let needed = u64::from(commit) - u64::from(commit >= lock);
    let listed: u64 = indexes.iter().map(|i| i.len() as u64).sum();
    if listed < needed {
        return Err(Error::Corrupt {
            path: plan.files.last().map(LtxFileInfo::name).unwrap_or_default(),
            message: format!(
                "the database has {commit} pages, but the planned files hold only {listed} \
                 page versions in all: the replica cannot make a whole database"
            ),
        });
    }
    let mut owner = vec![0u32; commit as usize];
    for (i, pgnos) in indexes.iter().enumerate() {
        for &p in pgnos.iter().take_while(|p| **p <= commit) {
            owner[p as usize - 1] = i as u32 + 1;
        }
    }
    if let Some(missing) = (1..=commit).find(|p| *p != lock && owner[*p as usize - 1] == 0) {
        return Err(Error::Corrupt {
            path: plan.files.last().map(LtxFileInfo::name).unwrap_or_default(),
            message: format!(
                "page {missing} of {commit} is in none of the planned files: the replica \
                 cannot make a whole database"
            ),
        });
    }
    Ok(owner)
}

/// Restores the LTX replica of `client` into a new database file at `output`.
pub async fn restore_ltx(
    client: &LtxClient,
    output: &Path,
    options: &LtxRestoreOptions,
) -> Result<Restored<LtxRestoreSummary>, RestoreError> {
    if check_output(output, options.if_db_not_exists)? {
        return Ok(Restored::SkippedDatabaseExists);
    }
    let retry = options.retry;
    let progress = options.progress.as_deref();
    let parallelism = options.parallelism.max(1);
    let mut files = retry
        .run("listing the replica", progress, || client.all_files())
        .await?;
    if files.is_empty() {
        if options.if_replica_exists {
            return Ok(Restored::SkippedNoReplica);
        }
        return Err(RestoreError::NoReplica(
            "no LTX files found (read as the litestream-0.5 layout); pass --if-replica-exists \
             to skip quietly"
                .into(),
        ));
    }
    if matches!(options.target, LtxTarget::Timestamp(_)) {
        files = retry
            .run("reading file headers", progress, || {
                client.with_header_times(files.clone(), parallelism)
            })
            .await?;
    }
    let plan = plan_restore(&files, options.target)?;
    if let Some(p) = progress {
        p.start(
            plan.files.len() as u64,
            plan.files.iter().map(|f| f.size).sum(),
        );
    }
    let maps: Vec<FileMap> = stream::iter(&plan.files)
        .map(|info| async move {
            let what = format!("reading the header and page index of {}", info.name());
            retry
                .run(&what, progress, move || file_map(client, info))
                .await
        })
        .buffered(parallelism)
        .try_collect()
        .await?;
    let headers: Vec<Header> = maps.iter().map(|m| m.header).collect();
    let sums: Vec<u64> = maps.iter().map(|m| m.file_checksum).collect();
    let indexes: Vec<Vec<u32>> = maps.into_iter().map(|m| m.pgnos).collect();
    check_headers(&plan, &headers, &indexes)?;
    let last_header = headers.last().expect("a plan holds a file");
    let (page_size, commit) = (last_header.page_size, last_header.commit);
    let last = plan.files.last().expect("a plan holds a file");
    let owner = Arc::new(owners(&plan, &indexes, commit, page_size)?);
    drop(indexes);
    let mut owned = vec![0u64; plan.files.len() + 1];
    for o in owner.iter() {
        owned[*o as usize] += 1;
    }

    let temp = TempDb::create(output, progress)?;
    let db_bytes = u64::from(commit) * u64::from(page_size);
    temp.file
        .set_len(db_bytes)
        .map_err(io(format!("sizing {}", temp.path.display())))?;
    let file = Arc::new(temp.file.try_clone().map_err(io("cloning a descriptor"))?);
    let written: Vec<u64> = stream::iter(plan.files.iter().enumerate())
        .map(|(i, info)| {
            let owner = owner.clone();
            let file = file.clone();
            let expect = Expected {
                header: headers[i],
                file_checksum: sums[i],
                pages: owned[i + 1],
            };
            let what = format!("fetching {}", info.name());
            async move {
                let pages = retry
                    .run(&what, progress, || {
                        apply_file(
                            client,
                            info,
                            expect,
                            i as u32 + 1,
                            owner.clone(),
                            file.clone(),
                        )
                    })
                    .await?;
                if let Some(p) = progress {
                    p.advance(info.size);
                }
                Ok::<_, Error>(pages)
            }
        })
        .buffer_unordered(parallelism)
        .try_collect()
        .await?;
    check_restored_header(&temp.file, page_size, Some(u64::from(commit)), &last.name())?;
    temp.file
        .sync_all()
        .map_err(io(format!("syncing {}", temp.path.display())))?;
    if options.integrity_check {
        integrity_check(&temp.path)?;
    }
    temp.commit(output)?;
    Ok(Restored::Done(LtxRestoreSummary {
        txid: plan.txid,
        pages_written: written.iter().sum(),
        fetched_bytes: plan.files.iter().map(|f| f.size).sum(),
        database_bytes: db_bytes,
        files: plan.files,
    }))
}

/// What the plan read of a file before its pages count.
#[derive(Clone, Copy)]
struct Expected {
    header: Header,
    file_checksum: u64,
    /// Pages it owns.
    pages: u64,
}

/// Decodes one planned file whole, writing the pages it owns; returns how
/// many. Its header and file checksum must be those the plan was made with,
/// and it must write every page the plan gave it.
async fn apply_file(
    client: &LtxClient,
    info: &LtxFileInfo,
    expect: Expected,
    position: u32,
    owner: Arc<Vec<u32>>,
    file: Arc<std::fs::File>,
) -> Result<u64, Error> {
    let stream = client.read(info).await?;
    let named = info.clone();
    let header = expect.header;
    let page_size = header.page_size;
    let check = move |h: &Header| {
        if *h != header {
            return Err(corrupt(
                &named,
                "its header changed while the restore read it".to_owned(),
            ));
        }
        Ok(())
    };
    use std::sync::atomic::{AtomicU64, Ordering};
    let counter = Arc::new(AtomicU64::new(0));
    let count = counter.clone();
    let decoded = decode_file(stream, &info.name(), check, move |_, pgno, page| {
        if owner.get(pgno as usize - 1) == Some(&position) {
            file.write_all_at(page, u64::from(pgno - 1) * u64::from(page_size))
                .map_err(|e| Error::io("writing a page of the restored database", e))?;
            count.fetch_add(1, Ordering::Relaxed);
        }
        Ok(())
    })
    .await?;
    let written = counter.load(Ordering::Relaxed);
    if decoded.trailer.file_checksum != expect.file_checksum || written != expect.pages {
        return Err(corrupt(
            info,
            format!(
                "it is not the file its page index was read from (file checksum {:016x}, then \
                 {:016x}; {written} of its {} pages found): it changed during the restore, or \
                 the listing gives a wrong size",
                expect.file_checksum, decoded.trailer.file_checksum, expect.pages
            ),
        ));
    }
    Ok(written)
}

/// The planned files' headers must agree with their names, share one page
/// size, and — between neighbours that both say which WAL they were made
/// from — continue one another: the same salts and the next file starting
/// where the previous one ended, or new salts and a file starting at the
/// first frame of a new WAL. An L0 file of another database put under a
/// plausible name breaks the chain; compactions carry no WAL fields, and
/// snapshots before Litestream 0.5.15 recorded more WAL than they held, so
/// neither is checked (a heuristic, not a proof: `--integrity-check` and
/// database checksums, where files carry them, are the proofs).
fn check_headers(plan: &LtxPlan, headers: &[Header], indexes: &[Vec<u32>]) -> Result<(), Error> {
    const FIRST_FRAME: i64 = 32;
    let page_size = headers.last().map(|h| h.page_size).unwrap_or_default();
    for (i, (info, h)) in plan.files.iter().zip(headers).enumerate() {
        if (h.min_txid, h.max_txid) != (info.min_txid, info.max_txid) {
            return Err(corrupt(
                info,
                format!(
                    "its header holds TXIDs {}-{}, not those of its name",
                    h.min_txid, h.max_txid
                ),
            ));
        }
        if h.page_size != page_size {
            return Err(corrupt(
                info,
                format!(
                    "page size {} differs from the last file's {page_size} (a page-size change \
                     cannot be restored)",
                    h.page_size
                ),
            ));
        }
        let Some(prev) = i.checked_sub(1).map(|p| &headers[p]) else {
            continue;
        };
        // Litestream's snapshots record the WAL too, but before 0.5.15 its
        // whole extent, not the part synced: nothing to check after one. A
        // file holding the whole database (Litestream's "snapshotting" L0,
        // written when its position was lost) continues nothing either.
        let whole = |i: usize| {
            let h = &headers[i];
            let lock = u32::from(h.commit >= h.lock_pgno());
            indexes[i].len() as u64 + u64::from(lock) >= u64::from(h.commit)
        };
        if whole(i)
            || prev.wal_offset == 0
            || h.wal_offset == 0
            || plan.files[i - 1].level == replica_core::ltx::SNAPSHOT_LEVEL
            || h.min_txid.0 != prev.max_txid.0 + 1
        {
            continue;
        }
        let prev_end = prev.wal_offset.checked_add(prev.wal_size);
        let same_wal = (prev.wal_salt1, prev.wal_salt2) == (h.wal_salt1, h.wal_salt2);
        let continues = if same_wal {
            prev_end == Some(h.wal_offset)
        } else {
            h.wal_offset == FIRST_FRAME
        };
        if !continues {
            return Err(corrupt(
                info,
                format!(
                    "it does not continue {}: WAL salts {:08x}/{:08x} at offset {} after salts \
                     {:08x}/{:08x} ending at offset {} (a file of another database?)",
                    plan.files[i - 1].name(),
                    h.wal_salt1,
                    h.wal_salt2,
                    h.wal_offset,
                    prev.wal_salt1,
                    prev.wal_salt2,
                    prev_end.unwrap_or(i64::MAX)
                ),
            ));
        }
    }
    Ok(())
}
