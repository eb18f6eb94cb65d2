//! The storage-client trait every backend implements, and byte-stream helpers.

use std::fmt;

use async_trait::async_trait;
use bytes::{Bytes, BytesMut};
use futures::stream::{BoxStream, StreamExt, TryStreamExt};
use tokio::io::AsyncRead;

use crate::cursor::WalSegmentCursor;
use crate::error::{Error, Result};
use crate::layout::Layout;
use crate::types::{Generation, Pos, SnapshotInfo, WalSegmentInfo};

/// A stream of byte chunks: how data goes into and comes out of a client.
///
/// Nothing in replica needs a whole snapshot in memory; a stream is read one
/// chunk at a time.
pub type ByteStream = BoxStream<'static, Result<Bytes>>;

/// A store of replication data: generations of snapshots and WAL segments.
///
/// This trait is the whole contract a backend implements (see `SPEC.md`).
/// Conveniences built on it, written once for every backend, are in
/// [`ReplicaClientExt`](crate::ReplicaClientExt).
///
/// Rules every implementation follows:
/// - listings are sorted ascending and skip non-canonical names;
/// - a missing generation lists as empty, a missing object reads as
///   [`Error::NotFound`], and deleting a missing object is `Ok`;
/// - indexes and offsets its layout cannot name (above 2^63-1, or 8 hex
///   digits in the Litestream 0.3 layout) are [`Error::InvalidArgument`] before any I/O;
/// - writes are atomic: a reader sees the old object or the new one, never a prefix.
#[async_trait]
pub trait ReplicaClient: Send + Sync + fmt::Debug {
    /// A short static name of the backend: `file`, `memory`, `s3`, ...
    fn kind(&self) -> &'static str;

    /// The layout this client reads and writes (see [`Layout`]).
    fn layout(&self) -> Layout {
        Layout::default()
    }

    /// Names of existing generations, ascending; a missing root is an empty list.
    async fn generations(&self) -> Result<Vec<Generation>>;

    /// Removes every snapshot and segment of `generation`; a missing one is `Ok`.
    async fn delete_generation(&self, generation: &Generation) -> Result<()>;

    /// All snapshots of `generation`, ascending by index; missing → empty.
    async fn snapshots(&self, generation: &Generation) -> Result<Vec<SnapshotInfo>>;

    /// Stores `data` as the snapshot at `index`, replacing any existing one atomically.
    async fn write_snapshot(
        &self,
        generation: &Generation,
        index: u64,
        data: ByteStream,
    ) -> Result<SnapshotInfo>;

    /// Streams the stored bytes of a snapshot; missing → [`Error::NotFound`].
    async fn snapshot_reader(&self, generation: &Generation, index: u64) -> Result<ByteStream>;

    /// Deletes a snapshot; missing is `Ok`.
    async fn delete_snapshot(&self, generation: &Generation, index: u64) -> Result<()>;

    /// A cursor over all segments of `generation` by (index, offset), read
    /// lazily one index at a time; missing → a cursor that yields nothing.
    async fn wal_segments(&self, generation: &Generation) -> Result<WalSegmentCursor>;

    /// Stores `data` as the WAL segment at `pos`, replacing any existing one atomically.
    async fn write_wal_segment(&self, pos: &Pos, data: ByteStream) -> Result<WalSegmentInfo>;

    /// Streams the stored bytes of a WAL segment; missing → [`Error::NotFound`].
    async fn wal_segment_reader(&self, pos: &Pos) -> Result<ByteStream>;

    /// Deletes each listed segment; missing ones are `Ok`.
    async fn delete_wal_segments(&self, positions: &[Pos]) -> Result<()>;

    /// The key store beneath, when the client is written over one
    /// ([`StoreClient`](crate::StoreClient)): the same objects in any other
    /// layout, Litestream 0.5's LTX included. `None` for clients that are not.
    fn key_store(&self) -> Option<std::sync::Arc<dyn crate::KeyStore>> {
        None
    }
}

/// The lazy source of WAL segments behind a [`WalSegmentCursor`].
///
/// A backend implements this to list one generation: first its WAL indexes,
/// then the segments of one index at a time. Order does not matter (the
/// cursor sorts); non-canonical names must already be skipped.
#[async_trait]
pub trait WalSegmentSource: Send + Sync {
    /// Every WAL index present in the generation (empty when it is missing).
    async fn indexes(&self) -> Result<Vec<u64>>;
    /// The segments stored under one index.
    async fn segments(&self, index: u64) -> Result<Vec<WalSegmentInfo>>;
}

/// A stream that yields `data` as a single chunk.
pub fn bytes_stream(data: impl Into<Bytes>) -> ByteStream {
    let data = data.into();
    futures::stream::once(async move { Ok(data) }).boxed()
}

/// A stream over an [`AsyncRead`], in chunks of up to `chunk_size` bytes.
pub fn reader_stream<R>(reader: R, chunk_size: usize) -> ByteStream
where
    R: AsyncRead + Send + 'static,
{
    tokio_util::io::ReaderStream::with_capacity(reader, chunk_size)
        .map_err(|e| Error::io("reading input", e))
        .boxed()
}

/// The first chunks of a stream, read until at least `limit` bytes or the
/// end: what a backend looks at to choose between one small write and a
/// streamed (or multipart) one.
#[derive(Debug, Default)]
pub struct Head {
    /// The chunks read, in order.
    pub chunks: Vec<Bytes>,
    /// Their total length.
    pub len: usize,
    /// Whether the stream ended within the limit (`chunks` is then all of it).
    pub complete: bool,
}

/// Reads the [`Head`] of `stream`: chunks until `limit` bytes or the end.
pub async fn read_head(stream: &mut ByteStream, limit: usize) -> Result<Head> {
    let mut head = Head::default();
    while head.len < limit {
        match stream.try_next().await? {
            Some(chunk) => {
                head.len += chunk.len();
                head.chunks.push(chunk);
            }
            None => {
                head.complete = true;
                break;
            }
        }
    }
    Ok(head)
}

/// Reads a whole stream into memory. Meant for small objects (WAL segments,
/// tests); snapshots should be streamed instead.
pub async fn collect_bytes(mut stream: ByteStream) -> Result<Bytes> {
    // A single chunk (the common case for small objects) is returned as is.
    let Some(first) = stream.try_next().await? else {
        return Ok(Bytes::new());
    };
    let Some(second) = stream.try_next().await? else {
        return Ok(first);
    };
    let mut buf = BytesMut::with_capacity(first.len() + second.len());
    buf.extend_from_slice(&first);
    buf.extend_from_slice(&second);
    while let Some(chunk) = stream.try_next().await? {
        buf.extend_from_slice(&chunk);
    }
    Ok(buf.freeze())
}
