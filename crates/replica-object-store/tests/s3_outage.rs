//! The S3 server stops in the middle of a multipart snapshot upload: the
//! write fails with a clear error, no object becomes visible, and after the
//! server restarts the retried write succeeds. In-process `s3s` server on
//! 127.0.0.1, stopped and restarted on the same port and directory.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::stream::{self, StreamExt};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto::Builder as ConnBuilder;
use object_store::aws::AmazonS3Builder;
use object_store::RetryConfig;
use replica_core::{collect_bytes, Error, Generation, ReplicaClient};
use replica_object_store::{ObjectKeyStore, ObjectStoreClient};
use s3s::auth::SimpleAuth;
use s3s::service::S3ServiceBuilder;
use tokio::net::TcpListener;
use tokio::task::JoinSet;

const BUCKET: &str = "outage";
const PART: usize = 5 << 20;

/// A running server; `stop` closes the listener and every open connection.
struct Server(JoinSet<()>);

impl Server {
    async fn start(root: &std::path::Path, addr: SocketAddr) -> (Server, SocketAddr) {
        let fs = s3s_fs::FileSystem::new(root).unwrap();
        let mut builder = S3ServiceBuilder::new(fs);
        builder.set_auth(SimpleAuth::from_single("k", "s"));
        let service = builder.build();
        let listener = TcpListener::bind(addr).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let mut tasks = JoinSet::new();
        tasks.spawn(async move {
            let http = ConnBuilder::new(TokioExecutor::new());
            let mut connections = JoinSet::new();
            while let Ok((socket, _)) = listener.accept().await {
                let conn = http
                    .serve_connection(TokioIo::new(socket), service.clone())
                    .into_owned();
                connections.spawn(async move {
                    let _ = conn.await;
                });
            }
        });
        (Server(tasks), addr)
    }

    async fn stop(mut self) {
        self.0.abort_all();
        while self.0.join_next().await.is_some() {}
    }
}

fn client(addr: SocketAddr) -> ObjectStoreClient {
    let store = AmazonS3Builder::new()
        .with_bucket_name(BUCKET)
        .with_endpoint(format!("http://{addr}"))
        .with_allow_http(true)
        .with_region("us-east-1")
        .with_access_key_id("k")
        .with_secret_access_key("s")
        .with_retry(RetryConfig {
            max_retries: 2,
            retry_timeout: Duration::from_secs(3),
            ..RetryConfig::default()
        })
        .build()
        .unwrap();
    ObjectStoreClient::new(
        ObjectKeyStore::new(Arc::new(store), "db")
            .with_kind("s3")
            .with_multipart_threshold(PART),
    )
}

fn part(i: u8) -> Bytes {
    Bytes::from(vec![i; PART])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_stopped_mid_upload_leaves_nothing_and_a_retry_succeeds() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join(BUCKET)).unwrap();
    let (server, addr) = Server::start(dir.path(), "127.0.0.1:0".parse().unwrap()).await;
    let c = client(addr);
    let g: Generation = "00000000000000ee".parse().unwrap();

    // Two parts go up, then the input waits until the server is gone.
    let (stopped_tx, stopped_rx) = tokio::sync::oneshot::channel::<()>();
    let (sent_tx, sent_rx) = tokio::sync::oneshot::channel::<()>();
    let input = stream::iter(vec![Ok(part(1)), Ok(part(2))])
        .chain(stream::once(async move {
            let _ = sent_tx.send(());
            let _ = stopped_rx.await;
            Ok(part(3))
        }))
        .chain(stream::iter(vec![Ok(part(4))]))
        .boxed();
    let writer = {
        let c = c.clone();
        let g = g.clone();
        tokio::spawn(async move { c.write_snapshot(&g, 1, input).await })
    };
    sent_rx.await.unwrap();
    // Give the first parts time to be in flight, then stop the server.
    tokio::time::sleep(Duration::from_millis(300)).await;
    server.stop().await;
    stopped_tx.send(()).unwrap();
    let err = tokio::time::timeout(Duration::from_secs(60), writer)
        .await
        .expect("the write gives up")
        .unwrap()
        .expect_err("the write must fail while the server is down");
    assert!(
        matches!(err, Error::Backend { backend: "s3", .. }),
        "{err:?}"
    );
    eprintln!("error while the server was down: {err}");

    // Back up on the same port and directory: nothing visible.
    let (server, _) = Server::start(dir.path(), addr).await;
    assert!(
        c.snapshots(&g).await.unwrap().is_empty(),
        "a partial snapshot is visible"
    );
    assert!(c
        .snapshot_reader(&g, 1)
        .await
        .map(|_| ())
        .unwrap_err()
        .is_not_found());

    // The retry succeeds and reads back whole.
    let whole = stream::iter((1..=4).map(|i| Ok(part(i)))).boxed();
    let info = c.write_snapshot(&g, 1, whole).await.unwrap();
    assert_eq!(info.size, 4 * PART as u64);
    let back = collect_bytes(c.snapshot_reader(&g, 1).await.unwrap())
        .await
        .unwrap();
    assert_eq!(back.len(), 4 * PART);
    assert!(back
        .chunks(PART)
        .enumerate()
        .all(|(i, p)| p.iter().all(|b| *b == i as u8 + 1)));
    server.stop().await;
}
