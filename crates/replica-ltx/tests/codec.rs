//! The codec round-trips what it writes, reads the per-page LZ4 frames of
//! older Litestream releases, and refuses every damaged file.

use proptest::prelude::*;
use replica_ltx::checksum::{crc64, DatabaseChecksum, Hasher};
use replica_ltx::{lock_pgno, Decoder, Encoder, Header, LtxError, Trailer};

/// Pages that compress somewhat but not to nothing (a seeded xorshift).
fn page(pgno: u32, size: u32, seed: u64) -> Vec<u8> {
    let mut x = seed ^ (u64::from(pgno) << 32) ^ 0x9e37_79b9_7f4a_7c15;
    (0..size)
        .map(|i| {
            if i % 3 == 0 {
                0
            } else {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            }
        })
        .collect()
}

fn encode(header: Header, pgnos: &[u32], seed: u64) -> (Vec<u8>, Trailer) {
    let mut enc = Encoder::new(Vec::new(), header).unwrap();
    for &p in pgnos {
        enc.encode_page(p, &page(p, header.page_size, seed))
            .unwrap();
    }
    let (trailer, bytes) = enc.finish(0).unwrap();
    (bytes, trailer)
}

type Decoded = (Header, Vec<(u32, Vec<u8>)>, Trailer);

fn decode_all(bytes: &[u8]) -> Result<Decoded, LtxError> {
    let mut dec = Decoder::new(bytes)?;
    let header = *dec.header();
    let mut pages = Vec::new();
    while let Some((pgno, data)) = dec.next_page()? {
        pages.push((pgno, data.to_vec()));
    }
    let trailer = dec.finish()?;
    Ok((header, pages, trailer))
}

fn snapshot_file(pages: u32, page_size: u32) -> Vec<u8> {
    let mut h = Header::new(page_size, pages, 1, 5);
    h.timestamp = 1_700_000_000_123;
    let pgnos: Vec<u32> = (1..=pages).collect();
    encode(h, &pgnos, 7).0
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn what_is_encoded_decodes_to_the_same_pages(
        shift in 9u32..=16,
        picks in proptest::collection::btree_set(1u32..200, 1..40),
        seed in any::<u64>(),
        extra in 0u32..20,
    ) {
        let page_size = 1u32 << shift;
        let pgnos: Vec<u32> = picks.into_iter().collect();
        let commit = pgnos.last().unwrap() + extra;
        let header = Header::new(page_size, commit, 3, 9);
        let (bytes, trailer) = encode(header, &pgnos, seed);
        let (h, pages, t) = decode_all(&bytes).unwrap();
        prop_assert_eq!(h, header);
        prop_assert_eq!(t, trailer);
        prop_assert_eq!(pages.len(), pgnos.len());
        for ((pgno, data), want) in pages.iter().zip(&pgnos) {
            prop_assert_eq!(pgno, want);
            prop_assert_eq!(data, &page(*want, page_size, seed));
        }
    }

    /// The file checksum covers the pages uncompressed (as Litestream's
    /// does), so a flip that changes only how an LZ4 block spells the same
    /// page (the match-length bits of a block's last, literals-only token)
    /// cannot be seen, and decodes to exactly the original. Any other flip
    /// is refused: nothing damaged decodes to other pages.
    #[test]
    fn any_flipped_byte_is_refused_or_decodes_to_exactly_the_original(
        at in any::<prop::sample::Index>(),
        bit in 0u8..8,
    ) {
        let original = snapshot_file(6, 512);
        let mut bytes = original.clone();
        let i = at.index(bytes.len());
        bytes[i] ^= 1 << bit;
        if let Ok(decoded) = decode_all(&bytes) {
            prop_assert_eq!(decoded, decode_all(&original).unwrap(), "flip at byte {} of {} accepted", i, bytes.len());
        }
    }

    #[test]
    fn any_truncation_is_refused(at in any::<prop::sample::Index>()) {
        let bytes = snapshot_file(6, 512);
        let cut = at.index(bytes.len());
        let err = decode_all(&bytes[..cut]).unwrap_err();
        prop_assert!(err.is_corrupt(), "{}", err);
    }

    #[test]
    fn arbitrary_bytes_never_panic(data in proptest::collection::vec(any::<u8>(), 0..600), magic in any::<bool>()) {
        let mut data = data;
        if magic && data.len() >= 12 {
            data[0..4].copy_from_slice(b"LTX1");
            data[4..8].copy_from_slice(&2u32.to_be_bytes());
            data[8..12].copy_from_slice(&512u32.to_be_bytes());
        }
        let _ = decode_all(&data);
    }
}

