//! `replica replicate` and `replica snapshot`: live replication of SQLite
//! databases, from replica URLs or a Litestream 0.3 config file.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use replica::{AnyLayout, Layout, ReplicaClient};
use replica_sqlite::{DbOptions, Replica, ReplicaOptions, ReplicaTarget, Replicator};
use tracing::{error, info, warn};

use crate::fleet::Fleet;
use crate::limits;
use crate::monitor::{self, Board, State};
use crate::{config, describe, Exit};

/// How logs are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum LogFormat {
    /// One human-readable line per event (colours on a terminal).
    Text,
    /// One JSON object per line.
    Json,
}

/// Sends `tracing` events to stderr (stdout when a config's `logging`
/// says `stderr: false`), at the config's `logging.level` or Litestream's
/// `LOG_LEVEL`, in `format` (else the config's `logging.type`). A full
/// filter in `REPLICA_LOG` overrides the level; the HTTP client's crates
/// log at `warn` unless it says otherwise.
pub(crate) fn init_logs(format: Option<LogFormat>, logging: &config::Logging) {
    // The HTTP stack's own retry notes are not our events: a 15 s outage
    // gave 30 INFO lines of them; our "sync failed; retrying" says it once.
    // Litestream's LOG_LEVEL: empty is unset; an unknown level is info (as
    // Litestream), said once logging is up.
    let from_env = std::env::var("LOG_LEVEL")
        .ok()
        .filter(|l| !l.trim().is_empty());
    let known = from_env
        .as_deref()
        .map(|l| config::log_level(l).ok_or(l.to_owned()));
    let level = match &known {
        Some(Ok(level)) => *level,
        _ => logging.level.unwrap_or("info"),
    };
    let filter = tracing_subscriber::EnvFilter::try_from_env("REPLICA_LOG").unwrap_or_else(|_| {
        tracing_subscriber::EnvFilter::try_new(format!(
            "{level},object_store=warn,reqwest=warn,hyper=warn,h2=warn"
        ))
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"))
    });
    let json = match format {
        Some(f) => f == LogFormat::Json,
        None => logging.json.unwrap_or(false),
    };
    let stdout = logging.stderr == Some(false);
    let writer = tracing_subscriber::fmt::writer::BoxMakeWriter::new(move || {
        if stdout {
            Box::new(std::io::stdout()) as Box<dyn std::io::Write>
        } else {
            Box::new(std::io::stderr())
        }
    });
    let terminal = if stdout {
        std::io::stdout().is_terminal()
    } else {
        std::io::stderr().is_terminal()
    };
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(writer)
        .with_target(false);
    let _ = if json {
        builder.json().flatten_event(true).try_init()
    } else {
        builder.with_ansi(terminal).try_init()
    };
    if let Some(Err(unknown)) = known {
        warn!(
            "LOG_LEVEL={unknown:?} is not a level (debug, info, warn, error); logging at {level}"
        );
    }
}

/// What `replica replicate` was told on its command line.
pub(crate) struct Args {
    pub(crate) db: Option<PathBuf>,
    pub(crate) urls: Vec<String>,
    pub(crate) config: Option<PathBuf>,
    pub(crate) no_expand_env: bool,
    pub(crate) exec: Option<String>,
    pub(crate) addr: Option<String>,
    /// `--dir DIR`: replicate every database in it (then `db` is the first URL).
    pub(crate) dir: Option<PathBuf>,
    pub(crate) pattern: String,
    pub(crate) recursive: bool,
    pub(crate) watch: bool,
    pub(crate) log_format: Option<LogFormat>,
    pub(crate) monitor_interval: Option<Duration>,
    pub(crate) sync_interval: Option<Duration>,
    pub(crate) snapshot_interval: Option<Duration>,
    pub(crate) checkpoint_interval: Option<Duration>,
    pub(crate) min_checkpoint_page_count: Option<u32>,
}

/// One database and its replicas, ready to start.
#[derive(Clone)]
pub(crate) struct Plan {
    pub(crate) path: PathBuf,
    pub(crate) options: DbOptions,
    /// Each replica's options, URL, and (from a Litestream 0.5 config) its
    /// LTX settings.
    pub(crate) replicas: Vec<(ReplicaOptions, String, Option<config::LtxSettings>)>,
}

