use std::sync::Arc;

use futures::future::try_join_all;

use crate::util::*;
use crate::{CaseResult, Fixture};

pub(crate) async fn sixteen_concurrent_writers_lose_nothing(f: Fixture) -> CaseResult {
    let g = gen(1);
    let tasks = (0..16u64).map(|w| {
        let c = Arc::clone(&f.client);
        let g = g.clone();
        tokio::spawn(async move {
            for k in 0..8u64 {
                let tag = format!("{w}-{k}");
                put_segment(&*c, &g, w, k * 100, &content(&tag, 100 + k as usize)).await?;
            }
            put_snapshot(&*c, &g, w, &content(&format!("snap{w}"), 1000)).await?;
            Ok::<_, replica_core::Error>(())
        })
    });
    for joined in futures::future::join_all(tasks).await {
        joined.expect("writer task")?;
    }
    let c = &*f.client;
    let listed = segments(c, &g).await?;
    assert_eq!(listed.len(), 16 * 8, "segments lost");
    for s in &listed {
        let k = s.offset / 100;
        let want = content(&format!("{}-{k}", s.index), 100 + k as usize);
        assert_eq!(s.size, want.len() as u64);
        assert_eq!(
            read_segment(c, &s.pos()).await?,
            want,
            "segment {}",
            s.pos()
        );
    }
    assert_eq!(snapshot_indexes(c, &g).await?, (0..16).collect::<Vec<_>>());
    Ok(())
}

pub(crate) async fn concurrent_overwrites_leave_one_whole_version(f: Fixture) -> CaseResult {
    let g = gen(1);
    let versions: Vec<_> = (0..16)
        .map(|w| content(&format!("v{w}"), 200_000 + w))
        .collect();
    let tasks = versions.iter().cloned().map(|data| {
        let c = Arc::clone(&f.client);
        let g = g.clone();
        tokio::spawn(async move { put_snapshot(&*c, &g, 9, &data).await })
    });
    for joined in futures::future::join_all(tasks).await {
        joined.expect("writer task")?;
    }
    let got = read_snapshot(&*f.client, &g, 9).await?;
    assert!(
        versions.contains(&got),
        "the snapshot is not any one whole version ({} bytes): writers interleaved",
        got.len()
    );
    let listed = f.client.snapshots(&g).await?;
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].size, got.len() as u64);
    Ok(())
}

pub(crate) async fn listings_during_writes_are_sorted_and_whole(f: Fixture) -> CaseResult {
    let g = gen(1);
    let writer = {
        let c = Arc::clone(&f.client);
        let g = g.clone();
        tokio::spawn(async move {
            for k in 0..200u64 {
                put_segment(&*c, &g, k / 50, (k % 50) * 10, &content(&k.to_string(), 10)).await?;
            }
            Ok::<_, replica_core::Error>(())
        })
    };
    loop {
        let done = writer.is_finished();
        let listed = segments(&*f.client, &g).await?;
        let keys: Vec<_> = listed.iter().map(|s| (s.index, s.offset)).collect();
        assert!(
            keys.windows(2).all(|w| w[0] < w[1]),
            "listing not sorted: {keys:?}"
        );
        assert!(
            listed.iter().all(|s| s.size == 10),
            "a listed segment is partial"
        );
        // Let the writer run even on a backend whose calls never yield.
        tokio::task::yield_now().await;
        if done {
            // The writer's own error, if it failed, says more than a count.
            writer.await.expect("writer task")?;
            assert_eq!(
                listed.len(),
                200,
                "every acknowledged segment is listed once the writer is done"
            );
            return Ok(());
        }
    }
}

pub(crate) async fn concurrent_deletes_and_writes_of_other_objects_do_not_interfere(
    f: Fixture,
) -> CaseResult {
    let c = Arc::clone(&f.client);
    let g = gen(1);
    for k in 0..50u64 {
        put_segment(&*c, &g, 0, k, &content("old", 5)).await?;
    }
    let deleter = {
        let c = Arc::clone(&c);
        let g = g.clone();
        tokio::spawn(async move {
            let doomed: Vec<_> = (0..50u64).map(|k| pos(&g, 0, k)).collect();
            c.delete_wal_segments(&doomed).await
        })
    };
    let writers = (0..50u64).map(|k| {
        let c = Arc::clone(&c);
        let g = g.clone();
        async move { put_segment(&*c, &g, 1, k, &content("new", 5)).await }
    });
    try_join_all(writers).await?;
    deleter.await.expect("deleter task")?;
    let listed = segment_positions(&*c, &g).await?;
    assert_eq!(listed, (0..50u64).map(|k| (1, k)).collect::<Vec<_>>());
    Ok(())
}

/// 32 tasks write, overwrite, delete and list in one generation for a fixed
/// time; afterwards the store must equal the log of acknowledged operations.
pub(crate) async fn thirty_two_tasks_mixing_operations_match_the_acknowledged_log(
    f: Fixture,
) -> CaseResult {
    use std::collections::BTreeMap;
    use std::time::{Duration, Instant};

    let g = gen(1);
    let deadline = Instant::now() + Duration::from_millis(1500);
    let tasks = (0..32u64).map(|t| {
        let c = Arc::clone(&f.client);
        let g = g.clone();
        tokio::spawn(async move {
            // Each task owns its offsets, so its own log is the truth for them.
            let mut mine: BTreeMap<(u64, u64), bytes::Bytes> = BTreeMap::new();
            let mut step = 0u64;
            while Instant::now() < deadline {
                let index = step % 3;
                let offset = t * 1_000_000 + (step % 7) * 8;
                match step % 5 {
                    0..=2 => {
                        let data = content(&format!("{t}/{step}"), 50 + (step % 13) as usize);
                        put_segment(&*c, &g, index, offset, &data).await?;
                        mine.insert((index, offset), data);
                    }
                    3 => {
                        c.delete_wal_segments(&[pos(&g, index, offset)]).await?;
                        mine.remove(&(index, offset));
                    }
                    _ => {
                        let listed = segments(&*c, &g).await?;
                        let keys: Vec<_> = listed.iter().map(|s| (s.index, s.offset)).collect();
                        assert!(keys.windows(2).all(|w| w[0] < w[1]), "listing not sorted");
                    }
                }
                step += 1;
            }
            Ok::<_, replica_core::Error>(mine)
        })
    });
    let mut expected: BTreeMap<(u64, u64), bytes::Bytes> = BTreeMap::new();
    for joined in futures::future::join_all(tasks).await {
        expected.extend(joined.expect("task")?);
    }
    let c = &*f.client;
    let listed = segments(c, &g).await?;
    let keys: Vec<(u64, u64)> = listed.iter().map(|s| (s.index, s.offset)).collect();
    assert_eq!(
        keys,
        expected.keys().copied().collect::<Vec<_>>(),
        "store differs from the acknowledged log"
    );
    for s in &listed {
        let want = &expected[&(s.index, s.offset)];
        assert_eq!(s.size, want.len() as u64, "size of {}", s.pos());
        assert_eq!(
            &read_segment(c, &s.pos()).await?,
            want,
            "content of {}",
            s.pos()
        );
    }
    Ok(())
}
