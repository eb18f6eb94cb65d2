//! Streaming LZ4 frame compression and decompression.
//!
//! The bytes a client stores are, by convention, an LZ4 frame: the standard
//! format that the reference `lz4` tool reads and writes. These adapters turn
//! a [`ByteStream`] of plain bytes into one of frame bytes and back, holding
//! only a block or two in memory at a time.
//!
//! Frames are written as Litestream writes them (and as Litestream 0.3.13
//! requires: it rejects block checksums): 4 MiB independent blocks, a content
//! checksum, no block checksums, no content size. Decoding verifies the
//! content checksum of every frame that carries one, so a flipped byte is
//! [`Error::Corrupt`], never silently different data.

use std::io::{Read, Write};

use bytes::Bytes;
use futures::stream::{self, StreamExt, TryStreamExt};
use lz4_flex::frame::{BlockMode, BlockSize, FrameDecoder, FrameEncoder, FrameInfo};

use crate::client::ByteStream;
use crate::error::{Error, Result};

/// Size of the chunks the decompressor hands out.
const OUTPUT_CHUNK: usize = 256 * 1024;
/// Decompressed chunks allowed in flight between the decoder thread and its reader.
const CHANNEL_DEPTH: usize = 4;

/// The frame parameters of everything replica compresses (see the module docs).
fn frame_info() -> FrameInfo {
    FrameInfo::new()
        .block_size(BlockSize::Max4MB)
        .block_mode(BlockMode::Independent)
        .content_checksum(true)
        .block_checksums(false)
}

fn encoder(out: Vec<u8>) -> FrameEncoder<Vec<u8>> {
    FrameEncoder::with_frame_info(frame_info(), out)
}

/// Compresses a stream into one LZ4 frame, chunk by chunk.
pub fn compress_stream(input: ByteStream) -> ByteStream {
    struct St {
        input: ByteStream,
        encoder: Option<FrameEncoder<Vec<u8>>>,
    }
    let state = St {
        input,
        encoder: Some(encoder(Vec::new())),
    };
    stream::try_unfold(state, |mut st| async move {
        loop {
            let Some(encoder) = st.encoder.as_mut() else {
                return Ok(None);
            };
            match st.input.try_next().await? {
                Some(chunk) => {
                    encoder
                        .write_all(&chunk)
                        .map_err(|e| Error::io("compressing", e))?;
                    let out = std::mem::take(encoder.get_mut());
                    if !out.is_empty() {
                        return Ok(Some((Bytes::from(out), st)));
                    }
                }
                None => {
                    let encoder = st.encoder.take().expect("checked above");
                    let out = encoder
                        .finish()
                        .map_err(|e| Error::io("finishing LZ4 frame", e.into()))?;
                    return Ok(Some((Bytes::from(out), st)));
                }
            }
        }
    })
    .boxed()
}

/// Decompresses a stream of LZ4 frame bytes.
///
/// Decoding runs on a blocking thread that is fed from `input` and hands out
/// chunks through a small bounded channel. A corrupt or truncated frame, or
/// input that holds no frame at all, is [`Error::Corrupt`]; an error of the
/// input stream itself is passed through unchanged. Needs a Tokio runtime when
/// first polled.
pub fn decompress_stream(input: ByteStream) -> ByteStream {
    stream::once(async move { start_decoder(input) })
        .flatten()
        .boxed()
}

fn start_decoder(input: ByteStream) -> ByteStream {
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Bytes>>(CHANNEL_DEPTH);
    let reader = tokio_util::io::StreamReader::new(input.map_err(std::io::Error::other));
    let reader = tokio_util::io::SyncIoBridge::new(reader);
    let decoder = tokio::task::spawn_blocking(move || {
        let mut counting = CountingReader::new(reader);
        let result = decode_into(&mut counting, |chunk| tx.blocking_send(Ok(chunk)).is_ok());
        if let Err(err) = result {
            let _ = tx.blocking_send(Err(err));
        }
    });
    let chunks = stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|item| (item, rx))
    });
    // The channel also ends when the decoder thread dies (a panic in the
    // decoder or in the input stream it drives): its end is success only if
    // the thread finished normally, so a cut-short output is never whole.
    let end = stream::once(async move {
        decoder.await.err().map(|e| {
            Err(Error::io(
                "decoding an LZ4 frame",
                std::io::Error::other(format!("the decoder stopped abnormally: {e}")),
            ))
        })
    })
    .filter_map(futures::future::ready);
    chunks.chain(end).boxed()
}

