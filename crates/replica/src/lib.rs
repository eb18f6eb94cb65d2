//! replica: store SQLite replication data — snapshots and WAL segments in
//! generations, in the Litestream layout — in any backend, chosen at run
//! time from a URL.
//!
//! This facade re-exports the core API ([`ReplicaClient`], [`Generation`],
//! [`Pos`], ...) and offers [`open`], which maps a URL to a backend:
//!
//! | URL | backend | cargo feature |
//! |---|---|---|
//! | `file:///abs/path`, `/abs/path`, `rel/path` | local directory | `file` (default) |
//! | `memory://name` | process-wide in-memory store `name` | `memory` (default) |
//! | `s3://bucket/prefix` | Amazon S3 and S3-compatible stores | `s3` |
//! | `gs://bucket/prefix` | Google Cloud Storage | `gcs` |
//! | `az://container/prefix` | Azure Blob Storage | `azure` |
//!
//! Object-store options (endpoint, region, credentials, `allow_http`) come
//! from the environment (`AWS_ENDPOINT`, `AWS_REGION`, `GOOGLE_*`, `AZURE_*`,
//! ...) and from the URL query (`?endpoint=...&allow_http=true`), in the
//! conventions of the `object_store` crate.
//!
//! Each replica is read and written in one [`Layout`]: `?layout=litestream-0.3`
//! or `?layout=litestream-0.4` on any URL, or else the layout the store's
//! objects are in (an empty store takes the default, Litestream 0.4).
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")] async fn main() -> replica::Result<()> {
//! let client = replica::open("memory://doc-example?layout=litestream-0.3").await?;
//! assert_eq!(client.layout(), replica::Layout::Litestream03);
//! assert_eq!(client.kind(), "memory");
//! assert!(client.generations().await?.is_empty());
//! # Ok(()) }
//! ```

use std::sync::Arc;

use replica_core::metered::{Metered, Meters};
pub use replica_core::*;

/// The URL schemes [`open`] understands in this build.
pub fn known_schemes() -> Vec<&'static str> {
    let mut schemes = Vec::new();
    if cfg!(feature = "file") {
        schemes.push("file");
    }
    if cfg!(feature = "memory") {
        schemes.push("memory");
    }
    #[cfg(any(feature = "s3", feature = "gcs", feature = "azure"))]
    schemes.extend_from_slice(replica_object_store::OBJECT_STORE_SCHEMES);
    schemes
}

/// How [`open_with`] chooses the layout.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct OpenOptions {
    /// Read and write this layout (as `?layout=` does); `None` detects it.
    pub layout: Option<Layout>,
    /// The layout of a store that holds no replica yet (default: [`Layout::default`]).
    pub empty_layout: Option<Layout>,
}

/// How [`open_any`] chooses the layout, LTX included.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct OpenAnyOptions {
    /// Read and write this layout (as `?layout=` does); `None` detects it.
    pub layout: Option<AnyLayout>,
    /// The layout of a store that holds no replica yet (default: the
    /// default generation layout, Litestream 0.4).
    pub empty_layout: Option<AnyLayout>,
}

impl From<OpenOptions> for OpenAnyOptions {
    fn from(o: OpenOptions) -> Self {
        OpenAnyOptions {
            layout: o.layout.map(Into::into),
            empty_layout: o.empty_layout.map(Into::into),
        }
    }
}

/// A replica opened by URL, in whichever layout it is.
#[derive(Debug, Clone)]
pub enum Replica {
    /// Generations of snapshots and WAL segments (Litestream 0.3, 0.4).
    Generations(Arc<dyn ReplicaClient>),
    /// LTX files in levels (Litestream 0.5).
    Ltx(ltx::LtxClient),
}

impl Replica {
    /// The layout it is read in.
    pub fn layout(&self) -> AnyLayout {
        match self {
            Replica::Generations(c) => c.layout().into(),
            Replica::Ltx(_) => AnyLayout::Ltx,
        }
    }
}

/// Opens the backend a URL names (see the crate docs for the table), in the
/// layout the URL's `?layout=` names, or else the one the store holds (see
/// [`open_with`]).
///
/// A string without `://` is a file path. A bad URL, an unknown scheme or
/// layout is [`Error::InvalidArgument`] with a message that lists the known ones.
pub async fn open(location: &str) -> Result<Arc<dyn ReplicaClient>> {
    open_with(location, OpenOptions::default()).await
}

