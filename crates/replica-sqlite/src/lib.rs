//! What needs SQLite knowledge: the WAL format and its checksums, applying
//! WAL to a database file, and restoring a verified database from a replica.
//!
//! - [`wal`]: WAL header and frame parsing, SQLite's checksum, and
//!   [`WalApplier`](wal::WalApplier), which checks one WAL index as SQLite
//!   would trust it (magic, header checksum, page size, salts, the running
//!   frame checksum across segments, frames applied only once their
//!   transaction's commit frame is checked) and writes the committed pages
//!   into the database file directly.
//! - [`convert`]: a generation of a 0.3/0.4 replica turned into an LTX
//!   replica that keeps every commit restorable ([`convert_to_ltx`]).
//! - [`replicate`]: live replication of a database into any number of
//!   replicas, as Litestream 0.3 does it ([`Replicator`]), and one-off
//!   snapshots ([`snapshot_once`]).
//! - [`restore`](restore()): a database file from any
//!   [`ReplicaClient`](replica_core::ReplicaClient), built in a temporary
//!   file and put in place only when complete (and, if asked, when
//!   `PRAGMA integrity_check` passes); [`restore_ltx()`] the same from a
//!   Litestream 0.5 (LTX) replica, each page read and written once.
//!
//! Storage, layouts and LZ4 live in `replica-core`; this crate only adds
//! what a database needs. `rusqlite` (bundled SQLite) serves the integrity
//! check and the replicator's connections; WAL is parsed and applied by this
//! crate's own code.

pub mod convert;
pub mod replicate;
pub mod restore;
pub mod restore_ltx;
pub mod verify;
pub mod wal;

pub use convert::{convert_to_ltx, Converted};
pub use replicate::{
    awake_cost, snapshot_once, CheckpointMode, DbOptions, Descriptors, Failure, Monitor, Replica,
    ReplicaOptions, ReplicaStatus, ReplicaTarget, ReplicateError, Replicator, SnapshotError,
    Status, Taken, Work,
};
pub use restore::{
    integrity_check, restore, Progress, RestoreError, RestoreOptions, RestoreSummary, Restored,
    Retry,
};
pub use restore_ltx::{restore_ltx, LtxRestoreOptions, LtxRestoreSummary};
pub use verify::WalVerifier;
