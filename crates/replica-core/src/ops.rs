//! Operations over any client, written once: [`ReplicaClientExt`].

use async_trait::async_trait;
use bytes::Bytes;
use chrono::{DateTime, Utc};
use futures::stream::{self, BoxStream, StreamExt, TryStreamExt};

use crate::client::{ByteStream, ReplicaClient};
use crate::contiguity::{plain_len, WalContiguity};
use crate::error::{Error, Result};
use crate::layout::{check_index, format_index};
use crate::lz4::decompress_stream;
use crate::types::{Generation, Pos, SnapshotInfo, WalSegmentInfo};

/// The time `key` carries in `store`; `listed` when the store keeps none,
/// or when the object went since it was listed (retention may delete it
/// meanwhile: its listed time still places it).
async fn kept_time(
    store: &dyn crate::KeyStore,
    key: &str,
    listed: DateTime<Utc>,
) -> Result<DateTime<Utc>> {
    match store.object_time(key).await {
        Ok(at) => Ok(at.unwrap_or(listed)),
        Err(Error::NotFound { .. }) => Ok(listed),
        Err(e) => Err(e),
    }
}

/// Oldest and newest `created_at` of a set of objects.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimeBounds {
    /// Earliest `created_at`.
    pub first: DateTime<Utc>,
    /// Latest `created_at`.
    pub last: DateTime<Utc>,
}

impl TimeBounds {
    /// Bounds widened to include `at` (`None` is the empty set).
    pub fn widen(bounds: Option<TimeBounds>, at: DateTime<Utc>) -> Option<TimeBounds> {
        Some(match bounds {
            None => TimeBounds {
                first: at,
                last: at,
            },
            Some(b) => TimeBounds {
                first: b.first.min(at),
                last: b.last.max(at),
            },
        })
    }
}

/// The generation whose newest object is the newest of all; ties go to the
/// greater name. The rule behind [`ReplicaClientExt::latest_generation`], for
/// callers that already hold the bounds.
pub fn newest_generation(
    bounds: impl IntoIterator<Item = (Generation, TimeBounds)>,
) -> Option<Generation> {
    bounds
        .into_iter()
        .max_by(|(ga, a), (gb, b)| a.last.cmp(&b.last).then_with(|| ga.cmp(gb)))
        .map(|(g, _)| g)
}

/// How far a restore goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RestoreTarget {
    /// Up to and including the highest WAL index stored.
    End,
    /// Up to and including this WAL index.
    Index(u64),
    /// As of this time, by object times (as `litestream restore -timestamp`):
    /// the newest snapshot created at or before it, then WAL segments in
    /// order up to the first one created after it.
    Timestamp(DateTime<Utc>),
}

/// What a restore will hand over, checked for contiguity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RestorePlan {
    /// The snapshot that becomes the database file.
    pub snapshot: SnapshotInfo,
    /// The WAL files to apply in order: each index with its segments by offset.
    pub wal: Vec<(u64, Vec<WalSegmentInfo>)>,
}

/// Where a restore delivers the database and WAL files, in order.
#[async_trait]
pub trait RestoreSink: Send {
    /// Receives the decompressed snapshot: the database file.
    async fn database(&mut self, snapshot: &SnapshotInfo, data: ByteStream) -> Result<()>;
    /// Receives one whole decompressed WAL file, after the database and every lower index.
    async fn wal(&mut self, index: u64, data: BoxStream<'_, Result<Bytes>>) -> Result<()>;
}

/// Conveniences for every [`ReplicaClient`], built only on the trait.
#[async_trait]
pub trait ReplicaClientExt: ReplicaClient {
    /// The generation holding the newest snapshot or segment, if any.
    async fn latest_generation(&self) -> Result<Option<Generation>> {
        let mut all = Vec::new();
        for generation in self.generations().await? {
            if let Some(bounds) = self.generation_time_bounds(&generation).await? {
                all.push((generation, bounds));
            }
        }
        Ok(newest_generation(all))
    }

    /// Oldest and newest `created_at` in a generation; `None` when it is empty.
    async fn generation_time_bounds(&self, generation: &Generation) -> Result<Option<TimeBounds>> {
        let mut bounds = None;
        for snapshot in self.snapshots(generation).await? {
            bounds = TimeBounds::widen(bounds, snapshot.created_at);
        }
        let mut cursor = self.wal_segments(generation).await?;
        while let Some(info) = cursor.next().await {
            bounds = TimeBounds::widen(bounds, info?.created_at);
        }
        Ok(bounds)
    }