/// Decodes every frame of `reader`, handing decompressed chunks to `emit`
/// until it returns false (the consumer went away).
fn decode_into<R: Read>(
    reader: &mut CountingReader<R>,
    mut emit: impl FnMut(Bytes) -> bool,
) -> Result<()> {
    let mut decoder = FrameDecoder::new(reader);
    loop {
        let mut buf = vec![0u8; OUTPUT_CHUNK];
        let mut filled = 0;
        while filled < buf.len() {
            match decoder.read(&mut buf[filled..]) {
                Ok(0) => break,
                Ok(n) => filled += n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(decode_error(e)),
            }
        }
        if filled == 0 {
            let reader = decoder.get_ref();
            if reader.count == 0 {
                return Err(corrupt("no LZ4 frame (empty input)".to_owned()));
            }
            if !reader.frames.at_frame_boundary() {
                return Err(corrupt(format!(
                    "truncated LZ4 frame: input ends inside a frame after {} bytes",
                    reader.count
                )));
            }
            return Ok(());
        }
        buf.truncate(filled);
        if !emit(Bytes::from(buf)) {
            return Ok(());
        }
    }
}

fn decode_error(e: std::io::Error) -> Error {
    if let Some(inner) = e.get_ref().and_then(|i| i.downcast_ref::<Error>()) {
        return inner.clone();
    }
    use lz4_flex::frame::Error as Lz4;
    match e.get_ref().and_then(|i| i.downcast_ref::<Lz4>()) {
        Some(Lz4::ContentChecksumError) => corrupt(
            "the frame's content checksum does not match its data (bytes changed after writing)"
                .to_owned(),
        ),
        Some(Lz4::BlockChecksumError) => corrupt(
            "a block checksum does not match its data (bytes changed after writing)".to_owned(),
        ),
        Some(Lz4::HeaderChecksumError) => {
            corrupt("the frame header checksum does not match".to_owned())
        }
        _ => corrupt(e.to_string()),
    }
}

/// The `path` of a [`Error::Corrupt`] from the decoder, which does not know
/// what object it decodes; [`Error::naming`] replaces it.
pub(crate) const UNNAMED_FRAME: &str = "LZ4 frame";

fn corrupt(message: String) -> Error {
    Error::Corrupt {
        path: UNNAMED_FRAME.to_owned(),
        message,
    }
}

/// Passes bytes through while following the frame structure (sizes only, no
/// decoding), so that input ending anywhere but between frames is caught:
/// the decoder alone accepts a frame cut at a block boundary.
struct CountingReader<R> {
    inner: R,
    count: u64,
    frames: FrameTracker,
}

impl<R> CountingReader<R> {
    fn new(inner: R) -> Self {
        CountingReader {
            inner,
            count: 0,
            frames: FrameTracker::default(),
        }
    }
}

impl<R: Read> Read for CountingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.count += n as u64;
        self.frames.feed(&buf[..n]);
        Ok(n)
    }
}

const FRAME_MAGIC: u32 = 0x184D_2204;
const SKIPPABLE_MAGIC_MASK: u32 = 0xFFFF_FFF0;
const SKIPPABLE_MAGIC: u32 = 0x184D_2A50;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Magic,
    Descriptor,
    HeaderRest,
    BlockSize,
    ContentChecksum,
    SkippableSize,
    Skip { then_block: bool },
}

/// The frame-structure state machine behind [`CountingReader`].
#[derive(Debug)]
struct FrameTracker {
    phase: Phase,
    buf: Vec<u8>,
    need: usize,
    skip: u64,
    flags: u8,
}

