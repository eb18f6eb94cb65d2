//! Litestream 0.3 config files (`litestream.yml`), so `replica replicate
//! --config` runs an existing Litestream user's file unchanged.
//!
//! Keys, defaults and meanings follow Litestream 0.3.13. The text is first
//! expanded as Go's `os.ExpandEnv` does (`$VAR`, `${VAR}`; unset is empty)
//! unless that is turned off (Litestream's `-no-expand-env`). Supported: `dbs` (`path`, `monitor-interval`,
//! `checkpoint-interval`, `min-/max-checkpoint-page-count`, `replicas`),
//! top-level `access-key-id`/`secret-access-key` (defaults for S3 replicas),
//! `addr`, `exec`, `logging` (`level`, `type`, `stderr`), Litestream 0.5's
//! `heartbeat-url`/`heartbeat-interval`, and replicas of type `file`, `s3`,
//! `gcs` and `abs`, given by `type`, `url` or `path`, each turned into a URL
//! that [`replica::open`] understands.
//!
//! Ignored, and listed in [`Config::ignored`] for the caller to warn about:
//! replica keys that do not apply to the replica's type (Litestream ignores
//! those too), and Litestream 0.5 keys not acted on yet. Rejected with an error naming the
//! key: `meta-path`, `age`, `type: sftp`, and any unknown key.

// Wired into `replica replicate` by main.rs.
#![allow(dead_code)]

use std::fmt;
use std::path::{Component, Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use url::Url;

/// Litestream's `DefaultMonitorInterval`.
pub(crate) const DEFAULT_MONITOR_INTERVAL: Duration = Duration::from_secs(1);
/// Litestream's `DefaultCheckpointInterval`.
pub(crate) const DEFAULT_CHECKPOINT_INTERVAL: Duration = Duration::from_secs(60);
/// Litestream's `DefaultMinCheckpointPageN`.
pub(crate) const DEFAULT_MIN_CHECKPOINT_PAGE_COUNT: u32 = 1000;
/// Litestream's `DefaultMaxCheckpointPageN`.
pub(crate) const DEFAULT_MAX_CHECKPOINT_PAGE_COUNT: u32 = 10_000;
/// Litestream's `DefaultSyncInterval`.
pub(crate) const DEFAULT_SYNC_INTERVAL: Duration = Duration::from_secs(1);
/// Litestream's `DefaultRetention`.
pub(crate) const DEFAULT_RETENTION: Duration = Duration::from_secs(24 * 3600);
/// Litestream's `DefaultRetentionCheckInterval`.
pub(crate) const DEFAULT_RETENTION_CHECK_INTERVAL: Duration = Duration::from_secs(3600);
/// The region Litestream uses for an S3 endpoint given without one.
const S3_DEFAULT_REGION: &str = "us-east-1";

/// A parsed config file.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Config {
    /// The databases to replicate, in file order.
    pub(crate) dbs: Vec<DbConfig>,
    /// Keys that were accepted but are not acted on, each with its place and
    /// why (`addr (metrics are not served)`), for the caller to warn about.
    pub(crate) ignored: Vec<String>,
    /// `exec`: the command `replicate` runs once replication is running
    /// (Litestream's `-exec`).
    pub(crate) exec: Option<String>,
    /// `addr`: where metrics, health and status are served (`:9090` is
    /// every interface, as in Go).
    pub(crate) addr: Option<String>,
    /// `logging`.
    pub(crate) logging: Logging,
    /// `heartbeat-url` and `heartbeat-interval`.
    pub(crate) heartbeat: Option<Heartbeat>,
}

/// The `logging` section, each key as given (unset: our default).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Logging {
    /// `level`, normalised: `trace`, `debug`, `info`, `warn` or `error`.
    pub(crate) level: Option<&'static str>,
    /// `type`: `json` (true) or `text`/`pretty` (false).
    pub(crate) json: Option<bool>,
    /// `stderr`: logs to stderr (true) or stdout (false).
    pub(crate) stderr: Option<bool>,
}

/// A health-check URL pinged while every database is healthy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Heartbeat {
    /// `heartbeat-url` (http or https).
    pub(crate) url: String,
    /// `heartbeat-interval` (default 5 minutes, Litestream's).
    pub(crate) interval: Duration,
}

/// Litestream's `DefaultHeartbeatInterval`.
pub(crate) const DEFAULT_HEARTBEAT_INTERVAL: Duration = Duration::from_secs(300);

