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
    if let Some(tx) = TRIMMER.get_or_init(|| spawn(TRIM_AFTER, trim)) {
        ask(tx);
    }
}

/// A trimmer thread: after each request, it waits `after`, takes every
/// request that came meanwhile, and calls `trim` once.
fn spawn(after: Duration, trim: fn()) -> Option<SyncSender<()>> {
    let (tx, rx) = sync_channel::<()>(1);
    std::thread::Builder::new()
        .name("replica-trim".into())
        .spawn(move || {
            while rx.recv().is_ok() {
                std::thread::sleep(after);
                while rx.try_recv().is_ok() {}
                trim();
            }
        })
        .ok()
        .map(|_| tx)
}

fn ask(tx: &SyncSender<()>) {
    // Full: a trim is already asked for, which covers this request too.
    let _ = tx.try_send(());
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Instant;

    static TRIMS: AtomicUsize = AtomicUsize::new(0);

    fn count() {
        TRIMS.fetch_add(1, Ordering::SeqCst);
    }

    fn until_trims(n: usize) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while TRIMS.load(Ordering::SeqCst) < n {
            assert!(Instant::now() < deadline, "no trim {n} after a request");
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    #[test]
    fn many_requests_together_cost_one_trim_and_a_later_one_another() {
        // Long enough that the 10,000 requests (about a millisecond) all
        // come within one gathering, however loaded the machine.
        let after = Duration::from_secs(1);
        let tx = spawn(after, count).expect("the trimmer starts");
        for _ in 0..10_000 {
            ask(&tx);
        }
        until_trims(1);
        std::thread::sleep(after * 2);
        assert_eq!(TRIMS.load(Ordering::SeqCst), 1, "10,000 requests, one trim");
        ask(&tx);
        until_trims(2);
        std::thread::sleep(after * 2);
        assert_eq!(TRIMS.load(Ordering::SeqCst), 2);
    }

    /// This process's resident memory, in bytes.
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    fn rss() -> u64 {
        let statm = std::fs::read_to_string("/proc/self/statm").unwrap();
        let pages: u64 = statm.split_whitespace().nth(1).unwrap().parse().unwrap();
        // SAFETY: sysconf has no preconditions.
        pages * unsafe { libc::sysconf(libc::_SC_PAGESIZE) } as u64
    }

    /// What SQLite's connections leave when closed: many small blocks
    /// freed below one still in use, which glibc keeps in its arena (it
    /// gives back on its own only the top of an arena); the trim returns
    /// them to the system.
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    #[test]
    fn a_trim_gives_freed_small_blocks_back_to_the_system() {
        const FREED: usize = 256 << 20;
        let (before_trim, after_trim) = std::thread::spawn(|| {
            let blocks: Vec<Vec<u8>> = (0..FREED / 4096).map(|i| vec![i as u8 | 1; 4096]).collect();
            let pinned = vec![7u8; 4096];
            drop(blocks);
            let before_trim = rss();
            trim();
            let after_trim = rss();
            assert_eq!(pinned[4095], 7);
            (before_trim, after_trim)
        })
        .join()
        .unwrap();
        assert!(
            after_trim + (FREED as u64) / 2 < before_trim,
            "a trim gave back {} MiB of {} MiB freed (RSS {} MiB before it, {} MiB after)",
            before_trim.saturating_sub(after_trim) >> 20,
            FREED >> 20,
            before_trim >> 20,
            after_trim >> 20
        );
    }
}
