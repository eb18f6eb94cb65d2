//! Local-filesystem backend of replica.
//!
//! [`FileStore`] is a [`KeyStore`] over a root directory: each key is a file
//! path below the root. [`FileClient`] is the replica client over it, in
//! either layout of `SPEC.md` (`<root>/generations/<generation>/...`), so a
//! directory replicated by Litestream 0.3 reads as it is.
//!
//! Every path below the root is resolved one component at a time from a
//! directory descriptor with `O_NOFOLLOW`: no symbolic link is followed at
//! any level, so nothing outside the root is ever read, created or removed
//! (a link where a directory or object belongs is not part of the replica).
//!
//! Writes are durable and atomic: bytes go to a temporary file with a unique
//! name in the destination directory (mode and owner set before any byte is
//! written), which is fsynced, renamed over the final name, and then the
//! directory is fsynced; every directory on the way is fsynced in its parent
//! when created, and once per process when found (so a retry after a failed
//! directory sync cannot acknowledge a file whose directory entry was never
//! made durable). A crash leaves the old object or the new one, never a
//! prefix; temporaries have non-canonical names, so listings never show
//! them. Files are created with mode 0600 and directories 0700 unless
//! [`FileOptions`] say otherwise. A directory emptied by deletes is removed.

use std::collections::HashSet;
use std::fs;
use std::io::{self, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use chrono::{DateTime, Utc};
use futures::TryStreamExt;
use replica_core::layout::{self, Layout};
use replica_core::{
    async_trait, read_head, reader_stream, ByteStream, Error, KeyStore, Listing, ObjectMeta,
    PutOptions, Result, StoreClient,
};
use rustix::fs::{self as rfs, AtFlags, Mode, OFlags};
use rustix::io::Errno;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

mod beneath;

use beneath::{child_dir, children, components, dir_at, file_stat, open_file, remove_tree};

/// Input up to this size is written in a single blocking call.
const SMALL_WRITE: usize = 1 << 20;
/// Chunk size of snapshot and segment readers.
const READ_CHUNK: usize = 256 * 1024;

/// File operations (a list, a small write, a commit, a delete) running at
/// once, process-wide, across every file store. Each holds a blocking
/// thread; thousands of stores used together (one per database of a large
/// directory) would otherwise ask for a thread each. An operation never
/// waits for another, so a turn always comes back.
pub const MAX_BLOCKING: usize = 32;

static BLOCKING: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(MAX_BLOCKING);

/// Permissions and ownership of what the file backend creates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileOptions {
    /// Mode of created files (default 0o600).
    pub file_mode: u32,
    /// Mode of created directories (default 0o700).
    pub dir_mode: u32,
    /// Owner to set on created files and directories, if any.
    pub uid: Option<u32>,
    /// Group to set on created files and directories, if any.
    pub gid: Option<u32>,
}

impl Default for FileOptions {
    fn default() -> Self {
        FileOptions {
            file_mode: 0o600,
            dir_mode: 0o700,
            uid: None,
            gid: None,
        }
    }
}

/// A replica in a local directory, in any layout.
pub type FileClient = StoreClient<FileStore>;

/// Files under a root directory, written durably and atomically.
#[derive(Debug, Clone)]
pub struct FileStore {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    root: PathBuf,
    options: FileOptions,
    /// Directories (relative) whose entries are known to be fsynced in their
    /// parents, all the way up from the root. Forgotten when it reaches
    /// `durable_limit` entries: a forgotten directory costs one more fsync of
    /// its parent, never a lost entry, and a long-lived writer over many
    /// indexes keeps bounded memory.
    durable: Mutex<HashSet<String>>,
    durable_limit: usize,
}

/// How many durable directories a store remembers before it starts over.
const DURABLE_DIRS_REMEMBERED: usize = 4096;

/// A temporary file being written, and where it will be renamed.
struct Pending {
    dir: OwnedFd,
    name: String,
    temp: String,
    file: fs::File,
}

