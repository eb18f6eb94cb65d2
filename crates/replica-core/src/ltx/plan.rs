//! Which LTX files rebuild the database at a target: Litestream 0.5's
//! restore plan, with a hole before the target an error for every target.

use chrono::{DateTime, Utc};

use super::{LtxFileInfo, TxId, SNAPSHOT_LEVEL};
use crate::error::{Error, Result};

/// How far to restore.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LtxTarget {
    /// The newest TXID the replica holds.
    #[default]
    Latest,
    /// Exactly this TXID (inclusive).
    Txid(TxId),
    /// The newest state whose files' times are all before this instant
    /// (files' `created_at`, which should be their header timestamps).
    Timestamp(DateTime<Utc>),
}

/// The files to apply, in order, and the TXID they reach.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LtxPlan {
    /// A snapshot (or a file starting at TXID 1) first, then files each
    /// beginning at or before the TXID after the previous one's end.
    pub files: Vec<LtxFileInfo>,
    /// The TXID the database is at after the last file.
    pub txid: TxId,
}

/// Litestream 0.5's tie-break between two candidates that both extend the
/// chain: the larger max TXID, then the smaller min, then the higher level,
/// then the older file.
fn better(candidate: &LtxFileInfo, than: &LtxFileInfo) -> bool {
    (
        candidate.max_txid,
        std::cmp::Reverse(candidate.min_txid),
        candidate.level,
        std::cmp::Reverse(candidate.created_at),
    ) > (
        than.max_txid,
        std::cmp::Reverse(than.min_txid),
        than.level,
        std::cmp::Reverse(than.created_at),
    )
}

