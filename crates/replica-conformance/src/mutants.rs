//! Deliberately broken backends, to prove the suite can fail.
//!
//! Each [`Mutant`] wraps a working client and breaks one rule of the
//! contract. The crate's tests run the suite on each and assert that the
//! case named by [`Mutant::caught_by`] fails. Backend authors can use them
//! the same way to check a suite extension of their own.

use std::fmt;
use std::sync::Arc;

use bytes::BytesMut;
use chrono::DateTime;
use futures::{StreamExt, TryStreamExt};
use replica_core::{
    async_trait, bytes_stream, ByteStream, Error, Generation, Pos, ReplicaClient, Result,
    SnapshotInfo, WalSegmentCursor, WalSegmentInfo,
};

/// One way of breaking the contract.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mutant {
    /// Lists generations and snapshots in reverse order.
    UnsortedListing,
    /// Reads a missing object as empty instead of `NotFound`.
    MissingReadsAsEmpty,
    /// Accepts indexes above 2^63-1 (silently masking the top bit).
    IndexAboveMaxAccepted,
    /// Leaves the received prefix under the final name when a write fails.
    PartialWriteVisible,
    /// Deleting a missing object is an error.
    DeleteMissingErrors,
    /// Returns a cursor that ignores the store, so duplicates of stored
    /// segments are accepted on append.
    CursorIgnoresStore,
    /// Lists snapshot sizes one byte too large.
    WrongListedSize,
    /// Reports `created_at` as the Unix epoch.
    EpochCreatedAt,
    /// Deletes only the first 1,000 positions of a batch (one S3 request).
    DeletesOnlyTheFirstBatch,
    /// Reports a missing object's `NotFound` only inside the stream it returns.
    NotFoundInsideTheStream,
    /// Acknowledges an empty segment but stores nothing.
    DropsEmptySegments,
    /// Lists the snapshots of every generation under each generation.
    SnapshotsLeakAcrossGenerations,
    /// A write's reply says an hour later than the listing will.
    ReplyTimeDiffersFromListing,
}

impl Mutant {
    /// Every mutant.
    pub const ALL: [Mutant; 13] = [
        Mutant::UnsortedListing,
        Mutant::MissingReadsAsEmpty,
        Mutant::IndexAboveMaxAccepted,
        Mutant::PartialWriteVisible,
        Mutant::DeleteMissingErrors,
        Mutant::CursorIgnoresStore,
        Mutant::WrongListedSize,
        Mutant::EpochCreatedAt,
        Mutant::DeletesOnlyTheFirstBatch,
        Mutant::NotFoundInsideTheStream,
        Mutant::DropsEmptySegments,
        Mutant::SnapshotsLeakAcrossGenerations,
        Mutant::ReplyTimeDiffersFromListing,
    ];

    /// The case that must fail on this mutant.
    pub fn caught_by(self) -> &'static str {
        match self {
            Mutant::UnsortedListing => "snapshots_are_sorted_by_index",
            Mutant::MissingReadsAsEmpty => "snapshot_reader_of_a_missing_index_is_not_found",
            Mutant::IndexAboveMaxAccepted => "snapshot_index_above_the_layout_maximum_is_invalid",
            Mutant::PartialWriteVisible => "failed_snapshot_write_stores_nothing",
            Mutant::DeleteMissingErrors => "delete_of_a_missing_snapshot_is_ok",
            Mutant::CursorIgnoresStore => "cursor_rejects_a_duplicate_offset",
            Mutant::WrongListedSize => "listed_snapshot_has_exact_size_and_time",
            Mutant::EpochCreatedAt => "write_snapshot_returns_exact_info",
            Mutant::DeletesOnlyTheFirstBatch => {
                "deleting_more_than_a_thousand_segments_deletes_them_all"
            }
            Mutant::NotFoundInsideTheStream => {
                "a_missing_segment_is_not_found_from_the_call_itself"
            }
            Mutant::DropsEmptySegments => "an_empty_wal_segment_round_trips",
            Mutant::SnapshotsLeakAcrossGenerations => {
                "snapshots_of_one_generation_are_not_listed_in_another"
            }
            Mutant::ReplyTimeDiffersFromListing => "the_write_reply_time_is_the_listed_time",
        }
    }

    /// Words the failure of [`caught_by`](Self::caught_by) must contain on
    /// this mutant: proof that the case failed for the rule it is named
    /// for, not for any other reason.
    pub fn failure_says(self) -> &'static str {
        match self {
            Mutant::UnsortedListing => "snapshots are listed ascending by index",
            Mutant::MissingReadsAsEmpty => "expected NotFound",
            Mutant::IndexAboveMaxAccepted => "expected InvalidArgument",
            Mutant::PartialWriteVisible => "partial snapshot listed",
            Mutant::DeleteMissingErrors => "unexpected error: not found",
            Mutant::CursorIgnoresStore => "the cursor yields the stored segments",
            Mutant::WrongListedSize => "listed (index, stored size)",
            Mutant::EpochCreatedAt => "is not within 5 minutes of now",
            Mutant::DeletesOnlyTheFirstBatch => "left 100 behind",
            Mutant::NotFoundInsideTheStream => "NotFound must come from the call itself",
            Mutant::DropsEmptySegments => "an empty segment is stored and listed",
            Mutant::SnapshotsLeakAcrossGenerations => "snapshots of 0000000000000001",
            Mutant::ReplyTimeDiffersFromListing => "the write reply says",
        }
    }

    /// Wraps a working client so that it breaks this rule.
    pub fn wrap(self, inner: Arc<dyn ReplicaClient>) -> Mutated {
        Mutated {
            inner,
            mutant: self,
        }
    }
}

