use replica_core::bytes_stream;

use crate::util::*;
use replica_core::Pos;

use crate::{CaseError, CaseResult, Fixture};

pub(crate) async fn wal_of_a_missing_generation_is_empty(f: Fixture) -> CaseResult {
    assert_eq!(segments(&*f.client, &gen(1)).await?, vec![]);
    Ok(())
}

pub(crate) async fn wal_segments_are_sorted_by_index_then_offset(f: Fixture) -> CaseResult {
    let c = &*f.client;
    let g = gen(1);
    let order = [
        (0xa, 0x10),
        (0x9, 0x0),
        (0xa, 0x9),
        (0x0, 0x100),
        (0x9, 0xfff),
        (0xa, 0x0),
        (0x0, 0x0),
    ];
    for (i, o) in order {
        put_segment(c, &g, i, o, &content("w", 4)).await?;
    }
    assert_eq!(
        segment_positions(c, &g).await?,
        [
            (0x0, 0x0),
            (0x0, 0x100),
            (0x9, 0x0),
            (0x9, 0xfff),
            (0xa, 0x0),
            (0xa, 0x9),
            (0xa, 0x10)
        ]
    );
    Ok(())
}

pub(crate) async fn more_than_a_thousand_segments_list_complete_and_sorted(
    f: Fixture,
) -> CaseResult {
    let c = std::sync::Arc::clone(&f.client);
    let g = gen(1);
    // 1,200 segments in index 1 alone (beyond one listing page of 1,000), plus three more indexes.
    let mut expected = Vec::new();
    for (index, count) in [(0u64, 50u64), (1, 1200), (2, 30), (3, 5)] {
        for k in 0..count {
            expected.push((index, k * 4096));
        }
    }
    let data = content("w", 8);
    let writes = futures::stream::iter(expected.clone().into_iter().rev())
        .map(|(i, o)| {
            let c = c.clone();
            let g = g.clone();
            let data = data.clone();
            async move { put_segment(&*c, &g, i, o, &data).await }
        })
        .buffer_unordered(16);
    futures::TryStreamExt::try_collect::<Vec<_>>(writes).await?;
    assert_eq!(segment_positions(&*c, &g).await?, expected);
    Ok(())
}
use futures::StreamExt;

pub(crate) async fn wal_segment_round_trip_is_byte_exact(f: Fixture) -> CaseResult {
    let c = &*f.client;
    let g = gen(1);
    let data = content("seg", 65_537);
    put_segment(c, &g, 3, 4096, &data).await?;
    assert_eq!(read_segment(c, &pos(&g, 3, 4096)).await?, data);
    Ok(())
}

pub(crate) async fn write_wal_segment_returns_exact_info(f: Fixture) -> CaseResult {
    let c = &*f.client;
    let g = gen(1);
    let info = put_segment(c, &g, 3, 4096, &content("x", 333)).await?;
    assert_eq!(
        (info.generation.clone(), info.index, info.offset, info.size),
        (g.clone(), 3, 4096, 333)
    );
    assert_recent(info.created_at, "write_wal_segment");
    let listed = segments(c, &g).await?;
    assert_eq!(listed.len(), 1);
    assert_eq!(
        (listed[0].index, listed[0].offset, listed[0].size),
        (3, 4096, 333)
    );
    assert_recent(listed[0].created_at, "listed segment");
    Ok(())
}

pub(crate) async fn wal_segment_overwrite_replaces_content(f: Fixture) -> CaseResult {
    let c = &*f.client;
    let g = gen(1);
    put_segment(c, &g, 0, 0, &content("old", 999)).await?;
    let new = content("new", 3);
    put_segment(c, &g, 0, 0, &new).await?;
    assert_eq!(read_segment(c, &pos(&g, 0, 0)).await?, new);
    let listed = segments(c, &g).await?;
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].size, 3);
    Ok(())
}

pub(crate) async fn wal_segment_reader_of_a_missing_segment_is_not_found(f: Fixture) -> CaseResult {
    let c = &*f.client;
    let g = gen(1);
    assert_not_found(read_segment(c, &pos(&g, 0, 0)).await, "missing generation");
    put_segment(c, &g, 0, 0, &content("x", 8)).await?;
    assert_not_found(read_segment(c, &pos(&g, 0, 8)).await, "missing offset");
    assert_not_found(read_segment(c, &pos(&g, 1, 0)).await, "missing index");
    Ok(())
}

pub(crate) async fn delete_wal_segments_removes_only_those_listed(f: Fixture) -> CaseResult {
    let c = &*f.client;
    let g = gen(1);
    for (i, o) in [(0, 0), (0, 8), (1, 0), (1, 8), (2, 0)] {
        put_segment(c, &g, i, o, &content("w", 8)).await?;
    }
    c.delete_wal_segments(&[pos(&g, 0, 8), pos(&g, 1, 0), pos(&g, 2, 0)])
        .await?;
    assert_eq!(segment_positions(c, &g).await?, [(0, 0), (1, 8)]);
    assert_not_found(read_segment(c, &pos(&g, 1, 0)).await, "deleted segment");
    Ok(())
}

