//! The WAL applier on damaged and arbitrary WALs: an error (or a sound
//! result), never a panic, and the same outcome whether an index arrives as
//! one segment or cut at any frame boundaries into many.
//!
//! Cases per property come from `REPLICA_FUZZ_CASES` (default 2,000;
//! `cargo xtask reliability` runs 250,000).

use std::collections::BTreeMap;

use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use replica_sqlite::wal::{ApplyError, PageSink, WalApplier, WalBuilder};

fn runner() -> TestRunner {
    let cases = std::env::var("REPLICA_FUZZ_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2_000);
    TestRunner::new(Config {
        cases,
        failure_persistence: None,
        ..Config::default()
    })
}

/// The database as pages (a checksum of each) and its size.
#[derive(Default, Debug, PartialEq)]
struct Pages(BTreeMap<u32, u64>, Option<u32>);

impl PageSink for Pages {
    fn write_page(&mut self, pgno: u32, page: &[u8]) -> std::io::Result<()> {
        let sum = page.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
            (h ^ u64::from(*b)).wrapping_mul(0x100_0000_01b3)
        });
        self.0.insert(pgno, sum);
        Ok(())
    }
    fn set_pages(&mut self, pages: u32) -> std::io::Result<()> {
        self.1 = Some(pages);
        Ok(())
    }
}

const PAGE: usize = 512;
const FRAME: usize = 24 + PAGE;

/// Five transactions over pages 1..=6 of a 4-page database.
fn sound_wal() -> Vec<u8> {
    let mut b = WalBuilder::new(PAGE as u32, false);
    b.frame(1, 0, 1).frame(2, 4, 2);
    b.frame(3, 0, 3).frame(5, 5, 4);
    b.frame(5, 0, 5).frame(6, 0, 6).frame(1, 6, 7);
    b.frame(2, 6, 8);
    b.frame(4, 0, 9).frame(3, 3, 10);
    b.bytes
}

/// Applies `wal` cut at the frame boundaries `cuts` (frame numbers) as one
/// index of a database of `before` pages.
fn apply(wal: &[u8], cuts: &[usize], before: u64, last: bool) -> Result<Pages, String> {
    let mut applier = WalApplier::new(PAGE as u32, before);
    let mut pages = Pages::default();
    let mut bounds: Vec<usize> = cuts
        .iter()
        .map(|f| 32 + f * FRAME)
        .filter(|at| *at < wal.len())
        .collect();
    bounds.sort_unstable();
    bounds.dedup();
    bounds.push(wal.len());
    let mut start = 0;
    let err = |e: ApplyError| match e {
        ApplyError::Wal(b) => format!("{} at {}", b.defect, b.offset),
        ApplyError::Io(e) => format!("io: {e}"),
    };
    for end in bounds {
        let piece = bytes::Bytes::copy_from_slice(&wal[start..end]);
        applier.apply_segment(&piece, &mut pages).map_err(err)?;
        start = end;
    }
    applier.finish(&mut pages, last).map_err(err)?;
    Ok(pages)
}

#[test]
fn damaged_wals_apply_the_same_whole_or_in_pieces_and_never_panic() {
    let wal = sound_wal();
    let strategy = (
        proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..4),
        any::<prop::sample::Index>(),
        proptest::collection::vec(0usize..12, 0..6),
        0u64..8,
        any::<bool>(),
    );
    runner()
        .run(&strategy, |(flips, cut, cuts, before, last)| {
            let mut bad = wal.clone();
            for (at, byte) in &flips {
                let at = at.index(bad.len());
                bad[at] = *byte;
            }
            bad.truncate(cut.index(bad.len() + 1));
            let whole = apply(&bad, &[], before, last);
            let pieces = apply(&bad, &cuts, before, last);
            prop_assert_eq!(&whole, &pieces);
            if let Ok(pages) = &whole {
                // Whatever was taken in is within the size the WAL gives.
                if let Some(size) = pages.1 {
                    prop_assert!(pages.0.keys().all(|p| *p <= size));
                }
            }
            Ok(())
        })
        .unwrap();
}

#[test]
fn arbitrary_bytes_as_a_wal_are_an_error_not_a_panic() {
    runner()
        .run(
            &(proptest::collection::vec(any::<u8>(), 0..2_000), 0u64..10),
            |(bytes, before)| {
                let whole = apply(&bytes, &[], before, true);
                prop_assert!(whole.is_err(), "arbitrary bytes applied");
                Ok(())
            },
        )
        .unwrap();
}

#[test]
fn the_sound_wal_gives_its_last_state() {
    let pages = apply(&sound_wal(), &[2, 5], 4, false).unwrap();
    assert_eq!(pages.1, Some(3));
    assert_eq!(pages.0.keys().copied().collect::<Vec<_>>(), [1, 2, 3]);
}
