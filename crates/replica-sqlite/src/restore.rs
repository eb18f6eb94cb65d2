//! Restore: a verified, working SQLite database from any replica.
//!
//! The database is built in a temporary file next to the output path: the
//! snapshot is streamed into it, then each WAL index is fetched (segments
//! ahead of application, in parallel, with bounded memory), checked byte by
//! byte as SQLite would trust it ([`WalApplier`]) and its committed pages
//! written in place. Only a complete database, optionally passing
//! `PRAGMA integrity_check`, is linked to the output path (never over an
//! existing file); on any error the temporary file is removed and nothing is
//! left at the output path.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::stream::{self, StreamExt, TryStreamExt};
use replica_core::layout::format_index;
use replica_core::{
    collect_bytes, lz4, Error, Generation, Pos, ReplicaClient, ReplicaClientExt, RestoreTarget,
    WalContiguity, WalSegmentInfo,
};

use crate::wal::{database_page_size, ApplyError, FilePages, WalApplier, WalDefect};

/// How a restore behaves; [`Default`] is what `replica restore` does without flags.
#[derive(Clone)]
pub struct RestoreOptions {
    /// Restore this generation (default: the latest, or for a timestamp the
    /// latest one whose time bounds contain it).
    pub generation: Option<Generation>,
    /// How far to restore.
    pub target: RestoreTarget,
    /// WAL segments fetched ahead of application at once (at least 1).
    pub parallelism: usize,
    /// Run `PRAGMA integrity_check` on the result before it is put in place.
    pub integrity_check: bool,
    /// An existing output path is a skip, not an error.
    pub if_db_not_exists: bool,
    /// A replica with nothing to restore is a skip, not an error.
    pub if_replica_exists: bool,
    /// Retries of transient backend errors.
    pub retry: Retry,
    /// Told of progress (a progress bar, logs), if set.
    pub progress: Option<Arc<dyn Progress>>,
}

impl Default for RestoreOptions {
    fn default() -> Self {
        RestoreOptions {
            generation: None,
            target: RestoreTarget::End,
            parallelism: 8,
            integrity_check: false,
            if_db_not_exists: false,
            if_replica_exists: false,
            retry: Retry::default(),
            progress: None,
        }
    }
}

impl std::fmt::Debug for RestoreOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RestoreOptions")
            .field("generation", &self.generation)
            .field("target", &self.target)
            .field("parallelism", &self.parallelism)
            .field("integrity_check", &self.integrity_check)
            .field("if_db_not_exists", &self.if_db_not_exists)
            .field("if_replica_exists", &self.if_replica_exists)
            .field("retry", &self.retry)
            .finish_non_exhaustive()
    }
}

/// Retries of a transient error ([`Error::is_transient`]: network and
/// service failures, I/O errors that come and go) with exponential backoff;
/// other errors (not found, corrupt data, a full disk, a missing
/// permission) fail at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retry {
    /// Tries in all (at least 1).
    pub attempts: u32,
    /// Wait before the second try; doubled each time, up to `max_delay`.
    pub first_delay: Duration,
    /// Longest wait between tries.
    pub max_delay: Duration,
}

impl Default for Retry {
    fn default() -> Self {
        Retry {
            attempts: 6,
            first_delay: Duration::from_millis(250),
            max_delay: Duration::from_secs(8),
        }
    }
}

impl Retry {
    /// Runs `op` until it succeeds, fails for good, or the tries run out.
    pub async fn run<T, F, Fut>(
        &self,
        what: &str,
        progress: Option<&dyn Progress>,
        mut op: F,
    ) -> Result<T, Error>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<T, Error>>,
    {
        let mut delay = self.first_delay;
        let mut attempt = 1;
        loop {
            match op().await {
                Ok(v) => return Ok(v),
                Err(e) if attempt < self.attempts.max(1) && e.is_transient() => {
                    if let Some(p) = progress {
                        p.retrying(what, attempt, &e);
                    }
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(self.max_delay);
                    attempt += 1;
                }
                Err(e) => return Err(e),
            }
        }
    }
}

