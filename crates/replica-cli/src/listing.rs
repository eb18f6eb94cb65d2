//! `generations`, `snapshots` and `wal`: tables and JSON, printed as listed.

use std::io::Write;

use chrono::{DateTime, SecondsFormat, Utc};
use replica::layout::format_index;
use replica::{newest_generation, Generation, ReplicaClient, TimeBounds};
use serde::Serialize;

use crate::Exit;

pub(crate) fn time(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Secs, true)
}

pub(crate) fn print_json<T: Serialize>(rows: &[T]) -> Result<(), Exit> {
    let text = serde_json::to_string_pretty(rows).map_err(|e| format!("encoding JSON: {e}"))?;
    println!("{text}");
    Ok(())
}

#[derive(Serialize)]
struct GenerationRow {
    layout: &'static str,
    generation: String,
    latest: bool,
    snapshots: usize,
    wal_segments: usize,
    bytes: u64,
    #[serde(with = "rfc3339_opt")]
    first_snapshot: Option<DateTime<Utc>>,
    #[serde(with = "rfc3339_opt")]
    last_snapshot: Option<DateTime<Utc>>,
}

mod rfc3339_opt {
    use chrono::{DateTime, Utc};
    use serde::Serializer;

    pub(super) fn serialize<S: Serializer>(
        at: &Option<DateTime<Utc>>,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        match at {
            Some(at) => s.serialize_str(&super::time(*at)),
            None => s.serialize_none(),
        }
    }
}

mod rfc3339 {
    use chrono::{DateTime, Utc};
    use serde::Serializer;

    pub(super) fn serialize<S: Serializer>(at: &DateTime<Utc>, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&super::time(*at))
    }
}

/// The first line of a table: which layout was read.
fn layout_line(layout: impl std::fmt::Display) -> String {
    format!("layout: {layout}")
}

pub(crate) async fn generations(client: &dyn ReplicaClient, json: bool) -> Result<(), Exit> {
    let mut rows = Vec::new();
    let mut all_bounds = Vec::new();
    for g in client.generations().await? {
        let snapshots = client.snapshots(&g).await?;
        let mut bounds = None;
        let mut bytes: u64 = snapshots.iter().map(|s| s.size).sum();
        for s in &snapshots {
            bounds = TimeBounds::widen(bounds, s.created_at);
        }
        let mut cursor = client.wal_segments(&g).await?;
        let mut wal_segments = 0;
        while let Some(seg) = cursor.next().await {
            let seg = seg?;
            wal_segments += 1;
            bytes += seg.size;
            bounds = TimeBounds::widen(bounds, seg.created_at);
        }
        if let Some(b) = bounds {
            all_bounds.push((g.clone(), b));
        }
        rows.push(GenerationRow {
            layout: client.layout().name(),
            generation: g.to_string(),
            latest: false,
            snapshots: snapshots.len(),
            wal_segments,
            bytes,
            first_snapshot: snapshots.iter().map(|s| s.created_at).min(),
            last_snapshot: snapshots.iter().map(|s| s.created_at).max(),
        });
    }
    if let Some(latest) = newest_generation(all_bounds) {
        for row in &mut rows {
            row.latest = row.generation == latest.as_str();
        }
    }
    if json {
        return print_json(&rows);
    }
    println!("{}", layout_line(client.layout()));
    println!(
        "{:<18} {:<20} {:<20} {:>9} {:>12} {:>14}",
        "generation", "first snapshot", "last snapshot", "snapshots", "wal segments", "bytes"
    );
    let opt = |t: Option<DateTime<Utc>>| t.map_or_else(|| "-".to_owned(), time);
    for r in &rows {
        println!(
            "{:<18} {:<20} {:<20} {:>9} {:>12} {:>14}{}",
            r.generation,
            opt(r.first_snapshot),
            opt(r.last_snapshot),
            r.snapshots,
            r.wal_segments,
            r.bytes,
            if r.latest { "  (latest)" } else { "" }
        );
    }
    Ok(())
}

#[derive(Serialize)]
struct SnapshotRow {
    layout: &'static str,
    generation: String,
    index: u64,
    size: u64,
    #[serde(with = "rfc3339")]
    created_at: DateTime<Utc>,
}

