//! SQLite's WAL format, checked as SQLite itself would trust it, and applied
//! to a database file.
//!
//! A WAL file is a 32-byte header — magic `0x377f0682` or `0x377f0683` (the
//! low bit says the checksums read words big-endian), format version
//! 3007000, page size, checkpoint sequence, two salts, and a checksum of the
//! first 24 bytes — then frames: a 24-byte frame header (page number, the
//! database size in pages for a commit frame or 0, the two salts, a
//! checksum) and one page. Each frame's checksum continues the running
//! checksum from the header through every earlier frame, over the first 8
//! bytes of its header and its page. (See <https://www.sqlite.org/fileformat2.html#walformat>.)
//!
//! [`WalApplier`] takes one WAL index as the replica stores it — segments in
//! offset order, the first starting with the header — checks every byte of
//! it, and writes each committed page into the database file. Frames are
//! held until their transaction's commit frame has been checked, then
//! written: a transaction may span segments (Litestream 0.3.13 ships its
//! shadow WAL frame-aligned, not commit-aligned), and frames after the last
//! commit are never applied. An index that ends inside a transaction is an
//! error unless it is the last one restored (a transaction still being
//! uploaded is not part of the replica yet, as SQLite ignores it too).

use std::fmt;
use std::path::PathBuf;

mod build;
mod pending;

pub use build::{frames_of, WalBuilder};

use pending::Pending;
pub use pending::MEMORY_LIMIT as PENDING_MEMORY_LIMIT;

/// Size of the WAL header.
pub const WAL_HEADER_LEN: usize = 32;
/// Size of a frame header.
pub const FRAME_HEADER_LEN: usize = 24;
const MAGIC_LE: u32 = 0x377f_0682;
const MAGIC_BE: u32 = 0x377f_0683;
const VERSION: u32 = 3_007_000;

/// What is wrong with a WAL index (the position is given beside it).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum WalDefect {
    /// The index does not start with a WAL header at offset 0.
    MissingHeader,
    /// The header's magic number is not SQLite's.
    BadMagic(u32),
    /// The header names a WAL format version SQLite does not write.
    BadVersion(u32),
    /// The header's checksum does not match its first 24 bytes.
    HeaderChecksum,
    /// The WAL's page size is not the database's.
    PageSizeMismatch {
        /// Page size in the WAL header.
        wal: u32,
        /// Page size of the database (from the snapshot).
        database: u32,
    },
    /// A frame's salts are not the header's (it belongs to another WAL).
    SaltMismatch,
    /// A frame's checksum does not continue the running checksum.
    FrameChecksum,
    /// A frame names page 0.
    BadPageNumber,
    /// The segment ends inside a frame.
    TruncatedFrame {
        /// Bytes of the incomplete frame.
        len: usize,
    },
    /// The WAL index ends with frames after its last commit frame, and a
    /// later index follows (so a segment at its end is missing).
    NoCommit {
        /// Frames after the last commit.
        frames: usize,
    },
    /// A commit frame makes the database larger than its pages before the
    /// WAL plus every frame so far could fill (SQLite's checkpoint calls
    /// such a database malformed).
    CommitTooLarge {
        /// Database size in pages the commit frame gives.
        commit: u32,
        /// The database's size in pages before this WAL index.
        before: u64,
        /// Frames of the index up to and including the commit frame.
        frames: u64,
    },
}

