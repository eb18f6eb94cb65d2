//! The conformance suite: one set of behaviour checks that every replica
//! backend — ours and third parties' — must pass, case for case.
//!
//! # Adding the suite to a backend
//!
//! Write a [`Factory`]: something that makes a fresh, empty client wrapped in
//! a [`Fixture`]. Then, in the backend's `tests/conformance.rs`:
//!
//! ```ignore
//! use replica_conformance::{conformance_tests, Fixture};
//!
//! conformance_tests!(|| async {
//!     let dir = tempfile::tempdir()?;
//!     let client = my_backend::Client::new(dir.path());
//!     Ok(Fixture::new(client).keep(dir))
//! });
//! ```
//!
//! That is one `#[test]` per case, named after the case, so a failure names
//! the behaviour that broke. To plant raw objects (junk names a real store can
//! hold), give the fixture a [`Planter`] with [`Fixture::with_planter`]; without
//! one, the junk-name cases are skipped with a reason.
//!
//! For tools, [`run_suite`] runs every case against a factory and returns a
//! [`Report`] (case, group, outcome, message, duration); [`report`] renders
//! reports of several backends as a parity matrix in text, Markdown and JSON.
//!
//! # The groups of cases
//! - `generations`: listing order, empty roots, deleting a whole generation;
//! - `snapshots` and `wal`: each operation's success path, missing and
//!   not-found cases, exact sizes and times, overwrite, failed writes that
//!   must leave nothing, values at and above the 2^63-1 limit, large listings;
//! - `junk`: non-canonical names planted in the store are never listed;
//! - `streaming`: a 64 MiB round trip, byte-exact;
//! - `concurrency`: 16 writers at once lose nothing and never show partial data;
//! - `cursor`: every append-validation rule through the backend's own cursor,
//!   lazy per-index reads, follow-mode wake-up;
//! - `ops`: latest generation, time bounds, restore with and without gaps;
//! - `model`: random operation sequences compared against a reference model
//!   (proptest; shrinking gives a minimal failing sequence);
//! - `ltx`: the Litestream 0.5 layout over the client's key store — levels
//!   by TXID, seek, not-found from the call, ranged reads at and past the
//!   end, overwrite, failed writes, a level beyond one listing page, junk
//!   names, file times, deletes.
//!
//! [`mutants`] holds deliberately broken backends; the crate's own tests prove
//! each is caught by a named case.

use std::any::Any;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::future::BoxFuture;
use futures::FutureExt;
use replica_core::async_trait;
use replica_core::{ReplicaClient, Result};

pub use replica_core::Layout;
use serde::Serialize;

mod cases;
pub mod faults;
mod model;
pub mod mutants;
pub mod report;
mod util;

/// A fresh client under test, plus whatever keeps it alive (a temp dir, a server).
pub struct Fixture {
    /// The client under test.
    pub client: Arc<dyn ReplicaClient>,
    unavailable: Option<String>,
    planter: Option<Arc<dyn Planter>>,
    keep: Vec<Box<dyn Any + Send + Sync>>,
}

impl Fixture {
    /// Wraps a client.
    pub fn new(client: impl ReplicaClient + 'static) -> Self {
        Self::from_arc(Arc::new(client))
    }

    /// Wraps a shared client.
    pub fn from_arc(client: Arc<dyn ReplicaClient>) -> Self {
        Fixture {
            client,
            unavailable: None,
            planter: None,
            keep: Vec::new(),
        }
    }

    /// A fixture for a backend that cannot be tested here (e.g. its server is
    /// not configured): every case is skipped with `reason`.
    pub fn unavailable(reason: impl Into<String>) -> Self {
        let mut fixture = Self::new(Unavailable);
        fixture.unavailable = Some(reason.into());
        fixture
    }

    /// Adds raw store access, enabling the junk-name cases.
    pub fn with_planter(mut self, planter: impl Planter + 'static) -> Self {
        self.planter = Some(Arc::new(planter));
        self
    }

    /// Keeps `value` alive as long as the fixture (e.g. a `TempDir`).
    pub fn keep(mut self, value: impl Any + Send + Sync) -> Self {
        self.keep.push(Box::new(value));
        self
    }

    /// The LTX (Litestream 0.5) client over the key store beneath the
    /// client; a client not written over a [`replica_core::KeyStore`] skips
    /// the LTX cases.
    fn ltx(&self) -> Result<replica_core::ltx::LtxClient, CaseError> {
        self.client
            .key_store()
            .map(replica_core::ltx::LtxClient::new)
            .ok_or_else(|| {
                CaseError::Skip(
                    "the client is not written over a KeyStore, so it has no LTX layout".into(),
                )
            })
    }

