//! The store conformance suite: the semantics every [`EventStore`] + [`SnapshotStore`] must
//! have. Each case takes a fresh, empty store and panics (fails the test) on a violation.
//!
//! Run them all with [`conformance_tests!`](crate::conformance_tests).
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::collections::HashSet;
use std::time::Duration;

use serde_json::json;
use uuid::Uuid;

use super::fixture::{ADDED, CLEARED, Counter, CounterCommand, CounterError, CounterEvent};
use crate::{
    AppendError, Appended, Checkpoint, CommandMetadata, DecodeFailure, EventStore, ExecuteError,
    ExpectedVersion, FoldEvent, LoadError, Loaded, LogFilter, Metadata, NewEvent, ParkedSelection,
    Position, ProjectionStore, Repository, Snapshot, SnapshotError, SnapshotPolicy, SnapshotStore,
    StoreError, StreamId, Version,
};

pub use super::idempotency::{
    concurrent_idempotent_callers_share_one_outcome, idempotency_key_is_kept_in_the_metadata,
    idempotent_repeat_is_not_rejected_by_its_own_execution,
    idempotent_repeat_on_a_warm_cache_applies_nothing_twice,
    idempotent_repeat_reports_the_state_as_of_its_append,
    idempotent_repeat_without_events_reports_the_execution,
    idempotent_retry_after_a_lost_reply_reports_the_first_run, reused_idempotency_key_is_refused,
    transient_append_failures_are_retried_without_writing_twice,
};

/// The bound every store under test meets.
pub trait TestStore: EventStore + SnapshotStore + Clone {}
impl<S: EventStore + SnapshotStore + Clone> TestStore for S {}

fn stream(id: &str) -> StreamId {
    StreamId::new("counter", id)
}

fn added(amount: u64) -> NewEvent {
    NewEvent::new(ADDED, 1, json!({ "amount": amount }))
}

fn batch(amounts: &[u64]) -> Vec<NewEvent> {
    amounts.iter().map(|&a| added(a)).collect()
}

/// Appends `amounts` to `s`; the append must succeed.
async fn append_ok<S: TestStore>(
    store: &S,
    s: &StreamId,
    expected: ExpectedVersion,
    amounts: &[u64],
) -> Appended {
    store.append(s, expected, batch(amounts)).await.unwrap()
}

async fn versions<S: TestStore>(store: &S, stream: &StreamId) -> Vec<u64> {
    let events = store.read_stream(stream, Version(1), 10_000).await.unwrap();
    events.iter().map(|e| e.version.0).collect()
}

fn assert_conflict<T: std::fmt::Debug>(
    result: Result<T, StoreError>,
    stream: &StreamId,
    expected: ExpectedVersion,
    actual: Version,
) {
    match result {
        Err(StoreError::Conflict {
            stream: s,
            expected: e,
            actual: a,
        }) => {
            assert_eq!(&s, stream, "conflict names the stream");
            assert_eq!(e, expected, "conflict carries the expected version");
            assert_eq!(a, actual, "conflict carries the actual version");
        }
        other => panic!("expected a conflict, got {other:?}"),
    }
}

pub async fn expected_no_stream_on_new_stream_appends<S: TestStore>(store: S) {
    let s = stream("a");
    let written = append_ok(&store, &s, ExpectedVersion::NoStream, &[1]).await;
    assert_eq!(written.first_version, Version(1));
    assert_eq!(written.last_version, Version(1));
    assert!(!written.replayed);
    assert_eq!(versions(&store, &s).await, [1]);
}

pub async fn expected_no_stream_on_existing_stream_conflicts<S: TestStore>(store: S) {
    let s = stream("a");
    append_ok(&store, &s, ExpectedVersion::NoStream, &[1]).await;
    let result = store
        .append(&s, ExpectedVersion::NoStream, batch(&[2]))
        .await;
    assert_conflict(result, &s, ExpectedVersion::NoStream, Version(1));
    assert_eq!(versions(&store, &s).await, [1]);
}

pub async fn expected_exact_appends_at_that_version<S: TestStore>(store: S) {
    let s = stream("a");
    append_ok(&store, &s, ExpectedVersion::Exact(Version(0)), &[1, 2]).await;
    let written = append_ok(&store, &s, ExpectedVersion::Exact(Version(2)), &[3]).await;
    assert_eq!(written.first_version, Version(3));
    assert_eq!(versions(&store, &s).await, [1, 2, 3]);
}

pub async fn expected_exact_mismatch_conflicts_and_writes_nothing<S: TestStore>(store: S) {
    let s = stream("a");
    append_ok(&store, &s, ExpectedVersion::NoStream, &[1, 2]).await;
    for wrong in [0, 1, 3, 9] {
        let expected = ExpectedVersion::Exact(Version(wrong));
        let result = store.append(&s, expected, batch(&[5, 6])).await;
        assert_conflict(result, &s, expected, Version(2));
    }
    assert_eq!(versions(&store, &s).await, [1, 2]);
    assert_eq!(store.head_position().await.unwrap(), Position(2));
}

pub async fn expected_stream_exists_on_missing_stream_conflicts<S: TestStore>(store: S) {
    let s = stream("a");
    let result = store
        .append(&s, ExpectedVersion::StreamExists, batch(&[1]))
        .await;
    assert_conflict(result, &s, ExpectedVersion::StreamExists, Version(0));
    append_ok(&store, &s, ExpectedVersion::NoStream, &[1]).await;
    let written = append_ok(&store, &s, ExpectedVersion::StreamExists, &[2]).await;
    assert_eq!(written.last_version, Version(2));
}

pub async fn expected_any_appends_anywhere<S: TestStore>(store: S) {
    let s = stream("a");
    for round in 1..=3u64 {
        let written = append_ok(&store, &s, ExpectedVersion::Any, &[round]).await;
        assert_eq!(written.last_version, Version(round));
    }
    assert_eq!(versions(&store, &s).await, [1, 2, 3]);
}

pub async fn batch_gets_consecutive_versions_and_positions<S: TestStore>(store: S) {
    let (a, b) = (stream("a"), stream("b"));
    append_ok(&store, &a, ExpectedVersion::NoStream, &[1]).await;
    let written = append_ok(&store, &b, ExpectedVersion::NoStream, &[1, 2, 3, 4]).await;
    assert_eq!(
        (written.first_version, written.last_version),
        (Version(1), Version(4))
    );
    assert_eq!(written.last_position.0 - written.first_position.0, 3);
    let events = store.read_stream(&b, Version(1), 100).await.unwrap();
    let positions: Vec<u64> = events.iter().map(|e| e.position.0).collect();
    let first = written.first_position.0;
    assert_eq!(positions, [first, first + 1, first + 2, first + 3]);
    assert!(
        events
            .iter()
            .all(|e| e.recorded_at == events[0].recorded_at)
    );
}

