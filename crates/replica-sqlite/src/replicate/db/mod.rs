//! The database side of replication: SQLite connections, the shadow WAL on
//! local disk, checkpoints and generations.
//!
//! Runs on a blocking thread. Three connections: the *reader* holds a read
//! transaction between syncs, so no other connection can restart the WAL
//! under us (a restart needs every reader slot free); the *writer* takes the
//! write lock for our checkpoints, so no frame is appended between our last
//! copy and the restart; the *checkpointer* runs them. Every WAL incarnation is an *index*, kept as
//! `<shadow>/generations/<g>/wal/<index>.wal` (header + frames, the same
//! bytes at the same offsets as the WAL). Its committed frames are
//! validated by salt and running checksum as they come ([`copy`]); the
//! replicas read the current index from the WAL itself, and what none of
//! them shipped is copied into the index's file before a restart.
//! [`checkpoint`] holds the checkpoints; [`resume`], continuing after a
//! stop.

mod checkpoint;
mod copy;
mod resume;
#[cfg(test)]
mod tests;

pub(crate) use checkpoint::Hooks;
use resume::{boot_id, BOOT};

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
    /// Set by `resume` from the last stop's [`EndMark`](resume::EndMark): the end the
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

/// The root page of `_litestream_seq` (the one page our write changes).
fn seq_root(conn: &Connection) -> Result<u32, ReplicateError> {
    conn.query_row(
        "SELECT rootpage FROM sqlite_master WHERE type = 'table' AND name = '_litestream_seq'",
        [],
        |r| r.get(0),
    )
    .map_err(sql("reading the schema"))
}

fn be32(bytes: &[u8], at: usize) -> u32 {
    u32::from_be_bytes(bytes[at..at + 4].try_into().expect("4 bytes"))
}

impl Drop for Db {
    /// A clean stop: the shadow synced and the last frame recorded (see
    /// [`EndMark`](resume::EndMark)), it no longer depends on this boot.
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
