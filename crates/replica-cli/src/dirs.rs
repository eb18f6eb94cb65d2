//! Directory replication (Litestream 0.5's `dir`, `pattern`, `recursive`,
//! `watch`): the databases a directory holds, each replicated under its
//! replica URLs plus its path relative to the directory, as Litestream
//! names it; with `watch`, databases that appear later are started (on a
//! file-system event, or at the next rescan, the safety net) and removed
//! ones stopped after a final sync.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

use tracing::{info, warn};

use crate::config::DirSpec;

/// How often a watched directory is scanned again without any event.
pub(crate) const RESCAN: Duration = Duration::from_secs(10);

/// How long events are gathered before a rescan.
const SETTLE: Duration = Duration::from_millis(200);

/// Why a file matching the pattern is not replicated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Skip {
    /// No SQLite header.
    NotSqlite,
    /// A SQLite database not in WAL mode (its header's read and write
    /// versions are not 2).
    NotWal,
}

impl Skip {
    fn why(self) -> &'static str {
        match self {
            Skip::NotSqlite => "not a SQLite database (no SQLite header)",
            Skip::NotWal => {
                "a SQLite database not in WAL mode (PRAGMA journal_mode=WAL to replicate it)"
            }
        }
    }
}

/// What a scan found.
#[derive(Debug, Default)]
pub(crate) struct Scan {
    /// WAL-mode SQLite databases matching the pattern.
    pub(crate) databases: BTreeSet<PathBuf>,
    /// Files matching the pattern that are not replicated, and why.
    pub(crate) skipped: Vec<(PathBuf, Skip)>,
}

/// What a file is: a WAL database, or why not.
fn classify(path: &Path) -> Result<(), Skip> {
    use std::io::Read;
    let mut head = [0u8; 20];
    let read = std::fs::File::open(path).and_then(|mut f| f.read_exact(&mut head));
    if read.is_err() || &head[..16] != b"SQLite format 3\0" {
        return Err(Skip::NotSqlite);
    }
    if head[18] != 2 || head[19] != 2 {
        return Err(Skip::NotWal);
    }
    Ok(())
}

/// Names that are never databases: SQLite's side files, and the state
/// directories of replicators (ours and Litestream's).
fn ignored(name: &str) -> bool {
    name.ends_with("-wal")
        || name.ends_with("-shm")
        || name.ends_with("-journal")
        || (name.starts_with('.') && (name.ends_with("-replica") || name.ends_with("-litestream")))
}

/// The databases below `dir` whose file name matches the pattern (one
/// level, or every level with `recursive`; symbolic links to directories
/// are not followed, as Go's `filepath.Walk`).
pub(crate) fn scan(dir: &Path, spec: &DirSpec) -> std::io::Result<Scan> {
    let pattern = glob::Pattern::new(&spec.pattern)
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e.to_string()))?;
    let mut scan = Scan::default();
    let mut pending = vec![dir.to_owned()];
    while let Some(at) = pending.pop() {
        let entries = match std::fs::read_dir(&at) {
            Ok(entries) => entries,
            // A subdirectory removed meanwhile is nothing to replicate.
            Err(e) if at != dir && e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e),
        };
        for entry in entries {
            let entry = entry?;
            let name = entry.file_name();
            let Some(name) = name.to_str() else { continue };
            if ignored(name) {
                continue;
            }
            let kind = entry.file_type()?;
            let path = entry.path();
            if kind.is_dir() {
                if spec.recursive {
                    pending.push(path);
                }
                continue;
            }
            if !pattern.matches(name) {
                continue;
            }
            match classify(&path) {
                Ok(()) => {
                    scan.databases.insert(path);
                }
                Err(skip) => scan.skipped.push((path, skip)),
            }
        }
    }
    Ok(scan)
}

/// `url` with `rel` (a database's path relative to the directory) added to
/// its path, as Litestream derives each database's replica: a URL's path
/// gets `/rel`, a plain path is joined.
pub(crate) fn replica_url(url: &str, rel: &Path) -> Result<String, String> {
    let rel = rel
        .to_str()
        .ok_or_else(|| format!("{} is not UTF-8", rel.display()))?
        .trim_start_matches('/');
    if !url.contains("://") {
        return Ok(Path::new(url).join(rel).display().to_string());
    }
    let mut parsed = url::Url::parse(url).map_err(|e| format!("bad replica URL {url:?}: {e}"))?;
    let joined = format!("{}/{rel}", parsed.path().trim_end_matches('/'));
    parsed.set_path(&joined);
    Ok(parsed.to_string())
}