/// Streams `a` and `b`, with one event already stored in `a` (whose id a case then reuses).
async fn one_event_in_a<S: TestStore>(store: &S) -> (StreamId, StreamId, NewEvent) {
    let (a, b) = (stream("a"), stream("b"));
    let event = added(1);
    store
        .append(&a, ExpectedVersion::NoStream, vec![event.clone()])
        .await
        .unwrap();
    (a, b, event)
}

pub async fn failed_batch_writes_nothing<S: TestStore>(store: S) {
    let (_, b, taken) = one_event_in_a(&store).await;
    // The batch's third event reuses an id stored in another stream: the whole batch fails.
    let poisoned = vec![added(1), added(2), taken.clone(), added(4)];
    let result = store.append(&b, ExpectedVersion::NoStream, poisoned).await;
    assert!(
        matches!(result, Err(StoreError::DuplicateEventId { ref event_id, .. }) if *event_id == taken.event_id),
        "{result:?}"
    );
    assert_eq!(versions(&store, &b).await, Vec::<u64>::new());
    assert_eq!(store.stream_version(&b).await.unwrap(), Version(0));
    let all = store
        .read_all(Checkpoint::START, 100, &LogFilter::all())
        .await
        .unwrap();
    assert_eq!(all.len(), 1, "only the first append is visible");
    // The stream is still writable from scratch.
    append_ok(&store, &b, ExpectedVersion::NoStream, &[7]).await;
}

pub async fn empty_batch_is_rejected<S: TestStore>(store: S) {
    let s = stream("a");
    let result = store.append(&s, ExpectedVersion::Any, Vec::new()).await;
    assert!(
        matches!(result, Err(StoreError::EmptyBatch { .. })),
        "{result:?}"
    );
    assert_eq!(store.stream_version(&s).await.unwrap(), Version(0));
}

pub async fn concurrent_writers_on_one_stream_lose_nothing<S: TestStore>(store: S) {
    const TASKS: u64 = 8;
    const PER_TASK: u64 = 25;
    let s = stream("contended");
    let mut handles = Vec::new();
    for task in 0..TASKS {
        let (store, s) = (store.clone(), s.clone());
        handles.push(tokio::spawn(async move {
            let mut acknowledged = Vec::new();
            let mut conflicts = 0u64;
            while (acknowledged.len() as u64) < PER_TASK {
                let version = store.stream_version(&s).await.unwrap();
                let event = added(task * 1_000 + acknowledged.len() as u64);
                let id = event.event_id;
                match store
                    .append(&s, ExpectedVersion::Exact(version), vec![event])
                    .await
                {
                    Ok(written) => {
                        assert_eq!(written.last_version, version.next());
                        acknowledged.push(id);
                    }
                    Err(StoreError::Conflict { .. }) => {
                        conflicts += 1;
                        tokio::task::yield_now().await;
                    }
                    Err(other) => panic!("unexpected error: {other}"),
                }
            }
            (acknowledged, conflicts)
        }));
    }
    let mut acknowledged = HashSet::new();
    for handle in handles {
        let (ids, _) = handle.await.unwrap();
        acknowledged.extend(ids);
    }
    let events = store.read_stream(&s, Version(1), 10_000).await.unwrap();
    let total = TASKS * PER_TASK;
    let got: Vec<u64> = events.iter().map(|e| e.version.0).collect();
    assert_eq!(
        got,
        (1..=total).collect::<Vec<_>>(),
        "versions 1..N, no gap"
    );
    let stored: HashSet<Uuid> = events.iter().map(|e| e.event_id).collect();
    assert_eq!(stored.len() as u64, total, "no duplicate");
    assert_eq!(stored, acknowledged, "every acknowledged event is stored");
}

pub async fn reappending_a_batch_is_idempotent<S: TestStore>(store: S) {
    let s = stream("a");
    let events = batch(&[1, 2, 3]);
    let first = store
        .append(&s, ExpectedVersion::NoStream, events.clone())
        .await
        .unwrap();
    append_ok(&store, &s, ExpectedVersion::Any, &[4]).await;
    // A client retry with the original expectation, now stale: reported as the original.
    let again = store
        .append(&s, ExpectedVersion::NoStream, events)
        .await
        .unwrap();
    assert!(again.replayed);
    assert_eq!(
        (
            again.first_version,
            again.last_version,
            again.first_position,
            again.last_position
        ),
        (
            first.first_version,
            first.last_version,
            first.first_position,
            first.last_position
        )
    );
    assert_eq!(versions(&store, &s).await, [1, 2, 3, 4]);
}

pub async fn reusing_an_event_id_elsewhere_is_rejected<S: TestStore>(store: S) {
    let (a, b, event) = one_event_in_a(&store).await;
    let result = store
        .append(&b, ExpectedVersion::Any, vec![event.clone()])
        .await;
    match result {
        Err(StoreError::DuplicateEventId {
            event_id,
            existing_stream,
            existing_version,
            ..
        }) => {
            assert_eq!(event_id, event.event_id);
            assert_eq!(existing_stream, a);
            assert_eq!(existing_version, Version(1));
        }
        other => panic!("expected DuplicateEventId, got {other:?}"),
    }
    // A batch that repeats only part of an earlier append is not a retry either.
    let partial = vec![event, added(2)];
    let result = store.append(&a, ExpectedVersion::Any, partial).await;
    assert!(
        matches!(result, Err(StoreError::DuplicateEventId { .. })),
        "{result:?}"
    );
    assert_eq!(versions(&store, &a).await, [1]);
    assert_eq!(versions(&store, &b).await, Vec::<u64>::new());
}

pub async fn read_stream_from_a_version<S: TestStore>(store: S) {
    let (a, b) = (stream("a"), stream("b"));
    append_ok(&store, &a, ExpectedVersion::NoStream, &[1, 2, 3, 4, 5]).await;
    append_ok(&store, &b, ExpectedVersion::NoStream, &[9]).await;
    let tail = store.read_stream(&a, Version(3), 100).await.unwrap();
    let amounts: Vec<_> = tail.iter().map(|e| e.payload["amount"].clone()).collect();
    assert_eq!(amounts, [json!(3), json!(4), json!(5)]);
    assert!(tail.iter().all(|e| e.stream_id == a));
    let page = store.read_stream(&a, Version(2), 2).await.unwrap();
    assert_eq!(page.iter().map(|e| e.version.0).collect::<Vec<_>>(), [2, 3]);
    assert!(
        store
            .read_stream(&a, Version(6), 100)
            .await
            .unwrap()
            .is_empty()
    );
    assert!(
        store
            .read_stream(&stream("none"), Version(1), 100)
            .await
            .unwrap()
            .is_empty()
    );
}

