//! The Litestream 0.5 (LTX) layout over the backend's key store: levels
//! listed by TXID, seek, not-found from the call, ranged reads, overwrite,
//! failed writes, large levels, junk names, file times.

use bytes::Bytes;
use chrono::{DateTime, TimeZone, Utc};
use futures::{StreamExt, TryStreamExt};
use replica_core::ltx::{KeyShape, LtxClient, LtxFileInfo, TxId};
use replica_core::{bytes_stream, collect_bytes, Result};

use crate::util::*;
use crate::{CaseError, CaseResult, Fixture};

fn a_time() -> DateTime<Utc> {
    Utc.timestamp_millis_opt(1_764_000_000_123)
        .single()
        .expect("a time")
}

async fn put(c: &LtxClient, level: u8, min: u64, max: u64, data: &Bytes) -> Result<LtxFileInfo> {
    c.write(
        level,
        TxId(min),
        TxId(max),
        bytes_stream(data.clone()),
        a_time(),
    )
    .await
}

async fn ranges(c: &LtxClient, level: u8) -> Result<Vec<(u64, u64)>> {
    Ok(c.files(level)
        .await?
        .iter()
        .map(|f| (f.min_txid.0, f.max_txid.0))
        .collect())
}

fn info(level: u8, min: u64, max: u64) -> LtxFileInfo {
    LtxFileInfo {
        level,
        min_txid: TxId(min),
        max_txid: TxId(max),
        size: 0,
        created_at: a_time(),
    }
}

pub(crate) async fn ltx_levels_list_by_txid(f: Fixture) -> CaseResult {
    let c = f.ltx()?;
    let data = content("l", 64);
    for (min, max) in [
        (5, 5),
        (1, 1),
        (3, 4),
        (2, 2),
        (0x1_0000_0000, 0x1_0000_0001),
    ] {
        put(&c, 0, min, max, &data).await?;
    }
    put(&c, 3, 1, 4, &data).await?;
    put(&c, 9, 1, 5, &data).await?;
    assert_eq!(
        ranges(&c, 0).await?,
        [
            (1, 1),
            (2, 2),
            (3, 4),
            (5, 5),
            (0x1_0000_0000, 0x1_0000_0001)
        ],
        "level 0 by TXID"
    );
    assert_eq!(ranges(&c, 3).await?, [(1, 4)], "level 3 alone");
    assert_eq!(ranges(&c, 9).await?, [(1, 5)], "level 9 alone");
    assert!(
        ranges(&c, 1).await?.is_empty(),
        "an empty level lists empty"
    );
    let all: Vec<(u8, u64)> = c
        .all_files()
        .await?
        .iter()
        .map(|f| (f.level, f.min_txid.0))
        .collect();
    assert_eq!(all.len(), 7, "every file of every level: {all:?}");
    assert!(c.holds_files().await?, "a replica with files is detected");
    Ok(())
}

/// The levels present are found by one listing, of `ltx/` or, with the
/// hex levels of S3, of the store's root (`list("")`), whatever the kind of
/// store; the other shape's directories and junk beside them are no level.
pub(crate) async fn ltx_levels_present_are_found_in_either_key_shape(f: Fixture) -> CaseResult {
    let store = f.ltx()?.store().clone();
    let data = content("p", 16);
    for shape in [KeyShape::HexLevels, KeyShape::LtxDirs] {
        let c = LtxClient::with_shape(store.clone(), shape);
        assert!(
            c.levels().await?.is_empty(),
            "no level before any file ({shape:?})"
        );
        for level in [9, 0, 3] {
            put(&c, level, 1, 2, &data).await?;
        }
        assert_eq!(
            c.levels().await?,
            [0, 3, 9],
            "the levels present, found by one listing ({shape:?}: of the root \
             for hex levels, whose listing `list(\"\")` must show its directories)"
        );
        let all: Vec<u8> = c.all_files().await?.iter().map(|f| f.level).collect();
        assert_eq!(all, [0, 3, 9], "every file of every level ({shape:?})");
        assert!(
            c.holds_files().await?,
            "the replica is detected ({shape:?})"
        );
    }
    store.put("0002", bytes_stream(content("j", 4))).await?;
    store
        .put("0004/README", bytes_stream(content("j", 4)))
        .await?;
    let hex = LtxClient::with_shape(store.clone(), KeyShape::HexLevels);
    let levels = hex.levels().await?;
    assert!(
        levels == [0, 3, 4, 9],
        "an object named like a level is no level; a level directory of junk \
         is listed but holds no file: {levels:?}"
    );
    assert_eq!(ranges(&hex, 4).await?, [], "junk is no file");
    Ok(())
}

