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
use std::hash::Hasher;

use lz4_flex::frame::{BlockMode, BlockSize, FrameEncoder, FrameInfo};

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
        let mut frames = FrameReader::new(reader);
        let result = decode_into(&mut frames, |chunk| tx.blocking_send(Ok(chunk)).is_ok());
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

/// Decodes every frame of `frames`, handing decompressed chunks of up to
/// [`OUTPUT_CHUNK`] bytes to `emit` until it returns false (the consumer
/// went away).
fn decode_into<R: Read>(
    frames: &mut FrameReader<R>,
    mut emit: impl FnMut(Bytes) -> bool,
) -> Result<()> {
    loop {
        let mut buf = Vec::with_capacity(OUTPUT_CHUNK);
        frames.read_up_to(&mut buf, OUTPUT_CHUNK)?;
        if buf.is_empty() {
            return Ok(());
        }
        if !emit(Bytes::from(buf)) {
            return Ok(());
        }
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

const FRAME_MAGIC: u32 = 0x184D_2204;
const SKIPPABLE_MAGIC_MASK: u32 = 0xFFFF_FFF0;
const SKIPPABLE_MAGIC: u32 = 0x184D_2A50;
/// The window a linked block may refer back into.
const LINKED_WINDOW: usize = 64 << 10;

/// The block buffers of a [`FrameReader`], kept between uses (see
/// [`with_frame_reader`]): a compressed block and a decoded one.
#[derive(Debug, Default)]
struct Buffers {
    src: Vec<u8>,
    dst: Vec<u8>,
    /// The frame's last [`LINKED_WINDOW`] bytes of output (linked blocks only).
    dict: Vec<u8>,
}

/// The frame being read.
#[derive(Debug)]
struct Frame {
    max_block: usize,
    independent: bool,
    block_checksums: bool,
    content_checksum: bool,
    content_size: Option<u64>,
    len: u64,
    hash: twox_hash::XxHash32,
}

/// Reads the plain bytes of a sequence of LZ4 frames (skippable frames are
/// skipped), block by block, holding one compressed and one decoded block.
///
/// This is the one LZ4 frame decoder of replica: streams, buffers and the
/// restore's chunked WAL reads all go through it, so each accepts and
/// refuses the same input. Header, block and content checksums and content
/// sizes are verified; input that is not whole frames (empty, cut, or
/// garbage between frames) is [`Error::Corrupt`] naming the byte offset.
/// Errors of the inner reader pass through; as an [`std::io::Read`], errors
/// are [`std::io::Error`]s wrapping the [`Error`] (see [`io_to_error`]).
#[derive(Debug)]
pub struct FrameReader<R> {
    inner: R,
    bufs: Buffers,
    /// Decoded bytes of the current block not handed out yet: `dst[pos..end]`.
    pos: usize,
    end: usize,
    frame: Option<Frame>,
    /// Input bytes consumed.
    consumed: u64,
    done: bool,
}

impl<R: Read> FrameReader<R> {
    /// A decoder of the frames `inner` yields.
    pub fn new(inner: R) -> Self {
        Self::with_buffers(inner, Buffers::default())
    }

    fn with_buffers(inner: R, bufs: Buffers) -> Self {
        FrameReader {
            inner,
            bufs,
            pos: 0,
            end: 0,
            frame: None,
            consumed: 0,
            done: false,
        }
    }

    /// Input bytes consumed so far.
    pub fn consumed(&self) -> u64 {
        self.consumed
    }

    /// Appends up to `limit` plain bytes to `out`; fewer only at the end of
    /// the input.
    pub fn read_up_to(&mut self, out: &mut Vec<u8>, limit: usize) -> Result<()> {
        let mut left = limit;
        while left > 0 {
            if self.pos == self.end && !self.next_block()? {
                break;
            }
            let n = left.min(self.end - self.pos);
            out.extend_from_slice(&self.bufs.dst[self.pos..self.pos + n]);
            self.pos += n;
            left -= n;
        }
        Ok(())
    }

    /// Fills `buf` from the input; `Ok(false)` if the input ended before
    /// its first byte and `eof_ok`.
    fn fill(&mut self, buf: &mut [u8], what: &str, eof_ok: bool) -> Result<bool> {
        let mut filled = 0;
        while filled < buf.len() {
            match self.inner.read(&mut buf[filled..]) {
                Ok(0) => {
                    if filled == 0 && eof_ok {
                        return Ok(false);
                    }
                    return Err(corrupt(format!(
                        "truncated LZ4 frame: input ends inside {what} after {} bytes",
                        self.consumed + filled as u64
                    )));
                }
                Ok(n) => filled += n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(io_to_error(e, "reading LZ4 input")),
            }
        }
        self.consumed += filled as u64;
        Ok(true)
    }

    fn word(&mut self, what: &str, eof_ok: bool) -> Result<Option<u32>> {
        let mut w = [0u8; 4];
        Ok(self
            .fill(&mut w, what, eof_ok)?
            .then(|| u32::from_le_bytes(w)))
    }

    /// Decodes the next non-empty block into `dst[pos..end]`; false at the
    /// end of the input (which must fall between frames).
    fn next_block(&mut self) -> Result<bool> {
        loop {
            if self.done {
                return Ok(false);
            }
            let Some(frame) = self.frame.as_mut() else {
                self.start_frame()?;
                continue;
            };
            let max_block = frame.max_block;
            let checksums = frame.block_checksums;
            let size = self.word("a block size", false)?.expect("eof not allowed");
            if size == 0 {
                self.end_frame()?;
                continue;
            }
            let stored = size & 0x8000_0000 != 0;
            let len = (size & 0x7FFF_FFFF) as usize;
            if len > max_block {
                return Err(corrupt(format!(
                    "an LZ4 block of {len} bytes at byte {} exceeds the frame's maximum of \
                     {max_block}",
                    self.consumed - 4
                )));
            }
            let mut src = std::mem::take(&mut self.bufs.src);
            src.resize(len, 0);
            let filled = self.fill(&mut src, "a block", false);
            self.bufs.src = src;
            filled?;
            if checksums {
                let sum = self
                    .word("a block checksum", false)?
                    .expect("eof not allowed");
                if sum != twox_hash::XxHash32::oneshot(0, &self.bufs.src) {
                    return Err(corrupt(format!(
                        "the block checksum at byte {} does not match its data (bytes changed \
                         after writing)",
                        self.consumed - 4
                    )));
                }
            }
            let consumed = self.consumed;
            let frame = self.frame.as_mut().expect("checked above");
            let bufs = &mut self.bufs;
            let n = if stored {
                bufs.dst.clear();
                bufs.dst.extend_from_slice(&bufs.src);
                len
            } else {
                if bufs.dst.len() < max_block {
                    bufs.dst.resize(max_block, 0);
                }
                let out = &mut bufs.dst[..max_block];
                if frame.independent || bufs.dict.is_empty() {
                    lz4_flex::block::decompress_into(&bufs.src, out)
                } else {
                    lz4_flex::block::decompress_into_with_dict(&bufs.src, out, &bufs.dict)
                }
                .map_err(|e| corrupt(format!("bad LZ4 block before byte {consumed}: {e}")))?
            };
            let block = &bufs.dst[..n];
            frame.hash.write(block);
            frame.len += n as u64;
            if !frame.independent {
                let keep = LINKED_WINDOW.saturating_sub(n).min(bufs.dict.len());
                bufs.dict.drain(..bufs.dict.len() - keep);
                bufs.dict
                    .extend_from_slice(&block[n.saturating_sub(LINKED_WINDOW)..]);
            }
            if n > 0 {
                self.pos = 0;
                self.end = n;
                return Ok(true);
            }
        }
    }

    fn start_frame(&mut self) -> Result<()> {
        let at = self.consumed;
        let Some(magic) = self.word("a frame magic", at > 0)? else {
            self.done = true;
            return Ok(());
        };
        if magic & SKIPPABLE_MAGIC_MASK == SKIPPABLE_MAGIC {
            let len = self
                .word("a skippable frame", false)?
                .expect("eof not allowed");
            let skipped = std::io::copy(
                &mut (&mut self.inner).take(u64::from(len)),
                &mut std::io::sink(),
            )
            .map_err(|e| io_to_error(e, "reading LZ4 input"))?;
            self.consumed += skipped;
            if skipped < u64::from(len) {
                return Err(corrupt(format!(
                    "truncated LZ4 frame: input ends inside a skippable frame after {} bytes",
                    self.consumed
                )));
            }
            return Ok(());
        }
        if magic != FRAME_MAGIC {
            return Err(corrupt(format!(
                "not an LZ4 frame (magic {magic:#010x} at byte {at})"
            )));
        }
        let mut descriptor = [0u8; 15];
        self.fill(&mut descriptor[..2], "the frame header", false)?;
        let (flg, bd) = (descriptor[0], descriptor[1]);
        if flg >> 6 != 1 || flg & 0b10 != 0 || bd & 0b1000_1111 != 0 {
            return Err(corrupt(format!(
                "unsupported LZ4 frame header at byte {at} (FLG {flg:#04x}, BD {bd:#04x})"
            )));
        }
        let has_size = flg & 0x08 != 0;
        let has_dict = flg & 0x01 != 0;
        let rest = usize::from(has_size) * 8 + usize::from(has_dict) * 4 + 1;
        self.fill(&mut descriptor[2..2 + rest], "the frame header", false)?;
        let header_checksum = descriptor[1 + rest];
        if header_checksum != (twox_hash::XxHash32::oneshot(0, &descriptor[..1 + rest]) >> 8) as u8
        {
            return Err(corrupt(format!(
                "the header checksum of the LZ4 frame at byte {at} does not match"
            )));
        }
        let max_block = match (bd >> 4) & 0b111 {
            4 => 64 << 10,
            5 => 256 << 10,
            6 => 1 << 20,
            7 => 4 << 20,
            other => {
                return Err(corrupt(format!(
                    "bad LZ4 block size code {other} in the frame at byte {at}"
                )))
            }
        };
        let content_size =
            has_size.then(|| u64::from_le_bytes(descriptor[2..10].try_into().expect("8 bytes")));
        self.bufs.dict.clear();
        self.frame = Some(Frame {
            max_block,
            independent: flg & 0x20 != 0,
            block_checksums: flg & 0x10 != 0,
            content_checksum: flg & 0x04 != 0,
            content_size,
            len: 0,
            hash: twox_hash::XxHash32::with_seed(0),
        });
        Ok(())
    }

    fn end_frame(&mut self) -> Result<()> {
        let frame = self.frame.take().expect("inside a frame");
        if frame.content_checksum {
            let sum = self
                .word("the content checksum", false)?
                .expect("eof not allowed");
            if sum != frame.hash.finish_32() {
                return Err(corrupt(format!(
                    "the content checksum of the LZ4 frame ending at byte {} does not match its \
                     data (bytes changed after writing)",
                    self.consumed
                )));
            }
        }
        if let Some(size) = frame.content_size {
            if size != frame.len {
                return Err(corrupt(format!(
                    "the LZ4 frame ending at byte {} says it holds {size} bytes but holds {}",
                    self.consumed, frame.len
                )));
            }
        }
        Ok(())
    }
}

impl<R: Read> Read for FrameReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.pos == self.end && !self.next_block().map_err(std::io::Error::other)? {
            return Ok(0);
        }
        let n = buf.len().min(self.end - self.pos);
        buf[..n].copy_from_slice(&self.bufs.dst[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

/// The [`Error`] an [`std::io::Error`] of a [`FrameReader`] (or of a stream
/// bridged into a reader) carries, or an I/O error `doing` something.
pub fn io_to_error(e: std::io::Error, doing: &str) -> Error {
    if e.get_ref().is_some_and(|i| i.is::<Error>()) {
        let inner = e.into_inner().expect("checked above");
        return *inner.downcast::<Error>().expect("checked above");
    }
    Error::io(doing, e)
}

/// Compresses a small buffer into one LZ4 frame.
pub fn compress(data: &[u8]) -> Vec<u8> {
    let mut encoder = encoder(Vec::with_capacity(data.len() / 2 + 64));
    encoder
        .write_all(data)
        .expect("writing to a Vec cannot fail");
    encoder.finish().expect("writing to a Vec cannot fail")
}

/// Runs `f` with a [`FrameReader`] over `data` whose block buffers are
/// kept per thread: decoding thousands of small WAL segments costs no
/// allocation and no zeroing of 4 MiB block buffers per segment.
pub fn with_frame_reader<T>(data: &[u8], f: impl FnOnce(&mut FrameReader<&[u8]>) -> T) -> T {
    thread_local! {
        static BUFFERS: std::cell::Cell<Buffers> = std::cell::Cell::new(Buffers::default());
    }
    let mut reader = FrameReader::with_buffers(data, BUFFERS.take());
    let out = f(&mut reader);
    BUFFERS.set(reader.bufs);
    out
}

/// Decompresses a buffer holding LZ4 frames (skippable frames are skipped)
/// with [`FrameReader`]; anything but whole frames is [`Error::Corrupt`].
pub fn decompress(data: &[u8]) -> Result<Vec<u8>> {
    with_frame_reader(data, |r| {
        let mut out = Vec::new();
        r.read_up_to(&mut out, usize::MAX)?;
        Ok(out)
    })
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