/// [`open`] with a layout chosen by the caller (a `--layout` flag).
///
/// Without a layout from the URL or `options`, the store decides: one
/// holding only Litestream 0.3 names opens as 0.3, only 0.4 names as 0.4, an
/// empty one as `options.empty_layout` (else the default), and one holding
/// several layouts is an error that names them and asks for `layout=`. A
/// layout given twice, differently, is an error; so is a store holding a
/// Litestream 0.5 (LTX) replica, which has no generations ([`open_any`]
/// opens those).
pub async fn open_with(location: &str, options: OpenOptions) -> Result<Arc<dyn ReplicaClient>> {
    match open_any(location, options.into()).await? {
        Replica::Generations(client) => Ok(client),
        Replica::Ltx(_) => Err(Error::invalid(format!(
            "{location} holds a Litestream 0.5 (LTX) replica, which has no generations, \
             snapshots or WAL segments: list its files with `replica ltx`, check it with \
             `replica verify`, restore it with `replica restore`"
        ))),
    }
}

/// Opens a replica in the Litestream 0.5 (LTX) layout, whatever the store
/// holds (an empty store is an empty LTX replica).
pub async fn open_ltx(location: &str) -> Result<ltx::LtxClient> {
    let options = OpenAnyOptions {
        layout: Some(AnyLayout::Ltx),
        ..OpenAnyOptions::default()
    };
    match open_any(location, options).await? {
        Replica::Ltx(client) => Ok(client),
        Replica::Generations(_) => unreachable!("the LTX layout was asked for"),
    }
}

/// Opens a replica in any layout: as [`open_with`], with the Litestream 0.5
/// (LTX) layout among those detected (`?layout=litestream-0.5` chooses it).
pub async fn open_any(location: &str, options: OpenAnyOptions) -> Result<Replica> {
    open_any_metered(location, options, None).await
}

/// [`open_any`], with every request of the opened replica counted into
/// the meter of its backend kind in `meters` (for metrics).
pub async fn open_any_metered(
    location: &str,
    options: OpenAnyOptions,
    meters: Option<&Meters>,
) -> Result<Replica> {
    let known = || known_schemes().join(", ");
    if location.is_empty() {
        return Err(Error::invalid("replica path required"));
    }
    if !location.contains("://") {
        return open_path(std::path::PathBuf::from(location), options, meters).await;
    }
    let mut url = url::Url::parse(location).map_err(|e| {
        Error::invalid(format!(
            "bad replica URL {location:?}: {e}; known schemes: {}",
            known()
        ))
    })?;
    let options = take_layout_option(&mut url, options)?;
    match url.scheme() {
        #[cfg(feature = "file")]
        "file" => {
            if let Some((key, _)) = url.query_pairs().next() {
                return Err(Error::invalid(format!(
                    "unknown option {key:?} in file URL {location:?}: file URLs take only \
                     layout= (a typo?)"
                )));
            }
            let path = url.to_file_path().map_err(|()| {
                Error::invalid(format!(
                    "bad file URL {location:?}: expected file:///absolute/path"
                ))
            })?;
            open_path(path, options, meters).await
        }
        #[cfg(feature = "memory")]
        "memory" => {
            if let Some((key, _)) = url.query_pairs().next() {
                return Err(Error::invalid(format!(
                    "unknown option {key:?} in memory URL {location:?}: memory URLs take only \
                     layout= (a typo?)"
                )));
            }
            let name = format!("{}{}", url.host_str().unwrap_or(""), url.path());
            detect(replica_memory::MemoryStore::named(&name), options, meters).await
        }
        #[cfg(any(feature = "s3", feature = "gcs", feature = "azure"))]
        scheme if replica_object_store::OBJECT_STORE_SCHEMES.contains(&scheme) => {
            detect(replica_object_store::open_url(&url)?, options, meters).await
        }
        other => Err(Error::invalid(format!(
            "unknown scheme {other:?} in replica URL {location:?}; known schemes: {}",
            known()
        ))),
    }
}

/// Checks `location` as [`open_any`] would (scheme, path, options, a
/// `layout` given twice), without touching the store: a bad URL is
/// [`Error::InvalidArgument`]; an unreachable store is not found out here.
pub async fn check_location(location: &str, layout: Option<AnyLayout>) -> Result<()> {
    let in_url = url::Url::parse(location)
        .ok()
        .is_some_and(|u| u.query_pairs().any(|(k, _)| k == "layout"));
    // With a layout decided, opening reads nothing from the store.
    let layout = if in_url {
        layout
    } else {
        Some(layout.unwrap_or(AnyLayout::Ltx))
    };
    let options = OpenAnyOptions {
        layout,
        ..OpenAnyOptions::default()
    };
    open_any(location, options).await.map(|_| ())
}