pub(crate) async fn snapshots(
    client: &dyn ReplicaClient,
    generation: Option<Generation>,
    json: bool,
) -> Result<(), Exit> {
    let header = format!(
        "{:<18} {:>16} {:>14} {:<20}",
        "generation", "index", "size", "created"
    );
    let mut rows = Rows::start(json, client.layout(), &header)?;
    for g in crate::chosen(client, generation).await? {
        for s in client.snapshots(&g).await? {
            let r = SnapshotRow {
                layout: client.layout().name(),
                generation: g.to_string(),
                index: s.index,
                size: s.size,
                created_at: s.created_at,
            };
            rows.row(&r, || {
                format!(
                    "{:<18} {:>16} {:>14} {:<20}",
                    r.generation,
                    format_index(r.index),
                    r.size,
                    time(r.created_at)
                )
            })?;
        }
    }
    rows.finish()
}

#[derive(Serialize)]
struct WalRow {
    layout: &'static str,
    generation: String,
    index: u64,
    offset: u64,
    size: u64,
    #[serde(with = "rfc3339")]
    created_at: DateTime<Utc>,
}

pub(crate) async fn wal(
    client: &dyn ReplicaClient,
    generation: Option<Generation>,
    json: bool,
) -> Result<(), Exit> {
    let header = format!(
        "{:<18} {:>16} {:>16} {:>14} {:<20}",
        "generation", "index", "offset", "size", "created"
    );
    let mut rows = Rows::start(json, client.layout(), &header)?;
    for g in crate::chosen(client, generation).await? {
        let mut cursor = client.wal_segments(&g).await?;
        while let Some(s) = cursor.next().await {
            let s = s?;
            let r = WalRow {
                layout: client.layout().name(),
                generation: g.to_string(),
                index: s.index,
                offset: s.offset,
                size: s.size,
                created_at: s.created_at,
            };
            rows.row(&r, || {
                format!(
                    "{:<18} {:>16} {:>16} {:>14} {:<20}",
                    r.generation,
                    format_index(r.index),
                    format_index(r.offset),
                    r.size,
                    time(r.created_at)
                )
            })?;
        }
    }
    rows.finish()
}

/// Prints rows as they are listed, so a generation of a million segments is
/// never held in memory: a table to stdout, or a JSON array written element
/// by element into a temporary file and copied to stdout only once complete
/// (`--json` output is all or nothing: a failure leaves stdout empty).
pub(crate) struct Rows {
    json: bool,
    count: usize,
    out: Output,
}

enum Output {
    Table(std::io::StdoutLock<'static>),
    Json(std::io::BufWriter<std::fs::File>),
}

impl Rows {
    /// Starts the output: `[`, or the layout line and the table header.
    pub(crate) fn start(
        json: bool,
        layout: impl std::fmt::Display,
        header: &str,
    ) -> Result<Rows, Exit> {
        let out = if json {
            let spool = tempfile::tempfile()
                .map_err(|e| format!("creating a temporary file for the JSON output: {e}"))?;
            Output::Json(std::io::BufWriter::new(spool))
        } else {
            Output::Table(std::io::stdout().lock())
        };
        let mut rows = Rows {
            json,
            count: 0,
            out,
        };
        if json {
            rows.write("[")?;
        } else {
            rows.write(&layout_line(layout))?;
            rows.write(header)?;
        }
        Ok(rows)
    }

    pub(crate) fn row<T: Serialize>(
        &mut self,
        row: &T,
        line: impl FnOnce() -> String,
    ) -> Result<(), Exit> {
        let text = if self.json {
            let element = serde_json::to_string(row).map_err(|e| format!("encoding JSON: {e}"))?;
            format!("{}  {element}", if self.count == 0 { "" } else { "," })
        } else {
            line()
        };
        self.count += 1;
        self.write(&text)
    }

    pub(crate) fn finish(mut self) -> Result<(), Exit> {
        let failed = |e: std::io::Error| Exit::Error(format!("writing stdout: {e}"));
        if self.json {
            self.write("]")?;
        }
        match self.out {
            Output::Table(mut out) => out.flush().map_err(failed),
            Output::Json(spool) => {
                let mut spool = spool
                    .into_inner()
                    .map_err(|e| Exit::Error(format!("writing the JSON output: {e}")))?;
                use std::io::Seek;
                spool.rewind().map_err(failed)?;
                let mut stdout = std::io::stdout().lock();
                std::io::copy(&mut spool, &mut stdout).map_err(failed)?;
                stdout.flush().map_err(failed)
            }
        }
    }

    fn write(&mut self, line: &str) -> Result<(), Exit> {
        let out: &mut dyn Write = match &mut self.out {
            Output::Table(out) => out,
            Output::Json(out) => out,
        };
        writeln!(out, "{line}").map_err(|e| Exit::Error(format!("writing stdout: {e}")))
    }
}
