//! `replica restore`: the CLI face of `replica_sqlite::restore`, with a
//! progress bar on a terminal (objects and bytes) and retries reported on
//! stderr.

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use replica::{ReplicaClient, RestoreTarget};
use replica_sqlite::{Progress, RestoreOptions, Restored};

use crate::Exit;

/// The target of `--index HEX` or `--timestamp RFC3339` (neither: the end).
pub(crate) fn target(index: Option<&str>, timestamp: Option<&str>) -> Result<RestoreTarget, Exit> {
    if let Some(index) = index {
        let value = replica::layout::parse_hex_arg(index).ok_or_else(|| {
            format!(
                "bad --index {index:?}: expected a WAL index in hex, as listings print it \
                 (e.g. 1f, 0000001f or 0x1f)"
            )
        })?;
        return Ok(RestoreTarget::Index(value));
    }
    if let Some(at) = timestamp {
        let at = chrono::DateTime::parse_from_rfc3339(at).map_err(|e| {
            format!("bad --timestamp {at:?}: {e}; expected RFC 3339, e.g. 2026-01-02T03:04:05Z")
        })?;
        return Ok(RestoreTarget::Timestamp(at.with_timezone(&chrono::Utc)));
    }
    Ok(RestoreTarget::End)
}

/// A progress bar on stderr, drawn only when it is a terminal.
struct Bar {
    bar: ProgressBar,
    objects: AtomicU64,
    done: AtomicU64,
}

impl Bar {
    fn show_count(&self) {
        let done = self.done.load(Ordering::Relaxed);
        let all = self.objects.load(Ordering::Relaxed);
        self.bar.set_message(format!("{done}/{all} objects"));
    }
}

impl Progress for Bar {
    fn start(&self, objects: u64, bytes: u64) {
        self.bar.set_length(bytes);
        self.objects.store(objects, Ordering::Relaxed);
        self.show_count();
    }

    fn advance(&self, bytes: u64) {
        self.bar.inc(bytes);
        self.done.fetch_add(1, Ordering::Relaxed);
        self.show_count();
    }

    fn retrying(&self, what: &str, attempt: u32, error: &replica::Error) {
        self.bar.suspend(|| {
            eprintln!("replica: {what} failed (try {attempt}): {error}; retrying");
        });
    }

    fn note(&self, message: &str) {
        self.bar.suspend(|| eprintln!("replica: {message}"));
    }
}

/// Runs a restore until it ends or SIGINT/SIGTERM arrives. On a signal the
/// restore is dropped, which removes its temporary file (nothing is left at
/// or beside `output`), and the exit status is 128 + the signal's number,
/// as a shell reports a process killed by it.
pub(crate) async fn until_signal<T>(
    output: &Path,
    restore: impl std::future::Future<Output = T>,
) -> Result<T, Exit> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut interrupt = signal(SignalKind::interrupt()).map_err(|e| format!("SIGINT: {e}"))?;
    let mut terminate = signal(SignalKind::terminate()).map_err(|e| format!("SIGTERM: {e}"))?;
    let (name, number) = tokio::select! {
        done = restore => return Ok(done),
        _ = interrupt.recv() => ("SIGINT", 2u8),
        _ = terminate.recv() => ("SIGTERM", 15u8),
    };
    eprintln!(
        "replica: restore stopped by {name}; its partial database was removed and nothing is at {}",
        output.display()
    );
    Err(Exit::Code(std::process::ExitCode::from(128 + number)))
}

/// A progress bar on stderr (drawn only on a terminal) as restore progress.
pub(crate) fn progress_bar() -> Result<(ProgressBar, Arc<dyn Progress>), Exit> {
    let bar = ProgressBar::with_draw_target(Some(0), ProgressDrawTarget::stderr());
    bar.set_style(
        ProgressStyle::with_template("{bar:40} {bytes}/{total_bytes} {msg}")
            .map_err(|e| format!("progress bar: {e}"))?,
    );
    let progress = Arc::new(Bar {
        bar: bar.clone(),
        objects: AtomicU64::new(0),
        done: AtomicU64::new(0),
    });
    Ok((bar, progress))
}

pub(crate) async fn run(
    client: &dyn ReplicaClient,
    output: &Path,
    mut options: RestoreOptions,
) -> Result<(), Exit> {
    let (bar, progress) = progress_bar()?;
    options.progress = Some(progress);
    let outcome = until_signal(output, replica_sqlite::restore(client, output, &options)).await;
    bar.finish_and_clear();
    let outcome = outcome?;
    match outcome.map_err(|e| Exit::Error(crate::describe(&e)))? {
        Restored::Done(s) => {
            println!(
                "restored generation {} to {} ({} bytes): snapshot at index {}, WAL up to index {} ({} segments, {} frames)",
                s.generation,
                output.display(),
                s.database_bytes,
                replica::layout::format_index(s.snapshot_index),
                replica::layout::format_index(s.last_index),
                s.segments,
                s.frames
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