pub async fn global_read_is_in_append_order<S: TestStore>(store: S) {
    let mut appended = Vec::new();
    for (i, id) in ["a", "b", "a", "c", "b"].iter().enumerate() {
        let events = batch(&[i as u64 * 10, i as u64 * 10 + 1]);
        appended.extend(events.iter().map(|e| e.event_id));
        store
            .append(&stream(id), ExpectedVersion::Any, events)
            .await
            .unwrap();
    }
    let all = store
        .read_all(Checkpoint::START, 100, &LogFilter::all())
        .await
        .unwrap();
    assert_eq!(all.iter().map(|e| e.event_id).collect::<Vec<_>>(), appended);
    assert!(
        all.windows(2).all(|w| w[0].checkpoint < w[1].checkpoint),
        "checkpoints increase"
    );
    assert!(
        all.windows(2).all(|w| w[0].position < w[1].position),
        "positions increase"
    );
}

pub async fn global_read_resumes_from_a_checkpoint<S: TestStore>(store: S) {
    let mut appended = Vec::new();
    for i in 0..7u64 {
        let events = batch(&[i, i + 100]);
        appended.extend(events.iter().map(|e| e.event_id));
        store
            .append(
                &stream(&format!("s{}", i % 3)),
                ExpectedVersion::Any,
                events,
            )
            .await
            .unwrap();
    }
    let mut seen = Vec::new();
    let mut checkpoint = Checkpoint::START;
    loop {
        let page = store
            .read_all(checkpoint, 3, &LogFilter::all())
            .await
            .unwrap();
        assert!(page.len() <= 3);
        let Some(last) = page.last() else { break };
        checkpoint = last.checkpoint;
        seen.extend(page.iter().map(|e| e.event_id));
    }
    assert_eq!(seen, appended, "every event exactly once, in order");
    // A checkpoint is a serializable token that resumes in the same place.
    let third = store
        .read_all(Checkpoint::START, 3, &LogFilter::all())
        .await
        .unwrap()[2]
        .checkpoint;
    let token: Checkpoint = serde_json::from_str(&serde_json::to_string(&third).unwrap()).unwrap();
    let rest = store.read_all(token, 100, &LogFilter::all()).await.unwrap();
    assert_eq!(
        rest.iter().map(|e| e.event_id).collect::<Vec<_>>(),
        appended[3..]
    );
}

pub async fn global_read_filters_by_category_and_name<S: TestStore>(store: S) {
    let other = StreamId::new("ledger", "x");
    store
        .append(&stream("a"), ExpectedVersion::Any, batch(&[1]))
        .await
        .unwrap();
    store
        .append(
            &other,
            ExpectedVersion::Any,
            vec![NewEvent::new("ledger.posted", 1, json!({}))],
        )
        .await
        .unwrap();
    store
        .append(
            &stream("b"),
            ExpectedVersion::Any,
            vec![NewEvent::new(CLEARED, 1, json!({}))],
        )
        .await
        .unwrap();
    let read = |filter: LogFilter| {
        let store = store.clone();
        async move {
            let events = store
                .read_all(Checkpoint::START, 100, &filter)
                .await
                .unwrap();
            events.into_iter().map(|e| e.name).collect::<Vec<_>>()
        }
    };
    assert_eq!(
        read(LogFilter::all().category("counter")).await,
        [ADDED, CLEARED]
    );
    assert_eq!(
        read(LogFilter::all().category("ledger")).await,
        ["ledger.posted"]
    );
    assert_eq!(read(LogFilter::all().name(CLEARED)).await, [CLEARED]);
    assert_eq!(
        read(LogFilter::all().name(CLEARED).name("ledger.posted")).await,
        ["ledger.posted", CLEARED]
    );
    assert_eq!(
        read(LogFilter::all().category("ledger").name(ADDED)).await,
        Vec::<String>::new()
    );
    // Filtered reads page and resume like unfiltered ones.
    let filter = LogFilter::all().category("counter");
    let first = store.read_all(Checkpoint::START, 1, &filter).await.unwrap();
    assert_eq!(first.len(), 1);
    let next = store
        .read_all(first[0].checkpoint, 1, &filter)
        .await
        .unwrap();
    assert_eq!(next[0].name, CLEARED);
}

pub async fn filtered_global_read_merges_names_in_order<S: TestStore>(store: S) {
    // Ten names, interleaved in single and batched appends over three streams of two
    // categories; read through filters of several sizes (a repeated name included), a page
    // at a time: every matching event once, in checkpoint order, as an unfiltered read has them.
    let names: Vec<String> = (0..10).map(|i| format!("counter.n{i}")).collect();
    for round in 0..6 {
        for (k, id) in ["a", "b"].iter().enumerate() {
            let batch: Vec<NewEvent> = (0..=k + round % 2)
                .map(|i| NewEvent::new(&names[(round * 3 + k + i) % 10], 1, json!({})))
                .collect();
            store
                .append(&stream(id), ExpectedVersion::Any, batch)
                .await
                .unwrap();
        }
        let other = StreamId::new("ledger", "x");
        let event = NewEvent::new(&names[(round * 7) % 10], 1, json!({}));
        store
            .append(&other, ExpectedVersion::Any, vec![event])
            .await
            .unwrap();
    }
    let all = store
        .read_all(Checkpoint::START, 10_000, &LogFilter::all())
        .await
        .unwrap();
    for (size, page) in [(1, 1), (3, 2), (3, 100), (8, 3), (9, 4)] {
        for category in [None, Some("counter")] {
            let mut filter = LogFilter::all();
            for name in &names[..size] {
                filter = filter.name(name.as_str());
            }
            filter = filter.name(names[0].as_str());
            if let Some(category) = category {
                filter = filter.category(category);
            }
            let expected: Vec<_> = all
                .iter()
                .filter(|e| filter.matches(e))
                .map(|e| e.position)
                .collect();
            let mut got = Vec::new();
            let mut after = Checkpoint::START;
            loop {
                let events = store.read_all(after, page, &filter).await.unwrap();
                assert!(events.len() <= page);
                let Some(last) = events.last() else { break };
                after = last.checkpoint;
                got.extend(events.iter().map(|e| e.position));
            }
            assert_eq!(
                got, expected,
                "{size} names, pages of {page}, category {category:?}"
            );
        }
    }
}

