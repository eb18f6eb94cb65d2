//! The replicator into the LTX layout with short intervals: files at L0,
//! compaction levels and L9; restores (ours, and the real litestream 0.5.17
//! when `REPLICA_LITESTREAM_05` names it) equal the source; retention
//! deletes what no restore needs and never what a restore that began within
//! the grace period planned.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use replica_core::ltx::{plan_restore, LtxClient, LtxTarget};
use replica_file::FileStore;
use replica_sqlite::{
    restore_ltx, DbOptions, LtxRestoreOptions, Replica, ReplicaOptions, Replicator,
};

mod common;
use common::{create, rows, write_round};

fn quick_db() -> DbOptions {
    DbOptions {
        monitor_interval: Duration::from_millis(20),
        checkpoint_interval: Duration::from_millis(300),
        min_checkpoint_page_count: 40,
        max_checkpoint_page_count: 400,
        ..DbOptions::default()
    }
}

fn quick_ltx(grace: Duration) -> ReplicaOptions {
    ReplicaOptions {
        name: "ltx".into(),
        sync_interval: Duration::from_millis(20),
        snapshot_interval: Some(Duration::from_millis(700)),
        retention: Duration::from_millis(900),
        retention_check_interval: Duration::from_millis(150),
        restore_grace: grace,
        levels: vec![Duration::from_millis(150), Duration::from_millis(450)],
        l0_retention: Duration::from_millis(200),
        max_sync_wal_bytes: None,
    }
}

