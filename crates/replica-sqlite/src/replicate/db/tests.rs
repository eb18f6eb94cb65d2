//! The database side driven round by round, for what a live replicator
//! cannot be made to meet on cue.

use super::*;

/// A database in WAL mode with a table, written through `conn`.
fn app(path: &Path) -> Connection {
    let conn = Connection::open(path).unwrap();
    conn.pragma_update(None, "journal_mode", "wal").unwrap();
    conn.execute_batch("CREATE TABLE items (id INTEGER PRIMARY KEY, name TEXT)")
        .unwrap();
    conn
}

fn insert(conn: &Connection, from: i64, n: i64) {
    conn.execute_batch("BEGIN").unwrap();
    for id in from..from + n {
        conn.execute(
            "INSERT INTO items (id, name) VALUES (?1, ?2)",
            rusqlite::params![id, "x".repeat(500)],
        )
        .unwrap();
    }
    conn.execute_batch("COMMIT").unwrap();
}

/// RELIABILITY.md's first defensive check: a checkpoint whose WAL holds
/// more frames than our rounds took in (here a frame whose checksum broke
/// in the file after SQLite counted it, as a power loss leaves the frames
/// after a torn one: SQLite's end is past our chain's) starts a new
/// generation instead of restarting the WAL, which would drop those
/// frames from the generation.
#[test]
fn a_checkpoint_of_frames_never_taken_in_starts_a_new_generation() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("app.db");
    let conn = app(&path);
    insert(&conn, 0, 10);
    let options = DbOptions {
        shadow_dir: Some(dir.path().join("shadow")),
        checkpoint_interval: Duration::ZERO,
        min_checkpoint_page_count: 1_000_000,
        max_checkpoint_page_count: 0,
        ..DbOptions::default()
    };
    let mut db = Db::open(&path, options, None).unwrap();
    db.sync(false, true).unwrap();
    let before = db.view();
    let wal = dir.path().join("app.db-wal");
    let end = fs::metadata(&wal).unwrap().len();
    assert_eq!(end, before.len, "the WAL holds only what was taken in");
    insert(&conn, 10, 10);
    // Checksum-1 of the first new frame, in the file only: SQLite's WAL
    // index still counts every frame, and a checkpoint copies them all.
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .open(&wal)
        .unwrap();
    let mut byte = [0u8; 1];
    file.read_exact_at(&mut byte, end + 16).unwrap();
    file.write_all_at(&[byte[0] ^ 0xff], end + 16).unwrap();
    db.sync(false, true).unwrap();
    assert_eq!(
        db.view().len,
        before.len,
        "nothing past the broken frame is taken in"
    );
    let hooks = Hooks {
        unshipped_from: &|_, _, len| len,
        publish: &|_| {},
    };
    db.checkpoint(hooks).unwrap();
    let after = db.view();
    assert_ne!(
        after.generation, before.generation,
        "a restart (index {} of the same generation) dropped frames SQLite had",
        after.index
    );
    assert_eq!(after.index, 0);
}