/// The plan for `target` over `files` (every level's listing, any order):
/// the newest snapshot (L9) whose max TXID is at or below the target; then,
/// repeatedly, of the files of levels 0..=8 that begin at or before the next
/// TXID and end after the current one (and at or below the target), the one
/// reaching furthest. **Beyond Litestream**: the plan must reach the target
/// — the given TXID, the newest TXID of the replica, or for a timestamp the
/// newest TXID of any file before it — or it is an [`Error::TxidHole`]
/// naming the missing TXIDs; a TXID past the replica's end, or one no chain
/// of files ends at, is [`Error::NotFound`] naming what can be restored.
pub fn plan_restore(files: &[LtxFileInfo], target: LtxTarget) -> Result<LtxPlan> {
    if target == LtxTarget::Txid(TxId(0)) {
        return Err(Error::invalid("TXID 0: TXIDs start at 1"));
    }
    let eligible = |f: &LtxFileInfo| match target {
        LtxTarget::Latest => true,
        LtxTarget::Txid(t) => f.max_txid <= t,
        LtxTarget::Timestamp(at) => f.created_at < at,
    };
    let newest = files.iter().map(|f| f.max_txid).max();
    let Some(newest) = newest else {
        return Err(Error::not_found("LTX files: the replica holds none"));
    };
    let goal = match target {
        LtxTarget::Latest => newest,
        LtxTarget::Txid(t) if t > newest => {
            return Err(Error::not_found(format!(
                "TXID {t}: the replica's newest TXID is {newest}"
            )))
        }
        LtxTarget::Txid(t) => t,
        LtxTarget::Timestamp(at) => files
            .iter()
            .filter(|f| eligible(f))
            .map(|f| f.max_txid)
            .max()
            .ok_or_else(|| {
                Error::not_found(format!(
                    "a state at {}: every LTX file of the replica is newer",
                    at.to_rfc3339()
                ))
            })?,
    };

    let mut plan = Vec::new();
    let snapshot = files
        .iter()
        .filter(|f| f.level == SNAPSHOT_LEVEL && f.min_txid.0 == 1 && eligible(f))
        .reduce(|a, b| if better(b, a) { b } else { a });
    let mut current = TxId(0);
    if let Some(s) = snapshot {
        current = s.max_txid;
        plan.push(s.clone());
    }
    while current < goal {
        let next = files
            .iter()
            .filter(|f| {
                f.level < SNAPSHOT_LEVEL
                    && eligible(f)
                    && f.min_txid.0 <= current.0 + 1
                    && f.max_txid > current
            })
            .reduce(|a, b| if better(b, a) { b } else { a });
        let Some(next) = next else { break };
        current = next.max_txid;
        plan.push(next.clone());
    }
    if current >= goal {
        return Ok(LtxPlan {
            files: plan,
            txid: current,
        });
    }
    // Why the chain stops: a hole (no file begins at current + 1), or files
    // that go past the target but none that ends at it.
    let after: Vec<&LtxFileInfo> = files
        .iter()
        .filter(|f| f.level < SNAPSHOT_LEVEL && f.max_txid > current)
        .collect();
    let spanning = after.iter().find(|f| f.min_txid.0 <= current.0 + 1);
    if let Some(f) = spanning {
        let reachable = after
            .iter()
            .filter(|f| f.min_txid.0 <= current.0 + 1)
            .map(|f| f.max_txid)
            .min()
            .unwrap_or(f.max_txid);
        return Err(Error::not_found(format!(
            "a state at TXID {goal}: no chain of LTX files ends there (the nearest \
             restorable TXIDs are {current} and {reachable}; {} spans it)",
            f.name()
        )));
    }
    let resume = after.iter().map(|f| f.min_txid).min();
    let last = resume.map_or(goal.0, |r| r.0 - 1).min(goal.0);
    Err(Error::TxidHole {
        first: current.0 + 1,
        last,
        detail: match (current.0, resume) {
            (0, _) => {
                "no snapshot at or before the target and no file beginning at TXID 1".to_owned()
            }
            (_, Some(r)) => {
                format!("the files reach TXID {current}, and the next file begins at {r}")
            }
            (_, None) => format!("the files reach TXID {current}, and nothing follows"),
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn f(level: u8, min: u64, max: u64) -> LtxFileInfo {
        LtxFileInfo {
            level,
            min_txid: TxId(min),
            max_txid: TxId(max),
            size: 1,
            created_at: DateTime::from_timestamp(1_000 + max as i64, 0).unwrap(),
        }
    }

    fn names(plan: &LtxPlan) -> Vec<(u8, u64, u64)> {
        plan.files
            .iter()
            .map(|f| (f.level, f.min_txid.0, f.max_txid.0))
            .collect()
    }

    fn replica() -> Vec<LtxFileInfo> {
        vec![
            f(0, 1, 1),
            f(0, 2, 2),
            f(0, 3, 3),
            f(0, 4, 4),
            f(0, 5, 5),
            f(0, 6, 6),
            f(0, 7, 7),
            f(1, 1, 3),
            f(1, 4, 6),
            f(2, 1, 6),
            f(9, 1, 2),
            f(9, 1, 5),
        ]
    }

    #[test]
    fn the_latest_state_takes_the_newest_snapshot_then_the_longest_steps() {
        let plan = plan_restore(&replica(), LtxTarget::Latest).unwrap();
        assert_eq!(names(&plan), [(9, 1, 5), (2, 1, 6), (0, 7, 7)]);
        assert_eq!(plan.txid, TxId(7));
    }

    #[test]
    fn a_txid_target_uses_only_files_ending_at_or_before_it() {
        let plan = plan_restore(&replica(), LtxTarget::Txid(TxId(4))).unwrap();
        assert_eq!(names(&plan), [(9, 1, 2), (1, 1, 3), (0, 4, 4)]);
        let plan = plan_restore(&replica(), LtxTarget::Txid(TxId(1))).unwrap();
        assert_eq!(names(&plan), [(0, 1, 1)]);
    }

    #[test]
    fn a_timestamp_target_uses_files_made_before_it() {
        let at = DateTime::from_timestamp(1_000 + 4, 500_000_000).unwrap();
        let plan = plan_restore(&replica(), LtxTarget::Timestamp(at)).unwrap();
        assert_eq!(plan.txid, TxId(4));
        let at = DateTime::from_timestamp(1_000, 0).unwrap();
        assert!(plan_restore(&replica(), LtxTarget::Timestamp(at))
            .unwrap_err()
            .is_not_found());
    }

    #[test]
    fn a_hole_before_the_target_is_an_error_for_every_target() {
        let mut files = replica();
        files.retain(|f| !(f.level < 9 && f.min_txid.0 <= 6 && f.max_txid.0 >= 6));
        files.push(f(0, 8, 9));
        for target in [
            LtxTarget::Latest,
            LtxTarget::Txid(TxId(8)),
            LtxTarget::Txid(TxId(9)),
        ] {
            match plan_restore(&files, target).unwrap_err() {
                Error::TxidHole { first, last, .. } => {
                    assert_eq!((first, last), (6, 6), "{target:?}")
                }
                other => panic!("{target:?}: {other}"),
            }
        }
        // Up to the hole still restores.
        assert_eq!(
            plan_restore(&files, LtxTarget::Txid(TxId(5))).unwrap().txid,
            TxId(5)
        );
    }

    #[test]
    fn without_a_snapshot_the_chain_must_begin_at_txid_1() {
        let files = vec![f(0, 2, 2), f(0, 3, 3)];
        match plan_restore(&files, LtxTarget::Latest).unwrap_err() {
            Error::TxidHole { first, last, .. } => assert_eq!((first, last), (1, 1)),
            other => panic!("{other}"),
        }
    }

    #[test]
    fn targets_past_the_end_or_inside_a_compaction_are_not_found() {
        let err = plan_restore(&replica(), LtxTarget::Txid(TxId(8))).unwrap_err();
        assert!(
            err.is_not_found() && err.to_string().contains("newest TXID is 0000000000000007"),
            "{err}"
        );
        let files = vec![f(9, 1, 2), f(1, 1, 6)];
        let err = plan_restore(&files, LtxTarget::Txid(TxId(4))).unwrap_err();
        assert!(
            err.is_not_found() && err.to_string().contains("no chain"),
            "{err}"
        );
        assert!(plan_restore(&[], LtxTarget::Latest)
            .unwrap_err()
            .is_not_found());
    }

    #[test]
    fn txid_0_is_an_invalid_target() {
        assert!(plan_restore(&replica(), LtxTarget::Txid(TxId(0)))
            .unwrap_err()
            .is_invalid_argument());
    }

    #[test]
    fn level_9_files_not_starting_at_1_are_never_snapshots() {
        let files = vec![f(9, 3, 5), f(0, 1, 1)];
        let plan = plan_restore(&files, LtxTarget::Txid(TxId(1))).unwrap();
        assert_eq!(names(&plan), [(0, 1, 1)]);
    }
}
