use replica_core::bytes_stream;

use crate::util::*;
use crate::{CaseResult, Fixture};

pub(crate) async fn generations_of_an_empty_store_are_empty(f: Fixture) -> CaseResult {
    assert_eq!(f.client.generations().await?, vec![]);
    Ok(())
}

pub(crate) async fn generations_are_listed_ascending(f: Fixture) -> CaseResult {
    let c = &*f.client;
    for n in [0x30u64, 0x5, 0xff00, 0xa, 0x1] {
        put_snapshot(c, &gen(n), 0, &content("g", 16)).await?;
    }
    let names: Vec<String> = c
        .generations()
        .await?
        .iter()
        .map(|g| g.to_string())
        .collect();
    assert_eq!(
        names,
        [
            "0000000000000001",
            "0000000000000005",
            "000000000000000a",
            "0000000000000030",
            "000000000000ff00"
        ]
    );
    Ok(())
}

pub(crate) async fn a_generation_with_only_wal_is_listed(f: Fixture) -> CaseResult {
    let c = &*f.client;
    put_segment(c, &gen(2), 0, 0, &content("w", 8)).await?;
    assert_eq!(c.generations().await?, vec![gen(2)]);
    Ok(())
}

pub(crate) async fn delete_generation_removes_every_object(f: Fixture) -> CaseResult {
    let c = &*f.client;
    let g = gen(7);
    for i in 0..3 {
        put_snapshot(c, &g, i, &content("s", 10)).await?;
        put_segment(c, &g, i, 0, &content("w", 10)).await?;
        put_segment(c, &g, i, 10, &content("w", 10)).await?;
    }
    c.delete_generation(&g).await?;
    assert_eq!(c.generations().await?, vec![]);
    assert_eq!(c.snapshots(&g).await?, vec![]);
    assert_eq!(segments(c, &g).await?, vec![]);
    assert_not_found(
        read_snapshot(c, &g, 0).await,
        "snapshot after delete_generation",
    );
    assert_not_found(
        read_segment(c, &pos(&g, 1, 10)).await,
        "segment after delete_generation",
    );
    Ok(())
}

pub(crate) async fn delete_generation_leaves_other_generations_alone(f: Fixture) -> CaseResult {
    let c = &*f.client;
    let keep = content("keep", 100);
    put_snapshot(c, &gen(1), 0, &content("x", 5)).await?;
    put_snapshot(c, &gen(2), 0, &keep).await?;
    put_segment(c, &gen(2), 0, 0, &keep).await?;
    c.delete_generation(&gen(1)).await?;
    assert_eq!(c.generations().await?, vec![gen(2)]);
    assert_eq!(read_snapshot(c, &gen(2), 0).await?, keep);
    assert_eq!(read_segment(c, &pos(&gen(2), 0, 0)).await?, keep);
    Ok(())
}

pub(crate) async fn delete_of_a_missing_generation_is_ok(f: Fixture) -> CaseResult {
    f.client.delete_generation(&gen(9)).await?;
    put_snapshot(&*f.client, &gen(1), 0, &content("x", 5)).await?;
    f.client.delete_generation(&gen(9)).await?;
    assert_eq!(f.client.generations().await?, vec![gen(1)]);
    Ok(())
}

pub(crate) async fn a_generation_emptied_object_by_object_is_not_listed(f: Fixture) -> CaseResult {
    let c = &*f.client;
    let g = gen(3);
    put_snapshot(c, &g, 1, &content("s", 4)).await?;
    put_segment(c, &g, 1, 0, &content("w", 4)).await?;
    put_snapshot(c, &gen(4), 1, &content("s", 4)).await?;
    c.delete_snapshot(&g, 1).await?;
    assert_eq!(
        c.generations().await?,
        vec![g.clone(), gen(4)],
        "still holds a segment"
    );
    c.delete_wal_segments(&[pos(&g, 1, 0)]).await?;
    assert_eq!(c.generations().await?, vec![gen(4)]);
    Ok(())
}

pub(crate) async fn more_than_a_thousand_generations_list_complete_and_sorted(
    f: Fixture,
) -> CaseResult {
    // S3 pages common prefixes 1,000 at a time, like objects.
    let c = std::sync::Arc::clone(&f.client);
    let data = content("g", 8);
    let n = 1_100u64;
    write_many(n, |k| {
        let (c, data) = (c.clone(), data.clone());
        async move { put_snapshot(&*c, &gen(n - k), 0, &data).await }
    })
    .await?;
    let listed = c.generations().await?;
    assert_eq!(
        listed.len() as u64,
        n,
        "generations beyond one listing page of directories are missing"
    );
    assert!(
        listed.iter().zip(1..).all(|(g, k)| *g == gen(k)),
        "generations are not listed ascending"
    );
    Ok(())
}

pub(crate) async fn deleting_a_generation_of_more_than_a_thousand_objects_leaves_nothing(
    f: Fixture,
) -> CaseResult {
    // A delete below a directory that sends one batch of 1,000 leaves the
    // rest: checked by reading each object, not only by listing.
    let c = std::sync::Arc::clone(&f.client);
    let g = gen(3);
    let data = content("d", 8);
    put_snapshot(&*c, &g, 0, &data).await?;
    let positions: Vec<_> = (0..1_100u64)
        .map(|k| pos(&g, k / 300, (k % 300) * 8))
        .collect();
    write_many(positions.len() as u64, |k| {
        let (c, data, p) = (c.clone(), data.clone(), positions[k as usize].clone());
        async move { c.write_wal_segment(&p, bytes_stream(data)).await }
    })
    .await?;
    c.delete_generation(&g).await?;
    let readable: Vec<u64> = write_many(positions.len() as u64, |k| {
        let (c, p) = (c.clone(), positions[k as usize].clone());
        async move {
            match c.wal_segment_reader(&p).await {
                Err(e) if e.is_not_found() => Ok(None),
                Err(e) => Err(e),
                Ok(_) => Ok(Some(k)),
            }
        }
    })
    .await?
    .into_iter()
    .flatten()
    .collect();
    assert!(
        readable.is_empty(),
        "delete_generation of 1,101 objects left {} segments readable",
        readable.len()
    );
    assert_not_found(
        read_snapshot(&*c, &g, 0).await,
        "the snapshot after delete_generation",
    );
    assert_eq!(
        c.generations().await?,
        vec![],
        "the generation is still listed"
    );
    Ok(())
}