/// Replicates `db` into `client` under writes for `rounds` rounds of 25 ms.
async fn run(db: &Path, client: &LtxClient, options: ReplicaOptions, rounds: i64, from: i64) {
    let mut conn = create(db);
    let replicator = Replicator::start(
        db,
        quick_db(),
        vec![Replica {
            options,
            client: client.clone().into(),
        }],
    )
    .await
    .unwrap();
    for round in from..from + rounds {
        write_round(&mut conn, round);
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    replicator.stop().await.unwrap();
}

async fn ours(client: &LtxClient, out: &Path) -> Vec<(i64, String, i64)> {
    let options = LtxRestoreOptions {
        integrity_check: true,
        ..LtxRestoreOptions::default()
    };
    restore_ltx(client, out, &options).await.unwrap();
    rows(out)
}

fn litestream05() -> Option<std::path::PathBuf> {
    std::env::var_os("REPLICA_LITESTREAM_05").map(Into::into)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compaction_levels_and_snapshots_restore_to_the_source() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("app.db");
    let root = dir.path().join("r");
    let client = LtxClient::new(Arc::new(FileStore::new(&root)));
    // No retention: every level keeps its files.
    let options = ReplicaOptions {
        retention: Duration::ZERO,
        ..quick_ltx(Duration::ZERO)
    };
    run(&db, &client, options, 80, 0).await;
    let files = client.all_files().await.unwrap();
    for level in [0u8, 1, 2, 9] {
        assert!(
            files.iter().any(|f| f.level == level),
            "no file at L{level}: {files:?}"
        );
    }
    assert!(
        files.iter().filter(|f| f.level == 9).count() >= 2,
        "{files:?}"
    );
    // L1 and L2 files chain without holes.
    for level in [1u8, 2] {
        let chain: Vec<_> = files.iter().filter(|f| f.level == level).collect();
        for pair in chain.windows(2) {
            assert_eq!(
                pair[1].min_txid.0,
                pair[0].max_txid.0 + 1,
                "L{level}: {chain:?}"
            );
        }
    }
    assert_eq!(ours(&client, &dir.path().join("ours.db")).await, rows(&db));
    if let Some(bin) = litestream05() {
        let out = dir.path().join("theirs.db");
        let status = std::process::Command::new(bin)
            .args(["restore", "-o"])
            .arg(&out)
            .arg(format!("file://{}", root.display()))
            .output()
            .unwrap();
        assert!(
            status.status.success(),
            "{}",
            String::from_utf8_lossy(&status.stderr)
        );
        assert_eq!(rows(&out), rows(&db), "litestream 0.5.17's restore differs");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_deletes_what_no_restore_needs_and_the_replica_still_restores() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("app.db");
    let client = LtxClient::new(Arc::new(FileStore::new(dir.path().join("r"))));
    run(&db, &client, quick_ltx(Duration::ZERO), 120, 0).await;
    let files = client.all_files().await.unwrap();
    let snapshots: Vec<_> = files.iter().filter(|f| f.level == 9).collect();
    let l0: Vec<_> = files.iter().filter(|f| f.level == 0).collect();
    // Over 3 s of snapshots every 0.7 s, 0.9 s kept: old ones are gone.
    assert!(
        snapshots.len() <= 3 && !snapshots.is_empty(),
        "snapshots kept: {snapshots:?}"
    );
    assert!(
        l0.first().is_some_and(|f| f.min_txid.0 > 1),
        "L0 files compacted into L1 were not deleted: {l0:?}"
    );
    assert_eq!(ours(&client, &dir.path().join("ours.db")).await, rows(&db));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_never_deletes_what_a_restore_begun_within_the_grace_planned() {
    for (grace, kept) in [(Duration::from_secs(3600), true), (Duration::ZERO, false)] {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("app.db");
        let client = LtxClient::new(Arc::new(FileStore::new(dir.path().join("r"))));
        run(&db, &client, quick_ltx(grace), 30, 0).await;
        // A restore begins: it plans the newest state from these files.
        let plan = plan_restore(&client.all_files().await.unwrap(), LtxTarget::Latest).unwrap();
        // Replication and retention go on while it reads.
        run(&db, &client, quick_ltx(grace), 90, 30).await;
        let now = client.all_files().await.unwrap();
        let missing: Vec<_> = plan
            .files
            .iter()
            .filter(|f| {
                !now.iter()
                    .any(|n| (n.level, n.min_txid, n.max_txid) == (f.level, f.min_txid, f.max_txid))
            })
            .collect();
        if kept {
            assert!(
                missing.is_empty(),
                "grace {grace:?}: deleted under a restore: {missing:?}"
            );
        } else {
            assert!(
                !missing.is_empty(),
                "without a grace the plan's files are deleted (the test can fail)"
            );
        }
    }
}

/// A key store that counts the requests made of it.
#[derive(Debug)]
struct Counting {
    inner: Arc<dyn replica_core::KeyStore>,
    requests: std::sync::atomic::AtomicU64,
}

impl Counting {
    fn tick(&self) {
        self.requests
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    }
    fn count(&self) -> u64 {
        self.requests.load(std::sync::atomic::Ordering::SeqCst)
    }
}

#[replica_core::async_trait]
impl replica_core::KeyStore for Counting {
    fn kind(&self) -> &'static str {
        self.inner.kind()
    }
    async fn put_opts(
        &self,
        key: &str,
        data: replica_core::ByteStream,
        options: &replica_core::PutOptions,
    ) -> replica_core::Result<replica_core::ObjectMeta> {
        self.tick();
        self.inner.put_opts(key, data, options).await
    }
    async fn get(&self, key: &str) -> replica_core::Result<replica_core::ByteStream> {
        self.tick();
        self.inner.get(key).await
    }
    async fn get_range(
        &self,
        key: &str,
        range: std::ops::Range<u64>,
    ) -> replica_core::Result<replica_core::ByteStream> {
        self.tick();
        self.inner.get_range(key, range).await
    }
    async fn delete(&self, keys: &[String]) -> replica_core::Result<()> {
        self.tick();
        self.inner.delete(keys).await
    }
    async fn list(&self, dir: &str) -> replica_core::Result<replica_core::Listing> {
        self.tick();
        self.inner.list(dir).await
    }
    async fn delete_all(&self, dir: &str) -> replica_core::Result<()> {
        self.tick();
        self.inner.delete_all(dir).await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_database_costs_no_requests() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("app.db");
    let store = Arc::new(Counting {
        inner: Arc::new(FileStore::new(dir.path().join("r"))),
        requests: Default::default(),
    });
    let client = LtxClient::new(store.clone());
    let mut conn = create(&db);
    let options = ReplicaOptions {
        snapshot_interval: Some(Duration::from_millis(300)),
        retention: Duration::from_millis(600),
        retention_check_interval: Duration::from_millis(50),
        levels: vec![Duration::from_millis(100), Duration::from_millis(200)],
        l0_retention: Duration::from_millis(100),
        ..quick_ltx(Duration::ZERO)
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
    for round in 0..20 {
        write_round(&mut conn, round);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Let compaction, snapshots and retention settle, then stay idle past
    // the task's idle wake-up (10 × the sync interval, at least 10 s): every
    // interval passes many times over, and nothing is asked of the store.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let settled = store.count();
    tokio::time::sleep(Duration::from_secs(12)).await;
    let idle = store.count() - settled;
    assert_eq!(idle, 0, "{idle} requests in 12 s of idleness");
    assert!(settled > 20, "the writes were shipped ({settled} requests)");
    replicator.stop().await.unwrap();
    assert_eq!(ours(&client, &dir.path().join("ours.db")).await, rows(&db));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backlog_is_shipped_in_pieces_of_max_sync_wal_bytes_cut_at_commits() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("app.db");
    let client = LtxClient::new(Arc::new(FileStore::new(dir.path().join("r"))));
    const MAX: u64 = 40 << 10;
    let options = ReplicaOptions {
        // One sync a second: each carries a backlog of many transactions.
        sync_interval: Duration::from_secs(1),
        max_sync_wal_bytes: Some(MAX),
        retention: Duration::ZERO,
        levels: Vec::new(),
        ..quick_ltx(Duration::ZERO)
    };
    run(&db, &client, options, 60, 0).await;
    let l0 = client.files(0).await.unwrap();
    let mut sizes = Vec::new();
    for f in l0.iter().skip(1) {
        let h = client.header(f).await.unwrap();
        sizes.push(h.wal_size as u64);
    }
    assert!(sizes.len() >= 5, "pieces: {sizes:?}");
    // Each piece ends at the first commit past MAX: under MAX plus one
    // transaction, which writes each page once at most (a round's UPDATE
    // touches most of the table's pages as it grows).
    let pages: i64 = rusqlite::Connection::open(&db)
        .unwrap()
        .query_row("PRAGMA page_count", [], |r| r.get(0))
        .unwrap();
    let transaction = pages as u64 * (4096 + 24);
    assert!(sizes.iter().all(|s| *s < MAX + transaction), "{sizes:?}");
    assert!(
        sizes.iter().filter(|s| **s >= MAX).count() >= 3,
        "{sizes:?}"
    );
    assert_eq!(ours(&client, &dir.path().join("ours.db")).await, rows(&db));
}
