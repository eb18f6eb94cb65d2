//! What `replica replicate` tells about itself while it runs: a [`Board`]
//! of every database's state (waiting for its file, failing to start,
//! replicating, stopped), the health rule over it, and the reports served
//! at `addr` — Prometheus metrics ([`metrics`]), `/healthz` and `/status`
//! ([`http`]), with the heartbeat pings and the `replica status` client.

pub(crate) mod http;
pub(crate) mod metrics;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use replica::layout::format_index;
use replica::metered::Meters;
use replica_sqlite::{Monitor, Status};
use serde::{Deserialize, Serialize};

/// The shortest time a database may go without being wholly replicated
/// before it counts as unhealthy.
pub(crate) const MIN_HEALTH_BOUND: Duration = Duration::from_secs(10);

/// How long a database may go without being wholly replicated before it is
/// unhealthy: three of its slowest sync (or monitor) intervals, at least
/// [`MIN_HEALTH_BOUND`].
pub(crate) fn health_bound(intervals: impl IntoIterator<Item = Duration>) -> Duration {
    intervals
        .into_iter()
        .map(|d| d * 3)
        .max()
        .unwrap_or_default()
        .max(MIN_HEALTH_BOUND)
}

/// Where one database stands.
#[derive(Clone)]
pub(crate) enum State {
    /// Its file does not exist yet (or has no SQLite header).
    Waiting { since: SystemTime },
    /// Starting: waiting for file descriptors that the databases awake
    /// hold, for a turn to open, or for its replicas to answer.
    Starting { since: SystemTime },
    /// Its start fails; retried with backoff.
    Failing { error: String, since: SystemTime },
    /// Replicating.
    Running(Monitor),
    /// Stopped (after its final sync, or never started).
    Stopped,
    /// Gone from its watched directory, and stopped: no longer reported.
    Removed,
}

struct Entry {
    path: PathBuf,
    bound: Duration,
    state: State,
}

/// Every database of a `replicate` run, and the request meters of its
/// replicas (cheap to clone; clones share).
#[derive(Clone)]
pub(crate) struct Board {
    entries: Arc<Mutex<Vec<Entry>>>,
    meters: Meters,
}

impl Board {
    pub(crate) fn new() -> Board {
        Board {
            entries: Arc::default(),
            meters: Meters::new(),
        }
    }

    /// The meters replicas are opened with.
    pub(crate) fn meters(&self) -> &Meters {
        &self.meters
    }

    /// Adds a database (waiting until told otherwise), named by its
    /// absolute path as Litestream labels it; returns its slot.
    pub(crate) fn add(&self, path: &Path, bound: Duration) -> usize {
        let path = std::path::absolute(path).unwrap_or_else(|_| path.to_owned());
        let mut entries = self.lock();
        entries.push(Entry {
            path,
            bound,
            state: State::Waiting {
                since: SystemTime::now(),
            },
        });
        entries.len() - 1
    }