impl fmt::Display for WalDefect {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WalDefect::MissingHeader => write!(f, "no WAL header at offset 0"),
            WalDefect::BadMagic(m) => write!(f, "bad WAL magic {m:#010x}"),
            WalDefect::BadVersion(v) => write!(f, "unsupported WAL format version {v}"),
            WalDefect::HeaderChecksum => write!(f, "WAL header checksum mismatch"),
            WalDefect::PageSizeMismatch { wal, database } => write!(
                f,
                "WAL page size {wal} differs from the database's page size {database}"
            ),
            WalDefect::SaltMismatch => {
                write!(
                    f,
                    "frame salts differ from the WAL header's (a frame of another WAL)"
                )
            }
            WalDefect::FrameChecksum => write!(
                f,
                "frame checksum mismatch (bytes changed, or a segment before this one is missing)"
            ),
            WalDefect::BadPageNumber => write!(f, "frame for page 0"),
            WalDefect::TruncatedFrame { len } => {
                write!(f, "segment ends inside a frame ({len} bytes of it)")
            }
            WalDefect::CommitTooLarge {
                commit,
                before,
                frames,
            } => write!(
                f,
                "the commit frame says the database has {commit} pages, more than its {before} \
                 pages before this WAL index and the {frames} frame(s) written since can make \
                 (SQLite would call the database malformed)"
            ),
            WalDefect::NoCommit { frames } => write!(
                f,
                "the WAL index ends with {frames} frame(s) after its last commit frame, though \
                 a later index follows (a segment at its end is missing)"
            ),
        }
    }
}

/// A defect and the WAL offset where it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WalBreak {
    /// Byte offset in the WAL file.
    pub offset: u64,
    /// What is wrong there.
    pub defect: WalDefect,
}

/// SQLite's WAL checksum over `data` (a multiple of 8 bytes), continuing `seed`.
pub fn checksum(seed: (u32, u32), data: &[u8], big_endian: bool) -> (u32, u32) {
    if big_endian {
        checksum_in::<true>(seed, data)
    } else {
        checksum_in::<false>(seed, data)
    }
}

/// [`checksum`] for one byte order, decided at compile time (the loop is
/// serial by nature; a word order chosen per word would cost a call).
#[inline]
fn checksum_in<const BIG: bool>(seed: (u32, u32), data: &[u8]) -> (u32, u32) {
    let (mut s1, mut s2) = seed;
    let word = |w: [u8; 4]| {
        if BIG {
            u32::from_be_bytes(w)
        } else {
            u32::from_le_bytes(w)
        }
    };
    for pair in data.chunks_exact(8) {
        let pair: &[u8; 8] = pair.try_into().expect("8 bytes");
        let x0 = word([pair[0], pair[1], pair[2], pair[3]]);
        let x1 = word([pair[4], pair[5], pair[6], pair[7]]);
        s1 = s1.wrapping_add(x0).wrapping_add(s2);
        s2 = s2.wrapping_add(x1).wrapping_add(s1);
    }
    (s1, s2)
}

fn be32(bytes: &[u8], at: usize) -> u32 {
    u32::from_be_bytes(bytes[at..at + 4].try_into().expect("4 bytes"))
}

/// The page size a database file's header names (bytes 16-17; 1 means 65536).
pub fn database_page_size(header: &[u8]) -> Option<u32> {
    if header.len() < 100 || &header[..16] != b"SQLite format 3\0" {
        return None;
    }
    let raw = u32::from(u16::from_be_bytes([header[16], header[17]]));
    let size = if raw == 1 { 65_536 } else { raw };
    (size.is_power_of_two() && (512..=65_536).contains(&size)).then_some(size)
}

/// A parsed WAL header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WalHeader {
    /// Page size of the frames.
    pub page_size: u32,
    /// Whether checksums read words big-endian.
    pub big_endian: bool,
    /// The two salts every frame of this WAL repeats.
    pub salts: (u32, u32),
    /// The header checksum, where the frames' running checksum starts.
    pub checksum: (u32, u32),
}

