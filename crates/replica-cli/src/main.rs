//! `replica`: inspect replicas and check backends against the conformance suite.
//!
//! Every command takes replica URLs as [`replica::open`] understands them.
//! Errors print one line on stderr and exit non-zero; nothing panics on bad input.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use clap::{CommandFactory, Parser, Subcommand};
use replica::{Generation, Layout, ReplicaClient, ReplicaClientExt};
use replica_conformance::{report, run_part, Part, Report};
use replica_memory::MemoryStore;

mod args;
mod config;
mod copy;
mod dirs;
mod fixtures;
mod fleet;
mod limits;
mod listing;
mod ltx;
mod monitor;
mod replicate;
mod restore;
mod source;
mod verify;

#[derive(Parser)]
#[command(
    name = "replica",
    version,
    about = "Inspect SQLite replicas and test replica backends"
)]
struct Cli {
    /// Replica layout: litestream-0.3 (released Litestream 0.3), litestream-0.4
    /// (its 0.4 betas) or litestream-0.5 (LTX files in levels, Litestream
    /// 0.5). Default: the layout the replica's objects are in; for an empty
    /// one, litestream-0.3 when `replicate` or `snapshot` writes it
    /// (Litestream 0.3 and 0.5 restore it; litestream-0.5 from a Litestream
    /// 0.5 config), the source's for `copy`, litestream-0.4 otherwise. Same
    /// as `?layout=` on a URL; for `copy` it names the source's layout.
    #[arg(long, global = true, value_name = "L")]
    layout: Option<replica::AnyLayout>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// One row per generation: snapshot times and counts, WAL segments, bytes.
    Generations {
        #[command(flatten)]
        source: source::Source,
        /// Print a JSON array instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// One row per snapshot.
    Snapshots {
        #[command(flatten)]
        source: source::Source,
        /// Only this generation.
        #[arg(long)]
        generation: Option<String>,
        /// Print a JSON array instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// One row per WAL segment.
    Wal {
        #[command(flatten)]
        source: source::Source,
        /// Only this generation.
        #[arg(long)]
        generation: Option<String>,
        /// Print a JSON array instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// One row per LTX file of a Litestream 0.5 replica (as `litestream
    /// ltx`): level, TXID range, size, time.
    Ltx {
        #[command(flatten)]
        source: source::Source,
        /// Only this level (0 to 9), or `all`.
        #[arg(long, default_value = "all", value_name = "N|all")]
        level: ltx::Level,
        /// Print a JSON array instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Check every object: LZ4 frames decode, WAL contiguous, a snapshot to
    /// start from (on an LTX replica: every file decodes whole with its
    /// checksums, and a chain of files reaches the newest TXID). Exit code 1
    /// on any defect.
    Verify {
        #[command(flatten)]
        source: source::Source,
        /// Only this generation.
        #[arg(long)]
        generation: Option<String>,
    },
    /// Mirror a replica into another backend, streaming; objects already
    /// present with the same size are skipped, so an interrupted copy resumes.
    Copy {
        /// Source replica URL.
        src: String,
        /// Destination replica URL.
        dst: String,
        /// Only this generation.
        #[arg(long)]
        generation: Option<String>,
        /// The destination's layout (default: the one its objects are in, or
        /// the source's for an empty destination). Copying between layouts
        /// rewrites the names; `litestream-0.5` converts a generation (the
        /// latest, or --generation) into LTX files, every commit restorable.
        #[arg(long, value_name = "L")]
        dst_layout: Option<replica::AnyLayout>,
        /// Objects copied at once.
        #[arg(long, default_value_t = 16, value_parser = clap::value_parser!(u16).range(1..=256))]
        parallelism: u16,
    },
    /// Write one object's decompressed bytes to stdout.
    Cat {
        /// Replica URL.
        url: String,
        /// A WAL segment as `<generation>/<index>:<offset>`, or a snapshot as
        /// `<generation>/<index>` (index and offset in hex, as listings print
        /// them: `1f`, `0000001f`, `0x1f`; whatever the layout).
        object: String,
    },
    /// Restore a verified SQLite database from a replica (the flags of
    /// `litestream restore`). Every WAL index is checked as SQLite would
    /// trust it before it is applied; on any defect nothing is left at PATH.
    Restore {
        #[command(flatten)]
        source: source::Source,
        /// Where to write the database (must not exist). Default, for a
        /// DB_PATH looked up in a config file: DB_PATH, as Litestream.
        #[arg(short = 'o', long = "output", value_name = "PATH")]
        output: Option<PathBuf>,
        /// Restore this generation (default: the latest).
        #[arg(long)]
        generation: Option<String>,
        /// Restore up to and including this WAL index (hex, as Litestream).
        #[arg(long, conflicts_with_all = ["timestamp", "txid"], value_name = "HEX")]
        index: Option<String>,
        /// LTX replicas: restore to exactly this TXID (hex, as `replica ltx`
        /// prints it).
        #[arg(long, conflicts_with = "timestamp", value_name = "HEX")]
        txid: Option<String>,
        /// Restore to this time (RFC 3339), by object times.
        #[arg(long, value_name = "RFC3339")]
        timestamp: Option<String>,
        /// WAL segments fetched ahead at once.
        #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u16).range(1..=256))]
        parallelism: u16,
        /// If PATH already exists, do nothing and exit 0.
        #[arg(long)]
        if_db_not_exists: bool,
        /// If the replica holds nothing to restore, do nothing and exit 0.
        #[arg(long)]
        if_replica_exists: bool,
        /// Run PRAGMA integrity_check on the result before putting it at PATH.
        #[arg(long)]
        integrity_check: bool,
    },
    /// Replicate live SQLite databases into replicas, as `litestream
    /// replicate` does (and restorable by `litestream restore`): `replica
    /// replicate DB URL...`, or `replica replicate --config litestream.yml`
    /// with a Litestream 0.3 config file unchanged. Empty replicas get
    /// Litestream 0.3's layout unless --layout says otherwise. Runs until
    /// SIGTERM or SIGINT, then makes a final sync and exits 0. Logs go to
    /// stderr (`REPLICA_LOG=debug` for more).
    Replicate {
        /// The database (with replica URLs after it).
        db: Option<PathBuf>,
        /// Replica URLs.
        urls: Vec<String>,
        /// A Litestream 0.3 config file (default /etc/litestream.yml when no
        /// database is given).
        #[arg(long, value_name = "FILE")]
        config: Option<PathBuf>,
        /// Do not expand $VAR and ${VAR} in the config file.
        #[arg(long)]
        no_expand_env: bool,
        /// Run this command once replication is running (Litestream's
        /// `-exec`, also `exec:` in the config): SIGINT and SIGTERM go to
        /// it; when it exits, a final sync, then exit with its status.
        #[arg(long, value_name = "CMD")]
        exec: Option<String>,
        /// Replicate every WAL-mode SQLite database in this directory whose
        /// name matches --pattern (Litestream 0.5's `dir`); then every
        /// argument is a replica URL, under which each database's replica is
        /// its path relative to DIR.
        #[arg(long, value_name = "DIR")]
        dir: Option<PathBuf>,
        /// With --dir: the file-name pattern of databases.
        #[arg(long, default_value = "*.db", requires = "dir")]
        pattern: String,
        /// With --dir: subdirectories too.
        #[arg(long, requires = "dir")]
        recursive: bool,
        /// With --dir: replicate databases that appear later (within a
        /// moment: file-system events, and a rescan every 10 s), and stop
        /// those removed.
        #[arg(long, requires = "dir")]
        watch: bool,
        /// Serve Prometheus metrics at /metrics, health at /healthz and
        /// status at /status on HOST:PORT (`:9090`: every interface), as
        /// the config's `addr`.
        #[arg(long, value_name = "HOST:PORT")]
        addr: Option<String>,
        /// Log format (default: the config's `logging.type`, else text).
        #[arg(long, value_enum)]
        log_format: Option<replicate::LogFormat>,
        /// How often the WAL is checked (default 1s).
        #[arg(long, value_parser = humantime::parse_duration, value_name = "DURATION")]
        monitor_interval: Option<std::time::Duration>,
        /// How often each replica uploads (default 1s).
        #[arg(long, value_parser = humantime::parse_duration, value_name = "DURATION")]
        sync_interval: Option<std::time::Duration>,
        /// A new snapshot this often (default: only per generation).
        #[arg(long, value_parser = humantime::parse_duration, value_name = "DURATION")]
        snapshot_interval: Option<std::time::Duration>,
        /// A checkpoint at least this often (default 1m).
        #[arg(long, value_parser = humantime::parse_duration, value_name = "DURATION")]
        checkpoint_interval: Option<std::time::Duration>,
        /// WAL pages that trigger a checkpoint (default 1000).
        #[arg(long, value_name = "PAGES")]
        min_checkpoint_page_count: Option<u32>,
    },
    /// Write a one-off snapshot of a database into a replica, as a new
    /// generation holding it at index 0 (consistent: SQLite copies it with
    /// VACUUM INTO first).
    Snapshot {
        /// The database.
        db: PathBuf,
        /// Replica URL.
        url: String,
    },
    /// Ask a running `replica replicate` (started with --addr or a config's
    /// `addr`) where each database stands: its state, generation and
    /// position, and each replica's lag, last sync and last error.
    Status {
        /// Only this database (its path).
        db: Option<PathBuf>,
        /// Where the replicator serves (HOST:PORT; default: the config's `addr`).
        #[arg(long, value_name = "HOST:PORT")]
        addr: Option<String>,
        /// The replicator's config file, for its `addr` (default
        /// $LITESTREAM_CONFIG, else /etc/litestream.yml).
        #[arg(long, value_name = "FILE")]
        config: Option<PathBuf>,
        /// Do not expand $VAR and ${VAR} in the config file.
        #[arg(long)]
        no_expand_env: bool,
        /// Print the replicator's JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Run the conformance suite and print the parity matrix (cases × backends).
    ///
    /// Without URLs, runs against the built-in embedded backends: memory, file
    /// in a temporary directory, and object_store's LocalFileSystem. With URLs,
    /// each case gets a fresh, unique location below each URL
    /// (`<url>/conformance-<random>/case-NNN`), and everything written there
    /// (about 2,000 objects a run) is deleted afterwards unless --keep.
    Conformance {
        /// Backends to test, as replica URLs.
        urls: Vec<String>,
        /// Only cases whose name contains this.
        #[arg(long)]
        filter: Option<String>,
        /// Also write report.json and report.md into this directory.
        #[arg(long)]
        out: Option<PathBuf>,
        /// Run the built-in backends too when URLs are given.
        #[arg(long)]
        builtin: bool,
        /// Keep what the cases wrote below the URLs (default: delete it).
        #[arg(long)]
        keep: bool,
    },
}

/// Blocking threads of `replica replicate` (tokio's default is 512). With
/// thousands of databases starting together, tokio would otherwise grow
/// its pool to 512 threads: each short blocking task spawned while the
/// others run adds a thread, even when the work is bounded far below that
/// (database rounds, file operations). A task waiting in the queue for a
/// thread is safe as long as the tasks holding threads make progress: the
/// only ones that wait for other work (for their consumer to upload what
/// they produce) are the snapshot images and the LTX encoders, each bounded
/// process-wide, together well below this.
const REPLICATE_BLOCKING_THREADS: usize = 64;

const _: () = assert!(
    2 * (replica_sqlite::replicate::MAX_IMAGES + replica::ltx::MAX_ENCODERS)
        <= REPLICATE_BLOCKING_THREADS
);

fn main() -> ExitCode {
    // Litestream's one-dash long flags (`-config`, `-if-replica-exists`).
    let longs = args::long_names(&Cli::command());
    let cli = Cli::parse_from(args::with_double_dashes(std::env::args_os(), &longs));
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    builder.enable_all();
    if matches!(cli.command, Command::Replicate { .. }) {
        builder.max_blocking_threads(REPLICATE_BLOCKING_THREADS);
    }
    let runtime = match builder.build() {
        Ok(rt) => rt,
        Err(e) => return fail(&format!("cannot start the async runtime: {e}")),
    };
    match runtime.block_on(run(cli.command, cli.layout)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(Exit::Code(code)) => code,
        Err(Exit::Error(message)) => fail(&message),
    }
}

fn fail(message: &str) -> ExitCode {
    eprintln!("replica: {}", scrub(message));
    ExitCode::from(2)
}

/// `text` with the values of credential options in any URL in it replaced
/// by `***` (URLs built from a config file carry the keys it names).
pub(crate) fn scrub(text: &str) -> String {
    const SECRETS: [&str; 8] = [
        "secret_access_key=",
        "access_key_id=",
        "session_token=",
        "account_key=",
        "access_key=",
        "sas_key=",
        "sas_token=",
        "bearer_token=",
    ];
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    'outer: while !rest.is_empty() {
        for key in SECRETS {
            if let Some(tail) = rest.strip_prefix(key) {
                out.push_str(key);
                out.push_str("***");
                let end = tail
                    .find(|c: char| "&\"'`:;,)".contains(c) || c.is_whitespace())
                    .unwrap_or(tail.len());
                rest = &tail[end..];
                continue 'outer;
            }
        }
        let mut chars = rest.chars();
        out.extend(chars.next());
        rest = chars.as_str();
    }
    out
}

/// Opens a replica in any layout.
async fn open_any(url: &str, layout: Option<replica::AnyLayout>) -> Result<replica::Replica, Exit> {
    let options = replica::OpenAnyOptions {
        layout,
        ..replica::OpenAnyOptions::default()
    };
    Ok(replica::open_any(url, options).await?)
}

/// Opens a replica of generations; an LTX replica is an error saying which
/// commands read it.
async fn open(
    url: &str,
    layout: Option<replica::AnyLayout>,
) -> Result<Arc<dyn ReplicaClient>, Exit> {
    match open_any(url, layout).await? {
        replica::Replica::Generations(client) => Ok(client),
        replica::Replica::Ltx(_) => Err(Exit::Error(format!(
            "{url} is a Litestream 0.5 (LTX) replica, which has no generations, snapshots or \
             WAL segments: list its files with `replica ltx {url}`; `replica verify` and \
             `replica restore` read it too"
        ))),
    }
}

/// The generation layout of `--layout`, for commands that only write those.
fn generation_layout(
    layout: Option<replica::AnyLayout>,
    command: &str,
) -> Result<Option<Layout>, Exit> {
    match layout {
        Some(replica::AnyLayout::Ltx) => Err(Exit::Error(format!(
            "`replica {command}` does not write the litestream-0.5 (LTX) layout yet; use \
             litestream-0.3 (restorable by Litestream 0.3 and 0.5) or litestream-0.4"
        ))),
        other => Ok(other.and_then(replica::AnyLayout::generations)),
    }
}

fn generation_arg(g: Option<String>) -> Result<Option<Generation>, Exit> {
    Ok(g.map(|g| Generation::new(&g)).transpose()?)
}

async fn run(command: Command, layout: Option<replica::AnyLayout>) -> Result<(), Exit> {
    match command {
        Command::Generations { source, json } => {
            let url = source.resolve()?.url;
            let client = open(&url, layout).await?;
            note_if_empty(&*client, &url).await?;
            listing::generations(&*client, json).await
        }
        Command::Snapshots {
            source,
            generation,
            json,
        } => {
            let url = source.resolve()?.url;
            let client = open(&url, layout).await?;
            if generation.is_none() {
                note_if_empty(&*client, &url).await?;
            }
            listing::snapshots(&*client, generation_arg(generation)?, json).await
        }
        Command::Wal {
            source,
            generation,
            json,
        } => {
            let url = source.resolve()?.url;
            let client = open(&url, layout).await?;
            if generation.is_none() {
                note_if_empty(&*client, &url).await?;
            }
            listing::wal(&*client, generation_arg(generation)?, json).await
        }
        Command::Ltx {
            source,
            level,
            json,
        } => {
            let url = source.resolve()?.url;
            ltx_list(&url, layout, level, json).await
        }
        Command::Verify { source, generation } => {
            let url = source.resolve()?.url;
            verify_any(&url, layout, generation).await
        }
        Command::Copy {
            src,
            dst,
            generation,
            dst_layout,
            parallelism,
        } => {
            let src_url = src;
            let src = open_any(&src_url, layout).await?;
            let options = replica::OpenAnyOptions {
                layout: dst_layout,
                empty_layout: Some(src.layout()),
            };
            let dst_url = dst;
            let dst = replica::open_any(&dst_url, options).await?;
            use replica::Replica::{Generations, Ltx};
            match (&src, &dst) {
                (Generations(src), Generations(dst)) => {
                    let generations = chosen(&**src, generation_arg(generation)?).await?;
                    let done =
                        copy::copy(&**src, &**dst, generations, usize::from(parallelism)).await?;
                    println!(
                        "copied {} objects ({} bytes), skipped {} already present ({} to {})",
                        done.objects,
                        done.bytes,
                        done.skipped,
                        src.layout(),
                        dst.layout()
                    );
                }
                (Generations(src), Ltx(dst)) => {
                    let done =
                        replica_sqlite::convert_to_ltx(&**src, generation_arg(generation)?, dst)
                            .await
                            .map_err(|e| Exit::Error(describe(&e)))?;
                    println!(
                        "converted generation {} ({}) to {}: {} L9 snapshots and {} L0 files \
                         (one per transaction, TXIDs 0000000000000001 to {}), {} bytes",
                        done.generation,
                        src.layout(),
                        replica::ltx::LAYOUT_NAME,
                        done.snapshots,
                        done.transactions,
                        done.txid,
                        done.bytes
                    );
                }
                (Ltx(src), Ltx(dst)) => {
                    if generation.is_some() {
                        return Err(Exit::Error(
                            "--generation: an LTX replica has no generations".into(),
                        ));
                    }
                    let done = replica::ltx::copy_ltx(src, dst, usize::from(parallelism)).await?;
                    println!(
                        "copied {} LTX files ({} bytes), skipped {} already present",
                        done.files, done.bytes, done.skipped
                    );
                }
                (Ltx(_), Generations(dst)) => {
                    return Err(Exit::Error(format!(
                        "{src_url} is a Litestream 0.5 (LTX) replica; it cannot be turned into \
                         the {} layout (generations): copy it to an empty location or one \
                         holding LTX files",
                        dst.layout()
                    )))
                }
            }
            Ok(())
        }
        Command::Cat { url, object } => cat(&*open(&url, layout).await?, &object).await,
        Command::Restore {
            source,
            output,
            generation,
            index,
            txid,
            timestamp,
            parallelism,
            if_db_not_exists,
            if_replica_exists,
            integrity_check,
        } => {
            let resolved = source.resolve()?;
            let url = resolved.url;
            let output = match (output, resolved.db) {
                (Some(output), _) => output,
                (None, Some(db)) => db,
                (None, None) => {
                    return Err(Exit::Error(format!(
                        "where to? give -o PATH for the restored database (a database path \
                         with --config restores to that path, as Litestream): `replica \
                         restore -o app.db {url}`"
                    )))
                }
            };
            let client = match open_any(&url, layout).await? {
                replica::Replica::Generations(client) => client,
                replica::Replica::Ltx(client) => {
                    if generation.is_some() || index.is_some() {
                        return Err(Exit::Error(
                            "an LTX replica has no generations or WAL indexes: restore to a \
                             --txid or a --timestamp"
                                .into(),
                        ));
                    }
                    let at = match restore::target(None, timestamp.as_deref())? {
                        replica::RestoreTarget::Timestamp(at) => Some(at),
                        _ => None,
                    };
                    let options = replica_sqlite::LtxRestoreOptions {
                        target: ltx::target(txid.as_deref(), at)?,
                        parallelism: usize::from(parallelism),
                        integrity_check,
                        if_db_not_exists,
                        if_replica_exists,
                        ..replica_sqlite::LtxRestoreOptions::default()
                    };
                    return ltx::restore(&client, &output, options).await;
                }
            };
            if txid.is_some() {
                return Err(Exit::Error(format!(
                    "--txid is for LTX (Litestream 0.5) replicas; this one is in the {} layout: \
                     restore to an --index or a --timestamp",
                    client.layout()
                )));
            }
            let target = restore::target(index.as_deref(), timestamp.as_deref())?;
            let options = replica_sqlite::RestoreOptions {
                generation: generation_arg(generation)?,
                target,
                parallelism: usize::from(parallelism),
                integrity_check,
                if_db_not_exists,
                if_replica_exists,
                ..replica_sqlite::RestoreOptions::default()
            };
            restore::run(&*client, &output, options).await
        }
        Command::Replicate {
            db,
            urls,
            config,
            no_expand_env,
            exec,
            dir,
            pattern,
            recursive,
            watch,
            addr,
            log_format,
            monitor_interval,
            sync_interval,
            snapshot_interval,
            checkpoint_interval,
            min_checkpoint_page_count,
        } => {
            let args = replicate::Args {
                db,
                urls,
                config,
                no_expand_env,
                exec,
                addr,
                dir,
                pattern,
                recursive,
                watch,
                log_format,
                monitor_interval,
                sync_interval,
                snapshot_interval,
                checkpoint_interval,
                min_checkpoint_page_count,
            };
            replicate::run(args, layout).await
        }
        Command::Status {
            db,
            addr,
            config,
            no_expand_env,
            json,
        } => monitor::status_command(db, addr, config, no_expand_env, json).await,
        Command::Snapshot { db, url } => {
            replicate::init_logs(None, &config::Logging::default());
            replicate::snapshot(&db, &url, generation_layout(layout, "snapshot")?).await
        }
        Command::Conformance {
            urls,
            filter,
            out,
            builtin,
            keep,
        } => conformance(urls, filter, out, builtin, keep).await,
    }
}

async fn ltx_list(
    url: &str,
    layout: Option<replica::AnyLayout>,
    level: ltx::Level,
    json: bool,
) -> Result<(), Exit> {
    match open_any(url, layout).await? {
        replica::Replica::Ltx(client) => ltx::list(&client, level, json).await,
        replica::Replica::Generations(client) if client.generations().await?.is_empty() => {
            // Nothing there at all: an empty listing, and stderr says so.
            eprintln!(
                "replica: no replica found at {}: no LTX files and no generations (a typo \
                 in the path or prefix?)",
                scrub(url)
            );
            match open_any(url, Some(replica::AnyLayout::Ltx)).await? {
                replica::Replica::Ltx(client) => ltx::list(&client, level, json).await,
                replica::Replica::Generations(_) => Ok(()),
            }
        }
        replica::Replica::Generations(client) => Err(Exit::Error(format!(
            "{url} holds no LTX files: it reads as a replica of generations in the {} \
             layout (list it with `replica generations`); pass --layout litestream-0.5 to \
             read it as LTX anyway",
            client.layout()
        ))),
    }
}

async fn verify_any(
    url: &str,
    layout: Option<replica::AnyLayout>,
    generation: Option<String>,
) -> Result<(), Exit> {
    match open_any(url, layout).await? {
        replica::Replica::Ltx(client) => {
            if generation.is_some() {
                return Err(Exit::Error(
                    "--generation: an LTX replica has no generations".into(),
                ));
            }
            ltx::verify(&client, url).await
        }
        replica::Replica::Generations(client) => {
            verify(&*client, url, generation_arg(generation)?).await
        }
    }
}

/// How a command ends other than with success.
#[derive(Debug)]
pub(crate) enum Exit {
    /// A finished run whose verdict is a non-zero exit (e.g. failures found).
    Code(ExitCode),
    /// An error to print.
    Error(String),
}

impl From<String> for Exit {
    fn from(message: String) -> Self {
        Exit::Error(message)
    }
}

impl From<replica::Error> for Exit {
    fn from(e: replica::Error) -> Self {
        Exit::Error(describe(&e))
    }
}

/// An error and its whole `source()` chain, each cause once (a cause whose
/// text the message already holds is not repeated), plus a hint where the
/// fix is known.
pub(crate) fn describe(e: &(dyn std::error::Error + 'static)) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        let part = cause.to_string();
        if !part.is_empty() && !text.contains(&part) {
            text.push_str(": ");
            text.push_str(&part);
        }
        source = cause.source();
    }
    let mut text = tidy_xml(&text);
    if let Some(hint) = hint(&text) {
        text.push_str("; ");
        text.push_str(&hint);
    }
    text
}

/// An S3 error body (`<?xml ...><Error><Code>C</Code><Message>M</Message>
/// ...</Error>`) inside `text`, shortened to `C: M`.
fn tidy_xml(text: &str) -> String {
    let Some(start) = text.find("<?xml").or_else(|| text.find("<Error>")) else {
        return text.to_owned();
    };
    let tag = |name: &str| {
        let open = format!("<{name}>");
        let from = text[start..].find(&open)? + start + open.len();
        let to = text[from..].find(&format!("</{name}>"))? + from;
        Some(text[from..to].to_owned())
    };
    let end = text[start..]
        .find("</Error>")
        .map_or(text.len(), |e| start + e + "</Error>".len());
    let short = match (tag("Code"), tag("Message")) {
        (Some(code), Some(message)) => format!("{code}: {message}"),
        (Some(code), None) => code,
        _ => return text.to_owned(),
    };
    format!("{}{short}{}", &text[..start], &text[end..])
}

/// The fix for errors whose cause is known.
fn hint(text: &str) -> Option<String> {
    if text.contains("NoSuchBucket") {
        return Some(
            "the bucket does not exist: create it, or check the bucket name (and the region \
             or endpoint it lives at)"
                .to_owned(),
        );
    }
    let endpoint = std::env::var("AWS_ENDPOINT")
        .ok()
        .or_else(|| std::env::var("AWS_ENDPOINT_URL").ok())
        .filter(|e| e.starts_with("http://"));
    let http_refused = text.contains("URL scheme is not allowed")
        || text.contains("builder error")
        || text.contains("HTTP is not allowed");
    if http_refused {
        let which = endpoint.map_or_else(
            || "an http:// endpoint".to_owned(),
            |e| format!("the endpoint is {e}"),
        );
        return Some(format!(
            "{which}, and plain HTTP is off: set AWS_ALLOW_HTTP=true or add ?allow_http=true to the URL"
        ));
    }
    // The instance metadata service, at its address or its paths (the
    // address is AWS_METADATA_ENDPOINT's where that is set).
    if text.contains("169.254.169.254")
        || text.contains("169.254.170.2")
        || text.contains("/latest/api/token")
        || text.contains("/latest/meta-data")
    {
        return Some(
            "no AWS credentials were configured, so the cloud's instance metadata service was \
             asked for some: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (or \
             ?access_key_id=...&secret_access_key=...), or AWS_SKIP_SIGNATURE=true for a public \
             bucket (AWS_EC2_METADATA_DISABLED=true fails at once instead of asking)"
                .to_owned(),
        );
    }
    if text.contains("Connection refused") || text.contains("tcp connect error") {
        return Some("nothing listens at the endpoint: check AWS_ENDPOINT (or ?endpoint=) and that the server runs".to_owned());
    }
    if text.contains("operation timed out") || text.contains("timed out") {
        return Some(
            "the endpoint took the connection but did not answer in time, on every retry: \
             check the endpoint and the network; ?timeout= (default 30s) bounds each request \
             and retries stop 30 s after the first"
                .to_owned(),
        );
    }
    None
}

/// The generations a command works on: the one asked for, which must exist,
/// or all of them.
pub(crate) async fn chosen(
    client: &dyn ReplicaClient,
    generation: Option<Generation>,
) -> Result<Vec<Generation>, Exit> {
    let all = client.generations().await?;
    match generation {
        None => Ok(all),
        Some(g) if all.contains(&g) => Ok(vec![g]),
        Some(g) => Err(Exit::Error(format!("generation {g} not found"))),
    }
}

async fn verify(
    client: &dyn ReplicaClient,
    url: &str,
    generation: Option<Generation>,
) -> Result<(), Exit> {
    let generations = chosen(client, generation).await?;
    if generations.is_empty() {
        return Err(Exit::Error(nothing_found(client, url).await));
    }
    println!("layout {}", client.layout());
    let mut defects = 0;
    for g in &generations {
        let verdict = verify::generation(client, g).await?;
        if verdict.defects.is_empty() {
            println!(
                "generation {g}: OK ({} snapshots, {} WAL segments)",
                verdict.snapshots, verdict.segments
            );
        } else {
            println!("generation {g}: {} DEFECTS", verdict.defects.len());
            for d in &verdict.defects {
                println!("  {d}");
            }
        }
        defects += verdict.defects.len();
    }
    if defects > 0 {
        return Err(Exit::Code(ExitCode::FAILURE));
    }
    Ok(())
}

/// A listing of a location holding nothing is empty, and stderr says why
/// (with the hint `verify` gives: a typo, another layout).
async fn note_if_empty(client: &dyn ReplicaClient, url: &str) -> Result<(), Exit> {
    if client.generations().await?.is_empty() {
        eprintln!("replica: {}", scrub(&nothing_found(client, url).await));
    }
    Ok(())
}

/// Why a location holds no replica: nothing in the layout read, and (if so)
/// what another layout finds there.
async fn nothing_found(client: &dyn ReplicaClient, url: &str) -> String {
    let mut message = format!(
        "no replica found at {url}: no generations in the {} layout (a typo in the path or prefix?)",
        client.layout()
    );
    for other in Layout::ALL.into_iter().filter(|l| *l != client.layout()) {
        if let Ok(c) = open(url, Some(other.into())).await {
            if let Ok(found) = c.generations().await {
                if !found.is_empty() {
                    message.push_str(&format!(
                        "; it holds {} generation(s) in the {other} layout: pass --layout {other}",
                        found.len()
                    ));
                }
            }
        }
    }
    message
}

async fn cat(client: &dyn ReplicaClient, object: &str) -> Result<(), Exit> {
    use futures::TryStreamExt;
    use std::io::Write;

    let bad = || {
        format!(
            "bad object {object:?}: expected <generation>/<index> (a snapshot) or \
             <generation>/<index>:<offset> (a WAL segment), index and offset in hex as listings \
             print them"
        )
    };
    let (g, rest) = object.split_once('/').ok_or_else(bad)?;
    let generation = Generation::new(g)?;
    let hex = |s: &str| replica::layout::parse_hex_arg(s).ok_or_else(bad);
    let mut plain = match rest.split_once(':') {
        Some((index, offset)) => {
            let pos = replica::Pos::new(generation, hex(index)?, hex(offset)?)?;
            client.wal_segment_plain(&pos).await?
        }
        None => client.snapshot_plain(&generation, hex(rest)?).await?,
    };
    let mut stdout = std::io::stdout().lock();
    // A reader that stops early (`| head`) is not an error.
    let written = |r: std::io::Result<()>| match r {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(false),
        Err(e) => Err(format!("writing stdout: {e}")),
        Ok(()) => Ok(true),
    };
    while let Some(chunk) = plain.try_next().await? {
        if !written(stdout.write_all(&chunk))? {
            return Ok(());
        }
    }
    written(stdout.flush())?;
    Ok(())
}

/// `0.3` / `0.4`: a layout in a matrix column title.
fn layout_short(layout: Layout) -> &'static str {
    let name = layout.name();
    name.strip_prefix("litestream-").unwrap_or(name)
}

async fn conformance(
    urls: Vec<String>,
    filter: Option<String>,
    out: Option<PathBuf>,
    builtin: bool,
    keep: bool,
) -> Result<(), Exit> {
    let filter = filter.as_deref();
    let mut reports: Vec<Report> = Vec::new();
    // One column per backend and layout: the generation cases under 0.3 and
    // 0.4, the LTX cases (over the same key stores) under 0.5.
    let parts = Layout::ALL
        .into_iter()
        .map(|l| (l, layout_short(l), Part::Generations))
        .chain([(Layout::default(), "0.5", Part::Ltx)]);
    for (layout, short, part) in parts {
        let column = |name: &str| format!("{name} {short}");
        if urls.is_empty() || builtin {
            let memory = move || async move {
                Ok::<_, String>(fixtures::memory(MemoryStore::new(), layout))
            };
            reports.push(run_part(&column("memory"), &memory, filter, part).await);
            let file = move || async move {
                let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
                Ok::<_, String>(fixtures::file(dir.path().join("replica"), layout).keep(dir))
            };
            reports.push(run_part(&column("file"), &file, filter, part).await);
            let local = move || async move { fixtures::object_store_local(layout) };
            reports.push(run_part(&column("os-local"), &local, filter, part).await);
        }
        for url in &urls {
            open(url, Some(layout.into())).await?;
            let written =
                fixtures::below(url, &format!("conformance-{:016x}", rand::random::<u64>()))?;
            let counter = Arc::new(std::sync::atomic::AtomicU64::new(0));
            let run = written.clone();
            let factory = move || {
                let n = counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let location = fixtures::below(&run, &format!("case-{n:03}"))
                    .unwrap_or_else(|_| format!("{run}/case-{n:03}"));
                async move { fixtures::for_location(&location, layout).await }
            };
            reports.push(run_part(&column(url), &factory, filter, part).await);
            if !keep {
                fixtures::remove_location(&written)
                    .await
                    .map_err(|e| format!("cleaning up {written} (use --keep to keep it): {e}"))?;
            }
        }
    }
    print!("{}", report::text(&reports));
    if let Some(dir) = out {
        std::fs::create_dir_all(&dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
        for (name, body) in [
            ("report.json", report::json(&reports)),
            ("report.md", report::markdown(&reports)),
        ] {
            let path = dir.join(name);
            std::fs::write(&path, body).map_err(|e| format!("writing {}: {e}", path.display()))?;
        }
        println!("reports written to {}", dir.display());
    }
    if reports.iter().any(|r| r.failures().next().is_some()) {
        return Err(Exit::Code(ExitCode::FAILURE));
    }
    Ok(())
}
