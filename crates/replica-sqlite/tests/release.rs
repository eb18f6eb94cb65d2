//! Idle databases released (`DbOptions::release_when_idle`): what a
//! released database holds, how a write wakes it, and that nothing is
//! lost across releases, the application's own checkpoints, its last
//! connection closing, and snapshots due while released.
//!
//! The application runs in another process (Python's `sqlite3` module, or
//! the `sqlite3` shell), as it must: a release closes descriptors of the
//! database file, which would drop an in-process connection's locks.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use replica_core::{Layout, ReplicaClient};
use replica_file::{FileClient, FileStore};
use replica_sqlite::{
    restore, DbOptions, Replica, ReplicaOptions, Replicator, RestoreOptions, Status,
};

mod common;
use common::{create, rows};

/// An application process holding one connection, executing a script
/// (autocommit) per line and answering "ok".
struct App {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
}

const APP: &str = r#"
import sqlite3, sys
c = sqlite3.connect(sys.argv[1], isolation_level=None, timeout=10)
for line in sys.stdin:
    c.executescript(line)
    sys.stdout.write("ok\n")
    sys.stdout.flush()
"#;

impl App {
    fn start(db: &Path) -> App {
        let mut child = Command::new("python3")
            .args(["-c", APP])
            .arg(db)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("python3 runs the application");
        let stdin = child.stdin.take().unwrap();
        let stdout = BufReader::new(child.stdout.take().unwrap());
        App {
            child,
            stdin,
            stdout,
        }
    }

    fn exec(&mut self, sql: &str) {
        writeln!(self.stdin, "{sql}").unwrap();
        let mut answer = String::new();
        self.stdout.read_line(&mut answer).unwrap();
        assert_eq!(answer, "ok\n", "the application failed on {sql}");
    }

    fn insert(&mut self, from: i64, n: i64) {
        let values: Vec<String> = (from..from + n)
            .map(|id| {
                format!(
                    "({id}, 'item-{id}-{}', {id})",
                    "z".repeat((id % 30) as usize)
                )
            })
            .collect();
        self.exec(&format!(
            "BEGIN; INSERT INTO items (id, name, qty) VALUES {}; COMMIT;",
            values.join(", ")
        ));
    }

    /// Closes its connection (the last one, while released: SQLite then
    /// checkpoints and deletes the WAL).
    fn close(mut self) {
        drop(self.stdin);
        assert!(self.child.wait().unwrap().success());
        drop(self.stdout);
    }
}

fn options(release: Duration) -> DbOptions {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
    DbOptions {
        monitor_interval: Duration::from_millis(50),
        checkpoint_interval: Duration::from_secs(60),
        release_when_idle: Some(release),
        ..DbOptions::default()
    }
}

fn replica(name: &str, client: Arc<dyn ReplicaClient>, snapshots: Option<Duration>) -> Replica {
    Replica {
        options: ReplicaOptions {
            name: name.into(),
            sync_interval: Duration::from_millis(50),
            snapshot_interval: snapshots,
            ..ReplicaOptions::default()
        },
        client: client.into(),
    }
}

fn file_client(root: &Path) -> Arc<dyn ReplicaClient> {
    Arc::new(FileClient::with_layout(
        FileStore::new(root),
        Layout::Litestream03,
    ))
}

/// A database with the items table, no connection left open here.
fn database(dir: &Path) -> PathBuf {
    let db = dir.join("app.db");
    drop(create(&db));
    db
}