/// One `dbs` entry.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct DbConfig {
    /// `path`: `~` expanded and made absolute against the current directory,
    /// as Litestream does.
    pub(crate) path: PathBuf,
    /// `monitor-interval` (default 1s; never zero).
    pub(crate) monitor_interval: Duration,
    /// `checkpoint-interval` (default 1m); zero disables time-based checkpoints.
    pub(crate) checkpoint_interval: Duration,
    /// `min-checkpoint-page-count` (default 1000; at least 1).
    pub(crate) min_checkpoint_page_count: u32,
    /// `max-checkpoint-page-count` (default 10000); zero disables the forced
    /// (RESTART) checkpoint, as in Litestream.
    pub(crate) max_checkpoint_page_count: u32,
    /// `busy-timeout` (Litestream 0.5; default 1s).
    pub(crate) busy_timeout: Duration,
    /// `max-sync-wal-bytes` (Litestream 0.5): at most about this many WAL
    /// bytes per LTX file; absent or zero: no limit.
    pub(crate) max_sync_wal_bytes: Option<u64>,
    /// At least one; names are distinct within the database.
    pub(crate) replicas: Vec<ReplicaConfig>,
    /// Litestream 0.5's directory replication: `path` is then the
    /// directory (`dir`), and every database found in it is replicated
    /// with these settings, each replica under its URL plus the database's
    /// path relative to the directory.
    pub(crate) dir: Option<DirSpec>,
}

/// `dir`, `pattern`, `recursive`, `watch` of a directory entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct DirSpec {
    /// A file-name pattern (`*.db`), as Go's `filepath.Match`.
    pub(crate) pattern: String,
    /// Subdirectories too.
    pub(crate) recursive: bool,
    /// Databases that appear later are replicated, removed ones stopped.
    pub(crate) watch: bool,
}

/// One `replicas` entry.
///
/// Besides Litestream's keys, a replica may set `layout: litestream-0.3` or
/// `layout: litestream-0.4` (this project's extension), which becomes
/// `?layout=` on [`url`](Self::url); without it the URL has no layout.
#[derive(Clone, PartialEq)]
pub(crate) struct ReplicaConfig {
    /// `name`, or the type as Litestream names it (`file`, `s3`, `gcs`, `abs`).
    pub(crate) name: String,
    /// A URL [`replica::open`] understands: `file:///abs/path`,
    /// `s3://bucket/path?...`, `gs://bucket/path`, `az://container/path?...`.
    /// May hold credentials: log [`redacted_url`](Self::redacted_url) instead.
    pub(crate) url: String,
    /// `sync-interval` (default 1s; never zero).
    pub(crate) sync_interval: Duration,
    /// `snapshot-interval`; absent or zero: no scheduled snapshots.
    pub(crate) snapshot_interval: Option<Duration>,
    /// `retention` (default 24h); zero keeps everything (no retention).
    pub(crate) retention: Duration,
    /// `retention-check-interval` (default 1h), capped at `retention` as
    /// Litestream does.
    pub(crate) retention_check_interval: Duration,
    /// `validation-interval`; absent or zero: no validation.
    pub(crate) validation_interval: Option<Duration>,
    /// In a Litestream 0.5 config: the LTX settings, and an empty location
    /// is written in the LTX layout.
    pub(crate) ltx: Option<LtxSettings>,
}

impl ReplicaConfig {
    /// [`url`](Self::url) with secret query values (`secret_access_key`,
    /// `access_key`) replaced by `***`, for logs and messages.
    pub(crate) fn redacted_url(&self) -> String {
        redact(&self.url)
    }
}

impl fmt::Debug for ReplicaConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ReplicaConfig")
            .field("name", &self.name)
            .field("url", &self.redacted_url())
            .field("sync_interval", &self.sync_interval)
            .field("snapshot_interval", &self.snapshot_interval)
            .field("retention", &self.retention)
            .field("retention_check_interval", &self.retention_check_interval)
            .field("validation_interval", &self.validation_interval)
            .finish()
    }
}

/// Why a config file could not be used. Each message names the file, the
/// key (such as `dbs[0].replicas[1].sync-interval`) and what to do.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ConfigError {
    /// The file could not be read.
    #[error("cannot read config file {}: {source}{}", .path.display(), read_hint(.source))]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// Not YAML, not shaped like a Litestream config, or an unknown key.
    #[error("{file}: {message}")]
    Yaml {
        /// The file (`config` when parsed from text).
        file: String,
        /// The YAML error, with the key path and line.
        message: String,
    },
    /// A key whose value is wrong, conflicting or unsupported.
    #[error("{file}: {key}: {message}")]
    Invalid {
        /// The file (`config` when parsed from text).
        file: String,
        /// Where, such as `dbs[0].replicas[1].sync-interval`.
        key: String,
        /// What is wrong and what to do.
        message: String,
    },
}

fn read_hint(e: &std::io::Error) -> &'static str {
    if e.kind() == std::io::ErrorKind::NotFound {
        " (give the Litestream config file's path with --config)"
    } else {
        ""
    }
}

/// Parses config `text` (labelled `config` in errors), expanding `$VAR` and
/// `${VAR}` with `env` first. `env` is also where `HOME` (for `~`) and
/// Litestream's credential variables are looked up.
pub(crate) fn parse(
    text: &str,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Config, ConfigError> {
    parse_with(text, "config", true, env)
}

/// Reads and parses the config file at `path`, expanding environment
/// variables from the process environment unless `expand_env` is false
/// (Litestream's `-no-expand-env`).
pub(crate) fn load(path: &Path, expand_env: bool) -> Result<Config, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_owned(),
        source,
    })?;
    let env = |name: &str| std::env::var(name).ok();
    parse_with(&text, &path.display().to_string(), expand_env, &env)
}