    /// Sets where database `slot` stands. A wait or failure that goes on
    /// keeps its first time; a removed database stays removed.
    pub(crate) fn set(&self, slot: usize, state: State) {
        let mut entries = self.lock();
        let entry = &mut entries[slot];
        entry.state = match (&entry.state, state) {
            // Removed is final: its supervisor's "stopped" comes after.
            (State::Removed, _) => State::Removed,
            (State::Waiting { since }, State::Waiting { .. }) => State::Waiting { since: *since },
            // A retry keeps the failure (and its first time) until it ends.
            (State::Failing { since, error }, State::Starting { .. }) => State::Failing {
                error: error.clone(),
                since: *since,
            },
            (State::Failing { since, .. }, State::Failing { error, .. }) => State::Failing {
                error,
                since: *since,
            },
            (_, state) => state,
        };
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Entry>> {
        self.entries.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Every database's report, now. Status is read outside the lock.
    pub(crate) fn reports(&self) -> Vec<DbReport> {
        let entries: Vec<(PathBuf, Duration, State)> = self
            .lock()
            .iter()
            .filter(|e| !matches!(e.state, State::Removed))
            .map(|e| (e.path.clone(), e.bound, e.state.clone()))
            .collect();
        entries
            .into_iter()
            .map(|(path, bound, state)| {
                let status = match &state {
                    State::Running(m) => Some(m.status()),
                    _ => None,
                };
                DbReport::new(&path, bound, &state, status.as_ref())
            })
            .collect()
    }

    /// The reports with their statuses, for metrics.
    pub(crate) fn statuses(&self) -> Vec<(PathBuf, Status)> {
        let running: Vec<(PathBuf, Monitor)> = self
            .lock()
            .iter()
            .filter_map(|e| match &e.state {
                State::Running(m) => Some((e.path.clone(), m.clone())),
                _ => None,
            })
            .collect();
        running
            .into_iter()
            .map(|(path, m)| (path, m.status()))
            .collect()
    }
}

/// What `/status` and `/healthz` say about one database.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub(crate) struct DbReport {
    /// The database's path.
    pub(crate) path: String,
    /// `waiting`, `starting`, `failing`, `replicating` or `stopped`.
    pub(crate) state: String,
    /// Whether it is healthy (see [`health_bound`]).
    pub(crate) healthy: bool,
    /// Why it is not healthy.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) reason: Option<String>,
    /// How long it may go without being wholly replicated, in seconds.
    pub(crate) health_bound_seconds: f64,
    /// Since when it has been waiting, starting or failing to start (RFC
    /// 3339).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) since: Option<String>,
    /// The generation being written.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) generation: Option<String>,
    /// The shadow WAL's end: its index and committed length.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) shadow: Option<PosReport>,
    /// The database and WAL files' sizes.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) db_size: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) wal_size: Option<u64>,
    /// When a database round last succeeded.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) last_sync: Option<String>,
    /// Whether it is released (idle: its connections and files closed,
    /// no rounds until its WAL changes).
    #[serde(default)]
    pub(crate) released: bool,
    /// Since when the released database, woken by a change, waits for
    /// file descriptors (RFC 3339).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) waiting_for_descriptors_since: Option<String>,
    /// The last error (of the start, or of the database rounds).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) error: Option<String>,
    /// Each replica.
    pub(crate) replicas: Vec<ReplicaReport>,
}

/// What `/status` says about one replica.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub(crate) struct ReplicaReport {
    pub(crate) name: String,
    /// The next position it writes.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) position: Option<PosReport>,
    /// Whether it holds everything the shadow WAL holds.
    pub(crate) caught_up: bool,
    /// How far behind the database it is, in seconds.
    pub(crate) lag_seconds: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) last_sync: Option<String>,
    /// The error of its last round, while its rounds fail.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) error: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) failing_since: Option<String>,
    pub(crate) wal_bytes: u64,
    /// An LTX replica's newest TXID (16 hex digits).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) txid: Option<String>,
    pub(crate) syncs: u64,
    pub(crate) sync_errors: u64,
}

/// A WAL position: generation, index and offset (16 hex digits each, as
/// every listing prints them).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub(crate) struct PosReport {
    pub(crate) generation: String,
    pub(crate) index: String,
    pub(crate) offset: String,
}

impl PosReport {
    fn new(generation: &replica::Generation, index: u64, offset: u64) -> PosReport {
        PosReport {
            generation: generation.to_string(),
            index: format_index(index),
            offset: format_index(offset),
        }
    }
}

