//! Request counting over any key store: [`Metered`] wraps a [`KeyStore`]
//! and counts, per operation kind (GET, PUT, LIST, DELETE), the requests
//! made, the bytes moved and the errors, into a [`Meter`] that several
//! stores may share.
//!
//! The kinds are Litestream's (`litestream_replica_operation_total`,
//! `_bytes` and `_errors_total`): GET counts a read and the bytes it
//! streamed, PUT a write and (once it succeeded) its bytes, LIST one listing of a
//! directory level, DELETE one delete call (a batch) or one recursive
//! delete. A missing object is not an error here: stores answer it as a
//! result, and the clients ask for it on purpose.

use std::fmt;
use std::ops::Range;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use chrono::{DateTime, Utc};
use futures::StreamExt;

use crate::store::{KeyStore, Listing, ObjectMeta, PutOptions};
use crate::{ByteStream, Error, Result};

/// An operation kind, as Litestream names it in its metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Operation {
    /// A read of an object (or of its time).
    Get,
    /// A write of an object.
    Put,
    /// A listing of one directory level.
    List,
    /// A delete of objects (one batch) or of a directory tree.
    Delete,
}

impl Operation {
    /// Every kind, in metric order.
    pub const ALL: [Operation; 4] = [
        Operation::Get,
        Operation::Put,
        Operation::List,
        Operation::Delete,
    ];

    /// Litestream's label value: `GET`, `PUT`, `LIST`, `DELETE`.
    pub fn name(self) -> &'static str {
        match self {
            Operation::Get => "GET",
            Operation::Put => "PUT",
            Operation::List => "LIST",
            Operation::Delete => "DELETE",
        }
    }

    fn slot(self) -> usize {
        self as usize
    }
}

impl fmt::Display for Operation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Counts of one operation kind.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    /// Requests made.
    pub total: u64,
    /// Bytes moved (GET: streamed to the caller; PUT: consumed from it).
    pub bytes: u64,
}

#[derive(Default)]
struct Slots {
    total: [AtomicU64; 4],
    bytes: [AtomicU64; 4],
    /// Errors by (operation, error code).
    errors: Mutex<Vec<((Operation, &'static str), u64)>>,
}

/// Shared request counters (cheap to clone; clones count together).
#[derive(Clone, Default)]
pub struct Meter(Arc<Slots>);

impl fmt::Debug for Meter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("Meter");
        for op in Operation::ALL {
            d.field(op.name(), &self.counts(op));
        }
        d.finish()
    }
}

impl Meter {
    /// A meter at zero.
    pub fn new() -> Meter {
        Meter::default()
    }

    /// The counts of `op` so far.
    pub fn counts(&self, op: Operation) -> Counts {
        Counts {
            total: self.0.total[op.slot()].load(Ordering::Relaxed),
            bytes: self.0.bytes[op.slot()].load(Ordering::Relaxed),
        }
    }

    /// Errors so far, by operation and [`error_code`], in a stable order.
    pub fn errors(&self) -> Vec<(Operation, &'static str, u64)> {
        let mut out: Vec<_> = self
            .0
            .errors
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .map(|((op, code), n)| (*op, *code, *n))
            .collect();
        out.sort();
        out
    }

    fn request(&self, op: Operation) {
        self.0.total[op.slot()].fetch_add(1, Ordering::Relaxed);
    }

    fn add_bytes(&self, op: Operation, n: u64) {
        self.0.bytes[op.slot()].fetch_add(n, Ordering::Relaxed);
    }

    fn error(&self, op: Operation, e: &Error) {
        if matches!(e, Error::NotFound { .. }) {
            return;
        }
        let code = error_code(e);
        let mut errors = self.0.errors.lock().unwrap_or_else(|p| p.into_inner());
        match errors.iter_mut().find(|(k, _)| *k == (op, code)) {
            Some((_, n)) => *n += 1,
            None => errors.push(((op, code), 1)),
        }
    }

    fn outcome<T>(&self, op: Operation, result: Result<T>) -> Result<T> {
        if let Err(e) = &result {
            self.error(op, e);
        }
        result
    }

    /// `stream`, its chunks counted as bytes of `op` and its errors as
    /// errors of `op`.
    fn counted(&self, op: Operation, stream: ByteStream) -> ByteStream {
        let meter = self.clone();
        stream
            .inspect(move |chunk| match chunk {
                Ok(bytes) => meter.add_bytes(op, bytes.len() as u64),
                Err(e) => meter.error(op, e),
            })
            .boxed()
    }
}

