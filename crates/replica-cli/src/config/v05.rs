//! Litestream 0.5's keys: compaction `levels`, `snapshot` (interval and
//! retention, top level and per database), `l0-retention`,
//! `l0-retention-check-interval`, `retention.enabled`, and a database's
//! single `replica`. A config that uses any of them is a 0.5 config: its
//! replicas are written in the LTX layout unless their location already
//! holds another layout (or they say `layout:`).

use std::time::Duration;

use serde::Deserialize;

use super::{ConfigError, Resolver};

/// `levels[]` entry.
#[derive(Deserialize, Clone)]
#[serde(deny_unknown_fields, rename_all = "kebab-case", rename = "level")]
pub(super) struct RawLevel {
    interval: Option<String>,
}

/// `snapshot` (top level or per database).
#[derive(Deserialize, Clone, Default)]
#[serde(deny_unknown_fields, rename_all = "kebab-case", rename = "snapshot")]
pub(super) struct RawSnapshot {
    interval: Option<String>,
    retention: Option<String>,
}

/// Top-level `retention`.
#[derive(Deserialize, Clone)]
#[serde(deny_unknown_fields, rename_all = "kebab-case", rename = "retention")]
pub(super) struct RawRetention {
    enabled: Option<bool>,
}

/// The 0.5 keys of the top level.
#[derive(Clone, Default)]
pub(super) struct TopLevel {
    pub(super) levels: Option<Vec<RawLevel>>,
    pub(super) snapshot: Option<RawSnapshot>,
    pub(super) l0_retention: Option<String>,
    pub(super) l0_retention_check_interval: Option<String>,
    pub(super) retention: Option<RawRetention>,
}

impl TopLevel {
    /// Whether any 0.5 key is set here.
    pub(super) fn used(&self) -> bool {
        self.levels.is_some()
            || self.snapshot.is_some()
            || self.l0_retention.is_some()
            || self.l0_retention_check_interval.is_some()
            || self.retention.is_some()
    }
}

/// What a 0.5 config sets for one database's LTX replica.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct LtxSettings {
    /// Compaction intervals of L1, L2, ... (default 30 s, 5 min, 1 h).
    pub(crate) levels: Vec<Duration>,
    /// `snapshot.interval` (default 24 h).
    pub(crate) snapshot_interval: Duration,
    /// `snapshot.retention` (default 24 h); zero when `retention.enabled`
    /// is false (nothing is deleted).
    pub(crate) retention: Duration,
    /// `l0-retention` (default 5 min).
    pub(crate) l0_retention: Duration,
    /// `l0-retention-check-interval` (default 15 s): how often retention runs.
    pub(crate) retention_check_interval: Duration,
}

const DAY: Duration = Duration::from_secs(24 * 3600);

impl Resolver<'_> {
    /// The settings of the database at `key` (its own `snapshot` over the
    /// top level's).
    pub(super) fn ltx_settings(
        &self,
        top: &TopLevel,
        db_snapshot: Option<&RawSnapshot>,
        key: &str,
    ) -> Result<LtxSettings, ConfigError> {
        let levels = match &top.levels {
            None => vec![
                Duration::from_secs(30),
                Duration::from_secs(300),
                Duration::from_secs(3600),
            ],
            Some(levels) => {
                if levels.len() > 8 {
                    return Err(self.err(
                        "levels",
                        format!(
                            "{} levels: at most 8 compaction levels (L1-L8; L9 holds snapshots)",
                            levels.len()
                        ),
                    ));
                }
                levels
                    .iter()
                    .enumerate()
                    .map(|(i, l)| {
                        let k = format!("levels[{i}].interval");
                        let text = l
                            .interval
                            .as_ref()
                            .ok_or_else(|| self.err(&k, "missing: give each level an interval"))?;
                        self.duration(&Some(text.clone()), &k, Duration::ZERO, true)
                    })
                    .collect::<Result<_, _>>()?
            }
        };
        let pick = |field: fn(&RawSnapshot) -> &Option<String>, name: &str| match db_snapshot
            .and_then(|s| field(s).as_ref())
        {
            Some(v) => (Some(v.clone()), format!("{key}.snapshot.{name}")),
            None => (
                top.snapshot.as_ref().and_then(|s| field(s).clone()),
                format!("snapshot.{name}"),
            ),
        };
        let (interval, interval_key) = pick(|s| &s.interval, "interval");
        let (retention, retention_key) = pick(|s| &s.retention, "retention");
        let enabled = top
            .retention
            .as_ref()
            .and_then(|r| r.enabled)
            .unwrap_or(true);
        let retention = self.duration(&retention, &retention_key, DAY, false)?;
        Ok(LtxSettings {
            levels,
            snapshot_interval: self.duration(&interval, &interval_key, DAY, true)?,
            retention: if enabled { retention } else { Duration::ZERO },
            l0_retention: self.duration(
                &top.l0_retention,
                "l0-retention",
                Duration::from_secs(300),
                false,
            )?,
            retention_check_interval: self.duration(
                &top.l0_retention_check_interval,
                "l0-retention-check-interval",
                Duration::from_secs(15),
                true,
            )?,
        })
    }
}
