//! The restore library on replicas made from SQLite's own WAL files, in
//! memory: exact rows, retries of transient errors, and nothing left behind
//! when the errors do not stop.

use std::path::Path;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use replica_conformance::faults::{FaultPlan, FaultPoint, FaultyStore};
use replica_core::{bytes_stream, lz4, Generation, Pos, ReplicaClient};
use replica_memory::MemoryClient;
use replica_sqlite::{restore, Progress, RestoreError, RestoreOptions, Restored, Retry};

fn rows(db: &Path) -> Vec<(i64, String, i64)> {
    let conn = rusqlite::Connection::open(db).unwrap();
    let mut stmt = conn
        .prepare("SELECT id, name, qty FROM items ORDER BY id")
        .unwrap();
    stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap()
}

/// Where a WAL file is cut into segments.
#[derive(Clone, Copy)]
enum Cut {
    /// After every n-th commit frame (whole transactions).
    Commits(usize),
    /// After every n-th frame, inside transactions too (as Litestream 0.3.13
    /// can, shipping its shadow WAL frame-aligned).
    Frames(usize),
}

/// Splits a WAL file into segments.
fn segments_of(wal: &[u8], cut: Cut) -> Vec<(u64, Vec<u8>)> {
    let page_size = u32::from_be_bytes(wal[8..12].try_into().unwrap()) as usize;
    let frame = 24 + page_size;
    let mut out = Vec::new();
    let (mut start, mut at, mut commits, mut frames) = (0usize, 32usize, 0usize, 0usize);
    while at + frame <= wal.len() {
        let commit = u32::from_be_bytes(wal[at + 4..at + 8].try_into().unwrap());
        at += frame;
        frames += 1;
        commits += usize::from(commit != 0);
        let end_here = match cut {
            Cut::Commits(n) => commit != 0 && commits % n == 0,
            Cut::Frames(n) => frames % n == 0,
        };
        if end_here {
            out.push((start as u64, wal[start..at].to_vec()));
            start = at;
        }
    }
    if start < at {
        out.push((start as u64, wal[start..at].to_vec()));
    }
    out
}

/// A replica of a database written by SQLite: a snapshot at index 0, then
/// three WAL indexes, each the WAL SQLite wrote between two TRUNCATE
/// checkpoints, cut at commit frames. Returns the source's path.
async fn sqlite_replica(
    client: &MemoryClient,
    g: &Generation,
    dir: &Path,
    cut: Cut,
) -> std::path::PathBuf {
    let db = dir.join("source.db");
    let conn = rusqlite::Connection::open(&db).unwrap();
    conn.pragma_update(None, "journal_mode", "wal").unwrap();
    conn.pragma_update(None, "wal_autocheckpoint", 0).unwrap();
    conn.execute_batch(
        "CREATE TABLE items (id INTEGER PRIMARY KEY, name TEXT NOT NULL, qty INTEGER NOT NULL);
         CREATE INDEX items_name ON items(name);
         PRAGMA wal_checkpoint(TRUNCATE);",
    )
    .unwrap();
    let snapshot = std::fs::read(&db).unwrap();
    client
        .write_snapshot(g, 0, bytes_stream(lz4::compress(&snapshot)))
        .await
        .unwrap();
    let wal_path = dir.join("source.db-wal");
    for index in 0..3u64 {
        for tx in 0..6 {
            conn.execute_batch(&format!(
                "BEGIN;
                 WITH RECURSIVE s(value) AS (SELECT 1 UNION ALL SELECT value + 1 FROM s WHERE value < 60)
                 INSERT INTO items (name, qty)
                   SELECT 'item ' || ({index} * 1000 + {tx} * 100 + value) || ' of a long description', value
                   FROM s;
                 UPDATE items SET qty = qty + 1 WHERE id % 5 = {tx};
                 DELETE FROM items WHERE id % 13 = {tx};
                 COMMIT;"
            ))
            .unwrap();
        }
        let wal = std::fs::read(&wal_path).unwrap();
        for (offset, segment) in segments_of(&wal, cut) {
            let pos = Pos::new(g.clone(), index, offset).unwrap();
            client
                .write_wal_segment(&pos, bytes_stream(lz4::compress(&segment)))
                .await
                .unwrap();
        }
        conn.execute_batch("PRAGMA wal_checkpoint(TRUNCATE);")
            .unwrap();
    }
    db
}