/// Moves a `layout=` query option from the URL into the options.
fn take_layout_option(url: &mut url::Url, mut options: OpenAnyOptions) -> Result<OpenAnyOptions> {
    let mut from_url = None;
    let mut rest = Vec::new();
    for (k, v) in url.query_pairs() {
        if k == "layout" {
            from_url = Some(v.parse::<AnyLayout>()?);
        } else {
            rest.push((k.into_owned(), v.into_owned()));
        }
    }
    if let Some(layout) = from_url {
        if let Some(asked) = options.layout.filter(|l| *l != layout) {
            return Err(Error::invalid(format!(
                "the URL says layout={layout} but layout {asked} was asked for as well; give one"
            )));
        }
        options.layout = Some(layout);
    }
    if rest.is_empty() {
        url.set_query(None);
    } else {
        url.query_pairs_mut().clear().extend_pairs(rest);
    }
    Ok(options)
}

fn opened<S: KeyStore>(store: Arc<S>, layout: AnyLayout) -> Replica {
    match layout {
        AnyLayout::Generations(l) => {
            Replica::Generations(Arc::new(StoreClient::from_shared(store, l)))
        }
        AnyLayout::Ltx => Replica::Ltx(ltx::LtxClient::new(store)),
    }
}

async fn detect<S: KeyStore>(
    store: S,
    options: OpenAnyOptions,
    meters: Option<&Meters>,
) -> Result<Replica> {
    match meters {
        Some(meters) => {
            let meter = meters.meter(store.kind());
            detect_in(Metered::new(Arc::new(store), meter), options).await
        }
        None => detect_in(store, options).await,
    }
}

async fn detect_in<S: KeyStore>(store: S, options: OpenAnyOptions) -> Result<Replica> {
    let store = Arc::new(store);
    if let Some(layout) = options.layout {
        return Ok(opened(store, layout));
    }
    // One listing of the root shows which layouts may be there (and, on S3,
    // the LTX levels); only those are looked into.
    let root = store.list("").await?;
    let has_dir = |name: &str| root.dirs.iter().any(|d| d == name);
    let mut found: Vec<AnyLayout> = Vec::new();
    if has_dir(layout::GENERATIONS_DIR) {
        found.extend(
            layouts_present(store.clone())
                .await?
                .into_iter()
                .map(AnyLayout::from),
        );
    }
    let ltx = ltx::LtxClient::new(store.clone());
    let levels = match ltx.shape() {
        ltx::KeyShape::HexLevels => ltx.levels_in(&root),
        ltx::KeyShape::LtxDirs if has_dir(ltx::LTX_DIR) => ltx.levels().await?,
        ltx::KeyShape::LtxDirs => Vec::new(),
    };
    if ltx.any_file_in(levels).await? {
        found.push(AnyLayout::Ltx);
    }
    let layout = match found.as_slice() {
        [] => options
            .empty_layout
            .unwrap_or(AnyLayout::Generations(Layout::default())),
        [one] => *one,
        several => {
            let names: Vec<&str> = several.iter().map(|l| l.name()).collect();
            return Err(Error::invalid(format!(
                "the replica holds objects of several layouts ({}); choose one with \
                 ?layout={} (or --layout)",
                names.join(" and "),
                names.join(" / ?layout=")
            )));
        }
    };
    Ok(opened(store, layout))
}

#[cfg(feature = "file")]
async fn open_path(
    path: std::path::PathBuf,
    options: OpenAnyOptions,
    meters: Option<&Meters>,
) -> Result<Replica> {
    detect(replica_file::FileStore::new(path), options, meters).await
}