/// A directory whose databases are replicated, each as `template` says
/// with its path relative to `template.path` added to the replica URLs.
struct DirPlan {
    template: Plan,
    spec: config::DirSpec,
}

impl DirPlan {
    /// The plan of database `db` found in the directory.
    fn plan_for(&self, db: &Path) -> Result<Plan, String> {
        let rel = db.strip_prefix(&self.template.path).map_err(|_| {
            format!(
                "{} is not below {}",
                db.display(),
                self.template.path.display()
            )
        })?;
        let mut plan = self.template.clone();
        plan.path = db.to_owned();
        // One of many, most of them idle most of the time.
        plan.options.release_when_idle = Some(DIR_RELEASE);
        for (_, url, _) in &mut plan.replicas {
            *url = crate::dirs::replica_url(url, rel)?;
        }
        Ok(plan)
    }
}

/// How long a database found in a watched directory stays open with
/// nothing new before it is released (its connections and files closed
/// until its WAL changes). Databases listed one by one are released only
/// while others wait for descriptors: a database written by short-lived
/// processes would otherwise pay a new generation per write spell (an
/// application's last connection closing while no connection of ours is
/// open checkpoints and deletes the WAL).
pub(crate) const DIR_RELEASE: Duration = Duration::from_secs(10);

/// What a run does besides replicating, from the flags and the config.
#[derive(Default)]
struct Settings {
    /// The command to run (`--exec`, else the config's `exec`).
    exec: Option<String>,
    /// Where to serve metrics (`--addr`, else the config's `addr`).
    addr: Option<String>,
    logging: config::Logging,
    heartbeat: Option<config::Heartbeat>,
    /// Warnings about the config, logged once logging is set up.
    warnings: Vec<String>,
}

