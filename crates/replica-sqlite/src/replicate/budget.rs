//! The file descriptors a process's replicators share.
//!
//! A replicating database holds one descriptor for as long as it runs (its
//! shadow lock) and [`awake_cost`] more while awake (its connections and
//! files, and what its replicas open). With a [`Descriptors`] budget in
//! [`DbOptions::descriptors`](super::DbOptions), a database waits for its
//! awake descriptors, at start and to wake, instead of failing on the
//! process's limit; and while others wait, an awake database releases
//! itself as soon as it is quiet (see
//! [`DbOptions::release_when_idle`](super::DbOptions)).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tracing::warn;

/// Descriptors an awake database holds beyond its shadow lock: the
/// database file and the WAL of each of its three connections, the shared
/// `-shm`, the database file kept open, and the shadow WAL file.
pub const AWAKE_DESCRIPTORS: u32 = 9;

/// Descriptors a replica may hold while it ships (a file being written,
/// HTTP connections).
pub const DESCRIPTORS_PER_REPLICA: u32 = 2;

/// What an awake database with `replicas` replicas takes from the budget.
pub fn awake_cost(replicas: usize) -> u32 {
    AWAKE_DESCRIPTORS + DESCRIPTORS_PER_REPLICA * u32::try_from(replicas).unwrap_or(u32::MAX / 4)
}

/// A budget of file descriptors shared by replicators (cheap to clone).
#[derive(Clone, Debug)]
pub struct Descriptors {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    semaphore: Arc<Semaphore>,
    total: u32,
    /// Databases waiting to wake.
    waiting: AtomicUsize,
}

/// Descriptors taken from a [`Descriptors`] budget, given back when dropped.
#[derive(Debug)]
pub struct Taken {
    _permit: OwnedSemaphorePermit,
}

impl Descriptors {
    /// A budget of `total` descriptors.
    pub fn new(total: u32) -> Descriptors {
        Descriptors {
            inner: Arc::new(Inner {
                semaphore: Arc::new(Semaphore::new(total as usize)),
                total,
                waiting: AtomicUsize::new(0),
            }),
        }
    }

    /// The budget's size.
    pub fn total(&self) -> u32 {
        self.inner.total
    }

    /// Descriptors not taken.
    pub fn available(&self) -> u32 {
        u32::try_from(self.inner.semaphore.available_permits()).unwrap_or(u32::MAX)
    }

    /// Takes `n` descriptors if they are free.
    pub fn try_take(&self, n: u32) -> Option<Taken> {
        self.inner
            .semaphore
            .clone()
            .try_acquire_many_owned(n)
            .ok()
            .map(|permit| Taken { _permit: permit })
    }

    /// Whether a database waits for descriptors.
    pub(crate) fn contended(&self) -> bool {
        self.inner.waiting.load(Ordering::SeqCst) > 0
    }

    /// Takes `n` descriptors for the database at `path`, waiting (and
    /// saying so, once a minute) while other databases hold them.
    pub(crate) async fn take(&self, n: u32, path: &std::path::Path) -> Taken {
        if let Some(taken) = self.try_take(n) {
            return taken;
        }
        self.inner.waiting.fetch_add(1, Ordering::SeqCst);
        let _waiting = Waiting(&self.inner);
        loop {
            let wait = self.inner.semaphore.clone().acquire_many_owned(n);
            match tokio::time::timeout(Duration::from_secs(60), wait).await {
                Ok(Ok(permit)) => return Taken { _permit: permit },
                Ok(Err(_)) => unreachable!("the budget's semaphore is never closed"),
                Err(_) => warn!(
                    path = %path.display(),
                    free = self.available(),
                    needed = n,
                    total = self.total(),
                    "waiting for file descriptors: the databases awake hold what the descriptor \
                     limit allows, so this one's changes wait in its WAL until others go idle \
                     (raise the hard limit, `ulimit -Hn` or LimitNOFILE=, or replicate fewer \
                     databases in this process)"
                ),
            }
        }
    }
}

/// Counts a waiting database for as long as it waits.
struct Waiting<'a>(&'a Inner);

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.waiting.fetch_sub(1, Ordering::SeqCst);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_database_waits_for_descriptors_and_is_counted_while_it_waits() {
        let budget = Descriptors::new(20);
        let a = budget.take(12, std::path::Path::new("a")).await;
        assert!(budget.try_take(9).is_none());
        assert!(!budget.contended());
        let waiter = {
            let budget = budget.clone();
            tokio::spawn(async move { budget.take(9, std::path::Path::new("b")).await })
        };
        while !budget.contended() {
            tokio::task::yield_now().await;
        }
        drop(a);
        let b = waiter.await.unwrap();
        assert!(!budget.contended());
        assert_eq!(budget.available(), 11);
        drop(b);
        assert_eq!(budget.available(), 20);
    }
}