fn parse_with(
    text: &str,
    file: &str,
    expand: bool,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Config, ConfigError> {
    let expanded;
    let text = if expand {
        expanded = expand_env(text, env);
        expanded.as_str()
    } else {
        text
    };
    let raw: Option<RawConfig> = serde_yaml_ng::from_str(text).map_err(|e| {
        let mut message = e.to_string();
        if message.contains("unknown field") {
            if message.starts_with("unknown field") {
                message.insert_str(0, "top level: ");
            }
            message.push_str(" (remove the key or fix its spelling)");
        }
        ConfigError::Yaml {
            file: file.to_owned(),
            message,
        }
    })?;
    Resolver {
        file,
        env,
        ignored: Vec::new(),
    }
    .config(raw.unwrap_or_default())
}

/// Go's `os.Expand`: `${name}`, `$name` (letters, digits, `_`) and the
/// one-character shell specials (`$1`, `$$`, ...); bad syntax (`${`, `${}`)
/// is dropped, a `$` followed by anything else is kept.
fn expand_env(s: &str, env: &dyn Fn(&str) -> Option<String>) -> String {
    fn special(c: u8) -> bool {
        matches!(
            c,
            b'*' | b'#' | b'$' | b'@' | b'!' | b'?' | b'-' | b'0'..=b'9'
        )
    }
    fn name_char(c: u8) -> bool {
        c == b'_' || c.is_ascii_alphanumeric()
    }
    // (name, bytes after the `$` consumed); an empty name with a width is
    // bad syntax, with none a lone `$`.
    fn shell_name(s: &str) -> (&str, usize) {
        let b = s.as_bytes();
        if b[0] == b'{' {
            if b.len() > 2 && special(b[1]) && b[2] == b'}' {
                return (&s[1..2], 3);
            }
            return match s[1..].find('}') {
                Some(0) => ("", 2),
                Some(i) => (&s[1..=i], i + 2),
                None => ("", 1),
            };
        }
        if special(b[0]) {
            return (&s[..1], 1);
        }
        let n = b.iter().take_while(|&&c| name_char(c)).count();
        (&s[..n], n)
    }

    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        if after.is_empty() {
            out.push('$');
            rest = after;
            break;
        }
        let (name, width) = shell_name(after);
        if !name.is_empty() {
            out.push_str(&env(name).unwrap_or_default());
        } else if width == 0 {
            out.push('$');
        }
        rest = &after[width..];
    }
    out.push_str(rest);
    out
}

/// Parses a Go duration (`time.ParseDuration`: `300ms`, `1.5h`, `1h30m`,
/// units ns, us, µs, ms, s, m, h; `0` alone needs no unit). Negative
/// durations are refused.
fn parse_go_duration(s: &str) -> Result<Duration, String> {
    const FORM: &str = "write a Go duration such as 1s, 500ms, 10m, 24h or 1h30m";
    if s.starts_with('-') {
        return Err(format!("{s:?} is negative; {FORM}"));
    }
    let body = s.strip_prefix('+').unwrap_or(s);
    if body == "0" {
        return Ok(Duration::ZERO);
    }
    if body.is_empty() {
        return Err(format!("{s:?} is empty; {FORM}"));
    }
    // Checked against Go's grammar and normalised for humantime, which
    // also accepts units and spacing Go does not.
    let mut normal = String::new();
    let mut rest = body;
    while !rest.is_empty() {
        let digits = |t: &str| t.bytes().take_while(u8::is_ascii_digit).count();
        let n = digits(rest);
        let (int, after) = rest.split_at(n);
        let (frac, after) = match after.strip_prefix('.') {
            Some(a) => a.split_at(digits(a)),
            None => ("", after),
        };
        if int.is_empty() && frac.is_empty() {
            return Err(format!("{s:?} is not a duration; {FORM}"));
        }
        let unit_len = after
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(after.len());
        let (unit, after) = after.split_at(unit_len);
        let unit = match unit {
            "ns" | "us" | "ms" | "s" | "m" | "h" => unit,
            "µs" | "μs" => "us",
            "" => return Err(format!("{s:?} has no unit; {FORM}")),
            _ => return Err(format!("{s:?} has unknown unit {unit:?}; {FORM}")),
        };
        normal.push_str(if int.is_empty() { "0" } else { int });
        if !frac.is_empty() {
            normal.push('.');
            normal.push_str(frac);
        }
        normal.push_str(unit);
        rest = after;
    }
    humantime::parse_duration(&normal).map_err(|e| format!("{s:?} is not a duration ({e}); {FORM}"))
}

