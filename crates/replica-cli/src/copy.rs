//! `replica copy`: mirror a replica between any two backends, streaming.
//!
//! Objects already present at the destination with the same size are
//! skipped; writes are atomic, so an interrupted copy is simply run again.
//! Nothing at the destination is deleted. Source and destination may use
//! different layouts: objects are read and written by position, so names are
//! rewritten; a position the destination's layout cannot name is refused
//! before anything is copied.

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use replica::{Generation, ReplicaClient};

use crate::Exit;

/// Counts of a finished copy.
#[derive(Debug, Default)]
pub(crate) struct Copied {
    pub(crate) objects: u64,
    pub(crate) skipped: u64,
    pub(crate) bytes: u64,
}

enum Object {
    Snapshot(Generation, u64, u64),
    Segment(replica::WalSegmentInfo),
}

pub(crate) async fn copy(
    src: &dyn ReplicaClient,
    dst: &dyn ReplicaClient,
    generations: Vec<Generation>,
) -> Result<Copied, Exit> {
    // List first, so the progress bar knows the total.
    let mut objects = Vec::new();
    for g in &generations {
        for s in src.snapshots(g).await? {
            objects.push(Object::Snapshot(g.clone(), s.index, s.size));
        }
        objects.extend(
            src.wal_segments(g)
                .await?
                .collect_all()
                .await?
                .into_iter()
                .map(Object::Segment),
        );
    }
    let layout = dst.layout();
    for object in &objects {
        let checked = match object {
            Object::Snapshot(g, index, _) => layout.snapshot_key(g, *index).map(drop),
            Object::Segment(s) => layout.wal_segment_key(&s.pos()).map(drop),
        };
        checked.map_err(|e| {
            format!(
                "cannot copy into the {layout} layout: {e}; nothing was copied (copy into a \
                 {} destination instead)",
                src.layout()
            )
        })?;
    }
    let total_bytes = objects
        .iter()
        .map(|o| match o {
            Object::Snapshot(_, _, size) => *size,
            Object::Segment(s) => s.size,
        })
        .sum();
    // Drawn on stderr only when it is a terminal; hidden when piped.
    let bar = ProgressBar::with_draw_target(Some(total_bytes), ProgressDrawTarget::stderr());
    bar.set_style(
        ProgressStyle::with_template("{bar:40} {bytes}/{total_bytes} {msg}")
            .map_err(|e| format!("progress bar: {e}"))?,
    );

    let mut copied = Copied::default();
    let mut present = DestinationIndex::default();
    for object in objects {
        match object {
            Object::Snapshot(g, index, size) => {
                if present.snapshot_size(dst, &g, index).await? == Some(size) {
                    copied.skipped += 1;
                } else {
                    let data = src.snapshot_reader(&g, index).await?;
                    dst.write_snapshot(&g, index, data).await?;
                    copied.objects += 1;
                    copied.bytes += size;
                }
                bar.inc(size);
            }
            Object::Segment(info) => {
                if present.segment_size(dst, &info).await? == Some(info.size) {
                    copied.skipped += 1;
                } else {
                    let data = src.wal_segment_reader(&info.pos()).await?;
                    dst.write_wal_segment(&info.pos(), data).await?;
                    copied.objects += 1;
                    copied.bytes += info.size;
                }
                bar.inc(info.size);
            }
        }
    }
    bar.finish_and_clear();
    Ok(copied)
}

/// What the destination already holds, listed once per generation.
#[derive(Default)]
struct DestinationIndex {
    generation: Option<Generation>,
    snapshots: std::collections::HashMap<u64, u64>,
    segments: std::collections::HashMap<(u64, u64), u64>,
}

impl DestinationIndex {
    async fn load(&mut self, dst: &dyn ReplicaClient, g: &Generation) -> Result<(), Exit> {
        if self.generation.as_ref() == Some(g) {
            return Ok(());
        }
        self.snapshots = dst
            .snapshots(g)
            .await?
            .into_iter()
            .map(|s| (s.index, s.size))
            .collect();
        self.segments = dst
            .wal_segments(g)
            .await?
            .collect_all()
            .await?
            .into_iter()
            .map(|s| ((s.index, s.offset), s.size))
            .collect();
        self.generation = Some(g.clone());
        Ok(())
    }

    async fn snapshot_size(
        &mut self,
        dst: &dyn ReplicaClient,
        g: &Generation,
        index: u64,
    ) -> Result<Option<u64>, Exit> {
        self.load(dst, g).await?;
        Ok(self.snapshots.get(&index).copied())
    }

    async fn segment_size(
        &mut self,
        dst: &dyn ReplicaClient,
        info: &replica::WalSegmentInfo,
    ) -> Result<Option<u64>, Exit> {
        self.load(dst, &info.generation).await?;
        Ok(self.segments.get(&(info.index, info.offset)).copied())
    }
}
