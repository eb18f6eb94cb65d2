//! Reading an LTX file, page by page, checking everything.

use std::io::{BufReader, Read};

use crate::checksum::{DatabaseChecksum, Hasher, CHECKSUM_FLAG};
use crate::encoder::put_uvarint;
use crate::error::{LtxError, Result};
use crate::frame;
use crate::header::{Header, Trailer, HEADER_SIZE, PAGE_FLAG_SIZE, PAGE_HEADER_SIZE};

/// Bytes read so far, with EOF turned into [`LtxError::Truncated`].
pub(crate) struct Input<R> {
    r: BufReader<R>,
    pub(crate) n: u64,
}

impl<R: Read> Input<R> {
    pub(crate) fn read_exact(&mut self, buf: &mut [u8], what: &'static str) -> Result<()> {
        match self.r.read_exact(buf) {
            Ok(()) => {
                self.n += buf.len() as u64;
                Ok(())
            }
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => Err(LtxError::Truncated {
                offset: self.n,
                what,
            }),
            Err(source) => Err(LtxError::Io {
                offset: self.n,
                source,
            }),
        }
    }

    fn at_end(&mut self) -> Result<bool> {
        let mut one = [0u8; 1];
        loop {
            match self.r.read(&mut one) {
                Ok(0) => return Ok(true),
                Ok(_) => return Ok(false),
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(source) => {
                    return Err(LtxError::Io {
                        offset: self.n,
                        source,
                    })
                }
            }
        }
    }
}

/// Reads one LTX file from `R` and checks it as it goes: the header's rules,
/// page numbers (ascending, within the commit, never the lock page; a
/// snapshot holds every page), each page decompressing to exactly the page
/// size, the page index against the frames read, the trailer, the file
/// checksum, no bytes after the trailer, and a snapshot's database checksum
/// when it has one. Errors carry the byte offset.
///
/// A page returned by [`next_page`](Decoder::next_page) is not proven good
/// until [`finish`](Decoder::finish) has checked the file checksum: callers
/// that act on pages must be able to undo them if `finish` fails.
///
/// Memory: one page, one compressed page and a 64 KiB read buffer.
pub struct Decoder<R> {
    input: Input<R>,
    header: Header,
    hash: Hasher,
    page: Vec<u8>,
    compressed: Vec<u8>,
    prev_pgno: u32,
    pages: u64,
    expected_index: Hasher,
    expected_index_len: u64,
    db_checksum: DatabaseChecksum,
    ended: bool,
}

impl<R> std::fmt::Debug for Decoder<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Decoder")
            .field("header", &self.header)
            .field("offset", &self.input.n)
            .field("pages", &self.pages)
            .finish_non_exhaustive()
    }
}

impl<R: Read> Decoder<R> {
    /// Reads and validates the header.
    pub fn new(reader: R) -> Result<Self> {
        let mut input = Input {
            r: BufReader::with_capacity(64 * 1024, reader),
            n: 0,
        };
        let mut b = [0u8; HEADER_SIZE];
        input.read_exact(&mut b, "header")?;
        let header = Header::from_bytes(&b)?;
        let mut hash = Hasher::default();
        hash.update(&b);
        Ok(Decoder {
            input,
            page: vec![0; header.page_size as usize],
            compressed: Vec::new(),
            header,
            hash,
            prev_pgno: 0,
            pages: 0,
            expected_index: Hasher::default(),
            expected_index_len: 0,
            db_checksum: DatabaseChecksum::default(),
            ended: false,
        })
    }

    /// The file's header.
    pub fn header(&self) -> &Header {
        &self.header
    }

    /// Bytes read so far.
    pub fn bytes_read(&self) -> u64 {
        self.input.n
    }

    /// Pages read so far.
    pub fn pages_read(&self) -> u64 {
        self.pages
    }

    fn invalid<T>(&self, offset: u64, message: String) -> Result<T> {
        Err(LtxError::invalid(offset, message))
    }

