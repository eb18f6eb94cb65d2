//! The whole conformance suite against a real S3-compatible server.
//!
//! Configured in `object_store`'s environment conventions: `AWS_ENDPOINT`,
//! `AWS_ALLOW_HTTP`, `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`,
//! `AWS_REGION`, plus `REPLICA_S3_BUCKET` (an existing bucket). `.ci/run`
//! starts a `moto` server and sets them, with `REPLICA_REQUIRE_S3=1` so that a
//! missing server fails instead of skipping. Without them every case skips
//! with a loud message.

use std::sync::atomic::{AtomicU64, Ordering};

use replica_conformance::{Fixture, Layout};
use replica_object_store::{open_url, ObjectStoreClient};

static CASE: AtomicU64 = AtomicU64::new(0);

fn s3_fixture(layout: Layout) -> Result<Fixture, String> {
    let bucket = match std::env::var("REPLICA_S3_BUCKET") {
        Ok(b) if std::env::var("AWS_ENDPOINT").is_ok() => b,
        _ if std::env::var("REPLICA_REQUIRE_S3").is_ok() => {
            return Err(
                "REPLICA_REQUIRE_S3 is set but REPLICA_S3_BUCKET/AWS_ENDPOINT are not".into(),
            )
        }
        _ => {
            eprintln!(
                "!!! S3 conformance SKIPPED: set AWS_ENDPOINT and REPLICA_S3_BUCKET (see .ci/run)"
            );
            return Ok(Fixture::unavailable(
                "no S3 server configured (AWS_ENDPOINT, REPLICA_S3_BUCKET)",
            ));
        }
    };
    let run = std::process::id();
    let n = CASE.fetch_add(1, Ordering::Relaxed);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    let url = format!("s3://{bucket}/conformance/{run}-{nanos}-{n}");
    let url = url::Url::parse(&url).map_err(|e| e.to_string())?;
    let store = open_url(&url)
        .map_err(|e| e.to_string())?
        .with_multipart_threshold(5 << 20);
    let client = ObjectStoreClient::with_layout(store, layout);
    Ok(Fixture::new(client.clone()).with_planter(planter(client)))
}

replica_conformance::conformance_tests!(layouts: |layout| async move { s3_fixture(layout) });

/// Plants raw objects through the store itself, under the client's prefix.
fn planter(client: ObjectStoreClient) -> impl replica_conformance::Planter {
    replica_conformance::FnPlanter(move |path: String, data| {
        let client = client.clone();
        async move { client.store().insert_raw(&path, data).await }
    })
}