pub(crate) async fn ltx_seek_starts_at_the_txid(f: Fixture) -> CaseResult {
    let c = f.ltx()?;
    let data = content("s", 16);
    for t in 1..=6 {
        put(&c, 1, t * 10, t * 10 + 5, &data).await?;
    }
    let from = |seek| {
        let c = c.clone();
        async move {
            Ok::<_, replica_core::Error>(
                c.files_from(1, TxId(seek))
                    .await?
                    .iter()
                    .map(|f| f.min_txid.0)
                    .collect::<Vec<_>>(),
            )
        }
    };
    assert_eq!(from(30).await?, [30, 40, 50, 60], "seek to a file's min");
    assert_eq!(from(31).await?, [40, 50, 60], "seek between files");
    assert_eq!(from(1).await?, [10, 20, 30, 40, 50, 60], "seek before all");
    assert!(from(61).await?.is_empty(), "seek past all");
    Ok(())
}

pub(crate) async fn ltx_missing_file_is_not_found_from_the_call(f: Fixture) -> CaseResult {
    let c = f.ltx()?;
    put(&c, 0, 1, 1, &content("x", 8)).await?;
    for missing in [info(0, 2, 2), info(1, 1, 1), info(9, 1, 1)] {
        assert_not_found(c.read(&missing).await.map(|_| ()), "reading a missing file");
        assert_not_found(
            c.read_range(&missing, 0..10).await.map(|_| ()),
            "a ranged read of a missing file",
        );
    }
    Ok(())
}

pub(crate) async fn ltx_ranged_reads_at_and_past_the_end(f: Fixture) -> CaseResult {
    let c = f.ltx()?;
    let data = content("r", 1000);
    let file = put(&c, 0, 1, 1, &data).await?;
    let read = |range: std::ops::Range<u64>| {
        let (c, file) = (c.clone(), file.clone());
        async move { collect_bytes(c.read_range(&file, range).await?).await }
    };
    assert_eq!(
        read(0..100).await?,
        data.slice(0..100),
        "a range at the start"
    );
    assert_eq!(
        read(450..550).await?,
        data.slice(450..550),
        "a range inside"
    );
    assert_eq!(
        read(900..2000).await?,
        data.slice(900..),
        "a range past the end is cut there"
    );
    assert_eq!(
        read(0..u64::MAX).await?,
        data,
        "a range to the end of everything"
    );
    assert!(
        read(1000..1100).await?.is_empty(),
        "a range at the end is empty"
    );
    assert!(
        read(5000..6000).await?.is_empty(),
        "a range past the end is empty"
    );
    assert!(read(10..10).await?.is_empty(), "an empty range is empty");
    Ok(())
}

pub(crate) async fn ltx_overwrite_replaces_content(f: Fixture) -> CaseResult {
    let c = f.ltx()?;
    put(&c, 2, 1, 9, &content("old", 300)).await?;
    let new = content("new", 200);
    let written = put(&c, 2, 1, 9, &new).await?;
    assert_eq!(written.size, 200, "the reply's size is the new content's");
    assert_eq!(
        collect_bytes(c.read(&written).await?).await?,
        new,
        "read after overwrite"
    );
    let listed = c.files(2).await?;
    assert_eq!(listed.len(), 1, "one file after overwrite: {listed:?}");
    assert_eq!(listed[0].size, 200, "listed size after overwrite");
    Ok(())
}

pub(crate) async fn ltx_failed_write_stores_nothing(f: Fixture) -> CaseResult {
    let c = f.ltx()?;
    let fail = |level| {
        let c = c.clone();
        async move {
            c.write(
                level,
                TxId(1),
                TxId(7),
                // Beyond one small write and one multipart part: the streaming path.
                failing_stream(content("p", 9 << 20)),
                a_time(),
            )
            .await
        }
    };
    assert!(
        fail(0).await.is_err(),
        "a write whose input fails must fail"
    );
    assert!(c.files(0).await?.is_empty(), "a failed write is listed");
    assert_not_found(
        c.read(&info(0, 1, 7)).await.map(|_| ()),
        "a failed write is readable",
    );
    let old = content("kept", 100);
    put(&c, 1, 1, 7, &old).await?;
    assert!(fail(1).await.is_err(), "a failed overwrite must fail");
    assert_eq!(
        collect_bytes(c.read(&info(1, 1, 7)).await?).await?,
        old,
        "a failed overwrite keeps the old content"
    );
    Ok(())
}

