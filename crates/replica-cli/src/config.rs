//! Litestream 0.3 config files (`litestream.yml`), so `replica replicate
//! --config` runs an existing Litestream user's file unchanged.
//!
//! Keys, defaults and meanings follow Litestream 0.3.13. The text is first
//! expanded as Go's `os.ExpandEnv` does (`$VAR`, `${VAR}`; unset is empty)
//! unless that is turned off (Litestream's `-no-expand-env`). Supported: `dbs` (`path`, `monitor-interval`,
//! `checkpoint-interval`, `min-/max-checkpoint-page-count`, `replicas`),
//! top-level `access-key-id`/`secret-access-key` (defaults for S3 replicas),
//! and replicas of type `file`, `s3`, `gcs` and `abs`, given by `type`, `url`
//! or `path`, each turned into a URL that [`replica::open`] understands.
//!
//! Ignored, and listed in [`Config::ignored`] for the caller to warn about:
//! `addr`, `logging`, and replica keys that do not apply to the replica's
//! type (Litestream ignores those too). Rejected with an error naming the
//! key: `exec`, `meta-path`, `age`, `type: sftp`, and any unknown key.

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
}

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
    /// At least one; names are distinct within the database.
    pub(crate) replicas: Vec<ReplicaConfig>,
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
    exec: Option<String>,
    access_key_id: Option<String>,
    secret_access_key: Option<String>,
    logging: Option<RawLogging>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename = "logging")]
struct RawLogging {
    #[allow(dead_code)]
    level: Option<String>,
    #[serde(rename = "type")]
    #[allow(dead_code)]
    kind: Option<String>,
    #[allow(dead_code)]
    stderr: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case", rename = "db")]
struct RawDb {
    path: Option<String>,
    meta_path: Option<String>,
    monitor_interval: Option<String>,
    checkpoint_interval: Option<String>,
    min_checkpoint_page_count: Option<String>,
    max_checkpoint_page_count: Option<String>,
    replicas: Option<Vec<RawReplica>>,
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
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename = "age")]
struct RawAge {
    identities: Option<Vec<String>>,
    recipients: Option<Vec<String>>,
}

/// Go's zero value: an empty string is as good as absent.
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