    fn planter(&self) -> Result<Arc<dyn Planter>, CaseError> {
        self.planter.clone().ok_or_else(|| {
            CaseError::Skip("the fixture offers no raw store access (Planter)".into())
        })
    }
}

/// The client of [`Fixture::unavailable`]; never called, since its cases skip.
#[derive(Debug)]
struct Unavailable;

#[async_trait]
impl ReplicaClient for Unavailable {
    fn kind(&self) -> &'static str {
        "unavailable"
    }
    async fn generations(&self) -> Result<Vec<replica_core::Generation>> {
        Err(unavailable())
    }
    async fn delete_generation(&self, _: &replica_core::Generation) -> Result<()> {
        Err(unavailable())
    }
    async fn snapshots(
        &self,
        _: &replica_core::Generation,
    ) -> Result<Vec<replica_core::SnapshotInfo>> {
        Err(unavailable())
    }
    async fn write_snapshot(
        &self,
        _: &replica_core::Generation,
        _: u64,
        _: replica_core::ByteStream,
    ) -> Result<replica_core::SnapshotInfo> {
        Err(unavailable())
    }
    async fn snapshot_reader(
        &self,
        _: &replica_core::Generation,
        _: u64,
    ) -> Result<replica_core::ByteStream> {
        Err(unavailable())
    }
    async fn delete_snapshot(&self, _: &replica_core::Generation, _: u64) -> Result<()> {
        Err(unavailable())
    }
    async fn wal_segments(
        &self,
        _: &replica_core::Generation,
    ) -> Result<replica_core::WalSegmentCursor> {
        Err(unavailable())
    }
    async fn write_wal_segment(
        &self,
        _: &replica_core::Pos,
        _: replica_core::ByteStream,
    ) -> Result<replica_core::WalSegmentInfo> {
        Err(unavailable())
    }
    async fn wal_segment_reader(&self, _: &replica_core::Pos) -> Result<replica_core::ByteStream> {
        Err(unavailable())
    }
    async fn delete_wal_segments(&self, _: &[replica_core::Pos]) -> Result<()> {
        Err(unavailable())
    }
}

fn unavailable() -> replica_core::Error {
    replica_core::Error::invalid("backend unavailable")
}

/// Raw access to the store beneath a client, for planting what the client
/// itself would never write.
#[async_trait]
pub trait Planter: Send + Sync {
    /// Stores `data` under the `/`-separated `path` relative to the replica root.
    async fn plant_file(&self, path: &str, data: Bytes) -> Result<()>;
    /// Creates an empty directory at `path`; `Ok(false)` when the store has no
    /// directories (object stores), which skips the cases that need one.
    async fn plant_dir(&self, path: &str) -> Result<bool>;
}

/// Makes fresh, empty fixtures. Implemented for any `Fn() -> impl Future<Output = Result<Fixture, E>>`.
pub trait Factory: Send + Sync {
    /// A new fixture with an empty store.
    fn make(&self) -> BoxFuture<'static, Result<Fixture, String>>;
}

impl<F, Fut, E> Factory for F
where
    F: Fn() -> Fut + Send + Sync,
    Fut: Future<Output = std::result::Result<Fixture, E>> + Send + 'static,
    E: std::fmt::Display,
{
    fn make(&self) -> BoxFuture<'static, Result<Fixture, String>> {
        let fut = self();
        async move { fut.await.map_err(|e| e.to_string()) }.boxed()
    }
}

/// Why a case did not pass.
#[derive(Debug)]
pub enum CaseError {
    /// The backend cannot take part in this case; the reason says why.
    Skip(String),
    /// The backend broke the contract.
    Fail(String),
}

impl From<replica_core::Error> for CaseError {
    fn from(e: replica_core::Error) -> Self {
        CaseError::Fail(format!("unexpected error: {e}"))
    }
}

/// What a case returns.
pub type CaseResult = Result<(), CaseError>;

/// One case of the suite.
#[derive(Clone, Copy)]
pub struct Case {
    /// Unique name; also the test function's name.
    pub name: &'static str,
    /// The group it belongs to (see the crate docs).
    pub group: &'static str,
    run: fn(Fixture) -> BoxFuture<'static, CaseResult>,
}

impl std::fmt::Debug for Case {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}::{}", self.group, self.name)
    }
}

