//! Running `replica replicate` in production, through the real binary: a
//! Litestream config's `addr` serves Prometheus metrics under Litestream's
//! names, `/healthz` and `/status` (read by `replica status`); the
//! `heartbeat-url` is pinged only while every database is healthy; the
//! `logging` section is honoured.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Command as Process, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

mod common;
use common::{create_source, replica, rows, write_round, Running};

/// A port free on 127.0.0.1 a moment ago.
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// `GET path` on `addr`: the status code and the body.
fn get(addr: &str, path: &str) -> (u16, String) {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    let code = response
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = response
        .split_once("\r\n\r\n")
        .map_or("", |(_, b)| b)
        .to_owned();
    (code, body)
}

/// The value of the sample `name{labels}` in Prometheus text.
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .and_then(|v| v.trim().parse().ok())
}

/// A local HTTP server counting the requests it answers (200 to each).
fn ping_counter() -> (String, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/ping", listener.local_addr().unwrap());
    let count = Arc::new(AtomicUsize::new(0));
    let seen = count.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut line = String::new();
            let _ = BufReader::new(&stream).read_line(&mut line);
            if line.starts_with("GET /ping") {
                seen.fetch_add(1, Ordering::SeqCst);
            }
            let _ = stream.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n");
        }
    });
    (url, count)
}

