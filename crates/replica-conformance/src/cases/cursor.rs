use std::time::Duration;

use chrono::Utc;
use replica_core::{AppendError, Error, Generation, WalSegmentCursor, WalSegmentInfo};

use crate::util::*;
use crate::{CaseResult, Fixture};

fn info(g: &Generation, index: u64, offset: u64) -> WalSegmentInfo {
    WalSegmentInfo {
        generation: g.clone(),
        index,
        offset,
        size: 4,
        created_at: Utc::now(),
    }
}

/// Stores segments at `positions` and opens a cursor on them.
async fn stored(f: &Fixture, positions: &[(u64, u64)]) -> Result<WalSegmentCursor, Error> {
    let g = gen(1);
    for &(i, o) in positions {
        put_segment(&*f.client, &g, i, o, &content("w", 4)).await?;
    }
    f.client.wal_segments(&g).await
}

fn rejected(result: Result<(), Error>, what: &str) -> AppendError {
    match result {
        Err(Error::Append(e)) => e,
        other => panic!("{what}: expected an append rejection, got {other:?}"),
    }
}

async fn drain(mut cursor: WalSegmentCursor) -> Result<Vec<(u64, u64)>, Error> {
    let mut out = Vec::new();
    while let Some(s) = cursor.next().await {
        let s = s?;
        out.push((s.index, s.offset));
    }
    Ok(out)
}

pub(crate) async fn cursor_rejects_another_generation(f: Fixture) -> CaseResult {
    let cursor = stored(&f, &[(0, 0)]).await?;
    let e = rejected(cursor.append(info(&gen(2), 0, 4)), "other generation");
    assert!(matches!(e, AppendError::GenerationMismatch { .. }), "{e}");
    assert!(e.to_string().contains("generation mismatch"), "{e}");
    Ok(())
}

pub(crate) async fn cursor_rejects_an_index_below_the_max_pending(f: Fixture) -> CaseResult {
    let cursor = stored(&f, &[(2, 0), (3, 0)]).await?;
    let e = rejected(cursor.append(info(&gen(1), 2, 4)), "below max pending");
    assert!(matches!(e, AppendError::BelowMaxIndex { .. }), "{e}");
    assert!(
        e.to_string().contains("below max index 0000000000000003"),
        "{e}"
    );
    Ok(())
}

pub(crate) async fn cursor_rejects_an_index_skipping_past_the_max_pending(
    f: Fixture,
) -> CaseResult {
    let cursor = stored(&f, &[(2, 0)]).await?;
    let e = rejected(cursor.append(info(&gen(1), 4, 0)), "skip while pending");
    assert!(matches!(e, AppendError::SkipsIndex { .. }), "{e}");
    assert!(
        e.to_string().ends_with("skips index 0000000000000003"),
        "{e}"
    );
    Ok(())
}

pub(crate) async fn cursor_reads_the_next_index_appended_while_pending(f: Fixture) -> CaseResult {
    let cursor = stored(&f, &[(2, 0)]).await?;
    put_segment(&*f.client, &gen(1), 3, 0, &content("w", 4)).await?;
    put_segment(&*f.client, &gen(1), 3, 4, &content("w", 4)).await?;
    cursor.append(info(&gen(1), 3, 0))?;
    assert_eq!(drain(cursor).await?, [(2, 0), (3, 0), (3, 4)]);
    Ok(())
}

pub(crate) async fn cursor_accepts_the_max_pending_index_without_duplicating(
    f: Fixture,
) -> CaseResult {
    let cursor = stored(&f, &[(2, 0)]).await?;
    put_segment(&*f.client, &gen(1), 2, 4, &content("w", 4)).await?;
    cursor.append(info(&gen(1), 2, 4))?;
    assert_eq!(drain(cursor).await?, [(2, 0), (2, 4)]);
    Ok(())
}

/// A cursor that has yielded (5,0) and still buffers (5,10).
async fn buffered(f: &Fixture) -> Result<WalSegmentCursor, Error> {
    let mut cursor = stored(f, &[(5, 0), (5, 10)]).await?;
    let first = cursor
        .next()
        .await
        .expect("the cursor yields the stored segments")?;
    assert_eq!((first.index, first.offset), (5, 0));
    Ok(cursor)
}

pub(crate) async fn cursor_rejects_an_index_below_the_last_segment(f: Fixture) -> CaseResult {
    let cursor = buffered(&f).await?;
    let e = rejected(cursor.append(info(&gen(1), 4, 99)), "below last");
    assert!(matches!(e, AppendError::BelowMaxIndex { .. }), "{e}");
    Ok(())
}