    /// The next page as (page number, bytes), or `None` after the last.
    pub fn next_page(&mut self) -> Result<Option<(u32, &[u8])>> {
        if self.ended {
            return Ok(None);
        }
        let offset = self.input.n;
        let mut fh = [0u8; PAGE_HEADER_SIZE];
        self.input.read_exact(&mut fh, "page header")?;
        self.hash.update(&fh);
        if fh == [0u8; PAGE_HEADER_SIZE] {
            self.ended = true;
            return Ok(None);
        }
        let pgno = u32::from_be_bytes(fh[0..4].try_into().expect("4 bytes"));
        let flags = u16::from_be_bytes(fh[4..6].try_into().expect("2 bytes"));
        self.check_pgno(offset, pgno)?;
        if flags & !PAGE_FLAG_SIZE != 0 {
            return self.invalid(
                offset + 4,
                format!("page {pgno}: invalid flags 0x{flags:04x}"),
            );
        }
        let page_size = self.header.page_size as usize;
        if flags & PAGE_FLAG_SIZE != 0 {
            let mut size = [0u8; 4];
            self.input.read_exact(&mut size, "page size prefix")?;
            self.hash.update(&size);
            let size = u32::from_be_bytes(size) as usize;
            if size > lz4_flex::block::get_maximum_output_size(page_size) {
                return self.invalid(
                    offset + 6,
                    format!(
                        "page {pgno}: compressed size {size} exceeds any LZ4 block of one page"
                    ),
                );
            }
            self.compressed.resize(size, 0);
            self.input
                .read_exact(&mut self.compressed, "compressed page")?;
            match lz4_flex::block::decompress_into(&self.compressed, &mut self.page) {
                Ok(n) if n == page_size => {}
                Ok(n) => {
                    return self.invalid(
                        offset + 10,
                        format!(
                            "page {pgno} decompresses to {n} bytes, not the page size {page_size}"
                        ),
                    )
                }
                Err(e) => {
                    return self.invalid(offset + 10, format!("page {pgno}: bad LZ4 block: {e}"))
                }
            }
        } else {
            frame::read_page_frame(&mut self.input, &mut self.page, &mut self.compressed).map_err(
                |e| match e {
                    LtxError::Invalid { offset, message } => LtxError::Invalid {
                        offset,
                        message: format!("page {pgno}: {message}"),
                    },
                    other => other,
                },
            )?;
        }
        self.hash.update(&self.page);
        let mut entry = Vec::with_capacity(30);
        put_uvarint(&mut entry, u64::from(pgno));
        put_uvarint(&mut entry, offset);
        put_uvarint(&mut entry, self.input.n - offset);
        self.expected_index.update(&entry);
        self.expected_index_len += entry.len() as u64;
        if self.header.is_snapshot() && !self.header.no_checksum() {
            self.db_checksum.toggle(pgno, &self.page);
        }
        self.prev_pgno = pgno;
        self.pages += 1;
        Ok(Some((pgno, &self.page)))
    }

    fn check_pgno(&self, offset: u64, pgno: u32) -> Result<()> {
        let h = &self.header;
        let lock = h.lock_pgno();
        if pgno == 0 {
            return self.invalid(offset, "page number 0".into());
        }
        if pgno <= self.prev_pgno {
            return self.invalid(
                offset,
                format!("page {pgno} after page {}: out of order", self.prev_pgno),
            );
        }
        if pgno > h.commit {
            return self.invalid(
                offset,
                format!("page {pgno} beyond the commit of {} pages", h.commit),
            );
        }
        if pgno == lock {
            return self.invalid(offset, format!("page {pgno} is the lock page"));
        }
        let expected = if self.prev_pgno + 1 == lock {
            lock + 1
        } else {
            self.prev_pgno + 1
        };
        if h.is_snapshot() && pgno != expected {
            return self.invalid(
                offset,
                format!("snapshot skips from page {} to page {pgno}", self.prev_pgno),
            );
        }
        Ok(())
    }