/// A client broken by a [`Mutant`].
pub struct Mutated {
    inner: Arc<dyn ReplicaClient>,
    mutant: Mutant,
}

impl fmt::Debug for Mutated {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Mutated({:?}, {:?})", self.mutant, self.inner)
    }
}

impl Mutated {
    fn is(&self, m: Mutant) -> bool {
        self.mutant == m
    }

    fn index(&self, index: u64) -> u64 {
        if self.is(Mutant::IndexAboveMaxAccepted) {
            index & self.inner.layout().max_index()
        } else {
            index
        }
    }

    fn read(&self, result: Result<ByteStream>) -> Result<ByteStream> {
        match result {
            Err(e) if e.is_not_found() && self.is(Mutant::MissingReadsAsEmpty) => {
                Ok(bytes_stream(Vec::new()))
            }
            Err(e) if e.is_not_found() && self.is(Mutant::NotFoundInsideTheStream) => {
                Ok(futures::stream::once(async move { Err(e) }).boxed())
            }
            other => other,
        }
    }

    /// For the partial-write mutant: drains the stream, and on error stores
    /// what arrived before failing.
    async fn input(
        &self,
        data: ByteStream,
    ) -> std::result::Result<ByteStream, (ByteStream, Error)> {
        if !self.is(Mutant::PartialWriteVisible) {
            return Ok(data);
        }
        let mut data = data;
        let mut buf = BytesMut::new();
        loop {
            match data.try_next().await {
                Ok(Some(chunk)) => buf.extend_from_slice(&chunk),
                Ok(None) => return Ok(bytes_stream(buf.freeze())),
                Err(e) => return Err((bytes_stream(buf.freeze()), e)),
            }
        }
    }

    fn created(&self, at: &mut DateTime<chrono::Utc>) {
        if self.is(Mutant::EpochCreatedAt) {
            *at = DateTime::UNIX_EPOCH;
        }
    }

    /// The reply to a write (the listing is left alone).
    fn replied(&self, at: &mut DateTime<chrono::Utc>) {
        self.created(at);
        if self.is(Mutant::ReplyTimeDiffersFromListing) {
            *at += chrono::TimeDelta::hours(1);
        }
    }
}

