use replica_core::{bytes_stream, Error};

use crate::util::*;
use crate::{CaseResult, Fixture};

pub(crate) async fn snapshots_of_a_missing_generation_are_empty(f: Fixture) -> CaseResult {
    assert_eq!(f.client.snapshots(&gen(1)).await?, vec![]);
    Ok(())
}

pub(crate) async fn snapshots_are_sorted_by_index(f: Fixture) -> CaseResult {
    let c = &*f.client;
    let g = gen(1);
    for i in [0x10u64, 0x2, 0x9, 0xa, 0x0, 0x100, 0x1] {
        put_snapshot(c, &g, i, &content("s", 4)).await?;
    }
    assert_eq!(
        snapshot_indexes(c, &g).await?,
        [0x0, 0x1, 0x2, 0x9, 0xa, 0x10, 0x100],
        "snapshots are listed ascending by index"
    );
    Ok(())
}

pub(crate) async fn write_snapshot_returns_exact_info(f: Fixture) -> CaseResult {
    let c = &*f.client;
    let g = gen(3);
    let data = content("info", 1234);
    let info = put_snapshot(c, &g, 42, &data).await?;
    assert_eq!(info.generation, g);
    assert_eq!(info.index, 42);
    assert_eq!(info.size, 1234);
    assert_recent(info.created_at, "write_snapshot");
    Ok(())
}

pub(crate) async fn listed_snapshot_has_exact_size_and_time(f: Fixture) -> CaseResult {
    let c = &*f.client;
    let g = gen(3);
    let written = put_snapshot(c, &g, 7, &content("sz", 4097)).await?;
    let listed = c.snapshots(&g).await?;
    assert_eq!(listed.len(), 1);
    assert_eq!(
        (listed[0].index, listed[0].size),
        (7, 4097),
        "listed (index, stored size)"
    );
    assert_eq!(listed[0].generation, g);
    assert_recent(listed[0].created_at, "listed snapshot");
    let skew = (listed[0].created_at - written.created_at)
        .num_seconds()
        .abs();
    assert!(
        skew <= 5,
        "listed created_at differs from the written one by {skew}s"
    );
    Ok(())
}

pub(crate) async fn snapshot_round_trip_is_byte_exact(f: Fixture) -> CaseResult {
    let c = &*f.client;
    let g = gen(1);
    let data = content("round", 300_001);
    put_snapshot(c, &g, 5, &data).await?;
    assert_eq!(read_snapshot(c, &g, 5).await?, data);
    Ok(())
}

pub(crate) async fn empty_snapshot_round_trips(f: Fixture) -> CaseResult {
    let c = &*f.client;
    let g = gen(1);
    let info = put_snapshot(c, &g, 1, &bytes::Bytes::new()).await?;
    assert_eq!(info.size, 0);
    assert_eq!(read_snapshot(c, &g, 1).await?.len(), 0);
    assert_eq!(c.snapshots(&g).await?[0].size, 0);
    Ok(())
}

pub(crate) async fn snapshot_overwrite_replaces_content(f: Fixture) -> CaseResult {
    let c = &*f.client;
    let g = gen(1);
    put_snapshot(c, &g, 2, &content("old", 5000)).await?;
    let new = content("new", 17);
    put_snapshot(c, &g, 2, &new).await?;
    assert_eq!(read_snapshot(c, &g, 2).await?, new);
    let listed = c.snapshots(&g).await?;
    assert_eq!(listed.len(), 1, "overwrite must not add a second entry");
    assert_eq!(listed[0].size, 17);
    Ok(())
}

pub(crate) async fn snapshot_reader_of_a_missing_index_is_not_found(f: Fixture) -> CaseResult {
    let c = &*f.client;
    let g = gen(1);
    put_snapshot(c, &g, 1, &content("x", 10)).await?;
    assert_not_found(c.snapshot_reader(&g, 2).await.map(|_| ()), "missing index");
    Ok(())
}

pub(crate) async fn snapshot_reader_of_a_missing_generation_is_not_found(f: Fixture) -> CaseResult {
    assert_not_found(
        f.client.snapshot_reader(&gen(4), 0).await.map(|_| ()),
        "missing generation",
    );
    Ok(())
}

pub(crate) async fn delete_snapshot_removes_only_that_snapshot(f: Fixture) -> CaseResult {
    let c = &*f.client;
    let g = gen(1);
    for i in 0..3 {
        put_snapshot(c, &g, i, &content("s", 10)).await?;
    }
    c.delete_snapshot(&g, 1).await?;
    assert_eq!(snapshot_indexes(c, &g).await?, [0, 2]);
    assert_not_found(read_snapshot(c, &g, 1).await, "deleted snapshot");
    Ok(())
}