/// The databases to replicate, and the rest of the run's settings.
fn plans(args: &Args) -> Result<(Vec<Plan>, Vec<DirPlan>, Settings), Exit> {
    match (&args.db, &args.config) {
        (_, Some(_)) if args.dir.is_some() => Err(Exit::Error(
            "give --dir DIR and replica URLs, or --config FILE, not both \
             (a config lists directories as `dir` entries)"
                .into(),
        )),
        (Some(_), Some(_)) => Err(Exit::Error(
            "give a database and replica URLs, or --config FILE, not both".into(),
        )),
        (Some(db), None) => {
            let mut urls = args.urls.clone();
            let db = match &args.dir {
                // With --dir, every argument is a replica URL.
                Some(dir) => {
                    urls.insert(0, db.display().to_string());
                    std::path::absolute(dir)
                        .map_err(|e| Exit::Error(format!("resolving {}: {e}", dir.display())))?
                }
                None => db.clone(),
            };
            let db = &db;
            if urls.is_empty() {
                return Err(Exit::Error(format!(
                    "no replica URL for {}: give at least one, e.g. `replica replicate {} file:///backups/db`",
                    db.display(),
                    db.display()
                )));
            }
            let mut options = DbOptions::default();
            if let Some(d) = args.monitor_interval {
                options.monitor_interval = d;
            }
            if let Some(d) = args.checkpoint_interval {
                options.checkpoint_interval = d;
            }
            if let Some(n) = args.min_checkpoint_page_count {
                options.min_checkpoint_page_count = n;
                options.max_checkpoint_page_count = options.max_checkpoint_page_count.max(n);
            }
            let replicas = urls
                .iter()
                .enumerate()
                .map(|(i, url)| {
                    // Replicas of one kind get their place as a suffix
                    // (`file`, `file-2`): names label logs and metrics.
                    let kind = scheme_name(url);
                    let same = urls[..i].iter().filter(|u| scheme_name(u) == kind).count();
                    let name = if same == 0 {
                        kind
                    } else {
                        format!("{kind}-{}", same + 1)
                    };
                    let mut replica = ReplicaOptions {
                        name,
                        snapshot_interval: args.snapshot_interval,
                        ..ReplicaOptions::default()
                    };
                    if let Some(d) = args.sync_interval {
                        replica.sync_interval = d;
                    }
                    (replica, url.clone(), None)
                })
                .collect();
            let plan = Plan {
                path: db.clone(),
                options,
                replicas,
            };
            let settings = Settings {
                exec: args.exec.clone(),
                addr: args.addr.clone(),
                ..Settings::default()
            };
            if args.dir.is_some() {
                let spec = config::DirSpec {
                    pattern: args.pattern.clone(),
                    recursive: args.recursive,
                    watch: args.watch,
                };
                return Ok((
                    Vec::new(),
                    vec![DirPlan {
                        template: plan,
                        spec,
                    }],
                    settings,
                ));
            }
            Ok((vec![plan], Vec::new(), settings))
        }
        (None, config) => {
            let path = config
                .clone()
                .unwrap_or_else(crate::source::default_config_path);
            if config.is_none() && !path.exists() {
                return Err(Exit::Error(format!(
                    "nothing to replicate: give a database and replica URLs, or --config FILE \
                     (the default config {} does not exist)",
                    path.display()
                )));
            }
            let parsed =
                config::load(&path, !args.no_expand_env).map_err(|e| Exit::Error(describe(&e)))?;
            let mut warnings: Vec<String> = parsed
                .ignored
                .iter()
                .map(|ignored| format!("{}: ignored: {ignored}", path.display()))
                .collect();
            for (i, db) in parsed.dbs.iter().enumerate() {
                for (j, r) in db.replicas.iter().enumerate() {
                    if r.validation_interval.is_some() {
                        warnings.push(format!("{}: ignored: dbs[{i}].replicas[{j}].validation-interval (run `replica verify` or a test restore instead)", path.display()));
                    }
                }
            }
            let settings = Settings {
                exec: args.exec.clone().or(parsed.exec),
                addr: args.addr.clone().or(parsed.addr),
                logging: parsed.logging,
                heartbeat: parsed.heartbeat,
                warnings,
            };
            let mut dirs = Vec::new();
            let mut plans = Vec::new();
            for db in parsed.dbs {
                let spec = db.dir.clone();
                let plan = Plan {
                    options: DbOptions {
                        monitor_interval: db.monitor_interval,
                        checkpoint_interval: db.checkpoint_interval,
                        min_checkpoint_page_count: db.min_checkpoint_page_count,
                        max_checkpoint_page_count: db.max_checkpoint_page_count,
                        busy_timeout: db.busy_timeout,
                        ..DbOptions::default()
                    },
                    path: db.path,
                    replicas: db
                        .replicas
                        .into_iter()
                        .map(|r| {
                            (
                                ReplicaOptions {
                                    name: r.name,
                                    sync_interval: r.sync_interval,
                                    snapshot_interval: r.snapshot_interval,
                                    retention: r.retention,
                                    retention_check_interval: r.retention_check_interval,
                                    max_sync_wal_bytes: db.max_sync_wal_bytes,
                                    ..ReplicaOptions::default()
                                },
                                r.url,
                                r.ltx,
                            )
                        })
                        .collect(),
                };
                match spec {
                    Some(spec) => dirs.push(DirPlan {
                        template: plan,
                        spec,
                    }),
                    None => plans.push(plan),
                }
            }
            Ok((plans, dirs, settings))
        }
    }
}

/// Whether `path` holds a database to replicate: a file with SQLite's
/// header. An empty file just created is not one yet (the application may
/// still set `page_size` or `auto_vacuum` before its first write, which our
/// opening it first would defeat).
fn is_database(path: &Path) -> bool {
    use std::io::Read;
    let mut head = [0u8; 16];
    std::fs::File::open(path)
        .and_then(|mut f| f.read_exact(&mut head))
        .is_ok_and(|()| &head == b"SQLite format 3\0")
}

fn scheme_name(url: &str) -> String {
    url.split_once("://")
        .map_or("file", |(scheme, _)| scheme)
        .to_owned()
}