impl Default for FrameTracker {
    fn default() -> Self {
        FrameTracker {
            phase: Phase::Magic,
            buf: Vec::with_capacity(16),
            need: 4,
            skip: 0,
            flags: 0,
        }
    }
}

impl FrameTracker {
    /// True when the input seen so far ends exactly between frames.
    fn at_frame_boundary(&self) -> bool {
        self.phase == Phase::Magic && self.buf.is_empty()
    }

    fn feed(&mut self, mut data: &[u8]) {
        while !data.is_empty() {
            if let Phase::Skip { then_block } = self.phase {
                let n = (self.skip.min(data.len() as u64)) as usize;
                self.skip -= n as u64;
                data = &data[n..];
                if self.skip == 0 {
                    self.enter(if then_block {
                        Phase::BlockSize
                    } else {
                        Phase::Magic
                    });
                }
                continue;
            }
            let n = (self.need - self.buf.len()).min(data.len());
            self.buf.extend_from_slice(&data[..n]);
            data = &data[n..];
            if self.buf.len() == self.need {
                self.advance();
            }
        }
    }

    fn enter(&mut self, phase: Phase) {
        self.phase = phase;
        self.buf.clear();
        self.need = match phase {
            Phase::Magic | Phase::BlockSize | Phase::ContentChecksum | Phase::SkippableSize => 4,
            Phase::Descriptor => 2,
            Phase::HeaderRest => {
                1 + if self.flags & 0x08 != 0 { 8 } else { 0 }
                    + if self.flags & 0x01 != 0 { 4 } else { 0 }
            }
            Phase::Skip { .. } => 0,
        };
    }

    fn skip(&mut self, bytes: u64, then_block: bool) {
        if bytes == 0 {
            self.enter(if then_block {
                Phase::BlockSize
            } else {
                Phase::Magic
            });
        } else {
            self.skip = bytes;
            self.enter(Phase::Skip { then_block });
        }
    }

    fn advance(&mut self) {
        let word = || u32::from_le_bytes([self.buf[0], self.buf[1], self.buf[2], self.buf[3]]);
        match self.phase {
            Phase::Magic => {
                let magic = word();
                if magic == FRAME_MAGIC {
                    self.enter(Phase::Descriptor);
                } else if magic & SKIPPABLE_MAGIC_MASK == SKIPPABLE_MAGIC {
                    self.enter(Phase::SkippableSize);
                } else {
                    // Not a frame: the decoder reports it; stay off the boundary.
                    self.skip(u64::MAX, false);
                }
            }
            Phase::Descriptor => {
                self.flags = self.buf[0];
                self.enter(Phase::HeaderRest);
            }
            Phase::HeaderRest => self.enter(Phase::BlockSize),
            Phase::BlockSize => {
                let size = word();
                if size == 0 {
                    if self.flags & 0x04 != 0 {
                        self.enter(Phase::ContentChecksum);
                    } else {
                        self.enter(Phase::Magic);
                    }
                } else {
                    let checksum = if self.flags & 0x10 != 0 { 4 } else { 0 };
                    self.skip(u64::from(size & 0x7FFF_FFFF) + checksum, true);
                }
            }
            Phase::ContentChecksum => self.enter(Phase::Magic),
            Phase::SkippableSize => {
                let size = word();
                self.skip(u64::from(size), false);
            }
            Phase::Skip { .. } => unreachable!("skip is handled in feed"),
        }
    }
}

/// Compresses a small buffer into one LZ4 frame.
pub fn compress(data: &[u8]) -> Vec<u8> {
    let mut encoder = encoder(Vec::with_capacity(data.len() / 2 + 64));
    encoder
        .write_all(data)
        .expect("writing to a Vec cannot fail");
    encoder.finish().expect("writing to a Vec cannot fail")
}