    /// [`generation_time_bounds`](Self::generation_time_bounds) by the times
    /// objects carry: where the store keeps them as metadata (a copied
    /// replica on S3), the kept times of the snapshots and of the first and
    /// last segment (kept times grow with the position), a few reads; else
    /// the listed times. For restores to a point in time.
    async fn generation_kept_time_bounds(
        &self,
        generation: &Generation,
    ) -> Result<Option<TimeBounds>> {
        let Some(store) = self.key_store().filter(|s| !s.times_listed()) else {
            return self.generation_time_bounds(generation).await;
        };
        let layout = self.layout();
        let mut bounds = None;
        for snapshot in self.snapshots(generation).await? {
            let key = layout.snapshot_key(generation, snapshot.index)?;
            let at = kept_time(&*store, &key, snapshot.created_at).await?;
            bounds = TimeBounds::widen(bounds, at);
        }
        let mut ends: Option<(WalSegmentInfo, WalSegmentInfo)> = None;
        let mut cursor = self.wal_segments(generation).await?;
        while let Some(info) = cursor.next().await {
            let info = info?;
            ends = Some(match ends {
                None => (info.clone(), info),
                Some((first, _)) => (first, info),
            });
        }
        if let Some((first, last)) = ends {
            for info in [first, last] {
                let key = layout.wal_segment_key(&info.pos())?;
                let at = kept_time(&*store, &key, info.created_at).await?;
                bounds = TimeBounds::widen(bounds, at);
            }
        }
        Ok(bounds)
    }

    /// Oldest and newest `created_at` over the whole replica; `None` when empty.
    async fn replica_time_bounds(&self) -> Result<Option<TimeBounds>> {
        let mut bounds = None;
        for generation in self.generations().await? {
            if let Some(b) = self.generation_time_bounds(&generation).await? {
                bounds = TimeBounds::widen(bounds, b.first);
                bounds = TimeBounds::widen(bounds, b.last);
            }
        }
        Ok(bounds)
    }

    /// Highest snapshot or WAL index in a generation; `None` when it is empty.
    async fn max_index(&self, generation: &Generation) -> Result<Option<u64>> {
        let mut max = self.snapshots(generation).await?.last().map(|s| s.index);
        let mut cursor = self.wal_segments(generation).await?;
        while let Some(info) = cursor.next().await {
            max = max.max(Some(info?.index));
        }
        Ok(max)
    }

    /// The decompressed bytes of a snapshot; a corrupt frame is an
    /// [`Error::Corrupt`] naming the object's key.
    async fn snapshot_plain(&self, generation: &Generation, index: u64) -> Result<ByteStream> {
        let key = self.layout().snapshot_key(generation, index)?;
        let data = self.snapshot_reader(generation, index).await?;
        Ok(decompress_stream(data)
            .map_err(move |e| e.naming(&key))
            .boxed())
    }

    /// The decompressed bytes of a WAL segment; a corrupt frame is an
    /// [`Error::Corrupt`] naming the object's key.
    async fn wal_segment_plain(&self, pos: &Pos) -> Result<ByteStream> {
        let key = self.layout().wal_segment_key(pos)?;
        let data = self.wal_segment_reader(pos).await?;
        Ok(decompress_stream(data)
            .map_err(move |e| e.naming(&key))
            .boxed())
    }

    /// The snapshot to restore from for `index`: the newest at or below it.
    async fn snapshot_for_index(
        &self,
        generation: &Generation,
        index: u64,
    ) -> Result<Option<SnapshotInfo>> {
        check_index(index)?;
        Ok(self
            .snapshots(generation)
            .await?
            .into_iter()
            .rfind(|s| s.index <= index))
    }

