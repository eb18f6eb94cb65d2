//! Helpers shared by the tests that use the real Litestream 0.3.13 and
//! `sqlite3`: finding the tools, a live write load, Litestream replicating
//! it, listing and restoring.
#![allow(dead_code, unreachable_pub)] // each test binary uses a different part

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command as Process, Stdio};
use std::time::{Duration, Instant};

use assert_cmd::Command;

pub fn replica() -> Command {
    Command::cargo_bin("replica").expect("binary built")
}

/// The `litestream` binary, or `None` (with a loud note) when it is missing
/// and not required.
pub fn litestream() -> Option<PathBuf> {
    let found = std::env::var_os("REPLICA_LITESTREAM")
        .map(PathBuf::from)
        .or_else(|| {
            std::env::var_os("PATH").and_then(|paths| {
                std::env::split_paths(&paths)
                    .map(|p| p.join("litestream"))
                    .find(|p| p.is_file())
            })
        });
    match found {
        Some(path) => Some(path),
        None if std::env::var_os("REPLICA_REQUIRE_LITESTREAM").is_some() => {
            panic!("REPLICA_REQUIRE_LITESTREAM is set but no litestream binary was found")
        }
        None => {
            eprintln!("!!! litestream interop SKIPPED: no litestream binary (see .ci/run)");
            None
        }
    }
}

/// The S3 settings of `.ci/run`: (bucket, endpoint), or `None` when absent
/// and not required.
pub fn s3_settings() -> Option<(String, String)> {
    match (
        std::env::var("REPLICA_S3_BUCKET"),
        std::env::var("AWS_ENDPOINT"),
    ) {
        (Ok(bucket), Ok(endpoint)) => Some((bucket, endpoint)),
        _ if std::env::var_os("REPLICA_REQUIRE_S3").is_some() => {
            panic!("REPLICA_REQUIRE_S3 is set but REPLICA_S3_BUCKET/AWS_ENDPOINT are not")
        }
        _ => {
            eprintln!("!!! litestream S3 interop SKIPPED: no S3 server configured (see .ci/run)");
            None
        }
    }
}

/// Runs `sqlite3` on `db` and returns its stdout.
pub fn sqlite3(db: &Path, sql: &str) -> String {
    let out = Process::new("sqlite3")
        .arg(db)
        .arg(sql)
        .output()
        .expect("sqlite3 on PATH");
    assert!(
        out.status.success(),
        "sqlite3 {sql}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("UTF-8")
}

/// Every row, in order, as `sqlite3` prints them.
pub fn rows(db: &Path) -> String {
    sqlite3(
        db,
        "SELECT id, customer, item, qty, price FROM orders ORDER BY id",
    )
}

/// A database in WAL mode with an indexed table of realistic rows.
pub fn create_source(db: &Path) -> rusqlite::Connection {
    let conn = rusqlite::Connection::open(db).unwrap();
    conn.pragma_update(None, "journal_mode", "wal").unwrap();
    conn.execute_batch(
        "CREATE TABLE orders (
             id INTEGER PRIMARY KEY,
             customer TEXT NOT NULL,
             item TEXT NOT NULL,
             qty INTEGER NOT NULL,
             price REAL NOT NULL
         );
         CREATE INDEX orders_customer ON orders(customer);",
    )
    .unwrap();
    conn
}

