//! The WAL-segment cursor: lazy listing plus validated appends.
//!
//! A cursor starts from the WAL indexes a backend lists, loads the segments of
//! one index at a time, and lets a writer [append](WalSegmentCursor::append)
//! the info of a segment it has just stored. The append rules of `SPEC.md`
//! live here and only here:
//!
//! 1. another generation → [`AppendError::GenerationMismatch`];
//! 2. while indexes are pending (max pending `M`): index < M →
//!    [`AppendError::BelowMaxIndex`]; index > M+1 → [`AppendError::SkipsIndex`];
//!    index = M+1 becomes pending; index = M is accepted; either way the info
//!    is kept and merged, without duplicates, with what the store lists for
//!    its index when that index is read (a listing may lag its writes);
//! 3. else, against the last segment `L` the cursor knows: index < L.index →
//!    [`AppendError::BelowMaxIndex`]; index > L.index+1 → [`AppendError::SkipsIndex`];
//!    index = L.index+1 becomes pending (the info kept, as in 2); same index with offset < L.offset →
//!    [`AppendError::BeforeLastOffset`], equal → [`AppendError::DuplicateOffset`],
//!    greater → buffered;
//! 4. else (the cursor has seen nothing) the segment is buffered.
//!
//! `L` is the newest segment the cursor knows, whether still buffered or
//! already yielded: once a reader has seen `L`, a later append must still
//! follow it. (Litestream forgets `L` when its iterator runs dry; we do not,
//! so a duplicate offset is caught even after the reader caught up.)
//!
//! A rejected append changes nothing. The first error met while reading the
//! store is sticky: [`next`](WalSegmentCursor::next) yields it once and then
//! ends, and every later append returns it.
//!
//! In follow mode, `next` waits for appends instead of ending; each accepted
//! append wakes it (no polling). [`WalAppender::close`] ends a follow.

use std::collections::{BTreeMap, VecDeque};
use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard};

use futures::stream::BoxStream;
use futures::StreamExt;
use tokio::sync::Notify;

use crate::client::WalSegmentSource;
use crate::error::{AppendError, Error, Result};
use crate::layout::{check_pos, format_index};
use crate::types::{Generation, WalSegmentInfo};

/// A cursor over the WAL segments of one generation, in (index, offset) order.
pub struct WalSegmentCursor {
    shared: Arc<Shared>,
    source: Arc<dyn WalSegmentSource>,
    follow: bool,
}

/// A handle that appends to a [`WalSegmentCursor`] from another task.
#[derive(Clone)]
pub struct WalAppender {
    shared: Arc<Shared>,
}

struct Shared {
    generation: Generation,
    state: Mutex<State>,
    wake: Notify,
}

#[derive(Default)]
struct State {
    /// Indexes still to be read from the store, ascending and unique. The
    /// front stays here while it is read, so a `next` cancelled mid-read
    /// (dropped future) loses nothing: the read is simply done again.
    pending: VecDeque<u64>,
    /// The front of `pending` while it is being read.
    loading: Option<u64>,
    /// Segments appended at pending indexes, kept until their index is read
    /// and then merged (without duplicates) with what the store lists: a
    /// store's listing may lag its writes, and a cursor with no store behind
    /// it has only these.
    appended: BTreeMap<u64, Vec<WalSegmentInfo>>,
    /// Segments ready to be yielded.
    buffered: VecDeque<WalSegmentInfo>,
    /// The newest segment the cursor knows (buffered or yielded).
    last: Option<WalSegmentInfo>,
    error: Option<Error>,
    error_yielded: bool,
    closed: bool,
}

impl State {
    fn max_pending(&self) -> Option<u64> {
        self.pending.back().copied()
    }
}

impl WalSegmentCursor {
    /// Opens a cursor: lists the WAL indexes of `source` now, their segments lazily.
    pub async fn open(generation: Generation, source: Arc<dyn WalSegmentSource>) -> Result<Self> {
        let mut indexes = source.indexes().await?;
        indexes.sort_unstable();
        indexes.dedup();
        let state = State {
            pending: indexes.into(),
            ..State::default()
        };
        Ok(WalSegmentCursor {
            shared: Arc::new(Shared {
                generation,
                state: Mutex::new(state),
                wake: Notify::new(),
            }),
            source,
            follow: false,
        })
    }

    /// A cursor with no store behind it: it yields only what is appended.
    pub fn empty(generation: Generation) -> Self {
        struct Nothing;
        #[async_trait::async_trait]
        impl WalSegmentSource for Nothing {
            async fn indexes(&self) -> Result<Vec<u64>> {
                Ok(Vec::new())
            }
            async fn segments(&self, _: u64) -> Result<Vec<WalSegmentInfo>> {
                Ok(Vec::new())
            }
        }
        WalSegmentCursor {
            shared: Arc::new(Shared {
                generation,
                state: Mutex::new(State::default()),
                wake: Notify::new(),
            }),
            source: Arc::new(Nothing),
            follow: false,
        }
    }

    /// Switches to follow mode: at the end, wait for appends instead of ending.
    pub fn follow(mut self) -> Self {
        self.follow = true;
        self
    }

    /// The generation this cursor lists.
    pub fn generation(&self) -> &Generation {
        &self.shared.generation
    }

    /// A handle for appending from another task.
    pub fn appender(&self) -> WalAppender {
        WalAppender {
            shared: self.shared.clone(),
        }
    }

    /// Validates and appends the info of a segment just written (see module docs).
    pub fn append(&self, info: WalSegmentInfo) -> Result<()> {
        self.shared.append(info)
    }

    /// The sticky error, if the cursor has met one.
    pub fn error(&self) -> Option<Error> {
        self.shared.lock().error.clone()
    }

