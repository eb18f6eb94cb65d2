//! Giving freed memory back to the system after databases are released.
//!
//! A released database frees what its three SQLite connections held (page
//! caches, schema, lookaside), but glibc's allocator keeps freed memory in
//! its arenas: measured with 1,000 released databases, RSS stays at about
//! 500 KiB per database until `malloc_trim(0)`, and falls to about 40 KiB
//! after it. One thread for the whole process trims, at most once per
//! [`TRIM_AFTER`], after a release asked for it: thousands of databases
//! released together cost one trim, not thousands. Elsewhere than glibc
//! this does nothing.

use std::sync::mpsc::{sync_channel, SyncSender};
use std::sync::OnceLock;
use std::time::Duration;

/// How long the trimmer gathers releases before one trim.
pub(crate) const TRIM_AFTER: Duration = Duration::from_secs(2);

static TRIMMER: OnceLock<Option<SyncSender<()>>> = OnceLock::new();

/// Asks for a trim soon (never blocks; one pending request is enough).
pub(crate) fn soon() {
    let trimmer = TRIMMER.get_or_init(|| {
        let (tx, rx) = sync_channel::<()>(1);
        std::thread::Builder::new()
            .name("replica-trim".into())
            .spawn(move || {
                while rx.recv().is_ok() {
                    std::thread::sleep(TRIM_AFTER);
                    while rx.try_recv().is_ok() {}
                    trim();
                }
            })
            .ok()
            .map(|_| tx)
    });
    if let Some(tx) = trimmer {
        // Full: a trim is already asked for, which covers this release too.
        let _ = tx.try_send(());
    }
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn trim() {
    // SAFETY: malloc_trim has no preconditions; it only returns free
    // memory at the top and in the middle of the arenas to the system.
    unsafe {
        libc::malloc_trim(0);
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn trim() {}