/// Opens a replica for writing: in `layout`, or the layout it holds, or for an
/// empty location `empty` (Litestream 0.3's, which Litestream 0.3 and 0.5
/// restore, unless a 0.5 config asks for LTX).
async fn open_replica(
    url: &str,
    layout: Option<AnyLayout>,
    empty: AnyLayout,
    meters: &replica::metered::Meters,
) -> Result<(ReplicaTarget, String), Exit> {
    let options = replica::OpenAnyOptions {
        layout,
        empty_layout: Some(empty),
    };
    match replica::open_any_metered(url, options, Some(meters)).await {
        Ok(replica::Replica::Generations(client)) => {
            let layout = client.layout().to_string();
            Ok((ReplicaTarget::Generations(client), layout))
        }
        Ok(replica::Replica::Ltx(client)) => {
            Ok((ReplicaTarget::Ltx(client), AnyLayout::Ltx.to_string()))
        }
        Err(e) => Err(Exit::Error(describe(&e))),
    }
}

/// Runs until SIGTERM or SIGINT (or, with `exec`, until its command exits),
/// then syncs one last time. Only invalid configuration is fatal at start:
/// each database waits for its file to appear and retries a failed start on
/// its own, never stopping the others.
pub(crate) async fn run(args: Args, layout: Option<AnyLayout>) -> Result<(), Exit> {
    let (plans, dirs, settings) = plans(&args)?;
    init_logs(args.log_format, &settings.logging);
    for warning in &settings.warnings {
        warn!("{warning}");
    }
    let exec = settings.exec.map(|cmd| parse_exec(&cmd)).transpose()?;
    // Replica URLs are checked before anything starts: a typo is fatal.
    for plan in plans.iter().chain(dirs.iter().map(|d| &d.template)) {
        for (_, url, _) in &plan.replicas {
            replica::check_location(url, layout)
                .await
                .map_err(|e| Exit::Error(format!("{}: {}", plan.path.display(), describe(&e))))?;
        }
    }
    // Each directory is scanned once before anything starts: one that
    // cannot be read, or (unwatched) holds no database, is fatal.
    let mut found = Vec::new();
    for d in &dirs {
        let scan = crate::dirs::scan(&d.template.path, &d.spec)
            .map_err(|e| Exit::Error(format!("scanning {}: {e}", d.template.path.display())))?;
        if scan.databases.is_empty() && !d.spec.watch {
            return Err(Exit::Error(format!(
                "no SQLite database in WAL mode in {} matches {:?} (add `watch: true` to wait for them)",
                d.template.path.display(),
                d.spec.pattern
            )));
        }
        found.push(scan);
    }
    // An address that cannot be served is fatal too.
    let listener = match &settings.addr {
        Some(addr) => Some(monitor::http::bind(addr).await.map_err(Exit::Error)?),
        None => None,
    };
    let board = Board::new();
    let limit = limits::raise_descriptor_limit();
    let budget = limits::Budget::new(limit);
    // Listening before anything starts: a signal during start-up is a stop.
    let mut signals = Signals::new()?;
    let fleet = Fleet::new(board.clone(), budget, layout);
    let listed: Vec<PathBuf> = plans.iter().map(|p| p.path.clone()).collect();
    let mut ready: Vec<_> = plans.into_iter().map(|plan| fleet.spawn(plan)).collect();
    let (stop_dirs, dirs_stopped) = tokio::sync::watch::channel(false);
    let mut watchers = Vec::new();
    for (d, scan) in dirs.into_iter().zip(found) {
        let mut logged = std::collections::BTreeSet::new();
        crate::dirs::log_skipped(&scan, &mut logged);
        for db in &scan.databases {
            if listed.contains(db) {
                continue;
            }
            match d.plan_for(db) {
                Ok(plan) => ready.push(fleet.spawn(plan)),
                Err(e) => warn!(db = %db.display(), error = %e, "directory replication skips it"),
            }
        }
        if d.spec.watch {
            watchers.push(tokio::spawn(watch_dir(
                d,
                fleet.clone(),
                listed.clone(),
                logged,
                dirs_stopped.clone(),
            )));
        }
    }
    info!(
        databases = fleet.paths().len(),
        descriptor_limit = limit,
        "starting"
    );
    if let Some(listener) = listener {
        monitor::http::serve(listener, board.clone());
    }
    if let Some(hb) = settings.heartbeat {
        monitor::http::heartbeat(board.clone(), hb.url, hb.interval);
    }
    let child_status = match exec {
        None => {
            signals.wait().await;
            None
        }
        Some(argv) => {
            // Once every database has started (or is waiting for its file);
            // a signal before then stops us without starting the command.
            let all_ready = async {
                for told in ready {
                    let _ = told.await;
                }
            };
            let started = tokio::select! {
                () = all_ready => true,
                name = signals.next() => {
                    info!(signal = name, "stopping before the exec command started: a final sync, then exit");
                    false
                }
            };
            let status = if started {
                Some(run_child(&argv, &mut signals).await)
            } else {
                None
            };
            // A second signal while the final sync hangs ends the process.
            signals.escape();
            status
        }
    };
    // No database is added or removed once stopping.
    let _ = stop_dirs.send(true);
    for w in watchers {
        let _ = w.await;
    }
    let failed = fleet.stop_all().await;
    if !failed.is_empty() {
        return Err(Exit::Error(failed.join("; ")));
    }
    match child_status {
        Some(code) if code != 0 => Err(Exit::Code(std::process::ExitCode::from(code))),
        _ => Ok(()),
    }
}