// ---- The file's shape: every leaf is read as text and checked afterwards,
// so that each error can name its key. ----

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, rename_all = "kebab-case", rename = "config")]
struct RawConfig {
    addr: Option<String>,
    dbs: Option<Vec<RawDb>>,
    levels: Option<Vec<v05::RawLevel>>,
    snapshot: Option<v05::RawSnapshot>,
    l0_retention: Option<String>,
    l0_retention_check_interval: Option<String>,
    retention: Option<v05::RawRetention>,
    socket: Option<serde_yaml_ng::Value>,
    validation: Option<serde_yaml_ng::Value>,
    verify_compaction: Option<serde_yaml_ng::Value>,
    heartbeat_url: Option<String>,
    heartbeat_interval: Option<String>,
    mcp_addr: Option<serde_yaml_ng::Value>,
    shutdown_sync_timeout: Option<serde_yaml_ng::Value>,
    shutdown_sync_interval: Option<serde_yaml_ng::Value>,
    exec: Option<String>,
    access_key_id: Option<String>,
    secret_access_key: Option<String>,
    logging: Option<RawLogging>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename = "logging")]
struct RawLogging {
    level: Option<String>,
    source: Option<serde_yaml_ng::Value>,
    #[serde(rename = "type")]
    kind: Option<String>,
    stderr: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case", rename = "db")]
struct RawDb {
    path: Option<String>,
    dir: Option<String>,
    pattern: Option<String>,
    recursive: Option<String>,
    watch: Option<String>,
    meta_path: Option<String>,
    monitor_interval: Option<String>,
    checkpoint_interval: Option<String>,
    min_checkpoint_page_count: Option<String>,
    max_checkpoint_page_count: Option<String>,
    replicas: Option<Vec<RawReplica>>,
    replica: Option<RawReplica>,
    snapshot: Option<v05::RawSnapshot>,
    meta_dir: Option<String>,
    busy_timeout: Option<String>,
    max_sync_wal_bytes: Option<String>,
    truncate_page_n: Option<serde_yaml_ng::Value>,
    restore_if_db_not_exists: Option<serde_yaml_ng::Value>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case", rename = "replica")]
struct RawReplica {
    #[serde(rename = "type")]
    kind: Option<String>,
    name: Option<String>,
    path: Option<String>,
    url: Option<String>,
    retention: Option<String>,
    retention_check_interval: Option<String>,
    sync_interval: Option<String>,
    snapshot_interval: Option<String>,
    validation_interval: Option<String>,
    access_key_id: Option<String>,
    secret_access_key: Option<String>,
    region: Option<String>,
    bucket: Option<String>,
    endpoint: Option<String>,
    force_path_style: Option<String>,
    skip_verify: Option<String>,
    account_name: Option<String>,
    account_key: Option<String>,
    host: Option<String>,
    user: Option<String>,
    password: Option<String>,
    key_path: Option<String>,
    age: Option<RawAge>,
    layout: Option<String>,
    max_sync_ltx_files: Option<serde_yaml_ng::Value>,
    auto_recover: Option<serde_yaml_ng::Value>,
    sign_payload: Option<serde_yaml_ng::Value>,
    require_content_md5: Option<serde_yaml_ng::Value>,
    storage_class: Option<serde_yaml_ng::Value>,
    part_size: Option<serde_yaml_ng::Value>,
    concurrency: Option<serde_yaml_ng::Value>,
    sse_customer_algorithm: Option<serde_yaml_ng::Value>,
    sse_customer_key: Option<serde_yaml_ng::Value>,
    sse_customer_key_path: Option<serde_yaml_ng::Value>,
    sse_kms_key_id: Option<serde_yaml_ng::Value>,
    sas_token: Option<serde_yaml_ng::Value>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename = "age")]
struct RawAge {
    identities: Option<Vec<String>>,
    recipients: Option<Vec<String>>,
}

/// Go's zero value: an empty string is as good as absent.
/// A log level as Litestream reads one (any case, `warning` as `warn`).
pub(crate) fn log_level(text: &str) -> Option<&'static str> {
    match text.trim().to_ascii_lowercase().as_str() {
        "trace" => Some("trace"),
        "debug" => Some("debug"),
        "info" => Some("info"),
        "warn" | "warning" => Some("warn"),
        "error" => Some("error"),
        _ => None,
    }
}

/// An `addr` as Go's `net.Listen` reads one: `HOST:PORT`, `:PORT` (every
/// interface: the host is empty), `[V6]:PORT`; a port is required, as in
/// Litestream.
pub(crate) fn parse_addr(addr: &str) -> Result<(String, u16), String> {
    let (host, port) = addr
        .rsplit_once(':')
        .ok_or_else(|| format!("{addr:?} has no port; write HOST:PORT or :PORT"))?;
    let port = port.parse::<u16>().map_err(|_| {
        format!("{addr:?}: {port:?} is not a port number; write HOST:PORT or :PORT")
    })?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    Ok((host.to_owned(), port))
}

fn set(v: &Option<String>) -> Option<&str> {
    v.as_deref().filter(|s| !s.is_empty())
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    File,
    S3,
    Gcs,
    Abs,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::File => "file",
            Kind::S3 => "s3",
            Kind::Gcs => "gcs",
            Kind::Abs => "abs",
        }
    }

    /// The type-specific keys this kind uses.
    fn uses(self, key: &str) -> bool {
        match self {
            Kind::File => false,
            Kind::S3 => matches!(
                key,
                "access-key-id"
                    | "secret-access-key"
                    | "region"
                    | "bucket"
                    | "endpoint"
                    | "force-path-style"
                    | "skip-verify"
            ),
            Kind::Gcs => key == "bucket",
            Kind::Abs => matches!(key, "account-name" | "account-key" | "bucket" | "endpoint"),
        }
    }
}