/// One round of the write load: inserts, updates and deletes in one transaction.
pub fn write_round(conn: &mut rusqlite::Connection, round: u64) {
    const ITEMS: [&str; 6] = [
        "espresso beans, 1 kg",
        "paper filters (100)",
        "ceramic mug, blue",
        "hand grinder with steel burrs",
        "gooseneck kettle 0.9 l",
        "oat milk, barista edition",
    ];
    let tx = conn.transaction().unwrap();
    for i in 0..150u64 {
        let n = round * 150 + i;
        tx.execute(
            "INSERT INTO orders (customer, item, qty, price) VALUES (?1, ?2, ?3, ?4)",
            rusqlite::params![
                format!("customer-{:05} <c{}@example.com>", n % 997, n % 997),
                format!(
                    "{} — note: {}",
                    ITEMS[(n % 6) as usize],
                    "please ring twice ".repeat((n % 4) as usize)
                ),
                (n % 9 + 1) as i64,
                (n % 5000) as f64 / 100.0 + 0.99,
            ],
        )
        .unwrap();
    }
    tx.execute(
        "UPDATE orders SET qty = qty + 1 WHERE id % 11 = ?1",
        [(round % 11) as i64],
    )
    .unwrap();
    tx.execute(
        "DELETE FROM orders WHERE id % 17 = ?1 AND id < ?2",
        rusqlite::params![(round % 17) as i64, (round * 100) as i64],
    )
    .unwrap();
    tx.commit().unwrap();
}

/// `litestream replicate` with a config file, stopped by SIGTERM on [`stop`].
pub struct Replicating {
    child: Child,
    log: PathBuf,
}

impl Replicating {
    pub fn start(
        litestream: &Path,
        dir: &Path,
        db: &Path,
        checkpoints: Checkpoints,
        replica_yaml: &str,
    ) -> Self {
        let config = dir.join("litestream.yml");
        std::fs::write(
            &config,
            format!(
                "dbs:\n  - path: {}\n    monitor-interval: 50ms\n    checkpoint-interval: {}ms\n    \
                 min-checkpoint-page-count: {}\n    replicas:\n{replica_yaml}",
                db.display(),
                checkpoints.interval_ms,
                checkpoints.min_pages
            ),
        )
        .unwrap();
        let log = dir.join("litestream.log");
        let child = Process::new(litestream)
            .args(["replicate", "-config"])
            .arg(&config)
            .stdout(Stdio::from(std::fs::File::create(&log).unwrap()))
            .stderr(Stdio::from(
                std::fs::OpenOptions::new().append(true).open(&log).unwrap(),
            ))
            .spawn()
            .expect("litestream starts");
        Replicating { child, log }
    }