impl FileStore {
    /// A store under `root`, with default options.
    ///
    /// The directory need not exist; it is created on the first write. An
    /// empty `root` is accepted here but every operation then fails with
    /// "replica path required".
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self::with_options(root, FileOptions::default())
    }

    /// A store with explicit modes and ownership.
    pub fn with_options(root: impl Into<PathBuf>, options: FileOptions) -> Self {
        FileStore {
            inner: Arc::new(Inner {
                root: root.into(),
                options,
                durable: Mutex::new(HashSet::new()),
                durable_limit: DURABLE_DIRS_REMEMBERED,
            }),
        }
    }

    /// The root directory.
    pub fn root(&self) -> &Path {
        &self.inner.root
    }

    /// Removes temporary files that writers killed mid-write left behind,
    /// if they are at least `min_age` old; returns how many were removed.
    ///
    /// Temporaries are never listed, so they are harmless but take space.
    /// Choose `min_age` longer than any write in progress can take (a live
    /// writer's temporary vanishes on rename). Only names of the form this
    /// backend creates (`.<canonical name>.<16 hex>.tmp`) are touched, and
    /// links are never followed.
    pub async fn remove_stale_temporaries(&self, min_age: std::time::Duration) -> Result<usize> {
        self.blocking(move |inner| {
            let Some(generations) = inner.dir(layout::GENERATIONS_DIR)? else {
                return Ok(0);
            };
            let mut removed = 0;
            let mut dirs = vec![generations];
            while let Some(dir) = dirs.pop() {
                let found = children(dir.as_fd()).map_err(|e| inner.error("listing", "", e))?;
                for child in found {
                    if child.is_dir {
                        match child_dir(dir.as_fd(), &child.name) {
                            Ok(fd) => dirs.push(fd),
                            Err(e) if beneath::is_absent(e) => {}
                            Err(e) => return Err(inner.error("listing", &child.name, e.into())),
                        }
                    } else if is_temporary_name(&child.name) {
                        let old_enough = file_stat(dir.as_fd(), &child.name)
                            .ok()
                            .flatten()
                            .map(|st| stat_time(&st))
                            .is_some_and(|at| {
                                (Utc::now() - at).to_std().is_ok_and(|age| age >= min_age)
                            });
                        if old_enough {
                            beneath::unlink(dir.as_fd(), &child.name)
                                .map_err(|e| inner.error("removing", &child.name, e))?;
                            removed += 1;
                        }
                    }
                }
            }
            Ok(removed)
        })
        .await
    }

    /// Runs blocking filesystem work off the async threads, once one of
    /// [`MAX_BLOCKING`] turns is free.
    async fn blocking<T: Send + 'static>(
        &self,
        work: impl FnOnce(&Inner) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        let inner = self.inner.clone();
        let turn = BLOCKING
            .acquire()
            .await
            .expect("the file-operation semaphore is never closed");
        tokio::task::spawn_blocking(move || {
            let _turn = turn;
            #[cfg(test)]
            let _running = tests::Running::enter();
            if inner.root.as_os_str().is_empty() {
                return Err(Error::invalid("replica path required"));
            }
            work(&inner)
        })
        .await
        .map_err(|e| Error::io("in a blocking task", io::Error::other(e)))?
    }

    /// Writes `data` durably and atomically under `key`.
    ///
    /// Input of up to [`SMALL_WRITE`] bytes (every usual WAL segment) is
    /// gathered first and written in one blocking call, so a small durable
    /// write costs about the syscalls a hand-written one does. Larger input
    /// streams into the temporary file chunk by chunk.
    async fn write(
        &self,
        key: &str,
        mut data: ByteStream,
        time: Option<DateTime<Utc>>,
    ) -> Result<ObjectMeta> {
        let key = key.to_owned();
        let head = read_head(&mut data, SMALL_WRITE).await?;
        if head.complete {
            return self
                .blocking(move |inner| {
                    let mut pending = inner.create_temp(&key)?;
                    let written = head
                        .chunks
                        .iter()
                        .try_for_each(|chunk| pending.file.write_all(chunk))
                        .map_err(|e| inner.error("writing", &key, e));
                    match written {
                        Ok(()) => inner.commit(pending, &key, time),
                        Err(e) => {
                            let _ = beneath::unlink(pending.dir.as_fd(), &pending.temp);
                            Err(e)
                        }
                    }
                })
                .await;
        }

        let create = key.clone();
        let Pending {
            dir,
            name,
            temp,
            file,
        } = self
            .blocking(move |inner| inner.create_temp(&create))
            .await?;
        let mut file = tokio::fs::File::from_std(file);
        let inner = self.inner.clone();
        let written = async {
            for chunk in head.chunks {
                file.write_all(&chunk)
                    .await
                    .map_err(|e| inner.error("writing", &key, e))?;
            }
            while let Some(chunk) = data.try_next().await? {
                file.write_all(&chunk)
                    .await
                    .map_err(|e| inner.error("writing", &key, e))?;
            }
            file.flush()
                .await
                .map_err(|e| inner.error("writing", &key, e))?;
            Ok::<_, Error>(())
        }
        .await;
        let file = file.into_std().await;
        let pending = Pending {
            dir,
            name,
            temp,
            file,
        };
        self.blocking(move |inner| match written {
            Ok(()) => inner.commit(pending, &key, time),
            Err(e) => {
                let _ = beneath::unlink(pending.dir.as_fd(), &pending.temp);
                Err(e)
            }
        })
        .await
    }
}

