//! The append-validation rules and follow mode of the WAL-segment cursor.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::Utc;
use replica_core::{
    async_trait, AppendError, Error, Generation, Result, WalSegmentCursor, WalSegmentInfo,
    WalSegmentSource,
};

const GEN: &str = "0000000000000abc";

fn gen() -> Generation {
    GEN.parse().unwrap()
}

fn seg(index: u64, offset: u64) -> WalSegmentInfo {
    WalSegmentInfo {
        generation: gen(),
        index,
        offset,
        size: 10,
        created_at: Utc::now(),
    }
}

/// A store stand-in: segments by (index, offset), editable while a cursor runs.
#[derive(Default, Clone)]
struct Store {
    segments: Arc<Mutex<BTreeMap<(u64, u64), WalSegmentInfo>>>,
    fail_index: Arc<Mutex<Option<u64>>>,
}

impl Store {
    fn with(positions: &[(u64, u64)]) -> Self {
        let store = Store::default();
        for &(i, o) in positions {
            store.put(i, o);
        }
        store
    }
    fn put(&self, index: u64, offset: u64) {
        self.segments
            .lock()
            .unwrap()
            .insert((index, offset), seg(index, offset));
    }
    async fn cursor(&self) -> WalSegmentCursor {
        WalSegmentCursor::open(gen(), Arc::new(self.clone()))
            .await
            .unwrap()
    }
}

#[async_trait]
impl WalSegmentSource for Store {
    async fn indexes(&self) -> Result<Vec<u64>> {
        let mut v: Vec<u64> = self.segments.lock().unwrap().keys().map(|k| k.0).collect();
        v.dedup();
        // Deliberately unsorted: the cursor sorts.
        v.reverse();
        Ok(v)
    }
    async fn segments(&self, index: u64) -> Result<Vec<WalSegmentInfo>> {
        if *self.fail_index.lock().unwrap() == Some(index) {
            return Err(Error::io("listing", std::io::Error::other("disk on fire")));
        }
        let mut v: Vec<_> = self
            .segments
            .lock()
            .unwrap()
            .values()
            .filter(|s| s.index == index)
            .cloned()
            .collect();
        v.reverse();
        Ok(v)
    }
}

fn positions(infos: &[WalSegmentInfo]) -> Vec<(u64, u64)> {
    infos.iter().map(|s| (s.index, s.offset)).collect()
}

fn rejection(result: Result<()>) -> (AppendError, String) {
    match result {
        Err(Error::Append(e)) => {
            let msg = e.to_string();
            (e, msg)
        }
        other => panic!("expected an append rejection, got {other:?}"),
    }
}

#[tokio::test]
async fn lists_segments_sorted_by_index_then_offset() {
    let store = Store::with(&[(2, 0), (0, 8), (0, 0), (1, 4), (1, 0)]);
    let all = store.cursor().await.collect_all().await.unwrap();
    assert_eq!(positions(&all), [(0, 0), (0, 8), (1, 0), (1, 4), (2, 0)]);
}

#[tokio::test]
async fn reads_lazily_one_index_at_a_time() {
    let store = Store::with(&[(0, 0), (1, 0)]);
    let mut cursor = store.cursor().await;
    assert_eq!(
        positions(&[cursor.next().await.unwrap().unwrap()]),
        [(0, 0)]
    );
    // Index 1 is read only now, so a segment stored meanwhile is seen.
    store.put(1, 8);
    let rest = cursor.collect_all().await.unwrap();
    assert_eq!(positions(&rest), [(1, 0), (1, 8)]);
}

#[tokio::test]
async fn append_of_another_generation_is_a_generation_mismatch() {
    let cursor = Store::with(&[(0, 0)]).cursor().await;
    let mut other = seg(0, 4);
    other.generation = "0000000000000def".parse().unwrap();
    let (err, msg) = rejection(cursor.append(other));
    assert!(matches!(err, AppendError::GenerationMismatch { .. }));
    assert!(msg.contains("generation mismatch"), "{msg}");
    assert!(
        msg.contains("0000000000000abc") && msg.contains("0000000000000def"),
        "{msg}"
    );
}