#[async_trait]
impl ReplicaClient for Mutated {
    fn kind(&self) -> &'static str {
        "mutant"
    }
    fn layout(&self) -> replica_core::Layout {
        self.inner.layout()
    }

    async fn generations(&self) -> Result<Vec<Generation>> {
        let mut gs = self.inner.generations().await?;
        if self.is(Mutant::UnsortedListing) {
            gs.reverse();
        }
        Ok(gs)
    }

    async fn delete_generation(&self, generation: &Generation) -> Result<()> {
        self.inner.delete_generation(generation).await
    }

    async fn snapshots(&self, generation: &Generation) -> Result<Vec<SnapshotInfo>> {
        let mut snaps = self.inner.snapshots(generation).await?;
        if self.is(Mutant::SnapshotsLeakAcrossGenerations) {
            for other in self.inner.generations().await? {
                if other != *generation {
                    snaps.extend(self.inner.snapshots(&other).await?);
                }
            }
            snaps.sort_by_key(|s| s.index);
        }
        if self.is(Mutant::UnsortedListing) {
            snaps.reverse();
        }
        for s in &mut snaps {
            if self.is(Mutant::WrongListedSize) {
                s.size += 1;
            }
            self.created(&mut s.created_at);
        }
        Ok(snaps)
    }

    async fn write_snapshot(
        &self,
        generation: &Generation,
        index: u64,
        data: ByteStream,
    ) -> Result<SnapshotInfo> {
        let index = self.index(index);
        let mut info = match self.input(data).await {
            Ok(data) => self.inner.write_snapshot(generation, index, data).await?,
            Err((prefix, e)) => {
                self.inner.write_snapshot(generation, index, prefix).await?;
                return Err(e);
            }
        };
        self.replied(&mut info.created_at);
        Ok(info)
    }

    async fn snapshot_reader(&self, generation: &Generation, index: u64) -> Result<ByteStream> {
        self.read(
            self.inner
                .snapshot_reader(generation, self.index(index))
                .await,
        )
    }

    async fn delete_snapshot(&self, generation: &Generation, index: u64) -> Result<()> {
        let index = self.index(index);
        if self.is(Mutant::DeleteMissingErrors)
            && !self
                .inner
                .snapshots(generation)
                .await?
                .iter()
                .any(|s| s.index == index)
        {
            return Err(Error::not_found(format!("{generation}/{index}")));
        }
        self.inner.delete_snapshot(generation, index).await
    }

    async fn wal_segments(&self, generation: &Generation) -> Result<WalSegmentCursor> {
        if self.is(Mutant::CursorIgnoresStore) {
            return Ok(WalSegmentCursor::empty(generation.clone()));
        }
        self.inner.wal_segments(generation).await
    }

    async fn write_wal_segment(&self, pos: &Pos, data: ByteStream) -> Result<WalSegmentInfo> {
        let pos = Pos {
            index: self.index(pos.index),
            offset: self.index(pos.offset),
            ..pos.clone()
        };
        let mut info = match self.input(data).await {
            Ok(data) if self.is(Mutant::DropsEmptySegments) => {
                let data = futures::TryStreamExt::try_collect::<Vec<_>>(data)
                    .await?
                    .concat();
                if data.is_empty() {
                    return Ok(WalSegmentInfo::new(&pos, 0, chrono::Utc::now()));
                }
                self.inner
                    .write_wal_segment(&pos, bytes_stream(data))
                    .await?
            }
            Ok(data) => self.inner.write_wal_segment(&pos, data).await?,
            Err((prefix, e)) => {
                self.inner.write_wal_segment(&pos, prefix).await?;
                return Err(e);
            }
        };
        self.replied(&mut info.created_at);
        Ok(info)
    }

    async fn wal_segment_reader(&self, pos: &Pos) -> Result<ByteStream> {
        self.read(self.inner.wal_segment_reader(pos).await)
    }

    async fn delete_wal_segments(&self, positions: &[Pos]) -> Result<()> {
        let batch = if self.is(Mutant::DeletesOnlyTheFirstBatch) {
            &positions[..positions.len().min(1000)]
        } else {
            positions
        };
        self.inner.delete_wal_segments(batch).await
    }
}

/// One way a key store can break the contract, below the layouts: a
/// [`KeyStore`](replica_core::KeyStore) wrapper, so the fault reaches
/// [`StoreClient`](replica_core::StoreClient) and the LTX client exactly as
/// a buggy backend's would.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreMutant {
    /// Lists only the first 1,000 objects of a directory (one S3 page).
    ObjectsListedOnlyFirstPage,
    /// A ranged read returns the whole object.
    RangeIgnored,
    /// A ranged read starting at or past the end is an error.
    RangePastTheEndFails,
    /// A missing object reads as empty.
    MissingReadsAsEmpty,
    /// A failed write leaves what arrived under the final name.
    PartialWriteVisible,
    /// An existing object is never replaced.
    OverwriteIgnored,
    /// The time a write asks for is dropped (the object gets "now").
    TimeIgnored,
    /// Listings name objects by their whole key, not their last part.
    ListsWholeKeys,
    /// Listings lower-case object names.
    LowercasesNames,
    /// Listings leave out the first object of a directory.
    DropsFirstListed,
    /// `delete_all` removes nothing.
    DeleteAllIgnored,
    /// Lists only the first 1,000 child directories (S3 pages common
    /// prefixes separately from objects).
    DirsListedOnlyFirstPage,
    /// The same, only in `wal/` directories (the 0.4 layout's index
    /// directories).
    WalDirsListedOnlyFirstPage,
    /// `delete_all` removes only the first 1,000 objects below the directory.
    DeleteAllOnlyFirstBatch,
    /// The root (`list("")`) lists as empty.
    RootListedEmpty,
}