impl Inner {
    fn path(&self, rel: &str) -> PathBuf {
        self.root.join(rel)
    }

    fn error(&self, doing: &str, rel: &str, e: io::Error) -> Error {
        Error::io(format!("{doing} {}", self.path(rel).display()), e)
    }

    /// The root directory, if it exists (the user's path: followed as given).
    fn open_root(&self) -> Result<Option<OwnedFd>> {
        match rfs::open(
            &self.root,
            OFlags::DIRECTORY | OFlags::RDONLY | OFlags::CLOEXEC,
            Mode::empty(),
        ) {
            Ok(fd) => Ok(Some(fd)),
            Err(Errno::NOENT) => Ok(None),
            Err(e) => Err(self.error("opening", "", e.into())),
        }
    }

    /// The directory `rel` below the root; `None` when any part of the way
    /// is missing, a file, or a link.
    fn dir(&self, rel: &str) -> Result<Option<OwnedFd>> {
        let Some(root) = self.open_root()? else {
            return Ok(None);
        };
        dir_at(root, rel).map_err(|e| self.error("opening", rel, e))
    }

    /// The directory `rel`, created (with mode and owner) where missing,
    /// each part fsynced in its parent when created or first met; a link
    /// or a file on the way is an error.
    fn dir_for_write(&self, rel: &str) -> Result<OwnedFd> {
        let mut cur = match self.open_root()? {
            Some(fd) => fd,
            None => {
                fs::DirBuilder::new()
                    .recursive(true)
                    .mode(self.options.dir_mode)
                    .create(&self.root)
                    .map_err(|e| self.error("creating directory", "", e))?;
                if let Some(parent) = self.root.parent().filter(|p| !p.as_os_str().is_empty()) {
                    fs::File::open(parent)
                        .and_then(|d| d.sync_all())
                        .map_err(|e| self.error("syncing the parent of", "", e))?;
                }
                self.open_root()?
                    .ok_or_else(|| self.error("opening", "", io::ErrorKind::NotFound.into()))?
            }
        };
        let mut prefix = String::new();
        for name in components(rel) {
            if !prefix.is_empty() {
                prefix.push('/');
            }
            prefix.push_str(name);
            let created = match rfs::mkdirat(
                cur.as_fd(),
                name,
                Mode::from_raw_mode(self.options.dir_mode),
            ) {
                Ok(()) => true,
                Err(Errno::EXIST) => false,
                Err(e) => return Err(self.error("creating directory", &prefix, e.into())),
            };
            let next = child_dir(cur.as_fd(), name).map_err(|e| {
                if matches!(e, Errno::LOOP | Errno::NOTDIR) {
                    self.error(
                        "refusing to write through",
                        &prefix,
                        io::Error::other("not a directory of the replica (a symlink or a file)"),
                    )
                } else {
                    self.error("opening", &prefix, e.into())
                }
            })?;
            if created {
                rfs::fchmod(&next, Mode::from_raw_mode(self.options.dir_mode))
                    .map_err(|e| self.error("setting mode of", &prefix, e.into()))?;
                self.chown(&next, &prefix)?;
            }
            if created || !self.known_durable(&prefix) {
                rfs::fsync(&cur)
                    .map_err(|e| self.error("syncing the parent of", &prefix, e.into()))?;
                let mut durable = self.lock_durable();
                if durable.len() >= self.durable_limit {
                    durable.clear();
                }
                durable.insert(prefix.clone());
            }
            cur = next;
        }
        Ok(cur)
    }