impl Resolver<'_> {
    fn err(&self, key: impl Into<String>, message: impl Into<String>) -> ConfigError {
        ConfigError::Invalid {
            file: self.file.to_owned(),
            key: key.into(),
            message: message.into(),
        }
    }

    fn config(mut self, raw: RawConfig) -> Result<Config, ConfigError> {
        if set(&raw.exec).is_some() {
            return Err(self.err(
                "exec",
                "`exec` is not supported: remove it and run the command yourself \
                 once `replica replicate` has started (or run both under a supervisor)",
            ));
        }
        if set(&raw.addr).is_some() {
            self.ignored.push("addr (metrics are not served)".into());
        }
        if raw.logging.is_some() {
            self.ignored
                .push("logging (its level, type and stderr settings are not applied)".into());
        }
        let dbs = raw.dbs.unwrap_or_default();
        if dbs.is_empty() {
            return Err(self.err(
                "dbs",
                "no databases: list at least one under `dbs`, each with a `path` and `replicas`",
            ));
        }
        let globals = (raw.access_key_id, raw.secret_access_key);
        let mut out: Vec<DbConfig> = Vec::with_capacity(dbs.len());
        for (i, db) in dbs.into_iter().enumerate() {
            let db = self.db(&format!("dbs[{i}]"), db, &globals)?;
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
        })
    }

    fn db(
        &mut self,
        key: &str,
        raw: RawDb,
        globals: &(Option<String>, Option<String>),
    ) -> Result<DbConfig, ConfigError> {
        let path = set(&raw.path).ok_or_else(|| {
            self.err(
                format!("{key}.path"),
                "missing: give the database file's path",
            )
        })?;
        let path = self.absolute(path, &format!("{key}.path"))?;
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
        let raws = raw.replicas.unwrap_or_default();
        if raws.is_empty() {
            return Err(self.err(
                format!("{key}.replicas"),
                "no replicas: list at least one, e.g. `- url: s3://bucket/path` or `- path: /backups/db`",
            ));
        }
        let mut replicas: Vec<ReplicaConfig> = Vec::with_capacity(raws.len());
        for (i, r) in raws.into_iter().enumerate() {
            let rkey = format!("{key}.replicas[{i}]");
            let replica = self.replica(&rkey, r, globals)?;
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
            replicas,
        })
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
                .parse::<replica::Layout>()
                .map_err(|e| self.err(k("layout"), e.to_string()))?;
            out.query_pairs_mut().append_pair("layout", parsed.name());
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

    fn file_url(
        &self,
        key: &str,
        url: Option<&str>,
        path: Option<&str>,
    ) -> Result<Url, ConfigError> {
        let (path, pkey) = match (url, path) {
            (Some(u), _) if scheme_of(u).is_some() => {
                let ukey = format!("{key}.url");
                let parsed = Url::parse(u)
                    .map_err(|e| self.err(&ukey, format!("{u:?} is not a URL: {e}")))?;
                if parsed.query().is_some() || parsed.fragment().is_some() {
                    return Err(self.err(&ukey, no_query_message(u)));
                }
                // As Litestream: a host is read as the path's first component.
                let host = parsed.host_str().unwrap_or("");
                let path = percent_decode(parsed.path())
                    .map_err(|e| self.err(&ukey, format!("{u:?}: {e}")))?;
                (if host.is_empty() { path } else { format!("/{host}{path}") }, ukey)
            }
            (Some(u), _) => (u.to_owned(), format!("{key}.url")),
            (None, Some(p)) => (p.to_owned(), format!("{key}.path")),
            (None, None) => {
                return Err(self.err(
                    key,
                    "no destination: give `path` (a directory) or `url` (file:///dir, s3://bucket/path, ...)",
                ))
            }
        };
        let abs = self.absolute(&path, &pkey)?;
        Url::from_file_path(&abs)
            .map_err(|()| self.err(&pkey, format!("{} cannot be a file URL", abs.display())))
    }

    fn s3_url(
        &self,
        key: &str,
        raw: &RawReplica,
        url: Option<&str>,
        globals: &(Option<String>, Option<String>),
    ) -> Result<Url, ConfigError> {
        let k = |name: &str| format!("{key}.{name}");
        let mut bucket = set(&raw.bucket).map(str::to_owned);
        let mut prefix = trim_key(set(&raw.path).unwrap_or(""));
        let mut region = set(&raw.region).map(str::to_owned);
        let mut endpoint = set(&raw.endpoint).map(str::to_owned);
        // Litestream: path style whenever an endpoint is set, unless told.
        let mut path_style = match set(&raw.force_path_style) {
            Some(v) => self.boolean(v, &k("force-path-style"))?,
            None => endpoint.is_some(),
        };
        let skip_verify = match set(&raw.skip_verify) {
            Some(v) => self.boolean(v, &k("skip-verify"))?,
            None => false,
        };
        if let Some(u) = url {
            let parts = self.url_parts(u, &k("url"))?;
            let host = parse_s3_host(&parts.host);
            prefix = parts.path;
            bucket = Some(host.bucket);
            region = region.or(host.region);
            endpoint = endpoint.or(host.endpoint);
            path_style = path_style || host.path_style;
        }
        let bucket = bucket.filter(|b| !b.is_empty()).ok_or_else(|| {
            self.err(
                k("bucket"),
                "missing: s3 replicas need `bucket` (or a url such as s3://bucket/path)",
            )
        })?;
        // The AWS SDK Litestream uses assumes https for an endpoint without a scheme.
        let endpoint = endpoint.map(|e| {
            if e.contains("://") {
                e
            } else {
                format!("https://{e}")
            }
        });
        if region.is_none() && endpoint.is_some() {
            region = Some(S3_DEFAULT_REGION.to_owned());
        }
        let https = endpoint
            .as_deref()
            .is_none_or(|e| e.to_ascii_lowercase().starts_with("https://"));
        // The SDK also falls back to path style for names a host cannot carry.
        let virtual_hosted = !path_style && host_compatible_bucket(&bucket, https);
        let endpoint = match endpoint {
            Some(e) if virtual_hosted => {
                // object_store takes a virtual-hosted endpoint with the bucket in it.
                let mut parsed = Url::parse(&e)
                    .map_err(|err| self.err(k("endpoint"), format!("{e:?} is not a URL: {err}")))?;
                let host = parsed.host_str().unwrap_or("").to_owned();
                parsed
                    .set_host(Some(&format!("{bucket}.{host}")))
                    .map_err(|err| {
                        self.err(
                            k("endpoint"),
                            format!("cannot put bucket {bucket:?} in {e:?}: {err}"),
                        )
                    })?;
                Some(parsed.as_str().trim_end_matches('/').to_owned())
            }
            other => other,
        };
        let allow_http = !https;
        let access_key_id = set(&raw.access_key_id)
            .or(set(&globals.0))
            .map(str::to_owned)
            .or_else(|| self.litestream_env("AWS_ACCESS_KEY_ID", "LITESTREAM_ACCESS_KEY_ID"));
        let secret_access_key = set(&raw.secret_access_key)
            .or(set(&globals.1))
            .map(str::to_owned)
            .or_else(|| {
                self.litestream_env("AWS_SECRET_ACCESS_KEY", "LITESTREAM_SECRET_ACCESS_KEY")
            });

        let mut out = self.object_url("s3", &bucket, &prefix, key)?;
        {
            let mut q = out.query_pairs_mut();
            if let Some(region) = &region {
                q.append_pair("region", region);
            }
            if let Some(endpoint) = &endpoint {
                q.append_pair("endpoint", endpoint);
            }
            q.append_pair(
                "virtual_hosted_style_request",
                if virtual_hosted { "true" } else { "false" },
            );
            if allow_http {
                q.append_pair("allow_http", "true");
            }
            if skip_verify {
                q.append_pair("allow_invalid_certificates", "true");
            }
            if let Some(v) = &access_key_id {
                q.append_pair("access_key_id", v);
            }
            if let Some(v) = &secret_access_key {
                q.append_pair("secret_access_key", v);
            }
        }
        Ok(out)
    }

    fn abs_url(
        &self,
        key: &str,
        raw: &RawReplica,
        url: Option<&str>,
        path: Option<&str>,
    ) -> Result<Url, ConfigError> {
        let k = |name: &str| format!("{key}.{name}");
        let mut account = set(&raw.account_name).map(str::to_owned);
        let mut bucket = set(&raw.bucket).map(str::to_owned);
        let mut prefix = trim_key(path.unwrap_or(""));
        if let Some(u) = url {
            let parts = self.url_parts(u, &k("url"))?;
            if account.is_none() && !parts.user.is_empty() {
                account = Some(parts.user);
            }
            bucket = Some(parts.host);
            prefix = parts.path;
        }
        let bucket = bucket.filter(|b| !b.is_empty()).ok_or_else(|| {
            self.err(
                k("bucket"),
                "missing: abs replicas need `bucket` (the container), \
                 or a url such as abs://ACCOUNT@CONTAINER/path",
            )
        })?;
        let account = account.ok_or_else(|| {
            self.err(
                k("account-name"),
                "missing: abs replicas need `account-name` (or a url such as abs://ACCOUNT@CONTAINER/path)",
            )
        })?;
        let account_key = set(&raw.account_key)
            .map(str::to_owned)
            .or_else(|| (self.env)("LITESTREAM_AZURE_ACCOUNT_KEY").filter(|v| !v.is_empty()));
        let endpoint = set(&raw.endpoint);
        let mut out = self.object_url("az", &bucket, &prefix, key)?;
        {
            let mut q = out.query_pairs_mut();
            q.append_pair("account_name", &account);
            if let Some(v) = &account_key {
                q.append_pair("access_key", v);
            }
            if let Some(e) = endpoint {
                q.append_pair("endpoint", e);
                if e.to_ascii_lowercase().starts_with("http://") {
                    q.append_pair("allow_http", "true");
                }
            }
        }
        Ok(out)
    }

    /// `scheme://bucket/prefix`, checking that the bucket survives as a host.
    fn object_url(
        &self,
        scheme: &str,
        bucket: &str,
        prefix: &str,
        key: &str,
    ) -> Result<Url, ConfigError> {
        let bad = || {
            self.err(
                format!("{key}.bucket"),
                format!("{bucket:?} is not a valid bucket name"),
            )
        };
        let mut url = Url::parse(&format!("{scheme}://{bucket}")).map_err(|_| bad())?;
        if url.host_str() != Some(bucket) || !url.path().is_empty() {
            return Err(bad());
        }
        if !prefix.is_empty() {
            url.set_path(&format!("/{prefix}"));
        }
        Ok(url)
    }

    /// Host (with port), user and cleaned path of an object store URL.
    fn url_parts(&self, u: &str, key: &str) -> Result<UrlParts, ConfigError> {
        let parsed =
            Url::parse(u).map_err(|e| self.err(key, format!("{u:?} is not a URL: {e}")))?;
        if parsed.query().is_some() || parsed.fragment().is_some() {
            return Err(self.err(key, no_query_message(u)));
        }
        let mut host = parsed.host_str().unwrap_or("").to_owned();
        if let Some(port) = parsed.port() {
            host = format!("{host}:{port}");
        }
        let user =
            percent_decode(parsed.username()).map_err(|e| self.err(key, format!("{u:?}: {e}")))?;
        let path =
            percent_decode(parsed.path()).map_err(|e| self.err(key, format!("{u:?}: {e}")))?;
        Ok(UrlParts {
            host,
            user,
            path: trim_key(&path),
        })
    }

    /// `aws` from the environment is used as is by `replica::open`; when it
    /// is unset, Litestream copies `litestream` into it.
    fn litestream_env(&self, aws: &str, litestream: &str) -> Option<String> {
        let set = |name: &str| (self.env)(name).filter(|v| !v.is_empty());
        if set(aws).is_some() {
            return None;
        }
        set(litestream)
    }

    /// `~` expanded from `HOME`, then absolute against the current directory
    /// and cleaned (Go's `filepath.Abs`).
    fn absolute(&self, path: &str, key: &str) -> Result<PathBuf, ConfigError> {
        let path = if path == "~" || path.starts_with("~/") {
            let home = (self.env)("HOME")
                .filter(|h| !h.is_empty())
                .ok_or_else(|| {
                    self.err(
                        key,
                        format!("cannot expand {path:?}: HOME is not set; give an absolute path"),
                    )
                })?;
            Path::new(&home).join(path.strip_prefix("~/").unwrap_or(""))
        } else {
            PathBuf::from(path)
        };
        let path = if path.is_absolute() {
            path
        } else {
            let cwd = std::env::current_dir().map_err(|e| {
                self.err(key, format!("cannot make {} absolute: {e}", path.display()))
            })?;
            cwd.join(path)
        };
        let mut clean = PathBuf::new();
        for c in path.components() {
            match c {
                Component::ParentDir => {
                    clean.pop();
                }
                Component::CurDir => {}
                other => clean.push(other),
            }
        }
        Ok(clean)
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

fn no_query_message(u: &str) -> String {
    format!(
        "{u:?} has a query or fragment, which Litestream ignores; \
         remove it and use the replica's keys (endpoint, region, layout, ...)"
    )
}

/// The scheme, if `s` starts with one (as Go's `url.Parse` finds it).
fn scheme_of(s: &str) -> Option<&str> {
    let (scheme, _) = s.split_once(':')?;
    let mut chars = scheme.chars();
    let first = chars.next()?;
    (first.is_ascii_alphabetic() && chars.all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c)))
        .then_some(scheme)
}

