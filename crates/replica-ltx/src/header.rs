//! The fixed parts of an LTX file: header, page-frame header, trailer, and
//! the format's constants.

use std::fmt;

use crate::checksum::{Checksum, CHECKSUM_FLAG};
use crate::error::{LtxError, Result};

/// The file's first four bytes.
pub const MAGIC: &[u8; 4] = b"LTX1";
/// Bytes in the header.
pub const HEADER_SIZE: usize = 100;
/// Bytes in a page-frame header (pgno u32, flags u16).
pub const PAGE_HEADER_SIZE: usize = 6;
/// Bytes in the trailer.
pub const TRAILER_SIZE: usize = 16;
/// The largest page size SQLite allows.
pub const MAX_PAGE_SIZE: u32 = 65536;
/// Header flag: the database checksums are not kept (zero).
pub const FLAG_NO_CHECKSUM: u32 = 0x2;
/// Page-frame flag: a u32 compressed size and an LZ4 block follow.
pub const PAGE_FLAG_SIZE: u16 = 0x1;

/// The byte SQLite's locks live at; the page holding it is never stored.
const PENDING_BYTE: u64 = 0x4000_0000;

/// The lock page of a database with `page_size`-byte pages.
pub fn lock_pgno(page_size: u32) -> u32 {
    (PENDING_BYTE / u64::from(page_size.max(1))) as u32 + 1
}

/// A transaction ID: one sync of the database, counted from 1.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct TxId(pub u64);

impl fmt::Display for TxId {
    /// 16 lowercase hex digits, as in names and listings.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:016x}", self.0)
    }
}

impl std::str::FromStr for TxId {
    type Err = String;

    /// 1 to 16 hex digits (an optional `0x` prefix allowed).
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        let digits = s
            .strip_prefix("0x")
            .or_else(|| s.strip_prefix("0X"))
            .unwrap_or(s);
        if digits.is_empty() || digits.len() > 16 || !digits.bytes().all(|b| b.is_ascii_hexdigit())
        {
            return Err(format!(
                "bad TXID {s:?}: expected up to 16 hex digits (as `replica ltx` prints them)"
            ));
        }
        u64::from_str_radix(digits, 16)
            .map(TxId)
            .map_err(|e| format!("bad TXID {s:?}: {e}"))
    }
}

/// The 100-byte header of an LTX file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Header {
    /// Flags: [`FLAG_NO_CHECKSUM`] or nothing.
    pub flags: u32,
    /// Page size in bytes.
    pub page_size: u32,
    /// Database size in pages after the file is applied.
    pub commit: u32,
    /// First transaction ID the file holds.
    pub min_txid: TxId,
    /// Last transaction ID the file holds.
    pub max_txid: TxId,
    /// When the file's last transaction was made, in ms since the Unix epoch.
    pub timestamp: i64,
    /// Database checksum before the file is applied (0 with NoChecksum).
    pub pre_apply_checksum: Checksum,
    /// Offset in the WAL the file was made from (0 if compacted).
    pub wal_offset: i64,
    /// Bytes of WAL the file was made from (0 if compacted).
    pub wal_size: i64,
    /// WAL header salt 1 (0 if compacted).
    pub wal_salt1: u32,
    /// WAL header salt 2 (0 if compacted).
    pub wal_salt2: u32,
    /// The node that made the file (0 if unset).
    pub node_id: u64,
}

impl Header {
    /// A header with NoChecksum set (as Litestream writes them) and every
    /// WAL field zero.
    pub fn new(page_size: u32, commit: u32, min_txid: u64, max_txid: u64) -> Self {
        Header {
            flags: FLAG_NO_CHECKSUM,
            page_size,
            commit,
            min_txid: TxId(min_txid),
            max_txid: TxId(max_txid),
            ..Header::default()
        }
    }

    /// A snapshot holds the whole database: its min TXID is 1.
    pub fn is_snapshot(&self) -> bool {
        self.min_txid.0 == 1
    }

    /// Whether the database checksums are absent (zero).
    pub fn no_checksum(&self) -> bool {
        self.flags & FLAG_NO_CHECKSUM != 0
    }

    /// The lock page of this file's page size.
    pub fn lock_pgno(&self) -> u32 {
        lock_pgno(self.page_size)
    }

