//! Model-based testing: random operation sequences applied to a backend and
//! to a reference model, compared after every step.

use std::collections::BTreeMap;
use std::sync::Arc;

use bytes::Bytes;
use proptest::prelude::*;
use proptest::test_runner::{Config, TestError, TestRunner};
use replica_core::{Generation, ReplicaClient};

use crate::util::*;

/// One step of a random sequence. Small ranges so that operations collide.
#[derive(Debug, Clone)]
pub(crate) enum Op {
    WriteSnapshot {
        g: u64,
        index: u64,
        len: usize,
        seed: u8,
    },
    WriteSegment {
        g: u64,
        index: u64,
        offset: u64,
        len: usize,
        seed: u8,
    },
    FailedWrite {
        g: u64,
        index: u64,
    },
    DeleteSnapshot {
        g: u64,
        index: u64,
    },
    DeleteSegments {
        g: u64,
        positions: Vec<(u64, u64)>,
    },
    DeleteGeneration {
        g: u64,
    },
}

/// The generations the operations use.
const GENERATIONS: std::ops::Range<u64> = 1..4;

fn op() -> impl Strategy<Value = Op> {
    let g = GENERATIONS;
    let small = 0..4u64;
    prop_oneof![
        4 => (g.clone(), small.clone(), 0..300usize, any::<u8>())
            .prop_map(|(g, index, len, seed)| Op::WriteSnapshot { g, index, len, seed }),
        6 => (g.clone(), small.clone(), small.clone(), 0..300usize, any::<u8>())
            .prop_map(|(g, index, offset, len, seed)| Op::WriteSegment { g, index, offset: offset * 8, len, seed }),
        1 => (g.clone(), small.clone()).prop_map(|(g, index)| Op::FailedWrite { g, index }),
        2 => (g.clone(), small.clone()).prop_map(|(g, index)| Op::DeleteSnapshot { g, index }),
        2 => (g.clone(), proptest::collection::vec((small.clone(), small.clone()), 0..4))
            .prop_map(|(g, p)| Op::DeleteSegments { g, positions: p.into_iter().map(|(i, o)| (i, o * 8)).collect() }),
        1 => g.prop_map(|g| Op::DeleteGeneration { g }),
    ]
}

#[derive(Default, Debug)]
struct Model {
    snapshots: BTreeMap<(u64, u64), Bytes>,
    segments: BTreeMap<(u64, u64, u64), Bytes>,
}

impl Model {
    fn apply(&mut self, op: &Op) {
        match op {
            Op::WriteSnapshot {
                g,
                index,
                len,
                seed,
            } => {
                self.snapshots.insert((*g, *index), data(*seed, *len));
            }
            Op::WriteSegment {
                g,
                index,
                offset,
                len,
                seed,
            } => {
                self.segments
                    .insert((*g, *index, *offset), data(*seed, *len));
            }
            Op::FailedWrite { .. } => {}
            Op::DeleteSnapshot { g, index } => {
                self.snapshots.remove(&(*g, *index));
            }
            Op::DeleteSegments { g, positions } => {
                for (i, o) in positions {
                    self.segments.remove(&(*g, *i, *o));
                }
            }
            Op::DeleteGeneration { g } => {
                self.snapshots.retain(|k, _| k.0 != *g);
                self.segments.retain(|k, _| k.0 != *g);
            }
        }
    }

    fn generations(&self) -> Vec<Generation> {
        let mut gs: Vec<u64> = self
            .snapshots
            .keys()
            .map(|k| k.0)
            .chain(self.segments.keys().map(|k| k.0))
            .collect();
        gs.sort_unstable();
        gs.dedup();
        gs.into_iter().map(gen).collect()
    }
}

fn data(seed: u8, len: usize) -> Bytes {
    Bytes::from(pseudo_random(u64::from(seed) + 1, len))
}

