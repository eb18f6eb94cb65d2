//! Litestream's command-line spellings: Go's `flag` package takes long
//! flags with one dash (`-config`, `-if-replica-exists`, `-o`), so every
//! Litestream command line and entrypoint script is written that way. Each
//! argument spelled `-NAME` or `-NAME=VALUE`, where `--NAME` is one of our
//! long flags, is read as `--NAME`; everything after `--` is left alone.

use std::collections::HashSet;
use std::ffi::OsString;

/// The long flag names of `command` and all its subcommands.
pub(crate) fn long_names(command: &clap::Command) -> HashSet<String> {
    let mut names = HashSet::new();
    collect(command, &mut names);
    names
}

fn collect(command: &clap::Command, names: &mut HashSet<String>) {
    for arg in command.get_arguments() {
        if let Some(long) = arg.get_long() {
            names.insert(long.to_owned());
        }
        for alias in arg.get_all_aliases().into_iter().flatten() {
            names.insert(alias.to_owned());
        }
    }
    for sub in command.get_subcommands() {
        collect(sub, names);
    }
}

/// `args` (the program name first) with Litestream's one-dash long flags
/// spelled with two dashes.
pub(crate) fn with_double_dashes(
    args: impl IntoIterator<Item = OsString>,
    longs: &HashSet<String>,
) -> Vec<OsString> {
    let mut out = Vec::new();
    let mut rest = false;
    for arg in args {
        if rest || out.is_empty() {
            out.push(arg);
            continue;
        }
        if arg == "--" {
            rest = true;
            out.push(arg);
            continue;
        }
        let rewritten = arg.to_str().and_then(|s| {
            let body = s.strip_prefix('-').filter(|b| !b.starts_with('-'))?;
            let name = body.split_once('=').map_or(body, |(n, _)| n);
            (name.len() > 1 && longs.contains(name)).then(|| OsString::from(format!("-{s}")))
        });
        out.push(rewritten.unwrap_or(arg));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rewrite(args: &[&str]) -> Vec<String> {
        let longs: HashSet<String> = ["config", "if-replica-exists", "timestamp", "output"]
            .into_iter()
            .map(String::from)
            .collect();
        with_double_dashes(args.iter().map(OsString::from), &longs)
            .into_iter()
            .map(|a| a.into_string().unwrap())
            .collect()
    }

    #[test]
    fn one_dash_long_flags_become_two_dash_ones() {
        assert_eq!(
            rewrite(&[
                "replica",
                "restore",
                "-if-replica-exists",
                "-config",
                "l.yml",
                "/db"
            ]),
            [
                "replica",
                "restore",
                "--if-replica-exists",
                "--config",
                "l.yml",
                "/db"
            ]
        );
        assert_eq!(
            rewrite(&["replica", "restore", "-timestamp=2026-01-01T00:00:00Z", "x"]),
            [
                "replica",
                "restore",
                "--timestamp=2026-01-01T00:00:00Z",
                "x"
            ]
        );
    }

    #[test]
    fn short_flags_unknown_names_values_and_the_rest_are_left_alone() {
        assert_eq!(
            rewrite(&["replica", "restore", "-o", "x.db", "-bogus", "--config", "c"]),
            ["replica", "restore", "-o", "x.db", "-bogus", "--config", "c"]
        );
        assert_eq!(
            rewrite(&["replica", "x", "--", "-config", "-"]),
            ["replica", "x", "--", "-config", "-"]
        );
        // The program name is never touched.
        assert_eq!(rewrite(&["-config"]), ["-config"]);
    }
}