/// Decompresses a buffer holding LZ4 frames (skippable frames are skipped).
///
/// Frames are decoded block by block from the buffer, through one scratch
/// block per thread that is allocated once: decoding thousands of small WAL
/// segments costs no allocation and no zeroing of 4 MiB block buffers per
/// segment, as a streaming frame decoder does. Header, block and content
/// checksums are verified; anything but whole frames is [`Error::Corrupt`].
pub fn decompress(data: &[u8]) -> Result<Vec<u8>> {
    thread_local! {
        static SCRATCH: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
    }
    SCRATCH.with(|scratch| decode_frames(data, &mut scratch.borrow_mut()))
}

fn decode_frames(data: &[u8], scratch: &mut Vec<u8>) -> Result<Vec<u8>> {
    if data.is_empty() {
        return Err(corrupt("no LZ4 frame (empty input)".to_owned()));
    }
    let mut out = Vec::new();
    let mut at = 0;
    while at < data.len() {
        let cut = |what: &str| {
            corrupt(format!(
                "truncated LZ4 frame: input ends inside {what} after {} bytes",
                data.len()
            ))
        };
        let take = |at: &mut usize, n: usize, what: &str| -> Result<std::ops::Range<usize>> {
            let end = at
                .checked_add(n)
                .filter(|e| *e <= data.len())
                .ok_or_else(|| cut(what))?;
            let range = *at..end;
            *at = end;
            Ok(range)
        };
        let le32 =
            |r: std::ops::Range<usize>| u32::from_le_bytes(data[r].try_into().expect("4 bytes"));
        let magic = le32(take(&mut at, 4, "a frame magic")?);
        if magic & SKIPPABLE_MAGIC_MASK == SKIPPABLE_MAGIC {
            let len = le32(take(&mut at, 4, "a skippable frame")?) as usize;
            take(&mut at, len, "a skippable frame")?;
            continue;
        }
        if magic != FRAME_MAGIC {
            return Err(corrupt(format!(
                "not an LZ4 frame (magic {magic:#010x} at byte {})",
                at - 4
            )));
        }
        let descriptor_start = at;
        let flg = data[take(&mut at, 1, "the frame header")?][0];
        let bd = data[take(&mut at, 1, "the frame header")?][0];
        if flg >> 6 != 1 || flg & 0b10 != 0 || bd & 0b1000_1111 != 0 {
            return Err(corrupt(format!(
                "unsupported LZ4 frame header (FLG {flg:#04x}, BD {bd:#04x})"
            )));
        }
        let independent = flg & 0x20 != 0;
        let block_checksums = flg & 0x10 != 0;
        let content_size = flg & 0x08 != 0;
        let content_checksum = flg & 0x04 != 0;
        let dict_id = flg & 0x01 != 0;
        let max_block = match (bd >> 4) & 0b111 {
            4 => 64 << 10,
            5 => 256 << 10,
            6 => 1 << 20,
            7 => 4 << 20,
            other => return Err(corrupt(format!("bad LZ4 block size code {other}"))),
        };
        let mut expected_len = None;
        if content_size {
            let r = take(&mut at, 8, "the frame header")?;
            expected_len = Some(u64::from_le_bytes(data[r].try_into().expect("8 bytes")));
        }
        if dict_id {
            take(&mut at, 4, "the frame header")?;
        }
        let hc = data[take(&mut at, 1, "the frame header")?][0];
        let expected_hc =
            (twox_hash::XxHash32::oneshot(0, &data[descriptor_start..at - 1]) >> 8) as u8;
        if hc != expected_hc {
            return Err(corrupt(
                "the frame header checksum does not match".to_owned(),
            ));
        }
        if scratch.len() < max_block {
            scratch.resize(max_block, 0);
        }
        let frame_start = out.len();
        if let Some(len) = expected_len {
            out.reserve(usize::try_from(len).unwrap_or(0).min(64 << 20));
        }
        loop {
            let size = le32(take(&mut at, 4, "a block size")?);
            if size == 0 {
                break;
            }
            let stored = size & 0x8000_0000 != 0;
            let len = (size & 0x7FFF_FFFF) as usize;
            if len > max_block {
                return Err(corrupt(format!(
                    "an LZ4 block of {len} bytes exceeds the frame's maximum of {max_block}"
                )));
            }
            let block = take(&mut at, len, "a block")?;
            if block_checksums {
                let sum = le32(take(&mut at, 4, "a block checksum")?);
                if sum != twox_hash::XxHash32::oneshot(0, &data[block.clone()]) {
                    return Err(corrupt(
                        "a block checksum does not match its data (bytes changed after writing)"
                            .to_owned(),
                    ));
                }
            }
            if stored {
                out.extend_from_slice(&data[block]);
                continue;
            }
            let decoded = if independent || out.len() == frame_start {
                lz4_flex::block::decompress_into(&data[block], &mut scratch[..max_block])
            } else {
                let dict = &out[out.len().saturating_sub(64 << 10).max(frame_start)..];
                lz4_flex::block::decompress_into_with_dict(
                    &data[block],
                    &mut scratch[..max_block],
                    dict,
                )
            }
            .map_err(|e| corrupt(format!("bad LZ4 block: {e}")))?;
            out.extend_from_slice(&scratch[..decoded]);
        }
        if content_checksum {
            let sum = le32(take(&mut at, 4, "the content checksum")?);
            if sum != twox_hash::XxHash32::oneshot(0, &out[frame_start..]) {
                return Err(corrupt(
                    "the frame's content checksum does not match its data (bytes changed after writing)"
                        .to_owned(),
                ));
            }
        }
        if let Some(len) = expected_len {
            if len != (out.len() - frame_start) as u64 {
                return Err(corrupt(format!(
                    "the frame says {len} bytes but holds {}",
                    out.len() - frame_start
                )));
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::client::{bytes_stream, collect_bytes};

    fn sample(len: usize) -> Vec<u8> {
        (0..len)
            .map(|i| (i % 251) as u8 ^ (i / 4096) as u8)
            .collect()
    }

    #[test]
    fn buffer_round_trip() {
        for len in [0, 1, 100, 65_536, 1_000_003] {
            let data = sample(len);
            assert_eq!(decompress(&compress(&data)).unwrap(), data, "len {len}");
        }
    }

    #[tokio::test]
    async fn stream_round_trip_in_many_chunks() {
        let data = sample(3_000_000);
        let chunks: Vec<Result<Bytes>> = data
            .chunks(7_777)
            .map(|c| Ok(Bytes::copy_from_slice(c)))
            .collect();
        let compressed = compress_stream(stream::iter(chunks).boxed());
        let round = collect_bytes(decompress_stream(compressed)).await.unwrap();
        assert_eq!(&round[..], &data[..]);
    }

    #[tokio::test]
    async fn stream_output_is_a_standard_frame() {
        let data = sample(200_000);
        let framed = collect_bytes(compress_stream(bytes_stream(data.clone())))
            .await
            .unwrap();
        assert_eq!(&framed[..4], &[0x04, 0x22, 0x4d, 0x18], "LZ4 frame magic");
        assert_eq!(decompress(&framed).unwrap(), data);
    }

    #[tokio::test]
    async fn truncated_frame_is_corrupt() {
        let framed = compress(&sample(300_000));
        for cut in
            (1..framed.len())
                .step_by(97)
                .chain([4, 7, 8, framed.len() - 4, framed.len() - 1])
        {
            let err = collect_bytes(decompress_stream(bytes_stream(framed[..cut].to_vec())))
                .await
                .unwrap_err();
            assert!(matches!(err, Error::Corrupt { .. }), "cut {cut}: {err}");
            assert!(matches!(
                decompress(&framed[..cut]),
                Err(Error::Corrupt { .. })
            ));
        }
    }

    /// FLG and BD bytes of the frame header: version 01, independent blocks,
    /// content checksum, no block checksums, no content size, 4 MiB blocks
    /// (as Litestream writes; 0.3.13 rejects block checksums).
    #[tokio::test]
    async fn frames_use_litestreams_parameters() {
        let data = sample(9_000_000);
        let streamed = collect_bytes(compress_stream(bytes_stream(data.clone())))
            .await
            .unwrap();
        for framed in [&streamed[..], &compress(&data)[..]] {
            assert_eq!(framed[4], 0b0110_0100, "FLG");
            assert_eq!(framed[5], 0b0111_0000, "BD: 4 MiB blocks");
            // 9 MB in 4 MiB blocks: three blocks, the first a full 4 MiB of input.
            assert_eq!(decompress(framed).unwrap(), data);
        }
    }

    #[tokio::test]
    async fn a_flipped_byte_anywhere_in_the_blocks_is_corrupt() {
        // Incompressible enough that blocks are stored compressed but a flip
        // changes the output rather than the structure.
        let data = sample(100_000);
        let framed = compress(&data);
        for at in (7..framed.len() - 4).step_by(53) {
            let mut bad = framed.clone();
            bad[at] ^= 0x20;
            match decompress(&bad) {
                Ok(out) => panic!("flip at {at} decoded ({} bytes)", out.len()),
                Err(e) => assert!(matches!(e, Error::Corrupt { .. }), "at {at}: {e}"),
            }
            if at > 7 + 4 {
                // Past the header and first block size: data bytes, caught by
                // the content checksum (or the block decoder).
                let err = decompress(&bad).unwrap_err().to_string();
                assert!(!err.contains("header"), "at {at}: {err}");
            }
            let err = collect_bytes(decompress_stream(bytes_stream(bad)))
                .await
                .unwrap_err();
            assert!(matches!(err, Error::Corrupt { .. }), "at {at}: {err}");
        }
    }

    #[test]
    fn concatenated_frames_decode_as_one_stream() {
        let mut two = compress(b"hello ");
        two.extend(compress(b"world"));
        assert_eq!(decompress(&two).unwrap(), b"hello world");
    }

    #[test]
    fn frames_with_checksums_and_content_size_are_understood() {
        let info = lz4_flex::frame::FrameInfo::new()
            .content_checksum(true)
            .block_checksums(true)
            .content_size(Some(100_000))
            .block_mode(lz4_flex::frame::BlockMode::Linked);
        let data = sample(100_000);
        let mut enc = FrameEncoder::with_frame_info(info, Vec::new());
        enc.write_all(&data).unwrap();
        let framed = enc.finish().unwrap();
        assert_eq!(decompress(&framed).unwrap(), data);
        for cut in [framed.len() - 1, framed.len() - 4, framed.len() - 5, 12] {
            assert!(
                matches!(decompress(&framed[..cut]), Err(Error::Corrupt { .. })),
                "cut {cut}"
            );
        }
    }

    #[tokio::test]
    async fn garbage_and_empty_input_are_corrupt() {
        for bad in [&b""[..], b"hello world, not lz4", &[0u8; 64]] {
            let err = collect_bytes(decompress_stream(bytes_stream(bad.to_vec())))
                .await
                .unwrap_err();
            assert!(matches!(err, Error::Corrupt { .. }), "{bad:?}: {err}");
        }
    }

    #[tokio::test]
    async fn a_panic_while_decoding_is_an_error_not_a_short_success() {
        let framed = compress(&sample(600_000));
        let head = Bytes::copy_from_slice(&framed[..framed.len() / 2]);
        let mut sent = false;
        let input = stream::poll_fn(move |_| {
            if sent {
                panic!("the input stream panicked mid-frame");
            }
            sent = true;
            std::task::Poll::Ready(Some(Ok(head.clone())))
        })
        .boxed();
        let result = collect_bytes(decompress_stream(input)).await;
        let err = result.expect_err("a decoder that died must not end cleanly");
        assert!(err.to_string().contains("stopped abnormally"), "{err}");
    }

    #[tokio::test]
    async fn input_errors_pass_through_unchanged() {
        let framed = compress(&sample(10_000));
        let input = stream::iter(vec![
            Ok(Bytes::copy_from_slice(&framed[..10])),
            Err(Error::not_found("generations/x")),
        ])
        .boxed();
        let err = collect_bytes(decompress_stream(input)).await.unwrap_err();
        assert!(err.is_not_found(), "{err}");
    }
}
