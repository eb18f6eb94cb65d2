//! The replicator library against a live SQLite database: restores equal
//! the source, across our checkpoints, the application's own checkpoints,
//! a replaced database file, several replicas, and retention.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use replica_core::{Layout, ReplicaClient};
use replica_file::{FileClient, FileStore};
use replica_sqlite::{restore, DbOptions, Replica, ReplicaOptions, Replicator, RestoreOptions};
use rusqlite::Connection;

mod common;
use common::{create, rows, write_round};

/// A small transaction touching a few pages: inserts, an update and a
/// delete by key, as an application's.
fn light_round(conn: &mut Connection, round: i64) {
    let tx = conn.transaction().unwrap();
    for i in 0..10 {
        let id = round * 10 + i;
        tx.execute(
            "INSERT INTO items (id, name, qty) VALUES (?1, ?2, ?3)",
            rusqlite::params![
                id,
                format!("item-{id}-{}", "y".repeat((id % 40) as usize)),
                id
            ],
        )
        .unwrap();
    }
    tx.execute(
        "UPDATE items SET qty = qty + 1 WHERE id = ?1",
        [round * 10 - 5],
    )
    .unwrap();
    tx.execute("DELETE FROM items WHERE id = ?1", [round * 10 - 17])
        .unwrap();
    tx.commit().unwrap();
}

/// Starts replicating `db` into `client` as replica "r".
async fn start_one(
    db: &Path,
    options: DbOptions,
    client: &Arc<dyn ReplicaClient>,
) -> Result<Replicator, replica_sqlite::ReplicateError> {
    Replicator::start(
        db,
        options,
        vec![Replica {
            options: quick_replica("r"),
            client: client.clone().into(),
        }],
    )
    .await
}

fn logs() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
}

fn quick_db() -> DbOptions {
    logs();
    DbOptions {
        monitor_interval: Duration::from_millis(20),
        checkpoint_interval: Duration::from_millis(300),
        min_checkpoint_page_count: 40,
        max_checkpoint_page_count: 400,
        ..DbOptions::default()
    }
}

fn quick_replica(name: &str) -> ReplicaOptions {
    ReplicaOptions {
        name: name.into(),
        sync_interval: Duration::from_millis(20),
        ..ReplicaOptions::default()
    }
}

fn file_replica(dir: &Path, name: &str, layout: Layout) -> (Arc<dyn ReplicaClient>, PathBuf) {
    let root = dir.join(name);
    (
        Arc::new(FileClient::with_layout(FileStore::new(&root), layout)),
        root,
    )
}

/// The WAL indexes generation `g` of `client` holds segments at.
async fn wal_indexes(
    client: &dyn ReplicaClient,
    g: &replica_core::Generation,
) -> std::collections::BTreeSet<u64> {
    let segments = client
        .wal_segments(g)
        .await
        .unwrap()
        .collect_all()
        .await
        .unwrap();
    segments.iter().map(|s| s.index).collect()
}