    fn lock_durable(&self) -> std::sync::MutexGuard<'_, HashSet<String>> {
        self.durable.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn known_durable(&self, rel: &str) -> bool {
        self.lock_durable().contains(rel)
    }

    fn chown(&self, fd: impl AsFd, rel: &str) -> Result<()> {
        if self.options.uid.is_some() || self.options.gid.is_some() {
            std::os::unix::fs::fchown(fd, self.options.uid, self.options.gid)
                .map_err(|e| self.error("changing owner of", rel, e))?;
        }
        Ok(())
    }

    /// Creates a temporary file beside `key` with the configured mode and
    /// owner, making its directory first if it is missing.
    fn create_temp(&self, key: &str) -> Result<Pending> {
        let (dir_rel, name) = split_key(key);
        for attempt in 0..2 {
            let dir = self.dir_for_write(dir_rel)?;
            let temp = format!(".{name}.{:016x}.tmp", rand::random::<u64>());
            let flags =
                OFlags::CREATE | OFlags::EXCL | OFlags::WRONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
            match rfs::openat(
                dir.as_fd(),
                temp.as_str(),
                flags,
                Mode::from_raw_mode(self.options.file_mode),
            ) {
                Ok(fd) => {
                    // Exact mode (the umask may have narrowed it) and owner
                    // before any byte is written.
                    let setup = rfs::fchmod(&fd, Mode::from_raw_mode(self.options.file_mode))
                        .map_err(|e| self.error("setting mode of", key, e.into()))
                        .and_then(|()| self.chown(&fd, key));
                    if let Err(e) = setup {
                        let _ = beneath::unlink(dir.as_fd(), &temp);
                        return Err(e);
                    }
                    return Ok(Pending {
                        dir,
                        name: name.to_owned(),
                        temp,
                        file: fs::File::from(fd),
                    });
                }
                // The directory was removed (emptied by a delete) meanwhile.
                Err(Errno::NOENT) if attempt == 0 => continue,
                Err(e) => return Err(self.error("creating a temporary for", key, e.into())),
            }
        }
        unreachable!("the loop returns")
    }

    /// Makes a written temporary durable and moves it over its name: fsync,
    /// rename, fsync of the directory. Returns the size and modification time.
    fn commit(
        &self,
        pending: Pending,
        key: &str,
        time: Option<DateTime<Utc>>,
    ) -> Result<ObjectMeta> {
        let done = (|| {
            if let Some(time) = time {
                pending.file.set_modified(time.into())?;
            }
            pending.file.sync_all()?;
            let meta = pending.file.metadata()?;
            rfs::renameat(
                pending.dir.as_fd(),
                pending.temp.as_str(),
                pending.dir.as_fd(),
                pending.name.as_str(),
            )?;
            rfs::fsync(&pending.dir)?;
            Ok::<_, io::Error>(meta)
        })();
        match done {
            Ok(meta) => Ok(ObjectMeta {
                size: meta.len(),
                modified: meta
                    .modified()
                    .map(DateTime::<Utc>::from)
                    .unwrap_or(DateTime::<Utc>::UNIX_EPOCH),
            }),
            Err(e) => {
                let _ = beneath::unlink(pending.dir.as_fd(), &pending.temp);
                Err(self.error("committing", key, e))
            }
        }
    }

