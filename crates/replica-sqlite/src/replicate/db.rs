//! The database side of replication: SQLite connections, the shadow WAL on
//! local disk, checkpoints and generations.
//!
//! Runs on a blocking thread. Two connections: the *reader* holds a read
//! transaction between syncs, so no other connection can restart the WAL
//! under us (a restart needs every reader slot free); the *writer* takes the
//! write lock for our checkpoints, so no frame is appended between our last
//! copy and the restart. Every WAL incarnation is an *index*; its committed
//! frames are copied, validated by salt and running checksum, into
//! `<shadow>/generations/<g>/wal/<index>.wal` (header + frames, the same
//! bytes at the same offsets as the WAL), from which the replicas ship.

use std::fs::{self, File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use replica_core::layout::format_index;
use replica_core::Generation;
use rusqlite::Connection;
use tracing::{debug, info, warn};

use super::stats::{CheckpointMode, DbCounters};
use super::tail::Tail;
use super::{DbOptions, ReplicateError, ShadowView};
use crate::wal::{WalHeader, FRAME_HEADER_LEN, WAL_HEADER_LEN};

/// Litestream's own tables, reused so a database that Litestream replicated
/// gains nothing new: one row whose updates force a WAL restart, and a table
/// that is never written.
const SCHEMA: &str =
    "CREATE TABLE IF NOT EXISTS _litestream_seq (id INTEGER PRIMARY KEY, seq INTEGER);\
                      CREATE TABLE IF NOT EXISTS _litestream_lock (id INTEGER);";
const BUMP: &str = "INSERT INTO _litestream_seq (id, seq) VALUES (1, 1) \
                    ON CONFLICT (id) DO UPDATE SET seq = seq + 1";

/// Why the current generation cannot continue.
#[derive(Debug)]
pub(crate) struct Discontinuity(pub(crate) String);

/// The shadow WAL of the current index.
struct Shadow {
    generation: Generation,
    index: u64,
    header: [u8; WAL_HEADER_LEN],
    parsed: WalHeader,
    /// Committed bytes of the index (= WAL offset validated up to).
    len: u64,
    /// The end of the valid prefix of the shadow file: the rest of the
    /// index is read from the WAL (see [`super::tail`]), and copied into
    /// the file only when a restart would overwrite what a replica has not
    /// shipped. Without a boot id, every frame is written (as `len`).
    written: u64,
    /// Running checksum after the last committed frame.
    chain: (u32, u32),
    /// Bytes of the file known to be on disk (fsynced); the rest is in
    /// the page cache, which a killed process keeps.
    synced: u64,
    /// What the last spill left in the file beyond `written` (`[from,
    /// end)`): a checkpoint that did not restart the WAL spills again
    /// from there, not from the lowest position.
    spilled: Option<(u64, u64)>,
    /// The shadow file, open while the database is awake.
    file: Option<File>,
}

impl Shadow {
    fn frame_len(&self) -> u64 {
        FRAME_HEADER_LEN as u64 + u64::from(self.parsed.page_size)
    }

    fn frames(&self) -> u64 {
        (self.len - WAL_HEADER_LEN as u64) / self.frame_len()
    }

    /// The shadow file (closed only while released, or when reopening it
    /// on waking failed: then the next round starts a new generation).
    fn file(&self) -> std::io::Result<&File> {
        self.file
            .as_ref()
            .ok_or_else(|| std::io::Error::other("the shadow WAL file is not open"))
    }
}

/// What an awake database holds open. Fields drop in order: the
/// connections, then the database file (closing a descriptor of it while
/// a connection of ours lives would drop that connection's POSIX locks).
struct Conns {
    writer: Connection,
    reader: Connection,
    /// Runs our checkpoints (the reader stays in its read transaction).
    checkpointer: Connection,
    /// The database file, kept open as long as the connections.
    db_file: Arc<File>,
}

impl Conns {
    /// Opens the three connections and the database file; also returns the
    /// root page of `_litestream_seq` (created if missing).
    fn open(path: &Path, options: &DbOptions) -> Result<(Conns, u32), ReplicateError> {
        let db_file =
            Arc::new(File::open(path).map_err(io(format!("opening {}", path.display())))?);
        let writer = open_connection(path, options.busy_timeout)?;
        writer
            .execute_batch(SCHEMA)
            .map_err(sql("creating _litestream_seq"))?;
        let reader = open_connection(path, options.busy_timeout)?;
        let checkpointer = open_connection(path, options.busy_timeout)?;
        let root = seq_root(&writer)?;
        Ok((
            Conns {
                writer,
                reader,
                checkpointer,
                db_file,
            },
            root,
        ))
    }
}

/// What a released database last saw of its files: the database file's
/// inode, and the WAL's inode, size and modification time (none when it
/// does not exist). Any write to the WAL after the release changes it: the
/// release waits until the WAL has been unchanged for [`QUIET`], longer
/// than the file system's timestamp granularity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Probe {
    db: Option<u64>,
    wal: Option<(u64, u64, i64, i64)>,
}

/// How long the WAL must have been unchanged before a release.
const QUIET: Duration = Duration::from_secs(1);