pub(crate) async fn delete_of_missing_wal_segments_is_ok(f: Fixture) -> CaseResult {
    let c = &*f.client;
    let g = gen(1);
    c.delete_wal_segments(&[pos(&g, 0, 0), pos(&gen(2), 5, 5)])
        .await?;
    c.delete_wal_segments(&[]).await?;
    put_segment(c, &g, 0, 0, &content("w", 8)).await?;
    c.delete_wal_segments(&[pos(&g, 0, 0), pos(&g, 0, 0), pos(&g, 0, 8)])
        .await?;
    assert_eq!(segments(c, &g).await?, vec![]);
    Ok(())
}

pub(crate) async fn wal_position_above_the_layout_maximum_is_invalid(f: Fixture) -> CaseResult {
    let c = &*f.client;
    let g = gen(1);
    let (max_index, max_offset) = (c.layout().max_index(), c.layout().max_offset());
    for (i, o) in [
        (max_index + 1, 0),
        (0, max_offset + 1),
        (u64::MAX, u64::MAX),
    ] {
        let p = pos(&g, i, o);
        assert_invalid(
            c.write_wal_segment(&p, bytes_stream("x")).await,
            "write_wal_segment",
        );
        assert_invalid(
            c.wal_segment_reader(&p).await.map(|_| ()),
            "wal_segment_reader",
        );
        assert_invalid(c.delete_wal_segments(&[p]).await, "delete_wal_segments");
    }
    assert_eq!(
        c.generations().await?,
        vec![],
        "a rejected write must store nothing"
    );
    Ok(())
}

pub(crate) async fn wal_segment_at_the_largest_position_works(f: Fixture) -> CaseResult {
    let c = &*f.client;
    let g = gen(1);
    let data = content("max", 10);
    let (i, o) = (c.layout().max_index(), c.layout().max_offset());
    put_segment(c, &g, i, o, &data).await?;
    assert_eq!(segment_positions(c, &g).await?, [(i, o)]);
    assert_eq!(read_segment(c, &pos(&g, i, o)).await?, data);
    Ok(())
}

pub(crate) async fn failed_wal_segment_write_stores_nothing(f: Fixture) -> CaseResult {
    let c = &*f.client;
    let g = gen(1);
    let p = pos(&g, 0, 0);
    let result = c
        // Above the file backend's 1 MiB single-call write: the streaming path.
        .write_wal_segment(&p, failing_stream(content("p", 2 << 20)))
        .await;
    assert!(result.is_err(), "a write whose input fails must fail");
    assert_eq!(segments(c, &g).await?, vec![], "partial segment listed");
    assert_not_found(read_segment(c, &p).await, "partial segment readable");
    Ok(())
}

pub(crate) async fn snapshots_and_wal_segments_are_listed_apart(f: Fixture) -> CaseResult {
    let c = &*f.client;
    let g = gen(1);
    put_snapshot(c, &g, 4, &content("s", 4)).await?;
    put_segment(c, &g, 5, 0, &content("w", 4)).await?;
    assert_eq!(snapshot_indexes(c, &g).await?, [4]);
    assert_eq!(segment_positions(c, &g).await?, [(5, 0)]);
    assert_not_found(
        read_segment(c, &pos(&g, 4, 0)).await,
        "a snapshot is not a segment",
    );
    assert_not_found(read_snapshot(c, &g, 5).await, "a segment is not a snapshot");
    Ok(())
}

pub(crate) async fn generations_do_not_share_segments(f: Fixture) -> CaseResult {
    let c = &*f.client;
    put_segment(c, &gen(1), 0, 0, &content("a", 4)).await?;
    put_segment(c, &gen(2), 0, 8, &content("b", 4)).await?;
    assert_eq!(segment_positions(c, &gen(1)).await?, [(0, 0)]);
    assert_eq!(segment_positions(c, &gen(2)).await?, [(0, 8)]);
    assert!(segments(c, &gen(2))
        .await?
        .iter()
        .all(|s| s.generation == gen(2)));
    Ok(())
}

