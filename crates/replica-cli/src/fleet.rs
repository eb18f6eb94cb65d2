//! The databases one `replica replicate` runs, each in its own supervised
//! task with its own stop: those of the config at start, and those
//! directory replication adds or removes while it runs.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use replica::AnyLayout;
use tokio::sync::{oneshot, watch};
use tokio::task::JoinHandle;
use tracing::{error, info};

use crate::limits::Budget;
use crate::monitor::{self, Board, State};
use crate::replicate::{supervise, Plan};

struct Member {
    path: PathBuf,
    slot: usize,
    stop: watch::Sender<bool>,
    task: JoinHandle<Result<(), String>>,
}

/// Every database being replicated (cheap to clone; clones share).
#[derive(Clone)]
pub(crate) struct Fleet {
    members: Arc<Mutex<Vec<Member>>>,
    board: Board,
    budget: Budget,
    layout: Option<AnyLayout>,
}

impl Fleet {
    pub(crate) fn new(board: Board, budget: Budget, layout: Option<AnyLayout>) -> Fleet {
        Fleet {
            members: Arc::default(),
            board,
            budget,
            layout,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Member>> {
        self.members.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Whether `path` is replicated already.
    pub(crate) fn contains(&self, path: &Path) -> bool {
        self.lock().iter().any(|m| m.path == path)
    }

    /// The databases replicated now.
    pub(crate) fn paths(&self) -> Vec<PathBuf> {
        self.lock().iter().map(|m| m.path.clone()).collect()
    }

    /// Starts replicating `plan`'s database; told on the receiver once its
    /// first start attempt is over.
    pub(crate) fn spawn(&self, plan: Plan) -> oneshot::Receiver<()> {
        let (tell, told) = oneshot::channel();
        let intervals = plan
            .replicas
            .iter()
            .map(|(r, _, _)| r.sync_interval)
            .chain([plan.options.monitor_interval]);
        let slot = self.board.add(&plan.path, monitor::health_bound(intervals));
        let (stop, stopped) = watch::channel(false);
        let path = plan.path.clone();
        let task = tokio::spawn(supervise(
            plan,
            self.layout,
            stopped,
            tell,
            (self.board.clone(), slot),
            self.budget.clone(),
        ));
        self.lock().push(Member {
            path,
            slot,
            stop,
            task,
        });
        told
    }

    /// Stops replicating `path` (a database removed from a watched
    /// directory): a final sync in the background, then it is forgotten.
    pub(crate) fn remove(&self, path: &Path) {
        let member = {
            let mut members = self.lock();
            let Some(i) = members.iter().position(|m| m.path == path) else {
                return;
            };
            members.remove(i)
        };
        // Not reported from now on (not as "stopped" during its final sync).
        self.board.set(member.slot, State::Removed);
        info!(db = %path.display(), "the database is gone from its directory; stopping its replication after a final sync");
        let _ = member.stop.send(true);
        tokio::spawn(async move {
            match member.task.await {
                Ok(Ok(())) => info!(db = %member.path.display(), "stopped"),
                Ok(Err(e)) => {
                    error!(db = %member.path.display(), error = %e, "stopped; its final sync failed")
                }
                Err(e) => error!(db = %member.path.display(), error = %e, "its task failed"),
            }
        });
    }

    /// Stops them all, each with its final sync; the failures, by database.
    pub(crate) async fn stop_all(&self) -> Vec<String> {
        let members = std::mem::take(&mut *self.lock());
        for m in &members {
            let _ = m.stop.send(true);
        }
        let mut failed = Vec::new();
        for m in members {
            match m.task.await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => failed.push(format!("{}: {e}", m.path.display())),
                Err(e) => failed.push(format!("{}: {e}", m.path.display())),
            }
        }
        failed
    }
}