/// The database, its connections and its shadow WAL.
pub(crate) struct Db {
    path: PathBuf,
    wal_path: PathBuf,
    root: PathBuf,
    options: DbOptions,
    /// The connections and the database file; `None` while released.
    conns: Option<Conns>,
    /// While a release is attempted, views carry no database file.
    releasing: bool,
    /// What the files looked like at the release (`Some` while released).
    released: Option<Probe>,
    /// Descriptors taken from the shared budget while awake.
    permit: Option<super::Taken>,
    reading: bool,
    identity: (u64, u64),
    shadow: Option<Shadow>,
    last_checkpoint: Instant,
    /// Checkpoints in a row that did not restart the WAL (another
    /// connection's read transaction holds it: a second replicator?).
    stalled: u32,
    copied_at: SystemTime,
    first_index: u64,
    /// The index the last WAL restart closed and its length.
    closed: Option<(u64, u64)>,
    /// The running kernel's boot id (see [`BOOT`]); without one, the
    /// shadow is synced every round.
    boot: Option<String>,
    /// Read buffer of `copy_frames`, kept between rounds.
    buf: Vec<u8>,
    /// Root page of `_litestream_seq`: the page our restarting write changes.
    seq_root: u32,
    /// Held while replicating: one replicator per shadow directory.
    _lock: File,
    /// When a round last copied new frames of the application's.
    last_new: Instant,
    /// What the database side has done, for [`Replicator::status`](super::Replicator::status).
    pub(crate) counters: Arc<DbCounters>,
    /// Where readers find the current index's bytes.
    tail: Arc<Tail>,
    /// Set by `resume` from the last stop's [`EndMark`]: the end the
    /// frames taken in from the WAL must reach to continue.
    must_reach: u64,
}

/// Locks `<root>/lock`, so two replicators never share a shadow WAL.
fn lock_shadow(root: &Path) -> Result<File, ReplicateError> {
    let path = root.join("lock");
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(io(format!("opening {}", path.display())))?;
    match rustix::fs::flock(&file, rustix::fs::FlockOperation::NonBlockingLockExclusive) {
        Ok(()) => Ok(file),
        Err(rustix::io::Errno::WOULDBLOCK) => Err(ReplicateError::Busy(root.to_owned())),
        Err(e) => Err(io(format!("locking {}", path.display()))(e.into())),
    }
}

fn io(context: String) -> impl FnOnce(std::io::Error) -> ReplicateError {
    move |source| ReplicateError::Io { context, source }
}

fn sql(context: &'static str) -> impl FnOnce(rusqlite::Error) -> ReplicateError {
    move |source| ReplicateError::Sqlite { context, source }
}

fn identity(path: &Path) -> Result<(u64, u64), ReplicateError> {
    let meta = fs::metadata(path).map_err(io(format!("reading {}", path.display())))?;
    Ok((meta.dev(), meta.ino()))
}

fn index_file(root: &Path, generation: &Generation, index: u64) -> PathBuf {
    wal_dir(root, generation).join(format!("{index:016x}.wal"))
}

pub(crate) fn wal_dir(root: &Path, generation: &Generation) -> PathBuf {
    root.join("generations")
        .join(generation.as_str())
        .join("wal")
}

fn sync_dir(dir: &Path) -> Result<(), ReplicateError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io(format!("syncing {}", dir.display())))
}

/// The shadow directory of a database: `.<name>-replica` beside it.
pub(crate) fn default_shadow_root(db: &Path) -> PathBuf {
    let name = db
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    db.with_file_name(format!(".{name}-replica"))
}

fn open_connection(path: &Path, busy: Duration) -> Result<Connection, ReplicateError> {
    // Never created: a missing database is not replicated as an empty one.
    let flags = rusqlite::OpenFlags::SQLITE_OPEN_READ_WRITE
        | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX
        | rusqlite::OpenFlags::SQLITE_OPEN_URI;
    let conn = Connection::open_with_flags(path, flags).map_err(sql("opening the database"))?;
    conn.busy_timeout(busy)
        .map_err(sql("setting busy_timeout"))?;
    let before: String = conn
        .query_row("PRAGMA journal_mode", [], |r| r.get(0))
        .map_err(sql("reading journal_mode"))?;
    let mode: String = conn
        .query_row("PRAGMA journal_mode = wal", [], |r| r.get(0))
        .map_err(sql("switching to WAL mode"))?;
    if !before.eq_ignore_ascii_case("wal") && mode.eq_ignore_ascii_case("wal") {
        // Persistent, and the application's own connections now use WAL
        // too: say so (as Litestream does it silently).
        warn!(
            path = %path.display(),
            was = %before,
            "the database was in {before} journal mode; switched it to WAL (replication needs \
             WAL; the change persists in the file)"
        );
    }
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(ReplicateError::NotWal(path.to_owned(), mode));
    }
    // Our own connections never checkpoint on their own, not even when
    // closed as the last connection to the database (which would also
    // delete the WAL, and the next one would not continue the shadow).
    conn.execute_batch("PRAGMA wal_autocheckpoint = 0")
        .map_err(sql("disabling autocheckpoint"))?;
    conn.set_db_config(
        rusqlite::config::DbConfig::SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE,
        true,
    )
    .map_err(sql("disabling the checkpoint on close"))?;
    Ok(conn)
}

impl Db {
    /// Opens the database and resumes its shadow WAL, or starts a new
    /// generation when continuity cannot be proven.
    pub(crate) fn open(
        path: &Path,
        options: DbOptions,
        permit: Option<super::Taken>,
    ) -> Result<Db, ReplicateError> {
        if !path.is_file() {
            return Err(ReplicateError::NoDatabase(path.to_owned()));
        }
        let path = path
            .canonicalize()
            .map_err(io(format!("resolving {}", path.display())))?;
        let root = options
            .shadow_dir
            .clone()
            .unwrap_or_else(|| default_shadow_root(&path));
        fs::create_dir_all(&root).map_err(io(format!("creating {}", root.display())))?;
        let lock = lock_shadow(&root)?;
        let (conns, seq_root) = Conns::open(&path, &options)?;
        let mut wal_path = path.clone().into_os_string();
        wal_path.push("-wal");
        let mut db = Db {
            identity: identity(&path)?,
            wal_path: PathBuf::from(wal_path),
            path,
            root,
            options,
            conns: Some(conns),
            releasing: false,
            released: None,
            permit,
            reading: false,
            shadow: None,
            last_checkpoint: Instant::now(),
            stalled: 0,
            copied_at: SystemTime::UNIX_EPOCH,
            first_index: 0,
            closed: None,
            boot: boot_id(),
            buf: Vec::new(),
            seq_root,
            _lock: lock,
            last_new: Instant::now(),
            counters: Arc::default(),
            tail: Arc::default(),
            must_reach: 0,
        };
        let hint = db.litestream_hint();
        if hint.ends_with("replicates this database too") {
            warn!(path = %db.path.display(), "{hint}: two replicators of one database hold off each other's checkpoints; stop one");
        }
        // A write first, so our read transaction holds a mark inside the WAL
        // (a reader of a fully checkpointed WAL would not stop a restart).
        db.conns()
            .writer
            .execute_batch(BUMP)
            .map_err(sql("writing _litestream_seq"))?;
        db.acquire_read()?;
        let resumed = db
            .resume()
            .and_then(|()| db.copy_frames().map(|_| ()))
            .and_then(|()| db.reached());
        if let Err(Discontinuity(why)) = resumed {
            db.new_generation(&why)?;
        }
        db.mark_boot()?;
        Ok(db)
    }