impl WalHeader {
    /// Parses and checks the 32-byte header.
    pub fn parse(bytes: &[u8]) -> Result<WalHeader, WalDefect> {
        if bytes.len() < WAL_HEADER_LEN {
            return Err(WalDefect::TruncatedFrame { len: bytes.len() });
        }
        let magic = be32(bytes, 0);
        let big_endian = match magic {
            MAGIC_LE => false,
            MAGIC_BE => true,
            other => return Err(WalDefect::BadMagic(other)),
        };
        let version = be32(bytes, 4);
        if version != VERSION {
            return Err(WalDefect::BadVersion(version));
        }
        let stored = (be32(bytes, 24), be32(bytes, 28));
        if checksum((0, 0), &bytes[..24], big_endian) != stored {
            return Err(WalDefect::HeaderChecksum);
        }
        Ok(WalHeader {
            page_size: be32(bytes, 8),
            big_endian,
            salts: (be32(bytes, 16), be32(bytes, 20)),
            checksum: stored,
        })
    }

    /// Checks that `frame` (header and page) continues this WAL after the
    /// running checksum `chain`: the header's salts, and the checksum over
    /// the frame's first 8 bytes and its page. Returns the new running
    /// checksum.
    pub fn continued_by(&self, chain: (u32, u32), frame: &[u8]) -> Result<(u32, u32), WalDefect> {
        if (be32(frame, 8), be32(frame, 12)) != self.salts {
            return Err(WalDefect::SaltMismatch);
        }
        let next = checksum(
            checksum(chain, &frame[..8], self.big_endian),
            &frame[FRAME_HEADER_LEN..],
            self.big_endian,
        );
        if next != (be32(frame, 16), be32(frame, 20)) {
            return Err(WalDefect::FrameChecksum);
        }
        Ok(next)
    }
}

/// Where an applier writes pages: a database file (or anything positioned).
pub trait PageSink {
    /// Writes `page` as page number `pgno` (1-based).
    fn write_page(&mut self, pgno: u32, page: &[u8]) -> std::io::Result<()>;
    /// Writes pages in ascending page order (a sink may merge neighbours
    /// into one write).
    fn write_pages(&mut self, pages: &[(u32, bytes::Bytes)]) -> std::io::Result<()> {
        pages
            .iter()
            .try_for_each(|(pgno, page)| self.write_page(*pgno, page))
    }
    /// Sets the database's size in pages (after the last commit of a WAL).
    fn set_pages(&mut self, pages: u32) -> std::io::Result<()>;
}

/// A database file as a [`PageSink`].
#[derive(Debug)]
pub struct FilePages<'a> {
    file: &'a std::fs::File,
    page_size: u32,
}

impl<'a> FilePages<'a> {
    /// Pages of `page_size` bytes in `file`.
    pub fn new(file: &'a std::fs::File, page_size: u32) -> Self {
        FilePages { file, page_size }
    }
}

impl PageSink for FilePages<'_> {
    fn write_page(&mut self, pgno: u32, page: &[u8]) -> std::io::Result<()> {
        use std::os::unix::fs::FileExt;
        self.file
            .write_all_at(page, u64::from(pgno - 1) * u64::from(self.page_size))
    }

    /// Runs of consecutive pages go out in one `pwritev` each.
    fn write_pages(&mut self, pages: &[(u32, bytes::Bytes)]) -> std::io::Result<()> {
        const MAX_SLICES: usize = 512;
        let mut start = 0;
        while start < pages.len() {
            let mut end = start + 1;
            while end < pages.len()
                && end - start < MAX_SLICES
                && pages[end].0 == pages[end - 1].0 + 1
            {
                end += 1;
            }
            let run = &pages[start..end];
            let mut offset = u64::from(run[0].0 - 1) * u64::from(self.page_size);
            let mut slices: Vec<std::io::IoSlice<'_>> =
                run.iter().map(|(_, p)| std::io::IoSlice::new(p)).collect();
            let mut rest = &mut slices[..];
            while !rest.is_empty() {
                let n = rustix::io::pwritev(self.file, rest, offset)?;
                if n == 0 {
                    return Err(std::io::ErrorKind::WriteZero.into());
                }
                offset += n as u64;
                std::io::IoSlice::advance_slices(&mut rest, n);
            }
            start = end;
        }
        Ok(())
    }

    fn set_pages(&mut self, pages: u32) -> std::io::Result<()> {
        self.file
            .set_len(u64::from(pages) * u64::from(self.page_size))
    }
}