/// What a restore reports as it goes.
pub trait Progress: Send + Sync {
    /// The restore will fetch `objects` objects of `bytes` stored bytes.
    fn start(&self, objects: u64, bytes: u64);
    /// One more object of `bytes` stored bytes was fetched and applied.
    fn advance(&self, bytes: u64);
    /// A transient error; the operation will be tried again.
    fn retrying(&self, what: &str, attempt: u32, error: &Error);
    /// Something the user should hear of (a stale file removed).
    fn note(&self, message: &str) {
        let _ = message;
    }
}

/// How a restore ended, when it did not fail.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Restored<S = RestoreSummary> {
    /// The database is at the output path.
    Done(S),
    /// The output path exists and `if_db_not_exists` was set.
    SkippedDatabaseExists,
    /// Nothing to restore and `if_replica_exists` was set.
    SkippedNoReplica,
}

/// What a finished restore did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RestoreSummary {
    /// The generation restored.
    pub generation: Generation,
    /// The snapshot's index.
    pub snapshot_index: u64,
    /// The last WAL index applied (the snapshot's, if none was).
    pub last_index: u64,
    /// WAL segments fetched and applied.
    pub segments: u64,
    /// WAL frames written to the database.
    pub frames: u64,
    /// Stored (compressed) bytes fetched.
    pub fetched_bytes: u64,
    /// Size of the restored database.
    pub database_bytes: u64,
}

/// Why a restore failed. Nothing is left at the output path in any case.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RestoreError {
    /// Reading the replica failed (listing, a missing object, a gap, a
    /// corrupt LZ4 frame, a backend that kept failing).
    #[error(transparent)]
    Replica(#[from] Error),
    /// A WAL segment is not as SQLite would trust it.
    #[error("WAL {pos}: {defect}")]
    Wal {
        /// Generation, index and WAL offset of the defect.
        pos: Pos,
        /// What is wrong there.
        defect: WalDefect,
    },
    /// The snapshot is not a SQLite database.
    #[error("snapshot {generation}/{index:016x} is not a SQLite database (no valid header)")]
    NotADatabase {
        /// Its generation.
        generation: Generation,
        /// Its index.
        index: u64,
    },
    /// The output path already exists.
    #[error(
        "{0} already exists; restore to a new path, remove it, or pass --if-db-not-exists to skip"
    )]
    OutputExists(PathBuf),
    /// A `-wal`, `-shm` or `-journal` file is at the output path's side,
    /// though no database is: SQLite would replay it into the restored one.
    #[error(
        "{0} exists without its database (left by another database?); SQLite would replay it \
         into the restored database and corrupt it: remove it, or restore to another path"
    )]
    StaleCompanion(PathBuf),
    /// Another restore to the same path is running (it holds this
    /// temporary file locked).
    #[error(
        "another restore to this path is running (it holds {0} locked); wait for it, or \
         restore to another path"
    )]
    InProgress(PathBuf),
    /// The replica holds nothing to restore.
    #[error("no replica to restore: {0}")]
    NoReplica(String),
    /// `PRAGMA integrity_check` did not say `ok`.
    #[error("the restored database fails PRAGMA integrity_check: {0}")]
    Integrity(String),
    /// Local file work failed.
    #[error("{context}: {source}")]
    Io {
        /// What was being done, with the path.
        context: String,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
}