    fn acquire_read(&mut self) -> Result<(), ReplicateError> {
        if !self.reading {
            let begun = self
                .conns()
                .reader
                .execute_batch("BEGIN; SELECT COUNT(1) FROM _litestream_seq;");
            if let Err(e) = begun {
                // Never left inside a transaction that holds no read mark.
                if !self.conns().reader.is_autocommit() {
                    let _ = self.conns().reader.execute_batch("ROLLBACK");
                }
                return Err(sql("starting the read transaction")(e));
            }
            self.reading = true;
        }
        Ok(())
    }

    /// Ends the read transaction; from then on the WAL may change, so no
    /// reader is routed to it.
    fn release_read(&mut self) -> Result<(), ReplicateError> {
        self.tail.close();
        self.end_read()
    }

    /// Moves the read transaction to the WAL's end. Only under our write
    /// lock: nobody can restart the WAL meanwhile, so readers stay routed
    /// to it, unless the new read fails.
    fn renew_read(&mut self) -> Result<(), ReplicateError> {
        let renewed = self.end_read().and_then(|()| self.acquire_read());
        if renewed.is_err() {
            self.tail.close();
        }
        renewed
    }

    fn end_read(&mut self) -> Result<(), ReplicateError> {
        if self.reading {
            self.conns()
                .reader
                .execute_batch("ROLLBACK")
                .map_err(sql("ending the read transaction"))?;
            self.reading = false;
        }
        Ok(())
    }

    fn read_wal_header(&self) -> Option<[u8; WAL_HEADER_LEN]> {
        let file = File::open(&self.wal_path).ok()?;
        let mut header = [0u8; WAL_HEADER_LEN];
        file.read_exact_at(&mut header, 0).ok()?;
        WalHeader::parse(&header).ok()?;
        Some(header)
    }

    /// Picks up the shadow WAL a previous run left, if the live WAL still
    /// continues it: same header, and the last copied frame still there.
    fn resume(&mut self) -> Result<(), Discontinuity> {
        let lost = |why: &str| Discontinuity(why.to_owned());
        let name = fs::read_to_string(self.root.join("generation"))
            .map_err(|_| lost("no replication state"))?;
        let generation = Generation::new(name.trim()).map_err(|_| lost("unreadable state"))?;
        // Frames copied since the last sync live in the page cache, which a
        // killed process keeps and a reboot does not (and after a power loss
        // the WAL may have lost its own unsynced tail, to be written anew at
        // the same offsets): after a reboot, only a shadow synced at a clean
        // stop (no boot file) continues.
        if let Ok(then) = fs::read_to_string(self.root.join(BOOT)) {
            if self.boot.as_deref() != Some(then.trim()) {
                return Err(lost(
                    "the machine restarted since the shadow was last written, and what it had \
                     not synced may be lost",
                ));
            }
        }
        let dir = wal_dir(&self.root, &generation);
        let mut indexes: Vec<u64> = fs::read_dir(&dir)
            .map_err(|_| lost("no shadow WAL"))?
            .filter_map(|e| {
                let name = e.ok()?.file_name().into_string().ok()?;
                u64::from_str_radix(name.strip_suffix(".wal")?, 16).ok()
            })
            .collect();
        indexes.sort_unstable();
        let (&first, &index) = indexes
            .first()
            .zip(indexes.last())
            .ok_or_else(|| lost("no shadow WAL"))?;
        let path = index_file(&self.root, &generation, index);
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(&path)
            .map_err(|_| lost("shadow WAL unreadable"))?;
        let mut header = [0u8; WAL_HEADER_LEN];
        file.read_exact(&mut header)
            .map_err(|_| lost("shadow WAL header unreadable"))?;
        let parsed = WalHeader::parse(&header).map_err(|_| lost("shadow WAL header invalid"))?;
        if self.read_wal_header() != Some(header) {
            // Frames written meanwhile may be gone with the old WAL.
            return Err(lost(
                "the WAL was restarted or replaced while not replicating",
            ));
        }
        // The shadow is checked frame by frame (salts, running checksum) and
        // cut back to its last commit: a kill inside an append leaves a
        // torn or uncommitted tail, which is copied again from the WAL.
        let (len, chain) = committed_end(&file, &parsed).map_err(|_| lost("shadow unreadable"))?;
        if len > WAL_HEADER_LEN as u64 {
            // The last frame kept must still be in the WAL, unchanged.
            let frame_len = FRAME_HEADER_LEN as u64 + u64::from(parsed.page_size);
            let mut ours = [0u8; FRAME_HEADER_LEN];
            file.read_exact_at(&mut ours, len - frame_len)
                .map_err(|_| lost("shadow unreadable"))?;
            let wal = File::open(&self.wal_path).map_err(|_| lost("WAL unreadable"))?;
            let mut theirs = [0u8; FRAME_HEADER_LEN];
            wal.read_exact_at(&mut theirs, len - frame_len)
                .map_err(|_| lost("the WAL is shorter than what was copied"))?;
            if ours != theirs {
                return Err(lost("the WAL no longer holds the frames copied"));
            }
        }
        // The shadow file may end before what was shipped (the rest was
        // read from the WAL): a clean stop recorded the last committed
        // frame, which the WAL must still hold (after a power loss, the
        // WAL may have lost its unsynced tail and have other frames there).
        let end = EndMark::read(&self.root).map_err(|()| lost("the stop mark is unreadable"))?;
        if let Some(end) = end {
            let frame_len = FRAME_HEADER_LEN as u64 + u64::from(parsed.page_size);
            if end.generation == generation && end.len > len {
                let wal = File::open(&self.wal_path).map_err(|_| lost("WAL unreadable"))?;
                let mut theirs = [0u8; FRAME_HEADER_LEN];
                let held = end.index == index
                    && end.len >= WAL_HEADER_LEN as u64 + frame_len
                    && wal.read_exact_at(&mut theirs, end.len - frame_len).is_ok()
                    && theirs == end.frame;
                if !held {
                    return Err(lost(
                        "the WAL no longer holds the frames replicated before the last stop",
                    ));
                }
                // And every frame before it: see `reached`.
                self.must_reach = end.len;
            }
        }
        file.set_len(len).map_err(|_| lost("shadow unwritable"))?;
        file.seek(SeekFrom::End(0))
            .map_err(|_| lost("shadow unwritable"))?;
        info!(
            generation = %generation,
            index = %format_index(index),
            offset = %format_index(len),
            "resumed the generation"
        );
        self.first_index = first;
        self.closed = None;
        self.shadow = Some(Shadow {
            generation,
            index,
            header,
            parsed,
            len,
            written: len,
            chain,
            // Read back after a kill, it may be in the page cache only.
            synced: WAL_HEADER_LEN as u64,
            spilled: None,
            file: Some(file),
        });
        Ok(())
    }