/// A key prefix as Litestream cleans a URL's path (Go's `path.Clean`, no
/// leading `/`); `` for the bucket's root.
fn trim_key(path: &str) -> String {
    let mut parts: Vec<&str> = Vec::new();
    for part in path.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            p => parts.push(p),
        }
    }
    parts.join("/")
}

fn percent_decode(s: &str) -> Result<String, String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = s
                .get(i + 1..i + 3)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or("bad %-escape")?;
            out.push(hex);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| "%-escapes that are not UTF-8".to_owned())
}

/// What Litestream 0.3.13's `s3.ParseHost` reads from an s3:// URL's host.
#[derive(Debug, PartialEq)]
struct S3Host {
    bucket: String,
    region: Option<String>,
    endpoint: Option<String>,
    path_style: bool,
}

fn parse_s3_host(s: &str) -> S3Host {
    let (host, port) = match s.rsplit_once(':') {
        Some((h, p)) if !p.is_empty() && p.bytes().all(|c| c.is_ascii_digit()) => (h, Some(p)),
        _ => (s, None),
    };
    // `[BUCKET.]LABEL.SUFFIX`, LABEL without dots: (bucket, label).
    let split = |suffix: &str| -> Option<(String, String)> {
        let rest = host.strip_suffix(suffix)?;
        let (bucket, label) = match rest.rsplit_once('.') {
            Some((b, l)) => (b, l),
            None => ("", rest),
        };
        (!label.is_empty()).then(|| (bucket.to_owned(), label.to_owned()))
    };
    // `[BUCKET.]s3.REGION.SUFFIX`.
    let split_s3 = |suffix: &str| -> Option<(String, String)> {
        let (before, region) = split(suffix)?;
        let bucket = if before == "s3" {
            ""
        } else {
            before.strip_suffix(".s3")?
        };
        Some((bucket.to_owned(), region))
    };
    let (bucket, region, endpoint, scheme) = if host == "localhost" || host.ends_with(".localhost")
    {
        let bucket = host
            .strip_suffix("localhost")
            .unwrap_or("")
            .trim_end_matches('.');
        (
            bucket.to_owned(),
            Some(S3_DEFAULT_REGION.to_owned()),
            "localhost".to_owned(),
            "http",
        )
    } else if let Some((bucket, region)) = split_s3(".backblazeb2.com") {
        let endpoint = format!("s3.{region}.backblazeb2.com");
        (bucket, Some(region), endpoint, "https")
    } else if host == "s3.filebase.com" || host.ends_with(".s3.filebase.com") {
        let bucket = host
            .strip_suffix("s3.filebase.com")
            .unwrap_or("")
            .trim_end_matches('.');
        (
            bucket.to_owned(),
            None,
            "s3.filebase.com".to_owned(),
            "https",
        )
    } else if let Some((bucket, region)) = split(".digitaloceanspaces.com") {
        let endpoint = format!("{region}.digitaloceanspaces.com");
        (bucket, Some(region), endpoint, "https")
    } else if let Some((bucket, region)) = split_s3(".scw.cloud") {
        let endpoint = format!("s3.{region}.scw.cloud");
        (bucket, Some(region), endpoint, "https")
    } else if let Some((bucket, region)) = split(".linodeobjects.com") {
        let endpoint = format!("{region}.linodeobjects.com");
        (bucket, Some(region), endpoint, "https")
    } else {
        return S3Host {
            bucket: host.to_owned(),
            region: None,
            endpoint: None,
            path_style: false,
        };
    };
    let endpoint = match port {
        Some(p) => format!("{scheme}://{endpoint}:{p}"),
        None => format!("{scheme}://{endpoint}"),
    };
    S3Host {
        bucket,
        region,
        endpoint: Some(endpoint),
        path_style: true,
    }
}

/// Whether the AWS SDK Litestream uses would put `bucket` in the host.
fn host_compatible_bucket(bucket: &str, https: bool) -> bool {
    let b = bucket.as_bytes();
    let edge = |c: &u8| c.is_ascii_lowercase() || c.is_ascii_digit();
    let ip_like = bucket.split('.').count() == 4
        && bucket
            .split('.')
            .all(|p| !p.is_empty() && p.bytes().all(|c| c.is_ascii_digit()));
    (3..=63).contains(&b.len())
        && b.first().is_some_and(edge)
        && b.last().is_some_and(edge)
        && b.iter().all(|c| edge(c) || *c == b'.' || *c == b'-')
        && !bucket.contains("..")
        && !ip_like
        && !(https && bucket.contains('.'))
}

