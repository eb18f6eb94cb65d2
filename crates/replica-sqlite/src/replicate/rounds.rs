//! Short blocking work of the replicator, bounded process-wide.
//!
//! Every database's side (opening it, each round that copies its WAL,
//! checkpoints or releases it, pruning its shadow) runs on a blocking
//! thread, as does reading and compressing a range of a shadow WAL for a
//! 0.3 replica. Ten thousand databases starting at once would otherwise ask for
//! ten thousand blocking threads at once (tokio grows its pool to 512, all
//! for work that two cores do one at a time). A round takes one of
//! [`MAX_ROUNDS`] turns before its thread is asked for and gives it back
//! when the work ends. The work never waits for another database's round,
//! a snapshot or an upload, so a turn is always given back.

use tokio::sync::Semaphore;
use tokio::task::JoinError;

/// Database-side rounds running at once, process-wide.
pub const MAX_ROUNDS: usize = 16;

static ROUNDS: Semaphore = Semaphore::const_new(MAX_ROUNDS);

/// Runs `work` on a blocking thread once a turn is free. The turn is held
/// by the work itself, so dropping the returned future early (a stop)
/// does not free it while the work still runs.
pub(crate) async fn run<T, F>(work: F) -> Result<T, JoinError>
where
    T: Send + 'static,
    F: FnOnce() -> T + Send + 'static,
{
    run_within(&ROUNDS, work).await
}

/// [`run`] with the turns taken from `turns`: the process-wide bound in use,
/// a test's own in the tests (tests run at once in one process, so theirs
/// must not count the other tests' rounds).
async fn run_within<T, F>(turns: &'static Semaphore, work: F) -> Result<T, JoinError>
where
    T: Send + 'static,
    F: FnOnce() -> T + Send + 'static,
{
    let turn = turns
        .acquire()
        .await
        .expect("the rounds semaphore is never closed");
    tokio::task::spawn_blocking(move || {
        let _turn = turn;
        work()
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn no_more_than_max_rounds_run_at_once() {
        static TURNS: Semaphore = Semaphore::const_new(MAX_ROUNDS);
        let running = Arc::new(AtomicUsize::new(0));
        let most = Arc::new(AtomicUsize::new(0));
        let rounds: Vec<_> = (0..MAX_ROUNDS * 4)
            .map(|_| {
                let (running, most) = (running.clone(), most.clone());
                tokio::spawn(run_within(&TURNS, move || {
                    let now = running.fetch_add(1, Ordering::SeqCst) + 1;
                    most.fetch_max(now, Ordering::SeqCst);
                    std::thread::sleep(std::time::Duration::from_millis(20));
                    running.fetch_sub(1, Ordering::SeqCst);
                }))
            })
            .collect();
        for round in rounds {
            round.await.expect("joined").expect("ran");
        }
        let most = most.load(Ordering::SeqCst);
        assert!(most <= MAX_ROUNDS, "{most} rounds ran at once");
        // The work did overlap: the bound, not a lack of threads, held it.
        assert!(most > 1, "rounds never overlapped");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_dropped_caller_keeps_the_turn_until_the_work_ends() {
        static TURNS: Semaphore = Semaphore::const_new(MAX_ROUNDS);
        let (started_tx, started_rx) = std::sync::mpsc::channel();
        let (finish_tx, finish_rx) = std::sync::mpsc::channel::<()>();
        let caller = tokio::spawn(run_within(&TURNS, move || {
            started_tx.send(()).expect("started");
            let _ = finish_rx.recv();
        }));
        tokio::task::spawn_blocking(move || started_rx.recv().expect("started"))
            .await
            .expect("joined");
        caller.abort();
        let _ = caller.await;
        assert_eq!(
            TURNS.available_permits(),
            MAX_ROUNDS - 1,
            "the turn went back while the work ran"
        );
        finish_tx.send(()).expect("finish");
        let back = tokio::time::timeout(std::time::Duration::from_secs(10), async {
            while TURNS.available_permits() != MAX_ROUNDS {
                tokio::time::sleep(std::time::Duration::from_millis(5)).await;
            }
        })
        .await;
        assert!(
            back.is_ok(),
            "the turn was not given back after the work ended"
        );
    }
}