async fn restored(client: &dyn ReplicaClient, dir: &Path, name: &str) -> Vec<(i64, String, i64)> {
    let out = dir.join(name);
    let options = RestoreOptions {
        integrity_check: true,
        ..RestoreOptions::default()
    };
    restore(client, &out, &options).await.unwrap();
    rows(&out)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_live_database_restores_to_its_rows_from_every_replica() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("app.db");
    let mut conn = create(&db);
    let (flat, _) = file_replica(dir.path(), "flat", Layout::Litestream03);
    let (nested, _) = file_replica(dir.path(), "nested", Layout::Litestream04);
    let replicator = Replicator::start(
        &db,
        quick_db(),
        vec![
            Replica {
                options: quick_replica("flat"),
                client: flat.clone().into(),
            },
            Replica {
                options: quick_replica("nested"),
                client: nested.clone().into(),
            },
        ],
    )
    .await
    .unwrap();
    let first = replicator.generation();
    for round in 0..150 {
        write_round(&mut conn, round);
        if round % 10 == 0 {
            tokio::time::sleep(Duration::from_millis(30)).await;
        }
    }
    replicator.stop().await.unwrap();
    let source = rows(&db);
    assert!(source.len() > 1000, "{} rows", source.len());
    assert_eq!(restored(&*flat, dir.path(), "flat.db").await, source);
    assert_eq!(restored(&*nested, dir.path(), "nested.db").await, source);
    // One generation, several WAL indexes (our checkpoints restarted the WAL).
    assert_eq!(flat.generations().await.unwrap(), vec![first.clone()]);
    let indexes = wal_indexes(&*flat, &first).await;
    assert!(indexes.len() >= 3, "indexes {indexes:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_continues_the_generation_and_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("app.db");
    let mut conn = create(&db);
    let (client, _) = file_replica(dir.path(), "r", Layout::Litestream03);
    let start = || start_one(&db, quick_db(), &client);
    let replicator = start().await.unwrap();
    let g = replicator.generation();
    for round in 0..40 {
        write_round(&mut conn, round);
    }
    replicator.stop().await.unwrap();
    // Written while nothing replicates.
    for round in 40..60 {
        write_round(&mut conn, round);
    }
    let replicator = start().await.unwrap();
    assert_eq!(replicator.generation(), g, "the same generation continues");
    for round in 60..80 {
        write_round(&mut conn, round);
    }
    replicator.stop().await.unwrap();
    assert_eq!(restored(&*client, dir.path(), "out.db").await, rows(&db));
    assert_eq!(client.generations().await.unwrap(), vec![g]);
}

/// The shadow is not synced every round: its newest frames may live in the
/// page cache only, which a reboot loses (and the WAL's own unsynced tail
/// with it). A shadow written under another boot starts a new generation;
/// a clean stop syncs it, and then it continues.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shadow_written_before_a_reboot_starts_a_new_generation() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("app.db");
    let mut conn = create(&db);
    let (client, _) = file_replica(dir.path(), "r", Layout::Litestream03);
    let start = || start_one(&db, quick_db(), &client);
    let boot_file = dir.path().join(".app.db-replica/boot");
    let boot = std::fs::read_to_string("/proc/sys/kernel/random/boot_id").unwrap();
    let replicator = start().await.unwrap();
    let g = replicator.generation();
    assert_eq!(
        std::fs::read_to_string(&boot_file).unwrap(),
        boot.trim(),
        "while replicating, the shadow names this boot"
    );
    for round in 0..20 {
        write_round(&mut conn, round);
    }
    replicator.stop().await.unwrap();
    assert!(!boot_file.exists(), "a clean stop syncs the shadow");
    let replicator = start().await.unwrap();
    assert_eq!(replicator.generation(), g, "a synced shadow continues");
    for round in 20..40 {
        write_round(&mut conn, round);
    }
    replicator.stop().await.unwrap();
    // As a kill before a reboot leaves it: the boot file of another boot.
    std::fs::write(&boot_file, "00000000-0000-0000-0000-000000000000").unwrap();
    let replicator = start().await.unwrap();
    assert_ne!(
        replicator.generation(),
        g,
        "after a reboot: a new generation"
    );
    for round in 40..50 {
        write_round(&mut conn, round);
    }
    replicator.stop().await.unwrap();
    assert_eq!(restored(&*client, dir.path(), "out.db").await, rows(&db));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_applications_own_truncate_checkpoints_never_corrupt_the_replica() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("app.db");
    let mut conn = create(&db);
    let (client, _) = file_replica(dir.path(), "r", Layout::Litestream03);
    let replicator = start_one(&db, quick_db(), &client).await.unwrap();
    let mut busy_seen = 0;
    for round in 0..120 {
        write_round(&mut conn, round);
        if round % 15 == 7 {
            conn.busy_timeout(Duration::from_millis(100)).unwrap();
            // Busy while our read transaction is held; may succeed in the
            // moment our own checkpoint lets go. Either way: no loss.
            let (busy, _, _): (i64, i64, i64) = conn
                .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |r| {
                    Ok((r.get(0)?, r.get(1)?, r.get(2)?))
                })
                .unwrap();
            busy_seen += busy;
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }
    replicator.stop().await.unwrap();
    assert!(
        busy_seen > 0,
        "our read transaction keeps TRUNCATE from resetting the WAL"
    );
    assert_eq!(restored(&*client, dir.path(), "out.db").await, rows(&db));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wal_truncated_while_not_replicating_starts_a_new_generation() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("app.db");
    let mut conn = create(&db);
    let (client, _) = file_replica(dir.path(), "r", Layout::Litestream03);
    let start = || start_one(&db, quick_db(), &client);
    let replicator = start().await.unwrap();
    let first = replicator.generation();
    for round in 0..30 {
        write_round(&mut conn, round);
    }
    replicator.stop().await.unwrap();
    for round in 30..40 {
        write_round(&mut conn, round);
    }
    let (busy, _, _): (i64, i64, i64) = conn
        .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?))
        })
        .unwrap();
    assert_eq!(busy, 0, "nothing else holds the WAL");
    for round in 40..50 {
        write_round(&mut conn, round);
    }
    let replicator = start().await.unwrap();
    assert_ne!(
        replicator.generation(),
        first,
        "frames may be gone: a new generation"
    );
    replicator.stop().await.unwrap();
    assert_eq!(restored(&*client, dir.path(), "out.db").await, rows(&db));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replaced_database_file_starts_a_new_generation() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("app.db");
    let mut conn = create(&db);
    let (client, _) = file_replica(dir.path(), "r", Layout::Litestream03);
    let replicator = start_one(&db, quick_db(), &client).await.unwrap();
    let first = replicator.generation();
    for round in 0..20 {
        write_round(&mut conn, round);
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    drop(conn);
    // Another database moved over the path (as a deploy or a restore does).
    let other = dir.path().join("other.db");
    let mut other_conn = create(&other);
    for round in 100..110 {
        write_round(&mut other_conn, round);
    }
    other_conn
        .execute_batch("PRAGMA wal_checkpoint(TRUNCATE); PRAGMA journal_mode = delete;")
        .unwrap();
    drop(other_conn);
    // The safe way to replace a database: its -wal and -shm go with it.
    std::fs::rename(&other, &db).unwrap();
    for suffix in ["-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", db.display()));
    }
    let mut conn = create(&db);
    for round in 110..120 {
        write_round(&mut conn, round);
    }
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while replicator.generation() == first {
        assert!(std::time::Instant::now() < deadline, "no new generation");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    replicator.stop().await.unwrap();
    let source = rows(&db);
    assert!(
        source.iter().all(|r| r.0 >= 2000),
        "only the new file's rows"
    );
    assert_eq!(restored(&*client, dir.path(), "out.db").await, source);
    assert_eq!(client.generations().await.unwrap().len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_snapshot_alone_holds_every_transaction_the_wal_held() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("app.db");
    let mut conn = create(&db);
    conn.pragma_update(None, "wal_autocheckpoint", 0).unwrap();
    // Everything below is in the WAL only, none of it checkpointed.
    for round in 0..30 {
        write_round(&mut conn, round);
    }
    let (client, _) = file_replica(dir.path(), "r", Layout::Litestream03);
    let options = DbOptions {
        min_checkpoint_page_count: 100_000,
        max_checkpoint_page_count: 100_000,
        checkpoint_interval: Duration::from_secs(3600),
        ..quick_db()
    };
    let replicator = Replicator::start(
        &db,
        options,
        vec![Replica {
            options: quick_replica("r"),
            client: client.clone().into(),
        }],
    )
    .await
    .unwrap();
    let g = replicator.generation();
    replicator.stop().await.unwrap();
    // Drop the WAL segments: the snapshot must stand on its own (as after a
    // crash between a new generation's snapshot and its first segment).
    let segments = client
        .wal_segments(&g)
        .await
        .unwrap()
        .collect_all()
        .await
        .unwrap();
    assert!(!segments.is_empty());
    let positions: Vec<_> = segments
        .iter()
        .map(|s| replica_core::Pos::new(g.clone(), s.index, s.offset).unwrap())
        .collect();
    client.delete_wal_segments(&positions).await.unwrap();
    assert_eq!(restored(&*client, dir.path(), "out.db").await, rows(&db));
}

async fn replicate_with_retention(
    grace: Duration,
) -> (
    Arc<dyn ReplicaClient>,
    tempfile::TempDir,
    Vec<(i64, String, i64)>,
) {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("app.db");
    let mut conn = create(&db);
    let (client, _) = file_replica(dir.path(), "r", Layout::Litestream03);
    let options = ReplicaOptions {
        snapshot_interval: Some(Duration::from_millis(150)),
        retention: Duration::from_millis(400),
        retention_check_interval: Duration::from_millis(50),
        restore_grace: grace,
        ..quick_replica("r")
    };
    let replicator = Replicator::start(
        &db,
        quick_db(),
        vec![Replica {
            options,
            client: client.clone().into(),
        }],
    )
    .await
    .unwrap();
    for round in 0..100 {
        write_round(&mut conn, round);
        tokio::time::sleep(Duration::from_millis(15)).await;
    }
    replicator.stop().await.unwrap();
    let source = rows(&db);
    (client, dir, source)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_deletes_what_is_older_than_the_window_and_keeps_a_restorable_replica() {
    let (client, dir, source) = replicate_with_retention(Duration::ZERO).await;
    let g = client.generations().await.unwrap().pop().unwrap();
    let snapshots = client.snapshots(&g).await.unwrap();
    let floor = snapshots.iter().map(|s| s.index).min().unwrap();
    assert!(floor > 0, "old snapshots were deleted: {snapshots:?}");
    let segments = client
        .wal_segments(&g)
        .await
        .unwrap()
        .collect_all()
        .await
        .unwrap();
    assert!(
        segments.iter().all(|s| s.index >= floor),
        "no WAL before the oldest kept snapshot"
    );
    assert!(
        segments.iter().any(|s| s.index >= floor),
        "WAL after it is kept"
    );
    assert_eq!(restored(&*client, dir.path(), "out.db").await, source);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_never_deletes_what_a_restore_started_within_the_grace_could_need() {
    // Same run, but a restore may have started at any moment of it: nothing
    // it could have chosen is deleted, though it is outside the window.
    let (client, dir, source) = replicate_with_retention(Duration::from_secs(3600)).await;
    let g = client.generations().await.unwrap().pop().unwrap();
    let snapshots = client.snapshots(&g).await.unwrap();
    assert!(
        snapshots.len() > 3,
        "several snapshots were written: {snapshots:?}"
    );
    assert_eq!(snapshots.iter().map(|s| s.index).min(), Some(0));
    let segments = client
        .wal_segments(&g)
        .await
        .unwrap()
        .collect_all()
        .await
        .unwrap();
    assert!(
        segments.iter().any(|s| s.index == 0),
        "the first index is kept"
    );
    assert_eq!(restored(&*client, dir.path(), "out.db").await, source);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deleted_database_is_waited_for_never_recreated_empty() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("app.db");
    let mut conn = create(&db);
    let (client, _) = file_replica(dir.path(), "r", Layout::Litestream03);
    let replicator = start_one(&db, quick_db(), &client).await.unwrap();
    let g = replicator.generation();
    for round in 0..20 {
        write_round(&mut conn, round);
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let before = rows(&db);
    drop(conn);
    // Moved away during maintenance.
    std::fs::rename(&db, dir.path().join("moved.db")).unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!db.exists(), "the replicator recreated the database");
    assert_eq!(
        replicator.generation(),
        g,
        "no new generation for a missing file"
    );
    replicator.stop().await.unwrap();
    assert_eq!(client.generations().await.unwrap(), vec![g]);
    assert_eq!(restored(&*client, dir.path(), "out.db").await, before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_replicator_of_the_same_database_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("app.db");
    let _conn = create(&db);
    let (client, _) = file_replica(dir.path(), "r", Layout::Litestream03);
    let replica = || Replica {
        options: quick_replica("r"),
        client: client.clone().into(),
    };
    let first = Replicator::start(&db, quick_db(), vec![replica()])
        .await
        .unwrap();
    let second = Replicator::start(&db, quick_db(), vec![replica()]).await;
    let err = second.expect_err("a second replicator must not share the shadow WAL");
    assert!(
        err.to_string().contains("another replicator is running"),
        "{err}"
    );
    first.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_writers_readers_and_app_checkpoints_lose_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("app.db");
    drop(create(&db));
    let (client, _) = file_replica(dir.path(), "r", Layout::Litestream03);
    let replicator = start_one(
        &db,
        DbOptions {
            min_checkpoint_page_count: 30,
            max_checkpoint_page_count: 120,
            ..quick_db()
        },
        &client,
    )
    .await
    .unwrap();
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut threads = Vec::new();
    for writer in 0..3i64 {
        let (db, stop) = (db.clone(), stop.clone());
        threads.push(std::thread::spawn(move || {
            let mut conn = Connection::open(&db).unwrap();
            conn.busy_timeout(Duration::from_secs(10)).unwrap();
            // The application checkpoints on its own, often.
            conn.pragma_update(None, "wal_autocheckpoint", 25).unwrap();
            let mut round = writer * 1_000_000;
            while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                light_round(&mut conn, round);
                round += 1;
                std::thread::sleep(Duration::from_millis(1));
            }
        }));
    }
    {
        let (db, stop) = (db.clone(), stop.clone());
        threads.push(std::thread::spawn(move || {
            // Readers that hold snapshots across checkpoints.
            let conn = Connection::open(&db).unwrap();
            conn.busy_timeout(Duration::from_secs(10)).unwrap();
            while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                conn.execute_batch("BEGIN; SELECT COUNT(*) FROM items;")
                    .unwrap();
                std::thread::sleep(Duration::from_millis(7));
                conn.execute_batch("COMMIT").unwrap();
            }
        }));
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    for t in threads {
        t.join().unwrap();
    }
    replicator.stop().await.unwrap();
    let source = rows(&db);
    assert!(source.len() > 1000, "{} rows", source.len());
    assert_eq!(restored(&*client, dir.path(), "out.db").await, source);
    let g = client.generations().await.unwrap().pop().unwrap();
    let segments = client
        .wal_segments(&g)
        .await
        .unwrap()
        .collect_all()
        .await
        .unwrap();
    let indexes: std::collections::BTreeSet<u64> = segments.iter().map(|s| s.index).collect();
    assert!(
        indexes.len() >= 3,
        "checkpoints restarted the WAL under load: {indexes:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wal_restarted_while_not_replicating_starts_a_new_generation() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("app.db");
    let mut conn = create(&db);
    conn.pragma_update(None, "wal_autocheckpoint", 0).unwrap();
    let (client, _) = file_replica(dir.path(), "r", Layout::Litestream03);
    let start = || {
        start_one(
            &db,
            DbOptions {
                min_checkpoint_page_count: 100_000,
                max_checkpoint_page_count: 100_000,
                checkpoint_interval: Duration::from_secs(3600),
                ..quick_db()
            },
            &client,
        )
    };
    let replicator = start().await.unwrap();
    let g = replicator.generation();
    for round in 0..30 {
        light_round(&mut conn, round);
    }
    replicator.stop().await.unwrap();
    // While nothing replicates: more transactions at the old WAL's tail,
    // then the application's own RESTART checkpoint and one small write,
    // which starts a new WAL.
    for round in 30..60 {
        light_round(&mut conn, round);
    }
    let (busy, _, _): (i64, i64, i64) = conn
        .query_row("PRAGMA wal_checkpoint(RESTART)", [], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?))
        })
        .unwrap();
    assert_eq!(busy, 0);
    conn.execute("UPDATE items SET qty = qty + 1 WHERE id = 3", [])
        .unwrap();
    // Whether the old WAL's last frames survived cannot be proved (SQLite
    // may truncate the file when it restarts): a new generation.
    let replicator = start().await.unwrap();
    assert_ne!(replicator.generation(), g);
    for round in 60..70 {
        light_round(&mut conn, round);
    }
    replicator.stop().await.unwrap();
    assert_eq!(client.generations().await.unwrap().len(), 2);
    assert_eq!(restored(&*client, dir.path(), "out.db").await, rows(&db));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_torn_shadow_append_is_cut_back_and_the_generation_continues() {
    use std::io::Write;
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("app.db");
    let mut conn = create(&db);
    let (client, _) = file_replica(dir.path(), "r", Layout::Litestream03);
    let replicator = start_one(&db, quick_db(), &client).await.unwrap();
    let g = replicator.generation();
    for round in 0..10 {
        light_round(&mut conn, round);
    }
    replicator.stop().await.unwrap();
    // As a kill in the middle of an append leaves it: a frame and a half of
    // bytes that are no valid continuation.
    let wal_dir = dir
        .path()
        .join(".app.db-replica/generations")
        .join(g.as_str())
        .join("wal");
    let newest = std::fs::read_dir(&wal_dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .max()
        .unwrap();
    let mut shadow = std::fs::OpenOptions::new()
        .append(true)
        .open(&newest)
        .unwrap();
    shadow.write_all(&vec![0xa5; 4096 + 24 + 2000]).unwrap();
    drop(shadow);
    for round in 10..20 {
        light_round(&mut conn, round);
    }
    let replicator = start_one(&db, quick_db(), &client).await.unwrap();
    assert_eq!(
        replicator.generation(),
        g,
        "the shadow is cut back, not abandoned"
    );
    replicator.stop().await.unwrap();
    assert_eq!(client.generations().await.unwrap(), vec![g]);
    assert_eq!(restored(&*client, dir.path(), "out.db").await, rows(&db));
}

/// A restart publishes the new index quietly (the replica ships it with
/// the next round's view, in one round of its own): when nothing comes
/// after it, the next round still wakes the replica, which ships the new
/// index's first frame and is at the end.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_index_a_restart_began_is_shipped_even_when_nothing_follows() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("app.db");
    let mut conn = create(&db);
    let (client, _) = file_replica(dir.path(), "r", Layout::Litestream03);
    let replicator = start_one(&db, quick_db(), &client).await.unwrap();
    // More than `min_checkpoint_page_count` at once, then idle.
    for round in 0..15 {
        write_round(&mut conn, round);
    }
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        let status = replicator.status();
        let pos = status.replicas[0].pos.as_ref();
        let at_end = pos.is_some_and(|p| (p.index, p.offset) == status.shadow);
        if status.shadow.0 >= 1 && at_end {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{status:#?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    replicator.stop().await.unwrap();
    assert_eq!(restored(&*client, dir.path(), "out.db").await, rows(&db));
}

/// No checkpoints: the WAL only grows, the database file stays.
fn no_checkpoints() -> DbOptions {
    DbOptions {
        checkpoint_interval: Duration::ZERO,
        min_checkpoint_page_count: 1_000_000,
        max_checkpoint_page_count: 0,
        ..quick_db()
    }
}

/// Closes the application's last connection without a checkpoint and
/// drops the WAL index, as a power loss leaves them: the next connection
/// recovers the WAL from its frames.
fn close_keeping_the_wal(conn: Connection) {
    conn.set_db_config(
        rusqlite::config::DbConfig::SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE,
        true,
    )
    .unwrap();
    let shm = PathBuf::from(format!("{}-shm", conn.path().unwrap()));
    drop(conn);
    std::fs::remove_file(shm).unwrap();
}

/// After a clean stop, a WAL that lost a frame in the middle (its running
/// checksum breaks there; SQLite's recovery ends the WAL at it) but kept
/// the last frame the stop recorded: what the start takes in stops short
/// of what was shipped, and it starts a new generation at once (before any
/// replica looks), never continuing where the application's next writes
/// would be other frames.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wal_that_lost_a_middle_frame_after_a_stop_starts_a_new_generation_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("app.db");
    let wal = dir.path().join("app.db-wal");
    let mut conn = create(&db);
    let (client, _) = file_replica(dir.path(), "r", Layout::Litestream03);
    let replicator = start_one(&db, no_checkpoints(), &client).await.unwrap();
    let g = replicator.generation();
    for round in 0..20 {
        write_round(&mut conn, round);
    }
    replicator.stop().await.unwrap();
    close_keeping_the_wal(conn);
    // The checksum of the fourth frame, as a torn write leaves it.
    let at = 32 + 3 * (4096 + 24) + 16;
    let mut bytes = std::fs::read(&wal).unwrap();
    bytes[at] ^= 0xff;
    std::fs::write(&wal, &bytes).unwrap();
    let conn = Connection::open(&db).unwrap();
    let replicator = start_one(&db, no_checkpoints(), &client).await.unwrap();
    assert_ne!(
        replicator.generation(),
        g,
        "a new generation from the start, not after a replica found the gap"
    );
    replicator.stop().await.unwrap();
    assert_eq!(restored(&*client, dir.path(), "out.db").await, rows(&db));
    drop(conn);
}

/// Shadow index files below `root`, their bytes and the disk space they
/// take (a spilled index has a hole where nothing was written).
fn shadow_files(root: &Path) -> (usize, u64, u64) {
    use std::os::unix::fs::MetadataExt;
    let mut found = (0, 0, 0);
    let Ok(generations) = std::fs::read_dir(root.join("generations")) else {
        return found;
    };
    for g in generations.flatten() {
        for f in std::fs::read_dir(g.path().join("wal"))
            .into_iter()
            .flatten()
            .flatten()
        {
            found.0 += 1;
            found.1 += f.metadata().map_or(0, |m| m.len());
            found.2 += f.metadata().map_or(0, |m| m.blocks() * 512);
        }
    }
    found
}

/// RELIABILITY.md's local-state bound: while the replica keeps up, the
/// shadow holds the current WAL index and at most the one before it (until
/// the replica has shipped it), never a backlog; once caught up, one index
/// no larger than the WAL. The frames themselves stay in the WAL: only what
/// a restart would overwrite unshipped is written into the shadow, and a
/// checkpoint waits for the replica to ship first.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_state_holds_no_more_than_the_unshipped_wal() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("app.db");
    let mut conn = create(&db);
    let (client, _) = file_replica(dir.path(), "r", Layout::Litestream03);
    let root = dir.path().join("shadow");
    // Rounds and syncs of 250 ms: the replica ships a round (two segments,
    // each synced: tens of milliseconds on a loaded machine) well before
    // the next, and the checkpoint the round put off copies what came
    // meanwhile.
    let options = DbOptions {
        shadow_dir: Some(root.clone()),
        monitor_interval: Duration::from_millis(250),
        ..quick_db()
    };
    let replicator = Replicator::start(
        &db,
        options,
        vec![Replica {
            options: ReplicaOptions {
                sync_interval: Duration::from_millis(250),
                ..quick_replica("r")
            },
            client: client.clone().into(),
        }],
    )
    .await
    .unwrap();
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let sampler = {
        let (root, stop) = (root.clone(), stop.clone());
        std::thread::spawn(move || {
            let (mut most, mut disk) = (0, 0);
            while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                let (files, _, allocated) = shadow_files(&root);
                most = most.max(files);
                disk = disk.max(allocated);
                std::thread::sleep(Duration::from_millis(2));
            }
            (most, disk)
        })
    };
    for round in 1..=150 {
        write_round(&mut conn, round);
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // Caught up: the replica's position is in the current index.
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    let (most, disk) = sampler.join().unwrap();
    let status = replicator.status();
    let (files, bytes, _) = shadow_files(&root);
    let wal = std::fs::metadata(dir.path().join("app.db-wal"))
        .unwrap()
        .len();
    let generations = client.generations().await.unwrap();
    let indexes = wal_indexes(&*client, &generations[0]).await;
    assert!(indexes.len() >= 5, "checkpoints ran: indexes {indexes:?}");
    assert!(
        most <= 2,
        "at most the current and the previous index: saw {most} files"
    );
    assert_eq!(files, 1, "caught up: only the current index is kept");
    assert!(
        bytes <= wal,
        "the shadow ({bytes} bytes) holds no more than the WAL ({wal})"
    );
    // What went into the shadow files is a small part of the WAL (what
    // came while the replica shipped: without the checkpoint waiting for
    // it, most of each index), and all the disk they took.
    assert!(
        status.shadow_bytes * 2 <= status.wal_bytes,
        "{} bytes written into the shadow for {} of WAL",
        status.shadow_bytes,
        status.wal_bytes
    );
    let headers = 2 * 4096 * most as u64;
    assert!(
        disk <= status.shadow_bytes + headers,
        "the shadow took {disk} bytes of disk at most; {} were written into it",
        status.shadow_bytes
    );
    replicator.stop().await.unwrap();
    drop(conn);
}

/// A clean stop leaves the shadow holding only what restarts made it hold
/// (the WAL has the rest) and records the last frame: the WAL must still
/// hold it to continue. As after a power loss that cost the WAL the tail a
/// replica has, with new frames written at the same offsets: a new
/// generation, never the old one continued with other frames.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wal_that_lost_what_was_shipped_before_a_stop_starts_a_new_generation() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("app.db");
    let wal = dir.path().join("app.db-wal");
    let mut conn = create(&db);
    let (client, _) = file_replica(dir.path(), "r", Layout::Litestream03);
    let replicator = start_one(&db, no_checkpoints(), &client).await.unwrap();
    let g = replicator.generation();
    for round in 0..10 {
        write_round(&mut conn, round);
    }
    replicator.stop().await.unwrap();
    let end = dir.path().join(".app.db-replica/end");
    assert!(end.exists(), "a clean stop records the last frame");
    let saved = std::fs::read(&wal).unwrap();
    let replicator = start_one(&db, no_checkpoints(), &client).await.unwrap();
    assert_eq!(replicator.generation(), g, "the WAL holds it: continued");
    assert!(!end.exists(), "the mark is for one start only");
    for round in 10..20 {
        write_round(&mut conn, round);
    }
    replicator.stop().await.unwrap();
    let shipped = std::fs::metadata(&wal).unwrap().len();
    // The WAL as it was before rounds 10..20, then other transactions
    // after it (valid frames where the replica has rounds 10..20).
    close_keeping_the_wal(conn);
    std::fs::write(&wal, &saved).unwrap();
    let mut conn = Connection::open(&db).unwrap();
    for round in 100..125 {
        write_round(&mut conn, round);
    }
    assert!(std::fs::metadata(&wal).unwrap().len() > shipped);
    let replicator = start_one(&db, no_checkpoints(), &client).await.unwrap();
    assert_ne!(
        replicator.generation(),
        g,
        "the WAL no longer holds what was shipped: a new generation"
    );
    replicator.stop().await.unwrap();
    assert_eq!(restored(&*client, dir.path(), "out.db").await, rows(&db));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_counts_the_work_and_names_a_failing_replica_with_its_lag() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("app.db");
    let mut conn = create(&db);
    let (good, _) = file_replica(dir.path(), "good", Layout::Litestream03);
    // A regular file where the replica's directory belongs: every write fails.
    std::fs::write(dir.path().join("bad"), b"not a directory").unwrap();
    let (bad, _) = file_replica(dir.path(), "bad", Layout::Litestream03);
    let replicator = Replicator::start(
        &db,
        quick_db(),
        vec![
            Replica {
                options: quick_replica("good"),
                client: good.clone().into(),
            },
            Replica {
                options: quick_replica("bad"),
                client: bad.into(),
            },
        ],
    )
    .await
    .unwrap();
    for round in 0..60 {
        write_round(&mut conn, round);
    }
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let status = loop {
        let status = replicator.status();
        let checkpointed = status.checkpoints.iter().any(|(_, w)| w.count > 0);
        if checkpointed
            && status.shadow.0 >= 1
            && status.replicas[0].caught_up
            && status.replicas[1].sync.errors > 0
        {
            break status;
        }
        assert!(std::time::Instant::now() < deadline, "{status:#?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(status.generation, replicator.generation());
    assert!(
        status.db_size > 0 && status.wal_bytes > 0 && status.wal_frames > 0,
        "{status:#?}"
    );
    assert!(
        status.sync.count > 0 && status.sync.errors == 0,
        "{status:#?}"
    );
    assert!(status.last_sync.is_some() && status.failing.is_none());
    // Every WAL restart came with frames the bad replica never shipped:
    // each synced the shadow first.
    assert!(
        status.shadow_syncs >= status.shadow.0,
        "{} syncs for {} restarts",
        status.shadow_syncs,
        status.shadow.0
    );
    // And copied into the shadow first: the bad replica reads them there.
    assert!(status.shadow_bytes > 0, "{status:#?}");
    let ok = &status.replicas[0];
    assert_eq!(ok.name, "good");
    assert!(ok.failing.is_none() && ok.last_sync.is_some(), "{ok:#?}");
    assert_eq!(ok.lag, Duration::ZERO);
    assert!(ok.wal_bytes > 0 && ok.pos.is_some(), "{ok:#?}");
    let failing = &status.replicas[1];
    assert_eq!(failing.name, "bad");
    assert!(
        !failing.caught_up && failing.lag > Duration::ZERO,
        "{failing:#?}"
    );
    let failure = failing
        .failing
        .as_ref()
        .expect("the bad replica is failing");
    assert!(!failure.error.is_empty());
    assert!(
        failing.last_sync.is_none() && failing.wal_bytes == 0,
        "{failing:#?}"
    );
    // Lag grows while it keeps failing.
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(replicator.status().replicas[1].lag > failing.lag);
    assert!(
        replicator.stop().await.is_err(),
        "the bad replica's final sync fails"
    );
}

/// A file store whose every write takes `delay` first (a slow upload).
#[derive(Debug)]
struct Slow {
    inner: FileStore,
    delay: Duration,
}

#[replica_core::async_trait]
impl replica_core::KeyStore for Slow {
    fn kind(&self) -> &'static str {
        "slow"
    }
    async fn put_opts(
        &self,
        key: &str,
        data: replica_core::ByteStream,
        options: &replica_core::PutOptions,
    ) -> replica_core::Result<replica_core::ObjectMeta> {
        tokio::time::sleep(self.delay).await;
        self.inner.put_opts(key, data, options).await
    }
    async fn get(&self, key: &str) -> replica_core::Result<replica_core::ByteStream> {
        self.inner.get(key).await
    }
    async fn delete(&self, keys: &[String]) -> replica_core::Result<()> {
        self.inner.delete(keys).await
    }
    async fn list(&self, dir: &str) -> replica_core::Result<replica_core::Listing> {
        self.inner.list(dir).await
    }
    async fn delete_all(&self, dir: &str) -> replica_core::Result<()> {
        self.inner.delete_all(dir).await
    }
}

/// The lag a replica reports stays near what it really is: under steady
/// writes with uploads slower than the monitor interval (every round ends
/// behind a newer view, yet holds what its own view held), and on the first
/// write after a quiet spell (its last round long ago, yet it held
/// everything until that write).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lag_follows_slow_uploads_and_quiet_spells_instead_of_growing() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("app.db");
    let mut conn = create(&db);
    let slow = Slow {
        inner: FileStore::new(dir.path().join("slow")),
        delay: Duration::from_millis(150),
    };
    let client: Arc<dyn ReplicaClient> = Arc::new(replica_core::StoreClient::with_layout(
        slow,
        Layout::Litestream03,
    ));
    // Few checkpoints: each new WAL index is an upload of its own, and a
    // replica that must make many of them really is behind.
    let options = DbOptions {
        checkpoint_interval: Duration::from_secs(60),
        min_checkpoint_page_count: 10_000,
        max_checkpoint_page_count: 0,
        ..quick_db()
    };
    let replicator = start_one(&db, options, &client).await.unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !replicator.status().replicas[0].caught_up {
        assert!(std::time::Instant::now() < deadline);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Steady writes for 3 s, one every 10 ms: each upload takes 150 ms.
    let mut worst = Duration::ZERO;
    let until = std::time::Instant::now() + Duration::from_secs(3);
    let mut round = 0;
    while std::time::Instant::now() < until {
        light_round(&mut conn, 1000 + round);
        round += 1;
        worst = worst.max(replicator.status().replicas[0].lag);
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(worst < Duration::from_secs(1), "lag reached {worst:?}");
    // Quiet for 2 s (the replica's rounds stop), then one write.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !replicator.status().replicas[0].caught_up {
        assert!(std::time::Instant::now() < deadline);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    light_round(&mut conn, 5000);
    let mut worst = Duration::ZERO;
    for _ in 0..50 {
        worst = worst.max(replicator.status().replicas[0].lag);
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(
        worst < Duration::from_secs(1),
        "lag after a quiet spell {worst:?}"
    );
    replicator.stop().await.unwrap();
}