async fn apply(c: &dyn ReplicaClient, op: &Op) -> Result<(), String> {
    let r = match op {
        Op::WriteSnapshot {
            g,
            index,
            len,
            seed,
        } => put_snapshot(c, &gen(*g), *index, &data(*seed, *len))
            .await
            .map(|_| ()),
        Op::WriteSegment {
            g,
            index,
            offset,
            len,
            seed,
        } => put_segment(c, &gen(*g), *index, *offset, &data(*seed, *len))
            .await
            .map(|_| ()),
        Op::FailedWrite { g, index } => {
            return match c
                .write_snapshot(&gen(*g), *index, failing_stream(data(1, 5000)))
                .await
            {
                Ok(_) => Err("a write whose input failed succeeded".into()),
                Err(_) => Ok(()),
            };
        }
        Op::DeleteSnapshot { g, index } => c.delete_snapshot(&gen(*g), *index).await,
        Op::DeleteSegments { g, positions } => {
            let g = gen(*g);
            let ps: Vec<_> = positions.iter().map(|(i, o)| pos(&g, *i, *o)).collect();
            c.delete_wal_segments(&ps).await
        }
        Op::DeleteGeneration { g } => c.delete_generation(&gen(*g)).await,
    };
    r.map_err(|e| format!("{op:?} failed: {e}"))
}

async fn compare(c: &dyn ReplicaClient, model: &Model) -> Result<(), String> {
    let e = |e: replica_core::Error| e.to_string();
    let gens = c.generations().await.map_err(e)?;
    if gens != model.generations() {
        return Err(format!(
            "generations: store {gens:?}, model {:?}",
            model.generations()
        ));
    }
    for g in GENERATIONS {
        let generation = gen(g);
        let snaps: Vec<(u64, u64)> = c
            .snapshots(&generation)
            .await
            .map_err(e)?
            .iter()
            .map(|s| (s.index, s.size))
            .collect();
        let want: Vec<(u64, u64)> = model
            .snapshots
            .iter()
            .filter(|(k, _)| k.0 == g)
            .map(|(k, v)| (k.1, v.len() as u64))
            .collect();
        if snaps != want {
            return Err(format!("snapshots of {g}: store {snaps:?}, model {want:?}"));
        }
        let segs: Vec<(u64, u64, u64)> = segments(c, &generation)
            .await
            .map_err(e)?
            .iter()
            .map(|s| (s.index, s.offset, s.size))
            .collect();
        let want: Vec<(u64, u64, u64)> = model
            .segments
            .iter()
            .filter(|(k, _)| k.0 == g)
            .map(|(k, v)| (k.1, k.2, v.len() as u64))
            .collect();
        if segs != want {
            return Err(format!("segments of {g}: store {segs:?}, model {want:?}"));
        }
    }
    for ((g, i), want) in &model.snapshots {
        let got = read_snapshot(c, &gen(*g), *i).await.map_err(e)?;
        if got != want {
            return Err(format!("content of snapshot {g}/{i} differs"));
        }
    }
    for ((g, i, o), want) in &model.segments {
        let got = read_segment(c, &pos(&gen(*g), *i, *o)).await.map_err(e)?;
        if got != want {
            return Err(format!("content of segment {g}/{i}:{o} differs"));
        }
    }
    Ok(())
}

async fn run_sequence(c: &dyn ReplicaClient, ops: &[Op]) -> Result<(), String> {
    // Start clean by deleting every generation a sequence can touch, not
    // what the listing under test says exists.
    for g in GENERATIONS {
        c.delete_generation(&gen(g))
            .await
            .map_err(|e| e.to_string())?;
    }
    let mut model = Model::default();
    compare(c, &model)
        .await
        .map_err(|m| format!("before any step: {m}"))?;
    for (step, op) in ops.iter().enumerate() {
        apply(c, op).await?;
        model.apply(op);
        compare(c, &model)
            .await
            .map_err(|m| format!("after step {step} ({op:?}): {m}"))?;
    }
    Ok(())
}

/// Runs `cases` random sequences of up to 24 operations; on failure the
/// message holds the shrunk, minimal sequence.
pub(crate) async fn check_against_model(
    client: Arc<dyn ReplicaClient>,
    cases: u32,
) -> Result<(), String> {
    let handle = tokio::runtime::Handle::current();
    tokio::task::spawn_blocking(move || {
        let config = Config {
            cases,
            max_shrink_iters: 2000,
            failure_persistence: None,
            ..Config::default()
        };
        let mut runner = TestRunner::new(config);
        let result = runner.run(&proptest::collection::vec(op(), 1..24), |ops| {
            handle
                .block_on(run_sequence(&*client, &ops))
                .map_err(proptest::test_runner::TestCaseError::fail)
        });
        match result {
            Ok(()) => Ok(()),
            Err(TestError::Fail(reason, ops)) => {
                Err(format!("minimal failing sequence {ops:#?}: {reason}"))
            }
            Err(TestError::Abort(reason)) => Err(format!("aborted: {reason}")),
        }
    })
    .await
    .map_err(|e| format!("model task: {e}"))?
}
