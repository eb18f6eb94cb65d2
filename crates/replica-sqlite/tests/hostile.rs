//! Restore under hostile replicas (issue 20): each defect refused with a
//! typed error naming the object and position, nothing left at or beside
//! the output path; large transactions restored exactly in bounded memory.

use std::path::Path;
use std::sync::{Arc, Mutex};

use replica_core::{bytes_stream, lz4, Error, Generation, Pos, ReplicaClient};
use replica_memory::MemoryClient;
use replica_sqlite::wal::{frames_of, WalBuilder, WalDefect};
use replica_sqlite::{restore, Progress, RestoreError, RestoreOptions, Restored};

/// A WAL-mode database with a table, checkpointed: (its bytes, the open
/// connection, the WAL's path).
fn source(dir: &Path, page_size: u32) -> (Vec<u8>, rusqlite::Connection, std::path::PathBuf) {
    let db = dir.join("source.db");
    let conn = rusqlite::Connection::open(&db).unwrap();
    conn.pragma_update(None, "page_size", page_size).unwrap();
    conn.pragma_update(None, "journal_mode", "wal").unwrap();
    conn.pragma_update(None, "wal_autocheckpoint", 0).unwrap();
    conn.execute_batch(
        "CREATE TABLE t (id INTEGER PRIMARY KEY, v BLOB);
         INSERT INTO t (v) VALUES (randomblob(100));
         PRAGMA wal_checkpoint(TRUNCATE);",
    )
    .unwrap();
    (std::fs::read(&db).unwrap(), conn, dir.join("source.db-wal"))
}

async fn put_snapshot(client: &MemoryClient, g: &Generation, index: u64, db: &[u8]) {
    client
        .write_snapshot(g, index, bytes_stream(lz4::compress(db)))
        .await
        .unwrap();
}

async fn put_segment(client: &MemoryClient, g: &Generation, index: u64, offset: u64, wal: &[u8]) {
    let pos = Pos::new(g.clone(), index, offset).unwrap();
    client
        .write_wal_segment(&pos, bytes_stream(lz4::compress(wal)))
        .await
        .unwrap();
}

/// The WAL `wal` rebuilt with each frame passed through `edit`.
fn rebuilt(wal: &[u8], mut edit: impl FnMut(usize, u32, u32) -> (u32, u32)) -> Vec<u8> {
    let page_size = u32::from_be_bytes(wal[8..12].try_into().unwrap());
    let mut b = WalBuilder::new(page_size, false);
    for (i, (pgno, commit, page)) in frames_of(wal).into_iter().enumerate() {
        let (pgno, commit) = edit(i, pgno, commit);
        b.frame_of(pgno, commit, page);
    }
    b.bytes
}

fn count_rows(db: &Path) -> i64 {
    rusqlite::Connection::open(db)
        .unwrap()
        .query_row("SELECT count(*) FROM t", [], |r| r.get(0))
        .unwrap()
}

/// Nothing but `keep` in `dir`.
fn assert_only(dir: &Path, keep: &[&str]) {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    let mut keep: Vec<String> = keep.iter().map(|s| s.to_string()).collect();
    keep.sort();
    assert_eq!(names, keep, "left in {}", dir.display());
}