/// Logs each skipped file once (`logged` remembers them).
pub(crate) fn log_skipped(scan: &Scan, logged: &mut BTreeSet<PathBuf>) {
    for (path, skip) in &scan.skipped {
        if logged.insert(path.clone()) {
            info!(file = %path.display(), "directory replication skips it: {}", skip.why());
        }
    }
    // A file that became a database may be skipped again later (and said).
    logged.retain(|p| scan.skipped.iter().any(|(s, _)| s == p));
}

/// A file-system watch on `dir` whose events (other than those of SQLite's
/// side files) wake `wake`; `None` (with a warning) where it cannot be
/// set up, the rescan being the fallback.
pub(crate) fn watch(
    dir: &Path,
    recursive: bool,
    wake: tokio::sync::mpsc::UnboundedSender<()>,
) -> Option<notify::RecommendedWatcher> {
    use notify::Watcher;
    let handler = move |event: notify::Result<notify::Event>| {
        let relevant = match &event {
            Ok(e) => e.paths.iter().any(|p| {
                p.file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| !ignored(n))
            }),
            Err(_) => true,
        };
        if relevant {
            let _ = wake.send(());
        }
    };
    let mode = if recursive {
        notify::RecursiveMode::Recursive
    } else {
        notify::RecursiveMode::NonRecursive
    };
    match notify::recommended_watcher(handler).and_then(|mut w| w.watch(dir, mode).map(|()| w)) {
        Ok(w) => Some(w),
        Err(e) => {
            warn!(dir = %dir.display(), error = %e, rescan = ?RESCAN, "cannot watch the directory; it is scanned again every {RESCAN:?} instead");
            None
        }
    }
}

/// Waits for the next reason to scan: an event (then a moment for the
/// others it brings), or the rescan interval.
pub(crate) async fn next_scan(wake: &mut tokio::sync::mpsc::UnboundedReceiver<()>) {
    tokio::select! {
        _ = wake.recv() => {
            tokio::time::sleep(SETTLE).await;
            while wake.try_recv().is_ok() {}
        }
        _ = tokio::time::sleep(RESCAN) => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replica_urls_get_the_relative_path_as_litestream_names_them() {
        let rel = Path::new("tenants/a.db");
        assert_eq!(
            replica_url("s3://bucket/prefix?endpoint=http://x", rel).unwrap(),
            "s3://bucket/prefix/tenants/a.db?endpoint=http://x"
        );
        assert_eq!(
            replica_url("s3://bucket", rel).unwrap(),
            "s3://bucket/tenants/a.db"
        );
        assert_eq!(
            replica_url("file:///backups/", rel).unwrap(),
            "file:///backups/tenants/a.db"
        );
        assert_eq!(
            replica_url("/backups", rel).unwrap(),
            "/backups/tenants/a.db"
        );
    }

    #[test]
    fn a_scan_finds_wal_databases_by_pattern_and_says_why_it_skips_the_rest() {
        let dir = tempfile::tempdir().unwrap();
        let make = |p: &Path, wal: bool| {
            let conn = rusqlite::Connection::open(p).unwrap();
            if wal {
                conn.query_row("PRAGMA journal_mode=WAL", [], |_| Ok(()))
                    .unwrap();
            }
            conn.execute_batch("CREATE TABLE t(x)").unwrap();
        };
        std::fs::create_dir(dir.path().join("sub")).unwrap();
        make(&dir.path().join("a.db"), true);
        make(&dir.path().join("sub/b.db"), true);
        make(&dir.path().join("rollback.db"), false);
        make(&dir.path().join("other.sqlite"), true);
        std::fs::write(dir.path().join("notes.db"), b"just text").unwrap();
        let spec = |recursive| DirSpec {
            pattern: "*.db".into(),
            recursive,
            watch: false,
        };
        let flat = scan(dir.path(), &spec(false)).unwrap();
        assert_eq!(
            flat.databases.iter().collect::<Vec<_>>(),
            [&dir.path().join("a.db")]
        );
        let mut skipped = flat.skipped.clone();
        skipped.sort();
        assert_eq!(
            skipped,
            [
                (dir.path().join("notes.db"), Skip::NotSqlite),
                (dir.path().join("rollback.db"), Skip::NotWal),
            ]
        );
        let deep = scan(dir.path(), &spec(true)).unwrap();
        assert_eq!(deep.databases.len(), 2);
        assert!(deep.databases.contains(&dir.path().join("sub/b.db")));
    }
}