#[tokio::test]
async fn while_pending_an_index_below_max_is_rejected() {
    let cursor = Store::with(&[(2, 0), (3, 0)]).cursor().await;
    let (err, msg) = rejection(cursor.append(seg(2, 100)));
    assert!(matches!(err, AppendError::BelowMaxIndex { .. }));
    assert_eq!(
        msg,
        "appended index 0000000000000abc/0000000000000002:0000000000000064 below max index 0000000000000003"
    );
}

#[tokio::test]
async fn while_pending_an_index_that_skips_is_rejected() {
    let cursor = Store::with(&[(2, 0)]).cursor().await;
    let (err, msg) = rejection(cursor.append(seg(4, 0)));
    assert!(matches!(err, AppendError::SkipsIndex { .. }));
    assert_eq!(
        msg,
        "appended index 0000000000000abc/0000000000000004:0000000000000000 skips index 0000000000000003"
    );
}

#[tokio::test]
async fn while_pending_the_next_index_becomes_pending_and_is_read_from_the_store() {
    let store = Store::with(&[(2, 0)]);
    let cursor = store.cursor().await;
    store.put(3, 0);
    store.put(3, 50);
    cursor.append(seg(3, 0)).unwrap();
    let all = cursor.collect_all().await.unwrap();
    assert_eq!(positions(&all), [(2, 0), (3, 0), (3, 50)]);
}

#[tokio::test]
async fn while_pending_the_max_index_is_accepted_and_read_with_it() {
    let store = Store::with(&[(2, 0)]);
    let cursor = store.cursor().await;
    store.put(2, 40);
    cursor.append(seg(2, 40)).unwrap();
    let all = cursor.collect_all().await.unwrap();
    assert_eq!(positions(&all), [(2, 0), (2, 40)], "not yielded twice");
}

/// Reads one segment so that the rest of index 5 is buffered and nothing is pending.
async fn buffered_cursor() -> WalSegmentCursor {
    let mut cursor = Store::with(&[(5, 0), (5, 10)]).cursor().await;
    cursor.next().await.unwrap().unwrap();
    cursor
}

#[tokio::test]
async fn while_buffered_an_index_below_last_is_rejected() {
    let cursor = buffered_cursor().await;
    let (err, msg) = rejection(cursor.append(seg(4, 0)));
    assert!(matches!(err, AppendError::BelowMaxIndex { .. }));
    assert!(
        msg.contains("0000000000000004:0000000000000000") && msg.contains("0000000000000005"),
        "{msg}"
    );
}

#[tokio::test]
async fn while_buffered_an_index_that_skips_is_rejected() {
    let cursor = buffered_cursor().await;
    let (err, msg) = rejection(cursor.append(seg(7, 0)));
    assert!(matches!(err, AppendError::SkipsIndex { .. }));
    assert!(msg.ends_with("skips index 0000000000000006"), "{msg}");
}

#[tokio::test]
async fn while_buffered_an_offset_before_last_is_rejected() {
    let cursor = buffered_cursor().await;
    let (err, msg) = rejection(cursor.append(seg(5, 5)));
    assert!(matches!(err, AppendError::BeforeLastOffset { .. }));
    assert_eq!(
        msg,
        "appended offset 0000000000000abc/0000000000000005:0000000000000005 before last offset 0000000000000abc/0000000000000005:000000000000000a"
    );
}

#[tokio::test]
async fn while_buffered_a_duplicate_offset_is_rejected() {
    let cursor = buffered_cursor().await;
    let (err, msg) = rejection(cursor.append(seg(5, 10)));
    assert!(matches!(err, AppendError::DuplicateOffset { .. }));
    assert!(
        msg.starts_with("duplicate offset 0000000000000abc/0000000000000005:000000000000000a"),
        "{msg}"
    );
}

#[tokio::test]
async fn while_buffered_a_later_offset_is_buffered_in_order() {
    let mut cursor = buffered_cursor().await;
    cursor.append(seg(5, 20)).unwrap();
    cursor.append(seg(5, 30)).unwrap();
    let mut rest = Vec::new();
    while let Some(s) = cursor.next().await {
        rest.push(s.unwrap());
    }
    assert_eq!(positions(&rest), [(5, 10), (5, 20), (5, 30)]);
}

