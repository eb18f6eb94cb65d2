use bytes::Bytes;

use crate::util::*;
use crate::{CaseError, CaseResult, Fixture};

const G: &str = "00000000000000aa";

async fn plant(f: &Fixture, paths: &[&str]) -> CaseResult {
    let planter = f.planter()?;
    for p in paths {
        planter.plant_file(p, Bytes::from_static(b"junk")).await?;
    }
    Ok(())
}

pub(crate) async fn junk_generation_names_are_skipped(f: Fixture) -> CaseResult {
    plant(
        &f,
        &[
            "generations/README",
            "generations/00000000000000AA/snapshots/0000000000000001.snapshot.lz4",
            "generations/1/snapshots/0000000000000001.snapshot.lz4",
            "generations/00000000000000aa0/snapshots/0000000000000001.snapshot.lz4",
            "generations/.00000000000000aa.tmp/snapshots/0000000000000001.snapshot.lz4",
            "README",
        ],
    )
    .await?;
    put_snapshot(&*f.client, &gen(0xbb), 1, &content("s", 4)).await?;
    assert_eq!(f.client.generations().await?, vec![gen(0xbb)]);
    Ok(())
}

pub(crate) async fn junk_snapshot_names_are_skipped(f: Fixture) -> CaseResult {
    let dir = format!("generations/{G}/snapshots");
    let junk: Vec<String> = [
        "README",
        "1.snapshot.lz4",
        "00000000000003E8.snapshot.lz4",
        "00000000000003e8.snapshot",
        "00000000000003e8.wal.lz4",
        "8000000000000000.snapshot.lz4",
        "00000000000003e80.snapshot.lz4",
    ]
    .iter()
    .map(|n| format!("{dir}/{n}"))
    .collect();
    plant(&f, &junk.iter().map(String::as_str).collect::<Vec<_>>()).await?;
    let g = G.parse().expect("valid");
    let data = content("s", 20);
    put_snapshot(&*f.client, &g, 0x3e8, &data).await?;
    let listed = f.client.snapshots(&g).await?;
    assert_eq!(listed.iter().map(|s| s.index).collect::<Vec<_>>(), [0x3e8]);
    assert_eq!(listed[0].size, 20);
    assert_eq!(read_snapshot(&*f.client, &g, 0x3e8).await?, data);
    Ok(())
}

pub(crate) async fn junk_wal_index_names_are_skipped(f: Fixture) -> CaseResult {
    let dir = format!("generations/{G}/wal");
    let junk: Vec<String> = [
        "README",
        "1/0000000000000000.wal.lz4",
        "00000000000000AA/0000000000000000.wal.lz4",
        "0000000000000001.wal.lz4",
        "000000000000000100/0000000000000000.wal.lz4",
    ]
    .iter()
    .map(|n| format!("{dir}/{n}"))
    .collect();
    plant(&f, &junk.iter().map(String::as_str).collect::<Vec<_>>()).await?;
    let g = G.parse().expect("valid");
    put_segment(&*f.client, &g, 2, 0, &content("w", 4)).await?;
    assert_eq!(segment_positions(&*f.client, &g).await?, [(2, 0)]);
    Ok(())
}

pub(crate) async fn junk_wal_segment_names_are_skipped(f: Fixture) -> CaseResult {
    let dir = format!("generations/{G}/wal/0000000000000002");
    let junk: Vec<String> = [
        "README",
        "1.wal.lz4",
        "000000000000000A.wal.lz4",
        "0000000000000000.wal",
        "0000000000000010.snapshot.lz4",
        "0000000000000000.wal.lz4.tmp",
        ".0000000000000000.wal.lz4.0123456789abcdef.tmp",
    ]
    .iter()
    .map(|n| format!("{dir}/{n}"))
    .collect();
    plant(&f, &junk.iter().map(String::as_str).collect::<Vec<_>>()).await?;
    let g = G.parse().expect("valid");
    put_segment(&*f.client, &g, 2, 8, &content("w", 4)).await?;
    assert_eq!(segment_positions(&*f.client, &g).await?, [(2, 8)]);
    Ok(())
}

pub(crate) async fn a_file_where_a_directory_belongs_is_skipped(f: Fixture) -> CaseResult {
    plant(
        &f,
        &[
            "generations/00000000000000cc",
            &format!("generations/{G}/wal/0000000000000007"),
            &format!("generations/{G}/snapshots/0000000000000001.snapshot.lz4/0000000000000001.snapshot.lz4"),
        ],
    )
    .await?;
    let g = G.parse().expect("valid");
    put_segment(&*f.client, &g, 6, 0, &content("w", 4)).await?;
    assert_eq!(f.client.generations().await?, vec![g.clone()]);
    assert_eq!(segment_positions(&*f.client, &g).await?, [(6, 0)]);
    assert_eq!(snapshot_indexes(&*f.client, &g).await?, Vec::<u64>::new());
    Ok(())
}

pub(crate) async fn a_directory_where_a_file_belongs_is_skipped(f: Fixture) -> CaseResult {
    let planter = f.planter()?;
    let g: replica_core::Generation = G.parse().expect("valid");
    let snapshot_dir = format!("generations/{G}/snapshots/0000000000000005.snapshot.lz4");
    let segment_dir = format!("generations/{G}/wal/0000000000000001/0000000000000000.wal.lz4");
    if !planter.plant_dir(&snapshot_dir).await? || !planter.plant_dir(&segment_dir).await? {
        return Err(CaseError::Skip("the store has no directories".into()));
    }
    put_snapshot(&*f.client, &g, 6, &content("s", 4)).await?;
    assert_eq!(snapshot_indexes(&*f.client, &g).await?, [6]);
    assert_eq!(
        segment_positions(&*f.client, &g).await?,
        Vec::<(u64, u64)>::new()
    );
    assert_not_found(
        read_snapshot(&*f.client, &g, 5).await,
        "a directory is not a snapshot",
    );
    Ok(())
}

pub(crate) async fn stale_temporary_files_are_never_listed(f: Fixture) -> CaseResult {
    plant(
        &f,
        &[
            &format!("generations/{G}/snapshots/.0000000000000009.snapshot.lz4.00000000deadbeef.tmp"),
            &format!("generations/{G}/snapshots/0000000000000009.snapshot.lz4.tmp"),
            &format!("generations/{G}/wal/0000000000000000/.0000000000000000.wal.lz4.00000000deadbeef.tmp"),
        ],
    )
    .await?;
    let g = G.parse().expect("valid");
    assert_eq!(snapshot_indexes(&*f.client, &g).await?, Vec::<u64>::new());
    assert_eq!(
        segment_positions(&*f.client, &g).await?,
        Vec::<(u64, u64)>::new()
    );
    assert_not_found(
        read_snapshot(&*f.client, &g, 9).await,
        "a temporary is not a snapshot",
    );
    Ok(())
}