    /// Removes the files of `keys` (missing ones are fine), syncs each
    /// directory once, and removes directories the deletes emptied.
    fn remove(&self, keys: &[String]) -> Result<()> {
        let mut by_dir: Vec<(&str, Vec<&str>)> = Vec::new();
        for key in keys {
            let (dir, name) = split_key(key);
            match by_dir.iter_mut().find(|(d, _)| *d == dir) {
                Some((_, names)) => names.push(name),
                None => by_dir.push((dir, vec![name])),
            }
        }
        for (dir_rel, names) in by_dir {
            let Some(dir) = self.dir(dir_rel)? else {
                continue;
            };
            let mut removed = false;
            for name in names {
                match rfs::unlinkat(dir.as_fd(), name, AtFlags::empty()) {
                    Ok(()) => removed = true,
                    // Missing, or a directory where a file belongs: no object.
                    Err(Errno::NOENT | Errno::ISDIR | Errno::PERM) => {}
                    Err(e) => {
                        return Err(self.error("removing", &format!("{dir_rel}/{name}"), e.into()))
                    }
                }
            }
            if removed {
                rfs::fsync(&dir).map_err(|e| self.error("syncing directory", dir_rel, e.into()))?;
                self.remove_if_empty(dir_rel)?;
            }
        }
        Ok(())
    }

    /// Removes the directory `rel` if it is empty, so that listings do not
    /// keep reading directories of deleted objects.
    fn remove_if_empty(&self, rel: &str) -> Result<()> {
        let Some((parent_rel, name)) = rel.rsplit_once('/') else {
            return Ok(());
        };
        let Some(parent) = self.dir(parent_rel)? else {
            return Ok(());
        };
        match rfs::unlinkat(parent.as_fd(), name, AtFlags::REMOVEDIR) {
            Ok(()) => rfs::fsync(&parent)
                .map_err(|e| self.error("syncing directory", parent_rel, e.into())),
            Err(Errno::NOTEMPTY | Errno::EXIST | Errno::NOENT | Errno::BUSY) => Ok(()),
            Err(e) => Err(self.error("removing directory", rel, e.into())),
        }
    }
}

/// `(directory, name)` of a key.
fn split_key(key: &str) -> (&str, &str) {
    key.rsplit_once('/').unwrap_or(("", key))
}

/// Whether `name` is a temporary this backend makes: `.<final name>.<16 hex>.tmp`.
fn is_temporary_name(name: &str) -> bool {
    let Some(inner) = name.strip_prefix('.').and_then(|n| n.strip_suffix(".tmp")) else {
        return false;
    };
    let Some((final_name, random)) = inner.rsplit_once('.') else {
        return false;
    };
    random.len() == 16
        && random.bytes().all(|b| b.is_ascii_hexdigit())
        && (Layout::ALL.iter().any(|l| l.is_object_name(final_name))
            || replica_core::ltx::parse_file_name(final_name).is_some())
}

fn stat_time(st: &rfs::Stat) -> DateTime<Utc> {
    DateTime::from_timestamp(st.st_mtime, st.st_mtime_nsec as u32)
        .unwrap_or(DateTime::<Utc>::UNIX_EPOCH)
}