#[tokio::test]
async fn a_commit_frame_larger_than_the_wal_can_fill_is_refused() {
    for page_size in [4096u32, 65_536] {
        let dir = tempfile::tempdir().unwrap();
        let (db, conn, wal_path) = source(dir.path(), page_size);
        conn.execute_batch("INSERT INTO t (v) VALUES (randomblob(3000));")
            .unwrap();
        let wal = std::fs::read(&wal_path).unwrap();
        let frames = frames_of(&wal).len();
        let hostile = rebuilt(&wal, |i, pgno, commit| {
            (pgno, if i + 1 == frames { 0xffff_ffff } else { commit })
        });
        let client = MemoryClient::default();
        let g = Generation::random();
        put_snapshot(&client, &g, 0, &db).await;
        put_segment(&client, &g, 0, 0, &hostile).await;
        let out_dir = tempfile::tempdir().unwrap();
        let out = out_dir.path().join("r.db");
        let err = restore(&client, &out, &RestoreOptions::default())
            .await
            .unwrap_err();
        match &err {
            RestoreError::Wal { pos, defect } => {
                assert_eq!((pos.index, pos.generation.clone()), (0, g.clone()));
                assert!(
                    matches!(
                        defect,
                        WalDefect::CommitTooLarge {
                            commit: 0xffff_ffff,
                            ..
                        }
                    ),
                    "{err}"
                );
            }
            other => panic!("page size {page_size}: expected a WAL defect, got {other}"),
        }
        assert!(err.to_string().contains("malformed"), "{err}");
        assert_only(out_dir.path(), &[]);
    }
}

#[tokio::test]
async fn a_database_larger_than_its_header_says_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (db, conn, wal_path) = source(dir.path(), 4096);
    conn.execute_batch("INSERT INTO t (v) VALUES (randomblob(3000));")
        .unwrap();
    let wal = std::fs::read(&wal_path).unwrap();
    let frames = frames_of(&wal);
    let n = frames.len();
    // Within SQLite's growth allowance, but not what page 1 says.
    let real = frames[n - 1].1;
    let hostile = rebuilt(&wal, |i, pgno, commit| {
        (pgno, if i + 1 == n { real + 3 } else { commit })
    });
    let client = MemoryClient::default();
    let g = Generation::random();
    put_snapshot(&client, &g, 0, &db).await;
    put_segment(&client, &g, 0, 0, &hostile).await;
    let out_dir = tempfile::tempdir().unwrap();
    let out = out_dir.path().join("r.db");
    let err = restore(&client, &out, &RestoreOptions::default())
        .await
        .unwrap_err();
    let text = err.to_string();
    assert!(
        matches!(&err, RestoreError::Replica(Error::Corrupt { path, .. }) if path.contains("wal")),
        "{text}"
    );
    assert!(
        text.contains(&format!("says {real} pages")) && text.contains(&format!("{}", real + 3)),
        "{text}"
    );
    assert_only(out_dir.path(), &[]);
    // The sound WAL restores.
    let client = MemoryClient::default();
    put_snapshot(&client, &g, 0, &db).await;
    put_segment(&client, &g, 0, 0, &wal).await;
    restore(&client, &out, &RestoreOptions::default())
        .await
        .unwrap();
    assert_eq!(count_rows(&out), 2);
}

/// One transaction of `mib` MiB, in segments of `frames_per_segment`
/// frames: (snapshot, WAL index 0 segments as (offset, bytes)).
fn big_transaction(dir: &Path, mib: usize) -> (Vec<u8>, Vec<u8>) {
    let (db, conn, wal_path) = source(dir, 4096);
    conn.execute_batch(&format!(
        "BEGIN;
         WITH RECURSIVE s(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM s WHERE n < {})
         INSERT INTO t (v) SELECT randomblob(8000) FROM s;
         COMMIT;",
        mib * 128
    ))
    .unwrap();
    (db, std::fs::read(wal_path).unwrap())
}

