use bytes::{Bytes, BytesMut};
use futures::stream::BoxStream;
use futures::TryStreamExt;
use replica_core::async_trait;
use replica_core::lz4::compress;
use replica_core::{
    ByteStream, Error, ReplicaClientExt, RestoreSink, RestoreTarget, Result, SnapshotInfo,
};

use crate::util::*;
use crate::{CaseResult, Fixture};

pub(crate) async fn latest_generation_is_the_one_written_last(f: Fixture) -> CaseResult {
    let c = &*f.client;
    assert_eq!(c.latest_generation().await?, None);
    put_snapshot(c, &gen(9), 0, &content("s", 4)).await?;
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    put_snapshot(c, &gen(1), 0, &content("s", 4)).await?;
    assert_eq!(c.latest_generation().await?, Some(gen(1)));
    Ok(())
}

pub(crate) async fn max_index_and_time_bounds_cover_snapshots_and_wal(f: Fixture) -> CaseResult {
    let c = &*f.client;
    let g = gen(1);
    assert_eq!(c.max_index(&g).await?, None);
    assert_eq!(c.generation_time_bounds(&g).await?, None);
    assert_eq!(c.replica_time_bounds().await?, None);
    let s = put_snapshot(c, &g, 3, &content("s", 4)).await?;
    let w = put_segment(c, &g, 7, 0, &content("w", 4)).await?;
    assert_eq!(c.max_index(&g).await?, Some(7));
    let bounds = c.generation_time_bounds(&g).await?.expect("bounds");
    assert!(bounds.first <= bounds.last);
    let listed = c.snapshots(&g).await?[0].created_at;
    assert!(bounds.first <= listed && listed <= bounds.last);
    assert_recent(bounds.first, "first");
    assert_recent(bounds.last, "last");
    assert!(s.created_at <= w.created_at + chrono::TimeDelta::seconds(5));
    assert_eq!(c.replica_time_bounds().await?, Some(bounds));
    Ok(())
}

pub(crate) async fn snapshot_for_index_is_the_newest_at_or_below(f: Fixture) -> CaseResult {
    let c = &*f.client;
    let g = gen(1);
    for i in [2, 5, 9] {
        put_snapshot(c, &g, i, &content("s", 4)).await?;
    }
    let g = &g;
    let at = |i| async move { Ok::<_, Error>(c.snapshot_for_index(g, i).await?.map(|s| s.index)) };
    assert_eq!(at(1).await?, None);
    assert_eq!(at(2).await?, Some(2));
    assert_eq!(at(8).await?, Some(5));
    assert_eq!(at(100).await?, Some(9));
    Ok(())
}

/// Records what a restore hands over.
#[derive(Default)]
struct Recorder {
    database: Option<(u64, Bytes)>,
    wal: Vec<(u64, Bytes)>,
}

#[async_trait]
impl RestoreSink for Recorder {
    async fn database(&mut self, snapshot: &SnapshotInfo, data: ByteStream) -> Result<()> {
        let bytes: BytesMut = data.try_collect().await?;
        self.database = Some((snapshot.index, bytes.freeze()));
        Ok(())
    }
    async fn wal(&mut self, index: u64, data: BoxStream<'_, Result<Bytes>>) -> Result<()> {
        let bytes: BytesMut = data.try_collect().await?;
        self.wal.push((index, bytes.freeze()));
        Ok(())
    }
}

/// Snapshot at 1; WAL 1: [0..100) [100..150); WAL 2: [0..70); WAL 3: [0..30).
async fn write_replica(f: &Fixture) -> Result<()> {
    let c = &*f.client;
    let g = gen(1);
    c.write_snapshot(
        &g,
        1,
        replica_core::bytes_stream(compress(&content("db", 4096))),
    )
    .await?;
    for (i, o, len) in [(1, 0, 100), (1, 100, 50), (2, 0, 70), (3, 0, 30)] {
        let plain = content(&format!("{i}/{o}"), len);
        put_segment(c, &g, i, o, &Bytes::from(compress(&plain))).await?;
    }
    Ok(())
}