/// One committed transaction of a WAL, as [`WalApplier::apply_segment_observed`]
/// reports it.
#[derive(Debug)]
pub struct Transaction<'a> {
    /// The WAL's salts.
    pub salts: (u32, u32),
    /// The WAL offset just past its commit frame.
    pub end: u64,
    /// The database's size in pages after it.
    pub commit: u32,
    pending: &'a Pending,
}

impl Transaction<'_> {
    /// The WAL offset of its first frame.
    pub fn start(&self) -> u64 {
        self.pending.first_offset().unwrap_or(self.end)
    }

    /// Its frames in WAL order: (WAL offset, page number, page); frames of a
    /// large transaction are read back from disk one at a time.
    pub fn frames(&self) -> impl Iterator<Item = std::io::Result<(u64, u32, bytes::Bytes)>> + '_ {
        self.pending.frames()
    }
}

/// Checks and applies one WAL index, segment by segment (or in any
/// frame-aligned pieces).
///
/// Memory is bounded whatever the WAL holds: committed pages are held up to
/// [`HELD_LIMIT`] bytes before they are written out, and the frames of a
/// transaction not committed yet up to [`PENDING_MEMORY_LIMIT`] bytes before
/// they spill to an unlinked temporary file.
#[derive(Debug)]
pub struct WalApplier {
    database_page_size: u32,
    header: Option<WalHeader>,
    running: (u32, u32),
    /// Bytes of the WAL seen so far (the offset the next segment must have).
    offset: u64,
    /// The database's size in pages before this index.
    pages_before: u64,
    /// Frames of the index checked so far.
    frames_seen: u64,
    /// Database size in pages after the last commit applied.
    committed_pages: Option<u32>,
    frames_applied: u64,
    /// Checked frames of a transaction whose commit frame has not come yet.
    uncommitted: Pending,
    /// The newest committed version of each page not written yet: a page
    /// rewritten by many transactions of an index is written once (as
    /// SQLite's checkpoint does), in page order.
    committed: std::collections::BTreeMap<u32, bytes::Bytes>,
    /// Bytes held by `committed` (written out beyond [`HELD_LIMIT`]).
    held: usize,
}

/// Committed pages held before they are written out mid-index.
pub const HELD_LIMIT: usize = 64 << 20;

/// An error of [`WalApplier`]: a defect of the WAL, or of writing the pages.
#[derive(Debug)]
pub enum ApplyError {
    /// The WAL is not as SQLite would trust it.
    Wal(WalBreak),
    /// Writing a page (or spilling an uncommitted one) failed.
    Io(std::io::Error),
}

impl From<WalBreak> for ApplyError {
    fn from(b: WalBreak) -> Self {
        ApplyError::Wal(b)
    }
}

/// The most pages a database of `before` pages can have after `frames`
/// frames of WAL, by SQLite's checkpoint rule: each frame adds at most one
/// page, and the lock-byte page (never written) may be skipped over, which
/// SQLite allows for with 65,536 bytes.
pub fn max_pages_after(before: u64, frames: u64, page_size: u32) -> u64 {
    before + frames + (65_536 / u64::from(page_size.max(1)))
}

impl WalApplier {
    /// An applier for one WAL index of a database with `database_page_size`
    /// that held `pages_before` pages when the index began.
    pub fn new(database_page_size: u32, pages_before: u64) -> Self {
        WalApplier {
            database_page_size,
            header: None,
            running: (0, 0),
            offset: 0,
            pages_before,
            frames_seen: 0,
            committed_pages: None,
            frames_applied: 0,
            uncommitted: Pending::new(None),
            committed: std::collections::BTreeMap::new(),
            held: 0,
        }
    }

    /// Spills uncommitted frames to an unlinked file in `dir` (by default,
    /// the system's temporary directory).
    pub fn spilling_to(mut self, dir: PathBuf) -> Self {
        self.uncommitted = Pending::new(Some(dir));
        self
    }

