//! Hostile and malformed input: errors, never panics.
//!
//! Case counts come from `REPLICA_FUZZ_CASES` (per property; default 5,000 for
//! the quick run, `cargo xtask reliability` sets 250,000: 1,000,000+ in all).

use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use replica_core::layout::{Entry, Layout};
use replica_core::lz4::{compress, decompress, decompress_stream};
use replica_core::{Generation, Pos};

fn runner() -> TestRunner {
    let cases = std::env::var("REPLICA_FUZZ_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(5_000);
    TestRunner::new(Config {
        cases,
        failure_persistence: None,
        ..Config::default()
    })
}

/// Strings near the valid shapes as well as arbitrary ones.
fn name_like() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<String>(),
        "[0-9a-fA-F]{14,18}",
        "[0-9a-f./:\\\\\\x00 ]{0,40}",
        "[0-9a-f]{16}/[0-9a-f]{16}:[0-9a-fA-F+-]{14,18}",
        "(generations/)?[0-9a-fA-F.]{0,18}/(snapshots|wal)/[0-9a-f]{0,17}(/[0-9a-f]{16})?(\\.snapshot\\.lz4|\\.wal\\.lz4|\\.tmp)?",
        "generations/[0-9a-f]{16}/(snapshots|wal)/[0-9a-fA-F]{7,9}(_[0-9a-fA-F]{7,9})?(\\.snapshot\\.lz4|\\.wal\\.lz4|\\.tmp)?",
    ]
}

#[test]
fn generation_parsing_accepts_exactly_sixteen_lowercase_hex() {
    runner()
        .run(&name_like(), |s| {
            let valid = s.len() == 16
                && s.bytes()
                    .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
            match Generation::new(&s) {
                Ok(g) => prop_assert!(valid && g.as_str() == s),
                Err(e) => prop_assert!(!valid && e.is_invalid_argument()),
            }
            Ok(())
        })
        .unwrap();
}

#[test]
fn pos_parsing_round_trips_or_errors() {
    runner()
        .run(&name_like(), |s| {
            if let Ok(pos) = s.parse::<Pos>() {
                prop_assert_eq!(pos.to_string(), s.clone());
                prop_assert!(pos.index <= i64::MAX as u64 && pos.offset <= i64::MAX as u64);
            }
            Ok(())
        })
        .unwrap();
}

#[test]
fn layout_parsing_only_accepts_what_formatting_produces() {
    runner()
        .run(&name_like(), |s| {
            for layout in Layout::ALL {
                match layout.parse_key(&s) {
                    Some(Entry::Snapshot { generation, index }) => {
                        prop_assert_eq!(layout.snapshot_key(&generation, index).unwrap(), s.clone())
                    }
                    Some(Entry::WalSegment(pos)) => {
                        prop_assert_eq!(layout.wal_segment_key(&pos).unwrap(), s.clone())
                    }
                    None => {}
                }
                let _ = layout.parse_snapshot_name(&s);
                let _ = layout.parse_segment_name(&s);
            }
            Ok(())
        })
        .unwrap();
}

#[test]
fn corrupted_or_truncated_lz4_frames_error_and_never_panic() {
    let data: Vec<u8> = (0..70_000u32)
        .map(|i| (i % 97) as u8 ^ (i >> 9) as u8)
        .collect();
    let frame = compress(&data);
    let strategy = (
        proptest::collection::vec((0..frame.len(), any::<u8>()), 0..8),
        0..=frame.len(),
    );
    runner()
        .run(&strategy, |(flips, cut)| {
            let mut bad = frame.clone();
            for (at, byte) in &flips {
                bad[*at] = *byte;
            }
            bad.truncate(cut);
            match decompress(&bad) {
                // Only an untouched, uncut frame (or flips that changed nothing
                // the decoder checks, which then must still give the same length)
                // may decode.
                Ok(out) => prop_assert!(cut == frame.len() || out.len() <= data.len()),
                Err(e) => prop_assert!(matches!(e, replica_core::Error::Corrupt { .. }), "{e}"),
            }
            Ok(())
        })
        .unwrap();
    runner()
        .run(&proptest::collection::vec(any::<u8>(), 0..300), |bytes| {
            let _ = decompress(&bytes);
            Ok(())
        })
        .unwrap();
}

/// The stream decoder and the buffer decoder agree on every input: the same
/// bytes, or both [`replica_core::Error::Corrupt`]. Frames of both block
/// modes, with block checksums and content sizes, damaged and cut.
#[test]
fn the_stream_and_buffer_lz4_decoders_agree_on_damaged_frames() {
    use std::io::Write;
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let data: Vec<u8> = (0..150_000u32)
        .map(|i| (i % 89) as u8 ^ (i >> 11) as u8)
        .collect();
    let linked = {
        let info = lz4_flex::frame::FrameInfo::new()
            .block_size(lz4_flex::frame::BlockSize::Max64KB)
            .block_mode(lz4_flex::frame::BlockMode::Linked)
            .block_checksums(true)
            .content_checksum(true)
            .content_size(Some(data.len() as u64));
        let mut enc = lz4_flex::frame::FrameEncoder::with_frame_info(info, Vec::new());
        enc.write_all(&data).unwrap();
        enc.finish().unwrap()
    };
    let frames = [
        compress(&data),
        linked,
        [compress(b"a"), compress(b"")].concat(),
    ];
    let strategy = (
        0..frames.len(),
        proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..4),
        any::<prop::sample::Index>(),
        1usize..5000,
    );
    runner()
        .run(&strategy, |(which, flips, cut, chunk)| {
            let mut bad = frames[which].clone();
            for (at, byte) in &flips {
                let at = at.index(bad.len());
                bad[at] = *byte;
            }
            bad.truncate(cut.index(bad.len() + 1));
            let buffer = decompress(&bad);
            let chunks: Vec<Result<bytes::Bytes, replica_core::Error>> = bad
                .chunks(chunk)
                .map(|c| Ok(bytes::Bytes::copy_from_slice(c)))
                .collect();
            let stream = rt.block_on(replica_core::collect_bytes(decompress_stream(
                futures::StreamExt::boxed(futures::stream::iter(chunks)),
            )));
            match (&buffer, &stream) {
                (Ok(a), Ok(b)) => prop_assert_eq!(&a[..], &b[..]),
                (Err(a), Err(b)) => {
                    prop_assert!(matches!(a, replica_core::Error::Corrupt { .. }), "{}", a);
                    prop_assert!(matches!(b, replica_core::Error::Corrupt { .. }), "{}", b);
                }
                _ => prop_assert!(
                    false,
                    "disagree: buffer {:?}, stream {:?}",
                    buffer.as_ref().map(|v| v.len()),
                    stream.as_ref().map(|v| v.len())
                ),
            }
            Ok(())
        })
        .unwrap();
}
