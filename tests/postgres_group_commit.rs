//! Group commit of the PostgreSQL store: appends that queue while earlier ones are being
//! committed share one transaction, and each keeps its own outcome (appended, conflict,
//! replayed, duplicate), exactly as if it had been written alone.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "support/postgres.rs"]
mod support;

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use eventsource::postgres::PostgresStore;
use eventsource::postgres::sqlx::{self, AssertSqlSafe, Connection};
use eventsource::testing::fixture::ADDED;
use eventsource::{Appended, EventStore, ExpectedVersion, NewEvent, StoreError, StreamId, Version};
use serde_json::json;
use support::{
    fresh_pg_store, fresh_pg_store_with_group_transactions, lock_heads, transactions,
    wait_for_lock_waiters,
};
use uuid::Uuid;

/// How long appends may take to reach a locked head (a hang detector).
const LOCK_WAIT: Duration = Duration::from_secs(20);

fn added(amount: u64) -> NewEvent {
    NewEvent::new(ADDED, 1, json!({ "amount": amount }))
}

fn stream(id: &str) -> StreamId {
    StreamId::new("counter", id)
}

/// Appends to `blocked` wait for its head, locked meanwhile, and keep the store's shared
/// transactions in flight; `queued` are spawned one after the other behind them, so that they
/// meet in the writer's queue. Returns their outcomes, in order.
async fn queued_behind_a_lock(
    store: &PostgresStore,
    blocked: &[StreamId],
    queued: Vec<(StreamId, ExpectedVersion, Vec<NewEvent>)>,
) -> Vec<Result<Appended, StoreError>> {
    let lock = lock_heads(store, blocked).await;
    let mut waiting = Vec::new();
    for s in blocked {
        let (writer, s) = (store.clone(), s.clone());
        let version = store.stream_version(&s).await.unwrap();
        waiting.push(tokio::spawn(async move {
            writer
                .append(&s, ExpectedVersion::Exact(version), vec![added(1)])
                .await
        }));
        if waiting.len() == 1 {
            wait_for_lock_waiters(store, 1, LOCK_WAIT).await;
        } else {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    let mut outcomes = Vec::new();
    for (s, expected, events) in queued {
        let store = store.clone();
        outcomes.push(tokio::spawn(async move {
            store.append(&s, expected, events).await
        }));
        // Spawned in order; each reaches the queue before the next is spawned.
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    lock.close().await.unwrap(); // rolls back, releasing the heads
    for blocked in waiting {
        blocked.await.unwrap().unwrap();
    }
    let mut results = Vec::new();
    for outcome in outcomes {
        results.push(outcome.await.unwrap());
    }
    results
}

/// Appends queued while shared transactions are in flight share the next one, and each gets
/// its own outcome: appended (one transaction for all streams), a conflict and a later append
/// of a stream already in the group (in arrival order), a replay of a stored batch; then a
/// group whose statement fails as a whole (an id of it is stored: a duplicate) still gives
/// every append its own outcome.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn queued_appends_share_a_transaction_and_keep_their_outcomes() {
    let store = fresh_pg_store().await;
    let blocked = [stream("blocked-a"), stream("blocked-b")];
    let (fresh, twice, third, stored, other, late) = (
        stream("fresh"),
        stream("twice"),
        stream("third"),
        stream("stored"),
        stream("other"),
        stream("late"),
    );
    for s in blocked.iter().chain([&stored]) {
        store
            .append(s, ExpectedVersion::NoStream, vec![added(0)])
            .await
            .unwrap();
    }
    let replay = added(7);
    let replay_id = replay.event_id;
    let first = store
        .append(
            &stored,
            ExpectedVersion::Exact(Version(1)),
            vec![replay.clone()],
        )
        .await
        .unwrap();

    let results = queued_behind_a_lock(
        &store,
        &blocked,
        vec![
            (
                fresh.clone(),
                ExpectedVersion::NoStream,
                vec![added(1), added(2)],
            ),
            (twice.clone(), ExpectedVersion::NoStream, vec![added(3)]),
            (twice.clone(), ExpectedVersion::NoStream, vec![added(4)]),
            (
                twice.clone(),
                ExpectedVersion::Exact(Version(1)),
                vec![added(5)],
            ),
            (third.clone(), ExpectedVersion::Any, vec![added(6)]),
            (
                stored.clone(),
                ExpectedVersion::Exact(Version(1)),
                vec![replay.clone()],
            ),
        ],
    )
    .await;
    let version = |r: &Result<Appended, StoreError>| r.as_ref().unwrap().last_version;
    assert_eq!(version(&results[0]), Version(2));
    assert_eq!(version(&results[1]), Version(1));
    assert!(
        matches!(
            &results[2],
            Err(StoreError::Conflict {
                actual: Version(1),
                ..
            })
        ),
        "{:?}",
        results[2]
    );
    assert_eq!(version(&results[3]), Version(2));
    assert_eq!(version(&results[4]), Version(1));
    let replayed = results[5].as_ref().unwrap();
    assert!(replayed.replayed);
    assert_eq!(replayed.last_position, first.last_position);
    // The first append of each stream shared one transaction.
    let fresh_tx = transactions(&store, &fresh).await;
    let twice_tx = transactions(&store, &twice).await;
    let third_tx = transactions(&store, &third).await;
    assert_eq!(fresh_tx.len(), 2);
    assert_eq!(twice_tx.len(), 2);
    assert!(
        fresh_tx
            .iter()
            .chain(&third_tx)
            .chain(&twice_tx[..1])
            .all(|t| *t == fresh_tx[0]),
        "the queued appends share one transaction: {fresh_tx:?} {twice_tx:?} {third_tx:?}"
    );
    assert_eq!(transactions(&store, &stored).await.len(), 2);

    // A stored id in the group: its statement fails, and each append goes alone.
    let results = queued_behind_a_lock(
        &store,
        &blocked,
        vec![
            (late.clone(), ExpectedVersion::NoStream, vec![added(8)]),
            (
                other.clone(),
                ExpectedVersion::Any,
                vec![added(9).with_id(replay_id)],
            ),
            (
                fresh.clone(),
                ExpectedVersion::Exact(Version(2)),
                vec![added(10)],
            ),
        ],
    )
    .await;
    assert_eq!(version(&results[0]), Version(1));
    assert!(
        matches!(
            &results[1],
            Err(StoreError::DuplicateEventId { event_id, existing_version: Version(2), .. })
                if *event_id == replay_id
        ),
        "{:?}",
        results[1]
    );
    assert_eq!(version(&results[2]), Version(3));
    assert!(transactions(&store, &other).await.is_empty());
    assert_eq!(store.stream_version(&other).await.unwrap(), Version(0));
    assert_eq!(transactions(&store, &late).await.len(), 1);
}

/// Many writers at once over private and shared streams, with conflicts, retries of
/// acknowledged batches and duplicate ids: every acknowledged event is stored exactly once at
/// the version it was acknowledged with, and nothing else is stored.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn many_writers_store_every_acknowledged_event_once_and_nothing_else() {
    let store = fresh_pg_store().await;
    const WRITERS: u64 = 24;
    const OPS: u64 = 40;
    let shared: Vec<StreamId> = (0..3).map(|i| stream(&format!("shared-{i}"))).collect();
    let mut tasks = Vec::new();
    for writer in 0..WRITERS {
        let (store, shared) = (store.clone(), shared.clone());
        tasks.push(tokio::spawn(async move {
            let own = stream(&format!("own-{writer}"));
            let mut own_version = 0u64;
            // (stream, version, event id) of every event this writer had acknowledged.
            let mut acknowledged: Vec<(StreamId, u64, Uuid)> = Vec::new();
            let mut last_batch: Option<(StreamId, Vec<NewEvent>, Appended)> = None;
            for op in 0..OPS {
                match (writer + op) % 5 {
                    // A private stream: the expectation always holds.
                    0 | 1 => {
                        let events: Vec<NewEvent> =
                            (0..1 + op % 3).map(|i| added(writer * 1_000 + i)).collect();
                        let ids: Vec<Uuid> = events.iter().map(|e| e.event_id).collect();
                        let written = store
                            .append(
                                &own,
                                ExpectedVersion::Exact(Version(own_version)),
                                events.clone(),
                            )
                            .await
                            .unwrap();
                        assert!(!written.replayed);
                        assert_eq!(written.first_version, Version(own_version + 1));
                        for (i, id) in ids.into_iter().enumerate() {
                            acknowledged.push((own.clone(), own_version + 1 + i as u64, id));
                        }
                        own_version = written.last_version.0;
                        last_batch = Some((own.clone(), events, written));
                    }
                    // A shared stream at a version read a moment ago: often a conflict.
                    2 => {
                        let s = &shared[(op % 3) as usize];
                        let seen = store.stream_version(s).await.unwrap();
                        let event = added(op);
                        let id = event.event_id;
                        match store
                            .append(s, ExpectedVersion::Exact(seen), vec![event])
                            .await
                        {
                            Ok(written) => {
                                assert_eq!(written.last_version, seen.next());
                                acknowledged.push((s.clone(), written.last_version.0, id));
                            }
                            Err(StoreError::Conflict { actual, .. }) => assert_ne!(actual, seen),
                            Err(other) => panic!("unexpected error: {other}"),
                        }
                    }
                    // The last acknowledged batch again: a replay with the same outcome.
                    3 => {
                        if let Some((s, events, written)) = &last_batch {
                            let again = store
                                .append(s, ExpectedVersion::Exact(Version(0)), events.clone())
                                .await
                                .unwrap();
                            assert!(again.replayed);
                            assert_eq!(again.first_version, written.first_version);
                            assert_eq!(again.last_position, written.last_position);
                        }
                    }
                    // A stored id on another stream: a duplicate, nothing written.
                    _ => {
                        if let Some((_, events, written)) = &last_batch {
                            let copy = added(1).with_id(events[0].event_id);
                            let s = stream(&format!("dup-{writer}"));
                            match store.append(&s, ExpectedVersion::Any, vec![copy]).await {
                                Err(StoreError::DuplicateEventId {
                                    existing_version, ..
                                }) => assert_eq!(existing_version, written.first_version),
                                other => panic!("expected a duplicate, got {other:?}"),
                            }
                        }
                    }
                }
            }
            acknowledged
        }));
    }
    let mut expected: BTreeMap<(String, u64), Uuid> = BTreeMap::new();
    for task in tasks {
        for (s, version, id) in task.await.unwrap() {
            assert!(
                expected
                    .insert((s.as_str().to_owned(), version), id)
                    .is_none(),
                "{s} v{version} acknowledged twice"
            );
        }
    }

    let mut stored: BTreeMap<(String, u64), Uuid> = BTreeMap::new();
    let mut ids: HashMap<Uuid, usize> = HashMap::new();
    let rows: Vec<(String, i64, Uuid)> = sqlx::query_as(AssertSqlSafe(format!(
        "SELECT stream_id, version, event_id FROM \"{}\".events",
        store.schema().as_str()
    )))
    .fetch_all(store.pool())
    .await
    .unwrap();
    for (s, version, id) in rows {
        stored.insert((s, u64::try_from(version).unwrap()), id);
        *ids.entry(id).or_default() += 1;
    }
    assert!(ids.values().all(|n| *n == 1), "an id is stored twice");
    assert_eq!(
        stored.len(),
        expected.len(),
        "stored events beyond the acknowledged ones"
    );
    assert_eq!(stored, expected);
    // The heads agree with the rows.
    for s in &shared {
        let last = expected
            .keys()
            .filter(|(name, _)| name == s.as_str())
            .map(|(_, v)| *v)
            .max()
            .unwrap_or(0);
        assert_eq!(store.stream_version(s).await.unwrap(), Version(last));
    }
}

/// An append whose caller stops waiting gives its transaction slot back at once: with both
/// slots held by appends blocked on locked heads, the appends queued behind them are written
/// as soon as the blocked callers are cancelled, while the heads are still locked (a slot
/// kept by a cancelled caller would hold them until the lock is released). Nothing is lost:
/// the queued appends are stored once, and the store goes on taking appends.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_cancelled_append_gives_its_transaction_slot_to_the_queue() {
    // Two slots, both held by blocked appends.
    let store = fresh_pg_store_with_group_transactions(10, 2).await;
    let blocked = [stream("slot-a"), stream("slot-b")];
    for s in &blocked {
        store
            .append(s, ExpectedVersion::NoStream, vec![added(1)])
            .await
            .unwrap();
    }
    let lock = lock_heads(&store, &blocked).await;
    let mut holders = Vec::new();
    for s in &blocked {
        let (writer, s) = (store.clone(), s.clone());
        holders.push(tokio::spawn(async move {
            writer
                .append(&s, ExpectedVersion::Exact(Version(1)), vec![added(2)])
                .await
        }));
    }
    wait_for_lock_waiters(&store, 2, LOCK_WAIT).await;
    let queued: Vec<StreamId> = (0..3).map(|i| stream(&format!("slot-q{i}"))).collect();
    let mut waiting = Vec::new();
    for s in &queued {
        let (writer, s) = (store.clone(), s.clone());
        waiting.push(tokio::spawn(async move {
            writer
                .append(&s, ExpectedVersion::NoStream, vec![added(3)])
                .await
        }));
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(
        waiting.iter().all(|w| !w.is_finished()),
        "with both slots busy, the appends wait in the queue"
    );
    for holder in &holders {
        holder.abort();
    }
    for (s, w) in queued.iter().zip(waiting) {
        let appended = tokio::time::timeout(Duration::from_secs(20), w)
            .await
            .unwrap_or_else(|_| panic!("the append to {s} still waits: the slot was not freed"))
            .unwrap()
            .unwrap();
        assert_eq!(appended.last_version, Version(1));
    }
    // Only now are the heads released (the cancelled appends' statements may still commit:
    // a cancelled append may or may not have been written, as always).
    lock.close().await.unwrap();
    for s in &queued {
        assert_eq!(
            transactions(&store, s).await.len(),
            1,
            "{s} holds its event once"
        );
    }
    // The store still takes appends, one at a time and many at once.
    for s in &blocked {
        store
            .append(s, ExpectedVersion::Any, vec![added(4)])
            .await
            .unwrap();
    }
    let mut writers = Vec::new();
    for i in 0..16 {
        let store = store.clone();
        writers.push(tokio::spawn(async move {
            store
                .append(
                    &stream(&format!("slot-after{i}")),
                    ExpectedVersion::NoStream,
                    vec![added(5)],
                )
                .await
        }));
    }
    for w in writers {
        w.await.unwrap().unwrap();
    }
}

/// The shared statement stores each queued event's tracing ids in their columns (migration 10)
/// and the rest of its metadata in `metadata`: read back, every event has the metadata its
/// append carried, also beside an event with none.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_shared_transaction_keeps_each_events_tracing_ids() {
    let store = fresh_pg_store().await;
    let blocked = [stream("ids-blocked-a"), stream("ids-blocked-b")];
    for s in &blocked {
        store
            .append(s, ExpectedVersion::NoStream, vec![added(0)])
            .await
            .unwrap();
    }
    let mut queued = Vec::new();
    let mut expected = Vec::new();
    for n in 0..4u128 {
        let mut event = added(n as u64);
        if n != 2 {
            event.metadata.correlation_id = Some(Uuid::from_u128(100 + n));
            event.metadata.causation_id = Some(Uuid::from_u128(200 + n));
            event
                .metadata
                .insert("n", &(n as u64))
                .expect("a number serializes");
        }
        expected.push((event.event_id, event.metadata.clone()));
        queued.push((
            stream(&format!("ids-{n}")),
            ExpectedVersion::NoStream,
            vec![event],
        ));
    }
    let results = queued_behind_a_lock(&store, &blocked, queued).await;
    let mut shared = Vec::new();
    for result in &results {
        shared.push(result.as_ref().unwrap().first_position);
    }
    for (n, (id, metadata)) in expected.iter().enumerate() {
        let read = store.find_event(*id).await.unwrap().unwrap();
        assert_eq!(&read.metadata, metadata, "event {n}");
    }
    // They did share a transaction (else this tests the one-event statement again).
    let mut ids = Vec::new();
    for n in 0..4 {
        ids.extend(transactions(&store, &stream(&format!("ids-{n}"))).await);
    }
    ids.dedup();
    assert_eq!(ids.len(), 1, "one shared transaction: {ids:?} ({shared:?})");
    let stored_ids: Option<Uuid> = sqlx::query_scalar(AssertSqlSafe(format!(
        "SELECT correlation_id FROM \"{}\".events WHERE event_id = $1",
        store.schema().as_str()
    )))
    .bind(expected[0].0)
    .fetch_one(store.pool())
    .await
    .unwrap();
    assert_eq!(stored_ids, Some(Uuid::from_u128(100)));
}

/// The number of shared transactions in flight is clamped to 1..=16: a store set to 0 (which
/// would queue every append for ever) or to `usize::MAX` takes 32 appends at once, each
/// stored once.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn any_group_commit_setting_takes_concurrent_appends() {
    for transactions in [0, 1, 3, usize::MAX] {
        let store = fresh_pg_store_with_group_transactions(10, transactions).await;
        let appends = (0..32).map(|i| {
            let store = store.clone();
            tokio::spawn(async move {
                store
                    .append(
                        &stream(&format!("setting-{i}")),
                        ExpectedVersion::NoStream,
                        vec![added(i)],
                    )
                    .await
            })
        });
        let outcomes = tokio::time::timeout(
            Duration::from_secs(30),
            futures_util::future::join_all(appends),
        )
        .await
        .unwrap_or_else(|_| panic!("{transactions} in flight: the appends hang"));
        for outcome in outcomes {
            let appended = outcome.unwrap().unwrap();
            assert_eq!(
                appended.last_version,
                Version(1),
                "{transactions} in flight"
            );
        }
        assert_eq!(store.head_position().await.unwrap().0, 32);
    }
}