    /// Writes out the committed pages held, in page order.
    fn flush(&mut self, sink: &mut dyn PageSink) -> Result<(), ApplyError> {
        let pages: Vec<(u32, bytes::Bytes)> =
            std::mem::take(&mut self.committed).into_iter().collect();
        self.held = 0;
        sink.write_pages(&pages).map_err(ApplyError::Io)
    }

    /// The database page size the WAL must have.
    pub fn page_size(&self) -> u32 {
        self.database_page_size
    }

    /// The WAL offset the next segment must start at.
    pub fn offset(&self) -> u64 {
        self.offset
    }

    /// Frames written to the database so far.
    pub fn frames_applied(&self) -> u64 {
        self.frames_applied
    }

    /// Whether uncommitted frames have been spilled to disk.
    pub fn spilled(&self) -> bool {
        self.uncommitted.spilled()
    }

    /// The database's size in pages after the last commit taken in (before
    /// any, the size it began with).
    pub fn pages(&self) -> u64 {
        self.committed_pages.map_or(self.pages_before, u64::from)
    }

    /// Checks the segment that starts at the current [`offset`](Self::offset)
    /// and takes in every transaction whose commit frame it checks (frames of
    /// a transaction not committed yet are held for the next segment). The
    /// newest committed version of each page is written to `sink` by
    /// [`finish`](Self::finish) (or earlier, when many are held). On a
    /// defect, nothing of the segment is taken in. A segment may be fed in
    /// pieces: any cut between frames (after the header) is a segment too.
    pub fn apply_segment(
        &mut self,
        data: &bytes::Bytes,
        sink: &mut dyn PageSink,
    ) -> Result<(), ApplyError> {
        self.apply_segment_observed(data, sink, &mut |_| Ok(()))
    }

