//! Copying a replica between any two clients, with requests in flight.
//!
//! Objects are read and written by position, so source and destination may
//! use different layouts (names are rewritten); a position the destination's
//! layout cannot name is refused before anything is copied. Objects already
//! present at the destination with the same size are skipped, and writes are
//! atomic, so an interrupted copy is simply run again. Nothing at the
//! destination is deleted. Each object keeps its time: read where the
//! source keeps it (listings, or metadata on object stores), written as the
//! destination keeps times (a file's mtime, an object's
//! `litestream-timestamp`), so a copy restores by timestamp as its source.

use std::collections::HashMap;

use futures::stream::{self, StreamExt, TryStreamExt};

use std::sync::Arc;

use chrono::{DateTime, Utc};

use crate::client::{ByteStream, ReplicaClient};
use crate::error::{Error, Result};
use crate::store::{KeyStore, PutOptions};
use crate::types::{Generation, SnapshotInfo, WalSegmentInfo};

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
    Snapshot(SnapshotInfo),
    Segment(WalSegmentInfo),
}

impl Object {
    fn size(&self) -> u64 {
        match self {
            Object::Snapshot(s) => s.size,
            Object::Segment(s) => s.size,
        }
    }
}

/// The time `key` of `src` carries (`listed` where its listings say it).
async fn source_time(
    src: Option<&Arc<dyn KeyStore>>,
    key: &str,
    listed: DateTime<Utc>,
) -> Result<DateTime<Utc>> {
    match src {
        Some(store) if !store.times_listed() => Ok(store.object_time(key).await?.unwrap_or(listed)),
        _ => Ok(listed),
    }
}

/// Writes `data` as `key` of `dst` carrying `time` (through its key store;
/// a client over none gets `fallback`, which cannot keep the time).
async fn write_at<F, Fut>(
    dst: Option<&Arc<dyn KeyStore>>,
    key: &str,
    data: ByteStream,
    time: DateTime<Utc>,
    fallback: F,
) -> Result<()>
where
    F: FnOnce(ByteStream) -> Fut,
    Fut: std::future::Future<Output = Result<()>>,
{
    match dst {
        Some(store) => {
            let options = PutOptions { time: Some(time) };
            store.put_opts(key, data, &options).await.map(drop)
        }
        None => fallback(data).await,
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
            objects.push(Object::Snapshot(s));
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
            Object::Snapshot(s) => layout.snapshot_key(&s.generation, s.index).map(drop),
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
    // Each object keeps its time (a copied replica restores by timestamp as
    // its source does): read where the source keeps it, written as the
    // destination keeps times (a file's mtime, an object's metadata).
    let (src_store, dst_store) = (src.key_store(), dst.key_store());
    let (src_store, dst_store) = (src_store.as_ref(), dst_store.as_ref());
    let src_layout = src.layout();
    stream::iter(objects)
        .map(|object| async move {
            let size = object.size();
            let done = match &object {
                Object::Snapshot(s) => {
                    let (g, index) = (&s.generation, s.index);
                    if present.snapshots.get(&(g.clone(), index)) == Some(&s.size) {
                        false
                    } else {
                        let time = source_time(
                            src_store,
                            &src_layout.snapshot_key(g, index)?,
                            s.created_at,
                        )
                        .await?;
                        let data = src.snapshot_reader(g, index).await?;
                        let key = layout.snapshot_key(g, index)?;
                        write_at(dst_store, &key, data, time, |data| async move {
                            dst.write_snapshot(g, index, data).await.map(drop)
                        })
                        .await?;
                        true
                    }
                }
                Object::Segment(info) => {
                    let key = (info.generation.clone(), info.index, info.offset);
                    if present.segments.get(&key) == Some(&info.size) {
                        false
                    } else {
                        let pos = info.pos();
                        let time = source_time(
                            src_store,
                            &src_layout.wal_segment_key(&pos)?,
                            info.created_at,
                        )
                        .await?;
                        let data = src.wal_segment_reader(&pos).await?;
                        let key = layout.wal_segment_key(&pos)?;
                        let pos = &pos;
                        write_at(dst_store, &key, data, time, |data| async move {
                            dst.write_wal_segment(pos, data).await.map(drop)
                        })
                        .await?;
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