/// Waits (at most `limit`) until `check` holds, writing a round to `conn`
/// every 100 ms meanwhile.
fn write_until(
    conn: &mut rusqlite::Connection,
    limit: Duration,
    what: &str,
    mut check: impl FnMut() -> bool,
) {
    let started = Instant::now();
    let mut round = 1000 + rand::random::<u16>() as u64;
    while !check() {
        assert!(started.elapsed() < limit, "not {what} within {limit:?}");
        write_round(conn, round);
        round += 1;
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn wait_until(limit: Duration, what: &str, mut check: impl FnMut() -> bool) {
    let started = Instant::now();
    while !check() {
        assert!(started.elapsed() < limit, "not {what} within {limit:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The replica directory made unwritable (a file in its place), and back.
fn break_replica(root: &Path) {
    std::fs::rename(root, root.with_extension("away")).unwrap();
    std::fs::write(root, b"not a directory").unwrap();
}

fn mend_replica(root: &Path) {
    std::fs::remove_file(root).unwrap();
    std::fs::rename(root.with_extension("away"), root).unwrap();
}

/// Metrics move as the database is written, under Litestream's names;
/// `/healthz` and `replica status` tell a healthy replicator; a replica
/// that cannot be written turns `/healthz` to 503 naming the database, and
/// it turns back to 200 once the replica can be written again. The
/// heartbeat is pinged while healthy, never while not.
#[test]
fn metrics_health_status_and_heartbeat_follow_the_replication() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("app.db");
    let mut conn = create_source(&db);
    let root = dir.path().join("replica");
    let addr = format!("127.0.0.1:{}", free_port());
    let (ping_url, pings) = ping_counter();
    let cfg = dir.path().join("litestream.yml");
    std::fs::write(
        &cfg,
        format!(
            "addr: \"{addr}\"\nheartbeat-url: {ping_url}\nheartbeat-interval: 1s\ndbs:\n  - path: {}\n    monitor-interval: 50ms\n    replicas:\n      - url: file://{}\n        sync-interval: 50ms\n",
            db.display(),
            root.display()
        ),
    )
    .unwrap();
    let running = Running::start(dir.path(), &["-config", cfg.to_str().unwrap()]);
    running.wait_for("serving metrics");
    let label = format!("{{db=\"{}\"}}", db.display());
    let put = "litestream_replica_operation_total{operation=\"PUT\",replica_type=\"file\"}";
    let series = [
        format!("litestream_db_size{label}"),
        format!("litestream_wal_size{label}"),
        format!("litestream_sync_count{label}"),
        put.to_owned(),
    ];
    let mut first = String::new();
    wait_until(Duration::from_secs(20), "every series above zero", || {
        first = get(&addr, "/metrics").1;
        series
            .iter()
            .all(|name| sample(&first, name).is_some_and(|v| v > 0.0))
    });
    assert!(
        first.contains("# TYPE litestream_total_wal_bytes counter"),
        "{first}"
    );
    assert!(first.contains("# TYPE litestream_db_size gauge"), "{first}");
    let wal_bytes = format!("litestream_total_wal_bytes{label}");
    let before = (
        sample(&first, &wal_bytes).unwrap(),
        sample(&first, put).unwrap(),
    );
    write_until(&mut conn, Duration::from_secs(20), "metrics moving", || {
        let now = get(&addr, "/metrics").1;
        sample(&now, &wal_bytes).unwrap() > before.0 && sample(&now, put).unwrap() > before.1
    });

    let (code, body) = get(&addr, "/healthz");
    assert_eq!(code, 200, "{body}");
    assert!(body.contains("\"status\":\"ok\""), "{body}");
    wait_until(Duration::from_secs(10), "pinged while healthy", || {
        pings.load(Ordering::SeqCst) >= 2
    });
    let status = replica()
        .args(["status", "--config", cfg.to_str().unwrap(), "--json"])
        .output()
        .unwrap();
    assert!(
        status.status.success(),
        "{}",
        String::from_utf8_lossy(&status.stderr)
    );
    let reports: serde_json::Value = serde_json::from_slice(&status.stdout).unwrap();
    assert_eq!(reports[0]["path"], db.display().to_string());
    assert_eq!(reports[0]["state"], "replicating");
    assert_eq!(reports[0]["healthy"], true);
    assert_eq!(reports[0]["replicas"][0]["name"], "file");
    let table = replica()
        .args(["status", "--addr", &addr])
        .output()
        .unwrap();
    let table = String::from_utf8_lossy(&table.stdout).into_owned();
    assert!(
        table.contains("replicating") && table.contains(&db.display().to_string()),
        "{table}"
    );
    let other = replica()
        .args(["status", "--addr", &addr, "/elsewhere.db"])
        .output()
        .unwrap();
    assert!(!other.status.success());
    let said = String::from_utf8_lossy(&other.stderr);
    assert!(said.contains("does not replicate /elsewhere.db"), "{said}");

    // The replica cannot be written: behind, then unhealthy (past the
    // 10 s bound), and no pings meanwhile.
    break_replica(&root);
    write_until(&mut conn, Duration::from_secs(40), "unhealthy", || {
        get(&addr, "/healthz").0 == 503
    });
    let (_, body) = get(&addr, "/healthz");
    assert!(
        body.contains(&db.display().to_string()) && body.contains("behind"),
        "{body}"
    );
    let metrics = get(&addr, "/metrics").1;
    assert_eq!(
        sample(&metrics, &format!("replica_db_healthy{label}")),
        Some(0.0)
    );
    let errors = format!(
        "replica_replica_sync_error_count{{db=\"{}\",name=\"file\"}}",
        db.display()
    );
    assert!(
        sample(&metrics, &errors).is_some_and(|v| v > 0.0),
        "{metrics}"
    );
    std::thread::sleep(Duration::from_millis(1500));
    let quiet = pings.load(Ordering::SeqCst);
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(
        pings.load(Ordering::SeqCst),
        quiet,
        "pinged while unhealthy"
    );
    let status = replica()
        .args(["status", "--addr", &addr])
        .output()
        .unwrap();
    let table = String::from_utf8_lossy(&status.stdout).into_owned();
    assert!(table.contains("unhealthy"), "{table}");

    // Writable again: healthy again, pinged again.
    mend_replica(&root);
    write_until(&mut conn, Duration::from_secs(30), "healthy again", || {
        get(&addr, "/healthz").0 == 200
    });
    wait_until(Duration::from_secs(10), "pinged again", || {
        pings.load(Ordering::SeqCst) > quiet
    });
    drop(conn);
    running.stop();
    let out = dir.path().join("restored.db");
    common::ours(root.to_str().unwrap(), &out, &[]);
    assert_eq!(rows(&out), rows(&db));
}

/// `logging: {level: warn, type: json, stderr: false}`: JSON lines on
/// stdout at warn and above only, nothing on stderr.
#[test]
fn the_logging_section_sets_level_type_and_stream() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("app.db");
    drop(create_source(&db));
    let later = dir.path().join("later.db");
    let cfg = dir.path().join("litestream.yml");
    let mut text = String::from("logging:\n  level: warn\n  type: json\n  stderr: false\ndbs:\n");
    for path in [&db, &later] {
        text.push_str(&format!(
            "  - path: {}\n    replicas:\n      - url: file://{}-replica\n",
            path.display(),
            path.display()
        ));
    }
    std::fs::write(&cfg, text).unwrap();
    let (out, err) = (dir.path().join("stdout"), dir.path().join("stderr"));
    let mut child = Process::new(assert_cmd::cargo::cargo_bin("replica"))
        .args(["replicate", "-config", cfg.to_str().unwrap()])
        .stdout(Stdio::from(std::fs::File::create(&out).unwrap()))
        .stderr(Stdio::from(std::fs::File::create(&err).unwrap()))
        .spawn()
        .unwrap();
    let read = |p: &Path| std::fs::read_to_string(p).unwrap_or_default();
    wait_until(Duration::from_secs(20), "the warning on stdout", || {
        read(&out).contains("does not exist yet")
    });
    // The first database replicates meanwhile (its snapshot is written).
    wait_until(Duration::from_secs(20), "the first snapshot", || {
        dir.path().join("app.db-replica").exists()
    });
    // SAFETY: signalling the child this test started, by its PID.
    unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGTERM) };
    assert!(child.wait().unwrap().success());
    let stdout = read(&out);
    for line in stdout.lines() {
        let event: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"));
        let level = event["level"].as_str().unwrap_or_default();
        assert!(matches!(level, "WARN" | "ERROR"), "{line}");
    }
    assert_eq!(read(&err), "", "stderr holds no logs");
}

/// An `addr` that cannot be bound stops the start with the address named.
#[test]
fn an_addr_in_use_is_fatal_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("app.db");
    drop(create_source(&db));
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let out = replica()
        .args(["replicate", "--addr", &addr])
        .arg(&db)
        .arg(format!("file://{}/r", dir.path().display()))
        .timeout(Duration::from_secs(30))
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!("cannot serve metrics at {addr}")),
        "{stderr}"
    );
}

