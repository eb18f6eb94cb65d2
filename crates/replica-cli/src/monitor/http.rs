//! The HTTP side: the server at `addr` (`/metrics`, `/healthz`, `/status`),
//! the heartbeat pings, and the `replica status` client.

use std::time::{Duration, Instant};

use axum::extract::State as Shared;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use tracing::{debug, info, warn};

use super::{health, Board, DbReport};
use crate::config::parse_addr;

/// Binds `addr` (`HOST:PORT`, `:PORT` for every interface): an address
/// that cannot be bound is an error at start, not a silent missing server.
pub(crate) async fn bind(addr: &str) -> Result<tokio::net::TcpListener, String> {
    let (host, port) = parse_addr(addr)?;
    let bound = if host.is_empty() {
        // Every interface, IPv6 and IPv4 (as Go's `:PORT`), else IPv4.
        match tokio::net::TcpListener::bind(("::", port)).await {
            Ok(l) => Ok(l),
            Err(_) => tokio::net::TcpListener::bind(("0.0.0.0", port)).await,
        }
    } else {
        tokio::net::TcpListener::bind((host.as_str(), port)).await
    };
    bound.map_err(|e| format!("cannot serve metrics at {addr}: {e}"))
}

/// Serves the board on `listener` until the process ends.
pub(crate) fn serve(listener: tokio::net::TcpListener, board: Board) {
    if let Ok(local) = listener.local_addr() {
        info!(url = %format!("http://{local}/metrics"), health = %format!("http://{local}/healthz"), "serving metrics");
    }
    let app = axum::Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(healthz))
        .route("/status", get(status))
        .with_state(board);
    tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            warn!(error = %e, "the metrics server stopped");
        }
    });
}

async fn metrics(Shared(board): Shared<Board>) -> impl IntoResponse {
    let text = tokio::task::spawn_blocking(move || super::metrics::render(&board))
        .await
        .unwrap_or_default();
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        text,
    )
}

async fn healthz(Shared(board): Shared<Board>) -> impl IntoResponse {
    let reports = tokio::task::spawn_blocking(move || board.reports())
        .await
        .unwrap_or_default();
    let health = health(&reports);
    let code = if health.status == "ok" {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (code, axum::Json(health))
}

async fn status(Shared(board): Shared<Board>) -> impl IntoResponse {
    let reports = tokio::task::spawn_blocking(move || board.reports())
        .await
        .unwrap_or_default();
    axum::Json(reports)
}

/// How often the heartbeat checks whether a ping is due (Litestream's
/// `DefaultHeartbeatCheckInterval`), or the interval if that is shorter.
const HEARTBEAT_CHECK: Duration = Duration::from_secs(15);

/// Pings `url` once per `interval` while every database is healthy, none
/// while any is not (as Litestream 0.5's heartbeat: the time of an attempt
/// counts, so a failing endpoint is not hammered).
pub(crate) fn heartbeat(board: Board, url: String, interval: Duration) {
    let client = match reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
    {
        Ok(c) => c,
        Err(e) => {
            warn!(error = %e, "heartbeat: cannot build an HTTP client; no pings");
            return;
        }
    };
    info!(url = %url, interval = ?interval, "heartbeat: pinging while every database is healthy");
    tokio::spawn(async move {
        let mut last: Option<Instant> = None;
        let check = HEARTBEAT_CHECK.min(interval);
        loop {
            tokio::time::sleep(check).await;
            if last.is_some_and(|at| at.elapsed() < interval) {
                continue;
            }
            let b = board.clone();
            let reports = tokio::task::spawn_blocking(move || b.reports())
                .await
                .unwrap_or_default();
            let health = health(&reports);
            if health.status != "ok" {
                debug!(unhealthy = health.unhealthy.len(), "heartbeat: not pinging");
                continue;
            }
            last = Some(Instant::now());
            match client.get(&url).send().await {
                Ok(r) if r.status().is_success() => debug!(url = %url, "heartbeat sent"),
                Ok(r) => warn!(url = %url, status = r.status().as_u16(), "heartbeat ping refused"),
                Err(e) => warn!(url = %url, error = %e, "heartbeat ping failed"),
            }
        }
    });
}

/// `replica status`: asks the replicator serving at `addr` for `/status`.
pub(crate) async fn fetch_status(addr: &str) -> Result<Vec<DbReport>, String> {
    let (host, port) = parse_addr(addr)?;
    // An address served on every interface is asked on this machine.
    let host = match host.as_str() {
        "" | "0.0.0.0" => "127.0.0.1".to_owned(),
        "::" => "[::1]".to_owned(),
        h if h.contains(':') => format!("[{h}]"),
        h => h.to_owned(),
    };
    let url = format!("http://{host}:{port}/status");
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .map_err(|e| format!("cannot build an HTTP client: {e}"))?;
    let response = client.get(&url).send().await.map_err(|e| {
        format!(
            "no replicator answers at {url}: {e} (is `replica replicate` running with \
             --addr {addr} or `addr: \"{addr}\"` in its config?)"
        )
    })?;
    if !response.status().is_success() {
        return Err(format!("{url} answered {}", response.status()));
    }
    let body = response
        .bytes()
        .await
        .map_err(|e| format!("reading {url}: {e}"))?;
    serde_json::from_slice(&body)
        .map_err(|e| format!("{url} did not answer a replicator's status: {e}"))
}