pub async fn head_position_and_stream_version<S: TestStore>(store: S) {
    assert_eq!(store.head_position().await.unwrap(), Position(0));
    assert_eq!(
        store.stream_version(&stream("a")).await.unwrap(),
        Version(0)
    );
    store
        .append(&stream("a"), ExpectedVersion::Any, batch(&[1, 2]))
        .await
        .unwrap();
    let written = store
        .append(&stream("b"), ExpectedVersion::Any, batch(&[3]))
        .await
        .unwrap();
    assert_eq!(store.head_position().await.unwrap(), written.last_position);
    assert_eq!(
        store.stream_version(&stream("a")).await.unwrap(),
        Version(2)
    );
    assert_eq!(
        store.stream_version(&stream("b")).await.unwrap(),
        Version(1)
    );
}

pub async fn metadata_round_trips<S: TestStore>(store: S) {
    let mut metadata = Metadata {
        correlation_id: Some(Uuid::now_v7()),
        causation_id: Some(Uuid::now_v7()),
        idempotency_key: Some("req-1".to_owned()),
        command: Some(crate::CommandFingerprint::serialized(
            "Deposit",
            &json!({ "amount": 5 }),
        )),
        ..Metadata::default()
    };
    metadata.insert("user", &"ada").unwrap();
    metadata.insert("attempt", &3u32).unwrap();
    let event = added(5).with_metadata(metadata.clone());
    store
        .append(&stream("a"), ExpectedVersion::NoStream, vec![event.clone()])
        .await
        .unwrap();
    let stored = &store
        .read_stream(&stream("a"), Version(1), 1)
        .await
        .unwrap()[0];
    assert_eq!(stored.metadata, metadata);
    assert_eq!(stored.metadata.get::<u32>("attempt").unwrap(), Some(3));
    assert_eq!(stored.event_id, event.event_id);
    assert_eq!(stored.name, ADDED);
    assert_eq!(stored.schema_version, 1);
    assert_eq!(stored.payload, json!({ "amount": 5 }));
    assert_eq!(stored.stream_id.category(), "counter");
}

pub async fn find_event_by_id<S: TestStore>(store: S) {
    let events = batch(&[1, 2]);
    store
        .append(&stream("a"), ExpectedVersion::NoStream, events.clone())
        .await
        .unwrap();
    let found = store.find_event(events[1].event_id).await.unwrap().unwrap();
    assert_eq!((found.stream_id, found.version), (stream("a"), Version(2)));
    assert!(store.find_event(Uuid::now_v7()).await.unwrap().is_none());
}

fn snapshot(s: &StreamId, version: u64, fingerprint: &str, state: serde_json::Value) -> Snapshot {
    Snapshot {
        stream_id: s.clone(),
        version: Version(version),
        state_fingerprint: fingerprint.to_owned(),
        state,
        taken_at: chrono::Utc::now(),
    }
}

pub async fn snapshot_round_trip_moves_only_forward<S: TestStore>(store: S) {
    let s = stream("a");
    assert!(store.load_snapshot(&s).await.unwrap().is_none());
    let five = snapshot(&s, 5, "fp", json!({ "value": 5, "clears": 0 }));
    store.save_snapshot(five.clone()).await.unwrap();
    let loaded = store.load_snapshot(&s).await.unwrap().unwrap();
    assert_eq!(
        (loaded.version, loaded.state_fingerprint.as_str()),
        (Version(5), "fp")
    );
    assert_eq!(loaded.state, five.state);
    // Saving at 3 keeps 5 (never backwards); saving at 8 moves it forward.
    for (saved, kept) in [(3, 5), (8, 8)] {
        store
            .save_snapshot(snapshot(&s, saved, "fp", json!({ "value": saved })))
            .await
            .unwrap();
        let stored = store.load_snapshot(&s).await.unwrap().unwrap();
        assert_eq!(stored.version, Version(kept), "saved at {saved}");
    }
    assert!(store.load_snapshot(&stream("b")).await.unwrap().is_none());
}

pub async fn repository_loads_snapshot_plus_tail<S: TestStore>(store: S) {
    let repo = Repository::<Counter, _>::new(store.clone());
    for amount in 1..=7 {
        repo.execute("x", CounterCommand::Add(amount))
            .await
            .unwrap();
    }
    // Every 3 events: snapshots at 3 and 6; the load folds only event 7.
    let stored = store.load_snapshot(&stream("x")).await.unwrap().unwrap();
    assert_eq!(stored.version, Version(6));
    let loaded = repo.load("x").await.unwrap();
    assert_eq!(loaded.state.value, 28);
    assert_eq!(loaded.version, Version(7));
    assert_eq!(loaded.snapshot_version, Some(Version(6)));
    assert_eq!(loaded.events_folded, 1);
}

pub async fn stale_or_corrupt_snapshot_is_ignored<S: TestStore>(store: S) {
    let repo = Repository::<Counter, _>::new(store.clone());
    for amount in [10, 20] {
        repo.execute("x", CounterCommand::Add(amount))
            .await
            .unwrap();
    }
    let s = stream("x");
    let fingerprint = <Counter as crate::Aggregate>::STATE_FINGERPRINT;
    let cases = [
        // Another state shape (an old fingerprint) with a value that would be wrong.
        ("old-shape", json!({ "value": 999, "clears": 0 }), None),
        // The right fingerprint but a state that does not decode.
        (fingerprint, json!({ "value": "x" }), None),
        // A usable one is used.
        (
            fingerprint,
            json!({ "value": 30, "clears": 0 }),
            Some(Version(2)),
        ),
    ];
    for (fingerprint, state, used) in cases {
        store
            .save_snapshot(snapshot(&s, 2, fingerprint, state))
            .await
            .unwrap();
        let loaded = repo.load("x").await.unwrap();
        assert_eq!((loaded.state.value, loaded.snapshot_version), (30, used));
    }
}

pub async fn snapshot_ahead_of_the_stream_is_ignored<S: TestStore>(store: S) {
    let repo = Repository::<Counter, _>::new(store.clone());
    for amount in [10, 20] {
        repo.execute("x", CounterCommand::Add(amount))
            .await
            .unwrap();
    }
    let s = stream("x");
    let fingerprint = <Counter as crate::Aggregate>::STATE_FINGERPRINT;
    // A snapshot claiming version 7 of a stream at version 2 (e.g. restored snapshots newer
    // than the restored events).
    store
        .save_snapshot(snapshot(
            &s,
            7,
            fingerprint,
            json!({ "value": 999, "clears": 0 }),
        ))
        .await
        .unwrap();
    let loaded = repo.load("x").await.unwrap();
    assert_eq!(
        (loaded.state.value, loaded.version, loaded.snapshot_version),
        (30, Version(2), None)
    );
    // Commands are decided on the stream's real version: no endless conflict.
    let done = repo.execute("x", CounterCommand::Add(1)).await.unwrap();
    assert_eq!((done.version, done.state.value), (Version(3), 31));
}

