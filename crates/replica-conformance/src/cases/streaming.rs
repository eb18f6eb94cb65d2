use crate::util::*;
use crate::{CaseResult, Fixture};

const SIZE: usize = 64 << 20;

pub(crate) async fn a_64_mib_snapshot_streams_back_byte_exact(f: Fixture) -> CaseResult {
    let c = &*f.client;
    let g = gen(1);
    let info = c.write_snapshot(&g, 1, big_stream(11, SIZE)).await?;
    assert_eq!(info.size, SIZE as u64);
    assert_eq!(c.snapshots(&g).await?[0].size, SIZE as u64);
    if let Some(diff) = same_as_big_stream(c.snapshot_reader(&g, 1).await?, 11, SIZE).await? {
        panic!("64 MiB snapshot read back wrong: {diff}");
    }
    Ok(())
}

pub(crate) async fn a_large_wal_segment_streams_back_byte_exact(f: Fixture) -> CaseResult {
    let c = &*f.client;
    let g = gen(1);
    let len = 9 << 20;
    let p = pos(&g, 0, 0);
    c.write_wal_segment(&p, big_stream(5, len)).await?;
    if let Some(diff) = same_as_big_stream(c.wal_segment_reader(&p).await?, 5, len).await? {
        panic!("9 MiB segment read back wrong: {diff}");
    }
    Ok(())
}