pub(crate) async fn deleting_more_than_a_thousand_segments_deletes_them_all(
    f: Fixture,
) -> CaseResult {
    // S3 deletes at most 1,000 keys a request: a backend that sends only
    // the first batch leaves the rest behind.
    let c = std::sync::Arc::clone(&f.client);
    let g = gen(1);
    let positions: Vec<Pos> = (0..1_100u64)
        .map(|k| pos(&g, k / 400, (k % 400) * 64))
        .collect();
    let data = content("d", 8);
    let writes = futures::stream::iter(positions.clone())
        .map(|p| {
            let (c, data) = (c.clone(), data.clone());
            async move { c.write_wal_segment(&p, bytes_stream(data)).await }
        })
        .buffer_unordered(16);
    futures::TryStreamExt::try_collect::<Vec<_>>(writes).await?;
    assert_eq!(segments(&*c, &g).await?.len(), 1_100);
    c.delete_wal_segments(&positions).await?;
    let left = segment_positions(&*c, &g).await?;
    assert!(
        left.is_empty(),
        "one delete call of 1,100 segments left {} behind, from {:?}",
        left.len(),
        left.first()
    );
    Ok(())
}

pub(crate) async fn a_missing_segment_is_not_found_from_the_call_itself(f: Fixture) -> CaseResult {
    let c = &*f.client;
    let g = gen(1);
    put_segment(c, &g, 1, 0, &content("w", 8)).await?;
    // NotFound must come from the call, not from inside the stream it
    // returns: a caller decides on the call's result (skip, retry, fail).
    match c.wal_segment_reader(&pos(&g, 1, 8)).await {
        Err(e) if e.is_not_found() => {}
        Err(e) => {
            return Err(CaseError::Fail(format!(
                "expected NotFound from the call, got {e}"
            )))
        }
        Ok(_) => {
            return Err(CaseError::Fail(
                "wal_segment_reader of a missing segment returned a stream; NotFound must come \
                 from the call itself"
                    .into(),
            ))
        }
    }
    match c.snapshot_reader(&g, 9).await {
        Err(e) if e.is_not_found() => Ok(()),
        Err(e) => Err(CaseError::Fail(format!(
            "expected NotFound from the call, got {e}"
        ))),
        Ok(_) => Err(CaseError::Fail(
            "snapshot_reader of a missing snapshot returned a stream; NotFound must come from the \
             call itself"
                .into(),
        )),
    }
}

pub(crate) async fn an_empty_wal_segment_round_trips(f: Fixture) -> CaseResult {
    let c = &*f.client;
    let g = gen(1);
    let info = put_segment(c, &g, 2, 0, &bytes::Bytes::new()).await?;
    assert_eq!(info.size, 0, "reply size of an empty segment");
    let listed = segments(c, &g).await?;
    assert_eq!(
        listed
            .iter()
            .map(|s| (s.index, s.offset, s.size))
            .collect::<Vec<_>>(),
        [(2, 0, 0)],
        "an empty segment is stored and listed like any other"
    );
    assert!(read_segment(c, &pos(&g, 2, 0)).await?.is_empty());
    Ok(())
}

pub(crate) async fn the_write_reply_time_is_the_listed_time(f: Fixture) -> CaseResult {
    let c = &*f.client;
    let g = gen(1);
    let written = put_snapshot(c, &g, 1, &content("s", 8)).await?.created_at;
    let listed = c.snapshots(&g).await?[0].created_at;
    let segment = put_segment(c, &g, 1, 0, &content("w", 8)).await?.created_at;
    let listed_segment = segments(c, &g).await?[0].created_at;
    for (what, reply, list) in [
        ("snapshot", written, listed),
        ("segment", segment, listed_segment),
    ] {
        let apart = (reply - list).abs();
        assert!(
            apart <= chrono::TimeDelta::seconds(5),
            "{what}: the write reply says {reply}, the listing {list} ({apart} apart; at most 5 s)"
        );
    }
    Ok(())
}

pub(crate) async fn more_than_a_thousand_wal_indexes_list_complete_and_restore_across(
    f: Fixture,
) -> CaseResult {
    // The nested layout keeps one directory per index: a day of a busy
    // database passes 1,000 of them, beyond one listing page.
    let c = std::sync::Arc::clone(&f.client);
    let g = gen(1);
    let n = 1_100u64;
    put_snapshot(&*c, &g, 0, &content("s", 8)).await?;
    let data = content("w", 8);
    write_many(n, |i| {
        let (c, g, data) = (c.clone(), g.clone(), data.clone());
        async move { put_segment(&*c, &g, i, 0, &data).await }
    })
    .await?;
    let listed: Vec<u64> = segments(&*c, &g).await?.iter().map(|s| s.index).collect();
    assert_eq!(
        listed.len() as u64,
        n,
        "WAL indexes beyond one listing page of directories are missing"
    );
    assert!(
        listed.iter().zip(0..).all(|(i, k)| *i == k),
        "indexes out of order"
    );
    let plan =
        replica_core::ReplicaClientExt::list_restore(&*c, &g, replica_core::RestoreTarget::End)
            .await?;
    assert_eq!(
        plan.wal.len() as u64,
        n,
        "a restore plan must cross every index"
    );
    Ok(())
}