    /// [`apply_segment`](Self::apply_segment), telling `on_commit` of each
    /// transaction as its commit frame is taken in (before any of its pages
    /// reach `sink`).
    pub fn apply_segment_observed(
        &mut self,
        data: &bytes::Bytes,
        sink: &mut dyn PageSink,
        on_commit: &mut dyn FnMut(&Transaction<'_>) -> std::io::Result<()>,
    ) -> Result<(), ApplyError> {
        let start = self.offset;
        let mut at = 0usize;
        let header = match self.header {
            Some(h) => h,
            None => {
                if start != 0 {
                    return Err(WalBreak {
                        offset: start,
                        defect: WalDefect::MissingHeader,
                    }
                    .into());
                }
                let h = WalHeader::parse(data).map_err(|defect| WalBreak { offset: 0, defect })?;
                if h.page_size != self.database_page_size {
                    return Err(WalBreak {
                        offset: 0,
                        defect: WalDefect::PageSizeMismatch {
                            wal: h.page_size,
                            database: self.database_page_size,
                        },
                    }
                    .into());
                }
                at = WAL_HEADER_LEN;
                h
            }
        };
        let frame_len = FRAME_HEADER_LEN + header.page_size as usize;
        let mut running = if self.header.is_some() {
            self.running
        } else {
            header.checksum
        };
        // Check every frame of the segment before taking in any of it.
        let mut checked: Vec<(u64, u32, u32, usize)> = Vec::new();
        let mut frames = self.frames_seen;
        while at < data.len() {
            let offset = start + at as u64;
            let rest = &data[at..];
            if rest.len() < frame_len {
                return Err(WalBreak {
                    offset,
                    defect: WalDefect::TruncatedFrame { len: rest.len() },
                }
                .into());
            }
            let frame = &rest[..frame_len];
            running = header
                .continued_by(running, frame)
                .map_err(|defect| WalBreak { offset, defect })?;
            let pgno = be32(frame, 0);
            if pgno == 0 {
                return Err(WalBreak {
                    offset,
                    defect: WalDefect::BadPageNumber,
                }
                .into());
            }
            frames += 1;
            let commit = be32(frame, 4);
            if commit != 0
                && u64::from(commit) > max_pages_after(self.pages_before, frames, header.page_size)
            {
                return Err(WalBreak {
                    offset,
                    defect: WalDefect::CommitTooLarge {
                        commit,
                        before: self.pages_before,
                        frames,
                    },
                }
                .into());
            }
            checked.push((offset, pgno, commit, at));
            at += frame_len;
        }
        // Sound: take in each transaction as its commit frame arrives.
        for (offset, pgno, commit, at) in checked {
            let page = data.slice(at + FRAME_HEADER_LEN..at + frame_len);
            self.uncommitted
                .push(offset, pgno, page)
                .map_err(ApplyError::Io)?;
            if commit != 0 {
                on_commit(&Transaction {
                    salts: header.salts,
                    end: offset + frame_len as u64,
                    commit,
                    pending: &self.uncommitted,
                })
                .map_err(ApplyError::Io)?;
                self.take_in_uncommitted(sink)?;
                self.committed_pages = Some(commit);
            }
        }
        if self.held > HELD_LIMIT {
            self.flush(sink)?;
        }
        self.header = Some(header);
        self.running = running;
        self.frames_seen = frames;
        self.offset = start + data.len() as u64;
        Ok(())
    }

    /// Moves a committed transaction's frames into the committed pages.
    fn take_in_uncommitted(&mut self, sink: &mut dyn PageSink) -> Result<(), ApplyError> {
        let pending = std::mem::take(&mut self.uncommitted);
        for frame in pending.frames() {
            let (_, pgno, page) = frame.map_err(ApplyError::Io)?;
            self.held += page.len();
            if let Some(old) = self.committed.insert(pgno, page) {
                self.held -= old.len();
            }
            self.frames_applied += 1;
            if pending.spilled() && self.held > HELD_LIMIT {
                self.flush(sink)?;
            }
        }
        self.uncommitted = pending;
        self.uncommitted.clear();
        Ok(())
    }

    /// Ends the index: sets the database's size to that of its last commit.
    ///
    /// Frames after the last commit are dropped if this is the last index
    /// restored (`last`); otherwise they mean a missing segment, which is
    /// [`WalDefect::NoCommit`] at the first of them.
    pub fn finish(mut self, sink: &mut dyn PageSink, last: bool) -> Result<(), ApplyError> {
        if let Some(offset) = self.uncommitted.first_offset() {
            if !last {
                return Err(WalBreak {
                    offset,
                    defect: WalDefect::NoCommit {
                        frames: self.uncommitted.len(),
                    },
                }
                .into());
            }
        }
        if let Some(pages) = self.committed_pages {
            // Pages past the database's final size are cut by the truncation.
            self.committed.retain(|pgno, _| *pgno <= pages);
        }
        self.flush(sink)?;
        match self.committed_pages {
            Some(pages) => sink.set_pages(pages).map_err(ApplyError::Io),
            None => Ok(()),
        }
    }
}

/// The page count a database header gives where SQLite trusts it (bytes
/// 28-31, when the change counter at 24 equals the version-valid-for number
/// at 92 and the count is not 0); `None` where SQLite uses the file's size.
pub fn header_page_count(header: &[u8]) -> Option<u32> {
    if header.len() < 100 {
        return None;
    }
    let (pages, change, valid_for) = (be32(header, 28), be32(header, 24), be32(header, 92));
    (pages != 0 && change == valid_for).then_some(pages)
}

#[cfg(test)]
mod tests {
    use super::*;

    type Builder = WalBuilder;

    #[derive(Default)]
    struct Pages(std::collections::BTreeMap<u32, u8>, Option<u32>);

    impl PageSink for Pages {
        fn write_page(&mut self, pgno: u32, page: &[u8]) -> std::io::Result<()> {
            self.0.insert(pgno, page[0]);
            Ok(())
        }
        fn set_pages(&mut self, pages: u32) -> std::io::Result<()> {
            self.1 = Some(pages);
            Ok(())
        }
    }