    /// Whether the frames taken in on resuming reach the end the last stop
    /// recorded: their running checksum then ends in the frame it recorded,
    /// so they are the frames replicated (a power loss may have cost the
    /// WAL a page in the middle and kept the last).
    fn reached(&mut self) -> Result<(), Discontinuity> {
        let len = self.shadow.as_ref().map_or(0, |s| s.len);
        let must = std::mem::take(&mut self.must_reach);
        if len < must {
            return Err(Discontinuity(
                "the WAL no longer holds every frame replicated before the last stop".into(),
            ));
        }
        Ok(())
    }

    /// Starts a new generation at index 0 of the current WAL.
    pub(crate) fn new_generation(&mut self, why: &str) -> Result<(), ReplicateError> {
        // The WAL may change from here on: no reader is routed to it.
        self.tail.close();
        if identity(&self.path)? != self.identity {
            self.reopen()?;
        }
        // A write makes sure the WAL has a header.
        self.release_read()?;
        self.conns()
            .writer
            .execute_batch(BUMP)
            .map_err(sql("writing _litestream_seq"))?;
        self.acquire_read()?;
        let header = self.read_wal_header().ok_or_else(|| ReplicateError::Io {
            context: format!("reading the WAL header of {}", self.wal_path.display()),
            source: std::io::Error::other("no valid WAL header after a write"),
        })?;
        let generation = Generation::random();
        let dir = wal_dir(&self.root, &generation);
        fs::create_dir_all(&dir).map_err(io(format!("creating {}", dir.display())))?;
        let shadow = self.create_index(&generation, 0, header)?;
        // Only then name it current.
        let state = self.root.join("generation");
        let temp = self.root.join("generation.tmp");
        fs::write(&temp, generation.as_str()).map_err(io(format!("writing {}", temp.display())))?;
        File::open(&temp)
            .and_then(|f| f.sync_all())
            .map_err(io(format!("syncing {}", temp.display())))?;
        fs::rename(&temp, &state).map_err(io(format!("writing {}", state.display())))?;
        sync_dir(&self.root)?;
        // The old generations' shadows are of no further use.
        if let Ok(entries) = fs::read_dir(self.root.join("generations")) {
            for entry in entries.flatten() {
                if entry.file_name() != generation.as_str() {
                    let _ = fs::remove_dir_all(entry.path());
                }
            }
        }
        info!(generation = %generation, reason = why, "new generation");
        self.last_new = Instant::now();
        self.shadow = Some(shadow);
        self.first_index = 0;
        self.closed = None;
        self.copy_frames()
            .map_err(|Discontinuity(why)| ReplicateError::Io {
                context: "copying the first frames of a new generation".into(),
                source: std::io::Error::other(why),
            })?;
        Ok(())
    }