    /// The next segment; `None` at the end (in follow mode: once closed).
    pub async fn next(&mut self) -> Option<Result<WalSegmentInfo>> {
        loop {
            let step = self.step();
            let index = match step {
                Step::Yield(item) => return item,
                Step::Wait => {
                    let woken = self.shared.wake.notified();
                    // An append between step() and here left a permit, so this cannot miss it.
                    woken.await;
                    continue;
                }
                Step::Load(index) => index,
            };
            let loaded = self.source.segments(index).await;
            let mut state = self.shared.lock();
            state.loading = None;
            if state.pending.front() == Some(&index) {
                state.pending.pop_front();
            }
            let appended = if loaded.is_ok() {
                state.appended.remove(&index).unwrap_or_default()
            } else {
                Vec::new()
            };
            match loaded {
                Ok(mut segments) => {
                    segments.retain(|s| s.index == index);
                    for info in appended {
                        if !segments.iter().any(|s| s.offset == info.offset) {
                            segments.push(info);
                        }
                    }
                    segments.sort_by_key(|s| s.offset);
                    if let Some(newest) = segments.last() {
                        let newer = state
                            .last
                            .as_ref()
                            .is_none_or(|l| (l.index, l.offset) < (newest.index, newest.offset));
                        if newer {
                            state.last = Some(newest.clone());
                        }
                    }
                    state.buffered.extend(segments);
                }
                Err(err) => state.error = Some(err),
            }
        }
    }

    /// Decides, under the lock, what `next` does now.
    fn step(&self) -> Step {
        let mut state = self.shared.lock();
        if let Some(err) = state.error.clone() {
            if state.error_yielded {
                return Step::Yield(None);
            }
            state.error_yielded = true;
            return Step::Yield(Some(Err(err)));
        }
        if let Some(info) = state.buffered.pop_front() {
            return Step::Yield(Some(Ok(info)));
        }
        match state.pending.front().copied() {
            Some(index) => {
                state.loading = Some(index);
                Step::Load(index)
            }
            None if state.closed || !self.follow => Step::Yield(None),
            None => Step::Wait,
        }
    }

    /// Reads every remaining segment (not in follow mode: that would never end).
    pub async fn collect_all(mut self) -> Result<Vec<WalSegmentInfo>> {
        self.follow = false;
        let mut out = Vec::new();
        while let Some(item) = self.next().await {
            out.push(item?);
        }
        Ok(out)
    }

    /// The cursor as a stream.
    pub fn into_stream(self) -> BoxStream<'static, Result<WalSegmentInfo>> {
        futures::stream::unfold(self, |mut cursor| async move {
            cursor.next().await.map(|item| (item, cursor))
        })
        .boxed()
    }
}

enum Step {
    Yield(Option<Result<WalSegmentInfo>>),
    Load(u64),
    Wait,
}

impl WalAppender {
    /// Validates and appends the info of a segment just written (see module docs).
    pub fn append(&self, info: WalSegmentInfo) -> Result<()> {
        self.shared.append(info)
    }

    /// Ends a follow: the reader drains what is left, then gets `None`.
    pub fn close(&self) {
        self.shared.lock().closed = true;
        self.shared.wake.notify_one();
    }
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock cannot leave State half-updated in a
        // way that matters more than losing the cursor, so poisoning is ignored.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn append(&self, info: WalSegmentInfo) -> Result<()> {
        check_pos(&info.pos())?;
        let mut state = self.lock();
        if let Some(err) = &state.error {
            return Err(err.clone());
        }
        if state.closed {
            return Err(AppendError::Closed {
                appended: info.pos(),
            }
            .into());
        }
        if info.generation != self.generation {
            return Err(AppendError::GenerationMismatch {
                cursor: self.generation.to_string(),
                appended: info.pos(),
            }
            .into());
        }
        if let Some(max) = state.max_pending() {
            check_next_index(&info, max)?;
            if info.index == max + 1 {
                state.pending.push_back(info.index);
            }
            state.appended.entry(info.index).or_default().push(info);
        } else if let Some(last) = &state.last {
            check_next_index(&info, last.index)?;
            if info.index == last.index + 1 {
                state.pending.push_back(info.index);
                state.appended.entry(info.index).or_default().push(info);
            } else if info.offset < last.offset {
                return Err(AppendError::BeforeLastOffset {
                    appended: info.pos(),
                    last: last.pos(),
                }
                .into());
            } else if info.offset == last.offset {
                return Err(AppendError::DuplicateOffset {
                    appended: info.pos(),
                    last: last.pos(),
                }
                .into());
            } else {
                state.last = Some(info.clone());
                state.buffered.push_back(info);
            }
        } else {
            state.last = Some(info.clone());
            state.buffered.push_back(info);
        }
        drop(state);
        self.wake.notify_one();
        Ok(())
    }
}

/// Rules shared by 2 and 3: the index must be `max` or `max + 1`.
fn check_next_index(info: &WalSegmentInfo, max: u64) -> Result<()> {
    if info.index < max {
        return Err(AppendError::BelowMaxIndex {
            appended: info.pos(),
            max: format_index(max),
        }
        .into());
    }
    if info.index > max + 1 {
        return Err(AppendError::SkipsIndex {
            appended: info.pos(),
            skipped: format_index(max + 1),
        }
        .into());
    }
    Ok(())
}

impl fmt::Debug for WalSegmentCursor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WalSegmentCursor")
            .field("generation", &self.shared.generation)
            .field("follow", &self.follow)
            .finish_non_exhaustive()
    }
}

impl fmt::Debug for WalAppender {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WalAppender")
            .field("generation", &self.shared.generation)
            .finish_non_exhaustive()
    }
}
