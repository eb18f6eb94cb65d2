//! Checksums of LTX files and databases: CRC-64/ISO as Go's `hash/crc64`
//! computes it with the ISO table (CRC-64/GO-ISO in the CRC catalogue).

use crc_fast::{CrcAlgorithm, Digest};

/// A stored checksum: bit 63 ([`CHECKSUM_FLAG`]) set, or zero for "none".
pub type Checksum = u64;

/// Bit 63, set on every stored checksum.
pub const CHECKSUM_FLAG: Checksum = 1 << 63;

/// A running CRC-64/ISO.
#[derive(Clone)]
pub struct Hasher(Digest);

impl Default for Hasher {
    fn default() -> Self {
        Hasher(Digest::new(CrcAlgorithm::Crc64GoIso))
    }
}

impl std::fmt::Debug for Hasher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("Hasher").field(&self.0.finalize()).finish()
    }
}

impl Hasher {
    /// Adds bytes.
    pub fn update(&mut self, data: &[u8]) {
        self.0.update(data);
    }

    /// The CRC of everything added so far (without the flag bit).
    pub fn crc(&self) -> u64 {
        self.0.finalize()
    }

    /// The CRC with [`CHECKSUM_FLAG`] set, as stored.
    pub fn checksum(&self) -> Checksum {
        CHECKSUM_FLAG | self.crc()
    }
}

/// CRC-64/ISO of `data` (no flag bit).
pub fn crc64(data: &[u8]) -> u64 {
    let mut h = Hasher::default();
    h.update(data);
    h.crc()
}

/// The checksum of one page in a database checksum: CRC-64/ISO of the page
/// number (big-endian) followed by the page, bit 63 set.
pub fn page_checksum(pgno: u32, page: &[u8]) -> Checksum {
    let mut h = Hasher::default();
    h.update(&pgno.to_be_bytes());
    h.update(page);
    h.checksum()
}

/// A database checksum built page by page: the XOR of every page's
/// [`page_checksum`], bit 63 set. Pages may be added in any order; the lock
/// page is never part of it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DatabaseChecksum(Checksum);

impl Default for DatabaseChecksum {
    fn default() -> Self {
        DatabaseChecksum(CHECKSUM_FLAG)
    }
}

impl DatabaseChecksum {
    /// Adds (or, added again, removes) a page.
    pub fn toggle(&mut self, pgno: u32, page: &[u8]) {
        self.0 = CHECKSUM_FLAG | (self.0 ^ page_checksum(pgno, page));
    }

    /// The checksum so far.
    pub fn value(self) -> Checksum {
        self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc64_is_the_go_iso_crc() {
        // Go: crc64.Checksum([]byte("123456789"), crc64.MakeTable(crc64.ISO))
        assert_eq!(crc64(b"123456789"), 0xb909_56c7_75a4_1001);
        assert_eq!(crc64(b""), 0);
    }

    #[test]
    fn a_database_checksum_is_independent_of_page_order() {
        let (a, b) = ([1u8; 512], [2u8; 512]);
        let mut x = DatabaseChecksum::default();
        x.toggle(1, &a);
        x.toggle(2, &b);
        let mut y = DatabaseChecksum::default();
        y.toggle(2, &b);
        y.toggle(1, &a);
        assert_eq!(x, y);
        assert_ne!(x.value() & CHECKSUM_FLAG, 0);
        y.toggle(2, &b);
        y.toggle(2, &a);
        assert_ne!(x, y);
    }
}