    /// The header as stored.
    pub fn to_bytes(&self) -> [u8; HEADER_SIZE] {
        let mut b = [0u8; HEADER_SIZE];
        b[0..4].copy_from_slice(MAGIC);
        b[4..8].copy_from_slice(&self.flags.to_be_bytes());
        b[8..12].copy_from_slice(&self.page_size.to_be_bytes());
        b[12..16].copy_from_slice(&self.commit.to_be_bytes());
        b[16..24].copy_from_slice(&self.min_txid.0.to_be_bytes());
        b[24..32].copy_from_slice(&self.max_txid.0.to_be_bytes());
        b[32..40].copy_from_slice(&self.timestamp.to_be_bytes());
        b[40..48].copy_from_slice(&self.pre_apply_checksum.to_be_bytes());
        b[48..56].copy_from_slice(&self.wal_offset.to_be_bytes());
        b[56..64].copy_from_slice(&self.wal_size.to_be_bytes());
        b[64..68].copy_from_slice(&self.wal_salt1.to_be_bytes());
        b[68..72].copy_from_slice(&self.wal_salt2.to_be_bytes());
        b[72..80].copy_from_slice(&self.node_id.to_be_bytes());
        b
    }

    /// Parses and validates a stored header.
    pub fn from_bytes(b: &[u8; HEADER_SIZE]) -> Result<Self> {
        if &b[0..4] != MAGIC {
            return Err(LtxError::invalid(
                0,
                format!("bad magic {:02x?}: not an LTX file", &b[0..4]),
            ));
        }
        let u32_at = |i: usize| u32::from_be_bytes(b[i..i + 4].try_into().expect("4 bytes"));
        let u64_at = |i: usize| u64::from_be_bytes(b[i..i + 8].try_into().expect("8 bytes"));
        let header = Header {
            flags: u32_at(4),
            page_size: u32_at(8),
            commit: u32_at(12),
            min_txid: TxId(u64_at(16)),
            max_txid: TxId(u64_at(24)),
            timestamp: u64_at(32) as i64,
            pre_apply_checksum: u64_at(40),
            wal_offset: u64_at(48) as i64,
            wal_size: u64_at(56) as i64,
            wal_salt1: u32_at(64),
            wal_salt2: u32_at(68),
            node_id: u64_at(72),
        };
        header.validate()?;
        Ok(header)
    }

    /// The rules of `superfly/ltx`'s `Header.Validate`; errors point at the
    /// field's byte offset.
    pub fn validate(&self) -> Result<()> {
        let bad = |offset, message: String| Err(LtxError::invalid(offset, message));
        if self.flags & !FLAG_NO_CHECKSUM != 0 {
            return bad(4, format!("invalid header flags 0x{:08x}", self.flags));
        }
        if !self.page_size.is_power_of_two() || !(512..=MAX_PAGE_SIZE).contains(&self.page_size) {
            return bad(8, format!("invalid page size {}", self.page_size));
        }
        if self.min_txid.0 == 0 || self.max_txid.0 == 0 {
            return bad(16, "transaction IDs must be at least 1".into());
        }
        if self.min_txid > self.max_txid {
            return bad(
                16,
                format!(
                    "transaction IDs out of order: min {} > max {}",
                    self.min_txid, self.max_txid
                ),
            );
        }
        if self.wal_offset < 0 || self.wal_size < 0 {
            return bad(48, "negative WAL offset or size".into());
        }
        if (self.wal_salt1 != 0 || self.wal_salt2 != 0) && self.wal_offset == 0 {
            return bad(64, "WAL salts without a WAL offset".into());
        }
        if self.wal_offset == 0 && self.wal_size != 0 {
            return bad(56, "WAL size without a WAL offset".into());
        }
        if self.is_snapshot() || self.no_checksum() {
            if self.pre_apply_checksum != 0 {
                return bad(
                    40,
                    "a pre-apply checksum on a snapshot or a NoChecksum file".into(),
                );
            }
        } else if self.pre_apply_checksum & CHECKSUM_FLAG == 0 {
            return bad(40, "missing or malformed pre-apply checksum".into());
        }
        Ok(())
    }
}

/// The 16-byte trailer of an LTX file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Trailer {
    /// Database checksum after the file is applied (0 with NoChecksum).
    pub post_apply_checksum: Checksum,
    /// CRC-64/ISO of the file (see the crate docs), bit 63 set.
    pub file_checksum: Checksum,
}
