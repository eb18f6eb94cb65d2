//! Project automation (`cargo xtask <task>`), after matklad's xtask convention.
//!
//! - `ci`: formatting, clippy, docs, every test, then the conformance matrix;
//! - `bench`: benchmarks against same-run baselines, reports in `target/bench/`;
//! - `conformance`: the suite on every built-in backend (plus any URLs in
//!   `REPLICA_CONFORMANCE_URLS`, space-separated), reports in `target/conformance/`.

use std::process::{Command, ExitCode};

fn main() -> ExitCode {
    let task = std::env::args().nth(1).unwrap_or_default();
    let result = match task.as_str() {
        "ci" => ci(),
        "conformance" => conformance(),
        "bench" => bench(),
        _ => Err(format!(
            "unknown task {task:?}; tasks: ci, conformance, bench"
        )),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("xtask: {message}");
            ExitCode::FAILURE
        }
    }
}

fn cargo(args: &[&str], env: &[(&str, &str)]) -> Result<(), String> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    eprintln!("$ cargo {}", args.join(" "));
    let status = Command::new(&cargo)
        .args(args)
        .envs(env.iter().copied())
        .status()
        .map_err(|e| format!("running cargo: {e}"))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("cargo {} failed ({status})", args.join(" ")))
    }
}

fn ci() -> Result<(), String> {
    cargo(&["fmt", "--all", "--", "--check"], &[])?;
    cargo(
        &[
            "clippy",
            "--workspace",
            "--all-targets",
            "--",
            "-D",
            "warnings",
        ],
        &[],
    )?;
    cargo(
        &["doc", "--workspace", "--no-deps"],
        &[("RUSTDOCFLAGS", "-D warnings")],
    )?;
    if std::env::var_os("AWS_ENDPOINT").is_none() {
        eprintln!(
            "\n!!! No S3 server configured (AWS_ENDPOINT, REPLICA_S3_BUCKET): the S3 conformance \
             tests will SKIP. `bash .ci/run` starts a moto server and runs them.\n"
        );
    }
    cargo(&["test", "--workspace"], &[])?;
    conformance()
}

/// Benchmarks in release mode; extra arguments (e.g. `--quick`) pass through.
fn bench() -> Result<(), String> {
    let mut args = vec![
        "run",
        "--release",
        "--quiet",
        "--package",
        "replica-bench",
        "--",
        "target/bench",
    ];
    let extra: Vec<String> = std::env::args().skip(2).collect();
    args.extend(extra.iter().map(String::as_str));
    cargo(&args, &[])
}

fn conformance() -> Result<(), String> {
    let urls = std::env::var("REPLICA_CONFORMANCE_URLS").unwrap_or_default();
    let mut args = vec![
        "run",
        "--quiet",
        "--package",
        "replica-cli",
        "--",
        "conformance",
        "--out",
        "target/conformance",
    ];
    args.extend(urls.split_whitespace());
    cargo(&args, &[])
}