pub(crate) fn io(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> RestoreError {
    let context = context.into();
    move |source| RestoreError::Io { context, source }
}

/// SQLite's companions of a database file, each of which it would replay
/// into (or read beside) whatever database is at the path.
const COMPANIONS: [&str; 3] = ["-wal", "-shm", "-journal"];

/// Refuses a restore to `output` when the path or a companion exists (a
/// stale `-journal` or `-wal` of another database would be rolled into the
/// restored one by the first SQLite that opens it); `Ok(true)` when the
/// output exists and `if_db_not_exists` makes that a skip.
pub(crate) fn check_output(output: &Path, if_db_not_exists: bool) -> Result<bool, RestoreError> {
    if fs::symlink_metadata(output).is_ok() {
        if if_db_not_exists {
            return Ok(true);
        }
        return Err(RestoreError::OutputExists(output.to_owned()));
    }
    for suffix in COMPANIONS {
        let mut p = output.as_os_str().to_owned();
        p.push(suffix);
        let p = PathBuf::from(p);
        if fs::symlink_metadata(&p).is_ok() {
            return Err(RestoreError::StaleCompanion(p));
        }
    }
    Ok(false)
}

/// Restores `client`'s replica into a new database file at `output`.
pub async fn restore(
    client: &dyn ReplicaClient,
    output: &Path,
    options: &RestoreOptions,
) -> Result<Restored, RestoreError> {
    if check_output(output, options.if_db_not_exists)? {
        return Ok(Restored::SkippedDatabaseExists);
    }
    let Some(generation) = choose_generation(client, options).await? else {
        if options.if_replica_exists {
            return Ok(Restored::SkippedNoReplica);
        }
        return Err(RestoreError::NoReplica(match options.target {
            RestoreTarget::Timestamp(at) => format!(
                "no generation of this {} replica covers {}",
                client.layout(),
                at.to_rfc3339()
            ),
            _ => format!(
                "no generations found (read as the {} layout); pass --if-replica-exists to \
                 skip quietly",
                client.layout()
            ),
        }));
    };
    let plan = client.list_restore(&generation, options.target).await?;
    let progress = options.progress.as_deref();
    if let RestoreTarget::Index(target) = options.target {
        let last = plan.wal.last().map_or(plan.snapshot.index, |(i, _)| *i);
        if let (true, Some(p)) = (last < target, progress) {
            p.note(&format!(
                "index {} is past the end of generation {generation} (its last index is {}): \
                 restoring to the end, as Litestream does",
                format_index(target),
                format_index(last)
            ));
        }
    }
    if let Some(p) = progress {
        let segments = plan.wal.iter().flat_map(|(_, s)| s);
        p.start(
            1 + segments.clone().count() as u64,
            plan.snapshot.size + segments.map(|s| s.size).sum::<u64>(),
        );
    }

    let temp = TempDb::create(output, progress)?;
    let mut summary = RestoreSummary {
        generation: generation.clone(),
        snapshot_index: plan.snapshot.index,
        last_index: plan.snapshot.index,
        segments: 0,
        frames: 0,
        fetched_bytes: plan.snapshot.size,
        database_bytes: 0,
    };
    let snapshot = &plan.snapshot;
    options
        .retry
        .run("fetching the snapshot", progress, || {
            write_snapshot(client, &generation, snapshot.index, &temp)
        })
        .await?;
    if let Some(p) = progress {
        p.advance(snapshot.size);
    }
    let page_size = read_page_size(&temp.file)?.ok_or_else(|| RestoreError::NotADatabase {
        generation: generation.clone(),
        index: snapshot.index,
    })?;

    // Segments are fetched ahead, still compressed (at most `parallelism`
    // of them held at once), then decompressed in frame-aligned pieces of
    // about `PIECE` bytes as they are applied: memory is bounded by the
    // stored sizes, however much a segment decompresses to.
    let segments: Vec<&WalSegmentInfo> = plan.wal.iter().flat_map(|(_, s)| s).collect();
    let retry = options.retry;
    let layout = client.layout();
    let mut fetched = stream::iter(segments)
        .map(|info| async move {
            let pos = info.pos();
            let stored = retry
                .run(&format!("fetching WAL segment {pos}"), progress, || async {
                    collect_bytes(client.wal_segment_reader(&pos).await?).await
                })
                .await?;
            Ok::<_, Error>((info, stored))
        })
        .buffered(options.parallelism.max(1));

    let spill_dir = parent_dir(&temp.path);
    let mut contiguity = WalContiguity::from_snapshot(generation.clone(), snapshot.index);
    let mut pages = FilePages::new(&temp.file, page_size);
    let mut current: Option<(u64, WalApplier)> = None;
    let mut last_key = None;
    while let Some((info, stored)) = fetched.try_next().await? {
        let key = layout.wal_segment_key(&info.pos()).unwrap_or_default();
        contiguity.check_start(info)?;
        if current
            .as_ref()
            .is_none_or(|(index, _)| *index != info.index)
        {
            if let Some((index, done)) = current.take() {
                finish(&generation, index, done, &mut pages, false, &mut summary)?;
            }
            let before = file_pages(&temp, page_size)?;
            let applier = WalApplier::new(page_size, before).spilling_to(spill_dir.clone());
            current = Some((info.index, applier));
        }
        let (_, applier) = current.as_mut().expect("set above");
        let len = apply_stored(applier, &stored, &key, &mut |applier, piece| {
            applier
                .apply_segment(&piece, &mut pages)
                .map_err(|e| apply_error(&info.generation, info.index, e))
        })?;
        contiguity.extend(info, len);
        summary.segments += 1;
        summary.fetched_bytes += info.size;
        summary.last_index = info.index;
        last_key = Some(key);
        if let Some(p) = progress {
            p.advance(info.size);
        }
    }
    drop(fetched);
    if let Some((index, done)) = current.take() {
        finish(&generation, index, done, &mut pages, true, &mut summary)?;
    }
    let what = last_key.unwrap_or_else(|| {
        layout
            .snapshot_key(&generation, snapshot.index)
            .unwrap_or_default()
    });
    check_restored_header(&temp.file, page_size, None, &what)?;
    temp.file
        .sync_all()
        .map_err(io(format!("syncing {}", temp.path.display())))?;
    summary.database_bytes = temp
        .file
        .metadata()
        .map_err(io(format!("reading {}", temp.path.display())))?
        .len();
    if options.integrity_check {
        integrity_check(&temp.path)?;
    }
    temp.commit(output)?;
    Ok(Restored::Done(summary))
}

/// Plain bytes handed to the applier at once (a multiple of the frame size
/// near this).
const PIECE: usize = 4 << 20;

/// Decompresses the stored WAL segment `stored` (named `key`) in
/// frame-aligned pieces of about [`PIECE`] bytes, handing each to `apply`
/// with `applier`; returns the segment's decompressed length.
pub(crate) fn apply_stored(
    applier: &mut WalApplier,
    stored: &[u8],
    key: &str,
    apply: &mut dyn FnMut(&mut WalApplier, Bytes) -> Result<(), RestoreError>,
) -> Result<u64, RestoreError> {
    let frame = crate::wal::FRAME_HEADER_LEN + applier.page_size() as usize;
    let frames_per_piece = (PIECE / frame).max(1);
    lz4::with_frame_reader(stored, |reader| {
        let mut total = 0u64;
        loop {
            let header = if applier.offset() == 0 {
                crate::wal::WAL_HEADER_LEN
            } else {
                0
            };
            let limit = header + frames_per_piece * frame;
            let mut piece =
                Vec::with_capacity(limit.min(stored.len().saturating_mul(4).max(frame)));
            reader
                .read_up_to(&mut piece, limit)
                .map_err(|e| RestoreError::Replica(e.naming(key)))?;
            if piece.is_empty() {
                return Ok(total);
            }
            total += piece.len() as u64;
            apply(applier, Bytes::from(piece))?;
        }
    })
}

/// The whole pages of the database being built.
fn file_pages(temp: &TempDb, page_size: u32) -> Result<u64, RestoreError> {
    let len = temp
        .file
        .metadata()
        .map_err(io(format!("reading {}", temp.path.display())))?
        .len();
    Ok(len / u64::from(page_size))
}

/// The restored file's SQLite header must agree with what was restored: its
/// page size, and its page count where SQLite trusts it
/// ([`header_page_count`](crate::wal::header_page_count)), which must be
/// the file's size (`pages`, or the file's length if `None`). `what` names
/// the object the defect is reported on. Restore from generations and from
/// LTX files share this rule.
pub(crate) fn check_restored_header(
    file: &fs::File,
    page_size: u32,
    pages: Option<u64>,
    what: &str,
) -> Result<(), RestoreError> {
    use std::os::unix::fs::FileExt;
    let len = file
        .metadata()
        .map_err(io("reading the restored database's size"))?
        .len();
    if len == 0 {
        return Ok(());
    }
    let mut h = [0u8; 100];
    file.read_exact_at(&mut h, 0)
        .map_err(io("reading the restored database header"))?;
    let bad = |message: String| {
        Err(RestoreError::Replica(Error::Corrupt {
            path: what.to_owned(),
            message,
        }))
    };
    match database_page_size(&h) {
        None => return bad("the restored page 1 is not a SQLite database header".into()),
        Some(p) if p != page_size => {
            return bad(format!(
                "the restored database header says {p}-byte pages, the replica {page_size}"
            ))
        }
        _ => {}
    }
    match page_count_defect(&h, pages.unwrap_or(len / u64::from(page_size))) {
        Some(message) => bad(message),
        None => Ok(()),
    }
}

/// The defect of a database whose header (`header`, page 1's first 100
/// bytes) gives a page count SQLite trusts that is not `pages`.
pub(crate) fn page_count_defect(header: &[u8], pages: u64) -> Option<String> {
    let said = crate::wal::header_page_count(header)?;
    (u64::from(said) != pages).then(|| {
        format!(
            "the database header says {said} pages, the replica gives {pages} (SQLite would \
             read the database as malformed or cut short)"
        )
    })
}

/// Ends a WAL index (`last`: the last one restored) and counts its frames.
fn finish(
    generation: &Generation,
    index: u64,
    applier: WalApplier,
    pages: &mut FilePages<'_>,
    last: bool,
    summary: &mut RestoreSummary,
) -> Result<(), RestoreError> {
    summary.frames += applier.frames_applied();
    applier
        .finish(pages, last)
        .map_err(|e| apply_error(generation, index, e))
}

pub(crate) fn apply_error(generation: &Generation, index: u64, e: ApplyError) -> RestoreError {
    match e {
        ApplyError::Wal(b) => RestoreError::Wal {
            pos: Pos {
                generation: generation.clone(),
                index,
                offset: b.offset,
            },
            defect: b.defect,
        },
        ApplyError::Io(e) => RestoreError::Io {
            context: "writing pages of the restored database".into(),
            source: e,
        },
    }
}

/// The generation to restore: the one asked for (which must exist), the
/// latest for a timestamp among those whose time bounds contain it, or the
/// latest of all.
async fn choose_generation(
    client: &dyn ReplicaClient,
    options: &RestoreOptions,
) -> Result<Option<Generation>, RestoreError> {
    let all = client.generations().await?;
    if let Some(g) = &options.generation {
        if !all.contains(g) {
            return Err(Error::not_found(format!("generation {g}")).into());
        }
        return Ok(Some(g.clone()));
    }
    match options.target {
        // One generation: no need to read every listing to compare times.
        RestoreTarget::End | RestoreTarget::Index(_) if all.len() <= 1 => {
            Ok(all.into_iter().next())
        }
        RestoreTarget::Timestamp(at) => {
            let mut candidates = Vec::new();
            for g in all {
                if let Some(b) = client.generation_kept_time_bounds(&g).await? {
                    if b.first <= at && at <= b.last {
                        candidates.push((g, b));
                    }
                }
            }
            Ok(replica_core::newest_generation(candidates))
        }
        _ => Ok(client.latest_generation().await?),
    }
}

async fn write_snapshot(
    client: &dyn ReplicaClient,
    generation: &Generation,
    index: u64,
    temp: &TempDb,
) -> Result<(), Error> {
    let mut plain = client.snapshot_plain(generation, index).await?;
    let io = |e| Error::io(format!("writing {}", temp.path.display()), e);
    let mut file = &temp.file;
    file.set_len(0).map_err(io)?;
    use std::io::Seek;
    file.seek(std::io::SeekFrom::Start(0)).map_err(io)?;
    while let Some(chunk) = plain.try_next().await? {
        file.write_all(&chunk).map_err(io)?;
    }
    Ok(())
}

pub(crate) fn read_page_size(file: &fs::File) -> Result<Option<u32>, RestoreError> {
    use std::os::unix::fs::FileExt;
    let mut header = [0u8; 100];
    match file.read_exact_at(&mut header, 0) {
        Ok(()) => Ok(database_page_size(&header)),
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => Ok(None),
        Err(e) => Err(io("reading the restored database header")(e)),
    }
}

/// `PRAGMA integrity_check` on a closed database file, read only (no
/// `-wal` or `-shm` is created beside it).
pub fn integrity_check(path: &Path) -> Result<(), RestoreError> {
    let uri = sqlite_uri(path, "immutable=1")?;
    let conn = rusqlite::Connection::open_with_flags(
        uri,
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY | rusqlite::OpenFlags::SQLITE_OPEN_URI,
    )
    .map_err(|e| RestoreError::Integrity(format!("cannot open: {e}")))?;
    let mut stmt = conn
        .prepare("PRAGMA integrity_check")
        .map_err(|e| RestoreError::Integrity(e.to_string()))?;
    let rows: Vec<String> = stmt
        .query_map([], |row| row.get(0))
        .and_then(|rows| rows.collect())
        .map_err(|e| RestoreError::Integrity(e.to_string()))?;
    if rows == ["ok"] {
        Ok(())
    } else {
        Err(RestoreError::Integrity(rows.join("; ")))
    }
}

/// A SQLite `file:` URI for `path` with `query`: the path made absolute and
/// percent-encoded, so `?`, `#` and `%` in a name are part of it.
pub(crate) fn sqlite_uri(path: &Path, query: &str) -> Result<String, RestoreError> {
    let absolute =
        std::path::absolute(path).map_err(io(format!("resolving {}", path.display())))?;
    let mut url = url::Url::from_file_path(&absolute).map_err(|()| {
        RestoreError::Replica(Error::invalid(format!(
            "{} cannot be written as a file: URI",
            absolute.display()
        )))
    })?;
    url.set_query(Some(query));
    Ok(url.to_string())
}

/// The database being built: a temporary file beside the output, removed
/// unless [`commit`](TempDb::commit) puts it in place.
pub(crate) struct TempDb {
    pub(crate) path: PathBuf,
    pub(crate) file: fs::File,
    committed: bool,
    /// The outermost directory this restore created for the output (as
    /// Litestream creates the output's directory), removed again if the
    /// restore fails and it is still empty.
    created: Option<PathBuf>,
}

impl TempDb {
    /// Creates the temporary file, locked (`flock`) for as long as this
    /// restore runs. Temporary files of earlier restores to the same path
    /// that no process holds locked (left by a killed restore) are removed
    /// first and told to `progress`; one still locked means another restore
    /// to this path is running, which is an error.
    pub(crate) fn create(
        output: &Path,
        progress: Option<&dyn Progress>,
    ) -> Result<TempDb, RestoreError> {
        let name = output
            .file_name()
            .ok_or_else(|| {
                RestoreError::Replica(Error::invalid(format!(
                    "output path {} names no file",
                    output.display()
                )))
            })?
            .to_string_lossy()
            .into_owned();
        let dir = parent_dir(output);
        let created = create_dirs(&dir)?;
        remove_stale_temps(&dir, &name, output, progress)?;
        let path = dir.join(format!(
            ".{name}.{:016x}.restore.tmp",
            rand::random::<u64>()
        ));
        let file = fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&path)
            .map_err(|e| {
                remove_created(created.as_deref(), &dir);
                io(format!("creating {}", path.display()))(e)
            })?;
        let temp = TempDb {
            path,
            file,
            committed: false,
            created,
        };
        rustix::fs::flock(
            &temp.file,
            rustix::fs::FlockOperation::NonBlockingLockExclusive,
        )
        .map_err(|e| io(format!("locking {}", temp.path.display()))(e.into()))?;
        Ok(temp)
    }

    /// Links the finished database at `output` (never over an existing
    /// file), removes the temporary name, and syncs the directory.
    pub(crate) fn commit(mut self, output: &Path) -> Result<(), RestoreError> {
        fs::hard_link(&self.path, output).map_err(|e| {
            if e.kind() == std::io::ErrorKind::AlreadyExists {
                RestoreError::OutputExists(output.to_owned())
            } else {
                io(format!("linking {}", output.display()))(e)
            }
        })?;
        self.committed = true;
        let _ = fs::remove_file(&self.path);
        let dir = parent_dir(output);
        fs::File::open(&dir)
            .and_then(|d| d.sync_all())
            .map_err(io(format!("syncing directory {}", dir.display())))
    }
}

