//! Project automation (`cargo xtask <task>`), after matklad's xtask convention.
//!
//! - `ci`: formatting, clippy, docs, every test, then the conformance matrix;
//! - `reliability`: crash, fault, bad-input and concurrency tests in full mode;
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
        "reliability" => reliability(),
        _ => Err(format!(
            "unknown task {task:?}; tasks: ci, conformance, bench, reliability"
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

/// The reliability tests in full mode: 200 SIGKILLs (of a file write and of
/// the replicator), 250,000 generated inputs
/// per bad-input property (over 1,000,000 in all), 256 model sequences per
/// backend. `cargo xtask ci` runs the same tests in quick mode.
fn reliability() -> Result<(), String> {
    let env = [
        ("REPLICA_CRASH_KILLS", "200"),
        ("REPLICA_FUZZ_CASES", "250000"),
        ("REPLICA_MODEL_CASES", "256"),
    ];
    cargo(
        &[
            "test",
            "--release",
            "-p",
            "replica-file",
            "--test",
            "crash",
            "--test",
            "disk_full",
        ],
        &env,
    )?;
    cargo(
        &[
            "test",
            "--release",
            "-p",
            "replica-core",
            "--test",
            "bad_input",
        ],
        &env,
    )?;
    cargo(
        &["test", "--release", "-p", "replica", "--lib", "fuzz"],
        &env,
    )?;
    // The WAL applier and the LTX decoder on damaged input.
    cargo(
        &[
            "test",
            "--release",
            "-p",
            "replica-sqlite",
            "--test",
            "fuzz",
            "-p",
            "replica-ltx",
            "--test",
            "fuzz",
        ],
        &env,
    )?;
    cargo(
        &[
            "test",
            "--release",
            "-p",
            "replica-conformance",
            "--test",
            "faults",
        ],
        &env,
    )?;
    cargo(
        &[
            "test",
            "--release",
            "-p",
            "replica-object-store",
            "--test",
            "s3_outage",
        ],
        &env,
    )?;
    // The replicator SIGKILLed 200 times under a writer (needs sqlite3 and
    // litestream as `.ci/run` provides them).
    cargo(
        &[
            "test",
            "--release",
            "-p",
            "replica-cli",
            "--test",
            "replicate",
            "--test",
            "replicate_ltx",
            "--",
            "sigkill",
        ],
        &env,
    )?;
    for package in ["replica-memory", "replica-file"] {
        cargo(
            &[
                "test",
                "--release",
                "-p",
                package,
                "--test",
                "conformance",
                "--",
                "random_operations",
                "thirty_two_tasks",
            ],
            &env,
        )?;
    }
    Ok(())
}

/// Benchmarks in release mode; extra arguments (e.g. `--quick`) pass through.
/// The `replica` binary is built first (benchmark 7 runs it against
/// `litestream restore`; `REPLICA_LITESTREAM` names the litestream binary).
fn bench() -> Result<(), String> {
    cargo(
        &["build", "--release", "--quiet", "--package", "replica-cli"],
        &[],
    )?;
    let bin = std::env::current_dir()
        .map_err(|e| format!("current directory: {e}"))?
        .join("target/release/replica");
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
    cargo(&args, &[("REPLICA_BIN", &bin.to_string_lossy())])
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
        "--builtin",
        "--out",
        "target/conformance",
    ];
    args.extend(urls.split_whitespace());
    cargo(&args, &[])
}
