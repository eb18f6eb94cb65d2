//! The whole conformance suite against an in-process S3 server: `s3s` over a
//! directory (`s3s-fs`), one server per case on an ephemeral 127.0.0.1 port,
//! stopped with the case. Nothing to install: plain `cargo test` covers S3.

use std::sync::Arc;

use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto::Builder as ConnBuilder;
use object_store::aws::AmazonS3Builder;
use replica_conformance::Fixture;
use replica_object_store::{ObjectKeyStore, ObjectStoreClient};
use s3s::auth::SimpleAuth;
use s3s::service::S3ServiceBuilder;
use tokio::net::TcpListener;

const BUCKET: &str = "replica-test";

/// Aborts the server task when the fixture is dropped.
struct Server(tokio::task::JoinHandle<()>);

impl Drop for Server {
    fn drop(&mut self) {
        self.0.abort();
    }
}

async fn s3s_fixture() -> Result<Fixture, String> {
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    std::fs::create_dir(dir.path().join(BUCKET)).map_err(|e| e.to_string())?;
    let fs = s3s_fs::FileSystem::new(dir.path()).map_err(|e| format!("{e:?}"))?;
    let mut builder = S3ServiceBuilder::new(fs);
    builder.set_auth(SimpleAuth::from_single("test-key", "test-secret"));
    let service = builder.build();
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .map_err(|e| e.to_string())?;
    let port = listener.local_addr().map_err(|e| e.to_string())?.port();
    let server = tokio::spawn(async move {
        let http = ConnBuilder::new(TokioExecutor::new());
        while let Ok((socket, _)) = listener.accept().await {
            let conn = http
                .serve_connection(TokioIo::new(socket), service.clone())
                .into_owned();
            tokio::spawn(conn);
        }
    });
    let store = AmazonS3Builder::new()
        .with_bucket_name(BUCKET)
        .with_endpoint(format!("http://127.0.0.1:{port}"))
        .with_allow_http(true)
        .with_region("us-east-1")
        .with_access_key_id("test-key")
        .with_secret_access_key("test-secret")
        .build()
        .map_err(|e| e.to_string())?;
    let client = ObjectStoreClient::new(
        ObjectKeyStore::new(Arc::new(store), "replica")
            .with_kind("s3")
            .with_multipart_threshold(5 << 20),
    );
    Ok(Fixture::new(client.clone())
        .with_planter(planter(client))
        .keep(Server(server))
        .keep(dir))
}

replica_conformance::conformance_tests!(s3s_fixture);

/// Plants raw objects through the store itself, under the client's prefix.
fn planter(client: ObjectStoreClient) -> impl replica_conformance::Planter {
    replica_conformance::FnPlanter(move |path: String, data| {
        let client = client.clone();
        async move { client.store().insert_raw(&path, data).await }
    })
}
