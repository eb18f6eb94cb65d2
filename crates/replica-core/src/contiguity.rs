//! The WAL contiguity rule, shared by restore planning and `replica verify`.

use futures::TryStreamExt;

use crate::client::ByteStream;
use crate::error::{Error, Result};
use crate::layout::format_index;
use crate::lz4::decompress_stream;
use crate::types::{Generation, Pos, WalSegmentInfo};

/// Checks segments, fed in (index, offset) order with their decompressed
/// lengths, for holes.
///
/// Within an index the first segment is at offset 0 and each next offset is
/// the previous offset plus the previous segment's decompressed length; no
/// index between the first and the last is missing. Started
/// [from a snapshot](WalContiguity::from_snapshot) at index S, the first
/// segment must be at (S, 0): a snapshot whose own index has no segments
/// while a later index does has lost that index (Litestream 0.3.13 refuses
/// such a restore too: "missing WAL index"). A hole is [`Error::Gap`]
/// naming the missing position.
#[derive(Debug, Clone)]
pub struct WalContiguity {
    generation: Generation,
    start: Option<u64>,
    /// (index, offset) the next segment must have, once one was seen.
    next: Option<(u64, u64)>,
}

impl WalContiguity {
    /// A check where the first segment may be at any index (offset 0).
    pub fn new(generation: Generation) -> Self {
        WalContiguity {
            generation,
            start: None,
            next: None,
        }
    }

    /// A check for the WAL that follows a snapshot at `index`.
    pub fn from_snapshot(generation: Generation, index: u64) -> Self {
        WalContiguity {
            generation,
            start: Some(index),
            next: None,
        }
    }

    fn gap(&self, index: u64, offset: u64, found: String) -> Error {
        Error::Gap {
            expected: Pos {
                generation: self.generation.clone(),
                index,
                offset,
            },
            found,
        }
    }

    /// Checks the next segment; `len` is its decompressed length.
    ///
    /// After a hole the check goes on from the segment that revealed it, so a
    /// caller that keeps feeding segments hears of each hole once.
    pub fn check(&mut self, info: &WalSegmentInfo, len: u64) -> Result<()> {
        let result = self.check_start(info);
        self.extend(info, len);
        result
    }

    /// The first half of [`check`](Self::check), for a caller that learns
    /// the segment's length only after reading it: checks its position (on
    /// a hole, the check goes on from it). Call [`extend`](Self::extend)
    /// with its length next.
    pub fn check_start(&mut self, info: &WalSegmentInfo) -> Result<()> {
        let found = || format!("next segment at {}", info.pos());
        let (index, offset) = match (self.next, self.start) {
            (Some((index, offset)), _) if info.index == index => (index, offset),
            (Some((index, _)), _) => (index + 1, 0),
            (None, Some(start)) => (start, 0),
            (None, None) => (info.index, 0),
        };
        let result = if (info.index, info.offset) == (index, offset) {
            Ok(())
        } else {
            Err(self.gap(index, offset, found()))
        };
        self.next = Some((info.index, info.offset));
        result
    }

    /// Records the decompressed length of the segment [`check_start`](Self::check_start) took.
    pub fn extend(&mut self, info: &WalSegmentInfo, len: u64) {
        self.next = Some((info.index, info.offset + len));
    }

    /// Checks that the WAL reaches `target` (its last index is at least that).
    pub fn check_reaches(&self, target: u64) -> Result<()> {
        let last = self.next.map(|(i, _)| i).or(self.start);
        match last {
            Some(last) if last >= target => Ok(()),
            Some(last) => Err(self.gap(
                last + 1,
                0,
                format!("no segments for index {}", format_index(last + 1)),
            )),
            None => Err(self.gap(target, 0, "no WAL segments at all".to_owned())),
        }
    }
}