async fn put_in_segments(
    client: &MemoryClient,
    g: &Generation,
    index: u64,
    wal: &[u8],
    frames: usize,
) {
    let frame = 24 + u32::from_be_bytes(wal[8..12].try_into().unwrap()) as usize;
    let mut at = 0;
    while at < wal.len() {
        let end = if at == 0 {
            32 + frames * frame
        } else {
            at + frames * frame
        }
        .min(wal.len());
        put_segment(client, g, index, at as u64, &wal[at..end]).await;
        at = end;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transaction_larger_than_memory_allows_spills_and_restores_exactly() {
    let dir = tempfile::tempdir().unwrap();
    // 48 MiB in one transaction: past the 32 MiB held in memory.
    let (db, wal) = big_transaction(dir.path(), 48);
    assert!(wal.len() > replica_sqlite::wal::PENDING_MEMORY_LIMIT + (8 << 20));
    let client = MemoryClient::default();
    let g = Generation::random();
    put_snapshot(&client, &g, 0, &db).await;
    put_in_segments(&client, &g, 0, &wal, 500).await;
    let out_dir = tempfile::tempdir().unwrap();
    let out = out_dir.path().join("r.db");
    let options = RestoreOptions {
        integrity_check: true,
        ..RestoreOptions::default()
    };
    let Restored::Done(summary) = restore(&client, &out, &options).await.unwrap() else {
        panic!("restored");
    };
    assert!(summary.segments > 10, "{summary:?}");
    assert_eq!(count_rows(&out), 1 + 48 * 128);
    let all = |db: &Path| -> Vec<(i64, Vec<u8>)> {
        let conn = rusqlite::Connection::open(db).unwrap();
        let mut stmt = conn.prepare("SELECT id, v FROM t ORDER BY id").unwrap();
        stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap()
    };
    let want = all(&dir.path().join("source.db"));
    assert_eq!(want.len(), 1 + 48 * 128);
    assert!(
        want == all(&out),
        "the restored rows differ from the source's"
    );
    assert_only(out_dir.path(), &["r.db"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_uncommitted_transaction_across_many_segments_is_dropped_at_the_end_and_refused_before_a_later_index(
) {
    let dir = tempfile::tempdir().unwrap();
    let (db, wal) = big_transaction(dir.path(), 40);
    let frames = frames_of(&wal).len();
    // The commit frame cut off: 40 MiB of frames that never commit.
    let frame = 24 + 4096;
    let uncommitted = &wal[..32 + (frames - 1) * frame];
    for later in [false, true] {
        let client = MemoryClient::default();
        let g = Generation::random();
        put_snapshot(&client, &g, 0, &db).await;
        put_in_segments(&client, &g, 0, uncommitted, 400).await;
        if later {
            let b = rebuilt(&wal[..32 + frame], |_, pgno, _| (pgno, 2));
            put_segment(&client, &g, 1, 0, &b).await;
        }
        let out_dir = tempfile::tempdir().unwrap();
        let out = out_dir.path().join("r.db");
        let result = restore(&client, &out, &RestoreOptions::default()).await;
        if later {
            let err = result.unwrap_err();
            assert!(
                matches!(&err, RestoreError::Wal { pos, defect: WalDefect::NoCommit { frames: n } }
                    if pos.index == 0 && pos.offset == 32 && *n == frames - 1),
                "{err}"
            );
            assert_only(out_dir.path(), &[]);
        } else {
            result.unwrap();
            // Only the snapshot's row: the transaction never committed.
            assert_eq!(count_rows(&out), 1);
            assert_only(out_dir.path(), &["r.db"]);
        }
    }
}

async fn small_replica() -> (MemoryClient, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let (db, conn, wal_path) = source(dir.path(), 4096);
    conn.execute_batch("INSERT INTO t (v) VALUES (randomblob(10));")
        .unwrap();
    let client = MemoryClient::default();
    let g = Generation::random();
    put_snapshot(&client, &g, 0, &db).await;
    put_segment(&client, &g, 0, 0, &std::fs::read(wal_path).unwrap()).await;
    (client, dir)
}

#[tokio::test]
async fn a_stale_journal_beside_the_output_is_refused() {
    let (client, _src) = small_replica().await;
    let out_dir = tempfile::tempdir().unwrap();
    let out = out_dir.path().join("app.db");
    for companion in ["app.db-journal", "app.db-wal", "app.db-shm"] {
        let stale = out_dir.path().join(companion);
        std::fs::write(&stale, b"another database's journal").unwrap();
        let err = restore(&client, &out, &RestoreOptions::default())
            .await
            .unwrap_err();
        assert!(
            matches!(&err, RestoreError::StaleCompanion(p) if p == &stale),
            "{companion}: {err}"
        );
        assert!(err.to_string().contains("remove it"), "{err}");
        assert_only(out_dir.path(), &[companion]);
        std::fs::remove_file(&stale).unwrap();
    }
}

#[tokio::test]
async fn the_integrity_check_reads_the_file_restored_whatever_its_name() {
    let (client, _src) = small_replica().await;
    let out_dir = tempfile::tempdir().unwrap();
    let options = RestoreOptions {
        integrity_check: true,
        ..RestoreOptions::default()
    };
    for name in [
        "a?b.db",
        "c#d.db",
        "e%41.db",
        "f%.db",
        "sp ace.db",
        "g?immutable=0&mode=rw",
    ] {
        let out = out_dir.path().join(name);
        restore(&client, &out, &options)
            .await
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(count_rows(&out), 2, "{name}");
    }
    // A corrupt restore to `x?y.db` beside a sound database at `.x`: the
    // check must read the restored file, not `.x`.
    let dir = tempfile::tempdir().unwrap();
    let (mut db, _conn, _) = source(dir.path(), 4096);
    let root_page_of_t = 2;
    for b in &mut db[(root_page_of_t - 1) * 4096 + 8..(root_page_of_t - 1) * 4096 + 40] {
        *b = 0xee;
    }
    let bad = MemoryClient::default();
    put_snapshot(&bad, &Generation::random(), 0, &db).await;
    let decoy_dir = tempfile::tempdir().unwrap();
    std::fs::copy(dir.path().join("source.db"), decoy_dir.path().join(".x")).unwrap();
    let out = decoy_dir.path().join("x?y.db");
    let err = restore(&bad, &out, &options).await.unwrap_err();
    assert!(matches!(err, RestoreError::Integrity(_)), "{err}");
    assert_only(decoy_dir.path(), &[".x"]);
}

#[derive(Default)]
struct Notes(Mutex<Vec<String>>);

impl Progress for Notes {
    fn start(&self, _: u64, _: u64) {}
    fn advance(&self, _: u64) {}
    fn retrying(&self, _: &str, _: u32, _: &Error) {}
    fn note(&self, message: &str) {
        self.0.lock().unwrap().push(message.to_owned());
    }
}

#[tokio::test]
async fn a_stale_temporary_file_is_removed_and_told_and_a_locked_one_refuses() {
    let (client, _src) = small_replica().await;
    let out_dir = tempfile::tempdir().unwrap();
    let out = out_dir.path().join("app.db");
    let stale = out_dir.path().join(".app.db.00000000deadbeef.restore.tmp");
    let other = out_dir
        .path()
        .join(".other.db.00000000deadbeef.restore.tmp");
    std::fs::write(&stale, vec![0u8; 1 << 20]).unwrap();
    std::fs::write(&other, b"another output's").unwrap();
    // Held by a running restore (this test): another restore refuses.
    let held = std::fs::File::open(&stale).unwrap();
    rustix::fs::flock(&held, rustix::fs::FlockOperation::LockExclusive).unwrap();
    let err = restore(&client, &out, &RestoreOptions::default())
        .await
        .unwrap_err();
    assert!(
        matches!(&err, RestoreError::InProgress(p) if p == &stale),
        "{err}"
    );
    assert!(stale.exists());
    drop(held);
    // Released (its restore was killed): removed, and told.
    let notes = Arc::new(Notes::default());
    let options = RestoreOptions {
        progress: Some(notes.clone()),
        ..RestoreOptions::default()
    };
    restore(&client, &out, &options).await.unwrap();
    assert!(!stale.exists());
    let notes = notes.0.lock().unwrap();
    assert!(
        notes.len() == 1 && notes[0].contains(".app.db.00000000deadbeef.restore.tmp"),
        "{notes:?}"
    );
    // Another output's temporary file is not this restore's business.
    assert_only(
        out_dir.path(),
        &["app.db", ".other.db.00000000deadbeef.restore.tmp"],
    );
}