/// Every flip of every bit of a snapshot file: refused, but for the few
/// that only respell an LZ4 block (one byte a page, its low four bits), and
/// those decode to exactly the original pages.
#[test]
fn every_flip_of_a_file_is_refused_but_a_respelled_block() {
    let original = snapshot_file(6, 512);
    let want = decode_all(&original).unwrap();
    let mut accepted = std::collections::BTreeSet::new();
    for i in 0..original.len() {
        for bit in 0..8 {
            let mut bytes = original.clone();
            bytes[i] ^= 1 << bit;
            if let Ok(decoded) = decode_all(&bytes) {
                assert_eq!(
                    decoded, want,
                    "flip of bit {bit} at byte {i} gave other pages"
                );
                assert!(bit < 4, "flip of bit {bit} at byte {i} accepted");
                accepted.insert(i);
            }
        }
    }
    assert!(
        accepted.len() <= 6,
        "one byte per page at most: {accepted:?}"
    );
}

#[test]
fn the_file_checksum_is_crc64_iso_over_the_documented_bytes() {
    let bytes = snapshot_file(2, 512);
    let (_, pages, trailer) = decode_all(&bytes).unwrap();
    // Rebuild the checksummed stream by hand: header, each frame header and
    // size prefix with the decompressed page, the zero header, the index,
    // the post-apply checksum.
    let mut h = Hasher::default();
    h.update(&bytes[..100]);
    let mut at = 100;
    for (_, data) in &pages {
        let size = u32::from_be_bytes(bytes[at + 6..at + 10].try_into().unwrap()) as usize;
        h.update(&bytes[at..at + 10]);
        h.update(data);
        at += 10 + size;
    }
    h.update(&bytes[at..bytes.len() - 8]);
    assert_eq!(trailer.file_checksum, h.checksum());
    assert_eq!(trailer.file_checksum >> 63, 1);
    assert_ne!(crc64(&bytes), 0);
}

#[test]
fn bytes_after_the_trailer_are_refused() {
    let mut bytes = snapshot_file(3, 512);
    bytes.push(0);
    let err = decode_all(&bytes).unwrap_err();
    assert!(err.to_string().contains("after the trailer"), "{err}");
}

#[test]
fn a_snapshot_missing_a_page_is_refused_by_the_encoder_and_the_decoder() {
    let header = Header::new(512, 3, 1, 1);
    let mut enc = Encoder::new(Vec::new(), header).unwrap();
    enc.encode_page(1, &page(1, 512, 0)).unwrap();
    assert!(enc.encode_page(3, &page(3, 512, 0)).is_err());
    // Hand-built: a non-snapshot file with pages 1 and 3, its min TXID then
    // rewritten to 1 (a snapshot) with the checksum fixed up, is refused.
    let (mut bytes, _) = encode(Header::new(512, 3, 2, 2), &[1, 3], 0);
    bytes[16..24].copy_from_slice(&1u64.to_be_bytes());
    let err = decode_all(&bytes).unwrap_err();
    assert!(
        err.to_string().contains("skips from page 1 to page 3"),
        "{err}"
    );
}

#[test]
fn the_lock_page_is_never_stored() {
    let page_size = 65536;
    let lock = lock_pgno(page_size);
    assert_eq!(lock, 16385);
    let header = Header::new(page_size, lock + 1, 1, 1);
    let mut enc = Encoder::new(Vec::new(), header).unwrap();
    let data = vec![1u8; page_size as usize];
    for p in 1..lock {
        enc.encode_page(p, &data).unwrap();
    }
    assert!(enc.encode_page(lock, &data).is_err());
    enc.encode_page(lock + 1, &data).unwrap();
    let (_, bytes) = enc.finish(0).unwrap();
    let (_, pages, _) = decode_all(&bytes).unwrap();
    assert_eq!(pages.len() as u32, lock);
    assert!(pages.iter().all(|(p, _)| *p != lock));
}

#[test]
fn pages_beyond_the_commit_or_out_of_order_are_refused() {
    let header = Header::new(512, 4, 2, 2);
    let mut enc = Encoder::new(Vec::new(), header).unwrap();
    assert!(enc.encode_page(5, &page(5, 512, 0)).is_err());
    enc.encode_page(3, &page(3, 512, 0)).unwrap();
    assert!(enc.encode_page(2, &page(2, 512, 0)).is_err());
    assert!(enc.encode_page(4, &[0u8; 100]).is_err());
}