    /// SIGTERM (Litestream syncs one last time), then wait for the exit.
    pub fn stop(mut self) -> String {
        let pid = self.child.id() as libc::pid_t;
        // SAFETY: signalling the child this test started, by its PID.
        assert_eq!(unsafe { libc::kill(pid, libc::SIGTERM) }, 0);
        let started = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                let log = std::fs::read_to_string(&self.log).unwrap_or_default();
                assert!(status.success(), "litestream exited with {status}: {log}");
                return log;
            }
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "litestream did not stop within 30 s"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Replicating {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The source database of a live replication run.
pub struct Source {
    /// Its path.
    pub db: PathBuf,
    /// Its rows at the end.
    pub rows: String,
    /// Its rows after each committed round, in order (the states a
    /// point-in-time restore may land on).
    pub states: Vec<String>,
}

impl Source {
    /// Whether `rows` is one of the states the source passed through.
    pub fn passed_through(&self, rows: &str) -> bool {
        self.states.iter().any(|s| s == rows)
    }
}

/// How often Litestream checkpoints (and so starts a new WAL index).
#[derive(Debug, Clone, Copy)]
pub struct Checkpoints {
    /// `checkpoint-interval` in milliseconds.
    pub interval_ms: u64,
    /// `min-checkpoint-page-count`.
    pub min_pages: u64,
}

/// Frequent checkpoints: many WAL indexes of a few segments each.
pub const FREQUENT: Checkpoints = Checkpoints {
    interval_ms: 400,
    min_pages: 40,
};

/// Rare checkpoints: fewer WAL indexes of many segments each.
pub const RARE: Checkpoints = Checkpoints {
    interval_ms: 1000,
    min_pages: 400,
};

/// Replicates a live database with Litestream into the replica that
/// `replica_yaml` describes (frequent checkpoints, 36 rounds of writes).
pub fn replicate_live(litestream: &Path, dir: &Path, replica_yaml: &str) -> Source {
    replicate_with(litestream, dir, FREQUENT, replica_yaml)
}

/// [`replicate_live`] with chosen checkpoints.
pub fn replicate_with(
    litestream: &Path,
    dir: &Path,
    checkpoints: Checkpoints,
    replica_yaml: &str,
) -> Source {
    let rounds = 36;
    let db = dir.join("source.db");
    let mut conn = create_source(&db);
    let running = Replicating::start(litestream, dir, &db, checkpoints, replica_yaml);
    let mut states = vec![rows(&db)];
    for round in 0..rounds {
        write_round(&mut conn, round);
        states.push(rows(&db));
        std::thread::sleep(Duration::from_millis(60));
    }
    std::thread::sleep(Duration::from_millis(300));
    let log = running.stop();
    assert!(log.contains("wal segment written"), "{log}");
    drop(conn);
    Source {
        rows: states.last().cloned().expect("states"),
        db,
        states,
    }
}

/// The `replicas:` entry of a Litestream config for a file replica.
pub fn file_replica_yaml(replica_dir: &Path) -> String {
    format!(
        "      - url: file://{}\n        sync-interval: 100ms\n        snapshot-interval: 1s\n",
        replica_dir.display()
    )
}

/// The `replicas:` entry of a Litestream config for an S3 replica on the
/// server of `.ci/run` (credentials from the environment).
pub fn s3_replica_yaml(bucket: &str, path: &str, endpoint: &str) -> String {
    let region = std::env::var("AWS_REGION").unwrap_or_else(|_| "us-east-1".into());
    let key_id = std::env::var("AWS_ACCESS_KEY_ID").unwrap_or_else(|_| "test".into());
    let secret = std::env::var("AWS_SECRET_ACCESS_KEY").unwrap_or_else(|_| "test".into());
    format!(
        "      - type: s3\n        bucket: {bucket}\n        path: {path}\n        \
         endpoint: {endpoint}\n        region: {region}\n        force-path-style: true\n        \
         access-key-id: {key_id}\n        secret-access-key: {secret}\n        \
         sync-interval: 100ms\n        snapshot-interval: 1s\n"
    )
}

/// Object names (relative keys) and bytes under a directory.
pub fn files(root: &Path) -> BTreeMap<String, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut dirs = vec![root.to_owned()];
    while let Some(d) = dirs.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                dirs.push(p);
            } else {
                let rel = p.strip_prefix(root).unwrap().to_string_lossy().into_owned();
                out.insert(rel, std::fs::read(&p).unwrap());
            }
        }
    }
    out
}