impl StoreMutant {
    /// Every store mutant.
    pub const ALL: [StoreMutant; 15] = [
        StoreMutant::ObjectsListedOnlyFirstPage,
        StoreMutant::RangeIgnored,
        StoreMutant::RangePastTheEndFails,
        StoreMutant::MissingReadsAsEmpty,
        StoreMutant::PartialWriteVisible,
        StoreMutant::OverwriteIgnored,
        StoreMutant::TimeIgnored,
        StoreMutant::ListsWholeKeys,
        StoreMutant::LowercasesNames,
        StoreMutant::DropsFirstListed,
        StoreMutant::DeleteAllIgnored,
        StoreMutant::DirsListedOnlyFirstPage,
        StoreMutant::WalDirsListedOnlyFirstPage,
        StoreMutant::DeleteAllOnlyFirstBatch,
        StoreMutant::RootListedEmpty,
    ];

    /// The case that must fail on this mutant.
    pub fn caught_by(self) -> &'static str {
        match self {
            StoreMutant::ObjectsListedOnlyFirstPage => {
                "more_than_a_thousand_ltx_files_in_a_level_list_complete"
            }
            StoreMutant::RangeIgnored | StoreMutant::RangePastTheEndFails => {
                "ltx_ranged_reads_at_and_past_the_end"
            }
            StoreMutant::MissingReadsAsEmpty => "ltx_missing_file_is_not_found_from_the_call",
            StoreMutant::PartialWriteVisible => "ltx_failed_write_stores_nothing",
            StoreMutant::OverwriteIgnored => "ltx_overwrite_replaces_content",
            StoreMutant::TimeIgnored => "ltx_file_times_are_kept",
            StoreMutant::ListsWholeKeys => "ltx_levels_list_by_txid",
            StoreMutant::LowercasesNames => "junk_ltx_names_are_skipped",
            StoreMutant::DropsFirstListed => "ltx_seek_starts_at_the_txid",
            StoreMutant::DeleteAllIgnored => "ltx_delete_removes_only_the_files_named",
            StoreMutant::DirsListedOnlyFirstPage => {
                "more_than_a_thousand_generations_list_complete_and_sorted"
            }
            StoreMutant::WalDirsListedOnlyFirstPage => {
                "more_than_a_thousand_wal_indexes_list_complete_and_restore_across"
            }
            StoreMutant::DeleteAllOnlyFirstBatch => {
                "deleting_a_generation_of_more_than_a_thousand_objects_leaves_nothing"
            }
            StoreMutant::RootListedEmpty => "ltx_levels_present_are_found_in_either_key_shape",
        }
    }

    /// Words the failure of [`caught_by`](Self::caught_by) must contain.
    pub fn failure_says(self) -> &'static str {
        match self {
            StoreMutant::ObjectsListedOnlyFirstPage => {
                "every file of a level beyond one listing page"
            }
            StoreMutant::RangeIgnored => "a range at the start",
            StoreMutant::RangePastTheEndFails => "range starts past the end",
            StoreMutant::MissingReadsAsEmpty => "reading a missing file",
            StoreMutant::PartialWriteVisible => "a failed write is listed",
            StoreMutant::OverwriteIgnored => "read after overwrite",
            StoreMutant::TimeIgnored => "the time given to the write",
            StoreMutant::ListsWholeKeys => "level 0 by TXID",
            StoreMutant::LowercasesNames => "only the canonical name is listed",
            StoreMutant::DropsFirstListed => "seek before all",
            StoreMutant::DeleteAllIgnored => "delete_all leaves nothing",
            StoreMutant::DirsListedOnlyFirstPage => "beyond one listing page of directories",
            StoreMutant::WalDirsListedOnlyFirstPage => "beyond one listing page of directories",
            StoreMutant::DeleteAllOnlyFirstBatch => "left 101 segments readable",
            StoreMutant::RootListedEmpty => "must show its directories",
        }
    }

    /// Wraps a working key store so that it breaks this rule.
    pub fn wrap<S: replica_core::KeyStore>(self, inner: S) -> MutatedStore<S> {
        MutatedStore {
            inner,
            mutant: self,
        }
    }
}

/// A key store broken by a [`StoreMutant`].
#[derive(Debug)]
pub struct MutatedStore<S> {
    inner: S,
    mutant: StoreMutant,
}

