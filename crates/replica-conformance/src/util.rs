//! Helpers shared by the cases.

use bytes::Bytes;
use chrono::{DateTime, TimeDelta, Utc};
use futures::stream::{self, StreamExt, TryStreamExt};
use replica_core::{
    bytes_stream, collect_bytes, ByteStream, Error, Generation, Pos, ReplicaClient, Result,
    SnapshotInfo, WalSegmentInfo,
};

/// Generation number `n` as a name.
pub(crate) fn gen(n: u64) -> Generation {
    Generation::new(format!("{n:016x}")).expect("16 hex digits")
}

pub(crate) fn pos(g: &Generation, index: u64, offset: u64) -> Pos {
    Pos {
        generation: g.clone(),
        index,
        offset,
    }
}

/// Distinct, recognisable content for an object.
pub(crate) fn content(tag: &str, len: usize) -> Bytes {
    let seed = tag
        .bytes()
        .fold(7u64, |h, b| h.wrapping_mul(31).wrapping_add(u64::from(b)));
    Bytes::from(pseudo_random(seed, len))
}

/// Deterministic bytes from a seed (xorshift), reproducible chunk by chunk.
pub(crate) fn pseudo_random(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(len);
    out
}

pub(crate) async fn put_snapshot(
    c: &dyn ReplicaClient,
    g: &Generation,
    index: u64,
    data: &Bytes,
) -> Result<SnapshotInfo> {
    c.write_snapshot(g, index, bytes_stream(data.clone())).await
}

pub(crate) async fn put_segment(
    c: &dyn ReplicaClient,
    g: &Generation,
    index: u64,
    offset: u64,
    data: &Bytes,
) -> Result<WalSegmentInfo> {
    c.write_wal_segment(&pos(g, index, offset), bytes_stream(data.clone()))
        .await
}

pub(crate) async fn read_snapshot(
    c: &dyn ReplicaClient,
    g: &Generation,
    index: u64,
) -> Result<Bytes> {
    collect_bytes(c.snapshot_reader(g, index).await?).await
}

pub(crate) async fn read_segment(c: &dyn ReplicaClient, p: &Pos) -> Result<Bytes> {
    collect_bytes(c.wal_segment_reader(p).await?).await
}

pub(crate) async fn segments(c: &dyn ReplicaClient, g: &Generation) -> Result<Vec<WalSegmentInfo>> {
    c.wal_segments(g).await?.collect_all().await
}

pub(crate) async fn segment_positions(
    c: &dyn ReplicaClient,
    g: &Generation,
) -> Result<Vec<(u64, u64)>> {
    Ok(segments(c, g)
        .await?
        .iter()
        .map(|s| (s.index, s.offset))
        .collect())
}

pub(crate) async fn snapshot_indexes(c: &dyn ReplicaClient, g: &Generation) -> Result<Vec<u64>> {
    Ok(c.snapshots(g).await?.iter().map(|s| s.index).collect())
}

/// A stream that yields `prefix` in two chunks, then fails.
pub(crate) fn failing_stream(prefix: Bytes) -> ByteStream {
    let half = prefix.len() / 2;
    stream::iter(vec![
        Ok(prefix.slice(..half)),
        Ok(prefix.slice(half..)),
        Err(Error::io(
            "producing input",
            std::io::Error::other("input failed on purpose"),
        )),
    ])
    .boxed()
}

/// A stream of `len` pseudo-random bytes in 1 MiB chunks, generated lazily.
pub(crate) fn big_stream(seed: u64, len: usize) -> ByteStream {
    const CHUNK: usize = 1 << 20;
    stream::iter((0..len.div_ceil(CHUNK)).map(move |i| {
        let n = CHUNK.min(len - i * CHUNK);
        Ok(Bytes::from(pseudo_random(seed.wrapping_add(i as u64), n)))
    }))
    .boxed()
}

/// Compares a stream with [`big_stream`]`(seed, len)` without holding either whole.
pub(crate) async fn same_as_big_stream(
    mut got: ByteStream,
    seed: u64,
    len: usize,
) -> Result<Option<String>> {
    let mut expected = big_stream(seed, len);
    let mut want = Bytes::new();
    let mut at = 0usize;
    while let Some(mut chunk) = got.try_next().await? {
        while !chunk.is_empty() {
            if want.is_empty() {
                match expected.try_next().await? {
                    Some(w) => want = w,
                    None => return Ok(Some(format!("stream longer than {len} bytes"))),
                }
            }
            let n = want.len().min(chunk.len());
            if want[..n] != chunk[..n] {
                return Ok(Some(format!(
                    "bytes differ within {n} bytes after offset {at}"
                )));
            }
            want = want.slice(n..);
            chunk = chunk.slice(n..);
            at += n;
        }
    }
    if at != len {
        return Ok(Some(format!("stream ended at {at} of {len} bytes")));
    }
    Ok(None)
}

/// Asserts that a `created_at` is a real time near now.
pub(crate) fn assert_recent(at: DateTime<Utc>, what: &str) {
    let slack = TimeDelta::minutes(5);
    let now = Utc::now();
    assert!(
        at > now - slack && at < now + slack,
        "{what}: created_at {at} is not within 5 minutes of now ({now})"
    );
}

/// Asserts an error is `NotFound`.
pub(crate) fn assert_not_found<T: std::fmt::Debug>(result: Result<T>, what: &str) {
    match result {
        Err(e) if e.is_not_found() => {}
        other => panic!("{what}: expected NotFound, got {other:?}"),
    }
}

/// Asserts an error is `InvalidArgument`.
pub(crate) fn assert_invalid<T: std::fmt::Debug>(result: Result<T>, what: &str) {
    match result {
        Err(e) if e.is_invalid_argument() => {}
        other => panic!("{what}: expected InvalidArgument, got {other:?}"),
    }
}

/// How long a case waits for something that should happen at once: `base`
/// times `REPLICA_CONFORMANCE_WAIT_SCALE` (default 1; raise it for slow
/// stores), so a broken store fails in seconds, never by the harness's
/// timeout.
pub(crate) fn wait_limit(base: std::time::Duration) -> std::time::Duration {
    let scale = std::env::var("REPLICA_CONFORMANCE_WAIT_SCALE")
        .ok()
        .and_then(|v| v.parse::<f64>().ok())
        .filter(|s| *s > 0.0)
        .unwrap_or(1.0);
    base.mul_f64(scale)
}

/// `fut`, or a failure saying what was waited for and how long.
pub(crate) async fn within<T>(
    what: &str,
    fut: impl std::future::Future<Output = T>,
) -> Result<T, crate::CaseError> {
    let limit = wait_limit(std::time::Duration::from_secs(5));
    tokio::time::timeout(limit, fut).await.map_err(|_| {
        crate::CaseError::Fail(format!(
            "waited {limit:?} for {what} (REPLICA_CONFORMANCE_WAIT_SCALE scales the wait for slow stores)"
        ))
    })
}

/// Writes `n` copies of `data` through `write`, 32 requests in flight (a
/// real bucket takes seconds, not minutes).
pub(crate) async fn write_many<F, Fut, T>(n: u64, write: F) -> Result<Vec<T>>
where
    F: Fn(u64) -> Fut,
    Fut: std::future::Future<Output = Result<T>>,
{
    stream::iter(0..n)
        .map(write)
        .buffer_unordered(32)
        .try_collect()
        .await
}
