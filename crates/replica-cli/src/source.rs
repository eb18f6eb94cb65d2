//! Where a read command's replica is: a replica URL, or (as Litestream
//! resolves `litestream restore -config litestream.yml /data/app.db`) a
//! database path looked up in a Litestream config file, whose replica's
//! URL, endpoint and credentials the file names.

use std::path::{Path, PathBuf};

use crate::config::{self, Config, DbConfig};
use crate::{describe, Exit};

/// Litestream's default config path.
pub(crate) const DEFAULT_CONFIG: &str = "/etc/litestream.yml";

/// The replica a read command works on.
#[derive(clap::Args, Debug, Clone)]
pub(crate) struct Source {
    /// Replica URL (file:///path, a directory, s3://bucket/prefix, ...), or
    /// a database path whose replica a Litestream config file names.
    #[arg(value_name = "URL|DB_PATH")]
    pub(crate) url: String,
    /// The Litestream config file to look DB_PATH up in (default:
    /// $LITESTREAM_CONFIG, else /etc/litestream.yml, where it exists).
    #[arg(long, value_name = "FILE")]
    pub(crate) config: Option<PathBuf>,
    /// The replica of DB_PATH to read, by name (needed when it has several).
    #[arg(long, value_name = "NAME")]
    pub(crate) replica: Option<String>,
    /// Do not expand $VAR and ${VAR} in the config file.
    #[arg(long)]
    pub(crate) no_expand_env: bool,
}

/// A resolved source: the replica URL, and the database path when it came
/// from a config file (`restore` writes there unless told otherwise).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Resolved {
    pub(crate) url: String,
    pub(crate) db: Option<PathBuf>,
}

/// The config file to use when none is named: `$LITESTREAM_CONFIG`, else
/// Litestream's default, if the file exists.
pub(crate) fn default_config() -> Option<PathBuf> {
    let path = default_config_path();
    path.is_file().then_some(path)
}

/// `$LITESTREAM_CONFIG`, else Litestream's default path, whether or not
/// the file exists.
pub(crate) fn default_config_path() -> PathBuf {
    std::env::var_os("LITESTREAM_CONFIG")
        .map_or_else(|| PathBuf::from(DEFAULT_CONFIG), PathBuf::from)
}

impl Source {
    /// The replica this names.
    pub(crate) fn resolve(&self) -> Result<Resolved, Exit> {
        let target = self.url.as_str();
        if target.contains("://") {
            if self.replica.is_some() {
                return Err(Exit::Error(format!(
                    "--replica picks one of a database's replicas in a config file; {target} is \
                     a replica URL already (drop --replica, or give the database path with \
                     --config)"
                )));
            }
            return Ok(Resolved {
                url: target.to_owned(),
                db: None,
            });
        }
        let path = Path::new(target);
        if let Some(file) = &self.config {
            let config = self.load(file)?;
            return pick(&config, file, path, self.replica.as_deref());
        }
        if path.is_dir() {
            return self.plain(target);
        }
        if let Some(file) = default_config() {
            let config = self.load(&file)?;
            if find(&config, path).is_some() {
                return pick(&config, &file, path, self.replica.as_deref());
            }
        }
        if path.is_file() {
            return Err(Exit::Error(format!(
                "{target} is a file, not a replica location: to read the replica of the \
                 database {target}, pass --config FILE (the Litestream config naming it; \
                 $LITESTREAM_CONFIG and /etc/litestream.yml are read by default), or give the \
                 replica's URL (file:///..., s3://...)"
            )));
        }
        self.plain(target)
    }

    fn plain(&self, target: &str) -> Result<Resolved, Exit> {
        if self.replica.is_some() {
            return Err(Exit::Error(format!(
                "--replica needs a database path and its config file; {target} is a replica \
                 location"
            )));
        }
        Ok(Resolved {
            url: target.to_owned(),
            db: None,
        })
    }

    fn load(&self, file: &Path) -> Result<Config, Exit> {
        config::load(file, !self.no_expand_env).map_err(|e| Exit::Error(describe(&e)))
    }
}

/// `path` made absolute and, where it exists, canonical.
fn normal(path: &Path) -> PathBuf {
    path.canonicalize()
        .or_else(|_| std::path::absolute(path))
        .unwrap_or_else(|_| path.to_owned())
}

fn find<'a>(config: &'a Config, path: &Path) -> Option<&'a DbConfig> {
    let wanted = normal(path);
    config.dbs.iter().find(|db| normal(&db.path) == wanted)
}