/// Follows a watched directory: databases that appear are started, those
/// that are gone are stopped (after a final sync); databases the config
/// lists on their own (`listed`) are left to their own entry.
async fn watch_dir(
    d: DirPlan,
    fleet: Fleet,
    listed: Vec<PathBuf>,
    mut logged: std::collections::BTreeSet<PathBuf>,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let (wake, mut woken) = tokio::sync::mpsc::unbounded_channel();
    let _watcher = crate::dirs::watch(&d.template.path, d.spec.recursive, wake);
    let mut ours: std::collections::BTreeSet<PathBuf> = fleet
        .paths()
        .into_iter()
        .filter(|p| p.starts_with(&d.template.path) && !listed.contains(p))
        .collect();
    loop {
        tokio::select! {
            () = crate::dirs::next_scan(&mut woken) => {}
            _ = stop.wait_for(|s| *s) => return,
        }
        let (dir, spec) = (d.template.path.clone(), d.spec.clone());
        let scan = match tokio::task::spawn_blocking(move || crate::dirs::scan(&dir, &spec)).await {
            Ok(Ok(scan)) => scan,
            Ok(Err(e)) => {
                warn!(dir = %d.template.path.display(), error = %e, "cannot scan the directory; trying again");
                continue;
            }
            Err(_) => continue,
        };
        if *stop.borrow() {
            return;
        }
        crate::dirs::log_skipped(&scan, &mut logged);
        for db in &scan.databases {
            if ours.contains(db) || listed.contains(db) || fleet.contains(db) {
                continue;
            }
            match d.plan_for(db) {
                Ok(plan) => {
                    info!(db = %db.display(), "a new database in the directory: replicating it");
                    drop(fleet.spawn(plan));
                    ours.insert(db.clone());
                }
                Err(e) => warn!(db = %db.display(), error = %e, "directory replication skips it"),
            }
        }
        // Gone: the file no longer exists (a database that merely stopped
        // matching, such as one switched out of WAL mode, keeps going).
        let gone: Vec<PathBuf> = ours.iter().filter(|p| !p.exists()).cloned().collect();
        for db in gone {
            fleet.remove(&db);
            ours.remove(&db);
        }
    }
}

/// `exec`'s command line split as a shell would (no shell runs it, as in
/// Litestream).
fn parse_exec(cmd: &str) -> Result<Vec<String>, Exit> {
    match shlex::split(cmd) {
        Some(argv) if !argv.is_empty() => Ok(argv),
        _ => Err(Exit::Error(format!(
            "exec: cannot split {cmd:?} into a command and its arguments (unbalanced quotes?)"
        ))),
    }
}