/// What a load folded: the value, the snapshot it started from, the events on top.
fn folded(loaded: &Loaded<Counter>) -> (u64, Option<Version>, u64) {
    (
        loaded.state.value,
        loaded.snapshot_version,
        loaded.events_folded,
    )
}

pub async fn runtime_snapshot_policy_overrides_the_aggregates<S: TestStore>(store: S) {
    // Counter snapshots every 3 events; this repository never does.
    let never =
        Repository::<Counter, _>::new(store.clone()).with_snapshot_policy(SnapshotPolicy::Never);
    assert_eq!(never.snapshot_policy(), SnapshotPolicy::Never);
    let zero =
        Repository::<Counter, _>::new(store.clone()).with_snapshot_policy(SnapshotPolicy::Every(0));
    assert_eq!(
        zero.snapshot_policy(),
        SnapshotPolicy::Never,
        "every 0 is never"
    );
    for amount in 1..=7 {
        never
            .execute("x", CounterCommand::Add(amount))
            .await
            .unwrap();
    }
    assert!(store.load_snapshot(&stream("x")).await.unwrap().is_none());
    let loaded = never.load("x").await.unwrap();
    assert_eq!((loaded.snapshot_version, loaded.events_folded), (None, 7));
    // Every 2 instead of every 3: snapshots at 2 and 4 for 5 events.
    let every2 =
        Repository::<Counter, _>::new(store.clone()).with_snapshot_policy(SnapshotPolicy::Every(2));
    for amount in 1..=5 {
        every2
            .execute("y", CounterCommand::Add(amount))
            .await
            .unwrap();
    }
    let stored = store.load_snapshot(&stream("y")).await.unwrap().unwrap();
    assert_eq!(stored.version, Version(4));
    let loaded = every2.load("y").await.unwrap();
    assert_eq!(folded(&loaded), (15, Some(Version(4)), 1));
    // `Never` does not read snapshots either: every load folds the whole stream.
    let loaded = never.load("y").await.unwrap();
    assert_eq!(folded(&loaded), (15, None, 5));
}

pub async fn snapshot_now_stores_the_current_state<S: TestStore>(store: S) {
    let never =
        Repository::<Counter, _>::new(store.clone()).with_snapshot_policy(SnapshotPolicy::Never);
    match never.snapshot("x").await {
        Err(SnapshotError::NoEvents { stream: s }) => assert_eq!(s, stream("x")),
        other => panic!("expected NoEvents, got {other:?}"),
    }
    assert!(store.load_snapshot(&stream("x")).await.unwrap().is_none());
    for amount in [1, 2, 3, 4, 5] {
        never
            .execute("x", CounterCommand::Add(amount))
            .await
            .unwrap();
    }
    assert_eq!(never.snapshot("x").await.unwrap(), Version(5));
    let stored = store.load_snapshot(&stream("x")).await.unwrap().unwrap();
    assert_eq!(stored.version, Version(5));
    assert_eq!(
        stored.state_fingerprint,
        <Counter as crate::Aggregate>::STATE_FINGERPRINT
    );
    assert_eq!(stored.state, json!({ "value": 15, "clears": 0 }));
    // A repository that reads snapshots starts from it.
    let every3 = Repository::<Counter, _>::new(store.clone());
    let loaded = every3.load("x").await.unwrap();
    assert_eq!(folded(&loaded), (15, Some(Version(5)), 0));
    // Later events are the tail; a second snapshot moves it forward.
    every3.execute("x", CounterCommand::Clear).await.unwrap();
    assert_eq!(every3.snapshot("x").await.unwrap(), Version(6));
    let loaded = every3.load("x").await.unwrap();
    assert_eq!(
        (loaded.state, loaded.snapshot_version),
        (
            Counter {
                value: 0,
                clears: 1
            },
            Some(Version(6))
        )
    );
}

pub async fn typed_append_encodes_and_checks_the_expected_version<S: TestStore>(store: S) {
    let repo = Repository::<Counter, _>::new(store.clone());
    let events = [
        CounterEvent::Added { amount: 2 },
        CounterEvent::Added { amount: 3 },
        CounterEvent::Cleared,
    ];
    let appended = repo
        .append("x", ExpectedVersion::NoStream, events.clone())
        .await
        .unwrap();
    assert_eq!(
        (
            appended.first_version,
            appended.last_version,
            appended.replayed
        ),
        (Version(1), Version(3), false)
    );
    let stored = store
        .read_stream(&stream("x"), Version(1), 10)
        .await
        .unwrap();
    let stored: Vec<_> = stored
        .iter()
        .map(|e| (e.name.as_str(), e.schema_version, e.payload.clone()))
        .collect();
    assert_eq!(
        stored,
        [
            (ADDED, 1, json!({ "amount": 2 })),
            (ADDED, 1, json!({ "amount": 3 })),
            (CLEARED, 1, json!({}))
        ]
    );
    let history: Vec<_> = repo
        .history("x")
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.event)
        .collect();
    assert_eq!(history, events);
    // The expected version is checked, and a conflict writes nothing.
    match repo
        .append(
            "x",
            ExpectedVersion::Exact(Version(2)),
            [CounterEvent::Cleared],
        )
        .await
    {
        Err(AppendError::Conflict {
            stream: s,
            expected,
            actual,
        }) => {
            assert_eq!(
                (s, expected),
                (stream("x"), ExpectedVersion::Exact(Version(2)))
            );
            assert_eq!(actual, Version(3))
        }
        other => panic!("expected a conflict, got {other:?}"),
    }
    assert!(matches!(
        repo.append("x", ExpectedVersion::Any, Vec::<CounterEvent>::new())
            .await,
        Err(AppendError::Store(StoreError::EmptyBatch { .. }))
    ));
    assert_eq!(versions(&store, &stream("x")).await, [1, 2, 3]);
    // With metadata: carried onto the events; an idempotency key makes a repeat a no-op.
    let correlation = Uuid::now_v7();
    let keyed = || {
        CommandMetadata::new()
            .idempotency_key("import-1")
            .correlation_id(correlation)
    };
    let batch = || (1..=2).map(|amount| CounterEvent::Added { amount });
    let first = repo
        .append_with("y", ExpectedVersion::Any, batch(), keyed())
        .await
        .unwrap();
    let again = repo
        .append_with("y", ExpectedVersion::Any, batch(), keyed())
        .await
        .unwrap();
    assert!(!first.replayed && again.replayed);
    assert_eq!(
        (again.first_version, again.last_version),
        (Version(1), Version(2))
    );
    let history = repo.history("y").await.unwrap();
    assert_eq!(history.len(), 2);
    assert!(
        history
            .iter()
            .all(|e| e.record.metadata.correlation_id == Some(correlation))
    );
    let loaded = repo.load("y").await.unwrap();
    assert_eq!((loaded.state.value, loaded.version), (3, Version(2)));
}