impl Drop for TempDb {
    fn drop(&mut self) {
        if !self.committed {
            let _ = fs::remove_file(&self.path);
            remove_created(self.created.as_deref(), &parent_dir(&self.path));
        }
    }
}

/// Creates `dir` and its missing ancestors; returns the outermost one it
/// created (`None` when `dir` existed).
fn create_dirs(dir: &Path) -> Result<Option<PathBuf>, RestoreError> {
    if dir.is_dir() {
        return Ok(None);
    }
    let mut outermost = dir.to_owned();
    while let Some(parent) = outermost.parent() {
        if parent.as_os_str().is_empty() || parent.exists() {
            break;
        }
        outermost = parent.to_owned();
    }
    fs::create_dir_all(dir).map_err(io(format!("creating directory {}", dir.display())))?;
    // Each new directory's entry made durable in its parent.
    let mut at = Some(dir);
    while let Some(d) = at {
        let Some(parent) = d.parent() else { break };
        let parent = if parent.as_os_str().is_empty() {
            Path::new(".")
        } else {
            parent
        };
        fs::File::open(parent)
            .and_then(|p| p.sync_all())
            .map_err(io(format!("syncing directory {}", parent.display())))?;
        if d == outermost {
            break;
        }
        at = Some(parent);
    }
    Ok(Some(outermost))
}

