//! A realistic database for the benchmarks: orders of a small shop, with
//! text and numbers and two indexes (not synthetic byte patterns).

use std::path::Path;

const ITEMS: [&str; 8] = [
    "espresso beans, single origin, 1 kg bag",
    "paper filters, size 4, pack of 100",
    "ceramic mug, glazed blue, 350 ml",
    "hand grinder with conical steel burrs",
    "gooseneck kettle, 0.9 l, temperature control",
    "oat milk, barista edition, 1 l",
    "descaling tablets, 12 pack",
    "travel tumbler, insulated, 470 ml",
];
const NAMES: [&str; 5] = ["Smith", "Garcia", "Chen", "Okafor", "Novak"];

/// Creates the `orders` table and its indexes.
pub(crate) fn create_schema(conn: &rusqlite::Connection) {
    conn.execute_batch(
        "CREATE TABLE orders (id INTEGER PRIMARY KEY, customer TEXT NOT NULL, email TEXT NOT NULL,
            item TEXT NOT NULL, note TEXT NOT NULL, qty INTEGER NOT NULL, price REAL NOT NULL,
            created INTEGER NOT NULL);
         CREATE INDEX orders_customer ON orders(customer);
         CREATE INDEX orders_created ON orders(created);",
    )
    .expect("schema");
}

/// Inserts `count` orders numbered from `first`.
pub(crate) fn insert_orders(conn: &rusqlite::Connection, first: u64, count: u64) {
    let mut insert = conn
        .prepare_cached(
            "INSERT INTO orders (customer, email, item, note, qty, price, created)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        )
        .expect("prepare");
    for n in first..first + count {
        // An order of 25 lines per customer: a transaction touches a few
        // places of the customer index, not hundreds.
        let c = (n / 25 * 7919) % 50_021;
        insert
            .execute(rusqlite::params![
                format!("Customer {c:05} {}", NAMES[(c % 5) as usize]),
                format!("customer{c}@example.org"),
                ITEMS[(n % 8) as usize],
                if n % 3 == 0 {
                    "leave at the door, ring twice"
                } else {
                    ""
                },
                (n % 6 + 1) as i64,
                ((n * 37) % 9_000) as f64 / 100.0 + 1.5,
                1_700_000_000 + n as i64 * 17,
            ])
            .expect("insert");
    }
}

/// Builds a database of at least `bytes` at `path` (rollback journal, no
/// fsync: only its content matters).
pub(crate) fn build_database(path: &Path, bytes: u64) {
    let mut conn = rusqlite::Connection::open(path).expect("open");
    conn.pragma_update(None, "synchronous", "OFF")
        .expect("pragma");
    create_schema(&conn);
    let mut next = 0;
    while std::fs::metadata(path).map_or(0, |m| m.len()) < bytes {
        let tx = conn.transaction().expect("begin");
        insert_orders(&tx, next, 50_000);
        tx.commit().expect("commit");
        next += 50_000;
    }
}