pub(crate) async fn cursor_rejects_an_index_skipping_past_the_last_segment(
    f: Fixture,
) -> CaseResult {
    let cursor = buffered(&f).await?;
    let e = rejected(cursor.append(info(&gen(1), 7, 0)), "skip while buffered");
    assert!(matches!(e, AppendError::SkipsIndex { .. }), "{e}");
    assert!(
        e.to_string().ends_with("skips index 0000000000000006"),
        "{e}"
    );
    Ok(())
}

pub(crate) async fn cursor_rejects_an_offset_before_the_last(f: Fixture) -> CaseResult {
    let cursor = buffered(&f).await?;
    let e = rejected(cursor.append(info(&gen(1), 5, 5)), "offset before last");
    assert!(matches!(e, AppendError::BeforeLastOffset { .. }), "{e}");
    assert!(e.to_string().contains("before last offset"), "{e}");
    Ok(())
}

pub(crate) async fn cursor_rejects_a_duplicate_offset(f: Fixture) -> CaseResult {
    let cursor = buffered(&f).await?;
    let e = rejected(cursor.append(info(&gen(1), 5, 10)), "duplicate offset");
    assert!(matches!(e, AppendError::DuplicateOffset { .. }), "{e}");
    assert!(e.to_string().contains("duplicate offset"), "{e}");
    Ok(())
}

pub(crate) async fn cursor_buffers_a_later_offset_in_order(f: Fixture) -> CaseResult {
    let cursor = buffered(&f).await?;
    cursor.append(info(&gen(1), 5, 20))?;
    cursor.append(info(&gen(1), 5, 30))?;
    assert_eq!(drain(cursor).await?, [(5, 10), (5, 20), (5, 30)]);
    Ok(())
}

pub(crate) async fn cursor_reads_the_next_index_appended_after_the_last(f: Fixture) -> CaseResult {
    let cursor = buffered(&f).await?;
    put_segment(&*f.client, &gen(1), 6, 0, &content("w", 4)).await?;
    cursor.append(info(&gen(1), 6, 0))?;
    assert_eq!(drain(cursor).await?, [(5, 10), (6, 0)]);
    Ok(())
}

pub(crate) async fn cursor_of_an_empty_generation_yields_the_first_append(
    f: Fixture,
) -> CaseResult {
    let cursor = stored(&f, &[]).await?;
    cursor.append(info(&gen(1), 9, 4096))?;
    assert_eq!(drain(cursor).await?, [(9, 4096)]);
    Ok(())
}

pub(crate) async fn cursor_rejected_append_changes_nothing(f: Fixture) -> CaseResult {
    let cursor = buffered(&f).await?;
    for (i, o) in [(5, 10), (5, 1), (4, 0), (8, 0)] {
        assert!(
            cursor.append(info(&gen(1), i, o)).is_err(),
            "({i},{o}) accepted"
        );
    }
    assert_eq!(drain(cursor).await?, [(5, 10)]);
    Ok(())
}

pub(crate) async fn cursor_reads_each_index_lazily(f: Fixture) -> CaseResult {
    let mut cursor = stored(&f, &[(0, 0), (1, 0)]).await?;
    let first = cursor
        .next()
        .await
        .expect("the cursor yields the stored segments")?;
    assert_eq!((first.index, first.offset), (0, 0));
    put_segment(&*f.client, &gen(1), 1, 8, &content("w", 4)).await?;
    assert_eq!(
        drain(cursor).await?,
        [(1, 0), (1, 8)],
        "index 1 must be read when reached"
    );
    Ok(())
}

pub(crate) async fn cursor_follow_wakes_on_append(f: Fixture) -> CaseResult {
    let mut cursor = stored(&f, &[(0, 0)]).await?.follow();
    let appender = cursor.appender();
    within(
        "a following cursor to yield the stored segment (0, 0) (does the listing show it?)",
        cursor.next(),
    )
    .await?
    .expect("a segment")?;
    let reader = tokio::spawn(async move {
        let next = cursor.next().await;
        (next.map(|r| r.map(|s| (s.index, s.offset))), cursor)
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(
        !reader.is_finished(),
        "a following cursor ended instead of waiting"
    );
    put_segment(&*f.client, &gen(1), 0, 4, &content("w", 4)).await?;
    appender.append(info(&gen(1), 0, 4))?;
    let (next, mut cursor) = within("the append to wake the following cursor", reader)
        .await?
        .expect("reader task");
    assert_eq!(next.expect("an item")?, (0, 4));
    appender.close();
    let end = within("close to end the following cursor", cursor.next()).await?;
    assert!(end.is_none(), "close ends the follow");
    Ok(())
}