pub(crate) fn rfc3339(t: SystemTime) -> String {
    chrono::DateTime::<chrono::Utc>::from(t).to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

fn age(t: SystemTime) -> Duration {
    t.elapsed().unwrap_or_default()
}

impl DbReport {
    fn new(path: &Path, bound: Duration, state: &State, status: Option<&Status>) -> DbReport {
        let mut report = DbReport {
            path: path.display().to_string(),
            state: String::new(),
            healthy: true,
            reason: None,
            health_bound_seconds: bound.as_secs_f64(),
            since: None,
            generation: None,
            shadow: None,
            db_size: None,
            wal_size: None,
            last_sync: None,
            released: false,
            waiting_for_descriptors_since: None,
            error: None,
            replicas: Vec::new(),
        };
        let (name, reason) = match (state, status) {
            (State::Waiting { since }, _) => {
                let why = (age(*since) > bound).then(|| {
                    format!(
                        "waiting {} s for the database file to be created",
                        age(*since).as_secs()
                    )
                });
                ("waiting", why)
            }
            (State::Starting { since }, _) => {
                let why = (age(*since) > bound).then(|| {
                    format!(
                        "starting for {} s: waiting for its replicas to answer, for a turn \
                         to open it, or for file descriptors that the databases awake hold (if \
                         the log says so: raise the hard limit, `ulimit -Hn` or LimitNOFILE=, \
                         or replicate fewer databases in this process)",
                        age(*since).as_secs()
                    )
                });
                ("starting", why)
            }
            (State::Failing { error, since }, _) => {
                let why = (age(*since) > bound).then(|| {
                    format!(
                        "cannot start replicating for {} s: {error}",
                        age(*since).as_secs()
                    )
                });
                ("failing", why)
            }
            (_, Some(_)) => ("replicating", None),
            _ => ("stopped", Some("stopped".to_owned())),
        };
        if let Some(why) = reason {
            report.healthy = false;
            report.reason = Some(why);
        }
        report.state = name.to_owned();
        if let State::Waiting { since } | State::Starting { since } | State::Failing { since, .. } =
            state
        {
            report.since = Some(rfc3339(*since));
        }
        if let State::Failing { error, .. } = state {
            report.error = Some(error.clone());
        }
        let Some(status) = status else {
            return report;
        };
        report.generation = Some(status.generation.to_string());
        report.shadow = Some(PosReport::new(
            &status.generation,
            status.shadow.0,
            status.shadow.1,
        ));
        report.db_size = Some(status.db_size);
        report.wal_size = Some(status.wal_size);
        report.last_sync = status.last_sync.map(rfc3339);
        report.released = status.released;
        report.waiting_for_descriptors_since = status.waiting_for_descriptors.map(rfc3339);
        let mut reasons = Vec::new();
        // Released and woken, but the descriptors it needs to copy its
        // WAL are held by the databases awake.
        if let Some(since) = status.waiting_for_descriptors.filter(|s| age(*s) > bound) {
            reasons.push(format!(
                "its new transactions have waited {} s in its WAL for file descriptors that \
                 the databases awake hold (raise the hard limit, `ulimit -Hn` or LimitNOFILE=, \
                 or replicate fewer databases in this process)",
                age(since).as_secs()
            ));
        }
        // The database side must have run lately: a hung or dead database
        // task leaves replicas "caught up" with a stale shadow. A released
        // one makes no rounds: it released once everything was shipped, and
        // its WAL is unchanged since.
        let synced = status.last_sync.unwrap_or(status.started);
        if age(synced) > bound && status.failing.is_none() && !status.released {
            reasons.push(format!(
                "the database side has not completed a round for {} s",
                age(synced).as_secs()
            ));
        }
        if let Some(f) = &status.failing {
            report.error = Some(f.error.clone());
            if age(f.since) > bound {
                reasons.push(format!(
                    "the database side has failed for {} s: {}",
                    age(f.since).as_secs(),
                    f.error
                ));
            }
        }
        for r in &status.replicas {
            if r.lag > bound {
                let mut why = format!("replica {} is {} s behind", r.name, r.lag.as_secs());
                if let Some(f) = &r.failing {
                    why.push_str(&format!(
                        " (failing since {}: {})",
                        rfc3339(f.since),
                        f.error
                    ));
                }
                reasons.push(why);
            } else if let Some(f) = r.failing.as_ref().filter(|f| age(f.since) > bound) {
                // Keeping up with the WAL, but its rounds fail (snapshots,
                // retention, compaction).
                reasons.push(format!(
                    "replica {} has failed for {} s: {}",
                    r.name,
                    age(f.since).as_secs(),
                    f.error
                ));
            }
            report.replicas.push(ReplicaReport {
                name: r.name.clone(),
                position: r
                    .pos
                    .as_ref()
                    .map(|p| PosReport::new(&p.generation, p.index, p.offset)),
                caught_up: r.caught_up,
                lag_seconds: r.lag.as_secs_f64(),
                last_sync: r.last_sync.map(rfc3339),
                error: r.failing.as_ref().map(|f| f.error.clone()),
                failing_since: r.failing.as_ref().map(|f| rfc3339(f.since)),
                wal_bytes: r.wal_bytes,
                txid: r.txid.map(format_index),
                syncs: r.sync.count,
                sync_errors: r.sync.errors,
            });
        }
        if !reasons.is_empty() {
            report.healthy = false;
            report.reason = Some(reasons.join("; "));
        }
        report
    }
}

/// What `/healthz` answers.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct Health {
    /// `ok` or `unhealthy`.
    pub(crate) status: String,
    /// Every database that is not healthy, with why.
    pub(crate) unhealthy: Vec<Unhealthy>,
    /// How many databases there are.
    pub(crate) databases: usize,
}

/// One database that is not healthy.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct Unhealthy {
    pub(crate) path: String,
    pub(crate) state: String,
    pub(crate) reason: String,
}