#[tokio::test]
async fn while_buffered_the_next_index_becomes_pending() {
    let store = Store::with(&[(5, 0)]);
    let mut cursor = store.cursor().await;
    cursor.next().await.unwrap().unwrap();
    store.put(6, 0);
    cursor.append(seg(6, 0)).unwrap();
    assert_eq!(
        positions(&[cursor.next().await.unwrap().unwrap()]),
        [(6, 0)]
    );
}

#[tokio::test]
async fn on_an_empty_cursor_any_append_is_the_next_item() {
    let mut cursor = Store::default().cursor().await;
    cursor.append(seg(42, 4096)).unwrap();
    assert_eq!(
        positions(&[cursor.next().await.unwrap().unwrap()]),
        [(42, 4096)]
    );
    assert!(cursor.next().await.is_none());
}

#[tokio::test]
async fn after_the_reader_caught_up_appends_still_follow_the_last_segment() {
    let mut cursor = Store::with(&[(1, 0)]).cursor().await;
    assert!(cursor.next().await.unwrap().is_ok());
    assert!(cursor.next().await.is_none());
    let (err, _) = rejection(cursor.append(seg(1, 0)));
    assert!(matches!(err, AppendError::DuplicateOffset { .. }));
    cursor.append(seg(1, 8)).unwrap();
}

#[tokio::test]
async fn a_rejected_append_changes_nothing() {
    let mut cursor = buffered_cursor().await;
    assert!(cursor.append(seg(5, 10)).is_err());
    assert!(cursor.append(seg(9, 0)).is_err());
    assert!(cursor.append(seg(4, 0)).is_err());
    let mut rest = Vec::new();
    while let Some(s) = cursor.next().await {
        rest.push(s.unwrap());
    }
    assert_eq!(positions(&rest), [(5, 10)]);
}

#[tokio::test]
async fn appended_index_above_i64_max_is_invalid() {
    let cursor = Store::default().cursor().await;
    assert!(cursor
        .append(seg(1 << 63, 0))
        .unwrap_err()
        .is_invalid_argument());
}

/// A source whose reads of an index wait until released.
struct Gated {
    store: Store,
    open: Arc<tokio::sync::Semaphore>,
}

#[async_trait]
impl WalSegmentSource for Gated {
    async fn indexes(&self) -> Result<Vec<u64>> {
        self.store.indexes().await
    }
    async fn segments(&self, index: u64) -> Result<Vec<WalSegmentInfo>> {
        let _permit = self.open.acquire().await.unwrap();
        self.store.segments(index).await
    }
}

#[tokio::test]
async fn a_next_cancelled_while_reading_loses_nothing() {
    let store = Store::with(&[(1, 0), (1, 8)]);
    let open = Arc::new(tokio::sync::Semaphore::new(0));
    let source = Gated {
        store: store.clone(),
        open: open.clone(),
    };
    let mut cursor = WalSegmentCursor::open(gen(), Arc::new(source))
        .await
        .unwrap();
    // The read of index 1 is under way when the future is dropped, and a
    // writer appends to that index and the next meanwhile.
    assert!(
        tokio::time::timeout(Duration::from_millis(20), cursor.next())
            .await
            .is_err()
    );
    store.put(1, 16);
    cursor.append(seg(1, 16)).unwrap();
    store.put(2, 0);
    cursor.append(seg(2, 0)).unwrap();
    open.add_permits(100);
    let all = cursor.collect_all().await.unwrap();
    assert_eq!(positions(&all), [(1, 0), (1, 8), (1, 16), (2, 0)]);
}

#[tokio::test]
async fn a_store_error_is_sticky() {
    let store = Store::with(&[(0, 0), (1, 0), (2, 0)]);
    *store.fail_index.lock().unwrap() = Some(1);
    let mut cursor = store.cursor().await;
    assert!(cursor.next().await.unwrap().is_ok());
    let first = cursor.next().await.unwrap().unwrap_err();
    assert!(matches!(first, Error::Io { .. }), "{first}");
    // Reported again, and nothing more is yielded, though index 2 is readable.
    *store.fail_index.lock().unwrap() = None;
    assert!(cursor.next().await.is_none());
    assert!(cursor.next().await.is_none());
    assert_eq!(cursor.error().unwrap().to_string(), first.to_string());
    let again = cursor.append(seg(3, 0)).unwrap_err();
    assert_eq!(again.to_string(), first.to_string());
}