for_each_case!(registry generation_cases);
for_each_ltx_case!(registry ltx_cases);

/// Every case of the suite, in order: the generation layouts' cases, then
/// the LTX layout's.
pub fn all_cases() -> Vec<Case> {
    let mut all = generation_cases();
    all.extend(ltx_cases());
    all
}

/// Which cases a run takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Part {
    /// Every case.
    All,
    /// The cases of the generation layouts (Litestream 0.3, 0.4).
    Generations,
    /// The cases of the LTX layout (Litestream 0.5).
    Ltx,
}

/// How a case ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    /// The backend behaved as specified.
    Pass,
    /// The backend broke the contract.
    Fail,
    /// The case did not apply.
    Skip,
}

/// The result of one case against one backend.
#[derive(Debug, Clone, Serialize)]
pub struct CaseReport {
    /// Case name.
    pub case: String,
    /// Case group.
    pub group: String,
    /// Pass, fail or skip.
    pub outcome: Outcome,
    /// Why it failed or was skipped; empty on pass.
    pub message: String,
    /// Wall time in milliseconds.
    pub duration_ms: u64,
}

/// All cases against one backend.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// The backend's name, as given to [`run_suite`].
    pub backend: String,
    /// One entry per case, in suite order.
    pub cases: Vec<CaseReport>,
}

impl Report {
    /// The cases that failed.
    pub fn failures(&self) -> impl Iterator<Item = &CaseReport> {
        self.cases.iter().filter(|c| c.outcome == Outcome::Fail)
    }
}

/// Longest a single case may run before it counts as failed.
pub const CASE_TIMEOUT: Duration = Duration::from_secs(300);

/// Runs one case on a fresh fixture; panics inside the case become failures.
pub async fn run_case(case: &Case, factory: &dyn Factory) -> CaseReport {
    let started = Instant::now();
    let result = match factory.make().await {
        Err(e) => Err(CaseError::Fail(format!("factory failed: {e}"))),
        Ok(Fixture {
            unavailable: Some(reason),
            ..
        }) => Err(CaseError::Skip(reason)),
        Ok(fixture) => {
            let task = tokio::spawn((case.run)(fixture));
            match tokio::time::timeout(CASE_TIMEOUT, task).await {
                Err(_) => Err(CaseError::Fail(format!("timed out after {CASE_TIMEOUT:?}"))),
                Ok(Ok(result)) => result,
                Ok(Err(join)) => Err(CaseError::Fail(panic_message(join))),
            }
        }
    };
    let (outcome, message) = match result {
        Ok(()) => (Outcome::Pass, String::new()),
        Err(CaseError::Skip(m)) => (Outcome::Skip, m),
        Err(CaseError::Fail(m)) => (Outcome::Fail, m),
    };
    CaseReport {
        case: case.name.to_owned(),
        group: case.group.to_owned(),
        outcome,
        message,
        duration_ms: started.elapsed().as_millis() as u64,
    }
}

fn panic_message(join: tokio::task::JoinError) -> String {
    if !join.is_panic() {
        return format!("case task failed: {join}");
    }
    let payload = join.into_panic();
    if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_owned()
    } else {
        "panicked".to_owned()
    }
}

/// Runs every case (or those whose name contains `filter`) against a backend.
pub async fn run_suite(backend: &str, factory: &dyn Factory, filter: Option<&str>) -> Report {
    run_part(backend, factory, filter, Part::All).await
}

/// [`run_suite`] over one [`Part`] of the suite (a parity-matrix column).
pub async fn run_part(
    backend: &str,
    factory: &dyn Factory,
    filter: Option<&str>,
    part: Part,
) -> Report {
    let chosen = match part {
        Part::All => all_cases(),
        Part::Generations => generation_cases(),
        Part::Ltx => ltx_cases(),
    };
    let mut cases = Vec::new();
    for case in chosen {
        if filter.is_some_and(|f| !case.name.contains(f)) {
            continue;
        }
        cases.push(run_case(&case, factory).await);
    }
    Report {
        backend: backend.to_owned(),
        cases,
    }
}

/// Runs the named case to completion on its own runtime and panics on failure.
/// This is what each test made by [`conformance_tests!`] calls.
#[doc(hidden)]
pub fn run_case_as_test(name: &str, factory: impl Factory) {
    let case = all_cases()
        .into_iter()
        .find(|c| c.name == name)
        .expect("case exists");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a Tokio runtime");
    let report = runtime.block_on(run_case(&case, &factory));
    match report.outcome {
        Outcome::Pass => {}
        Outcome::Skip => {
            // Written to the stderr handle itself, not through `eprintln!`,
            // which the test harness captures and hides for passing tests: a
            // skip must be visible in `cargo test` output.
            use std::io::Write;
            let _ = writeln!(
                std::io::stderr().lock(),
                "SKIPPED {}: {}",
                report.case,
                report.message
            );
        }
        Outcome::Fail => panic!(
            "conformance case {} failed: {}",
            report.case, report.message
        ),
    }
}