/// The health of them all: healthy when every database is.
pub(crate) fn health(reports: &[DbReport]) -> Health {
    let unhealthy: Vec<Unhealthy> = reports
        .iter()
        .filter(|r| !r.healthy)
        .map(|r| Unhealthy {
            path: r.path.clone(),
            state: r.state.clone(),
            reason: r.reason.clone().unwrap_or_default(),
        })
        .collect();
    Health {
        status: if unhealthy.is_empty() && !reports.is_empty() {
            "ok".into()
        } else {
            "unhealthy".into()
        },
        unhealthy,
        databases: reports.len(),
    }
}

/// `replica status`: the replicator at `addr` (else the config's) asked
/// for its databases, printed as a table or as its JSON.
pub(crate) async fn status_command(
    db: Option<PathBuf>,
    addr: Option<String>,
    config: Option<PathBuf>,
    no_expand_env: bool,
    json: bool,
) -> Result<(), crate::Exit> {
    let addr = match addr {
        Some(addr) => addr,
        None => {
            let path = config.unwrap_or_else(crate::source::default_config_path);
            let parsed = crate::config::load(&path, !no_expand_env)
                .map_err(|e| crate::Exit::Error(crate::describe(&e)))?;
            parsed.addr.ok_or_else(|| {
                crate::Exit::Error(format!(
                    "{} has no `addr`: give the replicator's --addr HOST:PORT",
                    path.display()
                ))
            })?
        }
    };
    let mut reports = http::fetch_status(&addr)
        .await
        .map_err(crate::Exit::Error)?;
    if let Some(db) = db {
        let want = std::path::absolute(&db).unwrap_or(db);
        reports.retain(|r| Path::new(&r.path) == want);
        if reports.is_empty() {
            return Err(crate::Exit::Error(format!(
                "the replicator at {addr} does not replicate {}",
                want.display()
            )));
        }
    }
    if json {
        crate::listing::print_json(&reports)?;
    } else {
        print!("{}", table(&reports));
    }
    Ok(())
}

