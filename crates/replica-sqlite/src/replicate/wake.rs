//! Wake-ups for released databases.
//!
//! A database whose WAL is fully shipped and quiet releases its connections
//! and files (see [`DbOptions::release_when_idle`](super::DbOptions)); what
//! brings it back is a change of its `-wal` file. One `notify` watcher
//! (inotify on Linux) serves the whole process: each directory holding a
//! watched WAL is watched once, and an event for a WAL file wakes the
//! database it belongs to. Events are hints, never the only check: a woken
//! database compares the WAL's metadata with what it saw when it released
//! (see `Probe`), and every released database also polls that metadata at
//! a slow interval, so a lost event (a full inotify queue, a file system
//! without events) delays replication, never stops it.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};

use notify::{EventKind, RecursiveMode, Watcher as _};
use tokio::sync::Notify;
use tracing::{debug, warn};

/// The WAL files being watched, each with the databases waiting on it.
type Waiters = HashMap<PathBuf, Vec<Arc<Notify>>>;

struct Watcher {
    inner: notify::RecommendedWatcher,
    /// Directories watched, with how many WAL files in each.
    dirs: HashMap<PathBuf, usize>,
    /// Directories that could not be watched, warned of once (a database
    /// registers each time it is released).
    warned: std::collections::HashSet<PathBuf>,
    waiters: Arc<Mutex<Waiters>>,
}

/// The process's watcher; `None` when the platform gives none (then
/// released databases poll).
fn watcher() -> Option<&'static Mutex<Watcher>> {
    static WATCHER: OnceLock<Option<Mutex<Watcher>>> = OnceLock::new();
    WATCHER
        .get_or_init(|| {
            let waiters: Arc<Mutex<Waiters>> = Arc::default();
            let seen = waiters.clone();
            let handler = move |event: notify::Result<notify::Event>| {
                let waiters = seen.lock().unwrap_or_else(|p| p.into_inner());
                match event {
                    // Opens and reads change nothing.
                    Ok(e) if matches!(e.kind, EventKind::Access(_)) => {}
                    Ok(e) if !e.need_rescan() => {
                        for path in &e.paths {
                            for waiter in waiters.get(path).into_iter().flatten() {
                                waiter.notify_one();
                            }
                        }
                    }
                    // Events were lost: every database checks.
                    _ => waiters.values().flatten().for_each(|w| w.notify_one()),
                }
            };
            match notify::recommended_watcher(handler) {
                Ok(inner) => Some(Mutex::new(Watcher {
                    inner,
                    dirs: HashMap::new(),
                    warned: Default::default(),
                    waiters,
                })),
                Err(e) => {
                    warn!(error = %e, "no file-system events: released databases poll their WAL instead");
                    None
                }
            }
        })
        .as_ref()
}

/// A WAL file being watched (while its database is released); dropping it
/// stops the watch.
pub(crate) struct Registration {
    wal: PathBuf,
    notify: Arc<Notify>,
}

impl Registration {
    /// Watches `wal` (an absolute path); `None` when it cannot be watched
    /// (no watcher, or the directory cannot be: the inotify watch limit,
    /// `fs.inotify.max_user_watches`), which is logged.
    pub(crate) fn new(wal: &Path) -> Option<Registration> {
        let dir = wal.parent()?.to_owned();
        let mut watcher = watcher()?.lock().unwrap_or_else(|p| p.into_inner());
        let watcher = &mut *watcher;
        if !watcher.dirs.contains_key(&dir) {
            if let Err(e) = watcher.inner.watch(&dir, RecursiveMode::NonRecursive) {
                if watcher.warned.insert(dir.clone()) {
                    warn!(dir = %dir.display(), error = %e, "cannot watch the directory (raise fs.inotify.max_user_watches?); its released databases poll their WAL instead");
                } else {
                    debug!(dir = %dir.display(), error = %e, "cannot watch the directory");
                }
                return None;
            }
        }
        *watcher.dirs.entry(dir).or_default() += 1;
        let notify = Arc::new(Notify::new());
        watcher
            .waiters
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(wal.to_owned())
            .or_default()
            .push(notify.clone());
        Some(Registration {
            wal: wal.to_owned(),
            notify,
        })
    }

    /// Resolves at the next event for the WAL file since the last call.
    pub(crate) async fn changed(&self) {
        self.notify.notified().await;
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        let Some(watcher) = watcher() else {
            return;
        };
        let mut watcher = watcher.lock().unwrap_or_else(|p| p.into_inner());
        let watcher = &mut *watcher;
        {
            let mut waiters = watcher.waiters.lock().unwrap_or_else(|p| p.into_inner());
            if let Some(list) = waiters.get_mut(&self.wal) {
                list.retain(|n| !Arc::ptr_eq(n, &self.notify));
                if list.is_empty() {
                    waiters.remove(&self.wal);
                }
            }
        }
        let Some(dir) = self.wal.parent() else {
            return;
        };
        if let Some(count) = watcher.dirs.get_mut(dir) {
            *count -= 1;
            if *count == 0 {
                watcher.dirs.remove(dir);
                let _ = watcher.inner.unwatch(dir);
            }
        }
    }
}