pub async fn reading_a_stream_page_by_page<S: TestStore>(store: S) {
    let s = stream("a");
    append_ok(
        &store,
        &s,
        ExpectedVersion::NoStream,
        &[1, 2, 3, 4, 5, 6, 7],
    )
    .await;
    async fn pages<S: TestStore>(
        store: &S,
        s: &StreamId,
        from: u64,
        until: Option<u64>,
        size: usize,
    ) -> Vec<Vec<u64>> {
        let mut reader = store.read_stream_pages(s, Version(from)).page_size(size);
        if let Some(until) = until {
            reader = reader.until(Version(until));
        }
        assert_eq!(reader.stream(), s);
        let mut pages = Vec::new();
        while let Some(page) = reader.next_page().await.unwrap() {
            assert!(!page.is_empty(), "a page is never empty");
            pages.push(page.iter().map(|e| e.version.0).collect());
        }
        assert!(
            reader.next_page().await.unwrap().is_none(),
            "the end stays the end"
        );
        pages
    }
    let v = |pages: &[&[u64]]| pages.iter().map(|p| p.to_vec()).collect::<Vec<_>>();
    assert_eq!(
        pages(&store, &s, 1, None, 3).await,
        v(&[&[1, 2, 3], &[4, 5, 6], &[7]])
    );
    assert_eq!(
        pages(&store, &s, 0, None, 7).await,
        v(&[&[1, 2, 3, 4, 5, 6, 7]])
    );
    assert_eq!(
        pages(&store, &s, 1, Some(5), 3).await,
        v(&[&[1, 2, 3], &[4, 5]])
    );
    assert_eq!(
        pages(&store, &s, 1, Some(6), 3).await,
        v(&[&[1, 2, 3], &[4, 5, 6]])
    );
    assert_eq!(
        pages(&store, &s, 6, Some(u64::MAX), 0).await,
        v(&[&[6], &[7]])
    );
    assert!(pages(&store, &s, 1, Some(0), 3).await.is_empty());
    assert!(pages(&store, &s, 8, None, 3).await.is_empty());
    assert!(pages(&store, &stream("none"), 1, None, 3).await.is_empty());
}

pub async fn reading_a_stream_for_folding<S: TestStore>(store: S) {
    let (a, b) = (stream("a"), stream("b"));
    append_ok(&store, &a, ExpectedVersion::NoStream, &[1, 2, 3, 4]).await;
    append_ok(&store, &b, ExpectedVersion::NoStream, &[9]).await;
    append_ok(&store, &a, ExpectedVersion::Exact(Version(4)), &[5, 6, 7]).await;
    for from in [0, 1, 3, 7, 8] {
        for max in [0, 1, 3, 4, 7, 100] {
            let page = store
                .read_stream_for_fold(&a, Version(from), max)
                .await
                .unwrap();
            let full: Vec<FoldEvent> = store
                .read_stream(&a, Version(from), max)
                .await
                .unwrap()
                .into_iter()
                .map(FoldEvent::from)
                .collect();
            assert_eq!(
                page.events, full,
                "from {from}, max {max}: what read_stream returns"
            );
            let after = page
                .events
                .last()
                .map_or(Version(from), |e| e.version.next());
            let more = !store.read_stream(&a, after, 1).await.unwrap().is_empty();
            if page.last {
                assert!(
                    !more,
                    "from {from}, max {max}: a page marked last ends the stream"
                );
            }
            if max > 0 && page.events.len() < max {
                assert!(
                    page.last,
                    "from {from}, max {max}: a short page is the last"
                );
            }
        }
    }
    let page = store
        .read_stream_for_fold(&b, Version(1), 10)
        .await
        .unwrap();
    assert_eq!(page.events.len(), 1);
    assert_eq!(
        page.events[0].payload.to_value().unwrap()["amount"],
        json!(9)
    );
    assert_eq!(
        (page.events[0].name.as_str(), page.events[0].schema_version),
        (ADDED, 1)
    );
    assert!(page.last);
    let none = store
        .read_stream_for_fold(&stream("none"), Version(1), 10)
        .await
        .unwrap();
    assert!(none.events.is_empty());
    // A load folds the same events through this read, with and without a snapshot.
    let repo = Repository::<Counter, _>::new(store.clone());
    let loaded = repo.load("a").await.unwrap();
    assert_eq!((loaded.state.value, loaded.version), (28, Version(7)));
    assert_eq!(loaded.events_folded, 7);
}

pub async fn corrupt_payload_is_a_typed_error<S: TestStore>(store: S) {
    let s = stream("x");
    let good = added(1);
    let bad = NewEvent::new(ADDED, 1, json!({ "amount": "twelve" }));
    store
        .append(&s, ExpectedVersion::NoStream, vec![good, bad])
        .await
        .unwrap();
    let repo = Repository::<Counter, _>::new(store);
    match repo.load("x").await {
        Err(LoadError::Decode(error)) => {
            assert_eq!(error.stream, s);
            assert_eq!(error.version, Version(2));
            assert_eq!(error.name, ADDED);
            assert!(matches!(
                error.source,
                DecodeFailure::Payload { version: 1, .. }
            ));
            let message = error.to_string();
            for part in ["counter-x", "version 2", ADDED, "position"] {
                assert!(message.contains(part), "`{message}` names {part}");
            }
        }
        other => panic!("expected a decode error, got {other:?}"),
    }
}

pub async fn unknown_event_name_is_a_typed_error<S: TestStore>(store: S) {
    let s = stream("x");
    let future = NewEvent::new("counter.multiplied", 1, json!({ "by": 2 }));
    let newer = NewEvent::new(ADDED, 7, json!({ "amount": 1 }));
    store
        .append(&s, ExpectedVersion::NoStream, vec![future])
        .await
        .unwrap();
    store
        .append(&stream("y"), ExpectedVersion::NoStream, vec![newer])
        .await
        .unwrap();
    let repo = Repository::<Counter, _>::new(store);
    match repo.load("x").await {
        Err(LoadError::Decode(error)) => {
            assert!(matches!(error.source, DecodeFailure::UnknownEvent));
            assert_eq!(error.name, "counter.multiplied");
        }
        other => panic!("expected a decode error, got {other:?}"),
    }
    match repo.load("y").await {
        Err(LoadError::Decode(error)) => {
            assert!(matches!(
                error.source,
                DecodeFailure::VersionTooNew {
                    found: 7,
                    latest: 1
                }
            ));
        }
        other => panic!("expected a decode error, got {other:?}"),
    }
}

