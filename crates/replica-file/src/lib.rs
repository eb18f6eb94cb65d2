//! Local-filesystem backend of replica.
//!
//! [`FileStore`] is a [`KeyStore`] over a root directory: each key is a file
//! path below the root. [`FileClient`] is the replica client over it, in
//! either layout of `SPEC.md` (`<root>/generations/<generation>/...`), so a
//! directory replicated by Litestream 0.3 reads as it is.
//!
//! Writes are durable and atomic: bytes go to a temporary file with a unique
//! name in the destination directory, which is fsynced, renamed over the
//! final name, and then the directory is fsynced. A crash leaves the old
//! object or the new one, never a prefix; temporaries have non-canonical
//! names, so listings never show them. Files are created with mode 0600 and
//! directories 0700 unless [`FileOptions`] say otherwise.
//!
//! Listings show regular files and directories only (never symlinks, which
//! are not followed), lazily per directory; the client above skips anything
//! that is not a canonical name of the right kind.

use std::fs;
use std::io;
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use chrono::{DateTime, Utc};
use futures::TryStreamExt;
use replica_core::layout::{self, Layout};
use replica_core::{
    async_trait, read_head, reader_stream, ByteStream, Error, KeyStore, Listing, ObjectMeta,
    Result, StoreClient,
};
use tokio::io::AsyncWriteExt;

/// Input up to this size is written in a single blocking call.
const SMALL_WRITE: usize = 1 << 20;
/// Chunk size of snapshot and segment readers.
const READ_CHUNK: usize = 256 * 1024;

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
    /// backend creates (`.<canonical name>.<16 hex>.tmp`) are touched.
    pub async fn remove_stale_temporaries(&self, min_age: std::time::Duration) -> Result<usize> {
        let root = self.path(layout::GENERATIONS_DIR)?;
        self.blocking(move |_| {
            let mut removed = 0;
            let mut dirs = vec![root];
            while let Some(dir) = dirs.pop() {
                let entries = match fs::read_dir(&dir) {
                    Ok(entries) => entries,
                    Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                    Err(e) => return Err(io_error("listing", &dir, e)),
                };
                for entry in entries {
                    let entry = entry.map_err(|e| io_error("listing", &dir, e))?;
                    let file_type = entry
                        .file_type()
                        .map_err(|e| io_error("listing", &dir, e))?;
                    let name = entry.file_name();
                    if file_type.is_dir() {
                        dirs.push(entry.path());
                    } else if file_type.is_file() && name.to_str().is_some_and(is_temporary_name) {
                        let old_enough = entry
                            .metadata()
                            .and_then(|m| m.modified())
                            .ok()
                            .and_then(|t| t.elapsed().ok())
                            .is_some_and(|age| age >= min_age);
                        if old_enough {
                            match fs::remove_file(entry.path()) {
                                Ok(()) => removed += 1,
                                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                                Err(e) => return Err(io_error("removing", &entry.path(), e)),
                            }
                        }
                    }
                }
            }
            Ok(removed)
        })
        .await
    }

    /// The absolute location of a key, or "replica path required".
    fn path(&self, key: &str) -> Result<PathBuf> {
        if self.inner.root.as_os_str().is_empty() {
            return Err(Error::invalid("replica path required"));
        }
        Ok(self.inner.root.join(key))
    }

    /// Runs blocking filesystem work off the async threads.
    async fn blocking<T: Send + 'static>(
        &self,
        work: impl FnOnce(&Inner) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        let inner = self.inner.clone();
        tokio::task::spawn_blocking(move || work(&inner))
            .await
            .map_err(|e| Error::io("in a blocking task", io::Error::other(e)))?
    }

    /// Writes `data` durably and atomically to `layout_path`.
    ///
    /// Input of up to [`SMALL_WRITE`] bytes (every usual WAL segment) is
    /// gathered first and written in one blocking call, so a small durable
    /// write costs about the syscalls a hand-written one does. Larger input
    /// streams into the temporary file chunk by chunk.
    async fn write(&self, key: &str, mut data: ByteStream) -> Result<ObjectMeta> {
        let dest = self.path(key)?;
        let name = dest.file_name().expect("layout paths end in a name");
        let temp = dest.with_file_name(format!(
            ".{}.{:016x}.tmp",
            name.to_string_lossy(),
            rand::random::<u64>()
        ));
        let head = read_head(&mut data, SMALL_WRITE).await?;

        if head.complete {
            return self
                .blocking(move |inner| {
                    let result = inner.create_temp(&temp).and_then(|mut file| {
                        for chunk in &head.chunks {
                            file.write_all(chunk)
                                .map_err(|e| io_error("writing", &temp, e))?;
                        }
                        inner.commit(file, &temp, &dest)
                    });
                    if result.is_err() {
                        // Best effort: the temporary is never listed either way.
                        let _ = fs::remove_file(&temp);
                    }
                    result
                })
                .await;
        }

        let create = temp.clone();
        let file = self
            .blocking(move |inner| inner.create_temp(&create))
            .await?;
        let mut file = tokio::fs::File::from_std(file);
        let written = async {
            for chunk in head.chunks {
                file.write_all(&chunk)
                    .await
                    .map_err(|e| io_error("writing", &temp, e))?;
            }
            while let Some(chunk) = data.try_next().await? {
                file.write_all(&chunk)
                    .await
                    .map_err(|e| io_error("writing", &temp, e))?;
            }
            file.flush()
                .await
                .map_err(|e| io_error("writing", &temp, e))?;
            Ok::<_, Error>(file.into_std().await)
        }
        .await;
        let finish = temp.clone();
        let result = match written {
            Ok(file) => {
                self.blocking(move |inner| inner.commit(file, &finish, &dest))
                    .await
            }
            Err(err) => Err(err),
        };
        if result.is_err() {
            let _ = tokio::fs::remove_file(&temp).await;
        }
        result
    }

    async fn open(&self, key: &str) -> Result<ByteStream> {
        let path = self.path(key)?;
        let opened = self
            .blocking(move |_| {
                // O_NOFOLLOW: a symlink planted under a canonical name is not
                // followed out of the root (it is not listed either).
                let file = fs::OpenOptions::new()
                    .read(true)
                    .custom_flags(libc::O_NOFOLLOW)
                    .open(&path);
                match file {
                    Ok(file) if file.metadata().is_ok_and(|m| m.is_file()) => Ok(Some(file)),
                    Ok(_) => Ok(None),
                    Err(e)
                        if e.kind() == io::ErrorKind::NotFound
                            || e.raw_os_error() == Some(libc::ELOOP) =>
                    {
                        Ok(None)
                    }
                    Err(e) => Err(io_error("opening", &path, e)),
                }
            })
            .await?;
        match opened {
            Some(file) => Ok(reader_stream(tokio::fs::File::from_std(file), READ_CHUNK)),
            None => Err(Error::not_found(key)),
        }
    }

    /// Removes files (missing ones are fine), then syncs each directory once.
    async fn remove_files(&self, keys: &[String]) -> Result<()> {
        let paths = keys
            .iter()
            .map(|p| self.path(p))
            .collect::<Result<Vec<_>>>()?;
        self.blocking(move |_| {
            let mut dirs: Vec<PathBuf> = Vec::new();
            for path in &paths {
                match fs::remove_file(path) {
                    Ok(()) => {
                        let dir = path.parent().expect("layout paths have a parent");
                        if !dirs.iter().any(|d| d == dir) {
                            dirs.push(dir.to_owned());
                        }
                    }
                    Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                    Err(e) => return Err(io_error("removing", path, e)),
                }
            }
            dirs.iter().try_for_each(|d| sync_dir(d))
        })
        .await
    }
}