pub fn run_ok(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{:?}: {}{}",
        cmd,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

pub fn json(text: &str) -> Vec<serde_json::Value> {
    serde_json::from_str::<serde_json::Value>(text)
        .expect("valid JSON")
        .as_array()
        .expect("an array")
        .clone()
}

/// What `replica snapshots|wal --json` lists, as Litestream 0.3 key names
/// (built here from the JSON numbers, independently of the library).
pub fn listed_keys(url: &str) -> Vec<String> {
    let mut keys = Vec::new();
    for row in json(&run_ok(replica().args(["snapshots", url, "--json"]))) {
        assert_eq!(row["layout"], "litestream-0.3");
        keys.push(format!(
            "generations/{}/snapshots/{:08x}.snapshot.lz4",
            row["generation"].as_str().unwrap(),
            row["index"].as_u64().unwrap()
        ));
    }
    for row in json(&run_ok(replica().args(["wal", url, "--json"]))) {
        keys.push(format!(
            "generations/{}/wal/{:08x}_{:08x}.wal.lz4",
            row["generation"].as_str().unwrap(),
            row["index"].as_u64().unwrap(),
            row["offset"].as_u64().unwrap()
        ));
    }
    keys.sort();
    keys
}

/// The replica holds what a live Litestream run makes: several WAL indexes
/// and more than one snapshot.
pub fn assert_rich(keys: &[String]) {
    let indexes: std::collections::BTreeSet<&str> = keys
        .iter()
        .filter_map(|k| k.split("/wal/").nth(1))
        .map(|name| &name[..8])
        .collect();
    let snapshots = keys.iter().filter(|k| k.contains("/snapshots/")).count();
    assert!(
        indexes.len() >= 3 && snapshots >= 2,
        "a thin replica: {} indexes, {snapshots} snapshots: {keys:?}",
        indexes.len()
    );
}

/// `litestream restore` of `url` gives `expected` rows and a sound database.
pub fn assert_litestream_restores(litestream: &Path, dir: &Path, url: &str, expected: &str) {
    let out = dir.join(format!("restored-{:08x}.db", rand::random::<u32>()));
    let status = Process::new(litestream)
        .args(["restore", "-o"])
        .arg(&out)
        .arg(url)
        .output()
        .unwrap();
    assert!(
        status.status.success(),
        "litestream restore {url}: {}",
        String::from_utf8_lossy(&status.stderr)
    );
    assert_eq!(sqlite3(&out, "PRAGMA integrity_check"), "ok\n");
    assert!(
        rows(&out) == expected,
        "restored rows differ from the source"
    );
}

/// Every object below `prefix` in the bucket, read with `object_store`
/// directly (not through replica's backends), keyed relative to the prefix.
pub fn bucket_objects(bucket: &str, prefix: &str) -> BTreeMap<String, Vec<u8>> {
    use futures::TryStreamExt;
    use object_store::{ObjectStore, ObjectStoreExt};
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let store = object_store::aws::AmazonS3Builder::from_env()
            .with_bucket_name(bucket)
            .build()
            .unwrap();
        let base = object_store::path::Path::from(prefix);
        let metas: Vec<_> = store.list(Some(&base)).try_collect().await.unwrap();
        let mut out = BTreeMap::new();
        for meta in metas {
            let rel = meta.location.as_ref()[prefix.len() + 1..].to_owned();
            let data = store
                .get(&meta.location)
                .await
                .unwrap()
                .bytes()
                .await
                .unwrap();
            out.insert(rel, data.to_vec());
        }
        out
    })
}

/// `litestream restore` from an S3 replica, configured as a user would:
/// a config file naming the replica's bucket, path and endpoint.
pub fn assert_litestream_restores_s3(
    litestream: &Path,
    dir: &Path,
    bucket: &str,
    path: &str,
    expected: &str,
) {
    let endpoint = std::env::var("AWS_ENDPOINT").unwrap();
    let config = dir.join("restore.yml");
    let out = dir.join("restored-from-s3.db");
    std::fs::write(
        &config,
        format!(
            "dbs:\n  - path: {}\n    replicas:\n      - type: s3\n        bucket: {bucket}\n        \
             path: {path}\n        endpoint: {endpoint}\n        region: us-east-1\n        \
             force-path-style: true\n",
            out.display()
        ),
    )
    .unwrap();
    let status = Process::new(litestream)
        .args(["restore", "-config"])
        .arg(&config)
        .arg(&out)
        .output()
        .unwrap();
    assert!(
        status.status.success(),
        "litestream restore from s3://{bucket}/{path}: {}",
        String::from_utf8_lossy(&status.stderr)
    );
    assert_eq!(sqlite3(&out, "PRAGMA integrity_check"), "ok\n");
    assert!(
        rows(&out) == expected,
        "restored rows differ from the source"
    );
}

/// `replica replicate ...` running in the background, logging JSON.
pub struct Running {
    pub child: Child,
    pub log: PathBuf,
}

impl Running {
    pub fn start(dir: &Path, args: &[&str]) -> Running {
        Running::start_env(dir, args, &[])
    }

