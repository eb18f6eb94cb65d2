//! Raw objects planted beneath the client: junk is never listed, and
//! canonical names are read as the layout names them, whoever wrote them.
//! Every planted name is built from the client's own layout, so each case
//! means the same in every layout.

use bytes::Bytes;
use replica_core::layout::{Layout, SNAPSHOT_EXT};
use replica_core::Generation;

use crate::util::*;
use crate::{CaseError, CaseResult, Fixture};

const G: &str = "00000000000000aa";

fn g() -> Generation {
    G.parse().expect("valid")
}

async fn plant(f: &Fixture, paths: &[String]) -> CaseResult {
    let planter = f.planter()?;
    for p in paths {
        planter.plant_file(p, Bytes::from_static(b"junk")).await?;
    }
    Ok(())
}

/// The key of a snapshot in `layout`.
fn snapshot_key(layout: Layout, index: u64) -> String {
    layout.snapshot_key(&g(), index).expect("a valid index")
}

/// The key of a segment in `layout`, split into its directory and name.
fn segment_key(layout: Layout, index: u64, offset: u64) -> (String, String) {
    let key = layout
        .wal_segment_key(&pos(&g(), index, offset))
        .expect("a valid position");
    let (dir, name) = key.rsplit_once('/').expect("keys have directories");
    (dir.to_owned(), name.to_owned())
}

/// A layout other than `layout`.
fn other(layout: Layout) -> Layout {
    Layout::ALL
        .into_iter()
        .find(|l| *l != layout)
        .expect("two layouts")
}

pub(crate) async fn junk_generation_names_are_skipped(f: Fixture) -> CaseResult {
    let layout = f.client.layout();
    let snapshot = snapshot_key(layout, 1);
    let rest = snapshot
        .strip_prefix(&format!("generations/{G}"))
        .expect("");
    let mut junk: Vec<String> = [
        "00000000000000AA",
        "1",
        "00000000000000aa0",
        ".00000000000000aa.tmp",
    ]
    .iter()
    .map(|name| format!("generations/{name}{rest}"))
    .collect();
    junk.extend(["generations/README".to_owned(), "README".to_owned()]);
    plant(&f, &junk).await?;
    put_snapshot(&*f.client, &gen(0xbb), 1, &content("s", 4)).await?;
    assert_eq!(f.client.generations().await?, vec![gen(0xbb)]);
    Ok(())
}

pub(crate) async fn junk_snapshot_names_are_skipped(f: Fixture) -> CaseResult {
    let layout = f.client.layout();
    let canonical = snapshot_key(layout, 0x3e8);
    let (dir, name) = canonical.rsplit_once('/').expect("keys have directories");
    let number = name.strip_suffix(SNAPSHOT_EXT).expect("a snapshot name");
    let mut junk: Vec<String> = vec![
        "README".into(),
        format!("1{SNAPSHOT_EXT}"),
        format!("{}{SNAPSHOT_EXT}", number.to_uppercase()),
        format!("{number}.snapshot"),
        format!("{number}.wal.lz4"),
        format!("{number}0{SNAPSHOT_EXT}"),
        format!(
            "{}{SNAPSHOT_EXT}",
            layout.format_number(layout.max_index() + 1)
        ),
    ];
    junk.push(
        snapshot_key(other(layout), 0x3e9)
            .rsplit_once('/')
            .expect("")
            .1
            .to_owned(),
    );
    let junk: Vec<String> = junk.iter().map(|n| format!("{dir}/{n}")).collect();
    plant(&f, &junk).await?;
    let data = content("s", 20);
    put_snapshot(&*f.client, &g(), 0x3e8, &data).await?;
    let listed = f.client.snapshots(&g()).await?;
    assert_eq!(listed.iter().map(|s| s.index).collect::<Vec<_>>(), [0x3e8]);
    assert_eq!(listed[0].size, 20);
    assert_eq!(read_snapshot(&*f.client, &g(), 0x3e8).await?, data);
    Ok(())
}

pub(crate) async fn junk_wal_index_names_are_skipped(f: Fixture) -> CaseResult {
    let layout = f.client.layout();
    let wal = format!("generations/{G}/wal");
    let key = |l: Layout, i, o| {
        let (dir, name) = segment_key(l, i, o);
        format!("{dir}/{name}")
    };
    // Index 0xa with a capital hex digit, as a directory or in the name.
    let number = layout.format_number(0xa);
    let tail = key(layout, 0xa, 0)
        .strip_prefix(&format!("{wal}/"))
        .expect("segments are below wal/")
        .replacen(&number, &number.to_uppercase(), 1);
    let mut junk = vec![
        format!("{wal}/README"),
        format!("{wal}/1/0000000000000000.wal.lz4"),
        format!("{wal}/1_0.wal.lz4"),
        format!("{wal}/0000000000000001.wal.lz4"),
        format!("{wal}/000000000000000100/0000000000000000.wal.lz4"),
        format!("{wal}/{tail}"),
        // The other layout's name for a segment at index 3.
        key(other(layout), 3, 0),
    ];
    junk.retain(|k| layout.parse_key(k).is_none());
    plant(&f, &junk).await?;
    put_segment(&*f.client, &g(), 2, 0, &content("w", 4)).await?;
    assert_eq!(segment_positions(&*f.client, &g()).await?, [(2, 0)]);
    Ok(())
}

