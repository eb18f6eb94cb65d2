//! Helpers shared by the replicator tests: a live database of items and
//! its write load.
#![allow(dead_code, unreachable_pub)] // each test binary uses a different part

use std::path::Path;
use std::time::Duration;

use rusqlite::Connection;

/// The rows of the items table, in order.
pub fn rows(db: &Path) -> Vec<(i64, String, i64)> {
    let conn = Connection::open(db).unwrap();
    let mut stmt = conn
        .prepare("SELECT id, name, qty FROM items ORDER BY id")
        .unwrap();
    stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap()
}

pub fn create(db: &Path) -> Connection {
    let conn = Connection::open(db).unwrap();
    conn.pragma_update(None, "journal_mode", "wal").unwrap();
    conn.busy_timeout(Duration::from_secs(5)).unwrap();
    conn.execute_batch(
        "CREATE TABLE IF NOT EXISTS items (id INTEGER PRIMARY KEY, name TEXT NOT NULL, qty INTEGER NOT NULL);
         CREATE INDEX IF NOT EXISTS items_name ON items(name);",
    )
    .unwrap();
    conn
}

/// One transaction of inserts, updates and deletes.
pub fn write_round(conn: &mut Connection, round: i64) {
    let tx = conn.transaction().unwrap();
    for i in 0..20 {
        let id = round * 20 + i;
        tx.execute(
            "INSERT INTO items (id, name, qty) VALUES (?1, ?2, ?3)",
            rusqlite::params![
                id,
                format!("item-{id}-{}", "x".repeat((id % 50) as usize)),
                id * 3
            ],
        )
        .unwrap();
    }
    tx.execute(
        "UPDATE items SET qty = qty + 1 WHERE id % 7 = ?1",
        [round % 7],
    )
    .unwrap();
    tx.execute(
        "DELETE FROM items WHERE id % 11 = ?1 AND id < ?2",
        rusqlite::params![round % 11, round * 10],
    )
    .unwrap();
    tx.commit().unwrap();
}
