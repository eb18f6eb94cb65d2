//! `/metrics`: Prometheus text, read fresh from the [`Board`] at every
//! scrape. Metrics that mean what Litestream's mean carry Litestream's
//! names and labels, so existing dashboards keep working; the others are
//! `replica_*`. README's "Metrics" lists every one.

use prometheus::{CounterVec, Encoder, GaugeVec, Opts, Registry, TextEncoder};
use replica::metered::Operation;

use super::Board;

/// A family being filled: its values are set, then it is registered.
struct Family<'r> {
    registry: &'r Registry,
}

impl Family<'_> {
    fn gauge(&self, name: &str, help: &str, labels: &[&str]) -> GaugeVec {
        let g = GaugeVec::new(Opts::new(name, help), labels).expect("a valid metric");
        self.registry
            .register(Box::new(g.clone()))
            .expect("each metric is registered once");
        g
    }

    fn counter(&self, name: &str, help: &str, labels: &[&str]) -> CounterVec {
        let c = CounterVec::new(Opts::new(name, help), labels).expect("a valid metric");
        self.registry
            .register(Box::new(c.clone()))
            .expect("each metric is registered once");
        c
    }
}

/// Litestream 0.5's `replica_type` for a backend kind: Azure is `abs`,
/// Google Cloud Storage `gs`; the others are named alike.
fn replica_type(kind: &'static str) -> &'static str {
    match kind {
        "azure" => "abs",
        "gcs" => "gs",
        other => other,
    }
}

/// The Prometheus text of everything the board knows, now.
pub(crate) fn render(board: &Board) -> String {
    let registry = Registry::new();
    let f = Family {
        registry: &registry,
    };
    let db = &["db"];
    let replica = &["db", "name"];
    let db_size = f.gauge("litestream_db_size", "The current size of the real DB", db);
    let wal_size = f.gauge(
        "litestream_wal_size",
        "The current size of the real WAL",
        db,
    );
    let wal_bytes = f.counter(
        "litestream_total_wal_bytes",
        "Total number of bytes written to shadow WAL",
        db,
    );
    let shadow_index = f.gauge(
        "litestream_shadow_wal_index",
        "The current index of the shadow WAL",
        db,
    );
    let shadow_size = f.gauge(
        "litestream_shadow_wal_size",
        "Current size of shadow WAL, in bytes",
        db,
    );
    let sync_count = f.counter(
        "litestream_sync_count",
        "Number of sync operations performed",
        db,
    );
    let sync_errors = f.counter(
        "litestream_sync_error_count",
        "Number of sync errors that have occurred",
        db,
    );
    let sync_seconds = f.counter(
        "litestream_sync_seconds",
        "Time spent syncing shadow WAL, in seconds",
        db,
    );
    let modes = &["db", "mode"];
    let cp_count = f.counter(
        "litestream_checkpoint_count",
        "Number of checkpoint operations performed",
        modes,
    );
    let cp_errors = f.counter(
        "litestream_checkpoint_error_count",
        "Number of checkpoint errors that have occurred",
        modes,
    );
    let cp_seconds = f.counter(
        "litestream_checkpoint_seconds",
        "Time spent checkpointing WAL, in seconds",
        modes,
    );
    let frames = f.counter(
        "replica_wal_frames",
        "WAL frames copied into the shadow WAL",
        db,
    );
    let healthy = f.gauge(
        "replica_db_healthy",
        "1 while the database is healthy (as /healthz judges it), else 0",
        db,
    );
    let released = f.gauge(
        "replica_db_released",
        "1 while the database is released (idle: its connections and files closed until its WAL changes)",
        db,
    );
    let releases = f.counter(
        "replica_db_releases",
        "Times the database was released when idle",
        db,
    );
    let r_bytes = f.counter(
        "litestream_replica_wal_bytes",
        "The number wal bytes written",
        replica,
    );
    let r_index = f.gauge(
        "litestream_replica_wal_index",
        "The current WAL index",
        replica,
    );
    let r_offset = f.gauge(
        "litestream_replica_wal_offset",
        "The current WAL offset",
        replica,
    );
    let txid = f.gauge(
        "litestream_txid",
        "The newest TXID written to the database's LTX replicas",
        db,
    );
    let r_txid = f.gauge(
        "replica_replica_txid",
        "The newest TXID an LTX replica holds",
        replica,
    );
    let r_lag = f.gauge(
        "replica_replica_lag_seconds",
        "How far the replica is behind the database (0 when it holds everything)",
        replica,
    );
    let r_last = f.gauge(
        "replica_replica_last_sync_timestamp_seconds",
        "When the replica's last successful sync ended (Unix time)",
        replica,
    );
    let r_syncs = f.counter(
        "replica_replica_sync_count",
        "Sync rounds the replica has made",
        replica,
    );
    let r_errors = f.counter(
        "replica_replica_sync_error_count",
        "Sync rounds of the replica that failed",
        replica,
    );
    let ops = &["replica_type", "operation"];
    let op_total = f.counter(
        "litestream_replica_operation_total",
        "The number of replica operations performed",
        ops,
    );
    let op_bytes = f.counter(
        "litestream_replica_operation_bytes",
        "The number of bytes used by replica operations",
        ops,
    );
    let op_errors = f.counter(
        "litestream_replica_operation_errors_total",
        "The number of replica operation errors",
        &["replica_type", "operation", "code"],
    );

    for report in board.reports() {
        healthy
            .with_label_values(&[report.path.as_str()])
            .set(f64::from(u8::from(report.healthy)));
    }
    for (path, status) in board.statuses() {
        let path = path.display().to_string();
        let l = &[path.as_str()];
        db_size.with_label_values(l).set(status.db_size as f64);
        released
            .with_label_values(l)
            .set(f64::from(u8::from(status.released)));
        releases.with_label_values(l).inc_by(status.releases as f64);
        wal_size.with_label_values(l).set(status.wal_size as f64);
        wal_bytes
            .with_label_values(l)
            .inc_by(status.wal_bytes as f64);
        frames.with_label_values(l).inc_by(status.wal_frames as f64);
        shadow_index
            .with_label_values(l)
            .set(status.shadow.0 as f64);
        shadow_size.with_label_values(l).set(status.shadow.1 as f64);
        sync_count
            .with_label_values(l)
            .inc_by(status.sync.count as f64);
        sync_errors
            .with_label_values(l)
            .inc_by(status.sync.errors as f64);
        sync_seconds
            .with_label_values(l)
            .inc_by(status.sync.seconds);
        for (mode, work) in &status.checkpoints {
            let l = &[path.as_str(), mode.name()];
            cp_count.with_label_values(l).inc_by(work.count as f64);
            cp_errors.with_label_values(l).inc_by(work.errors as f64);
            cp_seconds.with_label_values(l).inc_by(work.seconds);
        }
        if let Some(newest) = status.replicas.iter().filter_map(|r| r.txid).max() {
            txid.with_label_values(l).set(newest as f64);
        }
        for r in &status.replicas {
            let l = &[path.as_str(), r.name.as_str()];
            r_bytes.with_label_values(l).inc_by(r.wal_bytes as f64);
            if let Some(pos) = &r.pos {
                r_index.with_label_values(l).set(pos.index as f64);
                r_offset.with_label_values(l).set(pos.offset as f64);
            }
            if let Some(t) = r.txid {
                r_txid.with_label_values(l).set(t as f64);
            }
            r_lag.with_label_values(l).set(r.lag.as_secs_f64());
            if let Some(t) = r.last_sync {
                let unix = t
                    .duration_since(std::time::UNIX_EPOCH)
                    .unwrap_or_default()
                    .as_secs_f64();
                r_last.with_label_values(l).set(unix);
            }
            r_syncs.with_label_values(l).inc_by(r.sync.count as f64);
            r_errors.with_label_values(l).inc_by(r.sync.errors as f64);
        }
    }
    for (kind, meter) in board.meters().all() {
        let kind = replica_type(kind);
        for op in Operation::ALL {
            let counts = meter.counts(op);
            let l = &[kind, op.name()];
            op_total.with_label_values(l).inc_by(counts.total as f64);
            op_bytes.with_label_values(l).inc_by(counts.bytes as f64);
        }
        for (op, code, n) in meter.errors() {
            op_errors
                .with_label_values(&[kind, op.name(), code])
                .inc_by(n as f64);
        }
    }
    let mut out = Vec::new();
    TextEncoder::new()
        .encode(&registry.gather(), &mut out)
        .expect("the text encoder writes to memory");
    String::from_utf8(out).expect("Prometheus text is UTF-8")
}
