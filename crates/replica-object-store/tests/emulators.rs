//! The whole conformance suite, under both layouts, against real emulators
//! of the clouds: S3 (moto) and Azure Blob Storage (Azurite).
//!
//! Configured in `object_store`'s environment conventions —
//! S3: `AWS_ENDPOINT`, `AWS_ALLOW_HTTP`, `AWS_ACCESS_KEY_ID`,
//! `AWS_SECRET_ACCESS_KEY`, `AWS_REGION`, plus `REPLICA_S3_BUCKET` (an
//! existing bucket); Azure: `AZURE_STORAGE_USE_EMULATOR=true`,
//! `AZURITE_BLOB_STORAGE_URL`, plus `REPLICA_AZURE_CONTAINER` (an existing
//! container). `.ci/run` starts both servers and sets them, with
//! `REPLICA_REQUIRE_S3=1` and `REPLICA_REQUIRE_AZURE=1` so that a missing
//! server fails instead of skipping. Without them every case skips with a
//! loud message.

use std::sync::atomic::{AtomicU64, Ordering};

use replica_conformance::{Fixture, Layout};
use replica_object_store::{open_url, ObjectStoreClient};

static CASE: AtomicU64 = AtomicU64::new(0);

/// One emulated cloud: how to find it in the environment.
struct Cloud {
    name: &'static str,
    scheme: &'static str,
    /// Names the existing bucket or container.
    location_var: &'static str,
    /// Must be set for the server to be configured.
    server_var: &'static str,
    require_var: &'static str,
}

const S3: Cloud = Cloud {
    name: "S3",
    scheme: "s3",
    location_var: "REPLICA_S3_BUCKET",
    server_var: "AWS_ENDPOINT",
    require_var: "REPLICA_REQUIRE_S3",
};

const AZURE: Cloud = Cloud {
    name: "Azure",
    scheme: "az",
    location_var: "REPLICA_AZURE_CONTAINER",
    server_var: "AZURITE_BLOB_STORAGE_URL",
    require_var: "REPLICA_REQUIRE_AZURE",
};

fn fixture(cloud: &Cloud, layout: Layout) -> Result<Fixture, String> {
    let (location, server) = (cloud.location_var, cloud.server_var);
    let bucket = match std::env::var(location) {
        Ok(b) if std::env::var(server).is_ok() => b,
        _ if std::env::var(cloud.require_var).is_ok() => {
            return Err(format!(
                "{} is set but {location}/{server} are not",
                cloud.require_var
            ))
        }
        _ => {
            eprintln!(
                "!!! {} conformance SKIPPED: set {server} and {location} (see .ci/run)",
                cloud.name
            );
            return Ok(Fixture::unavailable(format!(
                "no {} server configured ({server}, {location})",
                cloud.name
            )));
        }
    };
    let run = std::process::id();
    let n = CASE.fetch_add(1, Ordering::Relaxed);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    let url = format!("{}://{bucket}/conformance/{run}-{nanos}-{n}", cloud.scheme);
    let url = url::Url::parse(&url).map_err(|e| e.to_string())?;
    let store = open_url(&url)
        .map_err(|e| e.to_string())?
        .with_multipart_threshold(5 << 20);
    let client = ObjectStoreClient::with_layout(store, layout);
    Ok(Fixture::new(client.clone()).with_planter(planter(client)))
}

mod s3 {
    use super::*;
    replica_conformance::conformance_tests!(layouts: |layout| async move { fixture(&S3, layout) });
}

mod azure {
    use super::*;
    replica_conformance::conformance_tests!(layouts: |layout| async move { fixture(&AZURE, layout) });
}

/// Plants raw objects through the store itself, under the client's prefix.
fn planter(client: ObjectStoreClient) -> impl replica_conformance::Planter {
    replica_conformance::FnPlanter(move |path: String, data| {
        let client = client.clone();
        async move { client.store().insert_raw(&path, data).await }
    })
}