#[cfg(not(feature = "file"))]
async fn open_path(
    path: std::path::PathBuf,
    _: OpenAnyOptions,
    _: Option<&Meters>,
) -> Result<Replica> {
    Err(Error::invalid(format!(
        "{} is a file path, but this build has no file backend (feature `file`)",
        path.display()
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn paths_and_file_urls_open_the_file_backend() {
        let dir = tempfile::tempdir().unwrap();
        let g = Generation::random();
        let a = open(dir.path().to_str().unwrap()).await.unwrap();
        a.write_snapshot(&g, 1, bytes_stream("x")).await.unwrap();
        let url = format!("file://{}", dir.path().display());
        let b = open(&url).await.unwrap();
        assert_eq!(b.kind(), "file");
        assert_eq!(b.generations().await.unwrap(), vec![g]);
    }

    #[tokio::test]
    async fn a_metered_open_counts_the_replicas_requests_by_backend_kind() {
        let dir = tempfile::tempdir().unwrap();
        let meters = Meters::new();
        let options = OpenAnyOptions {
            layout: Some(Layout::Litestream03.into()),
            ..OpenAnyOptions::default()
        };
        let opened = open_any_metered(dir.path().to_str().unwrap(), options, Some(&meters))
            .await
            .unwrap();
        let Replica::Generations(client) = opened else {
            panic!("a generations layout was asked for")
        };
        let g = Generation::random();
        client
            .write_snapshot(&g, 1, bytes_stream("x"))
            .await
            .unwrap();
        let all = meters.all();
        assert_eq!(all.len(), 1);
        assert_eq!(all[0].0, "file");
        let put = all[0].1.counts(replica_core::metered::Operation::Put);
        assert_eq!(put.total, 1);
        assert!(put.bytes > 0, "{put:?}");
        // An unmetered open (which lists to detect the layout) counts nothing.
        let lists = || {
            meters.all()[0]
                .1
                .counts(replica_core::metered::Operation::List)
                .total
        };
        let before = lists();
        open(dir.path().to_str().unwrap()).await.unwrap();
        assert_eq!(lists(), before);
        let metered = open_any_metered(
            dir.path().to_str().unwrap(),
            OpenAnyOptions::default(),
            Some(&meters),
        );
        metered.await.unwrap();
        assert!(lists() > before, "a metered open's detection is counted");
    }

    /// Opening by URL lists the root once, then only what it shows: an empty
    /// store costs one listing, an LTX replica on S3 two (root, L9).
    #[tokio::test]
    async fn detection_lists_the_root_then_only_what_is_there() {
        use replica_core::metered::Operation;
        let meters = Meters::new();
        let s3 = || {
            let inner = Arc::new(object_store::memory::InMemory::new());
            replica_object_store::ObjectKeyStore::new(inner, "db").with_kind("s3")
        };
        let lists = |kind: &str| {
            meters
                .all()
                .iter()
                .filter(|(k, _)| *k == kind)
                .map(|(_, m)| m.counts(Operation::List).total)
                .sum::<u64>()
        };
        async fn detected<S: KeyStore>(store: S, meters: &Meters) -> AnyLayout {
            detect(store, OpenAnyOptions::default(), Some(meters))
                .await
                .unwrap()
                .layout()
        }
        let write = |c: ltx::LtxClient, level: u8| async move {
            let data = bytes_stream("x");
            c.write(level, ltx::TxId(1), ltx::TxId(1), data, chrono::Utc::now())
                .await
                .unwrap();
        };
        let empty = s3();
        assert_eq!(detected(empty, &meters).await, Layout::default().into());
        assert_eq!(lists("s3"), 1, "an empty S3 replica: the root");
        for level in [ltx::SNAPSHOT_LEVEL, 0] {
            let store = s3();
            write(ltx::LtxClient::new(Arc::new(store.clone())), level).await;
            let before = lists("s3");
            assert_eq!(detected(store, &meters).await, AnyLayout::Ltx);
            assert_eq!(
                lists("s3") - before,
                2,
                "S3, L{level}: the root, then L{level}"
            );
        }
        let memory = replica_memory::MemoryStore::new();
        assert_eq!(
            detected(memory.clone(), &meters).await,
            Layout::default().into()
        );
        assert_eq!(lists("memory"), 1, "an empty store: the root");
        write(ltx::LtxClient::new(Arc::new(memory.clone())), 0).await;
        assert_eq!(detected(memory, &meters).await, AnyLayout::Ltx);
        assert_eq!(
            lists("memory"),
            1 + 3,
            "`ltx/` dirs: the root, `ltx`, then L0"
        );
    }

    #[tokio::test]
    async fn memory_urls_name_one_shared_store() {
        let g = Generation::random();
        open("memory://shared-test")
            .await
            .unwrap()
            .write_snapshot(&g, 1, bytes_stream("x"))
            .await
            .unwrap();
        assert_eq!(
            open("memory://shared-test")
                .await
                .unwrap()
                .generations()
                .await
                .unwrap(),
            vec![g]
        );
        assert!(open("memory://other-test")
            .await
            .unwrap()
            .generations()
            .await
            .unwrap()
            .is_empty());
    }

    #[tokio::test]
    async fn unknown_schemes_and_bad_urls_are_clear_errors() {
        let err = open("ftp://host/x").await.unwrap_err();
        assert!(err.is_invalid_argument());
        let msg = err.to_string();
        assert!(
            msg.contains("unknown scheme \"ftp\"")
                && msg.contains("file")
                && msg.contains("memory"),
            "{msg}"
        );
        let err = open("s3://[bad").await.unwrap_err();
        assert!(
            err.is_invalid_argument() && err.to_string().contains("known schemes"),
            "{err}"
        );
        assert!(open("").await.unwrap_err().is_invalid_argument());
        assert!(open("file://relative/x").await.is_err());
        let err = open("memory://x?layout=litestream-9").await.unwrap_err();
        assert!(
            err.is_invalid_argument() && err.to_string().contains("litestream-0.3"),
            "{err}"
        );
    }

    async fn write_one(location: &str, layout: Layout) -> Generation {
        let client = open_with(
            location,
            OpenOptions {
                layout: Some(layout),
                ..OpenOptions::default()
            },
        )
        .await
        .unwrap();
        let g = Generation::random();
        client
            .write_snapshot(&g, 1, bytes_stream("x"))
            .await
            .unwrap();
        g
    }

    #[tokio::test]
    async fn the_layout_is_detected_from_the_store() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().to_str().unwrap();
        assert_eq!(open(path).await.unwrap().layout(), Layout::Litestream04);
        let empty_03 = OpenOptions {
            empty_layout: Some(Layout::Litestream03),
            ..OpenOptions::default()
        };
        assert_eq!(
            open_with(path, empty_03).await.unwrap().layout(),
            Layout::Litestream03
        );
        let g = write_one(path, Layout::Litestream03).await;
        let client = open(&format!("file://{path}")).await.unwrap();
        assert_eq!(client.layout(), Layout::Litestream03);
        assert_eq!(client.generations().await.unwrap(), vec![g]);
        write_one(path, Layout::Litestream04).await;
        let err = open(path).await.unwrap_err();
        let msg = err.to_string();
        assert!(
            err.is_invalid_argument()
                && msg.contains("litestream-0.3")
                && msg.contains("litestream-0.4")
                && msg.contains("layout="),
            "{msg}"
        );
        let chosen = open(&format!("file://{path}?layout=litestream-0.4"))
            .await
            .unwrap();
        assert_eq!(chosen.layout(), Layout::Litestream04);
        assert_eq!(chosen.generations().await.unwrap().len(), 1);
    }

    #[tokio::test]
    async fn a_layout_given_twice_differently_is_an_error() {
        let options = OpenOptions {
            layout: Some(Layout::Litestream04),
            ..OpenOptions::default()
        };
        let err = open_with("memory://twice?layout=litestream-0.3", options)
            .await
            .unwrap_err();
        assert!(err.is_invalid_argument(), "{err}");
        let same = open_with("memory://twice?layout=litestream-0.4", options)
            .await
            .unwrap();
        assert_eq!(same.layout(), Layout::Litestream04);
    }
}

#[cfg(test)]
mod fuzz {
    use proptest::prelude::*;
    use proptest::test_runner::{Config, TestRunner};

    /// Any string given to `open` is a backend or a clear error, never a panic.
    #[test]
    fn open_never_panics_on_any_url() {
        let cases = std::env::var("REPLICA_FUZZ_CASES")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(5_000);
        let mut runner = TestRunner::new(Config {
            cases,
            failure_persistence: None,
            ..Config::default()
        });
        let urls = prop_oneof![
            any::<String>(),
            "(file|memory|s3|gs|az|ftp|)(:|://|:/)[a-z0-9./%?=&\\[\\]@:_-]{0,30}(\\?layout=[a-z0-9.-]{0,16})?",
        ];
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runner
            .run(&urls, |url| {
                // With a layout given, opening does no I/O (no detection), so
                // random cloud URLs never reach for a network.
                let options = super::OpenOptions {
                    layout: Some(super::Layout::default()),
                    ..super::OpenOptions::default()
                };
                if let Err(e) = runtime.block_on(super::open_with(&url, options)) {
                    prop_assert!(e.is_invalid_argument(), "{url:?}: {e}");
                }
                Ok(())
            })
            .unwrap();
    }
}
