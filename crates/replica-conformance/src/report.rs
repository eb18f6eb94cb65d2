//! Parity matrix: reports of several backends side by side.

use std::fmt::Write;

use crate::{Outcome, Report};

fn mark(outcome: Option<&Outcome>) -> &'static str {
    match outcome {
        Some(Outcome::Pass) => "pass",
        Some(Outcome::Fail) => "FAIL",
        Some(Outcome::Skip) => "skip",
        None => "-",
    }
}

/// Case names in the order of the first report that has them.
fn case_rows(reports: &[Report]) -> Vec<(String, String)> {
    let mut rows: Vec<(String, String)> = Vec::new();
    for r in reports {
        for c in &r.cases {
            if !rows.iter().any(|(_, n)| n == &c.case) {
                rows.push((c.group.clone(), c.case.clone()));
            }
        }
    }
    rows
}

fn outcome<'a>(report: &'a Report, case: &str) -> Option<&'a Outcome> {
    report
        .cases
        .iter()
        .find(|c| c.case == case)
        .map(|c| &c.outcome)
}

/// Counts of (pass, fail, skip) in a report.
pub fn totals(report: &Report) -> (usize, usize, usize) {
    let count = |o: Outcome| report.cases.iter().filter(|c| c.outcome == o).count();
    (
        count(Outcome::Pass),
        count(Outcome::Fail),
        count(Outcome::Skip),
    )
}

/// A plain-text matrix (cases × backends) with totals and failure messages.
pub fn text(reports: &[Report]) -> String {
    let rows = case_rows(reports);
    let width = rows
        .iter()
        .map(|(g, n)| g.len() + n.len() + 2)
        .max()
        .unwrap_or(4)
        .max(4);
    let mut out = String::new();
    let _ = write!(out, "{:width$}", "case");
    for r in reports {
        let _ = write!(out, "  {:>8}", r.backend);
    }
    out.push('\n');
    for (group, case) in &rows {
        let _ = write!(out, "{:width$}", format!("{group}::{case}"));
        for r in reports {
            let _ = write!(out, "  {:>8}", mark(outcome(r, case)));
        }
        out.push('\n');
    }
    out.push('\n');
    for r in reports {
        let (p, f, s) = totals(r);
        let _ = writeln!(out, "{}: {p} passed, {f} failed, {s} skipped", r.backend);
        for c in r.failures() {
            let _ = writeln!(out, "  FAIL {}: {}", c.case, c.message);
        }
        for c in r.cases.iter().filter(|c| c.outcome == Outcome::Skip) {
            let _ = writeln!(out, "  skip {}: {}", c.case, c.message);
        }
    }
    out
}

/// The matrix as a Markdown table.
pub fn markdown(reports: &[Report]) -> String {
    let mut out = String::from("| group | case |");
    for r in reports {
        let _ = write!(out, " {} |", r.backend);
    }
    out.push_str("\n|---|---|");
    for _ in reports {
        out.push_str("---|");
    }
    out.push('\n');
    for (group, case) in case_rows(reports) {
        let _ = write!(out, "| {group} | `{case}` |");
        for r in reports {
            let _ = write!(out, " {} |", mark(outcome(r, &case)));
        }
        out.push('\n');
    }
    out.push('\n');
    for r in reports {
        let (p, f, s) = totals(r);
        let _ = writeln!(
            out,
            "- **{}**: {p} passed, {f} failed, {s} skipped",
            r.backend
        );
    }
    out
}

/// All reports as pretty JSON.
pub fn json(reports: &[Report]) -> String {
    serde_json::to_string_pretty(reports).expect("reports serialize")
}