/// The replica of database `path` in `config` (read from `file`): its only
/// one, or the one named `name`.
fn pick(config: &Config, file: &Path, path: &Path, name: Option<&str>) -> Result<Resolved, Exit> {
    let Some(db) = find(config, path) else {
        let known: Vec<String> = config
            .dbs
            .iter()
            .map(|d| d.path.display().to_string())
            .collect();
        return Err(Exit::Error(format!(
            "{} names no database {} (it names: {})",
            file.display(),
            path.display(),
            if known.is_empty() {
                "none".to_owned()
            } else {
                known.join(", ")
            }
        )));
    };
    let names = || {
        db.replicas
            .iter()
            .map(|r| r.name.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    };
    let replica = match name {
        Some(name) => db.replicas.iter().find(|r| r.name == name).ok_or_else(|| {
            Exit::Error(format!(
                "{}: database {} has no replica named {name:?} (its replicas: {})",
                file.display(),
                db.path.display(),
                names()
            ))
        })?,
        None => match db.replicas.as_slice() {
            [one] => one,
            [] => {
                return Err(Exit::Error(format!(
                    "{}: database {} has no replica",
                    file.display(),
                    db.path.display()
                )))
            }
            _ => {
                return Err(Exit::Error(format!(
                    "{}: database {} has several replicas ({}): pick one with --replica NAME",
                    file.display(),
                    db.path.display(),
                    names()
                )))
            }
        },
    };
    Ok(Resolved {
        url: replica.url.clone(),
        db: Some(db.path.clone()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn source(url: &str, config: Option<&Path>, replica: Option<&str>) -> Source {
        Source {
            url: url.into(),
            config: config.map(Path::to_owned),
            replica: replica.map(str::to_owned),
            no_expand_env: false,
        }
    }

    fn message(r: Result<Resolved, Exit>) -> String {
        match r {
            Err(Exit::Error(m)) => m,
            Err(Exit::Code(_)) => "exit code".into(),
            Ok(r) => panic!("resolved: {r:?}"),
        }
    }

    #[test]
    fn a_database_path_is_looked_up_in_the_config_and_picks_its_replica() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("app.db");
        let file = dir.path().join("litestream.yml");
        std::fs::write(
            &file,
            format!(
                "dbs:\n  - path: {}\n    replicas:\n      - url: file://{}/a\n      - name: second\n        url: file://{}/b\n  - path: {}/one.db\n    replicas:\n      - url: s3://bucket/one\n",
                db.display(),
                dir.path().display(),
                dir.path().display(),
                dir.path().display()
            ),
        )
        .unwrap();
        // The database need not exist (a restore before the first start).
        let one = source(
            &format!("{}/one.db", dir.path().display()),
            Some(&file),
            None,
        );
        assert_eq!(
            one.resolve().unwrap(),
            Resolved {
                url: "s3://bucket/one?virtual_hosted_style_request=true".into(),
                db: Some(dir.path().join("one.db")),
            }
        );
        let named = source(db.to_str().unwrap(), Some(&file), Some("second"));
        assert_eq!(
            named.resolve().unwrap().url,
            format!("file://{}/b", dir.path().display())
        );
        let several = message(source(db.to_str().unwrap(), Some(&file), None).resolve());
        assert!(
            several.contains("several replicas (file, second)"),
            "{several}"
        );
        let unknown = message(source(db.to_str().unwrap(), Some(&file), Some("x")).resolve());
        assert!(unknown.contains("no replica named \"x\""), "{unknown}");
        let missing = message(source("/elsewhere.db", Some(&file), None).resolve());
        assert!(
            missing.contains("names no database /elsewhere.db"),
            "{missing}"
        );
    }

    #[test]
    fn urls_and_directories_are_replicas_and_a_file_asks_for_the_config() {
        let dir = tempfile::tempdir().unwrap();
        let url = source("s3://bucket/db", None, None).resolve().unwrap();
        assert_eq!(url.url, "s3://bucket/db");
        let here = source(dir.path().to_str().unwrap(), None, None)
            .resolve()
            .unwrap();
        assert_eq!(here.db, None);
        let db = dir.path().join("app.db");
        std::fs::write(&db, b"SQLite format 3\0").unwrap();
        // (With no default config naming it: this test's environment has
        // no /etc/litestream.yml naming a temporary file.)
        let file = message(source(db.to_str().unwrap(), None, None).resolve());
        assert!(file.contains("is a file, not a replica location"), "{file}");
        assert!(file.contains("--config FILE"), "{file}");
        let picked = message(source("s3://b/p", None, Some("s3")).resolve());
        assert!(picked.contains("a replica URL already"), "{picked}");
    }
}