#[derive(Default)]
struct Counting {
    retries: AtomicU32,
}

impl Progress for Counting {
    fn start(&self, _: u64, _: u64) {}
    fn advance(&self, _: u64) {}
    fn retrying(&self, _: &str, _: u32, _: &replica_core::Error) {
        self.retries.fetch_add(1, Ordering::Relaxed);
    }
}

fn quick_retry(attempts: u32) -> Retry {
    Retry {
        attempts,
        first_delay: Duration::from_millis(1),
        max_delay: Duration::from_millis(4),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_wal_restores_to_the_same_rows() {
    let dir = tempfile::tempdir().unwrap();
    let client = MemoryClient::default();
    let g = Generation::random();
    let source = sqlite_replica(&client, &g, dir.path(), Cut::Commits(2)).await;
    let out = dir.path().join("restored.db");
    let options = RestoreOptions {
        integrity_check: true,
        ..RestoreOptions::default()
    };
    let Restored::Done(summary) = restore(&client, &out, &options).await.unwrap() else {
        panic!("not restored")
    };
    assert_eq!((summary.snapshot_index, summary.last_index), (0, 2));
    assert!(summary.segments >= 9, "{summary:?}");
    assert_eq!(rows(&out), rows(&source));
    assert!(!rows(&out).is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transactions_cut_across_segments_restore_the_same_rows() {
    let dir = tempfile::tempdir().unwrap();
    let client = MemoryClient::default();
    let g = Generation::random();
    let source = sqlite_replica(&client, &g, dir.path(), Cut::Frames(3)).await;
    let out = dir.path().join("restored.db");
    let options = RestoreOptions {
        integrity_check: true,
        ..RestoreOptions::default()
    };
    restore(&client, &out, &options).await.unwrap();
    assert_eq!(rows(&out), rows(&source));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transient_read_errors_are_retried_until_the_restore_succeeds() {
    let dir = tempfile::tempdir().unwrap();
    let client = MemoryClient::default();
    let g = Generation::random();
    let source = sqlite_replica(&client, &g, dir.path(), Cut::Commits(2)).await;
    let faulty = FaultyStore::client(
        &client,
        FaultPlan {
            seed: 7,
            probability: 0.3,
            points: vec![FaultPoint::Read],
            stall: None,
        },
    );
    let progress = Arc::new(Counting::default());
    let options = RestoreOptions {
        retry: quick_retry(12),
        progress: Some(progress.clone()),
        ..RestoreOptions::default()
    };
    let out = dir.path().join("restored.db");
    restore(&faulty, &out, &options).await.unwrap();
    assert!(faulty.store().injected() > 0, "no fault was injected");
    assert_eq!(
        u64::from(progress.retries.load(Ordering::Relaxed)),
        faulty.store().injected(),
        "every injected fault was retried"
    );
    assert_eq!(rows(&out), rows(&source));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_that_do_not_stop_fail_the_restore_and_leave_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let client = MemoryClient::default();
    let g = Generation::random();
    sqlite_replica(&client, &g, dir.path(), Cut::Commits(2)).await;
    let faulty = FaultyStore::client(
        &client,
        FaultPlan {
            seed: 7,
            probability: 1.0,
            points: vec![FaultPoint::Read],
            stall: None,
        },
    );
    let out_dir = tempfile::tempdir().unwrap();
    let out = out_dir.path().join("restored.db");
    let options = RestoreOptions {
        retry: quick_retry(3),
        ..RestoreOptions::default()
    };
    let err = restore(&faulty, &out, &options).await.unwrap_err();
    assert!(
        matches!(&err, RestoreError::Replica(e) if e.to_string().contains("injected fault")),
        "{err}"
    );
    assert_eq!(faulty.store().injected(), 3, "three tries of the snapshot");
    assert_eq!(std::fs::read_dir(out_dir.path()).unwrap().count(), 0);
}
