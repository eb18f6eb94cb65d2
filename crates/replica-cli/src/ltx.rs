//! The commands on a Litestream 0.5 (LTX) replica: `ltx` (the listing, as
//! `litestream ltx` prints it), `verify` and `restore`.

use std::path::Path;
use std::process::ExitCode;

use chrono::{DateTime, Utc};
use futures::stream::{self, StreamExt};
use replica::ltx::{
    decode_file, plan_restore, LtxClient, LtxFileInfo, LtxTarget, TxId, LAYOUT_NAME, MAX_LEVEL,
};
use replica_sqlite::{LtxRestoreOptions, Restored};
use serde::Serialize;

use crate::listing::{time, Rows};
use crate::Exit;

/// `--level N|all`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Level {
    All,
    One(u8),
}

impl std::str::FromStr for Level {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        if s == "all" {
            return Ok(Level::All);
        }
        match s.parse::<u8>() {
            Ok(n) if n <= MAX_LEVEL => Ok(Level::One(n)),
            _ => Err(format!(
                "bad level {s:?}: a level is 0 to {MAX_LEVEL}, or `all`"
            )),
        }
    }
}

#[derive(Serialize)]
struct FileRow {
    level: u8,
    min_txid: String,
    max_txid: String,
    size: u64,
    created: String,
    /// The same time under `litestream ltx -json`'s key.
    timestamp: String,
}

/// `replica ltx URL [--level N|all] [--json]`.
pub(crate) async fn list(client: &LtxClient, level: Level, json: bool) -> Result<(), Exit> {
    let levels: Vec<u8> = match level {
        Level::All => client.levels().await?,
        Level::One(n) => vec![n],
    };
    let header = format!(
        "{:<6} {:<17} {:<17} {:>10}  created",
        "level", "min_txid", "max_txid", "size"
    );
    let mut rows = Rows::start(json, LAYOUT_NAME, &header)?;
    for level in levels {
        for f in client.files(level).await? {
            let row = FileRow {
                level: f.level,
                min_txid: f.min_txid.to_string(),
                max_txid: f.max_txid.to_string(),
                size: f.size,
                created: time(f.created_at),
                timestamp: time(f.created_at),
            };
            rows.row(&row, || {
                format!(
                    "{:<6} {:<17} {:<17} {:>10}  {}",
                    row.level, row.min_txid, row.max_txid, row.size, row.created
                )
            })?;
        }
    }
    rows.finish()
}

/// `replica verify URL` on an LTX replica: every file decodes whole (header,
/// page order, page index, file checksum, TXIDs equal to its name) and a
/// chain of files reaches the newest TXID from a snapshot. Exit 1 on any defect.
pub(crate) async fn verify(client: &LtxClient, url: &str) -> Result<(), Exit> {
    let files = client.all_files().await?;
    if files.is_empty() {
        return Err(Exit::Error(format!(
            "no replica found at {url}: no LTX files in the {LAYOUT_NAME} layout (a typo in the \
             path or prefix?)"
        )));
    }
    println!("layout {LAYOUT_NAME}");
    let checked: Vec<(LtxFileInfo, Result<u64, replica::Error>)> = stream::iter(files.clone())
        .map(|info| async move {
            let result = check_file(client, &info).await;
            (info, result)
        })
        .buffered(8)
        .collect()
        .await;
    let mut defects = Vec::new();
    let mut pages = 0;
    for (info, result) in &checked {
        match result {
            Ok(n) => pages += n,
            Err(e) => defects.push(format!("{}: {}", info.name(), crate::describe(e))),
        }
    }
    match plan_restore(&files, LtxTarget::Latest) {
        Ok(plan) => println!(
            "chain: TXID {} reached from {} ({} files)",
            plan.txid,
            plan.files
                .first()
                .map(LtxFileInfo::name)
                .unwrap_or_default(),
            plan.files.len()
        ),
        Err(e) => defects.push(format!("no restorable chain to the newest TXID: {e}")),
    }
    if defects.is_empty() {
        println!("OK: {} files, {pages} pages", files.len());
        return Ok(());
    }
    println!("{} DEFECTS", defects.len());
    for d in &defects {
        println!("  {d}");
    }
    Err(Exit::Code(ExitCode::FAILURE))
}

async fn check_file(client: &LtxClient, info: &LtxFileInfo) -> Result<u64, replica::Error> {
    let (min, max, name) = (info.min_txid, info.max_txid, info.name());
    let decoded = decode_file(
        client.read(info).await?,
        &info.name(),
        move |h| {
            if (h.min_txid, h.max_txid) != (min, max) {
                return Err(replica::Error::Corrupt {
                    path: name,
                    message: format!(
                        "its header holds TXIDs {}-{}, not those of its name",
                        h.min_txid, h.max_txid
                    ),
                });
            }
            Ok(())
        },
        |_, _, _| Ok(()),
    )
    .await?;
    Ok(decoded.pages)
}

/// The target of `--txid HEX` or `--timestamp RFC3339` (neither: the latest).
pub(crate) fn target(
    txid: Option<&str>,
    timestamp: Option<DateTime<Utc>>,
) -> Result<LtxTarget, Exit> {
    if let Some(t) = txid {
        let txid: TxId = t
            .parse()
            .map_err(|e: String| Exit::Error(format!("--txid: {e}")))?;
        if txid.0 == 0 {
            return Err(Exit::Error("--txid: TXIDs start at 1".into()));
        }
        return Ok(LtxTarget::Txid(txid));
    }
    Ok(timestamp.map_or(LtxTarget::Latest, LtxTarget::Timestamp))
}

/// `replica restore URL -o PATH` on an LTX replica.
pub(crate) async fn restore(
    client: &LtxClient,
    output: &Path,
    mut options: LtxRestoreOptions,
) -> Result<(), Exit> {
    let (bar, progress) = crate::restore::progress_bar()?;
    options.progress = Some(progress);
    let outcome = crate::restore::until_signal(
        output,
        replica_sqlite::restore_ltx(client, output, &options),
    )
    .await;
    bar.finish_and_clear();
    let outcome = outcome?;
    match outcome.map_err(|e| Exit::Error(crate::describe(&e)))? {
        Restored::Done(s) => {
            println!(
                "restored TXID {} to {} ({} bytes) from {} LTX files ({} pages written, {} bytes fetched)",
                s.txid,
                output.display(),
                s.database_bytes,
                s.files.len(),
                s.pages_written,
                s.fetched_bytes
            );
        }
        Restored::SkippedDatabaseExists => {
            println!(
                "{} already exists; nothing restored (--if-db-not-exists)",
                output.display()
            );
        }
        Restored::SkippedNoReplica => {
            println!("no replica to restore; nothing restored (--if-replica-exists)");
        }
    }
    Ok(())
}
