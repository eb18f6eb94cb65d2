//! The per-page LZ4 *frames* of files written by Litestream 0.5.0–0.5.15
//! (ltx before 0.5.2; page flags 0).
//!
//! Such a frame has no size prefix: where it ends is only known by walking
//! its structure (descriptor, block sizes, end mark, content checksum), so
//! this reads exactly one frame's bytes and decompresses its blocks with
//! `lz4_flex`'s block decoder into the page buffer. A frame must decompress
//! to exactly one page.

use std::io::Read;

use twox_hash::XxHash32;

use crate::decoder::Input;
use crate::error::{LtxError, Result};

const FRAME_MAGIC: u32 = 0x184D_2204;

/// Reads one LZ4 frame from `input` into `page` (exactly filled);
/// `scratch` holds one compressed block.
pub(crate) fn read_page_frame<R: Read>(
    input: &mut Input<R>,
    page: &mut [u8],
    scratch: &mut Vec<u8>,
) -> Result<()> {
    let start = input.n;
    let bad = |offset: u64, m: String| Err(LtxError::invalid(offset, m));
    let mut magic = [0u8; 4];
    input.read_exact(&mut magic, "page LZ4 frame")?;
    if u32::from_le_bytes(magic) != FRAME_MAGIC {
        return bad(start, "not an LZ4 frame (bad magic)".into());
    }
    let mut desc = [0u8; 2];
    input.read_exact(&mut desc, "page LZ4 frame descriptor")?;
    let (flg, bd) = (desc[0], desc[1]);
    if flg >> 6 != 0b01 || flg & 0b10 != 0 || bd & 0x8f != 0 {
        return bad(
            start + 4,
            format!("bad LZ4 frame descriptor {flg:02x} {bd:02x}"),
        );
    }
    let independent = flg & 0x20 != 0;
    let block_checksums = flg & 0x10 != 0;
    let content_size = flg & 0x08 != 0;
    let content_checksum = flg & 0x04 != 0;
    if flg & 0x01 != 0 {
        return bad(start + 4, "LZ4 frame with a dictionary ID".into());
    }
    let max_block = match (bd >> 4) & 0x7 {
        4 => 64 << 10,
        5 => 256 << 10,
        6 => 1 << 20,
        7 => 4 << 20,
        other => return bad(start + 5, format!("bad LZ4 block size code {other}")),
    };
    let mut described = desc.to_vec();
    if content_size {
        let mut size = [0u8; 8];
        input.read_exact(&mut size, "page LZ4 frame content size")?;
        if u64::from_le_bytes(size) != page.len() as u64 {
            return bad(
                start + 6,
                format!(
                    "LZ4 frame says {} bytes, the page size is {}",
                    u64::from_le_bytes(size),
                    page.len()
                ),
            );
        }
        described.extend_from_slice(&size);
    }
    let mut hc = [0u8; 1];
    input.read_exact(&mut hc, "page LZ4 frame header checksum")?;
    if (XxHash32::oneshot(0, &described) >> 8) as u8 != hc[0] {
        return bad(input.n - 1, "bad LZ4 frame header checksum".into());
    }
    let mut filled = 0usize;
    loop {
        let at = input.n;
        let mut word = [0u8; 4];
        input.read_exact(&mut word, "page LZ4 block size")?;
        let word = u32::from_le_bytes(word);
        if word == 0 {
            break;
        }
        let stored = word & 0x8000_0000 != 0;
        let size = (word & 0x7fff_ffff) as usize;
        if size > max_block || size > lz4_flex::block::get_maximum_output_size(page.len()) {
            return bad(
                at,
                format!("LZ4 block of {size} bytes is larger than a page allows"),
            );
        }
        scratch.resize(size, 0);
        input.read_exact(scratch, "page LZ4 block")?;
        if block_checksums {
            let mut sum = [0u8; 4];
            input.read_exact(&mut sum, "page LZ4 block checksum")?;
            if XxHash32::oneshot(0, scratch) != u32::from_le_bytes(sum) {
                return bad(at, "bad LZ4 block checksum".into());
            }
        }
        let n = if stored {
            if filled + size > page.len() {
                return bad(at, "LZ4 frame holds more than one page".into());
            }
            page[filled..filled + size].copy_from_slice(scratch);
            size
        } else if independent || filled == 0 {
            lz4_flex::block::decompress_into(scratch, &mut page[filled..])
                .map_err(|e| LtxError::invalid(at, format!("bad LZ4 block: {e}")))?
        } else {
            let (done, rest) = page.split_at_mut(filled);
            lz4_flex::block::decompress_into_with_dict(scratch, rest, done)
                .map_err(|e| LtxError::invalid(at, format!("bad LZ4 block: {e}")))?
        };
        filled += n;
    }
    if filled != page.len() {
        return bad(
            start,
            format!(
                "LZ4 frame decompresses to {filled} bytes, not the page size {}",
                page.len()
            ),
        );
    }
    if content_checksum {
        let mut sum = [0u8; 4];
        input.read_exact(&mut sum, "page LZ4 content checksum")?;
        if XxHash32::oneshot(0, page) != u32::from_le_bytes(sum) {
            return bad(input.n - 4, "bad LZ4 content checksum".into());
        }
    }
    Ok(())
}
