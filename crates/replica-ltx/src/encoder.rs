//! Writing an LTX file, page by page.

use std::io::Write;

use crate::checksum::{Checksum, Hasher, CHECKSUM_FLAG};
use crate::error::{LtxError, Result};
use crate::header::{Header, Trailer, PAGE_FLAG_SIZE, PAGE_HEADER_SIZE};

/// Writes one LTX file to `W`: [`new`](Encoder::new) writes the header, each
/// [`encode_page`](Encoder::encode_page) one page frame (an LZ4 block, as
/// ltx 0.5.2 and Litestream 0.5.16+ write them), [`finish`](Encoder::finish)
/// the page index and trailer.
///
/// Pages go in ascending page number; a snapshot (min TXID 1) holds every
/// page from 1 to its commit except the lock page. Memory: one compressed
/// page plus the page index (a few bytes a page).
#[derive(Debug)]
pub struct Encoder<W: Write> {
    w: W,
    header: Header,
    hash: Hasher,
    n: u64,
    prev_pgno: u32,
    index: Vec<u8>,
    compressed: Vec<u8>,
}

pub(crate) fn put_uvarint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push(v as u8 | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

impl<W: Write> Encoder<W> {
    /// Validates `header` and writes it.
    pub fn new(w: W, header: Header) -> Result<Self> {
        header
            .validate()
            .map_err(|e| LtxError::Usage(format!("bad header: {e}")))?;
        let mut enc = Encoder {
            w,
            header,
            hash: Hasher::default(),
            n: 0,
            prev_pgno: 0,
            index: Vec::new(),
            compressed: Vec::new(),
        };
        enc.write_hashed(&header.to_bytes())?;
        Ok(enc)
    }

    /// The header written.
    pub fn header(&self) -> &Header {
        &self.header
    }

    /// Bytes written so far.
    pub fn bytes_written(&self) -> u64 {
        self.n
    }

    fn write_raw(&mut self, data: &[u8]) -> Result<()> {
        self.w.write_all(data).map_err(|source| LtxError::Io {
            offset: self.n,
            source,
        })?;
        self.n += data.len() as u64;
        Ok(())
    }

    fn write_hashed(&mut self, data: &[u8]) -> Result<()> {
        self.hash.update(data);
        self.write_raw(data)
    }

    /// Writes page `pgno`, which must be exactly one page long.
    pub fn encode_page(&mut self, pgno: u32, data: &[u8]) -> Result<()> {
        let h = &self.header;
        let usage = |m: String| Err(LtxError::Usage(m));
        if data.len() != h.page_size as usize {
            return usage(format!(
                "page {pgno} is {} bytes, the page size is {}",
                data.len(),
                h.page_size
            ));
        }
        if pgno == 0 || pgno > h.commit {
            return usage(format!("page {pgno} is outside 1..={}", h.commit));
        }
        let lock = h.lock_pgno();
        if pgno == lock {
            return usage(format!("page {pgno} is the lock page"));
        }
        let expected_next = if self.prev_pgno + 1 == lock {
            lock + 1
        } else {
            self.prev_pgno + 1
        };
        if h.is_snapshot() && pgno != expected_next {
            return usage(format!(
                "a snapshot holds every page in order: page {expected_next} expected, got {pgno}"
            ));
        }
        if pgno <= self.prev_pgno {
            return usage(format!(
                "page {pgno} after page {}: pages go in ascending order",
                self.prev_pgno
            ));
        }
        let offset = self.n;
        self.compressed
            .resize(lz4_flex::block::get_maximum_output_size(data.len()), 0);
        let size = lz4_flex::block::compress_into(data, &mut self.compressed)
            .map_err(|e| LtxError::Usage(format!("compressing page {pgno}: {e}")))?;
        let mut frame_header = [0u8; PAGE_HEADER_SIZE + 4];
        frame_header[0..4].copy_from_slice(&pgno.to_be_bytes());
        frame_header[4..6].copy_from_slice(&PAGE_FLAG_SIZE.to_be_bytes());
        frame_header[6..10].copy_from_slice(&(size as u32).to_be_bytes());
        self.write_hashed(&frame_header)?;
        self.hash.update(data);
        let compressed = std::mem::take(&mut self.compressed);
        let written = self.write_raw(&compressed[..size]);
        self.compressed = compressed;
        written?;
        put_uvarint(&mut self.index, u64::from(pgno));
        put_uvarint(&mut self.index, offset);
        put_uvarint(&mut self.index, self.n - offset);
        self.prev_pgno = pgno;
        Ok(())
    }

    /// Ends the page block, writes the page index and the trailer, and
    /// returns the trailer and the writer. `post_apply_checksum` must be 0
    /// when the header has NoChecksum set, else a database checksum.
    pub fn finish(mut self, post_apply_checksum: Checksum) -> Result<(Trailer, W)> {
        let h = self.header;
        if h.no_checksum() != (post_apply_checksum == 0)
            || (post_apply_checksum != 0 && post_apply_checksum & CHECKSUM_FLAG == 0)
        {
            return Err(LtxError::Usage(
                "the post-apply checksum must be 0 with NoChecksum, and a flagged checksum without"
                    .into(),
            ));
        }
        let last = if h.commit == h.lock_pgno() {
            h.commit - 1
        } else {
            h.commit
        };
        if h.is_snapshot() && self.prev_pgno != last {
            return Err(LtxError::Usage(format!(
                "a snapshot of {} pages ends at page {}",
                h.commit, self.prev_pgno
            )));
        }
        self.write_hashed(&[0u8; PAGE_HEADER_SIZE])?;
        let mut index = std::mem::take(&mut self.index);
        index.push(0);
        let len = index.len() as u64;
        index.extend_from_slice(&len.to_be_bytes());
        self.write_hashed(&index)?;
        let post = post_apply_checksum.to_be_bytes();
        self.hash.update(&post);
        let trailer = Trailer {
            post_apply_checksum,
            file_checksum: self.hash.checksum(),
        };
        self.write_raw(&post)?;
        self.write_raw(&trailer.file_checksum.to_be_bytes())?;
        self.w.flush().map_err(|source| LtxError::Io {
            offset: self.n,
            source,
        })?;
        Ok((trailer, self.w))
    }
}
