//! The LTX decoder on damaged and arbitrary input: an error, never a panic,
//! and the same outcome however the input arrives (whole, or in short
//! reads of any size). Memory is one page plus fixed buffers by design (a
//! header's page size is checked before anything is allocated for it).
//!
//! Cases per property come from `REPLICA_FUZZ_CASES` (default 2,000;
//! `cargo xtask reliability` runs 250,000).

use std::io::Read;

use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use replica_ltx::{Decoder, Encoder, Header, LtxError};

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

/// A reader handing out at most `step` bytes per read.
struct Short<'a> {
    data: &'a [u8],
    step: usize,
}

impl Read for Short<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = buf.len().min(self.step).min(self.data.len());
        buf[..n].copy_from_slice(&self.data[..n]);
        self.data = &self.data[n..];
        Ok(n)
    }
}

/// Decodes everything: the pages (number and a checksum of each) and the
/// trailer, or the error's text.
fn outcome<R: Read>(reader: R) -> Result<(Vec<(u32, u64)>, String), String> {
    let run = || -> Result<(Vec<(u32, u64)>, String), LtxError> {
        let mut dec = Decoder::new(reader)?;
        let mut pages = Vec::new();
        while let Some((pgno, data)) = dec.next_page()? {
            pages.push((pgno, replica_ltx::checksum::crc64(data)));
        }
        Ok((pages, format!("{:?}", dec.finish()?)))
    };
    run().map_err(|e| e.to_string())
}

fn sample() -> Vec<u8> {
    let header = Header::new(4096, 12, 5, 9);
    let mut enc = Encoder::new(Vec::new(), header).unwrap();
    for pgno in [1u32, 2, 5, 9, 12] {
        let page: Vec<u8> = (0..4096u32).map(|i| ((i * pgno) % 251) as u8).collect();
        enc.encode_page(pgno, &page).unwrap();
    }
    enc.finish(0).unwrap().1
}

#[test]
fn damaged_files_decode_the_same_whole_or_in_short_reads_and_never_panic() {
    let file = sample();
    let strategy = (
        proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..6),
        any::<prop::sample::Index>(),
        1usize..700,
    );
    runner()
        .run(&strategy, |(flips, cut, step)| {
            let mut bad = file.clone();
            for (at, byte) in &flips {
                let at = at.index(bad.len());
                bad[at] = *byte;
            }
            bad.truncate(cut.index(bad.len() + 1));
            let whole = outcome(&bad[..]);
            let short = outcome(Short { data: &bad, step });
            prop_assert_eq!(&whole, &short);
            if bad != file {
                prop_assert!(whole.is_err(), "a damaged file decoded");
            }
            Ok(())
        })
        .unwrap();
}

#[test]
fn arbitrary_bytes_are_an_error_not_a_panic() {
    runner()
        .run(&proptest::collection::vec(any::<u8>(), 0..400), |bytes| {
            let whole = outcome(&bytes[..]);
            prop_assert!(whole.is_err());
            prop_assert_eq!(
                whole,
                outcome(Short {
                    data: &bytes,
                    step: 3
                })
            );
            Ok(())
        })
        .unwrap();
}