impl Inner {
    /// Creates a temporary file (mode and owner as configured), making its
    /// directory first if it is missing.
    fn create_temp(&self, temp: &Path) -> Result<fs::File> {
        let open = || {
            fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(self.options.file_mode)
                .open(temp)
        };
        let file = match open() {
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                self.create_dirs(temp.parent().expect("temporaries have a parent"))?;
                open()
            }
            other => other,
        }
        .map_err(|e| io_error("creating", temp, e))?;
        if self.options.uid.is_some() || self.options.gid.is_some() {
            std::os::unix::fs::fchown(&file, self.options.uid, self.options.gid)
                .map_err(|e| io_error("changing owner of", temp, e))?;
        }
        Ok(file)
    }

    /// Makes a written temporary durable and moves it over `dest`: fsync,
    /// exact mode (the umask may have narrowed it), rename, fsync of the
    /// directory. Returns the size and modification time.
    fn commit(&self, file: fs::File, temp: &Path, dest: &Path) -> Result<ObjectMeta> {
        file.sync_all().map_err(|e| io_error("syncing", temp, e))?;
        let meta = file
            .metadata()
            .map_err(|e| io_error("reading metadata of", temp, e))?;
        if meta.permissions().mode() & 0o7777 != self.options.file_mode {
            file.set_permissions(fs::Permissions::from_mode(self.options.file_mode))
                .map_err(|e| io_error("setting mode of", temp, e))?;
        }
        drop(file);
        fs::rename(temp, dest).map_err(|e| io_error("renaming into", dest, e))?;
        sync_dir(dest.parent().expect("layout paths have a parent"))?;
        Ok(ObjectMeta {
            size: meta.len(),
            modified: modified(&meta),
        })
    }

    /// Creates `dir` and any missing parents with the configured mode and
    /// owner, syncing each parent that gained an entry.
    fn create_dirs(&self, dir: &Path) -> Result<()> {
        if dir.is_dir() {
            return Ok(());
        }
        if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
            self.create_dirs(parent)?;
        }
        match fs::DirBuilder::new()
            .mode(self.options.dir_mode)
            .create(dir)
        {
            Ok(()) => {
                fs::set_permissions(dir, fs::Permissions::from_mode(self.options.dir_mode))
                    .map_err(|e| io_error("setting mode of", dir, e))?;
                if self.options.uid.is_some() || self.options.gid.is_some() {
                    std::os::unix::fs::chown(dir, self.options.uid, self.options.gid)
                        .map_err(|e| io_error("changing owner of", dir, e))?;
                }
                match dir.parent().filter(|p| !p.as_os_str().is_empty()) {
                    Some(parent) => sync_dir(parent),
                    None => Ok(()),
                }
            }
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists && dir.is_dir() => Ok(()),
            Err(e) => Err(io_error("creating directory", dir, e)),
        }
    }
}