/// The rule of [`WalContiguity::from_snapshot`] on listings alone: a snapshot
/// at `snapshot_index` followed by WAL whose first index (at or after the
/// snapshot's) is `first_wal_index` has lost the snapshot's own index unless
/// the two are equal. `None` when nothing is missing.
pub fn snapshot_index_gap(
    generation: &Generation,
    snapshot_index: u64,
    first_wal_index: Option<u64>,
) -> Option<Error> {
    let first = first_wal_index?;
    (first > snapshot_index).then(|| Error::Gap {
        expected: Pos {
            generation: generation.clone(),
            index: snapshot_index,
            offset: 0,
        },
        found: format!(
            "no segments for the snapshot's own index {} while index {} follows (a missing \
             WAL index: the snapshot's own transactions after it are lost)",
            format_index(snapshot_index),
            format_index(first)
        ),
    })
}

/// Decompresses an LZ4 stream to count its bytes, holding one chunk at a time.
pub async fn decompressed_len(data: ByteStream) -> Result<u64> {
    plain_len(decompress_stream(data)).await
}

/// Counts the bytes of a stream, holding one chunk at a time.
pub async fn plain_len(data: ByteStream) -> Result<u64> {
    data.try_fold(0u64, |n, chunk| async move { Ok(n + chunk.len() as u64) })
        .await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn g() -> Generation {
        "00000000000000ab".parse().unwrap()
    }

    fn seg(index: u64, offset: u64) -> WalSegmentInfo {
        WalSegmentInfo::new(
            &Pos::new(g(), index, offset).unwrap(),
            1,
            chrono::Utc::now(),
        )
    }

    fn expected(err: Error) -> (u64, u64) {
        match err {
            Error::Gap { expected, .. } => (expected.index, expected.offset),
            other => panic!("expected a gap, got {other}"),
        }
    }

    #[test]
    fn contiguous_segments_pass() {
        let mut c = WalContiguity::new(g());
        for (i, o, len) in [(3, 0, 10), (3, 10, 5), (4, 0, 7), (5, 0, 1)] {
            c.check(&seg(i, o), len).unwrap();
        }
        c.check_reaches(5).unwrap();
    }

    #[test]
    fn holes_name_the_missing_position_and_each_is_reported_once() {
        let mut c = WalContiguity::new(g());
        assert_eq!(expected(c.check(&seg(3, 8), 1).unwrap_err()), (3, 0));
        let mut c = WalContiguity::new(g());
        c.check(&seg(3, 0), 10).unwrap();
        assert_eq!(expected(c.check(&seg(3, 11), 1).unwrap_err()), (3, 10));
        c.check(&seg(3, 12), 3).unwrap();
        let overlap = c.check(&seg(3, 9), 1).unwrap_err();
        assert_eq!(expected(overlap), (3, 15));
        assert_eq!(expected(c.check(&seg(5, 0), 1).unwrap_err()), (4, 0));
        assert_eq!(expected(c.check(&seg(6, 4), 1).unwrap_err()), (6, 0));
        assert_eq!(expected(c.check_reaches(7).unwrap_err()), (7, 0));
    }

    #[test]
    fn after_a_snapshot_the_wal_starts_at_its_own_index() {
        let mut c = WalContiguity::from_snapshot(g(), 7);
        c.check(&seg(7, 0), 1).unwrap();
        // Index 7 missing while 8 follows: its transactions are lost.
        for first in [8, 9] {
            let mut c = WalContiguity::from_snapshot(g(), 7);
            assert_eq!(expected(c.check(&seg(first, 0), 1).unwrap_err()), (7, 0));
        }
        let c = WalContiguity::from_snapshot(g(), 7);
        c.check_reaches(7).unwrap();
        assert_eq!(expected(c.check_reaches(8).unwrap_err()), (8, 0));
        assert!(snapshot_index_gap(&g(), 7, None).is_none());
        assert!(snapshot_index_gap(&g(), 7, Some(7)).is_none());
        assert_eq!(
            expected(snapshot_index_gap(&g(), 7, Some(8)).unwrap()),
            (7, 0)
        );
    }
}