    fn defect(result: Result<(), ApplyError>) -> WalBreak {
        match result {
            Err(ApplyError::Wal(b)) => b,
            other => panic!("expected a WAL defect, got {other:?}"),
        }
    }

    #[test]
    fn a_sound_wal_in_two_segments_applies_its_commits_in_order() {
        for big_endian in [false, true] {
            let mut w = Builder::new(512, big_endian);
            w.frame(1, 0, 1).frame(2, 2, 2);
            let cut = w.bytes.len();
            w.frame(1, 0, 3).frame(3, 3, 4);
            let all = bytes::Bytes::from(w.bytes.clone());
            let (a, b) = (all.slice(..cut), all.slice(cut..));
            let mut applier = WalApplier::new(512, 0);
            let mut pages = Pages::default();
            applier.apply_segment(&a, &mut pages).unwrap();
            assert_eq!(applier.offset(), cut as u64);
            applier.apply_segment(&b, &mut pages).unwrap();
            assert_eq!(applier.frames_applied(), 4);
            applier.finish(&mut pages, false).unwrap();
            assert_eq!(pages.0, [(1, 3), (2, 2), (3, 4)].into_iter().collect());
            assert_eq!(pages.1, Some(3));
        }
    }

    #[test]
    fn every_defect_is_named_with_its_offset_and_nothing_of_the_segment_is_applied() {
        let mut w = Builder::new(512, false);
        w.frame(1, 0, 1).frame(2, 2, 2);
        let sound = w.bytes.clone();
        let frame = FRAME_HEADER_LEN + 512;
        let second = (WAL_HEADER_LEN + frame) as u64;
        let check = |bytes: &[u8], db_page: u32| {
            let mut pages = Pages::default();
            let bytes = bytes::Bytes::copy_from_slice(bytes);
            let b = defect(WalApplier::new(db_page, 0).apply_segment(&bytes, &mut pages));
            assert!(pages.0.is_empty(), "applied despite {b:?}");
            b
        };
        let mut bad = sound.clone();
        bad[0] = 0;
        assert!(matches!(check(&bad, 512).defect, WalDefect::BadMagic(_)));
        let mut bad = sound.clone();
        bad[17] ^= 1;
        assert_eq!(check(&bad, 512).defect, WalDefect::HeaderChecksum);
        assert_eq!(
            check(&sound, 4096).defect,
            WalDefect::PageSizeMismatch {
                wal: 512,
                database: 4096
            }
        );
        let mut bad = sound.clone();
        bad[second as usize + FRAME_HEADER_LEN + 100] ^= 0x40;
        assert_eq!(
            check(&bad, 512),
            WalBreak {
                offset: second,
                defect: WalDefect::FrameChecksum
            }
        );
        let mut bad = sound.clone();
        bad[second as usize + 9] ^= 1;
        assert_eq!(check(&bad, 512).defect, WalDefect::SaltMismatch);
        assert_eq!(
            check(&sound[..sound.len() - 10], 512),
            WalBreak {
                offset: second,
                defect: WalDefect::TruncatedFrame { len: frame - 10 }
            }
        );
    }

    #[test]
    fn a_transaction_may_span_segments_and_is_written_at_its_commit() {
        let mut w = Builder::new(512, false);
        w.frame(1, 1, 1).frame(2, 0, 2);
        let cut = w.bytes.len();
        w.frame(3, 3, 3);
        let all = bytes::Bytes::from(w.bytes.clone());
        let mut applier = WalApplier::new(512, 0);
        let mut pages = Pages::default();
        applier
            .apply_segment(&all.slice(..cut), &mut pages)
            .unwrap();
        assert_eq!(applier.frames_applied(), 1, "page 2 waits for its commit");
        applier
            .apply_segment(&all.slice(cut..), &mut pages)
            .unwrap();
        assert_eq!(applier.frames_applied(), 3);
        applier.finish(&mut pages, false).unwrap();
        assert_eq!(pages.0, [(1, 1), (2, 2), (3, 3)].into_iter().collect());
        assert_eq!(pages.1, Some(3));
    }