pub(crate) async fn delete_of_a_missing_snapshot_is_ok(f: Fixture) -> CaseResult {
    let c = &*f.client;
    c.delete_snapshot(&gen(1), 3).await?;
    put_snapshot(c, &gen(1), 1, &content("s", 10)).await?;
    c.delete_snapshot(&gen(1), 3).await?;
    c.delete_snapshot(&gen(1), 1).await?;
    c.delete_snapshot(&gen(1), 1).await?;
    assert_eq!(snapshot_indexes(c, &gen(1)).await?, Vec::<u64>::new());
    Ok(())
}

pub(crate) async fn snapshot_index_above_the_layout_maximum_is_invalid(f: Fixture) -> CaseResult {
    let c = &*f.client;
    let g = gen(1);
    for index in [c.layout().max_index() + 1, u64::MAX] {
        assert_invalid(
            c.write_snapshot(&g, index, bytes_stream("x")).await,
            "write_snapshot",
        );
        assert_invalid(
            c.snapshot_reader(&g, index).await.map(|_| ()),
            "snapshot_reader",
        );
        assert_invalid(c.delete_snapshot(&g, index).await, "delete_snapshot");
    }
    assert_eq!(
        c.generations().await?,
        vec![],
        "a rejected write must store nothing"
    );
    Ok(())
}

pub(crate) async fn snapshot_at_the_largest_index_works(f: Fixture) -> CaseResult {
    let c = &*f.client;
    let g = gen(1);
    let data = content("max", 10);
    let max = c.layout().max_index();
    put_snapshot(c, &g, max, &data).await?;
    put_snapshot(c, &g, max - 1, &data).await?;
    assert_eq!(snapshot_indexes(c, &g).await?, [max - 1, max]);
    assert_eq!(read_snapshot(c, &g, max).await?, data);
    Ok(())
}

pub(crate) async fn failed_snapshot_write_stores_nothing(f: Fixture) -> CaseResult {
    let c = &*f.client;
    let g = gen(1);
    let result = c
        .write_snapshot(&g, 3, failing_stream(content("p", BIG_FAILED_INPUT)))
        .await;
    assert!(result.is_err(), "a write whose input fails must fail");
    assert_eq!(
        snapshot_indexes(c, &g).await?,
        Vec::<u64>::new(),
        "partial snapshot listed"
    );
    assert_not_found(read_snapshot(c, &g, 3).await, "partial snapshot readable");
    Ok(())
}

pub(crate) async fn failed_snapshot_overwrite_keeps_the_old_content(f: Fixture) -> CaseResult {
    let c = &*f.client;
    let g = gen(1);
    let old = content("old", 1000);
    put_snapshot(c, &g, 3, &old).await?;
    let result = c
        .write_snapshot(&g, 3, failing_stream(content("p", BIG_FAILED_INPUT)))
        .await;
    assert!(result.is_err(), "a write whose input fails must fail");
    assert_eq!(read_snapshot(c, &g, 3).await?, old);
    assert_eq!(c.snapshots(&g).await?[0].size, 1000);
    Ok(())
}

/// Bytes that arrive before a failing input fails: above every backend's
/// single-call write (the file backend's 1 MiB) and multipart threshold (8
/// MiB by default), so the streaming and multipart error paths run.
const BIG_FAILED_INPUT: usize = 9 << 20;

pub(crate) async fn write_error_is_the_input_error_not_a_panic(f: Fixture) -> CaseResult {
    let err = f
        .client
        .write_snapshot(&gen(1), 0, failing_stream(content("p", 10)))
        .await
        .expect_err("input failed");
    assert!(
        matches!(err, Error::Io { .. } | Error::Backend { .. }),
        "input failure should surface as an I/O or backend error, got {err:?}"
    );
    Ok(())
}

pub(crate) async fn snapshots_of_one_generation_are_not_listed_in_another(
    f: Fixture,
) -> CaseResult {
    let c = &*f.client;
    put_snapshot(c, &gen(1), 1, &content("a", 8)).await?;
    put_snapshot(c, &gen(2), 5, &content("b", 8)).await?;
    for (g, index) in [(gen(1), 1), (gen(2), 5)] {
        let listed = c.snapshots(&g).await?;
        assert_eq!(
            listed
                .iter()
                .map(|s| (s.generation.clone(), s.index))
                .collect::<Vec<_>>(),
            [(g.clone(), index)],
            "snapshots of {g}"
        );
    }
    Ok(())
}
