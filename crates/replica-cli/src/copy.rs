//! `replica copy`: `replica::copy` with a progress bar on a terminal.

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use replica::{Copied, CopyProgress, Generation, ReplicaClient};

use crate::Exit;

/// A progress bar of bytes on stderr, drawn only when it is a terminal.
struct Bar(ProgressBar);

impl CopyProgress for Bar {
    fn start(&self, bytes: u64) {
        self.0.set_length(bytes);
    }

    fn advance(&self, bytes: u64) {
        self.0.inc(bytes);
    }
}

pub(crate) async fn copy(
    src: &dyn ReplicaClient,
    dst: &dyn ReplicaClient,
    generations: Vec<Generation>,
    parallelism: usize,
) -> Result<Copied, Exit> {
    let bar = ProgressBar::with_draw_target(Some(0), ProgressDrawTarget::stderr());
    bar.set_style(
        ProgressStyle::with_template("{bar:40} {bytes}/{total_bytes} {msg}")
            .map_err(|e| format!("progress bar: {e}"))?,
    );
    let copied = replica::copy(src, dst, &generations, parallelism, &Bar(bar.clone())).await;
    bar.finish_and_clear();
    Ok(copied?)
}
