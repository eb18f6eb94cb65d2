//! The process's descriptor budget. A Go program (Litestream) starts with
//! its soft `RLIMIT_NOFILE` raised to the hard limit; we do the same, then
//! count what each replicating database holds: one descriptor for as long
//! as it runs, and its connections and files while awake. One more
//! database than the limit allows fails to start with a message naming the
//! limit and the count — retried like any failed start — and a database
//! that cannot wake for want of descriptors waits, saying why, while others
//! release theirs: never an "os error 24" in the middle of the others'
//! work.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;

use replica_sqlite::{awake_cost, Descriptors, Taken};
use rustix::process::{getrlimit, setrlimit, Resource};

/// Descriptors a replicating database holds for as long as it runs: its
/// shadow lock. Awake, it holds [`replica_sqlite::awake_cost`] more,
/// taken from the same budget by the replicator (which waits for them).
pub(crate) const PER_DATABASE: u32 = 1;

/// Kept free for everything else: the runtime, the metrics server and its
/// clients, listings, restores of snapshots, compactions of released
/// databases' replicas, the logs.
pub(crate) const RESERVE: u64 = 256;

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
    descriptors: Descriptors,
    /// Databases started (each holds [`PER_DATABASE`]).
    started: Arc<AtomicU32>,
}

/// What a started database holds of the budget, given back when dropped.
pub(crate) struct Started {
    _taken: Taken,
    started: Arc<AtomicU32>,
}

impl Drop for Started {
    fn drop(&mut self) {
        self.started.fetch_sub(1, Ordering::SeqCst);
    }
}

impl Budget {
    /// A budget under a descriptor limit of `limit`.
    pub(crate) fn new(limit: u64) -> Budget {
        let total = u32::try_from(limit.saturating_sub(RESERVE)).unwrap_or(u32::MAX / 2);
        Budget {
            descriptors: Descriptors::new(total),
            started: Arc::default(),
        }
    }

    /// What the replicators take while awake.
    pub(crate) fn descriptors(&self) -> Descriptors {
        self.descriptors.clone()
    }

    /// Takes what a database with `replicas` replicas holds for as long
    /// as it runs, or says why not: what every started database holds,
    /// plus one of them awake, must fit (so the databases can take turns
    /// being awake, never all wait).
    pub(crate) fn take(&self, replicas: usize) -> Result<Started, String> {
        let total = self.descriptors.total();
        let refuse = |started: u32| {
            format!(
                "the descriptor limit would be exceeded: {started} databases hold {} descriptors \
                 and one awake needs {} more, of {total} the databases may hold (the limit is {}, \
                 with {RESERVE} kept for the rest); raise the hard limit (`ulimit -Hn`, \
                 LimitNOFILE= in a systemd unit) or replicate fewer databases in this process",
                started * PER_DATABASE,
                awake_cost(replicas),
                u64::from(total) + RESERVE
            )
        };
        let mut now = self.started.load(Ordering::SeqCst);
        loop {
            let need =
                u64::from(now + 1) * u64::from(PER_DATABASE) + u64::from(awake_cost(replicas));
            if need > u64::from(total) {
                return Err(refuse(now));
            }
            match self
                .started
                .compare_exchange(now, now + 1, Ordering::SeqCst, Ordering::SeqCst)
            {
                Ok(_) => break,
                Err(actual) => now = actual,
            }
        }
        let started = Started {
            _taken: match self.descriptors.try_take(PER_DATABASE) {
                Some(taken) => taken,
                None => {
                    self.started.fetch_sub(1, Ordering::SeqCst);
                    return Err(refuse(now));
                }
            },
            started: self.started.clone(),
        };
        Ok(started)
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
        // Two databases with one replica, one of them awake: 2 + 11.
        let budget = Budget::new(RESERVE + 13);
        let a = budget.take(1).unwrap();
        let b = budget.take(1).unwrap();
        let e = budget.take(1).err().unwrap();
        assert!(
            e.contains("2 databases hold 2 descriptors") && e.contains("ulimit -Hn"),
            "{e}"
        );
        drop(a);
        let _c = budget.take(1).unwrap();
        drop(b);
        assert_eq!(budget.descriptors().available(), 12);
    }

    #[test]
    fn the_soft_limit_is_raised_to_the_hard_one() {
        let now = raise_descriptor_limit();
        let limit = getrlimit(Resource::Nofile);
        assert_eq!(limit.current, limit.maximum);
        assert_eq!(now, limit.current.unwrap_or(u64::MAX));
    }
}
