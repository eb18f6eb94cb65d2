//! A 256 MiB snapshot streamed through LZ4 and the file backend and back,
//! with the process's peak memory checked. Alone in its own test binary (its
//! own process), so that no other test disturbs the peak.

use bytes::Bytes;
use futures::stream::{self, StreamExt, TryStreamExt};
use replica_core::lz4::{compress_stream, decompress_stream};
use replica_core::{Generation, ReplicaClient};
use replica_file::{FileClient, FileStore};

const TOTAL: usize = 256 << 20;
const CHUNK: usize = 1 << 20;

/// Chunk `i` of the test data: compressible (like a database page) but
/// different in every chunk.
fn chunk(i: usize) -> Bytes {
    let mut out = vec![0u8; CHUNK];
    let mut x = (i as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    for (n, page) in out.chunks_mut(4096).enumerate() {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        page[..8].copy_from_slice(&x.to_le_bytes());
        page[8..16].copy_from_slice(&(n as u64).to_le_bytes());
        for (k, b) in page[16..].iter_mut().enumerate() {
            *b = (k as u8).wrapping_mul((x & 0xff) as u8);
        }
    }
    Bytes::from(out)
}

/// Peak resident set of this process in KiB (VmHWM).
fn peak_rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("procfs");
    let line = status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .expect("VmHWM");
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_256_mib_snapshot_round_trips_in_bounded_memory() {
    let dir = tempfile::tempdir().unwrap();
    let client = FileClient::new(FileStore::new(dir.path()));
    let g: Generation = "00000000000000aa".parse().unwrap();
    let before = peak_rss_kib();

    let input = stream::iter((0..TOTAL / CHUNK).map(|i| Ok(chunk(i)))).boxed();
    let info = client
        .write_snapshot(&g, 1, compress_stream(input))
        .await
        .unwrap();
    assert!(
        info.size > 0 && info.size < TOTAL as u64,
        "compressed: {}",
        info.size
    );

    let mut plain = decompress_stream(client.snapshot_reader(&g, 1).await.unwrap());
    let mut at = 0usize;
    let mut want = Bytes::new();
    while let Some(mut got) = plain.try_next().await.unwrap() {
        while !got.is_empty() {
            if want.is_empty() {
                want = chunk(at / CHUNK);
            }
            let n = want.len().min(got.len());
            assert!(want[..n] == got[..n], "bytes differ after offset {at}");
            want = want.slice(n..);
            got = got.slice(n..);
            at += n;
        }
    }
    assert_eq!(at, TOTAL, "round trip length");

    let grown_mib = (peak_rss_kib().saturating_sub(before)) / 1024;
    assert!(
        grown_mib < 64,
        "peak memory grew by {grown_mib} MiB while streaming 256 MiB: something buffers"
    );
    eprintln!("256 MiB round trip; peak RSS grew by {grown_mib} MiB");
}
