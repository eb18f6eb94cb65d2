//! Crash consistency: a child process writes snapshots and WAL segments in a
//! loop, printing each acknowledged write; it is killed with SIGKILL at
//! random moments, and after each kill every acknowledged object must be
//! present and byte-exact, every listed object whole, and the backend must
//! keep working in the same directory.
//!
//! `REPLICA_CRASH_KILLS` sets the number of kills (default 20; `cargo xtask
//! reliability` runs 200). The child is this same test binary, re-run with
//! `REPLICA_CRASH_CHILD_DIR` set.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use replica_core::{bytes_stream, collect_bytes, Generation, Pos, ReplicaClient};
use replica_file::{FileClient, FileStore};

const CHILD_DIR: &str = "REPLICA_CRASH_CHILD_DIR";
const CHILD_START: &str = "REPLICA_CRASH_CHILD_START";

fn gen() -> Generation {
    "00000000000000cc".parse().unwrap()
}

/// Step k writes the segment at this position...
fn segment_pos(k: u64) -> Pos {
    Pos::new(gen(), k / 50, (k % 50) * 8192).unwrap()
}

/// ...with this content (a pure function of the position).
fn segment_data(pos: &Pos) -> Vec<u8> {
    let len = 1000 + ((pos.index * 31 + pos.offset / 8192) % 7) as usize * 1500;
    (0..len)
        .map(|i| (i as u64 ^ pos.index ^ (pos.offset >> 13)) as u8)
        .collect()
}

/// Every 25th step also writes the snapshot of the step's index (large, so
/// that kills land inside it too).
fn snapshot_data(index: u64) -> Vec<u8> {
    (0..600_000u64)
        .map(|i| (i.wrapping_mul(7) ^ index) as u8)
        .collect()
}

#[test]
fn crash_child() {
    let Ok(dir) = std::env::var(CHILD_DIR) else {
        return; // Not the child: nothing to do.
    };
    let start: u64 = std::env::var(CHILD_START).unwrap().parse().unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let client = FileClient::new(FileStore::new(dir));
        for k in start.. {
            let pos = segment_pos(k);
            client
                .write_wal_segment(&pos, bytes_stream(segment_data(&pos)))
                .await
                .unwrap();
            println!("ACK W {k}");
            if k % 25 == 0 {
                client
                    .write_snapshot(&gen(), pos.index, bytes_stream(snapshot_data(pos.index)))
                    .await
                    .unwrap();
                println!("ACK S {}", pos.index);
            }
        }
    });
}

/// Everything the replica lists must be whole; everything acknowledged must be listed.
async fn check(
    client: &FileClient,
    acked_segments: &BTreeMap<(u64, u64), ()>,
    acked_snapshots: &BTreeMap<u64, ()>,
) {
    let listed = client
        .wal_segments(&gen())
        .await
        .unwrap()
        .collect_all()
        .await
        .unwrap();
    for s in &listed {
        let data = collect_bytes(client.wal_segment_reader(&s.pos()).await.unwrap())
            .await
            .unwrap();
        assert_eq!(
            &data[..],
            &segment_data(&s.pos())[..],
            "listed segment {} is not whole",
            s.pos()
        );
    }
    for (index, offset) in acked_segments.keys() {
        assert!(
            listed
                .iter()
                .any(|s| (s.index, s.offset) == (*index, *offset)),
            "acknowledged segment {index}:{offset} lost"
        );
    }
    let snapshots = client.snapshots(&gen()).await.unwrap();
    for s in &snapshots {
        let data = collect_bytes(client.snapshot_reader(&gen(), s.index).await.unwrap())
            .await
            .unwrap();
        assert!(
            data[..] == snapshot_data(s.index)[..],
            "listed snapshot {} is not whole",
            s.index
        );
    }
    for index in acked_snapshots.keys() {
        assert!(
            snapshots.iter().any(|s| s.index == *index),
            "acknowledged snapshot {index} lost"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_writes_survive_sigkill_at_random_moments() {
    let kills: u32 = std::env::var("REPLICA_CRASH_KILLS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20);
    let dir = tempfile::tempdir().unwrap();
    let client = FileClient::new(FileStore::new(dir.path()));
    let exe = std::env::current_exe().unwrap();
    let (mut segments, mut snapshots) = (BTreeMap::new(), BTreeMap::new());
    let mut next = 0u64;
    let mut temporaries_seen = 0usize;
    for round in 0..kills {
        let mut child = Command::new(&exe)
            .args(["--exact", "crash_child", "--nocapture", "--test-threads=1"])
            .env(CHILD_DIR, dir.path())
            .env(CHILD_START, next.to_string())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let reader = std::thread::spawn(move || {
            BufReader::new(stdout)
                .lines()
                .map_while(Result::ok)
                .collect::<Vec<String>>()
        });
        // Random moments: from before the first write to well into the loop.
        let delay = 5 + rand::random::<u64>() % 80;
        tokio::time::sleep(Duration::from_millis(delay)).await;
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        for line in reader.join().unwrap() {
            let mut parts = line.split_whitespace();
            match (
                parts.next(),
                parts.next(),
                parts.next().and_then(|n| n.parse::<u64>().ok()),
            ) {
                (Some("ACK"), Some("W"), Some(k)) => {
                    let p = segment_pos(k);
                    segments.insert((p.index, p.offset), ());
                    next = next.max(k + 1);
                }
                (Some("ACK"), Some("S"), Some(index)) => {
                    snapshots.insert(index, ());
                }
                _ => {}
            }
        }
        check(&client, &segments, &snapshots).await;
        temporaries_seen = count_temporaries(dir.path());
        let _ = round;
    }
    assert!(!segments.is_empty(), "the child never acknowledged a write");
    // No writer runs now, so every temporary is stale and goes.
    let removed = client
        .store()
        .remove_stale_temporaries(Duration::ZERO)
        .await
        .unwrap();
    assert_eq!(removed, temporaries_seen);
    assert_eq!(count_temporaries(dir.path()), 0);
    // The backend keeps working in the same directory.
    let pos = segment_pos(next);
    client
        .write_wal_segment(&pos, bytes_stream(segment_data(&pos)))
        .await
        .unwrap();
    segments.insert((pos.index, pos.offset), ());
    check(&client, &segments, &snapshots).await;
    eprintln!(
        "{kills} kills, {} acknowledged segments, {} snapshots, {temporaries_seen} stale temporaries (never listed)",
        segments.len(),
        snapshots.len()
    );
}

fn count_temporaries(dir: &std::path::Path) -> usize {
    let mut n = 0;
    let mut dirs = vec![dir.to_owned()];
    while let Some(d) = dirs.pop() {
        for e in std::fs::read_dir(d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                dirs.push(p);
            } else if p.extension().is_some_and(|e| e == "tmp") {
                n += 1;
            }
        }
    }
    n
}