/// Adds the whole suite to a backend crate's tests: one `#[test]` per case.
///
/// - `conformance_tests!(factory)`: a module `conformance`, for a client in
///   one layout (the cases ask the client for its [`layout`](ReplicaClient::layout));
///   the argument is a [`Factory`] expression.
/// - `conformance_tests!(layouts: factory)`: the generation cases once per
///   [`Layout`], in modules `conformance::litestream_03` and
///   `conformance::litestream_04`, and the LTX cases in
///   `conformance::litestream_05` (over the key store of the client made
///   for the default layout); `factory` is called with the layout
///   (`|layout: Layout| async move { ... }`).
///
/// The factory is evaluated inside the module, which sees the enclosing items.
#[macro_export]
macro_rules! conformance_tests {
    (layouts: $factory:expr) => {
        mod conformance {
            #[allow(unused_imports)]
            use super::*;
            mod litestream_03 {
                #[allow(unused_imports)]
                use super::*;
                $crate::for_each_case!(tests || ($factory)($crate::Layout::Litestream03));
            }
            mod litestream_04 {
                #[allow(unused_imports)]
                use super::*;
                $crate::for_each_case!(tests || ($factory)($crate::Layout::Litestream04));
            }
            mod litestream_05 {
                #[allow(unused_imports)]
                use super::*;
                $crate::for_each_ltx_case!(tests || ($factory)($crate::Layout::default()));
            }
        }
    };
    ($factory:expr) => {
        mod conformance {
            #[allow(unused_imports)]
            use super::*;
            $crate::for_each_case!(tests $factory);
            $crate::for_each_ltx_case!(tests $factory);
        }
    };
}

#[doc(hidden)]
#[macro_export]
macro_rules! __expand_cases {
    ([registry $fn:ident] $( $group:ident :: $name:ident ),* $(,)?) => {
        /// Cases of the suite, in order.
        pub fn $fn() -> Vec<Case> {
            vec![$(Case {
                name: stringify!($name),
                group: stringify!($group),
                run: |f| Box::pin($crate::cases::$group::$name(f)),
            }),*]
        }
    };
    ([tests $factory:expr] $( $group:ident :: $name:ident ),* $(,)?) => {
        $(
            #[test]
            fn $name() {
                $crate::run_case_as_test(stringify!($name), $factory);
            }
        )*
    };
}

/// A [`Planter`] for stores that keep objects as files under a directory:
/// the file backend, and `object_store`'s `LocalFileSystem`.
#[derive(Debug, Clone)]
pub struct DirPlanter(pub std::path::PathBuf);

#[async_trait]
impl Planter for DirPlanter {
    async fn plant_file(&self, path: &str, data: Bytes) -> Result<()> {
        let path = self.0.join(path);
        let parent = path.parent().expect("planted paths have a parent");
        let io = |e| replica_core::Error::io(format!("planting {}", path.display()), e);
        std::fs::create_dir_all(parent).map_err(io)?;
        std::fs::write(&path, data).map_err(io)
    }

    async fn plant_dir(&self, path: &str) -> Result<bool> {
        std::fs::create_dir_all(self.0.join(path))
            .map_err(|e| replica_core::Error::io(format!("planting {path}"), e))?;
        Ok(true)
    }
}

/// A [`Planter`] from an async closure that stores raw bytes under a path,
/// for stores without directories (in-memory maps, object stores):
///
/// ```ignore
/// FnPlanter(move |path: String, data| {
///     let client = client.clone();
///     async move { client.insert_raw(&path, data).await }
/// })
/// ```
pub struct FnPlanter<F>(pub F);

#[async_trait]
impl<F, Fut> Planter for FnPlanter<F>
where
    F: Fn(String, Bytes) -> Fut + Send + Sync,
    Fut: Future<Output = Result<()>> + Send,
{
    async fn plant_file(&self, path: &str, data: Bytes) -> Result<()> {
        (self.0)(path.to_owned(), data).await
    }

    async fn plant_dir(&self, _path: &str) -> Result<bool> {
        Ok(false)
    }
}