/// Removes the directories [`create_dirs`] made, from `dir` up to
/// `outermost`, while they are empty.
fn remove_created(outermost: Option<&Path>, dir: &Path) {
    let Some(outermost) = outermost else {
        return;
    };
    let mut at = Some(dir);
    while let Some(d) = at {
        if fs::remove_dir(d).is_err() || d == outermost {
            break;
        }
        at = d.parent();
    }
}

/// Whether `file` in a directory is the temporary file of a restore to
/// the output named `name`: `.NAME.<16 hex digits>.restore.tmp`.
fn is_temp_of(file: &std::ffi::OsStr, name: &str) -> bool {
    let Some(file) = file.to_str() else {
        return false;
    };
    file.strip_prefix('.')
        .and_then(|f| f.strip_prefix(name))
        .and_then(|f| f.strip_prefix('.'))
        .and_then(|f| f.strip_suffix(".restore.tmp"))
        .is_some_and(|hex| hex.len() == 16 && hex.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// Removes the unlocked temporary files of earlier restores to `output`.
fn remove_stale_temps(
    dir: &Path,
    name: &str,
    output: &Path,
    progress: Option<&dyn Progress>,
) -> Result<(), RestoreError> {
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        // A missing directory is reported when the temporary file is created.
        Err(_) => return Ok(()),
    };
    for entry in entries.flatten() {
        if !is_temp_of(&entry.file_name(), name) {
            continue;
        }
        let path = entry.path();
        let Ok(file) = fs::OpenOptions::new().read(true).open(&path) else {
            continue;
        };
        match rustix::fs::flock(&file, rustix::fs::FlockOperation::NonBlockingLockExclusive) {
            Ok(()) => {
                fs::remove_file(&path).map_err(io(format!(
                    "removing {}, left by an interrupted restore",
                    path.display()
                )))?;
                if let Some(p) = progress {
                    p.note(&format!(
                        "removed {}, the partial database of an interrupted restore to {}",
                        path.display(),
                        output.display()
                    ));
                }
            }
            Err(_) => return Err(RestoreError::InProgress(path)),
        }
    }
    Ok(())
}

fn parent_dir(path: &Path) -> PathBuf {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_owned(),
        _ => PathBuf::from("."),
    }
}