#[async_trait]
impl KeyStore for FileStore {
    fn kind(&self) -> &'static str {
        "file"
    }

    async fn put_opts(
        &self,
        key: &str,
        data: ByteStream,
        options: &PutOptions,
    ) -> Result<ObjectMeta> {
        self.write(key, data, options.time).await
    }

    async fn get(&self, key: &str) -> Result<ByteStream> {
        self.get_range(key, 0..u64::MAX).await
    }

    async fn get_range(&self, key: &str, range: std::ops::Range<u64>) -> Result<ByteStream> {
        let rel = key.to_owned();
        let opened = self
            .blocking(move |inner| {
                let (dir_rel, name) = split_key(&rel);
                match inner.dir(dir_rel)? {
                    Some(dir) => {
                        open_file(dir.as_fd(), name).map_err(|e| inner.error("opening", &rel, e))
                    }
                    None => Ok(None),
                }
            })
            .await?;
        match opened {
            Some(mut file) => {
                if range.start > 0 {
                    use std::io::Seek;
                    file.seek(io::SeekFrom::Start(range.start))
                        .map_err(|e| self.inner.error("seeking in", key, e))?;
                }
                let file = tokio::fs::File::from_std(file);
                let len = range.end.saturating_sub(range.start);
                Ok(reader_stream(file.take(len), READ_CHUNK))
            }
            None => Err(Error::not_found(key)),
        }
    }

    async fn delete(&self, keys: &[String]) -> Result<()> {
        let keys = keys.to_vec();
        self.blocking(move |inner| inner.remove(&keys)).await
    }

    async fn list(&self, dir: &str) -> Result<Listing> {
        let rel = dir.to_owned();
        self.blocking(move |inner| {
            let mut listing = Listing::default();
            let Some(dir) = inner.dir(&rel)? else {
                return Ok(listing);
            };
            for child in children(dir.as_fd()).map_err(|e| inner.error("listing", &rel, e))? {
                if child.is_dir {
                    listing.dirs.push(child.name);
                } else if !is_temporary_name(&child.name) {
                    // Gone between readdir and stat: it is simply not listed.
                    if let Some(st) = file_stat(dir.as_fd(), &child.name)
                        .map_err(|e| inner.error("reading metadata in", &rel, e))?
                    {
                        listing.objects.push((
                            child.name,
                            ObjectMeta {
                                size: st.st_size as u64,
                                modified: stat_time(&st),
                            },
                        ));
                    }
                }
            }
            Ok(listing)
        })
        .await
    }

    async fn delete_all(&self, dir: &str) -> Result<()> {
        let rel = dir.to_owned();
        self.blocking(move |inner| {
            let (parent_rel, name) = split_key(&rel);
            let Some(parent) = inner.dir(parent_rel)? else {
                return Ok(());
            };
            remove_tree(parent.as_fd(), name).map_err(|e| inner.error("removing", &rel, e))?;
            rfs::fsync(&parent).map_err(|e| inner.error("syncing directory", parent_rel, e.into()))
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use replica_core::{bytes_stream, Generation, Pos, ReplicaClient};

    static RUNNING: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    static MOST: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

    /// Counts the file operations running at once.
    pub(super) struct Running;

    impl Running {
        pub(super) fn enter() -> Running {
            use std::sync::atomic::Ordering::SeqCst;
            let now = RUNNING.fetch_add(1, SeqCst) + 1;
            MOST.fetch_max(now, SeqCst);
            // Long enough for the operations of many stores to overlap.
            std::thread::sleep(std::time::Duration::from_millis(2));
            Running
        }
    }

    impl Drop for Running {
        fn drop(&mut self) {
            RUNNING.fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn many_stores_used_at_once_run_a_bounded_number_of_operations() {
        let dir = tempfile::tempdir().unwrap();
        let writes: Vec<_> = (0..400)
            .map(|i| {
                let store = FileStore::new(dir.path().join(format!("db-{i}")));
                tokio::spawn(async move {
                    for k in 0..3 {
                        store
                            .put(&format!("k{k}"), bytes_stream(vec![1u8; 100]))
                            .await
                            .expect("written");
                    }
                })
            })
            .collect();
        for w in writes {
            w.await.expect("joined");
        }
        let most = MOST.load(std::sync::atomic::Ordering::SeqCst);
        assert!(most <= MAX_BLOCKING, "{most} file operations ran at once");
        assert!(most > 1, "operations never overlapped");
        assert_eq!(
            std::fs::read_dir(dir.path()).unwrap().count(),
            400,
            "every store wrote"
        );
    }

    #[tokio::test]
    async fn the_set_of_durable_directories_stays_bounded() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = FileStore::new(dir.path());
        Arc::get_mut(&mut store.inner).unwrap().durable_limit = 8;
        let client = FileClient::new(store.clone());
        let g: Generation = "00000000000000d1".parse().unwrap();
        for index in 0..40 {
            let pos = Pos::new(g.clone(), index, 0).unwrap();
            client
                .write_wal_segment(&pos, bytes_stream(vec![index as u8; 10]))
                .await
                .unwrap();
            let remembered = store.inner.lock_durable().len();
            assert!(remembered <= 8, "{remembered} directories remembered");
        }
        let listed = client.wal_segments(&g).await.unwrap().collect_all().await;
        assert_eq!(listed.unwrap().len(), 40);
    }
}