pub(crate) async fn more_than_a_thousand_ltx_files_in_a_level_list_complete(
    f: Fixture,
) -> CaseResult {
    let c = f.ltx()?;
    let data = content("k", 8);
    let n = 1_100u64;
    // Written with requests in flight: against a real bucket this takes
    // seconds, not minutes.
    futures::stream::iter(1..=n)
        .map(|t| {
            let (c, data) = (c.clone(), data.clone());
            async move { put(&c, 0, t, t, &data).await }
        })
        .buffer_unordered(32)
        .try_collect::<Vec<_>>()
        .await?;
    let listed = ranges(&c, 0).await?;
    assert_eq!(
        listed.len() as u64,
        n,
        "every file of a level beyond one listing page"
    );
    assert!(
        listed.iter().zip(1..).all(|(r, t)| *r == (t, t)),
        "files out of order"
    );
    Ok(())
}

pub(crate) async fn junk_ltx_names_are_skipped(f: Fixture) -> CaseResult {
    let c = f.ltx()?;
    let planter = f.planter()?;
    let dir = c.shape().level_dir(0);
    for junk in [
        "README",
        "0000000000000001-0000000000000001.ltx.tmp",
        ".0000000000000002-0000000000000002.ltx.0123456789abcdef.tmp",
        "000000000000000A-000000000000000A.ltx",
        "0000000000000003-0000000000000002.ltx",
        "0000000000000000-0000000000000001.ltx",
        "1-1.ltx",
        "0000000000000001_0000000000000001.ltx",
    ] {
        planter
            .plant_file(&format!("{dir}/{junk}"), content("j", 4))
            .await?;
    }
    let good = "0000000000000005-0000000000000006.ltx";
    planter
        .plant_file(&format!("{dir}/{good}"), content("g", 4))
        .await?;
    assert_eq!(
        ranges(&c, 0).await?,
        [(5, 6)],
        "only the canonical name is listed"
    );
    assert_eq!(
        collect_bytes(c.read(&info(0, 5, 6)).await?).await?,
        content("g", 4),
        "a canonical file planted by raw key reads back"
    );
    Ok(())
}

pub(crate) async fn ltx_file_times_are_kept(f: Fixture) -> CaseResult {
    let c = f.ltx()?;
    let at = a_time();
    put(&c, 0, 1, 1, &content("t", 32)).await?;
    let key = c.key(0, TxId(1), TxId(1))?;
    match c.store().object_time(&key).await? {
        None => {
            return Err(CaseError::Skip(
                "the store keeps no object times (object_store's LocalFileSystem)".into(),
            ))
        }
        Some(kept) => assert_eq!(
            kept.timestamp_millis(),
            at.timestamp_millis(),
            "the time given to the write is the object's time (file mtime, \
             litestream-timestamp metadata)"
        ),
    }
    assert_not_found(
        c.store().object_time(&c.key(0, TxId(2), TxId(2))?).await,
        "the time of a missing file",
    );
    Ok(())
}

pub(crate) async fn ltx_delete_removes_only_the_files_named(f: Fixture) -> CaseResult {
    let c = f.ltx()?;
    let data = content("d", 8);
    for t in 1..=4 {
        put(&c, 0, t, t, &data).await?;
    }
    put(&c, 9, 1, 4, &data).await?;
    c.delete(&[info(0, 2, 2), info(0, 3, 3), info(0, 99, 99)])
        .await?;
    assert_eq!(ranges(&c, 0).await?, [(1, 1), (4, 4)], "the others stay");
    c.delete_all().await?;
    // Every level listed on its own: `all_files` finds the levels by one
    // listing, as `delete_all` does with hex levels, so it would not catch
    // a level that listing misses.
    let mut left = Vec::new();
    for level in 0..=replica_core::ltx::MAX_LEVEL {
        left.extend(c.files(level).await?);
    }
    assert!(left.is_empty(), "delete_all leaves nothing: {left:?}");
    assert!(
        !c.holds_files().await?,
        "an emptied replica is not detected"
    );
    Ok(())
}