/// A Litestream 0.5 config with `addr`, `exec` and `logging` runs
/// unchanged: metrics are served (the LTX replica's TXID among them) while
/// the command runs, logs follow `logging`, and the exit status is the
/// command's after a final sync.
#[test]
fn a_litestream_05_config_with_addr_exec_and_logging_runs_unchanged() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("app.db");
    let mut conn = create_source(&db);
    write_round(&mut conn, 1);
    let addr = format!("127.0.0.1:{}", free_port());
    let root = dir.path().join("replica");
    let cfg = dir.path().join("litestream.yml");
    std::fs::write(
        &cfg,
        format!(
            "addr: \"{addr}\"\nexec: sh -c 'sleep 8; exit 5'\nlogging:\n  level: warn\n  type: json\n  stderr: true\ndbs:\n  - path: {}\n    replica:\n      url: file://{}\n",
            db.display(),
            root.display()
        ),
    )
    .unwrap();
    let err = dir.path().join("stderr");
    let mut child = Process::new(assert_cmd::cargo::cargo_bin("replica"))
        .args(["replicate", "-config", cfg.to_str().unwrap()])
        .stdout(Stdio::null())
        .stderr(Stdio::from(std::fs::File::create(&err).unwrap()))
        .spawn()
        .unwrap();
    let txid = format!("litestream_txid{{db=\"{}\"}}", db.display());
    wait_until(Duration::from_secs(7), "the TXID served", || {
        TcpStream::connect(&addr).is_ok()
            && sample(&get(&addr, "/metrics").1, &txid).is_some_and(|t| t >= 1.0)
    });
    assert_eq!(get(&addr, "/healthz").0, 200);
    write_round(&mut conn, 2);
    drop(conn);
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(5));
    let log = std::fs::read_to_string(&err).unwrap();
    for line in log.lines() {
        let event: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"));
        assert!(
            matches!(event["level"].as_str(), Some("WARN" | "ERROR")),
            "{line}"
        );
    }
    // The final sync shipped the last write.
    let out = dir.path().join("restored.db");
    common::ours(root.to_str().unwrap(), &out, &[]);
    assert_eq!(rows(&out), rows(&db));
}

/// The S3 server unreachable (a proxy cuts every connection): `/healthz`
/// turns 503 naming the database once the replica is past the bound, S3
/// request errors are counted under `replica_type="s3"`, and once the
/// server is back the replica catches up and `/healthz` is 200 again.
#[test]
fn healthz_follows_an_s3_outage_and_its_end() {
    let Some((bucket, endpoint)) = common::s3_settings() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let upstream = endpoint
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .to_owned();
    let proxy = common::Proxy::start(upstream);
    let url = format!(
        "s3://{bucket}/health-{:08x}?endpoint=http://127.0.0.1:{}&allow_http=true&timeout=2s",
        rand::random::<u32>(),
        proxy.port
    );
    let db = dir.path().join("app.db");
    let mut conn = create_source(&db);
    let addr = format!("127.0.0.1:{}", free_port());
    let mut args = vec![db.to_str().unwrap(), url.as_str(), "--addr", addr.as_str()];
    args.extend_from_slice(common::QUICK);
    let running = Running::start(dir.path(), &args);
    running.wait_for("wal shipped");
    assert_eq!(get(&addr, "/healthz").0, 200);
    proxy.cut();
    write_until(&mut conn, Duration::from_secs(60), "unhealthy", || {
        get(&addr, "/healthz").0 == 503
    });
    let (_, body) = get(&addr, "/healthz");
    assert!(
        body.contains(&db.display().to_string()) && body.contains("behind"),
        "{body}"
    );
    let metrics = get(&addr, "/metrics").1;
    let failed: f64 = metrics
        .lines()
        .filter(|l| {
            l.starts_with("litestream_replica_operation_errors_total{")
                && l.contains("replica_type=\"s3\"")
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum();
    assert!(failed > 0.0, "no S3 errors counted: {metrics}");
    proxy.restore();
    write_until(&mut conn, Duration::from_secs(90), "healthy again", || {
        get(&addr, "/healthz").0 == 200
    });
    drop(conn);
    running.stop();
}

/// `replica status` with nothing serving at the address says so, and what
/// to check; a config without `addr` asks for one.
#[test]
fn status_without_a_replicator_names_the_address_and_the_fix() {
    let addr = format!("127.0.0.1:{}", free_port());
    let out = replica()
        .args(["status", "--addr", &addr])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("no replicator answers") && stderr.contains(&addr),
        "{stderr}"
    );
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("litestream.yml");
    std::fs::write(
        &cfg,
        "dbs:\n  - path: /x.db\n    replicas:\n      - url: file:///r\n",
    )
    .unwrap();
    let out = replica()
        .args(["status", "--config", cfg.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("has no `addr`"), "{stderr}");
    assert!(out.stdout.is_empty());
}