/// The children of `dir` that are directories or regular files (never
/// symlinks), with UTF-8 names, as `(name, entry, is_dir)`, read lazily; the
/// temporaries of writes in progress are left out. A missing directory, or
/// a file in its place, has none.
fn children(dir: &Path) -> Result<impl Iterator<Item = Result<(String, fs::DirEntry, bool)>> + '_> {
    let entries = match fs::read_dir(dir) {
        Ok(entries) => Some(entries),
        Err(e)
            if matches!(
                e.kind(),
                io::ErrorKind::NotFound | io::ErrorKind::NotADirectory
            ) =>
        {
            None
        }
        Err(e) => return Err(io_error("listing", dir, e)),
    };
    Ok(entries.into_iter().flatten().filter_map(move |entry| {
        let entry = match entry {
            Ok(entry) => entry,
            Err(e) => return Some(Err(io_error("listing", dir, e))),
        };
        let name = entry.file_name().into_string().ok()?;
        if is_temporary_name(&name) {
            return None;
        }
        match entry.file_type() {
            Ok(t) if t.is_dir() || t.is_file() => Some(Ok((name, entry, t.is_dir()))),
            Ok(_) => None,
            Err(e) => Some(Err(io_error("listing", dir, e))),
        }
    }))
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
        && Layout::ALL.iter().any(|l| l.is_object_name(final_name))
}

fn modified(metadata: &fs::Metadata) -> DateTime<Utc> {
    metadata
        .modified()
        .map(DateTime::<Utc>::from)
        .unwrap_or(DateTime::<Utc>::UNIX_EPOCH)
}

fn io_error(doing: &str, path: &Path, e: io::Error) -> Error {
    Error::io(format!("{doing} {}", path.display()), e)
}

fn sync_dir(dir: &Path) -> Result<()> {
    fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| io_error("syncing directory", dir, e))
}

#[async_trait]
impl KeyStore for FileStore {
    fn kind(&self) -> &'static str {
        "file"
    }

    async fn put(&self, key: &str, data: ByteStream) -> Result<ObjectMeta> {
        self.write(key, data).await
    }

    async fn get(&self, key: &str) -> Result<ByteStream> {
        self.open(key).await
    }

    async fn delete(&self, keys: &[String]) -> Result<()> {
        self.remove_files(keys).await
    }

    async fn list(&self, dir: &str) -> Result<Listing> {
        let dir = self.path(dir)?;
        self.blocking(move |_| {
            let mut listing = Listing::default();
            for found in children(&dir)? {
                let (name, entry, is_dir) = found?;
                if is_dir {
                    listing.dirs.push(name);
                    continue;
                }
                match entry.metadata() {
                    Ok(m) => listing.objects.push((
                        name,
                        ObjectMeta {
                            size: m.len(),
                            modified: modified(&m),
                        },
                    )),
                    // Deleted between readdir and stat: it is simply gone.
                    Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                    Err(e) => return Err(io_error("reading metadata in", &dir, e)),
                }
            }
            Ok(listing)
        })
        .await
    }

    async fn delete_all(&self, dir: &str) -> Result<()> {
        let dir = self.path(dir)?;
        self.blocking(move |_| {
            match fs::remove_dir_all(&dir) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
                Err(e) => return Err(io_error("removing", &dir, e)),
            }
            sync_dir(
                dir.parent()
                    .expect("directories below the root have a parent"),
            )
        })
        .await
    }
}