/// Runs the `exec` child: SIGINT and SIGTERM are passed on to it; its
/// exit status is returned (128 + the signal that ended it, as a shell
/// reports it).
async fn run_child(argv: &[String], signals: &mut Signals) -> u8 {
    let mut child = match tokio::process::Command::new(&argv[0])
        .args(&argv[1..])
        .spawn()
    {
        Ok(child) => child,
        Err(e) => {
            // As a shell reports a command it cannot run; replication still
            // stops with its final sync.
            error!(command = %argv[0], error = %e, "exec: cannot start the command");
            return 127;
        }
    };
    info!(command = %argv.join(" "), pid = child.id().unwrap_or(0), "exec: started");
    loop {
        tokio::select! {
            status = child.wait() => {
                use std::os::unix::process::ExitStatusExt;
                let code = match status {
                    Ok(status) => status
                        .code()
                        .map(|c| c.clamp(0, 255) as u8)
                        .or_else(|| status.signal().map(|s| (128 + s).clamp(0, 255) as u8))
                        .unwrap_or(1),
                    Err(e) => {
                        error!(command = %argv[0], error = %e, "exec: cannot wait for the command");
                        1
                    }
                };
                info!(status = code, "exec: the command exited; a final sync, then exit with its status");
                return code;
            }
            name = signals.next() => {
                let number = if name == "SIGTERM" { libc::SIGTERM } else { libc::SIGINT };
                if let Some(pid) = child.id() {
                    info!(signal = name, pid, "exec: passing the signal on to the command");
                    // SAFETY: signalling our own child, by the PID it has
                    // while we have not reaped it.
                    unsafe {
                        libc::kill(pid as libc::pid_t, number);
                    }
                }
            }
        }
    }
}

/// One database: waits for its file, starts (retrying with backoff), runs
/// until `stop`, then stops with a final sync. An error is what the exit
/// reports: a failed final sync, or why it never started.
pub(crate) async fn supervise(
    plan: Plan,
    layout: Option<AnyLayout>,
    mut stop: tokio::sync::watch::Receiver<bool>,
    ready: tokio::sync::oneshot::Sender<()>,
    (board, slot): (Board, usize),
    budget: limits::Budget,
) -> Result<(), String> {
    // Told once the first attempt is over (started, waiting, or failed).
    let mut ready = Some(ready);
    let mut tell = move || {
        if let Some(r) = ready.take() {
            let _ = r.send(());
        }
    };
    let poll = plan
        .options
        .monitor_interval
        .max(Duration::from_millis(100));
    let mut waiting = false;
    let mut failures = 0u32;
    let mut last_error: Option<String> = None;
    let now = std::time::SystemTime::now;
    loop {
        if *stop.borrow() {
            board.set(slot, State::Stopped);
            return last_error.map_or(Ok(()), |e| Err(format!("never replicated: {e}")));
        }
        let pause = if is_database(&plan.path) {
            board.set(slot, State::Starting { since: now() });
            let started = match budget.take(plan.replicas.len()) {
                Ok(taken) => start(&plan, layout, board.meters(), budget.descriptors())
                    .await
                    .map(|replicator| (replicator, taken)),
                Err(e) => Err(Exit::Error(e)),
            };
            match started {
                Ok((replicator, _taken)) => {
                    board.set(slot, State::Running(replicator.monitor()));
                    tell();
                    let _ = stop.wait_for(|s| *s).await;
                    let stopped = replicator.stop().await.map_err(|e| describe(&e));
                    board.set(slot, State::Stopped);
                    return stopped;
                }
                Err(e) => {
                    let mut e = match e {
                        Exit::Error(e) => e,
                        Exit::Code(code) => format!("exit status {code:?}"),
                    };
                    if let Some(hint) = limits::hint(&e) {
                        e = format!("{e} ({hint})");
                    }
                    failures += 1;
                    let retry = Duration::from_secs(1 << failures.min(5));
                    error!(db = %plan.path.display(), error = %e, retry_in = ?retry, "cannot start replicating; retrying (the other databases go on)");
                    board.set(
                        slot,
                        State::Failing {
                            error: e.clone(),
                            since: now(),
                        },
                    );
                    last_error = Some(e);
                    tell();
                    retry
                }
            }
        } else {
            if !waiting {
                warn!(db = %plan.path.display(), "the database does not exist yet (no file with a SQLite header); waiting for it to be created");
                waiting = true;
            }
            board.set(slot, State::Waiting { since: now() });
            tell();
            poll
        };
        tokio::select! {
            _ = tokio::time::sleep(pause) => {}
            _ = stop.wait_for(|s| *s) => {}
        }
    }
}