pub async fn time_travel_by_version_and_timestamp<S: TestStore>(store: S) {
    let repo = Repository::<Counter, _>::new(store);
    let mut times = Vec::new();
    for amount in [1, 2, 4, 8, 16] {
        repo.execute("x", CounterCommand::Add(amount))
            .await
            .unwrap();
        let history = repo.history("x").await.unwrap();
        times.push(history.last().unwrap().record.recorded_at);
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let at = |v| repo.load_at("x", Version(v));
    assert_eq!(at(0).await.unwrap().state.value, 0);
    assert_eq!(at(2).await.unwrap().state.value, 3);
    let four = at(4).await.unwrap();
    assert_eq!((four.state.value, four.version), (15, Version(4)));
    // Past the head is an error, not the current state.
    match at(99).await {
        Err(crate::LoadError::VersionNotFound {
            requested, head, ..
        }) => assert_eq!((requested, head), (Version(99), Version(5))),
        other => panic!("expected VersionNotFound, got {other:?}"),
    }
    let as_of = repo.load_as_of("x", times[2]).await.unwrap();
    assert_eq!((as_of.state.value, as_of.version), (7, Version(3)));
    let before = repo
        .load_as_of("x", times[0] - chrono::Duration::seconds(1))
        .await
        .unwrap();
    assert_eq!(before.version, Version(0));
}

pub async fn execute_carries_correlation_and_causation<S: TestStore>(store: S) {
    let repo = Repository::<Counter, _>::new(store);
    let (correlation, causation) = (Uuid::now_v7(), Uuid::now_v7());
    let metadata = CommandMetadata::new()
        .correlation_id(correlation)
        .causation_id(causation)
        .with("user", "ada");
    let done = repo
        .execute_with("x", CounterCommand::Add(3), metadata)
        .await
        .unwrap();
    assert_eq!(done.events, [CounterEvent::Added { amount: 3 }]);
    let plain = CommandMetadata::new();
    let command_id = plain.command_id;
    repo.execute_with("x", CounterCommand::Add(4), plain)
        .await
        .unwrap();
    let history = repo.history("x").await.unwrap();
    let first = &history[0].record.metadata;
    assert_eq!(
        (first.correlation_id, first.causation_id),
        (Some(correlation), Some(causation))
    );
    assert_eq!(first.get::<String>("user").unwrap().as_deref(), Some("ada"));
    let second = &history[1].record.metadata;
    assert_eq!(
        (second.correlation_id, second.causation_id),
        (Some(command_id), Some(command_id))
    );
}

pub async fn idempotency_key_executes_once<S: TestStore>(store: S) {
    let repo = Repository::<Counter, _>::new(store);
    let keyed = || CommandMetadata::new().idempotency_key("req-1");
    let first = repo
        .execute_with("x", CounterCommand::Add(5), keyed())
        .await
        .unwrap();
    assert!(!first.replayed);
    repo.execute("x", CounterCommand::Add(1)).await.unwrap();
    let again = repo
        .execute_with("x", CounterCommand::Add(5), keyed())
        .await
        .unwrap();
    assert!(again.replayed);
    assert_eq!(again.events, [CounterEvent::Added { amount: 5 }]);
    assert_eq!((again.version, again.state.value), (Version(1), 5));
    let loaded = repo.load("x").await.unwrap();
    assert_eq!((loaded.state.value, loaded.version), (6, Version(2)));
    // The same key on another aggregate is a different command.
    let other = repo
        .execute_with("y", CounterCommand::Add(5), keyed())
        .await
        .unwrap();
    assert!(!other.replayed);
}

pub async fn writers_of_one_stream_take_turns_in_a_repository<S: TestStore>(store: S) {
    // One repository shared by 8 tasks: their commands on one aggregate queue, so none
    // conflicts even without conflict retries, with and without the cache.
    for (id, cached) in [("q", false), ("qc", true)] {
        let mut repo = Repository::<Counter, _>::new(store.clone());
        if cached {
            repo = repo.with_cache(std::num::NonZeroUsize::new(4).unwrap());
        }
        let repo = std::sync::Arc::new(repo);
        let mut handles = Vec::new();
        for _ in 0..8 {
            let repo = std::sync::Arc::clone(&repo);
            handles.push(tokio::spawn(async move {
                for _ in 0..5 {
                    let done = repo.execute(id, CounterCommand::Add(1)).await.unwrap();
                    assert_eq!(done.attempts, 1, "a queued writer decides once");
                }
            }));
        }
        for handle in handles {
            handle.await.unwrap();
        }
        let loaded = repo.load(id).await.unwrap();
        assert_eq!((loaded.state.value, loaded.version), (40, Version(40)));
    }
    // A writer outside the repository still conflicts with a queued one: the expected version
    // is checked as before.
    let repo = Repository::<Counter, _>::new(store.clone());
    repo.execute("q", CounterCommand::Add(1)).await.unwrap();
    let s = stream("q");
    let stale = store
        .append(&s, ExpectedVersion::Exact(Version(40)), batch(&[1]))
        .await;
    assert_conflict(stale, &s, ExpectedVersion::Exact(Version(40)), Version(41));
    // Racing writers without the queue: losers get a typed conflict.
    let racing =
        std::sync::Arc::new(Repository::<Counter, _>::new(store.clone()).queue_writers(false));
    let mut handles = Vec::new();
    for _ in 0..8 {
        let repo = std::sync::Arc::clone(&racing);
        handles.push(tokio::spawn(async move {
            match repo.execute("r", CounterCommand::Add(1)).await {
                Ok(_) => 0,
                Err(ExecuteError::Conflict { .. }) => 1,
                Err(other) => panic!("unexpected error: {other}"),
            }
        }));
    }
    let mut conflicts = 0;
    for handle in handles {
        conflicts += handle.await.unwrap();
    }
    let landed = racing.load("r").await.unwrap().state.value;
    assert_eq!(landed + conflicts, 8);
}

pub async fn conflict_retries_are_bounded<S: TestStore>(store: S) {
    // A rejected command writes nothing and says why.
    let repo = Repository::<Counter, _>::new(store.clone());
    repo.execute("x", CounterCommand::Add(Counter::LIMIT))
        .await
        .unwrap();
    let rejected = repo.execute("x", CounterCommand::Add(1)).await.unwrap_err();
    assert_eq!(
        rejected.rejection(),
        Some(&CounterError::OverLimit {
            value: Counter::LIMIT,
            amount: 1,
            limit: Counter::LIMIT
        })
    );
    assert_eq!(repo.load("x").await.unwrap().version, Version(1));
    // Racing writers: with retries every command lands; without, losers get a typed conflict.
    let retrying = Repository::<Counter, _>::new(store.clone()).retry_on_conflict(50);
    let mut handles = Vec::new();
    for _ in 0..8 {
        let store = store.clone();
        handles.push(tokio::spawn(async move {
            let repo = Repository::<Counter, _>::new(store).retry_on_conflict(50);
            for _ in 0..10 {
                repo.execute("y", CounterCommand::Add(1)).await.unwrap();
            }
        }));
    }
    for handle in handles {
        handle.await.unwrap();
    }
    assert_eq!(retrying.load("y").await.unwrap().state.value, 80);
    let mut conflicts = 0;
    let mut handles = Vec::new();
    for _ in 0..8 {
        let store = store.clone();
        handles.push(tokio::spawn(async move {
            let repo = Repository::<Counter, _>::new(store);
            let mut conflicts = 0;
            for _ in 0..10 {
                match repo.execute("z", CounterCommand::Add(1)).await {
                    Ok(done) => assert_eq!(done.attempts, 1),
                    Err(ExecuteError::Conflict { attempts: 1, .. }) => conflicts += 1,
                    Err(other) => panic!("unexpected error: {other}"),
                }
            }
            conflicts
        }));
    }
    for handle in handles {
        conflicts += handle.await.unwrap();
    }
    let landed = retrying.load("z").await.unwrap().state.value;
    assert_eq!(
        landed + conflicts,
        80,
        "each command either landed or reported a conflict"
    );
}

/// The projection side of a store: checkpoints move by compare-and-set, a reset request only
/// lets the checkpoint go back to the start (which clears it and forgets parked events), lag
/// counts only the events a filter passes, and parked events are listed, retried and
/// discarded.
pub async fn projection_checkpoints_resets_and_parked_events<S>(store: S)
where
    S: TestStore + ProjectionStore,
{
    let s = stream("p");
    store
        .append(&s, ExpectedVersion::NoStream, batch(&[1, 2, 3]))
        .await
        .unwrap();
    let other = NewEvent::new("counter.renamed", 1, json!({ "name": "x" }));
    store
        .append(&s, ExpectedVersion::Any, vec![other])
        .await
        .unwrap();
    let events = store
        .read_all(Checkpoint::START, 10, &LogFilter::all())
        .await
        .unwrap();
    assert_eq!(events.len(), 4);
    let added_only = LogFilter::all().name(ADDED);
    assert_eq!(
        store
            .count_after(Checkpoint::START, &added_only)
            .await
            .unwrap(),
        3
    );
    assert_eq!(
        store
            .count_after(events[2].checkpoint, &added_only)
            .await
            .unwrap(),
        0
    );
    assert_eq!(
        store
            .count_after(events[2].checkpoint, &LogFilter::all())
            .await
            .unwrap(),
        1
    );

    assert!(
        !store.request_reset("p").await.unwrap(),
        "unknown projection"
    );
    let lease = store.acquire_lease("p", &added_only).await.unwrap();
    assert_eq!(store.load_checkpoint("p").await.unwrap(), None);
    let tx = store.begin(&lease).await.unwrap();
    store
        .commit(tx, "p", None, events[0].checkpoint)
        .await
        .unwrap();
    assert_eq!(
        store.load_checkpoint("p").await.unwrap(),
        Some(events[0].checkpoint)
    );
    // Compare-and-set.
    let tx = store.begin(&lease).await.unwrap();
    let moved = store
        .commit(tx, "p", None, events[1].checkpoint)
        .await
        .unwrap_err();
    assert!(
        matches!(moved, StoreError::CheckpointMoved { .. }),
        "{moved}"
    );

    // A parked event, committed with the checkpoint past it.
    let mut tx = store.begin(&lease).await.unwrap();
    store
        .park(&mut tx, "p", &events[1], "boom", 3)
        .await
        .unwrap();
    store
        .commit(tx, "p", Some(events[0].checkpoint), events[1].checkpoint)
        .await
        .unwrap();
    let parked = store.parked(Some("p")).await.unwrap();
    assert_eq!(parked.len(), 1);
    assert_eq!(
        (parked[0].record.position, parked[0].attempts),
        (events[1].position, 3)
    );
    assert_eq!(
        (parked[0].error.as_str(), parked[0].retry_requested),
        ("boom", false)
    );
    assert!(store.due_for_retry("p", 10).await.unwrap().is_empty());
    let at = ParkedSelection::At(events[1].position);
    assert_eq!(store.retry_parked("p", at).await.unwrap(), 1);
    assert_eq!(
        store
            .retry_parked("p", ParkedSelection::At(events[0].position))
            .await
            .unwrap(),
        0
    );
    assert_eq!(store.due_for_retry("p", 10).await.unwrap().len(), 1);
    // Parked again (a retry that failed): the error replaced, the attempts added.
    let mut tx = store.begin(&lease).await.unwrap();
    store
        .park(&mut tx, "p", &events[1], "boom again", 1)
        .await
        .unwrap();
    let at_cp = Some(events[1].checkpoint);
    store
        .commit(tx, "p", at_cp, events[1].checkpoint)
        .await
        .unwrap();
    let parked = store.parked(None).await.unwrap();
    assert_eq!(
        (parked[0].error.as_str(), parked[0].attempts),
        ("boom again", 4)
    );
    assert!(!parked[0].retry_requested);

    // A reset request: only the start is allowed, and it clears the request and the parked.
    assert!(store.request_reset("p").await.unwrap());
    assert!(store.reset_requested("p").await.unwrap());
    let tx = store.begin(&lease).await.unwrap();
    let refused = store
        .commit(tx, "p", at_cp, events[2].checkpoint)
        .await
        .unwrap_err();
    assert!(
        matches!(refused, StoreError::ResetRequested { .. }),
        "{refused}"
    );
    assert_eq!(store.load_checkpoint("p").await.unwrap(), at_cp);
    let tx = store.begin(&lease).await.unwrap();
    store
        .commit(tx, "p", at_cp, Checkpoint::START)
        .await
        .unwrap();
    assert!(!store.reset_requested("p").await.unwrap());
    assert_eq!(store.load_checkpoint("p").await.unwrap(), None);
    assert!(store.parked(None).await.unwrap().is_empty());

    // Discard.
    let mut tx = store.begin(&lease).await.unwrap();
    store
        .park(&mut tx, "p", &events[0], "boom", 1)
        .await
        .unwrap();
    store
        .commit(tx, "p", None, events[0].checkpoint)
        .await
        .unwrap();
    assert_eq!(
        store
            .discard_parked("p", ParkedSelection::All)
            .await
            .unwrap(),
        1
    );
    assert!(store.parked(Some("p")).await.unwrap().is_empty());
}
