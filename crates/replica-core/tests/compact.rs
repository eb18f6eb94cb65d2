//! Compaction of one LTX level into the next, over a key store: the newest
//! version of each page wins, pages past the last commit are dropped, the
//! header is Litestream's (first min TXID, last max TXID, commit and
//! timestamp), later compactions continue after the destination's newest
//! TXID, and a hole or a damaged input stores nothing.

use std::sync::Arc;

use bytes::Bytes;
use replica_core::ltx::{compact, decode_file, format, LtxClient, TxId};
use replica_core::{bytes_stream, Error};
use replica_memory::MemoryStore;

const PAGE: u32 = 512;

fn page(pgno: u32, version: u64) -> Vec<u8> {
    let mut p = vec![(version as u8) ^ (pgno as u8); PAGE as usize];
    p[..4].copy_from_slice(&pgno.to_be_bytes());
    p[4..12].copy_from_slice(&version.to_be_bytes());
    p
}

/// An L0 file at `txid` holding `pages` in version `txid`, of a database of `commit` pages.
fn l0(txid: u64, commit: u32, pages: &[u32]) -> Bytes {
    let mut h = format::Header::new(PAGE, commit, txid, txid);
    h.timestamp = 1_700_000_000_000 + txid as i64;
    h.wal_offset = 32;
    h.wal_size = 1000;
    let mut enc = format::Encoder::new(Vec::new(), h).unwrap();
    let mut sorted = pages.to_vec();
    sorted.sort_unstable();
    for p in sorted {
        enc.encode_page(p, &page(p, txid)).unwrap();
    }
    Bytes::from(enc.finish(0).unwrap().1)
}

async fn put(c: &LtxClient, level: u8, txid: u64, data: Bytes) {
    c.write(
        level,
        TxId(txid),
        TxId(txid),
        bytes_stream(data),
        chrono::Utc::now(),
    )
    .await
    .unwrap();
}

async fn pages_of(c: &LtxClient, level: u8, i: usize) -> (format::Header, Vec<(u32, Vec<u8>)>) {
    let info = c.files(level).await.unwrap()[i].clone();
    let pages = Arc::new(std::sync::Mutex::new(Vec::new()));
    let sink = pages.clone();
    let decoded = decode_file(
        c.read(&info).await.unwrap(),
        &info.name(),
        |_| Ok(()),
        move |_, pgno, data| {
            sink.lock().unwrap().push((pgno, data.to_vec()));
            Ok(())
        },
    )
    .await
    .unwrap();
    let pages = pages.lock().unwrap().clone();
    (decoded.header, pages)
}

#[tokio::test]
async fn the_newest_page_wins_and_the_header_is_litestreams() {
    let c = LtxClient::new(Arc::new(MemoryStore::new()));
    put(&c, 0, 1, l0(1, 4, &[1, 2, 3, 4])).await;
    put(&c, 0, 2, l0(2, 6, &[2, 5, 6])).await;
    // The database shrinks to 5 pages: page 6 is dropped.
    put(&c, 0, 3, l0(3, 5, &[3, 1])).await;
    let info = compact(&c, 0, 1).await.unwrap().expect("compacted");
    assert_eq!(
        (info.level, info.min_txid, info.max_txid),
        (1, TxId(1), TxId(3))
    );
    let (h, pages) = pages_of(&c, 1, 0).await;
    assert_eq!((h.min_txid, h.max_txid, h.commit), (TxId(1), TxId(3), 5));
    assert_eq!(h.timestamp, 1_700_000_000_003, "the last file's timestamp");
    assert_eq!((h.wal_offset, h.wal_size), (0, 0), "WAL fields zero");
    assert!(h.no_checksum());
    let want: Vec<(u32, Vec<u8>)> = [(1, 3), (2, 2), (3, 3), (4, 1), (5, 2)]
        .into_iter()
        .map(|(p, v)| (p, page(p, v)))
        .collect();
    assert_eq!(pages, want);
    assert!(compact(&c, 0, 1).await.unwrap().is_none(), "nothing new");
    // Later files are compacted after the destination's newest TXID.
    put(&c, 0, 4, l0(4, 5, &[4])).await;
    put(&c, 0, 5, l0(5, 5, &[5])).await;
    let next = compact(&c, 0, 1).await.unwrap().expect("compacted");
    assert_eq!((next.min_txid, next.max_txid), (TxId(4), TxId(5)));
    // And the next level takes both.
    let l2 = compact(&c, 1, 2).await.unwrap().expect("compacted");
    assert_eq!((l2.min_txid, l2.max_txid), (TxId(1), TxId(5)));
    let (_, pages) = pages_of(&c, 2, 0).await;
    let versions: Vec<(u32, u64)> = pages
        .iter()
        .map(|(p, d)| (*p, u64::from_be_bytes(d[4..12].try_into().unwrap())))
        .collect();
    assert_eq!(versions, [(1, 3), (2, 2), (3, 3), (4, 4), (5, 5)]);
}

#[tokio::test]
async fn a_hole_or_a_damaged_input_stores_nothing() {
    let c = LtxClient::new(Arc::new(MemoryStore::new()));
    put(&c, 0, 1, l0(1, 2, &[1, 2])).await;
    put(&c, 0, 3, l0(3, 2, &[2])).await;
    let err = compact(&c, 0, 1).await.unwrap_err();
    assert!(
        matches!(
            err,
            Error::TxidHole {
                first: 2,
                last: 2,
                ..
            }
        ),
        "{err}"
    );
    assert!(c.files(1).await.unwrap().is_empty());

    let c = LtxClient::new(Arc::new(MemoryStore::new()));
    put(&c, 0, 1, l0(1, 2, &[1, 2])).await;
    let mut bad = l0(2, 2, &[2]).to_vec();
    let at = bad.len() - 30;
    bad[at] ^= 0x55;
    put(&c, 0, 2, Bytes::from(bad)).await;
    let err = compact(&c, 0, 1).await.unwrap_err();
    assert!(
        matches!(err, Error::Corrupt { ref path, .. } if path.contains("0000000000000002")),
        "{err}"
    );
    assert!(
        c.files(1).await.unwrap().is_empty(),
        "no partial compaction"
    );
}