/// One [`Meter`] per backend kind (`s3`, `file`, ...), as Litestream's
/// counters are labelled by `replica_type`; cheap to clone, clones share.
#[derive(Clone, Default, Debug)]
pub struct Meters(Arc<Mutex<Vec<(&'static str, Meter)>>>);

impl Meters {
    /// No meters yet.
    pub fn new() -> Meters {
        Meters::default()
    }

    /// The meter of backend `kind` (created at zero the first time).
    pub fn meter(&self, kind: &'static str) -> Meter {
        let mut all = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((_, m)) = all.iter().find(|(k, _)| *k == kind) {
            return m.clone();
        }
        let m = Meter::new();
        all.push((kind, m.clone()));
        m
    }

    /// Every meter, by kind, sorted.
    pub fn all(&self) -> Vec<(&'static str, Meter)> {
        let mut all = self.0.lock().unwrap_or_else(|p| p.into_inner()).clone();
        all.sort_by_key(|(k, _)| *k);
        all
    }
}

/// A short, stable name of an error's kind, for the `code` label.
pub fn error_code(e: &Error) -> &'static str {
    match e {
        Error::NotFound { .. } => "not_found",
        Error::InvalidArgument { .. } => "invalid_argument",
        Error::Append(_) => "append",
        Error::GenerationMismatch { .. } => "generation_mismatch",
        Error::Gap { .. } | Error::TxidHole { .. } => "gap",
        Error::Corrupt { .. } => "corrupt",
        Error::Io { .. } => "io",
        Error::PermissionDenied { .. } => "permission_denied",
        Error::Unauthenticated { .. } => "unauthenticated",
        Error::Precondition { .. } => "precondition",
        Error::Backend { .. } => "backend",
    }
}

/// A key store whose requests are counted into a [`Meter`].
#[derive(Debug)]
pub struct Metered<S> {
    inner: Arc<S>,
    meter: Meter,
}

impl<S> Metered<S> {
    /// `inner`, counted into `meter`.
    pub fn new(inner: Arc<S>, meter: Meter) -> Self {
        Metered { inner, meter }
    }
}

#[crate::async_trait]
impl<S: KeyStore> KeyStore for Metered<S> {
    fn kind(&self) -> &'static str {
        self.inner.kind()
    }

    async fn put_opts(
        &self,
        key: &str,
        data: ByteStream,
        options: &PutOptions,
    ) -> Result<ObjectMeta> {
        self.meter.request(Operation::Put);
        // Bytes count once the write succeeded (as Litestream counts them);
        // a failed input is the caller's error, counted once, as the put's.
        let sent = Arc::new(AtomicU64::new(0));
        let tally = sent.clone();
        let data = data
            .inspect(move |chunk| {
                if let Ok(bytes) = chunk {
                    tally.fetch_add(bytes.len() as u64, Ordering::Relaxed);
                }
            })
            .boxed();
        let result = self.inner.put_opts(key, data, options).await;
        if result.is_ok() {
            self.meter
                .add_bytes(Operation::Put, sent.load(Ordering::Relaxed));
        }
        self.meter.outcome(Operation::Put, result)
    }

    fn times_listed(&self) -> bool {
        self.inner.times_listed()
    }

    async fn get(&self, key: &str) -> Result<ByteStream> {
        self.meter.request(Operation::Get);
        let result = self.inner.get(key).await;
        let stream = self.meter.outcome(Operation::Get, result)?;
        Ok(self.meter.counted(Operation::Get, stream))
    }

    async fn get_range(&self, key: &str, range: Range<u64>) -> Result<ByteStream> {
        self.meter.request(Operation::Get);
        let result = self.inner.get_range(key, range).await;
        let stream = self.meter.outcome(Operation::Get, result)?;
        Ok(self.meter.counted(Operation::Get, stream))
    }

    async fn object_time(&self, key: &str) -> Result<Option<DateTime<Utc>>> {
        // A listing where the store reads times from listings, else a HEAD.
        let op = if self.inner.times_listed() {
            Operation::List
        } else {
            Operation::Get
        };
        self.meter.request(op);
        let result = self.inner.object_time(key).await;
        self.meter.outcome(op, result)
    }

    async fn delete(&self, keys: &[String]) -> Result<()> {
        if keys.is_empty() {
            return Ok(());
        }
        self.meter.request(Operation::Delete);
        let result = self.inner.delete(keys).await;
        self.meter.outcome(Operation::Delete, result)
    }

    async fn list(&self, dir: &str) -> Result<Listing> {
        self.meter.request(Operation::List);
        let result = self.inner.list(dir).await;
        self.meter.outcome(Operation::List, result)
    }

    async fn delete_all(&self, dir: &str) -> Result<()> {
        self.meter.request(Operation::Delete);
        let result = self.inner.delete_all(dir).await;
        self.meter.outcome(Operation::Delete, result)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{bytes_stream, collect_bytes, Generation, ReplicaClient, StoreClient};

    /// A store that holds nothing and refuses every write.
    #[derive(Debug)]
    struct Refusing;

    #[crate::async_trait]
    impl KeyStore for Refusing {
        fn kind(&self) -> &'static str {
            "refusing"
        }
        async fn put_opts(&self, key: &str, _: ByteStream, _: &PutOptions) -> Result<ObjectMeta> {
            Err(Error::PermissionDenied {
                backend: "refusing",
                message: format!("writing {key}"),
                source: None,
            })
        }
        async fn get(&self, key: &str) -> Result<ByteStream> {
            Err(Error::not_found(key))
        }
        async fn delete(&self, _: &[String]) -> Result<()> {
            Ok(())
        }
        async fn list(&self, _: &str) -> Result<Listing> {
            Ok(Listing::default())
        }
        async fn delete_all(&self, _: &str) -> Result<()> {
            Ok(())
        }
    }

    #[tokio::test]
    async fn requests_bytes_and_errors_are_counted_by_kind() {
        let meter = Meter::new();
        let client = StoreClient::with_layout(
            Metered::new(Arc::new(Refusing), meter.clone()),
            crate::Layout::Litestream03,
        );
        let g = Generation::random();
        let e = client
            .write_snapshot(&g, 1, bytes_stream("abc"))
            .await
            .unwrap_err();
        assert!(matches!(e, Error::PermissionDenied { .. }), "{e}");
        assert_eq!(meter.counts(Operation::Put).total, 1);
        assert_eq!(
            meter.errors(),
            vec![(Operation::Put, "permission_denied", 1)]
        );
        // A missing object is an answer, not an error.
        assert!(client.snapshot_reader(&g, 1).await.is_err());
        assert_eq!(meter.counts(Operation::Get).total, 1);
        assert_eq!(meter.errors().len(), 1);
        assert!(client.generations().await.unwrap().is_empty());
        assert!(meter.counts(Operation::List).total >= 1);
    }

    #[tokio::test]
    async fn bytes_are_counted_as_they_stream() {
        #[derive(Debug, Default)]
        struct One(Mutex<Option<bytes::Bytes>>);
        #[crate::async_trait]
        impl KeyStore for One {
            fn kind(&self) -> &'static str {
                "one"
            }
            fn times_listed(&self) -> bool {
                false
            }
            async fn object_time(&self, _: &str) -> Result<Option<DateTime<Utc>>> {
                Ok(Some(DateTime::<Utc>::UNIX_EPOCH))
            }
            async fn put_opts(
                &self,
                _: &str,
                data: ByteStream,
                _: &PutOptions,
            ) -> Result<ObjectMeta> {
                let data = collect_bytes(data).await?;
                let size = data.len() as u64;
                *self.0.lock().unwrap() = Some(data);
                Ok(ObjectMeta {
                    size,
                    modified: Utc::now(),
                })
            }
            async fn get(&self, key: &str) -> Result<ByteStream> {
                let held = self.0.lock().unwrap().clone();
                held.map(bytes_stream).ok_or_else(|| Error::not_found(key))
            }
            async fn delete(&self, _: &[String]) -> Result<()> {
                Ok(())
            }
            async fn list(&self, _: &str) -> Result<Listing> {
                Ok(Listing::default())
            }
            async fn delete_all(&self, _: &str) -> Result<()> {
                Ok(())
            }
        }
        let meter = Meter::new();
        let store = Metered::new(Arc::new(One::default()), meter.clone());
        store.put("k", bytes_stream("hello")).await.unwrap();
        assert_eq!(meter.counts(Operation::Put), Counts { total: 1, bytes: 5 });
        let read = store.get("k").await.unwrap();
        // Counted as the caller reads, not when the request is made.
        assert_eq!(meter.counts(Operation::Get).bytes, 0);
        assert_eq!(collect_bytes(read).await.unwrap().as_ref(), b"hello");
        assert_eq!(meter.counts(Operation::Get), Counts { total: 1, bytes: 5 });
        // Overridden methods are the store's own, counted as what they ask.
        assert!(!store.times_listed());
        assert_eq!(
            store.object_time("k").await.unwrap(),
            Some(DateTime::<Utc>::UNIX_EPOCH)
        );
        assert_eq!(meter.counts(Operation::Get).total, 2, "a HEAD is a GET");
        let part = collect_bytes(store.get_range("k", 1..3).await.unwrap())
            .await
            .unwrap();
        assert_eq!(part.as_ref(), b"el");
        assert_eq!(meter.counts(Operation::Get), Counts { total: 3, bytes: 7 });
        // A failed input: one error, no bytes.
        let failing: ByteStream = futures::stream::iter(vec![
            Ok(bytes::Bytes::from_static(b"abc")),
            Err(Error::io("reading the input", std::io::Error::other("cut"))),
        ])
        .boxed();
        assert!(store.put("k2", failing).await.is_err());
        assert_eq!(meter.counts(Operation::Put), Counts { total: 2, bytes: 5 });
        assert_eq!(meter.errors(), vec![(Operation::Put, "io", 1)]);
        store.delete(&[]).await.unwrap();
        assert_eq!(
            meter.counts(Operation::Delete).total,
            0,
            "nothing to delete, no request"
        );
        store.delete(&["k".into()]).await.unwrap();
        assert_eq!(meter.counts(Operation::Delete).total, 1);
    }
}
