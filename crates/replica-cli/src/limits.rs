//! The process's descriptor budget. A Go program (Litestream) starts with
//! its soft `RLIMIT_NOFILE` raised to the hard limit; we do the same, then
//! count what each replicating database holds so that one more database
//! than the limit allows fails to start with a message naming the limit
//! and the count — retried like any failed start — instead of an
//! "os error 24" somewhere in the middle of the others' work.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use rustix::process::{getrlimit, setrlimit, Resource};

/// Descriptors a replicating database holds: its three SQLite connections
/// (database and WAL each), the shared `-shm`, the database file kept open,
/// the shadow WAL file and the shadow lock.
pub(crate) const PER_DATABASE: u64 = 10;

/// Descriptors a replica may hold (a file being written, HTTP connections).
pub(crate) const PER_REPLICA: u64 = 2;

/// Kept free for everything else: the runtime, the metrics server and its
/// clients, listings, restores of snapshots, the logs.
pub(crate) const RESERVE: u64 = 64;

/// Raises the soft descriptor limit to the hard one; returns the soft
/// limit now in force (`u64::MAX` when unlimited).
pub(crate) fn raise_descriptor_limit() -> u64 {
    let limit = getrlimit(Resource::Nofile);
    if limit.current != limit.maximum {
        let raised = rustix::process::Rlimit {
            current: limit.maximum,
            maximum: limit.maximum,
        };
        if setrlimit(Resource::Nofile, raised).is_ok() {
            return limit.maximum.unwrap_or(u64::MAX);
        }
    }
    limit.current.unwrap_or(u64::MAX)
}

/// How many descriptors the replicating databases may hold in all.
#[derive(Clone)]
pub(crate) struct Budget {
    limit: u64,
    taken: Arc<AtomicU64>,
}

/// Descriptors taken from a [`Budget`], given back when dropped.
pub(crate) struct Taken {
    n: u64,
    taken: Arc<AtomicU64>,
}

impl Drop for Taken {
    fn drop(&mut self) {
        self.taken.fetch_sub(self.n, Ordering::SeqCst);
    }
}

impl Budget {
    /// A budget under a descriptor limit of `limit`.
    pub(crate) fn new(limit: u64) -> Budget {
        Budget {
            limit: limit.saturating_sub(RESERVE),
            taken: Arc::default(),
        }
    }

    /// What a database with `replicas` replicas holds.
    pub(crate) fn cost(replicas: usize) -> u64 {
        PER_DATABASE + PER_REPLICA * replicas as u64
    }

    /// Takes `n` descriptors, or says why not.
    pub(crate) fn take(&self, n: u64) -> Result<Taken, String> {
        let mut now = self.taken.load(Ordering::SeqCst);
        loop {
            if now + n > self.limit {
                return Err(format!(
                    "the descriptor limit would be exceeded: {now} of {} descriptors are held by \
                     the databases replicating, this one needs {n} more (the limit is {}, with {RESERVE} \
                     kept for the rest); raise the hard limit (`ulimit -Hn`, LimitNOFILE= in a systemd \
                     unit) or replicate fewer databases in this process",
                    self.limit,
                    self.limit + RESERVE
                ));
            }
            match self
                .taken
                .compare_exchange(now, now + n, Ordering::SeqCst, Ordering::SeqCst)
            {
                Ok(_) => {
                    return Ok(Taken {
                        n,
                        taken: self.taken.clone(),
                    })
                }
                Err(actual) => now = actual,
            }
        }
    }
}

/// A hint for an error that is the descriptor limit ("os error 24").
pub(crate) fn hint(error: &str) -> Option<&'static str> {
    (error.contains("os error 24") || error.contains("Too many open files")).then_some(
        "the process ran out of file descriptors: raise the hard limit (`ulimit -Hn`, \
         LimitNOFILE= in a systemd unit) or replicate fewer databases in this process",
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_budget_refuses_past_the_limit_and_takes_back_what_is_dropped() {
        let budget = Budget::new(RESERVE + 25);
        let a = budget.take(Budget::cost(1)).unwrap();
        let b = budget.take(Budget::cost(1)).unwrap();
        let e = budget.take(Budget::cost(0)).err().unwrap();
        assert!(e.contains("24 of 25") && e.contains("ulimit -Hn"), "{e}");
        drop(a);
        let _c = budget.take(Budget::cost(1)).unwrap();
        drop(b);
    }

    #[test]
    fn the_soft_limit_is_raised_to_the_hard_one() {
        let now = raise_descriptor_limit();
        let limit = getrlimit(Resource::Nofile);
        assert_eq!(limit.current, limit.maximum);
        assert_eq!(now, limit.current.unwrap_or(u64::MAX));
    }
}
