//! Core of replica: the types, the storage-client trait and the logic every
//! backend shares.
//!
//! A replica stores SQLite replication data in Litestream's layouts:
//! generations of snapshots and WAL segments (0.3, 0.4), or LTX files in
//! levels (0.5). This crate holds:
//! - the value types [`Generation`], [`Pos`], [`SnapshotInfo`], [`WalSegmentInfo`];
//! - [`layout`]: the [`Layout`]s (Litestream 0.3 and 0.4): names, keys, strict parsing;
//! - [`store`]: the [`KeyStore`] trait backends implement, and [`StoreClient`],
//!   the one [`ReplicaClient`] over any key store;
//! - the [`ReplicaClient`] trait (the contract the conformance suite checks), with data as [`ByteStream`]s;
//! - the [`WalSegmentCursor`] with the append-validation rules;
//! - [`lz4`]: streaming LZ4 frame adapters;
//! - [`ltx`]: the Litestream 0.5 layout (LTX files in levels) over any key
//!   store: [`LtxClient`](ltx::LtxClient), the restore plan, decoding;
//! - [`copy()`]: a replica copied between any two clients (and layouts),
//!   requests in flight;
//! - [`ReplicaClientExt`]: operations over any client (latest generation,
//!   time bounds, restore with gap detection);
//! - [`metered`]: request counting over any key store (for metrics);
//! - the one [`Error`] type.
//!
//! It does no storage itself: backends live in their own crates
//! (`replica-memory`, `replica-file`, `replica-object-store`).

pub mod client;
pub mod contiguity;
pub mod copy;
pub mod cursor;
pub mod error;
pub mod layout;
pub mod ltx;
pub mod lz4;
pub mod metered;
pub mod ops;
pub mod store;
pub mod types;

pub use client::{
    bytes_stream, collect_bytes, read_head, reader_stream, ByteStream, Head, ReplicaClient,
    WalSegmentSource,
};
pub use contiguity::{decompressed_len, plain_len, snapshot_index_gap, WalContiguity};
pub use copy::{copy, Copied, CopyProgress};
pub use cursor::{WalAppender, WalSegmentCursor};
pub use error::{io_is_transient, AppendError, Error, Result};
pub use layout::{AnyLayout, Layout};
pub use ops::{
    newest_generation, ReplicaClientExt, RestorePlan, RestoreSink, RestoreTarget, TimeBounds,
};
pub use store::{
    layouts_present, slice_stream, KeyStore, Listing, ObjectMeta, PutOptions, StoreClient,
    AZURE_TIME_METADATA_KEY, TIME_METADATA_KEY,
};
pub use types::{Generation, Pos, SnapshotInfo, WalSegmentInfo};

/// Re-exported so backends implement [`ReplicaClient`] with the same macro version.
pub use async_trait::async_trait;
