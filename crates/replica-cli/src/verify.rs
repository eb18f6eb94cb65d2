//! `replica verify`: every object decodes completely, the WAL is contiguous,
//! and each generation has a snapshot to start from.

use replica::{
    collect_bytes, layout, snapshot_index_gap, Generation, ReplicaClient, ReplicaClientExt,
    WalContiguity,
};
use replica_sqlite::{RestoreError, WalVerifier};

use crate::Exit;

/// What verifying one generation found.
pub(crate) struct Verdict {
    pub(crate) snapshots: usize,
    pub(crate) segments: usize,
    /// One line per defect, each naming the object.
    pub(crate) defects: Vec<String>,
}

/// Checks one generation. Listing errors abort; defects of objects are
/// collected. The WAL from the first snapshot on is checked as a restore
/// checks it ([`WalVerifier`]); a segment that cannot be read makes the rest
/// of its index unchecked for holes (its length is unknown), so one defect
/// is reported once.
pub(crate) async fn generation(
    client: &dyn ReplicaClient,
    g: &Generation,
) -> Result<Verdict, Exit> {
    let mut defects = Vec::new();
    let snapshots = client.snapshots(g).await?;
    let mut verifier = WalVerifier::new(g.clone());
    let first_snapshot = snapshots.first().map(|s| s.index);
    for s in &snapshots {
        let key = client.layout().snapshot_key(g, s.index)?;
        match head_and_len(client.snapshot_plain(g, s.index).await?).await {
            Ok((head, len)) => {
                if let Err(e) = verifier.snapshot(&key, &head, len) {
                    defects.push(defect(&key, &e));
                }
            }
            Err(e) => defects.push(defect(&key, &e)),
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
    let mut unknown_length: Option<u64> = None;
    while let Some(info) = cursor.next().await {
        let info = info?;
        segments += 1;
        indexes.insert(info.index);
        let path = client.layout().wal_segment_key(&info.pos())?;
        if unknown_length != Some(info.index) {
            unknown_length = None;
            if let Err(e) = contiguity.check_start(&info) {
                defects.push(defect(&path, &e));
            }
        }
        let stored = match collect_bytes(client.wal_segment_reader(&info.pos()).await?).await {
            Ok(stored) => stored,
            Err(e) => {
                defects.push(defect(&path, &e));
                unknown_length = Some(info.index);
                continue;
            }
        };
        let checked = if first_snapshot.is_some_and(|first| info.index >= first) {
            verifier.segment(&info, &path, &stored)
        } else {
            replica::lz4::decompress(&stored)
                .map(|plain| plain.len() as u64)
                .map_err(|e| RestoreError::Replica(e.naming(&path)))
        };
        match checked {
            Ok(len) => contiguity.extend(&info, len),
            Err(e) => {
                defects.push(defect(&path, &e));
                unknown_length = Some(info.index);
            }
        }
    }
    for e in verifier.finish() {
        defects.push(e.to_string());
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

/// The first 100 bytes of a plain stream and its length, holding one chunk
/// at a time.
async fn head_and_len(mut data: replica::ByteStream) -> replica::Result<(Vec<u8>, u64)> {
    use futures::TryStreamExt;
    let mut head = Vec::with_capacity(100);
    let mut len = 0u64;
    while let Some(chunk) = data.try_next().await? {
        let take = (100 - head.len()).min(chunk.len());
        head.extend_from_slice(&chunk[..take]);
        len += chunk.len() as u64;
    }
    Ok((head, len))
}

/// One defect line: the error, preceded by the object's key unless the
/// error already names it.
fn defect(key: &str, e: &dyn std::fmt::Display) -> String {
    let text = e.to_string();
    if text.contains(key) {
        text
    } else {
        format!("{key}: {text}")
    }
}