#[async_trait]
impl<S: replica_core::KeyStore> replica_core::KeyStore for MutatedStore<S> {
    fn kind(&self) -> &'static str {
        self.inner.kind()
    }

    async fn put_opts(
        &self,
        key: &str,
        data: ByteStream,
        options: &replica_core::PutOptions,
    ) -> Result<replica_core::ObjectMeta> {
        match self.mutant {
            StoreMutant::PartialWriteVisible => {
                let mut got = BytesMut::new();
                let mut data = data;
                let outcome = loop {
                    match data.next().await {
                        Some(Ok(chunk)) => got.extend_from_slice(&chunk),
                        Some(Err(e)) => break Err(e),
                        None => break Ok(()),
                    }
                };
                let meta = self
                    .inner
                    .put_opts(key, bytes_stream(got.freeze()), options)
                    .await?;
                outcome.map(|()| meta)
            }
            StoreMutant::OverwriteIgnored if self.inner.get(key).await.is_ok() => {
                let meta = self.inner.object_time(key).await?;
                Ok(replica_core::ObjectMeta {
                    size: collect_len(data).await?,
                    modified: meta.unwrap_or_default(),
                })
            }
            StoreMutant::TimeIgnored => {
                self.inner
                    .put_opts(key, data, &replica_core::PutOptions::default())
                    .await
            }
            _ => self.inner.put_opts(key, data, options).await,
        }
    }

    async fn get(&self, key: &str) -> Result<ByteStream> {
        match self.inner.get(key).await {
            Err(e) if e.is_not_found() && self.mutant == StoreMutant::MissingReadsAsEmpty => {
                Ok(bytes_stream(bytes::Bytes::new()))
            }
            other => other,
        }
    }

    async fn get_range(&self, key: &str, range: std::ops::Range<u64>) -> Result<ByteStream> {
        match self.mutant {
            StoreMutant::RangeIgnored => self.get(key).await,
            StoreMutant::RangePastTheEndFails => {
                let len = collect_len(self.inner.get(key).await?).await?;
                if range.start >= len && range.start < range.end {
                    return Err(Error::invalid(
                        "the range starts past the end of the object",
                    ));
                }
                self.inner.get_range(key, range).await
            }
            StoreMutant::MissingReadsAsEmpty => match self.inner.get_range(key, range).await {
                Err(e) if e.is_not_found() => Ok(bytes_stream(bytes::Bytes::new())),
                other => other,
            },
            _ => self.inner.get_range(key, range).await,
        }
    }

    async fn object_time(&self, key: &str) -> Result<Option<chrono::DateTime<chrono::Utc>>> {
        self.inner.object_time(key).await
    }

    async fn delete(&self, keys: &[String]) -> Result<()> {
        self.inner.delete(keys).await
    }

    async fn list(&self, dir: &str) -> Result<replica_core::Listing> {
        let mut listed = self.inner.list(dir).await?;
        match self.mutant {
            StoreMutant::ObjectsListedOnlyFirstPage => {
                listed.objects.sort_by(|a, b| a.0.cmp(&b.0));
                listed.objects.truncate(1000);
            }
            StoreMutant::ListsWholeKeys => {
                for (name, _) in &mut listed.objects {
                    *name = format!("{dir}/{name}");
                }
            }
            StoreMutant::LowercasesNames => {
                for (name, _) in &mut listed.objects {
                    *name = name.to_lowercase();
                }
            }
            StoreMutant::DropsFirstListed => {
                listed.objects.sort_by(|a, b| a.0.cmp(&b.0));
                if !listed.objects.is_empty() {
                    listed.objects.remove(0);
                }
            }
            StoreMutant::DirsListedOnlyFirstPage => {
                listed.dirs.sort();
                listed.dirs.truncate(1000);
            }
            StoreMutant::WalDirsListedOnlyFirstPage if dir.ends_with("/wal") => {
                listed.dirs.sort();
                listed.dirs.truncate(1000);
            }
            StoreMutant::RootListedEmpty if dir.is_empty() => {
                listed = replica_core::Listing::default();
            }
            _ => {}
        }
        Ok(listed)
    }

    async fn delete_all(&self, dir: &str) -> Result<()> {
        match self.mutant {
            StoreMutant::DeleteAllIgnored => Ok(()),
            StoreMutant::DeleteAllOnlyFirstBatch => {
                let mut keys = Vec::new();
                let mut dirs = vec![dir.to_owned()];
                while let Some(d) = dirs.pop() {
                    let listed = self.inner.list(&d).await?;
                    keys.extend(listed.objects.into_iter().map(|(n, _)| format!("{d}/{n}")));
                    dirs.extend(listed.dirs.into_iter().map(|n| format!("{d}/{n}")));
                }
                keys.sort();
                keys.truncate(1000);
                self.inner.delete(&keys).await
            }
            _ => self.inner.delete_all(dir).await,
        }
    }
}

async fn collect_len(mut data: ByteStream) -> Result<u64> {
    let mut len = 0u64;
    while let Some(chunk) = data.try_next().await? {
        len += chunk.len() as u64;
    }
    Ok(len)
}