#[tokio::test]
async fn follow_mode_waits_for_an_append_and_wakes_on_it() {
    let mut cursor = Store::with(&[(0, 0)]).cursor().await.follow();
    let appender = cursor.appender();
    assert!(cursor.next().await.unwrap().is_ok());
    let reader = tokio::spawn(async move {
        let next = cursor.next().await.unwrap().unwrap();
        (next.index, next.offset, cursor)
    });
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(!reader.is_finished(), "follow must wait, not end");
    appender.append(seg(0, 32)).unwrap();
    let (index, offset, mut cursor) = tokio::time::timeout(Duration::from_secs(10), reader)
        .await
        .expect("woken by the append")
        .unwrap();
    assert_eq!((index, offset), (0, 32));
    appender.close();
    assert!(cursor.next().await.is_none(), "close ends a follow");
    let (err, _) = rejection(appender.append(seg(0, 64)));
    assert!(matches!(err, AppendError::Closed { .. }));
}

#[tokio::test]
async fn follow_mode_streams_many_appends_in_order() {
    let cursor = WalSegmentCursor::empty(gen()).follow();
    let appender = cursor.appender();
    let reader = tokio::spawn(cursor.collect_follow());
    for offset in 0..1000u64 {
        appender.append(seg(0, offset * 8)).unwrap();
        if offset % 100 == 0 {
            tokio::task::yield_now().await;
        }
    }
    appender.close();
    let got = tokio::time::timeout(Duration::from_secs(10), reader)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(got.len(), 1000);
    assert!(got.windows(2).all(|w| w[0].offset < w[1].offset));
}

trait CollectFollow {
    async fn collect_follow(self) -> Vec<WalSegmentInfo>;
}

impl CollectFollow for WalSegmentCursor {
    async fn collect_follow(mut self) -> Vec<WalSegmentInfo> {
        let mut out = Vec::new();
        while let Some(s) = self.next().await {
            out.push(s.unwrap());
        }
        out
    }
}

#[tokio::test]
async fn a_cursor_without_a_store_yields_every_accepted_append() {
    let cursor = WalSegmentCursor::empty(gen());
    for (i, o) in [(0, 0), (1, 0), (1, 8)] {
        cursor.append(seg(i, o)).unwrap();
    }
    let appender = cursor.appender();
    let mut cursor = cursor;
    let mut seen = Vec::new();
    for _ in 0..3 {
        let s = cursor.next().await.unwrap().unwrap();
        seen.push((s.index, s.offset));
    }
    assert_eq!(seen, [(0, 0), (1, 0), (1, 8)]);
    // The newest known is (1, 8): index 2 follows it, index 3 would skip.
    appender.append(seg(2, 0)).unwrap();
    let (e, _) = rejection(appender.append(seg(4, 0)));
    assert!(matches!(e, AppendError::SkipsIndex { .. }));
    assert_eq!(positions(&cursor.collect_all().await.unwrap()), [(2, 0)]);
}

#[tokio::test]
async fn appends_survive_a_store_listing_that_lags_its_writes() {
    // The store never lists what was written after the cursor opened.
    let store = Store::with(&[(2, 0)]);
    let cursor = store.cursor().await;
    for (i, o) in [(2, 30), (3, 0), (3, 20), (4, 0)] {
        cursor.append(seg(i, o)).unwrap();
    }
    let all = cursor.collect_all().await.unwrap();
    assert_eq!(positions(&all), [(2, 0), (2, 30), (3, 0), (3, 20), (4, 0)]);
}

#[tokio::test]
async fn an_append_the_store_also_lists_is_yielded_once() {
    let store = Store::with(&[(2, 0)]);
    let cursor = store.cursor().await;
    store.put(3, 0);
    cursor.append(seg(3, 0)).unwrap();
    cursor.append(seg(3, 10)).unwrap();
    store.put(3, 10);
    let all = cursor.collect_all().await.unwrap();
    assert_eq!(positions(&all), [(2, 0), (3, 0), (3, 10)]);
}
