//! Copying a replica between any two clients, with requests in flight.
//!
//! Objects are read and written by position, so source and destination may
//! use different layouts (names are rewritten); a position the destination's
//! layout cannot name is refused before anything is copied. Objects already
//! present at the destination with the same size are skipped, and writes are
//! atomic, so an interrupted copy is simply run again. Nothing at the
//! destination is deleted.

use std::collections::HashMap;

use futures::stream::{self, StreamExt, TryStreamExt};

use crate::client::ReplicaClient;
use crate::error::{Error, Result};
use crate::types::{Generation, WalSegmentInfo};

/// Counts of a finished copy.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Copied {
    /// Objects written.
    pub objects: u64,
    /// Objects skipped (already present with the same size).
    pub skipped: u64,
    /// Stored bytes written.
    pub bytes: u64,
}

/// What a copy reports as it goes.
pub trait CopyProgress: Send + Sync {
    /// The copy will look at this many stored bytes.
    fn start(&self, bytes: u64);
    /// One more object of `bytes` stored bytes is done (copied or skipped).
    fn advance(&self, bytes: u64);
}

/// No progress reporting.
impl CopyProgress for () {
    fn start(&self, _: u64) {}
    fn advance(&self, _: u64) {}
}

enum Object {
    Snapshot(Generation, u64, u64),
    Segment(WalSegmentInfo),
}

impl Object {
    fn size(&self) -> u64 {
        match self {
            Object::Snapshot(_, _, size) => *size,
            Object::Segment(s) => s.size,
        }
    }
}

/// What the destination holds, by position: size of each snapshot and segment.
#[derive(Default)]
struct Present {
    snapshots: HashMap<(Generation, u64), u64>,
    segments: HashMap<(Generation, u64, u64), u64>,
}

/// Copies `generations` of `src` into `dst`, at most `parallelism` objects
/// at once (at least 1).
pub async fn copy(
    src: &dyn ReplicaClient,
    dst: &dyn ReplicaClient,
    generations: &[Generation],
    parallelism: usize,
    progress: &dyn CopyProgress,
) -> Result<Copied> {
    // List first: the total for the progress, and every position checked
    // against the destination's layout before anything is written.
    let mut objects = Vec::new();
    let mut present = Present::default();
    for g in generations {
        for s in src.snapshots(g).await? {
            objects.push(Object::Snapshot(g.clone(), s.index, s.size));
        }
        let segments = src.wal_segments(g).await?.collect_all().await?;
        objects.extend(segments.into_iter().map(Object::Segment));
        for s in dst.snapshots(g).await? {
            present.snapshots.insert((g.clone(), s.index), s.size);
        }
        for s in dst.wal_segments(g).await?.collect_all().await? {
            present
                .segments
                .insert((g.clone(), s.index, s.offset), s.size);
        }
    }
    let layout = dst.layout();
    for object in &objects {
        let checked = match object {
            Object::Snapshot(g, index, _) => layout.snapshot_key(g, *index).map(drop),
            Object::Segment(s) => layout.wal_segment_key(&s.pos()).map(drop),
        };
        checked.map_err(|e| {
            Error::invalid(format!(
                "cannot copy into the {layout} layout: {e}; nothing was copied (copy into a {} \
                 destination instead)",
                src.layout()
            ))
        })?;
    }
    progress.start(objects.iter().map(Object::size).sum());

    let present = &present;
    stream::iter(objects)
        .map(|object| async move {
            let size = object.size();
            let done = match &object {
                Object::Snapshot(g, index, size) => {
                    if present.snapshots.get(&(g.clone(), *index)) == Some(size) {
                        false
                    } else {
                        let data = src.snapshot_reader(g, *index).await?;
                        dst.write_snapshot(g, *index, data).await?;
                        true
                    }
                }
                Object::Segment(info) => {
                    let key = (info.generation.clone(), info.index, info.offset);
                    if present.segments.get(&key) == Some(&info.size) {
                        false
                    } else {
                        let data = src.wal_segment_reader(&info.pos()).await?;
                        dst.write_wal_segment(&info.pos(), data).await?;
                        true
                    }
                }
            };
            progress.advance(size);
            Ok::<_, Error>((done, size))
        })
        .buffer_unordered(parallelism.max(1))
        .try_fold(Copied::default(), |mut copied, (done, size)| async move {
            if done {
                copied.objects += 1;
                copied.bytes += size;
            } else {
                copied.skipped += 1;
            }
            Ok(copied)
        })
        .await
}