#[test]
fn snapshot_database_checksums_are_checked_when_present() {
    let mut header = Header::new(512, 2, 1, 1);
    header.flags = 0;
    let mut sum = DatabaseChecksum::default();
    let mut enc = Encoder::new(Vec::new(), header).unwrap();
    for p in 1..=2 {
        let data = page(p, 512, 1);
        sum.toggle(p, &data);
        enc.encode_page(p, &data).unwrap();
    }
    let (_, good) = enc.finish(sum.value()).unwrap();
    decode_all(&good).unwrap();

    let mut enc = Encoder::new(Vec::new(), header).unwrap();
    for p in 1..=2 {
        enc.encode_page(p, &page(p, 512, 1)).unwrap();
    }
    let (_, bad) = enc.finish(sum.value() ^ 1).unwrap();
    let err = decode_all(&bad).unwrap_err();
    assert!(err.to_string().contains("post-apply checksum"), "{err}");
}

/// A file as ltx before 0.5.2 wrote it: page flags 0 and an LZ4 frame per page.
fn legacy_file(header: Header, pgnos: &[u32]) -> Vec<u8> {
    use std::io::Write;
    let mut out = header.to_bytes().to_vec();
    let mut h = Hasher::default();
    h.update(&out);
    let mut index = Vec::new();
    let uv = |out: &mut Vec<u8>, mut v: u64| {
        while v >= 0x80 {
            out.push(v as u8 | 0x80);
            v >>= 7;
        }
        out.push(v as u8);
    };
    for &p in pgnos {
        let offset = out.len() as u64;
        let data = page(p, header.page_size, 3);
        let mut fh = p.to_be_bytes().to_vec();
        fh.extend_from_slice(&0u16.to_be_bytes());
        h.update(&fh);
        h.update(&data);
        out.extend_from_slice(&fh);
        let mut info = lz4_flex::frame::FrameInfo::new();
        info.content_checksum = true;
        info.block_size = lz4_flex::frame::BlockSize::Max64KB;
        let mut zw = lz4_flex::frame::FrameEncoder::with_frame_info(info, Vec::new());
        zw.write_all(&data).unwrap();
        out.extend_from_slice(&zw.finish().unwrap());
        uv(&mut index, u64::from(p));
        uv(&mut index, offset);
        uv(&mut index, out.len() as u64 - offset);
    }
    out.extend_from_slice(&[0u8; 6]);
    h.update(&[0u8; 6]);
    index.push(0);
    let len = index.len() as u64;
    index.extend_from_slice(&len.to_be_bytes());
    h.update(&index);
    out.extend_from_slice(&index);
    h.update(&0u64.to_be_bytes());
    out.extend_from_slice(&0u64.to_be_bytes());
    out.extend_from_slice(&h.checksum().to_be_bytes());
    out
}

#[test]
fn per_page_lz4_frames_of_older_releases_are_read() {
    let header = Header::new(4096, 9, 4, 6);
    let bytes = legacy_file(header, &[2, 5, 9]);
    let (h, pages, _) = decode_all(&bytes).unwrap();
    assert_eq!(h, header);
    let got: Vec<u32> = pages.iter().map(|(p, _)| *p).collect();
    assert_eq!(got, [2, 5, 9]);
    assert_eq!(pages[1].1, page(5, 4096, 3));

    let mut flipped = bytes.clone();
    let i = 100 + 6 + 20; // inside the first frame's compressed data
    flipped[i] ^= 0x40;
    assert!(decode_all(&flipped).is_err());
}

#[test]
fn errors_name_the_byte_offset() {
    let mut bytes = snapshot_file(3, 512);
    bytes[8..12].copy_from_slice(&1000u32.to_be_bytes());
    let err = decode_all(&bytes).unwrap_err();
    assert_eq!(err.offset(), 8, "{err}");
    assert!(err.to_string().contains("page size 1000"), "{err}");
    let err = decode_all(&bytes[..50]).unwrap_err();
    assert!(
        matches!(
            err,
            LtxError::Truncated {
                offset: 0,
                what: "header"
            }
        ),
        "{err}"
    );
    let err = decode_all(b"SQLite format 3\0 and more bytes than a header needs, well beyond one hundred bytes of them, yes indeed").unwrap_err();
    assert!(err.to_string().contains("not an LTX file"), "{err}");
}