/// Waits until `what` holds of the replicator's status.
async fn until(replicator: &Replicator, what: &str, check: impl Fn(&Status) -> bool) -> Status {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let status = replicator.status();
        if check(&status) {
            return status;
        }
        assert!(Instant::now() < deadline, "never {what}: {status:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// This process's descriptors open on files whose path starts with `prefix`.
fn descriptors_on(prefix: &Path) -> Vec<PathBuf> {
    std::fs::read_dir("/proc/self/fd")
        .unwrap()
        .filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
        .filter(|target| target.starts_with(prefix))
        .collect()
}

async fn restored(client: &dyn ReplicaClient, out: &Path) -> Vec<(i64, String, i64)> {
    let options = RestoreOptions {
        integrity_check: true,
        ..RestoreOptions::default()
    };
    restore(client, out, &options).await.unwrap();
    rows(out)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_released_database_holds_only_its_lock_and_a_write_wakes_it_in_the_same_generation() {
    let dir = tempfile::tempdir().unwrap();
    let db = database(dir.path()).canonicalize().unwrap();
    let client = file_client(&dir.path().join("replica"));
    let mut app = App::start(&db);
    app.insert(0, 50);
    let replicator = Replicator::start(
        &db,
        options(Duration::from_millis(200)),
        vec![replica("r", client.clone(), None)],
    )
    .await
    .unwrap();
    let first = until(&replicator, "released", |s| s.released).await;
    // Its one checkpoint (once idle) restarted the WAL after the replica
    // had shipped everything: the shadow needed no fsync.
    let checkpoints: u64 = first.checkpoints.iter().map(|(_, w)| w.count).sum();
    assert!(
        checkpoints >= 1 && first.shadow.0 >= 1 && first.shadow_syncs == 0,
        "{first:#?}"
    );
    let shadow = dir.path().join(".app.db-replica");
    let held: Vec<_> = descriptors_on(dir.path());
    assert_eq!(
        held,
        vec![shadow.canonicalize().unwrap().join("lock")],
        "a released database holds its shadow lock and nothing else"
    );
    // A write wakes it: shipped, then released again, same generation.
    app.insert(50, 50);
    let woken = Instant::now();
    until(&replicator, "woken", |s| !s.released).await;
    let wake = woken.elapsed();
    let second = until(&replicator, "released again", |s| {
        s.released && s.releases >= 2
    })
    .await;
    assert_eq!(second.generation, first.generation, "continuity kept");
    assert!(second.wal_bytes > first.wal_bytes);
    assert!(
        wake < Duration::from_secs(2),
        "an event wakes it, not the {:?} safety poll: {wake:?}",
        replica_sqlite::replicate::RELEASED_POLL
    );
    app.insert(100, 10);
    app.close();
    replicator.stop().await.unwrap();
    assert_eq!(
        restored(client.as_ref(), &dir.path().join("out.db")).await,
        rows(&db)
    );
    assert_eq!(rows(&db).len(), 110);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_applications_checkpoints_and_last_close_while_released_cost_a_generation_not_a_row() {
    let dir = tempfile::tempdir().unwrap();
    let db = database(dir.path());
    let client = file_client(&dir.path().join("replica"));
    let replicator = Replicator::start(
        &db,
        options(Duration::from_millis(100)),
        vec![replica("r", client.clone(), None)],
    )
    .await
    .unwrap();
    let mut next = 0;
    let mut generations = std::collections::BTreeSet::new();
    for spell in 0..3 {
        let status = until(&replicator, "released", |s| {
            s.released && s.releases > spell
        })
        .await;
        generations.insert(status.generation.clone());
        // While released: writes, a checkpoint that restarts the WAL, more
        // writes after the restart, and the last connection closing.
        let mut app = App::start(&db);
        app.insert(next, 30);
        app.exec("PRAGMA wal_checkpoint(TRUNCATE);");
        app.insert(next + 30, 30);
        app.close();
        next += 60;
    }
    let status = until(&replicator, "released", |s| s.released && s.releases > 3).await;
    generations.insert(status.generation.clone());
    replicator.stop().await.unwrap();
    assert!(
        generations.len() > 1,
        "the WAL restarted by the application cannot be continued: {generations:?}"
    );
    let source = rows(&db);
    assert_eq!(source.len(), 180);
    assert_eq!(
        restored(client.as_ref(), &dir.path().join("out.db")).await,
        source
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_snapshot_due_while_released_wakes_the_database_and_is_exact() {
    let dir = tempfile::tempdir().unwrap();
    let db = database(dir.path());
    let client = file_client(&dir.path().join("replica"));
    let mut app = App::start(&db);
    app.insert(0, 40);
    let replicator = Replicator::start(
        &db,
        options(Duration::from_millis(100)),
        vec![replica(
            "r",
            client.clone(),
            Some(Duration::from_millis(2500)),
        )],
    )
    .await
    .unwrap();
    let status = until(&replicator, "released", |s| s.released).await;
    let g = status.generation.clone();
    let before = client.snapshots(&g).await.unwrap().len();
    // No write: the snapshot interval alone wakes it.
    until(&replicator, "released after a snapshot", |s| {
        s.released && s.releases >= 2
    })
    .await;
    let after = client.snapshots(&g).await.unwrap();
    assert!(after.len() > before, "a snapshot was written: {after:?}");
    app.close();
    replicator.stop().await.unwrap();
    // The newest snapshot alone restores the rows.
    let out = dir.path().join("out.db");
    assert_eq!(restored(client.as_ref(), &out).await, rows(&db));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn write_spells_with_application_checkpoints_between_releases_lose_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let db = database(dir.path());
    let client = file_client(&dir.path().join("replica"));
    let ltx = replica_core::ltx::LtxClient::new(Arc::new(FileStore::new(dir.path().join("ltx"))));
    let ltx_options = ReplicaOptions {
        name: "ltx".into(),
        sync_interval: Duration::from_millis(50),
        snapshot_interval: Some(Duration::from_millis(1500)),
        levels: vec![Duration::from_millis(300)],
        ..ReplicaOptions::default()
    };
    let replicator = Replicator::start(
        &db,
        options(Duration::from_millis(100)),
        vec![
            replica("r", client.clone(), None),
            Replica {
                options: ltx_options,
                client: ltx.clone().into(),
            },
        ],
    )
    .await
    .unwrap();
    let mut app = App::start(&db);
    let mut next = 0;
    for spell in 0..4u64 {
        until(&replicator, "released", |s| {
            s.released && s.releases > spell
        })
        .await;
        for _ in 0..5 {
            app.insert(next, 20);
            next += 20;
            tokio::time::sleep(Duration::from_millis(30)).await;
        }
        if spell % 2 == 1 {
            app.exec("PRAGMA wal_checkpoint(PASSIVE);");
        }
    }
    until(&replicator, "released", |s| s.released && s.releases > 4).await;
    app.close();
    replicator.stop().await.unwrap();
    let source = rows(&db);
    assert_eq!(source.len(), 400);
    assert_eq!(
        restored(client.as_ref(), &dir.path().join("out.db")).await,
        source
    );
    let out = dir.path().join("out-ltx.db");
    let options = replica_sqlite::LtxRestoreOptions {
        integrity_check: true,
        ..replica_sqlite::LtxRestoreOptions::default()
    };
    replica_sqlite::restore_ltx(&ltx, &out, &options)
        .await
        .unwrap();
    assert_eq!(rows(&out), source, "the LTX replica restores too");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_wakes_a_released_database_by_its_file_event_not_a_poll() {
    let dir = tempfile::tempdir().unwrap();
    let db = database(dir.path());
    let client = file_client(&dir.path().join("replica"));
    let mut app = App::start(&db);
    app.insert(0, 10);
    // Polls (the monitor interval without events, RELEASED_POLL with them)
    // would take seconds; the event takes milliseconds.
    let slow = DbOptions {
        monitor_interval: Duration::from_secs(3),
        ..options(Duration::from_millis(100))
    };
    let replicator = Replicator::start(&db, slow, vec![replica("r", client.clone(), None)])
        .await
        .unwrap();
    until(&replicator, "released", |s| s.released).await;
    // Just after a poll would have looked, if there were one.
    tokio::time::sleep(Duration::from_millis(100)).await;
    app.insert(10, 10);
    let written = Instant::now();
    until(&replicator, "woken", |s| !s.released).await;
    let wake = written.elapsed();
    assert!(wake < Duration::from_secs(1), "woken after {wake:?}");
    app.close();
    replicator.stop().await.unwrap();
    assert_eq!(
        restored(client.as_ref(), &dir.path().join("out.db")).await,
        rows(&db)
    );
}

/// Two databases sharing a budget that lets one be awake: while one that
/// never releases holds it, a write wakes the released other, which waits
/// (its status says since when, its WAL keeps the transactions) and ships
/// them once the budget frees.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_woken_database_waiting_for_descriptors_says_so_and_ships_once_they_free() {
    let budget = replica_sqlite::Descriptors::new(replica_sqlite::awake_cost(1));
    let with_budget = |release| DbOptions {
        release_when_idle: release,
        descriptors: Some(budget.clone()),
        ..options(Duration::from_millis(100))
    };
    let (a_dir, b_dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (a, b) = (database(a_dir.path()), database(b_dir.path()));
    let b_client = file_client(&b_dir.path().join("replica"));
    let mut app = App::start(&b);
    app.insert(0, 10);
    let b_rep = Replicator::start(
        &b,
        with_budget(Some(Duration::from_millis(100))),
        vec![replica("r", b_client.clone(), None)],
    )
    .await
    .unwrap();
    until(&b_rep, "released", |s| s.released).await;
    assert_eq!(budget.available(), budget.total(), "released: none held");
    let a_client = file_client(&a_dir.path().join("replica"));
    let a_rep = Replicator::start(&a, with_budget(None), vec![replica("r", a_client, None)])
        .await
        .unwrap();
    assert_eq!(budget.available(), 0, "the awake one holds them all");
    app.insert(10, 10);
    let waiting = until(&b_rep, "waiting for descriptors", |s| {
        s.waiting_for_descriptors.is_some()
    })
    .await;
    assert!(waiting.released, "{waiting:?}");
    let shipped = waiting.wal_bytes;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let still = b_rep.status();
    assert!(
        still.waiting_for_descriptors == waiting.waiting_for_descriptors
            && still.wal_bytes == shipped,
        "nothing copied while it waits, and the wait keeps its start: {still:?}"
    );
    a_rep.stop().await.unwrap();
    let woken = until(&b_rep, "woken and released again", |s| {
        s.waiting_for_descriptors.is_none() && s.released && s.releases >= 2
    })
    .await;
    assert!(woken.wal_bytes > shipped, "{woken:?}");
    app.close();
    b_rep.stop().await.unwrap();
    assert_eq!(
        restored(b_client.as_ref(), &b_dir.path().join("out.db")).await,
        rows(&b)
    );
    assert_eq!(rows(&b).len(), 20);
}