async fn start(
    plan: &Plan,
    layout: Option<AnyLayout>,
    meters: &replica::metered::Meters,
    descriptors: replica_sqlite::Descriptors,
) -> Result<Replicator, Exit> {
    let mut replicas = Vec::new();
    for (options, url, ltx) in &plan.replicas {
        let mut options = options.clone();
        // A Litestream 0.5 config writes an empty location in its layout.
        let empty = if ltx.is_some() {
            AnyLayout::Ltx
        } else {
            Layout::Litestream03.into()
        };
        let (client, layout) = open_replica(url, layout, empty, meters).await?;
        if let (ReplicaTarget::Ltx(_), Some(ltx)) = (&client, ltx) {
            options.snapshot_interval = Some(ltx.snapshot_interval);
            options.retention = ltx.retention;
            options.retention_check_interval = ltx.retention_check_interval;
            options.levels = ltx.levels.clone();
            options.l0_retention = ltx.l0_retention;
        }
        info!(db = %plan.path.display(), replica = %options.name, url = %redact(url), layout = %layout, "replica");
        replicas.push(Replica { options, client });
    }
    let options = DbOptions {
        descriptors: Some(descriptors),
        // Listed databases are released only while others wait for
        // descriptors (see DIR_RELEASE).
        release_when_idle: plan.options.release_when_idle.or(Some(Duration::MAX)),
        ..plan.options.clone()
    };
    let replicator = Replicator::start(&plan.path, options, replicas)
        .await
        .map_err(|e| Exit::Error(describe(&e)))?;
    info!(db = %plan.path.display(), generation = %replicator.generation(), "replicating");
    Ok(replicator)
}

/// A URL without its credentials, for logs.
fn redact(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut parsed) => {
            let pairs: Vec<(String, String)> = parsed
                .query_pairs()
                .map(|(k, v)| {
                    let secret = k.contains("secret") || k.contains("key") || k.contains("token");
                    (
                        k.into_owned(),
                        if secret { "***".into() } else { v.into_owned() },
                    )
                })
                .collect();
            if pairs.is_empty() {
                parsed.set_query(None);
            } else {
                parsed.query_pairs_mut().clear().extend_pairs(pairs);
            }
            let _ = parsed.set_password(None);
            parsed.to_string()
        }
        Err(_) => url.to_owned(),
    }
}

/// SIGTERM and SIGINT.
struct Signals {
    term: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
}

impl Signals {
    fn new() -> Result<Signals, Exit> {
        use tokio::signal::unix::{signal, SignalKind};
        Ok(Signals {
            term: signal(SignalKind::terminate())
                .map_err(|e| Exit::Error(format!("cannot listen for SIGTERM: {e}")))?,
            int: signal(SignalKind::interrupt())
                .map_err(|e| Exit::Error(format!("cannot listen for SIGINT: {e}")))?,
        })
    }

    /// The next SIGTERM or SIGINT, by name.
    async fn next(&mut self) -> &'static str {
        tokio::select! {
            _ = self.term.recv() => "SIGTERM",
            _ = self.int.recv() => "SIGINT",
        }
    }

    async fn wait(mut self) {
        let name = self.next().await;
        info!(signal = name, "stopping: a final sync, then exit");
        self.escape();
    }

    /// From now on, a signal ends the process at once (a final sync that
    /// hangs must not hold it).
    fn escape(mut self) {
        tokio::spawn(async move {
            tokio::select! {
                _ = self.term.recv() => {}
                _ = self.int.recv() => {}
            }
            warn!("second signal: exiting without waiting for the final sync");
            std::process::exit(1);
        });
    }
}

/// `replica snapshot DB URL`.
pub(crate) async fn snapshot(db: &Path, url: &str, layout: Option<Layout>) -> Result<(), Exit> {
    let options = replica::OpenOptions {
        layout,
        empty_layout: Some(Layout::Litestream03),
    };
    let client: Arc<dyn ReplicaClient> = replica::open_with(url, options)
        .await
        .map_err(|e| Exit::Error(describe(&e)))?;
    let info = replica_sqlite::snapshot_once(db, &*client)
        .await
        .map_err(|e| Exit::Error(describe(&e)))?;
    println!(
        "snapshot of {} written: generation {} index 0, {} bytes ({})",
        db.display(),
        info.generation,
        info.size,
        client.layout()
    );
    Ok(())
}
