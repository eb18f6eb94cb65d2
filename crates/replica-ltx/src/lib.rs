//! The LTX file format of Litestream 0.5 (the `superfly/ltx` Go module,
//! v0.5.2): what a Litestream 0.5 replica stores, one file per range of
//! transaction IDs. This crate reads and writes those files and nothing else —
//! no storage, no SQLite connection: a streaming [`Decoder`] over any
//! [`std::io::Read`], a streaming [`Encoder`] over any [`std::io::Write`], the
//! [`checksum`]s, and file [`name`]s. Memory is bounded by one page (at most
//! 64 KiB) plus a few buffers, whatever a file holds.
//!
//! # The file
//!
//! ```text
//! header      100 bytes, big-endian
//! page block  frames in ascending page number, then a 6-byte zero header
//! page index  uvarint (pgno, offset, size) triples, a 0, then its byte size as u64
//! trailer     post-apply checksum (u64), file checksum (u64)
//! ```
//!
//! | header bytes | field |
//! |---|---|
//! | 0..4 | magic `LTX1` |
//! | 4..8 | flags: `0x2` NoChecksum (database checksums are zero); other bits invalid |
//! | 8..12 | page size (a power of two, 512 ..= 65536) |
//! | 12..16 | commit: database size in pages after applying the file |
//! | 16..24, 24..32 | min TXID, max TXID (1 ..; min ≤ max; min 1 is a snapshot) |
//! | 32..40 | timestamp, milliseconds since the Unix epoch |
//! | 40..48 | pre-apply database checksum |
//! | 48..56, 56..64 | WAL offset and size the file was made from (zero when compacted) |
//! | 64..68, 68..72 | WAL salt 1 and 2 |
//! | 72..80 | node ID |
//! | 80..100 | zero |
//!
//! A page frame is `pgno: u32`, `flags: u16` and, with flag `0x1`, a `u32`
//! size followed by an LZ4 *block* of that size that decompresses to exactly
//! one page. Files written by Litestream 0.5.0–0.5.15 (ltx before 0.5.2) have
//! flags `0` and an LZ4 *frame* per page instead; both are read, only blocks
//! are written. The lock page (the page holding byte 2^30) is never stored; a
//! snapshot holds every other page from 1 to commit.
//!
//! The file checksum is CRC-64/ISO (as Go's `hash/crc64` with the ISO table
//! computes it) over the header, every frame header and size prefix followed
//! by the *decompressed* page, the zero header, the page-index bytes and the
//! trailer's post-apply checksum, stored with bit 63 set
//! ([`checksum::CHECKSUM_FLAG`]). A database checksum is the XOR over all pages
//! of CRC-64/ISO(pgno big-endian ‖ page), bit 63 set; Litestream sets
//! NoChecksum on every file it writes, so both database checksums are zero.
//!
//! ```
//! use replica_ltx::{Decoder, Encoder, Header};
//! let header = Header::new(4096, 1, 1, 1);
//! let mut file = Vec::new();
//! let mut enc = Encoder::new(&mut file, header).unwrap();
//! enc.encode_page(1, &[7u8; 4096]).unwrap();
//! enc.finish(0).unwrap();
//!
//! let mut dec = Decoder::new(&file[..]).unwrap();
//! assert_eq!(dec.header().commit, 1);
//! let (pgno, page) = dec.next_page().unwrap().unwrap();
//! assert_eq!((pgno, page[0]), (1, 7));
//! assert!(dec.next_page().unwrap().is_none());
//! dec.finish().unwrap();
//! ```

pub mod checksum;
mod decoder;
mod encoder;
mod error;
mod frame;
mod header;
pub mod name;

pub use checksum::Checksum;
pub use decoder::Decoder;
pub use encoder::Encoder;
pub use error::{LtxError, Result};
pub use header::{
    lock_pgno, Header, Trailer, TxId, FLAG_NO_CHECKSUM, HEADER_SIZE, MAGIC, MAX_PAGE_SIZE,
    PAGE_FLAG_SIZE, PAGE_HEADER_SIZE, TRAILER_SIZE,
};
pub use name::{file_name, parse_file_name};
