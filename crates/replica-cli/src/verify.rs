//! `replica verify`: every object decodes completely, the WAL is contiguous,
//! and each generation has a snapshot to start from.

use replica::{
    layout, plain_len, snapshot_index_gap, Generation, ReplicaClient, ReplicaClientExt,
    WalContiguity,
};

use crate::Exit;

/// What verifying one generation found.
pub(crate) struct Verdict {
    pub(crate) snapshots: usize,
    pub(crate) segments: usize,
    /// One line per defect, each naming the object.
    pub(crate) defects: Vec<String>,
}

/// Checks one generation. Listing errors abort; defects of objects are collected.
pub(crate) async fn generation(
    client: &dyn ReplicaClient,
    g: &Generation,
) -> Result<Verdict, Exit> {
    let mut defects = Vec::new();
    let snapshots = client.snapshots(g).await?;
    for s in &snapshots {
        if let Err(e) = plain_len(client.snapshot_plain(g, s.index).await?).await {
            defects.push(defect(&client.layout().snapshot_key(g, s.index)?, &e));
        }
    }
    if snapshots.is_empty() {
        defects.push(format!(
            "{}: no snapshot to start from",
            layout::generation_dir(g)
        ));
    }
    let mut contiguity = WalContiguity::new(g.clone());
    let mut cursor = client.wal_segments(g).await?;
    let mut segments = 0;
    let mut indexes = std::collections::BTreeSet::new();
    while let Some(info) = cursor.next().await {
        let info = info?;
        segments += 1;
        indexes.insert(info.index);
        let path = client.layout().wal_segment_key(&info.pos())?;
        match plain_len(client.wal_segment_plain(&info.pos()).await?).await {
            Ok(len) => {
                if let Err(e) = contiguity.check(&info, len) {
                    defects.push(defect(&path, &e));
                }
            }
            Err(e) => defects.push(defect(&path, &e)),
        }
    }
    // A restore from each snapshot needs the WAL from its own index on (the
    // rule restore applies, in core).
    for s in &snapshots {
        let first = indexes.range(s.index..).next().copied();
        if let Some(gap) = snapshot_index_gap(g, s.index, first) {
            defects.push(defect(&client.layout().snapshot_key(g, s.index)?, &gap));
        }
    }
    Ok(Verdict {
        snapshots: snapshots.len(),
        segments,
        defects,
    })
}

/// One defect line: the error, preceded by the object's key unless the
/// error already names it.
fn defect(key: &str, e: &replica::Error) -> String {
    let text = e.to_string();
    if text.contains(key) {
        text
    } else {
        format!("{key}: {text}")
    }
}