    /// Chooses the snapshot and WAL segments for a restore from listings
    /// alone (nothing is read): the snapshot (newest at or below the target
    /// index, or created at or before the target time), then every segment
    /// from the snapshot's index up to the target, grouped by index.
    ///
    /// The offsets are not checked here (that needs each segment's
    /// decompressed length; see [`plan_restore`](Self::plan_restore) and
    /// [`WalContiguity`]), but a missing index is: every index after the
    /// snapshot's up to the last one (or the target index) must have segments.
    async fn list_restore(
        &self,
        generation: &Generation,
        target: RestoreTarget,
    ) -> Result<RestorePlan> {
        // A store that keeps object times as metadata (a copied replica on
        // S3) lists its own last-modified times: a point in time is judged by
        // the kept times, read one object at a time.
        let kept = match target {
            RestoreTarget::Timestamp(_) => self.key_store().filter(|s| !s.times_listed()),
            _ => None,
        };
        let layout = self.layout();
        let snapshot = match target {
            RestoreTarget::End => self.snapshots(generation).await?.pop(),
            RestoreTarget::Index(index) => self.snapshot_for_index(generation, index).await?,
            RestoreTarget::Timestamp(at) => {
                let mut timed = Vec::new();
                for mut s in self.snapshots(generation).await? {
                    if let Some(store) = &kept {
                        let key = layout.snapshot_key(generation, s.index)?;
                        s.created_at = kept_time(&**store, &key, s.created_at).await?;
                    }
                    timed.push(s);
                }
                timed
                    .into_iter()
                    .filter(|s| s.created_at <= at)
                    .max_by_key(|s| (s.created_at, s.index))
            }
        }
        .ok_or_else(|| {
            Error::not_found(format!(
                "snapshot of generation {generation} for {target:?}"
            ))
        })?;

        let mut chosen: Vec<WalSegmentInfo> = Vec::new();
        let mut cursor = self.wal_segments(generation).await?;
        while let Some(info) = cursor.next().await {
            let info = info?;
            match target {
                RestoreTarget::Index(t) if info.index > t => break,
                RestoreTarget::Timestamp(at) if kept.is_none() && info.created_at > at => break,
                _ => {}
            }
            if info.index >= snapshot.index {
                chosen.push(info);
            }
        }
        if let (RestoreTarget::Timestamp(at), Some(store)) = (target, &kept) {
            // Kept times grow with the position (segments are written in
            // order, and a copy keeps each one's time): the first segment
            // after `at` is found by bisection, a few reads in all.
            let (mut low, mut high) = (0, chosen.len());
            while low < high {
                let mid = low + (high - low) / 2;
                let info = &chosen[mid];
                let key = layout.wal_segment_key(&info.pos())?;
                let time = kept_time(&**store, &key, info.created_at).await?;
                if time <= at {
                    low = mid + 1;
                } else {
                    high = mid;
                }
            }
            chosen.truncate(low);
        }
        let mut by_index: Vec<(u64, Vec<WalSegmentInfo>)> = Vec::new();
        for info in chosen {
            match by_index.last_mut() {
                Some((index, segments)) if *index == info.index => segments.push(info),
                _ => by_index.push((info.index, vec![info])),
            }
        }
        // From the snapshot's own index on, every index must be there.
        if let Some(gap) = crate::contiguity::snapshot_index_gap(
            generation,
            snapshot.index,
            by_index.first().map(|(i, _)| *i),
        ) {
            return Err(gap);
        }
        let mut next = None;
        for (index, _) in &by_index {
            let expected = next.unwrap_or(*index);
            if *index != expected {
                return Err(Error::Gap {
                    expected: Pos::new(generation.clone(), expected, 0)?,
                    found: format!("next segment at index {}", format_index(*index)),
                });
            }
            next = Some(index + 1);
        }
        // A target index past the generation's last one restores to its end,
        // as Litestream does (the caller can tell from the plan and say so).
        Ok(RestorePlan {
            snapshot,
            wal: by_index,
        })
    }

    /// [`list_restore`](Self::list_restore), then reads each segment once to
    /// learn its decompressed size and checks that the WAL is contiguous.
    ///
    /// The rule is [`WalContiguity`]: within an index the first segment is at
    /// offset 0 and each next offset is the previous offset plus the previous
    /// segment's decompressed length; every index after the snapshot's up to
    /// the target has segments, the snapshot's own included. A hole
    /// is [`Error::Gap`].
    async fn plan_restore(
        &self,
        generation: &Generation,
        target: RestoreTarget,
    ) -> Result<RestorePlan> {
        let plan = self.list_restore(generation, target).await?;
        let mut check = WalContiguity::from_snapshot(generation.clone(), plan.snapshot.index);
        for (_, segments) in &plan.wal {
            for segment in segments {
                let len = plain_len(self.wal_segment_plain(&segment.pos()).await?).await?;
                check.check(segment, len)?;
            }
        }
        Ok(plan)
    }

    /// Plans a restore (see [`plan_restore`](Self::plan_restore)) and, only if
    /// the plan is sound, streams it into `sink`: the decompressed snapshot,
    /// then each WAL index's decompressed segments as one WAL file.
    async fn restore(
        &self,
        generation: &Generation,
        target: RestoreTarget,
        sink: &mut dyn RestoreSink,
    ) -> Result<RestorePlan> {
        let plan = self.plan_restore(generation, target).await?;
        let data = self.snapshot_plain(generation, plan.snapshot.index).await?;
        sink.database(&plan.snapshot, data).await?;
        for (index, segments) in &plan.wal {
            let wal = stream::iter(segments)
                .then(|segment| async move { self.wal_segment_plain(&segment.pos()).await })
                .try_flatten()
                .boxed();
            sink.wal(*index, wal).await?;
        }
        Ok(plan)
    }
}

impl<T: ReplicaClient + ?Sized> ReplicaClientExt for T {}