/// The status as a table: one row per replica (a database without any yet
/// has one row of its own).
pub(crate) fn table(reports: &[DbReport]) -> String {
    let mut rows = vec![[
        "database",
        "state",
        "health",
        "replica",
        "position",
        "lag",
        "last sync",
        "error",
    ]
    .map(str::to_owned)];
    for r in reports {
        let health = if r.healthy { "ok" } else { "unhealthy" };
        let db_error = r
            .reason
            .clone()
            .or_else(|| r.error.clone())
            .unwrap_or_default();
        if r.replicas.is_empty() {
            rows.push([
                r.path.clone(),
                r.state.clone(),
                health.into(),
                "-".into(),
                "-".into(),
                "-".into(),
                r.last_sync.clone().unwrap_or_else(|| "-".into()),
                db_error.clone(),
            ]);
        }
        for x in &r.replicas {
            rows.push([
                r.path.clone(),
                r.state.clone(),
                health.into(),
                x.name.clone(),
                x.position.as_ref().map_or_else(
                    || "-".into(),
                    |p| format!("{}/{}:{}", p.generation, p.index, p.offset),
                ),
                format!("{:.1}s", x.lag_seconds),
                x.last_sync.clone().unwrap_or_else(|| "-".into()),
                x.error.clone().unwrap_or_else(|| db_error.clone()),
            ]);
        }
    }
    let widths: Vec<usize> = (0..8)
        .map(|c| rows.iter().map(|r| r[c].chars().count()).max().unwrap_or(0))
        .collect();
    let mut out = String::new();
    for row in rows {
        let line: Vec<String> = row
            .iter()
            .zip(&widths)
            .map(|(cell, w)| format!("{cell:<w$}"))
            .collect();
        out.push_str(line.join("  ").trim_end());
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(last_sync: SystemTime, replica_failing_since: Option<SystemTime>) -> Status {
        let g = replica::Generation::random();
        Status {
            generation: g.clone(),
            shadow: (0, 32),
            db_size: 4096,
            wal_size: 32,
            wal_bytes: 0,
            wal_frames: 0,
            sync: replica_sqlite::Work::default(),
            checkpoints: Vec::new(),
            last_sync: Some(last_sync),
            started: last_sync,
            failing: None,
            released: false,
            releases: 0,
            shadow_syncs: 0,
            shadow_bytes: 0,
            waiting_for_descriptors: None,
            replicas: vec![replica_sqlite::ReplicaStatus {
                name: "r".into(),
                sync_interval: Duration::from_secs(1),
                pos: Some(replica::Pos {
                    generation: g,
                    index: 0,
                    offset: 32,
                }),
                wal_bytes: 0,
                txid: None,
                sync: replica_sqlite::Work::default(),
                last_sync: None,
                failing: replica_failing_since.map(|since| replica_sqlite::Failure {
                    error: "snapshot refused".into(),
                    since,
                }),
                caught_up: true,
                lag: Duration::ZERO,
            }],
        }
    }

    #[test]
    fn a_stale_database_side_or_a_replica_failing_past_the_bound_is_unhealthy() {
        let bound = Duration::from_secs(10);
        let running =
            |s: &Status| DbReport::new(Path::new("/a.db"), bound, &State::Stopped, Some(s));
        let now = SystemTime::now();
        let long_ago = now - Duration::from_secs(60);
        assert!(running(&status(now, None)).healthy);
        let stale = running(&status(long_ago, None));
        assert!(!stale.healthy);
        assert!(
            stale
                .reason
                .as_deref()
                .unwrap()
                .contains("has not completed a round"),
            "{stale:?}"
        );
        let released = Status {
            released: true,
            ..status(long_ago, None)
        };
        let report = running(&released);
        assert!(
            report.healthy && report.released,
            "a released database makes no rounds: {report:?}"
        );
        let woken = |since| Status {
            waiting_for_descriptors: Some(since),
            ..released.clone()
        };
        let report = running(&woken(now));
        assert!(
            report.healthy && report.waiting_for_descriptors_since.is_some(),
            "a short wait for descriptors is healthy: {report:?}"
        );
        let report = running(&woken(long_ago));
        assert!(!report.healthy, "{report:?}");
        assert!(
            report
                .reason
                .as_deref()
                .unwrap()
                .contains("waited 60 s in its WAL for file descriptors"),
            "{report:?}"
        );
        assert!(
            running(&status(now, Some(now))).healthy,
            "a fresh failure is not yet"
        );
        let failing = running(&status(now, Some(long_ago)));
        assert!(!failing.healthy);
        assert!(
            failing
                .reason
                .as_deref()
                .unwrap()
                .contains("snapshot refused"),
            "{failing:?}"
        );
    }

    #[test]
    fn the_bound_is_three_intervals_and_never_under_ten_seconds() {
        assert_eq!(health_bound([Duration::from_secs(1)]), MIN_HEALTH_BOUND);
        assert_eq!(
            health_bound([Duration::from_secs(1), Duration::from_secs(20)]),
            Duration::from_secs(60)
        );
        assert_eq!(health_bound([]), MIN_HEALTH_BOUND);
    }

    #[test]
    fn waiting_and_failing_are_unhealthy_only_past_the_bound() {
        let board = Board::new();
        let a = board.add(Path::new("/a.db"), Duration::from_secs(10));
        let b = board.add(Path::new("/b.db"), Duration::from_secs(10));
        board.set(
            b,
            State::Failing {
                error: "denied".into(),
                since: SystemTime::now(),
            },
        );
        let reports = board.reports();
        assert!(reports.iter().all(|r| r.healthy), "{reports:?}");
        assert_eq!(health(&reports).status, "ok");
        assert_eq!(reports[1].error.as_deref(), Some("denied"));
        let long_ago = SystemTime::now() - Duration::from_secs(60);
        {
            let mut entries = board.lock();
            entries[a].state = State::Waiting { since: long_ago };
            entries[b].state = State::Failing {
                error: "denied".into(),
                since: long_ago,
            };
        }
        // A failure that goes on keeps its first time, retries between.
        board.set(
            b,
            State::Starting {
                since: SystemTime::now(),
            },
        );
        board.set(
            b,
            State::Failing {
                error: "still denied".into(),
                since: SystemTime::now(),
            },
        );
        let c = board.add(Path::new("/c.db"), Duration::from_secs(10));
        board.set(c, State::Starting { since: long_ago });
        let health = health(&board.reports());
        assert_eq!(health.status, "unhealthy");
        assert_eq!(health.unhealthy.len(), 3);
        assert!(
            health.unhealthy[2].reason.contains("starting for 60 s")
                && health.unhealthy[2].reason.contains("file descriptors"),
            "{health:?}"
        );
        assert!(health.unhealthy[0].reason.contains("waiting"), "{health:?}");
        assert!(
            health.unhealthy[1].reason.contains("still denied"),
            "{health:?}"
        );
        board.set(a, State::Stopped);
        assert_eq!(board.reports()[0].reason.as_deref(), Some("stopped"));
        // A removed database is not reported, whatever comes after.
        board.set(a, State::Removed);
        board.set(a, State::Stopped);
        assert_eq!(board.reports().len(), 2, "b and c remain");
    }
}
