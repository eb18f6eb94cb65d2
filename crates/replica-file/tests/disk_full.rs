//! Writes on a full filesystem fail cleanly: a typed error, no temporary
//! left behind, earlier data still readable. Needs root to mount a 2 MiB
//! tmpfs; elsewhere it is skipped with a message.

use std::path::PathBuf;
use std::process::Command;

use replica_core::{bytes_stream, collect_bytes, Error, Generation, Pos, ReplicaClient};
use replica_file::{FileClient, FileStore};

/// A small tmpfs, unmounted on drop.
struct SmallFs(PathBuf);

impl SmallFs {
    fn mount() -> Option<SmallFs> {
        let dir = std::env::temp_dir().join(format!("replica-full-{}", std::process::id()));
        std::fs::create_dir_all(&dir).ok()?;
        let ok = Command::new("mount")
            .args(["-t", "tmpfs", "-o", "size=2m", "tmpfs"])
            .arg(&dir)
            .status()
            .is_ok_and(|s| s.success());
        if ok {
            Some(SmallFs(dir))
        } else {
            let _ = std::fs::remove_dir(&dir);
            None
        }
    }
}

impl Drop for SmallFs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
        let _ = std::fs::remove_dir(&self.0);
    }
}

fn files_under(dir: &std::path::Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut dirs = vec![dir.to_owned()];
    while let Some(d) = dirs.pop() {
        for e in std::fs::read_dir(d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                dirs.push(p);
            } else {
                out.push(p.to_string_lossy().into_owned());
            }
        }
    }
    out
}

#[tokio::test]
async fn a_full_disk_fails_cleanly_and_keeps_earlier_data() {
    let Some(fs) = SmallFs::mount() else {
        eprintln!("SKIPPED: cannot mount a small tmpfs here (needs root)");
        return;
    };
    let client = FileClient::new(FileStore::new(fs.0.join("replica")));
    let g: Generation = "00000000000000dd".parse().unwrap();
    let old = vec![7u8; 300_000];
    client
        .write_snapshot(&g, 1, bytes_stream(old.clone()))
        .await
        .unwrap();
    let seg = Pos::new(g.clone(), 1, 0).unwrap();
    client
        .write_wal_segment(&seg, bytes_stream(vec![1u8; 1000]))
        .await
        .unwrap();

    let mut failures = 0;
    for index in 2..10u64 {
        // Small and large (streamed) writes both.
        let size = if index % 2 == 0 { 900_000 } else { 3 << 20 };
        match client
            .write_snapshot(&g, index, bytes_stream(vec![9u8; size]))
            .await
        {
            Ok(_) => {}
            Err(Error::Io { source, .. }) => {
                assert_eq!(
                    source.raw_os_error(),
                    Some(28),
                    "expected ENOSPC, got {source}"
                );
                failures += 1;
            }
            Err(other) => panic!("expected a typed I/O error, got {other:?}"),
        }
    }
    assert!(failures > 0, "the 2 MiB filesystem never filled up");
    let leftovers: Vec<_> = files_under(&fs.0)
        .into_iter()
        .filter(|p| p.ends_with(".tmp"))
        .collect();
    assert!(
        leftovers.is_empty(),
        "temporaries left behind: {leftovers:?}"
    );
    let back = collect_bytes(client.snapshot_reader(&g, 1).await.unwrap())
        .await
        .unwrap();
    assert_eq!(&back[..], &old[..], "earlier data damaged");
    for s in client.snapshots(&g).await.unwrap() {
        let data = collect_bytes(client.snapshot_reader(&g, s.index).await.unwrap())
            .await
            .unwrap();
        assert_eq!(data.len() as u64, s.size);
        assert!(
            data.iter().all(|b| *b == if s.index == 1 { 7 } else { 9 }),
            "snapshot {} partial",
            s.index
        );
    }
    // Room again: the backend works.
    client.delete_snapshot(&g, 1).await.unwrap();
    client
        .write_wal_segment(
            &Pos::new(g.clone(), 1, 1000).unwrap(),
            bytes_stream(vec![2u8; 1000]),
        )
        .await
        .unwrap();
}