fn redact(url: &str) -> String {
    let Ok(mut parsed) = Url::parse(url) else {
        return url.to_owned();
    };
    if parsed.query().is_none() {
        return url.to_owned();
    }
    let pairs: Vec<(String, String)> = parsed
        .query_pairs()
        .map(|(k, v)| {
            let secret = matches!(k.as_ref(), "secret_access_key" | "access_key");
            (
                k.into_owned(),
                if secret {
                    "***".to_owned()
                } else {
                    v.into_owned()
                },
            )
        })
        .collect();
    parsed.query_pairs_mut().clear().extend_pairs(pairs);
    parsed.into()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn no_env(_: &str) -> Option<String> {
        None
    }

    fn ok(text: &str) -> Config {
        parse(text, &no_env).unwrap_or_else(|e| panic!("{e}"))
    }

    fn err(text: &str) -> String {
        match parse(text, &no_env) {
            Ok(c) => panic!("parsed: {c:?}"),
            Err(e) => e.to_string(),
        }
    }

    /// The single replica of the single database.
    fn one(text: &str) -> ReplicaConfig {
        let mut c = ok(text);
        assert_eq!(c.dbs.len(), 1);
        assert_eq!(c.dbs[0].replicas.len(), 1);
        c.dbs.remove(0).replicas.remove(0)
    }

    /// One database with one replica whose keys are `body`'s lines.
    fn replica_yaml(body: &str) -> String {
        let mut out = String::from("dbs:\n  - path: /data/app.db\n    replicas:\n");
        for (i, line) in body.lines().enumerate() {
            out.push_str(if i == 0 { "      - " } else { "        " });
            out.push_str(line);
            out.push('\n');
        }
        out
    }

    fn query(url: &str) -> Vec<(String, String)> {
        Url::parse(url)
            .unwrap()
            .query_pairs()
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect()
    }

    fn pairs(p: &[(&str, &str)]) -> Vec<(String, String)> {
        p.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn secs(s: u64) -> Duration {
        Duration::from_secs(s)
    }

    const FULL: &str = r#"
# A Litestream 0.3 config using every key replica reads.
addr: ":9090"
access-key-id: AKIAGLOBAL
secret-access-key: ${GLOBAL_SECRET}
logging:
  level: debug
  type: json
  stderr: true

dbs:
  - path: /var/lib/app/app.db
    monitor-interval: 500ms
    checkpoint-interval: 10m
    min-checkpoint-page-count: 2000
    max-checkpoint-page-count: 20000
    replicas:
      - path: /backups/app
        retention: 72h
        retention-check-interval: 30m
        sync-interval: 10s
        snapshot-interval: 6h
        validation-interval: 12h
      - name: archive
        url: file:///mnt/archive/app
        layout: litestream-0.4
      - name: aws
        type: s3
        bucket: my-bucket
        path: backups/app
        region: eu-west-1
        access-key-id: AKIALOCAL
        secret-access-key: $LOCAL_SECRET
        sync-interval: 1h30m
      - name: minio
        type: s3
        bucket: dev
        path: app
        endpoint: http://127.0.0.1:9000
        force-path-style: true
        skip-verify: true
      - name: spaces
        url: s3://bkt.nyc3.digitaloceanspaces.com/app
      - name: gcs
        type: gcs
        bucket: my-gcs
        path: db/app
      - name: gcs-url
        url: gcs://other-gcs/app
      - name: azure
        type: abs
        account-name: acct
        account-key: a2V5+w==
        bucket: container
        path: app
        endpoint: https://acct.blob.example.net
      - name: azure-url
        url: abs://acct2@container2/db
  - path: /var/lib/app/other.db
    replicas:
      - url: s3://bucket2/other
"#;

    #[test]
    fn config_full_litestream_example_parses() {
        let env = |name: &str| match name {
            "GLOBAL_SECRET" => Some("global/secret".to_owned()),
            "LOCAL_SECRET" => Some("local+secret".to_owned()),
            _ => None,
        };
        let c = parse(FULL, &env).unwrap();
        assert_eq!(
            c.ignored,
            [
                "addr (metrics are not served)",
                "logging (its level, type and stderr settings are not applied)"
            ]
        );
        assert_eq!(c.dbs.len(), 2);
        let db = &c.dbs[0];
        assert_eq!(db.path, PathBuf::from("/var/lib/app/app.db"));
        assert_eq!(db.monitor_interval, Duration::from_millis(500));
        assert_eq!(db.checkpoint_interval, secs(600));
        assert_eq!(db.min_checkpoint_page_count, 2000);
        assert_eq!(db.max_checkpoint_page_count, 20000);
        let names: Vec<&str> = db.replicas.iter().map(|r| r.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "file",
                "archive",
                "aws",
                "minio",
                "spaces",
                "gcs",
                "gcs-url",
                "azure",
                "azure-url"
            ]
        );

        let file = &db.replicas[0];
        assert_eq!(file.url, "file:///backups/app");
        assert_eq!(file.retention, secs(72 * 3600));
        assert_eq!(file.retention_check_interval, secs(1800));
        assert_eq!(file.sync_interval, secs(10));
        assert_eq!(file.snapshot_interval, Some(secs(6 * 3600)));
        assert_eq!(file.validation_interval, Some(secs(12 * 3600)));

        assert_eq!(
            db.replicas[1].url,
            "file:///mnt/archive/app?layout=litestream-0.4"
        );

        let aws = &db.replicas[2];
        assert_eq!(aws.sync_interval, secs(5400));
        assert!(
            aws.url.starts_with("s3://my-bucket/backups/app?"),
            "{}",
            aws.url
        );
        assert_eq!(
            query(&aws.url),
            pairs(&[
                ("region", "eu-west-1"),
                ("virtual_hosted_style_request", "true"),
                ("access_key_id", "AKIALOCAL"),
                ("secret_access_key", "local+secret"),
            ])
        );

        let minio = &db.replicas[3];
        assert!(minio.url.starts_with("s3://dev/app?"), "{}", minio.url);
        assert_eq!(
            query(&minio.url),
            pairs(&[
                ("region", "us-east-1"),
                ("endpoint", "http://127.0.0.1:9000"),
                ("virtual_hosted_style_request", "false"),
                ("allow_http", "true"),
                ("allow_invalid_certificates", "true"),
                ("access_key_id", "AKIAGLOBAL"),
                ("secret_access_key", "global/secret"),
            ])
        );

        let spaces = &db.replicas[4];
        assert!(spaces.url.starts_with("s3://bkt/app?"), "{}", spaces.url);
        assert_eq!(
            query(&spaces.url),
            pairs(&[
                ("region", "nyc3"),
                ("endpoint", "https://nyc3.digitaloceanspaces.com"),
                ("virtual_hosted_style_request", "false"),
                ("access_key_id", "AKIAGLOBAL"),
                ("secret_access_key", "global/secret"),
            ])
        );

        assert_eq!(db.replicas[5].url, "gs://my-gcs/db/app");
        assert_eq!(db.replicas[6].url, "gs://other-gcs/app");

        let azure = &db.replicas[7];
        assert!(
            azure.url.starts_with("az://container/app?"),
            "{}",
            azure.url
        );
        assert_eq!(
            query(&azure.url),
            pairs(&[
                ("account_name", "acct"),
                ("access_key", "a2V5+w=="),
                ("endpoint", "https://acct.blob.example.net"),
            ])
        );
        assert_eq!(db.replicas[8].url, "az://container2/db?account_name=acct2");

        let other = &c.dbs[1];
        assert_eq!(other.path, PathBuf::from("/var/lib/app/other.db"));
        assert_eq!(other.replicas[0].name, "s3");
        assert!(other.replicas[0].url.starts_with("s3://bucket2/other?"));
    }

    #[test]
    fn config_defaults_are_litestreams() {
        let c = ok("dbs:\n  - path: /data/app.db\n    replicas:\n      - path: /backups/app\n");
        assert!(c.ignored.is_empty());
        let db = &c.dbs[0];
        assert_eq!(db.monitor_interval, secs(1));
        assert_eq!(db.checkpoint_interval, secs(60));
        assert_eq!(db.min_checkpoint_page_count, 1000);
        assert_eq!(db.max_checkpoint_page_count, 10000);
        let r = &db.replicas[0];
        assert_eq!(r.name, "file");
        assert_eq!(r.sync_interval, secs(1));
        assert_eq!(r.snapshot_interval, None);
        assert_eq!(r.retention, secs(24 * 3600));
        assert_eq!(r.retention_check_interval, secs(3600));
        assert_eq!(r.validation_interval, None);
    }

    #[test]
    fn config_zero_intervals_follow_litestream() {
        let r = one(&replica_yaml(
            "path: /b\nsnapshot-interval: 0s\nvalidation-interval: \"0\"\nretention: 0\nretention-check-interval: 0",
        ));
        assert_eq!(r.snapshot_interval, None);
        assert_eq!(r.validation_interval, None);
        assert_eq!(r.retention, Duration::ZERO);
        // Capped at the retention period, as Litestream's retainer does.
        let r = one(&replica_yaml("path: /b\nretention: 10m"));
        assert_eq!(r.retention_check_interval, secs(600));
        let e = err(&replica_yaml("path: /b\nsync-interval: 0s"));
        assert!(
            e.contains("dbs[0].replicas[0].sync-interval") && e.contains("greater than zero"),
            "{e}"
        );
        let e = err("dbs:\n  - path: /a\n    monitor-interval: 0\n    replicas: [{path: /b}]\n");
        assert!(e.contains("dbs[0].monitor-interval"), "{e}");
        let e = err(
            "dbs:\n  - path: /a\n    min-checkpoint-page-count: 0\n    replicas: [{path: /b}]\n",
        );
        assert!(e.contains("dbs[0].min-checkpoint-page-count"), "{e}");
        let c = ok("dbs:\n  - path: /a\n    max-checkpoint-page-count: 0\n    checkpoint-interval: 0s\n    replicas: [{path: /b}]\n");
        assert_eq!(c.dbs[0].max_checkpoint_page_count, 0);
        assert_eq!(c.dbs[0].checkpoint_interval, Duration::ZERO);
    }

    #[test]
    fn config_env_expansion_like_go() {
        let env = |name: &str| match name {
            "BUCKET" => Some("env-bucket".to_owned()),
            "DIR" => Some("backups".to_owned()),
            _ => None,
        };
        assert_eq!(
            expand_env("a ${BUCKET} b $BUCKET/c", &env),
            "a env-bucket b env-bucket/c"
        );
        assert_eq!(expand_env("x${UNSET}y$UNSET.z", &env), "xy.z");
        // Go's corner cases: `$$` and `$1` are (unset) specials, `${}` and an
        // unclosed `${` are dropped, a `$` before anything else stays.
        assert_eq!(expand_env("p$$w $1 ${} $ $% end$", &env), "pw   $ $% end$");
        assert_eq!(expand_env("${BUCKET", &env), "BUCKET");

        let text = "dbs:\n  - path: /data/${DIR}.db\n    replicas:\n      - url: s3://$BUCKET/${DIR}/$UNSET\n";
        let c = parse(text, &env).unwrap();
        assert_eq!(c.dbs[0].path, PathBuf::from("/data/backups.db"));
        assert!(
            c.dbs[0].replicas[0]
                .url
                .starts_with("s3://env-bucket/backups?"),
            "{}",
            c.dbs[0].replicas[0].url
        );
    }

    #[test]
    fn config_load_reads_file_and_honours_no_expand_env() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("litestream.yml");
        // `$` can only be unexpanded text when expansion is off.
        std::fs::write(
            &path,
            "dbs:\n  - path: /data/app.db\n    replicas:\n      - type: s3\n        bucket: b\n        access-key-id: id\n        secret-access-key: pa$$word\n",
        )
        .unwrap();
        let c = load(&path, false).unwrap();
        assert!(query(&c.dbs[0].replicas[0].url)
            .contains(&("secret_access_key".into(), "pa$$word".into())));
        let c = load(&path, true).unwrap();
        assert!(query(&c.dbs[0].replicas[0].url)
            .contains(&("secret_access_key".into(), "paword".into())));

        let e = load(&dir.path().join("missing.yml"), true)
            .unwrap_err()
            .to_string();
        assert!(e.contains("missing.yml") && e.contains("--config"), "{e}");
        std::fs::write(&path, "dbs: []\n").unwrap();
        let e = load(&path, true).unwrap_err().to_string();
        assert!(
            e.starts_with(&format!("{}: dbs: no databases", path.display())),
            "{e}"
        );
    }

    #[test]
    fn config_unknown_top_level_key_is_named() {
        let e = err("dbz:\n  - path: /a\n");
        assert!(
            e.starts_with("config: top level: unknown field `dbz`"),
            "{e}"
        );
    }

    #[test]
    fn config_unknown_db_key_is_named_with_its_place() {
        let e = err("dbs:\n  - path: /a\n    monitor-intervall: 1s\n    replicas: [{path: /b}]\n");
        assert!(
            e.contains("dbs[0]: unknown field `monitor-intervall`"),
            "{e}"
        );
        assert!(e.contains("fix its spelling"), "{e}");
    }

    #[test]
    fn config_unknown_replica_key_is_named_with_its_place() {
        let e = err("dbs:\n  - path: /a\n    replicas:\n      - path: /b\n      - url: s3://b/p\n        sync_interval: 1s\n");
        assert!(
            e.contains("dbs[0].replicas[1]: unknown field `sync_interval`"),
            "{e}"
        );
        let e = err("logging:\n  colour: red\ndbs: []\n");
        assert!(e.contains("logging: unknown field `colour`"), "{e}");
    }

    #[test]
    fn config_exec_sftp_meta_path_and_age_are_rejected() {
        let e = err("exec: myapp serve\ndbs:\n  - path: /a\n    replicas: [{path: /b}]\n");
        assert!(
            e.starts_with("config: exec: `exec` is not supported"),
            "{e}"
        );
        let e = err(&replica_yaml("type: sftp\nhost: h:22\nuser: u\npath: /b"));
        assert!(
            e.contains("dbs[0].replicas[0].type: sftp replicas are not supported"),
            "{e}"
        );
        let e = err(&replica_yaml("url: sftp://u@h/b"));
        assert!(
            e.contains("dbs[0].replicas[0].url: sftp replicas are not supported"),
            "{e}"
        );
        let e = err("dbs:\n  - path: /a\n    meta-path: /m\n    replicas: [{path: /b}]\n");
        assert!(
            e.contains("dbs[0].meta-path: `meta-path` is not supported"),
            "{e}"
        );
        let e = err(&replica_yaml("path: /b\nage:\n  recipients: [age1xyz]"));
        assert!(
            e.contains("dbs[0].replicas[0].age: age encryption is not supported"),
            "{e}"
        );
        let e = err(&replica_yaml("type: ftp\npath: /b"));
        assert!(
            e.contains("dbs[0].replicas[0].type: unknown replica type \"ftp\""),
            "{e}"
        );
    }

    #[test]
    fn config_bad_duration_names_key_and_value() {
        let e = err(&replica_yaml("path: /b\nretention: 1 day"));
        assert!(e.contains("dbs[0].replicas[0].retention: \"1 day\""), "{e}");
        assert!(e.contains("Go duration"), "{e}");
        let e = err(&replica_yaml("path: /b\nsync-interval: 10"));
        assert!(
            e.contains("dbs[0].replicas[0].sync-interval: \"10\" has no unit"),
            "{e}"
        );
    }

    #[test]
    fn config_go_durations() {
        let ms = Duration::from_millis;
        for (text, want) in [
            ("1s", secs(1)),
            ("500ms", ms(500)),
            ("10m", secs(600)),
            ("24h", secs(86400)),
            ("1h30m", secs(5400)),
            ("1.5h", secs(5400)),
            (".5s", ms(500)),
            ("1.s", secs(1)),
            ("0", Duration::ZERO),
            ("+2s", secs(2)),
            ("250us", Duration::from_micros(250)),
            ("250µs", Duration::from_micros(250)),
            ("250μs", Duration::from_micros(250)),
            ("10ns", Duration::from_nanos(10)),
            ("1h0m30s", secs(3630)),
        ] {
            assert_eq!(parse_go_duration(text), Ok(want), "{text}");
        }
        for bad in [
            "", "10", "1d", "1 s", "-1s", "s", "1x", "1h 30m", "1week", ".",
        ] {
            assert!(parse_go_duration(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn config_s3_secret_is_url_encoded_and_round_trips() {
        let secret = "a/b+c=d&e f%g?h#i";
        let r = one(&replica_yaml(&format!(
            "type: s3\nbucket: my-bucket\npath: /dir/sub dir/\nregion: us-west-2\naccess-key-id: AKIA123\nsecret-access-key: '{secret}'"
        )));
        assert!(
            r.url.starts_with("s3://my-bucket/dir/sub%20dir?"),
            "{}",
            r.url
        );
        assert!(
            r.url
                .contains("secret_access_key=a%2Fb%2Bc%3Dd%26e+f%25g%3Fh%23i"),
            "{}",
            r.url
        );
        let parsed = Url::parse(&r.url).unwrap();
        assert_eq!(parsed.host_str(), Some("my-bucket"));
        assert_eq!(parsed.path(), "/dir/sub%20dir");
        assert_eq!(
            query(&r.url),
            pairs(&[
                ("region", "us-west-2"),
                ("virtual_hosted_style_request", "true"),
                ("access_key_id", "AKIA123"),
                ("secret_access_key", secret),
            ])
        );
        assert_eq!(
            r.redacted_url(),
            "s3://my-bucket/dir/sub%20dir?region=us-west-2&virtual_hosted_style_request=true\
             &access_key_id=AKIA123&secret_access_key=***"
        );
        assert!(!format!("{r:?}").contains("a%2Fb"), "{r:?}");
    }

    #[test]
    fn config_global_credentials_are_inherited_unless_overridden() {
        let c = ok("access-key-id: GID\nsecret-access-key: GSECRET\ndbs:\n  - path: /a\n    replicas:\n      - url: s3://one/p\n      - url: s3://two/p\n        name: two\n        access-key-id: OWN\n        secret-access-key: OWNSECRET\n      - path: /b\n");
        let q0 = query(&c.dbs[0].replicas[0].url);
        assert!(
            q0.contains(&("access_key_id".into(), "GID".into())),
            "{q0:?}"
        );
        assert!(
            q0.contains(&("secret_access_key".into(), "GSECRET".into())),
            "{q0:?}"
        );
        let q1 = query(&c.dbs[0].replicas[1].url);
        assert!(
            q1.contains(&("access_key_id".into(), "OWN".into())),
            "{q1:?}"
        );
        assert!(
            q1.contains(&("secret_access_key".into(), "OWNSECRET".into())),
            "{q1:?}"
        );
        assert_eq!(c.dbs[0].replicas[2].url, "file:///b");
        assert!(c.ignored.is_empty(), "{:?}", c.ignored);
    }

    #[test]
    fn config_litestream_credential_env_vars_fill_in() {
        let text = replica_yaml("url: s3://b/p");
        let env = |name: &str| match name {
            "LITESTREAM_ACCESS_KEY_ID" => Some("LID".to_owned()),
            "LITESTREAM_SECRET_ACCESS_KEY" => Some("LSECRET".to_owned()),
            "LITESTREAM_AZURE_ACCOUNT_KEY" => Some("AZKEY".to_owned()),
            _ => None,
        };
        let c = parse(&text, &env).unwrap();
        let q = query(&c.dbs[0].replicas[0].url);
        assert!(q.contains(&("access_key_id".into(), "LID".into())), "{q:?}");
        assert!(
            q.contains(&("secret_access_key".into(), "LSECRET".into())),
            "{q:?}"
        );
        // AWS_* wins (replica::open reads it itself), as Litestream only copies when unset.
        let env_aws = |name: &str| match name {
            "AWS_ACCESS_KEY_ID" | "AWS_SECRET_ACCESS_KEY" => Some("AWS".to_owned()),
            other => env(other),
        };
        let c = parse(&text, &env_aws).unwrap();
        let q = query(&c.dbs[0].replicas[0].url);
        assert!(
            !q.iter()
                .any(|(k, _)| k == "access_key_id" || k == "secret_access_key"),
            "{q:?}"
        );
        let c = parse(&replica_yaml("url: abs://acct@cont/p"), &env).unwrap();
        assert_eq!(
            c.dbs[0].replicas[0].url,
            "az://cont/p?account_name=acct&access_key=AZKEY"
        );
    }

    #[test]
    fn config_http_endpoint_allows_http() {
        let r = one(&replica_yaml(
            "type: s3\nbucket: b\nendpoint: http://minio:9000",
        ));
        assert_eq!(
            query(&r.url),
            pairs(&[
                ("region", "us-east-1"),
                ("endpoint", "http://minio:9000"),
                ("virtual_hosted_style_request", "false"),
                ("allow_http", "true"),
            ])
        );
        let r = one(&replica_yaml(
            "type: s3\nbucket: b\nendpoint: https://s3.example.com\nregion: r1",
        ));
        assert_eq!(r.url, "s3://b?region=r1&endpoint=https%3A%2F%2Fs3.example.com&virtual_hosted_style_request=false");
        // No scheme: https, as the AWS SDK assumes.
        let r = one(&replica_yaml(
            "type: s3\nbucket: b\nendpoint: s3.example.com",
        ));
        assert!(
            query(&r.url).contains(&("endpoint".into(), "https://s3.example.com".into())),
            "{}",
            r.url
        );
    }

    #[test]
    fn config_force_path_style_maps_to_virtual_hosted_requests() {
        // Explicitly virtual-hosted with an endpoint: object_store wants the bucket in it.
        let r = one(&replica_yaml(
            "type: s3\nbucket: bkt\nendpoint: https://s3.example.com:8443\nforce-path-style: no",
        ));
        let q = query(&r.url);
        assert!(
            q.contains(&("endpoint".into(), "https://bkt.s3.example.com:8443".into())),
            "{q:?}"
        );
        assert!(
            q.contains(&("virtual_hosted_style_request".into(), "true".into())),
            "{q:?}"
        );
        // AWS itself, with force-path-style.
        let r = one(&replica_yaml("url: s3://b/p\nforce-path-style: true"));
        assert_eq!(r.url, "s3://b/p?virtual_hosted_style_request=false");
        // A dotted bucket cannot be a host under https: path style, as the SDK falls back.
        let r = one(&replica_yaml("url: s3://my.bucket.com/db"));
        assert_eq!(
            r.url,
            "s3://my.bucket.com/db?virtual_hosted_style_request=false"
        );
        let e = err(&replica_yaml("url: s3://b/p\nforce-path-style: maybe"));
        assert!(
            e.contains("dbs[0].replicas[0].force-path-style: \"maybe\" is not a boolean"),
            "{e}"
        );
    }

    #[test]
    fn config_s3_provider_hosts_like_litestream() {
        let h = |bucket: &str, region: Option<&str>, endpoint: Option<&str>, path_style| S3Host {
            bucket: bucket.into(),
            region: region.map(Into::into),
            endpoint: endpoint.map(Into::into),
            path_style,
        };
        assert_eq!(parse_s3_host("mybucket"), h("mybucket", None, None, false));
        assert_eq!(
            parse_s3_host("bucket.s3.amazonaws.com"),
            h("bucket.s3.amazonaws.com", None, None, false)
        );
        assert_eq!(
            parse_s3_host("bkt.localhost:9000"),
            h(
                "bkt",
                Some("us-east-1"),
                Some("http://localhost:9000"),
                true
            )
        );
        assert_eq!(
            parse_s3_host("localhost"),
            h("", Some("us-east-1"), Some("http://localhost"), true)
        );
        assert_eq!(
            parse_s3_host("bkt.s3.us-west-002.backblazeb2.com"),
            h(
                "bkt",
                Some("us-west-002"),
                Some("https://s3.us-west-002.backblazeb2.com"),
                true
            )
        );
        assert_eq!(
            parse_s3_host("bkt.s3.filebase.com"),
            h("bkt", None, Some("https://s3.filebase.com"), true)
        );
        assert_eq!(
            parse_s3_host("my.bkt.sfo3.digitaloceanspaces.com"),
            h(
                "my.bkt",
                Some("sfo3"),
                Some("https://sfo3.digitaloceanspaces.com"),
                true
            )
        );
        assert_eq!(
            parse_s3_host("bkt.s3.fr-par.scw.cloud"),
            h(
                "bkt",
                Some("fr-par"),
                Some("https://s3.fr-par.scw.cloud"),
                true
            )
        );
        assert_eq!(
            parse_s3_host("bkt.us-east-1.linodeobjects.com:443"),
            h(
                "bkt",
                Some("us-east-1"),
                Some("https://us-east-1.linodeobjects.com:443"),
                true
            )
        );

        // Through a whole config: localhost is plain http with the default region.
        let r = one(&replica_yaml("url: s3://bkt.localhost:9000/db"));
        assert_eq!(
            r.url,
            "s3://bkt/db?region=us-east-1&endpoint=http%3A%2F%2Flocalhost%3A9000\
             &virtual_hosted_style_request=false&allow_http=true"
        );
        // Config keys win over what the host says.
        let r = one(&replica_yaml(
            "url: s3://bkt.s3.us-west-002.backblazeb2.com/db\nregion: mine",
        ));
        assert!(
            query(&r.url).contains(&("region".into(), "mine".into())),
            "{}",
            r.url
        );
        let e = err(&replica_yaml("url: s3://localhost:9000/db"));
        assert!(e.contains("dbs[0].replicas[0].bucket: missing"), "{e}");
    }

    #[test]
    fn config_gcs_forms() {
        assert_eq!(
            one(&replica_yaml("type: gcs\nbucket: g\npath: a/b")).url,
            "gs://g/a/b"
        );
        assert_eq!(one(&replica_yaml("url: gcs://g/a/./b/")).url, "gs://g/a/b");
        assert_eq!(one(&replica_yaml("url: gs://g")).url, "gs://g");
        let r = one(&replica_yaml("url: gs://g/p\ntype: gcs"));
        assert_eq!((r.name.as_str(), r.url.as_str()), ("gcs", "gs://g/p"));
        let e = err(&replica_yaml("type: gcs\npath: p"));
        assert!(e.contains("dbs[0].replicas[0].bucket: missing"), "{e}");
    }

    #[test]
    fn config_abs_forms() {
        let r = one(&replica_yaml(
            "type: abs\naccount-name: acct\naccount-key: 'ab+/cd=='\nbucket: cont\npath: db",
        ));
        assert_eq!(r.name, "abs");
        assert_eq!(
            r.url,
            "az://cont/db?account_name=acct&access_key=ab%2B%2Fcd%3D%3D"
        );
        assert_eq!(
            query(&r.url),
            pairs(&[("account_name", "acct"), ("access_key", "ab+/cd==")])
        );
        let r = one(&replica_yaml("url: abs://acct@cont/dir/db\naccount-key: K"));
        assert_eq!(r.url, "az://cont/dir/db?account_name=acct&access_key=K");
        // account-name wins over the URL's user; an http endpoint allows http.
        let r = one(&replica_yaml("url: abs://acct@cont/db\naccount-name: other\nendpoint: http://127.0.0.1:10000/devstoreaccount1"));
        assert_eq!(
            query(&r.url),
            pairs(&[
                ("account_name", "other"),
                ("endpoint", "http://127.0.0.1:10000/devstoreaccount1"),
                ("allow_http", "true"),
            ])
        );
        let e = err(&replica_yaml("type: abs\nbucket: cont"));
        assert!(
            e.contains("dbs[0].replicas[0].account-name: missing"),
            "{e}"
        );
    }

    #[test]
    fn config_path_only_replica_is_a_file_replica() {
        let r = one(&replica_yaml("path: /backups/app"));
        assert_eq!(
            (r.name.as_str(), r.url.as_str()),
            ("file", "file:///backups/app")
        );
        // Relative paths are against the current directory, `~` is HOME, `..` is cleaned.
        let cwd = std::env::current_dir().unwrap();
        let home = |name: &str| (name == "HOME").then(|| "/home/me".to_owned());
        let text = "dbs:\n  - path: ~/app.db\n    replicas:\n      - path: rel/../backups\n      - url: ~/b2\n        name: b\n      - url: file:///x/y/../z\n        name: c\n";
        let c = parse(text, &home).unwrap();
        assert_eq!(c.dbs[0].path, PathBuf::from("/home/me/app.db"));
        let want = Url::from_file_path(cwd.join("backups")).unwrap();
        assert_eq!(c.dbs[0].replicas[0].url, want.as_str());
        assert_eq!(c.dbs[0].replicas[1].url, "file:///home/me/b2");
        assert_eq!(c.dbs[0].replicas[2].url, "file:///x/z");
        let e = err("dbs:\n  - path: ~/app.db\n    replicas: [{path: /b}]\n");
        assert!(
            e.contains("dbs[0].path: cannot expand \"~/app.db\": HOME is not set"),
            "{e}"
        );
        // Spaces survive as a file URL.
        assert_eq!(
            one(&replica_yaml("path: /my backups")).url,
            "file:///my%20backups"
        );
        assert_eq!(
            one(&replica_yaml("url: file:///my%20backups")).url,
            "file:///my%20backups"
        );
    }

    #[test]
    fn config_layout_extension() {
        let r = one(&replica_yaml("url: s3://bkt/p\nlayout: litestream-0.3"));
        assert_eq!(
            r.url,
            "s3://bkt/p?virtual_hosted_style_request=true&layout=litestream-0.3"
        );
        let r = one(&replica_yaml("type: gcs\nbucket: g\nlayout: '0.4'"));
        assert_eq!(r.url, "gs://g?layout=litestream-0.4");
        let e = err(&replica_yaml("path: /b\nlayout: litestream-9"));
        assert!(
            e.contains("dbs[0].replicas[0].layout: ") && e.contains("litestream-9"),
            "{e}"
        );
    }

    #[test]
    fn config_conflicting_url_type_path_bucket() {
        let e = err(&replica_yaml("url: s3://b/p\npath: other"));
        assert!(
            e.contains("dbs[0].replicas[0]: both `url` and `path`"),
            "{e}"
        );
        let e = err(&replica_yaml("url: s3://b/p\nbucket: other"));
        assert!(
            e.contains("dbs[0].replicas[0]: both `url` and `bucket`"),
            "{e}"
        );
        let e = err(&replica_yaml("url: s3://b/p\ntype: gcs"));
        assert!(
            e.contains("dbs[0].replicas[0].type: type gcs conflicts with the url's s3://"),
            "{e}"
        );
        let e = err(&replica_yaml("path: s3://b/p"));
        assert!(
            e.contains("dbs[0].replicas[0].path: \"s3://b/p\" is a URL"),
            "{e}"
        );
        let e = err(&replica_yaml("url: s3://b/p?region=x"));
        assert!(
            e.contains("dbs[0].replicas[0].url: ") && e.contains("query"),
            "{e}"
        );
    }

    #[test]
    fn config_structure_errors() {
        let e = err("");
        assert_eq!(e, "config: dbs: no databases: list at least one under `dbs`, each with a `path` and `replicas`");
        let e = err("dbs: []\n");
        assert!(e.starts_with("config: dbs: no databases"), "{e}");
        let e = err("dbs:\n  - replicas: [{path: /b}]\n");
        assert!(e.contains("dbs[0].path: missing"), "{e}");
        let e = err("dbs:\n  - path: /a\n");
        assert!(e.contains("dbs[0].replicas: no replicas"), "{e}");
        let e = err("dbs:\n  - path: /a\n    replicas: []\n");
        assert!(e.contains("dbs[0].replicas: no replicas"), "{e}");
        let e =
            err("dbs:\n  - path: /a\n    replicas: [{path: /b}, {url: s3://x/y, name: file}]\n");
        assert!(
            e.contains("dbs[0].replicas[1].name: duplicate replica name \"file\""),
            "{e}"
        );
        let e = err("dbs:\n  - path: /a\n    replicas: [{path: /b}]\n  - path: /x/../a\n    replicas: [{path: /c}]\n");
        assert!(e.contains("dbs[1].path: /a is also dbs[0].path"), "{e}");
        let e = err(
            "dbs:\n  - path: /a\n    min-checkpoint-page-count: lots\n    replicas: [{path: /b}]\n",
        );
        assert!(
            e.contains("dbs[0].min-checkpoint-page-count: \"lots\""),
            "{e}"
        );
        let e = err("- just a list\n");
        assert!(e.starts_with("config: invalid type: sequence"), "{e}");
    }

    #[test]
    fn config_keys_for_other_types_are_ignored_with_a_warning() {
        let c = ok(&replica_yaml(
            "path: /b\nregion: us-east-1\nhost: example.com\nage: {}",
        ));
        assert_eq!(
            c.ignored,
            [
                "dbs[0].replicas[0].region (not used by file replicas)",
                "dbs[0].replicas[0].host (not used by file replicas)"
            ]
        );
        let c = ok(&replica_yaml("type: gcs\nbucket: g\nendpoint: http://x"));
        assert_eq!(
            c.ignored,
            ["dbs[0].replicas[0].endpoint (not used by gcs replicas)"]
        );
    }

    #[test]
    fn config_object_store_urls_are_accepted_by_the_opener() {
        // Every option name must be one object_store knows (the opener
        // rejects unknown ones) and the builders must accept the values.
        let env = |name: &str| (name == "GLOBAL_SECRET").then(|| "s".to_owned());
        let c = parse(FULL, &env).unwrap();
        let mut opened = 0;
        for r in c.dbs.iter().flat_map(|d| &d.replicas) {
            if r.url.starts_with("file:") {
                continue;
            }
            let url = Url::parse(&r.url).unwrap();
            let store = replica_object_store::open_url(&url);
            assert!(store.is_ok(), "{}: {:?}", r.name, store.err());
            opened += 1;
        }
        assert_eq!(opened, 8);
        let r = one(&replica_yaml(
            "type: s3\nbucket: bkt\nendpoint: https://s3.example.com\nforce-path-style: false",
        ));
        let store = replica_object_store::open_url(&Url::parse(&r.url).unwrap());
        assert!(store.is_ok(), "{:?}", store.err());
    }
}