    #[test]
    fn each_page_is_written_once_in_its_newest_version_within_the_final_size() {
        let mut w = Builder::new(512, false);
        w.frame(5, 5, 1)
            .frame(2, 5, 2)
            .frame(2, 0, 3)
            .frame(1, 3, 4);
        let all = bytes::Bytes::from(w.bytes.clone());
        let mut applier = WalApplier::new(512, 0);
        #[derive(Default)]
        struct Writes(Vec<u32>, Option<u32>);
        impl PageSink for Writes {
            fn write_page(&mut self, pgno: u32, _: &[u8]) -> std::io::Result<()> {
                self.0.push(pgno);
                Ok(())
            }
            fn set_pages(&mut self, pages: u32) -> std::io::Result<()> {
                self.1 = Some(pages);
                Ok(())
            }
        }
        let mut writes = Writes::default();
        applier.apply_segment(&all, &mut writes).unwrap();
        applier.finish(&mut writes, true).unwrap();
        // Page 5 lies past the final size (3 pages); page 2 is written once.
        assert_eq!(writes.0, [1, 2]);
        assert_eq!(writes.1, Some(3));
    }

    #[test]
    fn frames_after_the_last_commit_are_dropped_at_the_end_and_an_error_before_it() {
        let mut w = Builder::new(512, false);
        w.frame(1, 1, 1);
        let committed = w.bytes.len() as u64;
        w.frame(2, 0, 2).frame(3, 0, 3);
        let all = bytes::Bytes::from(w.bytes.clone());
        for last in [true, false] {
            let mut applier = WalApplier::new(512, 0);
            let mut pages = Pages::default();
            applier.apply_segment(&all, &mut pages).unwrap();
            let finished = applier.finish(&mut pages, last);
            if last {
                finished.unwrap();
                assert_eq!(
                    pages.0,
                    [(1, 1)].into_iter().collect(),
                    "uncommitted never written"
                );
                assert_eq!(pages.1, Some(1));
            } else {
                assert_eq!(
                    defect(finished),
                    WalBreak {
                        offset: committed,
                        defect: WalDefect::NoCommit { frames: 2 }
                    }
                );
            }
        }
    }

    #[test]
    fn a_missing_middle_segment_breaks_the_running_checksum() {
        let mut w = Builder::new(512, false);
        w.frame(1, 1, 1);
        let first = w.bytes.len();
        w.frame(2, 2, 2);
        let second = w.bytes.len();
        w.frame(3, 3, 3);
        let all = bytes::Bytes::from(w.bytes.clone());
        let mut applier = WalApplier::new(512, 0);
        let mut pages = Pages::default();
        applier
            .apply_segment(&all.slice(..first), &mut pages)
            .unwrap();
        // The segment at `first` is missing; the next one claims its place.
        let b = defect(applier.apply_segment(&all.slice(second..), &mut pages));
        assert_eq!(
            b,
            WalBreak {
                offset: first as u64,
                defect: WalDefect::FrameChecksum
            }
        );
    }

    #[test]
    fn database_page_size_reads_the_header() {
        let mut h = vec![0u8; 100];
        h[..16].copy_from_slice(b"SQLite format 3\0");
        h[16..18].copy_from_slice(&4096u16.to_be_bytes());
        assert_eq!(database_page_size(&h), Some(4096));
        h[16..18].copy_from_slice(&1u16.to_be_bytes());
        assert_eq!(database_page_size(&h), Some(65_536));
        h[16..18].copy_from_slice(&1000u16.to_be_bytes());
        assert_eq!(database_page_size(&h), None);
        assert_eq!(database_page_size(b"not a database"), None);
    }
}
