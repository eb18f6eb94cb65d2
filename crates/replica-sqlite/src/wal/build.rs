//! WAL bytes made by hand, by SQLite's rules: for tests, fuzzing and
//! hand-made (hostile) replicas.

use super::{be32, checksum, FRAME_HEADER_LEN, MAGIC_BE, MAGIC_LE, VERSION, WAL_HEADER_LEN};

/// Builds WAL bytes by SQLite's rules (header, salts, running checksums):
/// for tests, fuzzing and hand-made replicas.
#[derive(Debug, Clone)]
pub struct WalBuilder {
    /// The WAL so far.
    pub bytes: Vec<u8>,
    running: (u32, u32),
    salts: (u32, u32),
    big_endian: bool,
    page_size: u32,
}

impl WalBuilder {
    /// A WAL header for `page_size`-byte pages.
    pub fn new(page_size: u32, big_endian: bool) -> Self {
        Self::with_salts(page_size, big_endian, (0x1234_5678, 0x9abc_def0))
    }

    /// A WAL header for `page_size`-byte pages with the given salts (those
    /// of a WAL restarted after another: salt-1 one more).
    pub fn with_salts(page_size: u32, big_endian: bool, salts: (u32, u32)) -> Self {
        let mut h = Vec::with_capacity(WAL_HEADER_LEN);
        h.extend((if big_endian { MAGIC_BE } else { MAGIC_LE }).to_be_bytes());
        h.extend(VERSION.to_be_bytes());
        h.extend(page_size.to_be_bytes());
        h.extend(0u32.to_be_bytes());
        h.extend(salts.0.to_be_bytes());
        h.extend(salts.1.to_be_bytes());
        let c = checksum((0, 0), &h, big_endian);
        h.extend(c.0.to_be_bytes());
        h.extend(c.1.to_be_bytes());
        WalBuilder {
            bytes: h,
            running: c,
            salts,
            big_endian,
            page_size,
        }
    }

    /// Appends a frame for page `pgno` filled with `fill` (`commit`: the
    /// database size in pages for a commit frame, else 0).
    pub fn frame(&mut self, pgno: u32, commit: u32, fill: u8) -> &mut Self {
        let page = vec![fill; self.page_size as usize];
        self.frame_of(pgno, commit, &page)
    }

    /// Appends a frame for page `pgno` holding `page` (of the page size).
    pub fn frame_of(&mut self, pgno: u32, commit: u32, page: &[u8]) -> &mut Self {
        assert_eq!(
            page.len(),
            self.page_size as usize,
            "a page of the WAL's size"
        );
        let mut f = Vec::with_capacity(FRAME_HEADER_LEN);
        f.extend(pgno.to_be_bytes());
        f.extend(commit.to_be_bytes());
        f.extend(self.salts.0.to_be_bytes());
        f.extend(self.salts.1.to_be_bytes());
        let c = checksum(self.running, &f[..8], self.big_endian);
        let c = checksum(c, page, self.big_endian);
        self.running = c;
        f.extend(c.0.to_be_bytes());
        f.extend(c.1.to_be_bytes());
        self.bytes.extend(f);
        self.bytes.extend_from_slice(page);
        self
    }
}

/// The frames of a WAL file as (page number, commit field, page), up to
/// the first incomplete frame (no checks).
pub fn frames_of(wal: &[u8]) -> Vec<(u32, u32, &[u8])> {
    if wal.len() < WAL_HEADER_LEN {
        return Vec::new();
    }
    let page_size = be32(wal, 8) as usize;
    wal[WAL_HEADER_LEN..]
        .chunks_exact(FRAME_HEADER_LEN + page_size)
        .map(|f| (be32(f, 0), be32(f, 4), &f[FRAME_HEADER_LEN..]))
        .collect()
}