    /// [`Running::start`] with `env` added to the child's environment.
    pub fn start_env(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Running {
        let log = dir.join(format!("replicate-{:08x}.log", rand::random::<u32>()));
        let file = std::fs::File::create(&log).unwrap();
        let child = Process::new(assert_cmd::cargo::cargo_bin("replica"))
            .envs(env.iter().copied())
            .arg("replicate")
            .args(args)
            .args(["--log-format", "json"])
            .stdout(Stdio::null())
            .stderr(Stdio::from(file))
            .spawn()
            .expect("replica starts");
        let running = Running { child, log };
        running.wait_for("replicating");
        running
    }

    pub fn text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn wait_for(&self, needle: &str) {
        self.wait_for_within(needle, Duration::from_secs(30));
    }

    pub fn wait_for_within(&self, needle: &str, limit: Duration) {
        let started = Instant::now();
        while !self.text().contains(needle) {
            assert!(
                started.elapsed() < limit,
                "no {needle:?} within {limit:?}: {}",
                self.text()
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    pub fn signal(&self, signal: libc::c_int) {
        // SAFETY: signalling the child this test started, by its PID.
        assert_eq!(
            unsafe { libc::kill(self.child.id() as libc::pid_t, signal) },
            0
        );
    }

    /// SIGTERM: a final sync, then exit 0.
    pub fn stop(mut self) -> String {
        self.signal(libc::SIGTERM);
        let status = self.child.wait().unwrap();
        let log = self.text();
        assert!(
            status.success(),
            "replica replicate exited with {status}: {log}"
        );
        log
    }

    /// SIGKILL: no final anything.
    pub fn kill(mut self) -> String {
        self.signal(libc::SIGKILL);
        let _ = self.child.wait();
        self.text()
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub const QUICK: &[&str] = &[
    "--monitor-interval",
    "30ms",
    "--sync-interval",
    "30ms",
    "--checkpoint-interval",
    "400ms",
    "--min-checkpoint-page-count",
    "60",
];

/// The latest `through` time of an `event` ("wal shipped", "ltx shipped"):
/// every transaction committed before it is in the replica.
pub fn shipped_through(log: &str, event: &str) -> Option<chrono::DateTime<chrono::Utc>> {
    log.lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .filter(|v| v["message"] == event)
        .filter_map(|v| v["through"].as_str().and_then(|t| t.parse().ok()))
        .max()
}

/// The `litestream` 0.5.17 binary, or `None` (loudly) when it is missing
/// and not required.
pub fn litestream05() -> Option<PathBuf> {
    match std::env::var_os("REPLICA_LITESTREAM_05").map(PathBuf::from) {
        Some(path) => Some(path),
        None if std::env::var_os("REPLICA_REQUIRE_LITESTREAM").is_some() => {
            panic!("REPLICA_REQUIRE_LITESTREAM is set but REPLICA_LITESTREAM_05 is not")
        }
        None => {
            eprintln!(
                "!!! litestream 0.5 interop SKIPPED: set REPLICA_LITESTREAM_05 (see .ci/run)"
            );
            None
        }
    }
}

/// `replica restore URL -o OUT ARGS --integrity-check`, which must succeed.
pub fn ours(url: &str, out: &Path, args: &[&str]) {
    run_ok(
        replica()
            .args(["restore", url, "-o"])
            .arg(out)
            .args(args)
            .arg("--integrity-check"),
    );
}

/// `litestream restore -o OUT ARGS URL` (litestream 0.5, `AWS_CA_BUNDLE`
/// removed: with it set, its S3 client refuses to start), which must
/// succeed with a database passing `PRAGMA integrity_check`.
pub fn theirs(bin: &Path, url: &str, out: &Path, args: &[&str]) {
    let status = Process::new(bin)
        .env_remove("AWS_CA_BUNDLE")
        .args(["restore", "-o"])
        .arg(out)
        .args(args)
        .arg(url)
        .output()
        .unwrap();
    assert!(
        status.status.success(),
        "litestream restore {args:?} {url}: {}",
        String::from_utf8_lossy(&status.stderr)
    );
    assert_eq!(sqlite3(out, "PRAGMA integrity_check"), "ok\n");
}

/// A TCP proxy to the S3 server that can cut every connection and refuse
/// new ones for a while: an outage as the replicator sees it.
pub struct Proxy {
    pub port: u16,
    down: std::sync::Arc<std::sync::atomic::AtomicBool>,
    open: std::sync::Arc<std::sync::Mutex<Vec<std::net::TcpStream>>>,
}

impl Proxy {
    pub fn start(upstream: String) -> Proxy {
        use std::sync::atomic::Ordering;
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let down = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let open = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let (d, o) = (down.clone(), open.clone());
        std::thread::spawn(move || {
            for client in listener.incoming() {
                let Ok(client) = client else { continue };
                let Ok(server) = std::net::TcpStream::connect(&upstream) else {
                    continue;
                };
                {
                    // Checked under the lock `cut` takes: a connection
                    // accepted while it cuts is refused, never left open.
                    let mut open = o.lock().unwrap();
                    if d.load(Ordering::SeqCst) {
                        drop((client, server));
                        continue;
                    }
                    open.push(client.try_clone().unwrap());
                    open.push(server.try_clone().unwrap());
                }
                for (mut from, mut to) in [
                    (client.try_clone().unwrap(), server.try_clone().unwrap()),
                    (server, client),
                ] {
                    std::thread::spawn(move || {
                        let _ = std::io::copy(&mut from, &mut to);
                        let _ = to.shutdown(std::net::Shutdown::Both);
                    });
                }
            }
        });
        Proxy { port, down, open }
    }

    /// Cuts every connection and refuses new ones until `restore`.
    pub fn cut(&self) {
        let mut open = self.open.lock().unwrap();
        self.down.store(true, std::sync::atomic::Ordering::SeqCst);
        for stream in open.drain(..) {
            let _ = stream.shutdown(std::net::Shutdown::Both);
        }
    }

    pub fn restore(&self) {
        self.down.store(false, std::sync::atomic::Ordering::SeqCst);
    }
}

/// Replicates a database under load into the S3 URL `url_of(proxy port)`
/// through a [`Proxy`] to `endpoint`, cut for 10 s in the middle of the
/// load; waits (up to `catch_up`) for the replica to be reachable again,
/// writes a little more and stops. Returns the source database and the log.
pub fn replicate_through_an_outage(
    dir: &Path,
    endpoint: &str,
    url_of: impl Fn(u16) -> String,
    shipped: &str,
    catch_up: Duration,
) -> (PathBuf, String) {
    let upstream = endpoint
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .to_owned();
    let proxy = Proxy::start(upstream);
    let url = url_of(proxy.port);
    let db = dir.join("source.db");
    let mut conn = create_source(&db);
    let mut args = vec![db.to_str().unwrap(), url.as_str()];
    args.extend_from_slice(QUICK);
    let running = Running::start(dir, &args);
    let mut round = 0;
    let mut write_for = |conn: &mut rusqlite::Connection, duration: Duration| {
        let until = Instant::now() + duration;
        while Instant::now() < until {
            write_round(conn, round);
            round += 1;
            std::thread::sleep(Duration::from_millis(50));
        }
    };
    write_for(&mut conn, Duration::from_secs(1));
    running.wait_for(shipped);
    proxy.cut();
    write_for(&mut conn, Duration::from_secs(10));
    proxy.restore();
    running.wait_for_within("replica reachable again", catch_up);
    write_for(&mut conn, Duration::from_secs(1));
    let log = running.stop();
    assert!(
        log.contains("sync failed; retrying"),
        "no outage seen: {log}"
    );
    // The HTTP client's own retry notes are not logged (they were 30 INFO
    // lines in 15 s); ours say it once per failed sync.
    assert!(
        !log.contains("backing off for"),
        "object_store's retry lines leaked into the log: {log}"
    );
    (db, log)
}