/// A URL's parts as Litestream reads them.
struct UrlParts {
    /// Host, with `:port` if the URL has one.
    host: String,
    user: String,
    /// The path, cleaned, without a leading `/` (`` for none).
    path: String,
}

struct Resolver<'a> {
    file: &'a str,
    env: &'a dyn Fn(&str) -> Option<String>,
    ignored: Vec<String>,
}

mod urls;
mod v05;
use urls::*;
pub(crate) use v05::LtxSettings;

impl Resolver<'_> {
    fn err(&self, key: impl Into<String>, message: impl Into<String>) -> ConfigError {
        ConfigError::Invalid {
            file: self.file.to_owned(),
            key: key.into(),
            message: message.into(),
        }
    }

    fn config(mut self, raw: RawConfig) -> Result<Config, ConfigError> {
        let exec = set(&raw.exec).map(str::to_owned);
        let addr = set(&raw.addr)
            .map(|a| parse_addr(a).map(|_| a.to_owned()))
            .transpose()
            .map_err(|e| self.err("addr", e))?;
        let logging = self.logging(raw.logging.as_ref())?;
        let heartbeat = match set(&raw.heartbeat_url) {
            None if raw.heartbeat_interval.is_some() => {
                // A templated `heartbeat-url: ${URL}` left empty: as Litestream, no pings.
                self.ignored
                    .push("heartbeat-interval (no heartbeat-url to ping)".into());
                None
            }
            None => None,
            Some(url) => {
                let parsed = url::Url::parse(url).ok();
                if !parsed.is_some_and(|u| matches!(u.scheme(), "http" | "https")) {
                    return Err(self.err(
                        "heartbeat-url",
                        format!("{url:?} is not an http:// or https:// URL"),
                    ));
                }
                let interval = self.duration(
                    &raw.heartbeat_interval,
                    "heartbeat-interval",
                    DEFAULT_HEARTBEAT_INTERVAL,
                    true,
                )?;
                if interval < Duration::from_secs(1) {
                    return Err(self.err(
                        "heartbeat-interval",
                        "must be at least 1s (Litestream asks for at least 1m)",
                    ));
                }
                Some(Heartbeat {
                    url: url.to_owned(),
                    interval,
                })
            }
        };
        for (name, value) in [
            ("socket", &raw.socket),
            ("validation", &raw.validation),
            ("verify-compaction", &raw.verify_compaction),
            ("mcp-addr", &raw.mcp_addr),
            ("shutdown-sync-timeout", &raw.shutdown_sync_timeout),
            ("shutdown-sync-interval", &raw.shutdown_sync_interval),
        ] {
            if value.is_some() {
                self.ignored
                    .push(format!("{name} (a Litestream 0.5 key not acted on yet)"));
            }
        }
        let dbs = raw.dbs.unwrap_or_default();
        if dbs.is_empty() {
            return Err(self.err(
                "dbs",
                "no databases: list at least one under `dbs`, each with a `path` and `replicas`",
            ));
        }
        let globals = (raw.access_key_id, raw.secret_access_key);
        let top = v05::TopLevel {
            levels: raw.levels,
            snapshot: raw.snapshot,
            l0_retention: raw.l0_retention,
            l0_retention_check_interval: raw.l0_retention_check_interval,
            retention: raw.retention,
        };
        let v05 = top.used()
            || dbs
                .iter()
                .any(|d| d.replica.is_some() || d.snapshot.is_some() || d.dir.is_some());
        let mut out: Vec<DbConfig> = Vec::with_capacity(dbs.len());
        for (i, db) in dbs.into_iter().enumerate() {
            let key = format!("dbs[{i}]");
            let ltx = if v05 {
                Some(self.ltx_settings(&top, db.snapshot.as_ref(), &key)?)
            } else {
                None
            };
            let db = self.db(&key, db, &globals, ltx)?;
            if let Some(j) = out.iter().position(|d| d.path == db.path) {
                return Err(self.err(
                    format!("dbs[{i}].path"),
                    format!(
                        "{} is also dbs[{j}].path; list each database once, with all its replicas",
                        db.path.display()
                    ),
                ));
            }
            out.push(db);
        }
        Ok(Config {
            dbs: out,
            ignored: self.ignored,
            exec,
            addr,
            logging,
            heartbeat,
        })
    }

    fn db(
        &mut self,
        key: &str,
        mut raw: RawDb,
        globals: &(Option<String>, Option<String>),
        ltx: Option<LtxSettings>,
    ) -> Result<DbConfig, ConfigError> {
        let dir = self.dir_spec(key, &mut raw)?;
        let path = set(&raw.path).ok_or_else(|| {
            self.err(
                format!("{key}.path"),
                "missing: give the database file's path (or `dir` and `pattern`)",
            )
        })?;
        let path = self.absolute(path, &format!("{key}.path"))?;
        if set(&raw.meta_dir).is_some() {
            return Err(self.err(
                format!("{key}.meta-dir"),
                "`meta-dir` is not supported: remove it \
                 (`replica replicate` chooses where it keeps its own state)",
            ));
        }
        for (name, value) in [
            ("truncate-page-n", &raw.truncate_page_n),
            ("restore-if-db-not-exists", &raw.restore_if_db_not_exists),
        ] {
            if value.is_some() {
                self.ignored.push(format!(
                    "{key}.{name} (a Litestream 0.5 key not acted on yet)"
                ));
            }
        }
        let busy_timeout = self.duration(
            &raw.busy_timeout,
            &format!("{key}.busy-timeout"),
            Duration::from_secs(1),
            true,
        )?;
        let max_sync_wal_bytes = match set(&raw.max_sync_wal_bytes) {
            None => None,
            Some(text) => {
                let n: u64 = text.trim().parse().map_err(|_| {
                    self.err(
                        format!("{key}.max-sync-wal-bytes"),
                        format!("{text:?} is not a number of bytes"),
                    )
                })?;
                (n > 0).then_some(n)
            }
        };
        if set(&raw.meta_path).is_some() {
            return Err(self.err(
                format!("{key}.meta-path"),
                "`meta-path` is not supported: remove it \
                 (`replica replicate` chooses where it keeps its own state)",
            ));
        }
        let monitor_interval = self.duration(
            &raw.monitor_interval,
            &format!("{key}.monitor-interval"),
            DEFAULT_MONITOR_INTERVAL,
            true,
        )?;
        let checkpoint_interval = self.duration(
            &raw.checkpoint_interval,
            &format!("{key}.checkpoint-interval"),
            DEFAULT_CHECKPOINT_INTERVAL,
            false,
        )?;
        let min_checkpoint_page_count = self.count(
            &raw.min_checkpoint_page_count,
            &format!("{key}.min-checkpoint-page-count"),
            DEFAULT_MIN_CHECKPOINT_PAGE_COUNT,
            1,
        )?;
        let max_checkpoint_page_count = self.count(
            &raw.max_checkpoint_page_count,
            &format!("{key}.max-checkpoint-page-count"),
            DEFAULT_MAX_CHECKPOINT_PAGE_COUNT,
            0,
        )?;
        let (raws, list_key) =
            match (raw.replica, raw.replicas) {
                (Some(_), Some(_)) => return Err(self.err(
                    format!("{key}.replica"),
                    "both `replica` and `replicas` are set: give one (`replica` for one replica, \
                     as Litestream 0.5 does)",
                )),
                (Some(one), None) => (vec![one], "replica"),
                (None, list) => (list.unwrap_or_default(), "replicas"),
            };
        if raws.is_empty() {
            return Err(self.err(
                format!("{key}.replicas"),
                "no replicas: list at least one, e.g. `- url: s3://bucket/path` or `- path: /backups/db`",
            ));
        }
        let mut replicas: Vec<ReplicaConfig> = Vec::with_capacity(raws.len());
        for (i, r) in raws.into_iter().enumerate() {
            let rkey = if list_key == "replica" {
                format!("{key}.replica")
            } else {
                format!("{key}.replicas[{i}]")
            };
            let mut replica = self.replica(&rkey, r, globals)?;
            replica.ltx = ltx.clone();
            if let Some(j) = replicas.iter().position(|r| r.name == replica.name) {
                return Err(self.err(
                    format!("{rkey}.name"),
                    format!(
                        "duplicate replica name {:?} (also {key}.replicas[{j}]); \
                         give each replica of a database its own `name`",
                        replica.name
                    ),
                ));
            }
            replicas.push(replica);
        }
        Ok(DbConfig {
            path,
            monitor_interval,
            checkpoint_interval,
            min_checkpoint_page_count,
            max_checkpoint_page_count,
            busy_timeout,
            max_sync_wal_bytes,
            replicas,
            dir,
        })
    }

    /// A directory entry's `dir`, `pattern`, `recursive` and `watch`, as
    /// Litestream 0.5 checks them; `dir` becomes `raw.path`.
    fn dir_spec(&self, key: &str, raw: &mut RawDb) -> Result<Option<DirSpec>, ConfigError> {
        let Some(dir) = set(&raw.dir).map(str::to_owned) else {
            for (name, value) in [
                ("pattern", &raw.pattern),
                ("recursive", &raw.recursive),
                ("watch", &raw.watch),
            ] {
                if value.is_some() {
                    return Err(self.err(
                        format!("{key}.{name}"),
                        "only a directory entry takes it: add `dir`, or remove the key",
                    ));
                }
            }
            return Ok(None);
        };
        if set(&raw.path).is_some() {
            return Err(self.err(
                format!("{key}.dir"),
                "give `path` (one database) or `dir` (every database in a directory), not both",
            ));
        }
        let pattern = set(&raw.pattern).ok_or_else(|| {
            self.err(
                format!("{key}.pattern"),
                "missing: a directory entry needs a file-name pattern such as \"*.db\"",
            )
        })?;
        glob::Pattern::new(pattern).map_err(|e| {
            self.err(
                format!("{key}.pattern"),
                format!("{pattern:?} is not a file-name pattern: {e}"),
            )
        })?;
        let flag = |v: &Option<String>, name: &str| {
            set(v)
                .map(|t| self.boolean(t, &format!("{key}.{name}")))
                .transpose()
                .map(|b| b.unwrap_or(false))
        };
        let spec = DirSpec {
            pattern: pattern.to_owned(),
            recursive: flag(&raw.recursive, "recursive")?,
            watch: flag(&raw.watch, "watch")?,
        };
        raw.path = Some(dir);
        Ok(Some(spec))
    }

    fn replica(
        &mut self,
        key: &str,
        raw: RawReplica,
        globals: &(Option<String>, Option<String>),
    ) -> Result<ReplicaConfig, ConfigError> {
        let k = |name: &str| format!("{key}.{name}");
        let url = set(&raw.url);
        let path = set(&raw.path);
        if let Some(p) = path {
            if scheme_of(p).is_some_and(|_| p.contains("://")) {
                return Err(self.err(
                    k("path"),
                    format!("{p:?} is a URL: put it in `url` instead"),
                ));
            }
        }
        let scheme = url.and_then(scheme_of);
        let from_scheme = scheme.map(|s| self.kind(s, &k("url"))).transpose()?;
        let from_type = set(&raw.kind)
            .map(|t| self.kind(t, &k("type")))
            .transpose()?;
        let kind = match (from_scheme, from_type) {
            (Some(s), Some(t)) if s != t => {
                return Err(self.err(
                    k("type"),
                    format!(
                        "type {} conflicts with the url's {}:// scheme; remove `type` or make them agree",
                        t.name(),
                        scheme.unwrap_or_default()
                    ),
                ))
            }
            (Some(s), _) => s,
            (None, Some(t)) => t,
            (None, None) => Kind::File,
        };
        if url.is_some() && path.is_some() {
            return Err(self.err(
                key,
                "both `url` and `path` are set: give one (a URL carries its own path)",
            ));
        }
        if url.is_some() && set(&raw.bucket).is_some() && kind != Kind::File {
            return Err(self.err(
                key,
                "both `url` and `bucket` are set: give one (a URL carries its own bucket)",
            ));
        }
        if let Some(age) = &raw.age {
            let used = |v: &Option<Vec<String>>| v.as_ref().is_some_and(|v| !v.is_empty());
            if used(&age.identities) || used(&age.recipients) {
                return Err(self.err(
                    k("age"),
                    "age encryption is not supported: remove `age` (replicas are written unencrypted)",
                ));
            }
        }
        let specific = [
            ("access-key-id", &raw.access_key_id),
            ("secret-access-key", &raw.secret_access_key),
            ("region", &raw.region),
            ("bucket", &raw.bucket),
            ("endpoint", &raw.endpoint),
            ("force-path-style", &raw.force_path_style),
            ("skip-verify", &raw.skip_verify),
            ("account-name", &raw.account_name),
            ("account-key", &raw.account_key),
            ("host", &raw.host),
            ("user", &raw.user),
            ("password", &raw.password),
            ("key-path", &raw.key_path),
        ];
        for (name, value) in [
            ("max-sync-ltx-files", &raw.max_sync_ltx_files),
            ("auto-recover", &raw.auto_recover),
            ("sign-payload", &raw.sign_payload),
            ("require-content-md5", &raw.require_content_md5),
            ("storage-class", &raw.storage_class),
            ("part-size", &raw.part_size),
            ("concurrency", &raw.concurrency),
            ("sse-customer-algorithm", &raw.sse_customer_algorithm),
            ("sse-customer-key", &raw.sse_customer_key),
            ("sse-customer-key-path", &raw.sse_customer_key_path),
            ("sse-kms-key-id", &raw.sse_kms_key_id),
            ("sas-token", &raw.sas_token),
        ] {
            if value.is_some() {
                self.ignored.push(format!(
                    "{} (a Litestream 0.5 key not acted on yet)",
                    k(name)
                ));
            }
        }
        for (name, value) in specific {
            if set(value).is_some() && !kind.uses(name) {
                self.ignored.push(format!(
                    "{} (not used by {} replicas)",
                    k(name),
                    kind.name()
                ));
            }
        }

        let mut out = match kind {
            Kind::File => self.file_url(key, url, path)?,
            Kind::S3 => self.s3_url(key, &raw, url, globals)?,
            Kind::Gcs => {
                let (bucket, prefix) = match url {
                    Some(u) => {
                        let parts = self.url_parts(u, &k("url"))?;
                        (Some(parts.host), parts.path)
                    }
                    None => (
                        set(&raw.bucket).map(str::to_owned),
                        trim_key(path.unwrap_or("")),
                    ),
                };
                let bucket = bucket.filter(|b| !b.is_empty()).ok_or_else(|| {
                    self.err(
                        k("bucket"),
                        "missing: gcs replicas need `bucket` (or a url such as gcs://bucket/path)",
                    )
                })?;
                self.object_url("gs", &bucket, &prefix, key)?
            }
            Kind::Abs => self.abs_url(key, &raw, url, path)?,
        };

        if let Some(layout) = set(&raw.layout) {
            let parsed = layout
                .parse::<replica::AnyLayout>()
                .map_err(|e| self.err(k("layout"), e.to_string()))?;
            out.query_pairs_mut()
                .append_pair("layout", &parsed.to_string());
        }

        let retention = self.duration(&raw.retention, &k("retention"), DEFAULT_RETENTION, false)?;
        let mut retention_check_interval = self.duration(
            &raw.retention_check_interval,
            &k("retention-check-interval"),
            DEFAULT_RETENTION_CHECK_INTERVAL,
            !retention.is_zero(),
        )?;
        if !retention.is_zero() {
            retention_check_interval = retention_check_interval.min(retention);
        }
        let optional = |d: Duration| (!d.is_zero()).then_some(d);
        Ok(ReplicaConfig {
            name: set(&raw.name).unwrap_or(kind.name()).to_owned(),
            url: out.into(),
            sync_interval: self.duration(
                &raw.sync_interval,
                &k("sync-interval"),
                DEFAULT_SYNC_INTERVAL,
                true,
            )?,
            snapshot_interval: optional(self.duration(
                &raw.snapshot_interval,
                &k("snapshot-interval"),
                Duration::ZERO,
                false,
            )?),
            retention,
            retention_check_interval,
            validation_interval: optional(self.duration(
                &raw.validation_interval,
                &k("validation-interval"),
                Duration::ZERO,
                false,
            )?),
            ltx: None,
        })
    }

    fn kind(&self, name: &str, key: &str) -> Result<Kind, ConfigError> {
        match name {
            "file" => Ok(Kind::File),
            "s3" => Ok(Kind::S3),
            "gcs" | "gs" => Ok(Kind::Gcs),
            "abs" => Ok(Kind::Abs),
            "sftp" => Err(self.err(
                key,
                "sftp replicas are not supported: use a file, s3, gcs or abs replica",
            )),
            other => Err(self.err(
                key,
                format!(
                    "unknown replica type {other:?}: use file, s3, gcs or abs \
                     (Azure is abs://ACCOUNT@CONTAINER/path)"
                ),
            )),
        }
    }

    fn duration(
        &self,
        value: &Option<String>,
        key: &str,
        default: Duration,
        positive: bool,
    ) -> Result<Duration, ConfigError> {
        let Some(text) = value else {
            return Ok(default);
        };
        let d = parse_go_duration(text.trim()).map_err(|e| self.err(key, e))?;
        if positive && d.is_zero() {
            return Err(self.err(
                key,
                format!("{text:?} must be greater than zero; remove the key for the default"),
            ));
        }
        Ok(d)
    }

    fn count(
        &self,
        value: &Option<String>,
        key: &str,
        default: u32,
        min: u32,
    ) -> Result<u32, ConfigError> {
        let Some(text) = value else {
            return Ok(default);
        };
        match text.trim().parse::<u32>() {
            Ok(n) if n >= min => Ok(n),
            _ => Err(self.err(
                key,
                format!(
                    "{text:?} is not a whole number of pages from {min} to {}",
                    u32::MAX
                ),
            )),
        }
    }

    /// The `logging` section: Litestream's levels (any case, `warning` as
    /// `warn`) and types (`pretty` is text).
    fn logging(&mut self, raw: Option<&RawLogging>) -> Result<Logging, ConfigError> {
        let Some(raw) = raw else {
            return Ok(Logging::default());
        };
        let level = set(&raw.level)
            .map(|l| {
                log_level(l).ok_or_else(|| {
                    self.err(
                        "logging.level",
                        format!("{l:?} is not a level; use debug, info, warn or error"),
                    )
                })
            })
            .transpose()?;
        if raw.source.is_some() {
            self.ignored
                .push("logging.source (source locations are not logged)".into());
        }
        let json = set(&raw.kind)
            .map(|t| match t.trim() {
                "json" => Ok(true),
                "text" | "pretty" => Ok(false),
                _ => Err(self.err(
                    "logging.type",
                    format!("{t:?} is not a log type; use text or json"),
                )),
            })
            .transpose()?;
        let stderr = set(&raw.stderr)
            .map(|b| self.boolean(b, "logging.stderr"))
            .transpose()?;
        Ok(Logging {
            level,
            json,
            stderr,
        })
    }

    /// A YAML 1.1 boolean, as Litestream's YAML library reads one.
    fn boolean(&self, text: &str, key: &str) -> Result<bool, ConfigError> {
        match text.trim().to_ascii_lowercase().as_str() {
            "true" | "yes" | "y" | "on" => Ok(true),
            "false" | "no" | "n" | "off" => Ok(false),
            _ => Err(self.err(
                key,
                format!("{text:?} is not a boolean; write true or false"),
            )),
        }
    }
}

#[cfg(test)]
mod tests;