    fn create_index(
        &self,
        generation: &Generation,
        index: u64,
        header: [u8; WAL_HEADER_LEN],
    ) -> Result<Shadow, ReplicateError> {
        let path = index_file(&self.root, generation, index);
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&path)
            .map_err(io(format!("creating {}", path.display())))?;
        file.write_all(&header)
            .and_then(|()| file.sync_all())
            .map_err(io(format!("writing {}", path.display())))?;
        sync_dir(path.parent().expect("index files have a directory"))?;
        let parsed = WalHeader::parse(&header).expect("checked when read");
        Ok(Shadow {
            generation: generation.clone(),
            index,
            header,
            parsed,
            len: WAL_HEADER_LEN as u64,
            written: WAL_HEADER_LEN as u64,
            chain: parsed.checksum,
            synced: WAL_HEADER_LEN as u64,
            spilled: None,
            file: Some(file),
        })
    }

    /// Takes in the committed frames the WAL holds beyond the shadow's
    /// end, each checked by salt and running checksum, and routes reads of
    /// the index beyond the shadow file's valid prefix to the WAL.
    fn copy_frames(&mut self) -> Result<u64, Discontinuity> {
        let header = self.read_wal_header();
        let shadow = self.shadow.as_ref().expect("a shadow is open");
        if header != Some(shadow.header) {
            return Err(Discontinuity(
                "the WAL was restarted or truncated by another connection".into(),
            ));
        }
        let copied = self.copy_tail()?;
        self.route()
            .map_err(|e| Discontinuity(format!("the WAL cannot be read: {e}")))?;
        Ok(copied)
    }

    /// Routes reads of the current index beyond the shadow file's valid
    /// prefix to the WAL, unless they are already (its frames stay there
    /// until our own restart, which closes the route first).
    fn route(&self) -> std::io::Result<()> {
        let shadow = self.shadow.as_ref().expect("a shadow is open");
        if !self.tail.routes(&shadow.generation, shadow.index) {
            let wal = Arc::new(File::open(&self.wal_path)?);
            self.tail
                .set(&shadow.generation, shadow.index, shadow.written, wal);
        }
        Ok(())
    }

    /// Copies what the shadow file lacks of `[from, len)` of the current
    /// index from the WAL into it (at the same offsets), makes the file
    /// `len` long (with a hole below `from` when the bytes there were never
    /// written) and, when it copied anything, syncs it. Called under our
    /// write lock, just before a restart would overwrite the WAL.
    fn spill(&mut self, from: u64) -> Result<(), ReplicateError> {
        let shadow = self.shadow.as_mut().expect("a shadow is open");
        let lowest = from.max(shadow.written).max(WAL_HEADER_LEN as u64);
        // What an earlier spill of this index left from below `lowest` on
        // is there already.
        let (kept, start) = match shadow.spilled {
            Some((f, e)) if f <= lowest && lowest <= e => (f, e.max(lowest)),
            _ => (lowest, lowest),
        };
        debug!(from, start, len = shadow.len, index = shadow.index, "spill");
        let context = || {
            format!(
                "copying the unshipped WAL of {} into its shadow",
                self.path.display()
            )
        };
        let file = shadow.file().map_err(io(context()))?;
        if start < shadow.len {
            let wal = File::open(&self.wal_path).map_err(io(context()))?;
            let mut buf = std::mem::take(&mut self.buf);
            let mut at = start;
            while at < shadow.len {
                let n = (shadow.len - at).min(4 << 20) as usize;
                if buf.len() < n {
                    buf.resize(n, 0);
                }
                wal.read_exact_at(&mut buf[..n], at)
                    .and_then(|()| file.write_all_at(&buf[..n], at))
                    .map_err(io(context()))?;
                at += n as u64;
            }
            self.buf = buf;
            self.counters
                .shadow_bytes
                .fetch_add(shadow.len - start, Ordering::Relaxed);
        }
        if file.metadata().map_err(io(context()))?.len() < shadow.len {
            file.set_len(shadow.len).map_err(io(context()))?;
        }
        if start < shadow.len {
            file.sync_data().map_err(io(context()))?;
            shadow.synced = shadow.written;
            self.counters.shadow_syncs.fetch_add(1, Ordering::Relaxed);
        }
        shadow.spilled = Some((kept, shadow.len.max(start)));
        Ok(())
    }

    /// The frames at the shadow's end that continue it (same salts, the
    /// running checksum unbroken), up to the last commit, whatever header
    /// the WAL file now has.
    fn copy_tail(&mut self) -> Result<u64, Discontinuity> {
        // Taken before anything is read: every transaction committed before
        // this moment is in what is read below.
        let started = SystemTime::now();
        let shadow = self.shadow.as_mut().expect("a shadow is open");
        let wal = File::open(&self.wal_path)
            .map_err(|e| Discontinuity(format!("the WAL cannot be read: {e}")))?;
        let size = wal
            .metadata()
            .map_err(|e| Discontinuity(format!("the WAL cannot be read: {e}")))?
            .len();
        let frame_len = shadow.frame_len();
        let parsed = shadow.parsed;
        let mut offset = shadow.len;
        let mut chain = shadow.chain;
        let mut committed = (shadow.len, shadow.chain);
        // Batches start small and double while every frame is valid: past
        // the last valid frame the file may hold stale frames of an earlier
        // WAL (SQLite reuses the file after a restart), which a large first
        // read would pull in every round for nothing.
        let max_batch = (4 << 20) / frame_len.max(1) + 1;
        let mut batch_frames = 8u64.min(max_batch);
        // Without a boot id, every frame goes into the shadow file (see
        // `resume`); else the WAL keeps them.
        let write = self.boot.is_none();
        let mut buf = std::mem::take(&mut self.buf);
        'outer: while offset + frame_len <= size {
            let frames = ((size - offset) / frame_len).min(batch_frames);
            batch_frames = (batch_frames * 2).min(max_batch);
            let want = (frames * frame_len) as usize;
            if buf.len() < want {
                buf.resize(want, 0);
            }
            let batch = &mut buf[..want];
            if wal.read_exact_at(batch, offset).is_err() {
                break;
            }
            let mut valid = 0;
            for frame in batch.chunks_exact(frame_len as usize) {
                let head = &frame[..FRAME_HEADER_LEN];
                let Ok(next) = parsed.continued_by(chain, frame) else {
                    break;
                };
                chain = next;
                valid += 1;
                if be32(head, 4) != 0 {
                    committed = (offset + valid * frame_len, chain);
                }
            }
            if write && valid > 0 {
                let bytes = &batch[..(valid * frame_len) as usize];
                shadow
                    .file()
                    .and_then(|f| f.write_all_at(bytes, offset))
                    .map_err(|e| Discontinuity(format!("the shadow WAL cannot be written: {e}")))?;
            }
            offset += valid * frame_len;
            if valid < frames {
                break 'outer;
            }
        }
        self.buf = buf;
        let shadow = self.shadow.as_mut().expect("a shadow is open");
        let copied = committed.0 - shadow.len;
        self.counters.copied(copied, copied / frame_len);
        if write {
            self.counters
                .shadow_bytes
                .fetch_add(copied, Ordering::Relaxed);
        }
        if write && offset != committed.0 {
            // Drop frames of a transaction not committed yet; they are copied
            // again once it is.
            shadow
                .file()
                .and_then(|f| f.set_len(committed.0))
                .map_err(|e| Discontinuity(format!("the shadow WAL cannot be written: {e}")))?;
        }
        // Neither written nor synced here: until our checkpoint restarts
        // the WAL (which first copies and syncs what a replica has not
        // shipped), every frame is in the WAL, which no one else can
        // restart under our read transaction (a reboot ends the
        // generation: see `resume`). Without a boot id to tell a reboot
        // by, every round writes and syncs.
        shadow.len = committed.0;
        shadow.chain = committed.1;
        if write {
            shadow.written = committed.0;
        }
        self.copied_at = started;
        if write {
            self.make_durable()
                .map_err(|e| Discontinuity(format!("the shadow WAL cannot be synced: {e}")))?;
        }
        Ok(copied)
    }

    /// One round's first half: copy new frames, or start a new generation
    /// when continuity is lost. Publish after this, then [`Db::checkpoint`] if [`Db::checkpoint_due`].
    pub(crate) fn sync(
        &mut self,
        force_new_generation: bool,
        may_start_generation: bool,
    ) -> Result<(), ReplicateError> {
        if force_new_generation && may_start_generation {
            return self.new_generation("a replica cannot continue the generation");
        }
        match identity(&self.path) {
            Ok(id) if id == self.identity => {}
            Ok(_) if may_start_generation => {
                warn!(path = %self.path.display(), "the database file was replaced; reopening it");
                self.reopen()?;
                return self.new_generation("the database file was replaced");
            }
            Ok(_) => return Ok(()),
            Err(_) => {
                // Moved away or deleted: never recreate it (an empty
                // database would become the newest generation); wait.
                warn!(path = %self.path.display(), "the database file is missing; waiting for it");
                return Ok(());
            }
        }
        self.acquire_read()?;
        let why = match self.copy_frames() {
            Ok(copied) => {
                if copied > 0 {
                    self.last_new = Instant::now();
                    debug!(bytes = copied, "copied WAL frames");
                }
                return Ok(());
            }
            Err(Discontinuity(why)) => why,
        };
        if !may_start_generation {
            // A snapshot is being read; decide on the next round.
            return Ok(());
        }
        self.new_generation(&why)
    }

    /// What the database and WAL files look like now.
    pub(crate) fn probe(&self) -> Probe {
        let wal = fs::metadata(&self.wal_path)
            .ok()
            .map(|m| (m.ino(), m.len(), m.mtime(), m.mtime_nsec()));
        let db = fs::metadata(&self.path).ok().map(|m| m.ino());
        Probe { db, wal }
    }

    /// Whether the connections and files are released.
    pub(crate) fn is_released(&self) -> bool {
        self.released.is_some()
    }

    /// Whether a released database's files changed since its release.
    pub(crate) fn changed_since_release(&self) -> bool {
        self.released.as_ref() != Some(&self.probe())
    }

    /// Whether the WAL holds more than our own last write (a release first
    /// checkpoints, so that the application's next write appends to a WAL
    /// that is not fully checkpointed and so does not restart it).
    pub(crate) fn wal_holds_frames(&self) -> bool {
        self.shadow.as_ref().map_or(0, Shadow::frames) > 1
    }

    /// How long since a round last copied new frames.
    pub(crate) fn quiet_for(&self) -> Duration {
        self.last_new.elapsed()
    }

    /// Starts a release: views published from now on carry no database
    /// file (a snapshot cannot start). Undone by [`Db::release`] failing.
    pub(crate) fn begin_release(&mut self) {
        self.releasing = true;
    }

    /// Releases the connections, the database and shadow files and the
    /// descriptor permit, if the WAL has been quiet for [`QUIET`], holds
    /// nothing new, and nothing else holds the database file (a view
    /// published since [`Db::begin_release`] carries none, so only a
    /// snapshot still reading one could). Returns whether it did; the
    /// database then holds only its shadow lock until [`Db::wake`].
    pub(crate) fn release(&mut self) -> bool {
        let released = self.try_release();
        self.releasing = false;
        released
    }

    fn try_release(&mut self) -> bool {
        // Taken first: a write after it changes the WAL's modification
        // time, since the last one was at least QUIET before.
        let probe = self.probe();
        let quiet = fs::metadata(&self.wal_path)
            .and_then(|m| m.modified())
            .map_or(true, |at| at.elapsed().is_ok_and(|age| age >= QUIET));
        if !quiet || !matches!(self.copy_frames(), Ok(0)) {
            return false;
        }
        let Some(conns) = self.conns.as_ref() else {
            return false;
        };
        if Arc::strong_count(&conns.db_file) > 1 {
            return false;
        }
        // Released, the WAL may change: reads come from the shadow (every
        // replica is at its end: see `db_loop`).
        self.tail.close();
        if self.release_read().is_err() {
            return false;
        }
        self.conns = None;
        if let Some(shadow) = self.shadow.as_mut() {
            shadow.file = None;
        }
        self.buf = Vec::new();
        self.permit = None;
        self.released = Some(probe);
        self.counters
            .releases
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        super::trim::soon();
        debug!(path = %self.path.display(), "released: nothing new to copy");
        true
    }

    /// Opens what [`Db::release`] closed; the round that follows copies
    /// what the WAL gained meanwhile, or starts a new generation when it
    /// no longer continues the shadow (the application checkpointed and
    /// restarted it), as at start.
    pub(crate) fn wake(&mut self, permit: Option<super::Taken>) -> Result<(), ReplicateError> {
        if !self.is_released() {
            return Ok(());
        }
        let (conns, seq_root) = Conns::open(&self.path, &self.options)?;
        self.conns = Some(conns);
        self.seq_root = seq_root;
        self.permit = permit;
        self.released = None;
        self.last_new = Instant::now();
        // (A missing file is waited for by the round, as when awake.)
        if let Ok(id) = identity(&self.path) {
            if id != self.identity {
                self.identity = id;
                return self.new_generation("the database file was replaced while released");
            }
        }
        let reopened = self.shadow.as_mut().map(|shadow| {
            let path = index_file(&self.root, &shadow.generation, shadow.index);
            OpenOptions::new()
                .read(true)
                .write(true)
                .open(&path)
                .map(|file| shadow.file = Some(file))
        });
        if !matches!(reopened, Some(Ok(()))) {
            return self.new_generation("the shadow WAL is gone");
        }
        debug!(path = %self.path.display(), "woken: the WAL changed");
        Ok(())
    }

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

    /// The database file's path (resolved).
    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// The WAL file's path.
    pub(crate) fn wal_path(&self) -> &Path {
        &self.wal_path
    }

    fn reopen(&mut self) -> Result<(), ReplicateError> {
        self.tail.close();
        self.reading = false;
        // The old connections close before the new ones open.
        self.conns = None;
        let (conns, seq_root) = Conns::open(&self.path, &self.options)?;
        self.conns = Some(conns);
        self.seq_root = seq_root;
        self.identity = identity(&self.path)?;
        Ok(())
    }

    fn conns(&self) -> &Conns {
        self.conns
            .as_ref()
            .expect("the connections are open while the database is awake")
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
    fn checkpoint_with(&mut self, force: bool, hooks: Hooks) -> Result<bool, ReplicateError> {
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

    fn checkpoint_locked(&mut self, force: bool, hooks: Hooks) -> Result<(), ReplicateError> {
        if let Err(Discontinuity(why)) = self.copy_frames() {
            self.conns()
                .writer
                .execute_batch("ROLLBACK")
                .map_err(sql("rolling back"))?;
            return self.new_generation(&why);
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
        if let Err(Discontinuity(why)) = self.copy_frames() {
            self.conns()
                .writer
                .execute_batch("ROLLBACK")
                .map_err(sql("rolling back"))?;
            return self.new_generation(&why);
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
    fn litestream_hint(&self) -> String {
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

    /// Records the boot the shadow's unsynced frames belong to (once per
    /// process: a clean stop syncs the shadow and removes it).
    fn mark_boot(&self) -> Result<(), ReplicateError> {
        self.write_boot()?;
        // The last stop's mark was for `resume` (removed only now: a power
        // loss in between leaves one of the two); from now on the WAL moves.
        match fs::remove_file(self.root.join(END)) {
            Ok(()) => sync_dir(&self.root),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(io(format!("removing {}", self.root.join(END).display()))(e)),
        }
    }

    fn write_boot(&self) -> Result<(), ReplicateError> {
        let Some(boot) = &self.boot else {
            return Ok(());
        };
        let path = self.root.join(BOOT);
        let temp = self.root.join(format!("{BOOT}.tmp"));
        fs::write(&temp, boot)
            .and_then(|()| File::open(&temp)?.sync_all())
            .and_then(|()| fs::rename(&temp, &path))
            .map_err(io(format!("writing {}", path.display())))?;
        sync_dir(&self.root)
    }

    /// Syncs the frames written into the shadow file to disk.
    fn make_durable(&mut self) -> Result<(), ReplicateError> {
        let shadow = self.shadow.as_mut().expect("a shadow is open");
        if shadow.synced < shadow.written {
            shadow.file().and_then(File::sync_data).map_err(io(format!(
                "syncing the shadow WAL of {}",
                self.path.display()
            )))?;
            shadow.synced = shadow.written;
            self.counters.shadow_syncs.fetch_add(1, Ordering::Relaxed);
        }
        Ok(())
    }

    /// What replicas see.
    pub(crate) fn view(&self) -> ShadowView {
        let shadow = self.shadow.as_ref().expect("a shadow is open");
        ShadowView {
            generation: shadow.generation.clone(),
            dir: wal_dir(&self.root, &shadow.generation),
            first_index: self.first_index,
            index: shadow.index,
            len: shadow.len,
            copied_at: self.copied_at,
            db_file: self
                .conns
                .as_ref()
                .filter(|_| !self.releasing)
                .map(|c| c.db_file.clone()),
            released: self.released.is_some(),
            closed: self.closed,
            tail: self.tail.clone(),
            announced: std::time::Instant::now(),
        }
    }

    /// The index the last restart closed, with its length (in the
    /// current generation).
    pub(crate) fn closed(&self) -> Option<(u64, u64)> {
        self.closed
    }

    /// Whether the index the last restart closed is still on disk.
    pub(crate) fn closed_kept(&self) -> bool {
        self.closed
            .is_some_and(|(index, _)| self.first_index <= index)
    }

    /// Removes shadow index files every replica has shipped (below `keep`).
    pub(crate) fn prune(&mut self, keep: u64) {
        let Some(shadow) = self.shadow.as_ref() else {
            return;
        };
        let keep = keep.min(shadow.index);
        while self.first_index < keep {
            let path = index_file(&self.root, &shadow.generation, self.first_index);
            if let Err(e) = fs::remove_file(&path) {
                if e.kind() != std::io::ErrorKind::NotFound {
                    warn!(path = %path.display(), error = %e, "cannot remove a shipped shadow WAL");
                    return;
                }
            }
            self.first_index += 1;
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
const STALLED_WARNING: u32 = 10;

/// The root page of `_litestream_seq` (the one page our write changes).
fn seq_root(conn: &Connection) -> Result<u32, ReplicateError> {
    conn.query_row(
        "SELECT rootpage FROM sqlite_master WHERE type = 'table' AND name = '_litestream_seq'",
        [],
        |r| r.get(0),
    )
    .map_err(sql("reading the schema"))
}

/// The pages the first transaction of the WAL `header` names writes, if its
/// frames up to the first commit are valid (salts, running checksum).
fn first_transaction_pages(wal: &File, header: &[u8; WAL_HEADER_LEN]) -> Option<Vec<u32>> {
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

/// Where the last committed frame of a shadow WAL ends, and the running
/// checksum there; frames are checked by salts and checksum on the way.
fn committed_end(file: &File, header: &WalHeader) -> std::io::Result<(u64, (u32, u32))> {
    let frame_len = FRAME_HEADER_LEN + header.page_size as usize;
    let size = file.metadata()?.len();
    let mut frame = vec![0u8; frame_len];
    let mut chain = header.checksum;
    let mut at = WAL_HEADER_LEN as u64;
    let mut committed = (at, chain);
    while at + frame_len as u64 <= size {
        file.read_exact_at(&mut frame, at)?;
        let head = &frame[..FRAME_HEADER_LEN];
        let Ok(next) = header.continued_by(chain, &frame) else {
            break;
        };
        chain = next;
        at += frame_len as u64;
        if be32(head, 4) != 0 {
            committed = (at, chain);
        }
    }
    Ok(committed)
}

fn be32(bytes: &[u8], at: usize) -> u32 {
    u32::from_be_bytes(bytes[at..at + 4].try_into().expect("4 bytes"))
}

impl Drop for Db {
    /// A clean stop: the shadow synced and the last frame recorded (see
    /// [`EndMark`]), it no longer depends on this boot.
    fn drop(&mut self) {
        self.tail.close();
        let marked = self.shadow.as_ref().is_some_and(|s| s.file.is_some())
            && self.make_durable().is_ok()
            && self.mark_end().is_ok();
        if self.conns.is_some() {
            let _ = self.release_read();
        }
        if marked && fs::remove_file(self.root.join(BOOT)).is_ok() {
            let _ = sync_dir(&self.root);
        }
    }
}

impl Db {
    /// Records the current index's last committed frame header, synced.
    fn mark_end(&self) -> Result<(), ReplicateError> {
        let shadow = self.shadow.as_ref().expect("a shadow is open");
        if shadow.written >= shadow.len {
            // The shadow file holds it all.
            return Ok(());
        }
        let mut frame = [0u8; FRAME_HEADER_LEN];
        File::open(&self.wal_path)
            .and_then(|wal| wal.read_exact_at(&mut frame, shadow.len - shadow.frame_len()))
            .map_err(io(format!("reading {}", self.wal_path.display())))?;
        let mark = EndMark {
            generation: shadow.generation.clone(),
            index: shadow.index,
            len: shadow.len,
            frame,
        };
        let (path, temp) = (self.root.join(END), self.root.join(format!("{END}.tmp")));
        fs::write(&temp, mark.to_string())
            .and_then(|()| File::open(&temp)?.sync_all())
            .and_then(|()| fs::rename(&temp, &path))
            .map_err(io(format!("writing {}", path.display())))?;
        sync_dir(&self.root)
    }
}

/// The file in the shadow directory a clean stop leaves: the current index
/// and the header of its last committed frame (the shadow file itself holds
/// only what a restart made it hold; the WAL holds the rest).
const END: &str = "end";

/// What [`END`] holds: `<generation> <index> <len> <frame header, hex>`.
#[derive(Debug, PartialEq, Eq)]
struct EndMark {
    generation: Generation,
    index: u64,
    len: u64,
    frame: [u8; FRAME_HEADER_LEN],
}

impl std::fmt::Display for EndMark {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {} {} ", self.generation, self.index, self.len)?;
        self.frame.iter().try_for_each(|b| write!(f, "{b:02x}"))
    }
}

impl EndMark {
    /// The mark in `root`, if any; an error if it cannot be read.
    fn read(root: &Path) -> Result<Option<EndMark>, ()> {
        match fs::read_to_string(root.join(END)) {
            Ok(text) => Self::parse(&text).map(Some).ok_or(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(_) => Err(()),
        }
    }

    fn parse(text: &str) -> Option<EndMark> {
        let mut parts = text.split_whitespace();
        let generation = Generation::new(parts.next()?).ok()?;
        let index = parts.next()?.parse().ok()?;
        let len = parts.next()?.parse().ok()?;
        let hex = parts.next()?;
        let mut frame = [0u8; FRAME_HEADER_LEN];
        if hex.len() != 2 * FRAME_HEADER_LEN || parts.next().is_some() {
            return None;
        }
        for (i, b) in frame.iter_mut().enumerate() {
            *b = u8::from_str_radix(hex.get(2 * i..2 * i + 2)?, 16).ok()?;
        }
        Some(EndMark {
            generation,
            index,
            len,
            frame,
        })
    }
}

/// The file in the shadow directory naming the boot whose page cache holds
/// its unsynced frames.
const BOOT: &str = "boot";

/// The running kernel's boot id (Linux), if it can be read.
fn boot_id() -> Option<String> {
    fs::read_to_string("/proc/sys/kernel/random/boot_id")
        .ok()
        .map(|id| id.trim().to_owned())
        .filter(|id| !id.is_empty())
}