fn wal_file(parts: &[(u64, u64, usize)]) -> Bytes {
    let mut out = BytesMut::new();
    for &(i, o, len) in parts {
        out.extend_from_slice(&content(&format!("{i}/{o}"), len));
    }
    out.freeze()
}

pub(crate) async fn restore_to_the_end_hands_over_snapshot_then_each_wal_file(
    f: Fixture,
) -> CaseResult {
    write_replica(&f).await?;
    let mut sink = Recorder::default();
    let plan = f
        .client
        .restore(&gen(1), RestoreTarget::End, &mut sink)
        .await?;
    assert_eq!(plan.snapshot.index, 1);
    assert_eq!(sink.database, Some((1, content("db", 4096))));
    assert_eq!(
        sink.wal,
        vec![
            (1, wal_file(&[(1, 0, 100), (1, 100, 50)])),
            (2, wal_file(&[(2, 0, 70)])),
            (3, wal_file(&[(3, 0, 30)])),
        ]
    );
    Ok(())
}

pub(crate) async fn restore_to_an_index_stops_there(f: Fixture) -> CaseResult {
    write_replica(&f).await?;
    let mut sink = Recorder::default();
    f.client
        .restore(&gen(1), RestoreTarget::Index(2), &mut sink)
        .await?;
    assert_eq!(sink.wal.iter().map(|(i, _)| *i).collect::<Vec<_>>(), [1, 2]);
    Ok(())
}

pub(crate) async fn restore_with_an_offset_gap_fails_before_handing_anything_over(
    f: Fixture,
) -> CaseResult {
    write_replica(&f).await?;
    f.client.delete_wal_segments(&[pos(&gen(1), 1, 0)]).await?;
    let mut sink = Recorder::default();
    let err = f
        .client
        .restore(&gen(1), RestoreTarget::End, &mut sink)
        .await
        .expect_err("a gap must fail the restore");
    match &err {
        Error::Gap { expected, .. } => {
            assert_eq!((expected.index, expected.offset), (1, 0), "{err}")
        }
        other => panic!("expected a Gap error, got {other:?}"),
    }
    assert!(
        sink.database.is_none() && sink.wal.is_empty(),
        "data handed over before the check"
    );
    Ok(())
}

pub(crate) async fn restore_with_a_missing_middle_segment_names_the_position(
    f: Fixture,
) -> CaseResult {
    write_replica(&f).await?;
    let c = &*f.client;
    put_segment(c, &gen(1), 1, 200, &Bytes::from(compress(b"late"))).await?;
    let err = c
        .plan_restore(&gen(1), RestoreTarget::End)
        .await
        .expect_err("gap");
    match &err {
        Error::Gap { expected, .. } => {
            assert_eq!((expected.index, expected.offset), (1, 150), "{err}")
        }
        other => panic!("expected a Gap error, got {other:?}"),
    }
    assert!(
        err.to_string()
            .contains("0000000000000001:0000000000000096"),
        "{err}"
    );
    Ok(())
}

pub(crate) async fn restore_with_a_missing_index_fails(f: Fixture) -> CaseResult {
    write_replica(&f).await?;
    f.client.delete_wal_segments(&[pos(&gen(1), 2, 0)]).await?;
    let err = f
        .client
        .plan_restore(&gen(1), RestoreTarget::End)
        .await
        .expect_err("gap");
    match &err {
        Error::Gap { expected, .. } => {
            assert_eq!((expected.index, expected.offset), (2, 0), "{err}")
        }
        other => panic!("expected a Gap error, got {other:?}"),
    }
    Ok(())
}

pub(crate) async fn restore_without_a_snapshot_is_not_found(f: Fixture) -> CaseResult {
    put_segment(&*f.client, &gen(1), 0, 0, &Bytes::from(compress(b"x"))).await?;
    let mut sink = Recorder::default();
    assert_not_found(
        f.client
            .restore(&gen(1), RestoreTarget::End, &mut sink)
            .await,
        "restore without snapshot",
    );
    Ok(())
}