    /// One uvarint of the page index, added to the file hash and `index`.
    fn read_uvarint(&mut self, index: &mut Hasher, len: &mut u64) -> Result<u64> {
        let mut v = 0u64;
        for shift in (0..70).step_by(7) {
            let offset = self.input.n;
            let mut b = [0u8; 1];
            self.input.read_exact(&mut b, "page index")?;
            index.update(&b);
            self.hash.update(&b);
            *len += 1;
            if shift == 63 && b[0] > 1 {
                return self.invalid(offset, "page index: varint overflows 64 bits".into());
            }
            v |= u64::from(b[0] & 0x7f) << shift;
            if b[0] & 0x80 == 0 {
                return Ok(v);
            }
        }
        self.invalid(self.input.n, "page index: varint too long".into())
    }

    /// Reads what remains: any pages not yet read, the page index (which
    /// must list exactly the frames read), the trailer, and checks the file
    /// checksum and that nothing follows.
    pub fn finish(mut self) -> Result<Trailer> {
        while self.next_page()?.is_some() {}
        let h = self.header;
        let last = if h.commit == h.lock_pgno() {
            h.commit - 1
        } else {
            h.commit
        };
        if h.is_snapshot() && self.prev_pgno != last {
            return self.invalid(
                self.input.n,
                format!(
                    "snapshot of {} pages ends at page {}",
                    h.commit, self.prev_pgno
                ),
            );
        }
        let start = self.input.n;
        let mut index = Hasher::default();
        let mut len = 0u64;
        loop {
            let pgno = self.read_uvarint(&mut index, &mut len)?;
            if pgno == 0 {
                break;
            }
            self.read_uvarint(&mut index, &mut len)?;
            self.read_uvarint(&mut index, &mut len)?;
            if len > self.expected_index_len {
                return self.invalid(
                    start,
                    "page index lists frames the page block does not hold".into(),
                );
            }
        }
        if len != self.expected_index_len + 1 || index.crc() != self.expected_index_crc() {
            return self.invalid(start, "page index does not match the page frames".into());
        }
        let mut size = [0u8; 8];
        self.input.read_exact(&mut size, "page index size")?;
        self.hash.update(&size);
        if u64::from_be_bytes(size) != len {
            return self.invalid(
                self.input.n - 8,
                format!(
                    "page index size field says {} bytes, the index is {len}",
                    u64::from_be_bytes(size)
                ),
            );
        }
        let trailer_at = self.input.n;
        let mut t = [0u8; 16];
        self.input.read_exact(&mut t, "trailer")?;
        self.hash.update(&t[0..8]);
        let trailer = Trailer {
            post_apply_checksum: u64::from_be_bytes(t[0..8].try_into().expect("8 bytes")),
            file_checksum: u64::from_be_bytes(t[8..16].try_into().expect("8 bytes")),
        };
        if trailer.file_checksum != self.hash.checksum() {
            return self.invalid(
                trailer_at + 8,
                format!(
                    "file checksum mismatch: stored {:016x}, computed {:016x}",
                    trailer.file_checksum,
                    self.hash.checksum()
                ),
            );
        }
        if h.no_checksum() {
            if trailer.post_apply_checksum != 0 {
                return self.invalid(
                    trailer_at,
                    "a post-apply checksum in a NoChecksum file".into(),
                );
            }
        } else if trailer.post_apply_checksum & CHECKSUM_FLAG == 0 {
            return self.invalid(
                trailer_at,
                "missing or malformed post-apply checksum".into(),
            );
        } else if h.is_snapshot() && trailer.post_apply_checksum != self.db_checksum.value() {
            return self.invalid(
                trailer_at,
                format!(
                    "snapshot's post-apply checksum {:016x} does not match its pages ({:016x})",
                    trailer.post_apply_checksum,
                    self.db_checksum.value()
                ),
            );
        }
        if !self.input.at_end()? {
            return self.invalid(self.input.n, "bytes after the trailer".into());
        }
        Ok(trailer)
    }

    fn expected_index_crc(&self) -> u64 {
        let mut h = self.expected_index.clone();
        h.update(&[0]);
        h.crc()
    }
}