pub(crate) async fn junk_wal_segment_names_are_skipped(f: Fixture) -> CaseResult {
    let layout = f.client.layout();
    let (dir, name) = segment_key(layout, 2, 0xa);
    let stem = name.strip_suffix(".wal.lz4").expect("a segment name");
    let junk: Vec<String> = [
        "README".to_owned(),
        "1.wal.lz4".to_owned(),
        format!("{}.wal.lz4", stem.to_uppercase()),
        format!("{stem}.wal"),
        format!("{stem}.snapshot.lz4"),
        format!("{name}.tmp"),
        format!(".{name}.0123456789abcdef.tmp"),
        format!("{stem}0.wal.lz4"),
    ]
    .iter()
    .map(|n| format!("{dir}/{n}"))
    .filter(|k| layout.parse_key(k).is_none())
    .collect();
    plant(&f, &junk).await?;
    put_segment(&*f.client, &g(), 2, 8, &content("w", 4)).await?;
    assert_eq!(segment_positions(&*f.client, &g()).await?, [(2, 8)]);
    Ok(())
}

pub(crate) async fn a_file_where_a_directory_belongs_is_skipped(f: Fixture) -> CaseResult {
    let layout = f.client.layout();
    let snapshot = snapshot_key(layout, 1);
    let mut junk = vec![
        "generations/00000000000000cc".to_owned(),
        format!("{snapshot}/{}", snapshot.rsplit_once('/').expect("").1),
    ];
    // A file named like an index directory (layouts with such directories).
    if let Some(dir) = layout.wal_index_dir(&g(), 7)? {
        junk.push(dir);
    }
    plant(&f, &junk).await?;
    put_segment(&*f.client, &g(), 6, 0, &content("w", 4)).await?;
    assert_eq!(f.client.generations().await?, vec![g()]);
    assert_eq!(segment_positions(&*f.client, &g()).await?, [(6, 0)]);
    assert_eq!(snapshot_indexes(&*f.client, &g()).await?, Vec::<u64>::new());
    Ok(())
}

pub(crate) async fn a_directory_where_a_file_belongs_is_skipped(f: Fixture) -> CaseResult {
    let layout = f.client.layout();
    let planter = f.planter()?;
    let (segment_dir, segment_name) = segment_key(layout, 1, 0);
    if !planter.plant_dir(&snapshot_key(layout, 5)).await?
        || !planter
            .plant_dir(&format!("{segment_dir}/{segment_name}"))
            .await?
    {
        return Err(CaseError::Skip("the store has no directories".into()));
    }
    put_snapshot(&*f.client, &g(), 6, &content("s", 4)).await?;
    assert_eq!(snapshot_indexes(&*f.client, &g()).await?, [6]);
    assert_eq!(
        segment_positions(&*f.client, &g()).await?,
        Vec::<(u64, u64)>::new()
    );
    assert_not_found(
        read_snapshot(&*f.client, &g(), 5).await,
        "a directory is not a snapshot",
    );
    Ok(())
}

pub(crate) async fn stale_temporary_files_are_never_listed(f: Fixture) -> CaseResult {
    let layout = f.client.layout();
    let snapshot = snapshot_key(layout, 9);
    let (snapshots, snapshot_name) = snapshot.rsplit_once('/').expect("");
    let (segment_dir, segment_name) = segment_key(layout, 0, 0);
    plant(
        &f,
        &[
            format!("{snapshots}/.{snapshot_name}.00000000deadbeef.tmp"),
            format!("{snapshot}.tmp"),
            format!("{segment_dir}/.{segment_name}.00000000deadbeef.tmp"),
        ],
    )
    .await?;
    assert_eq!(snapshot_indexes(&*f.client, &g()).await?, Vec::<u64>::new());
    assert_eq!(
        segment_positions(&*f.client, &g()).await?,
        Vec::<(u64, u64)>::new()
    );
    assert_not_found(
        read_snapshot(&*f.client, &g(), 9).await,
        "a temporary is not a snapshot",
    );
    Ok(())
}

/// Objects planted by raw key under the layout's canonical names (as another
/// tool, say Litestream, would have written them) are listed and read back
/// byte-exact: a backend that stores under its own key scheme fails here.
pub(crate) async fn canonical_objects_planted_by_raw_key_are_listed_and_read(
    f: Fixture,
) -> CaseResult {
    let layout = f.client.layout();
    let planter = f.planter()?;
    let snapshot = content("planted snapshot", 300);
    planter
        .plant_file(&snapshot_key(layout, 1), snapshot.clone())
        .await?;
    let mut planted = Vec::new();
    for (i, o, len) in [(1, 0, 40), (1, 40, 24), (2, 0, 64)] {
        let data = content(&format!("planted {i} {o}"), len);
        let (dir, name) = segment_key(layout, i, o);
        planter
            .plant_file(&format!("{dir}/{name}"), data.clone())
            .await?;
        planted.push(((i, o), data));
    }
    assert_eq!(f.client.generations().await?, vec![g()]);
    let snapshots = f.client.snapshots(&g()).await?;
    assert_eq!(
        snapshots
            .iter()
            .map(|s| (s.index, s.size))
            .collect::<Vec<_>>(),
        [(1, 300)]
    );
    assert_eq!(read_snapshot(&*f.client, &g(), 1).await?, snapshot);
    let listed = segments(&*f.client, &g()).await?;
    assert_eq!(
        listed
            .iter()
            .map(|s| ((s.index, s.offset), s.size))
            .collect::<Vec<_>>(),
        planted
            .iter()
            .map(|(p, d)| (*p, d.len() as u64))
            .collect::<Vec<_>>()
    );
    for ((i, o), data) in &planted {
        assert_eq!(read_segment(&*f.client, &pos(&g(), *i, *o)).await?, data);
    }
    Ok(())
}
