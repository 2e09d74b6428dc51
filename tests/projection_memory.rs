//! The projection runner on the in-memory store.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use eventsource::{
    Checkpoint, DecodeFailure, Envelope, Event, EventStore, ExpectedVersion, HandlerError,
    LogFilter, MemoryStore, Metadata, NewEvent, Project, Projection, ProjectionError,
    ProjectionRunner, ProjectionStore, RecordedEvent, Reset, RunnerOptions, StreamId, Version,
};
use serde::Deserialize;
use serde_json::json;

#[derive(Debug, Deserialize)]
struct Deposited {
    amount: i64,
}
impl Event for Deposited {
    const NAME: &'static str = "account.deposited";
    const VERSION: u32 = 1;
    fn decode_version(version: u32, payload: &serde_json::Value) -> Result<Self, DecodeFailure> {
        DecodeFailure::parse(version, payload)
    }
}

#[derive(Debug, Deserialize)]
struct Shipped {
    cost: i64,
}
impl Event for Shipped {
    const NAME: &'static str = "order.shipped";
    const VERSION: u32 = 1;
    fn decode_version(version: u32, payload: &serde_json::Value) -> Result<Self, DecodeFailure> {
        DecodeFailure::parse(version, payload)
    }
}

#[derive(Debug, thiserror::Error)]
#[error("refusing amount {0}")]
struct Refused(i64);

/// Sums per stream across two aggregates; refuses the amount `poison` while it is set.
#[derive(Default, Clone)]
struct Totals {
    sums: Arc<Mutex<BTreeMap<String, i64>>>,
    applied: Arc<Mutex<Vec<u64>>>,
    poison: Arc<Mutex<Option<i64>>>,
}

impl Totals {
    fn add(&self, at: &RecordedEvent, amount: i64) -> Result<(), Refused> {
        if *self.poison.lock().unwrap() == Some(amount) {
            return Err(Refused(amount));
        }
        *self
            .sums
            .lock()
            .unwrap()
            .entry(at.stream_id.to_string())
            .or_default() += amount;
        self.applied.lock().unwrap().push(at.position.0);
        Ok(())
    }
    fn sums(&self) -> BTreeMap<String, i64> {
        self.sums.lock().unwrap().clone()
    }
}

impl Projection for Totals {
    const NAME: &'static str = "totals";
    type Handles = (Deposited, Shipped);
    type Error = Refused;
}
impl Project<Deposited> for Totals {
    async fn project(
        &mut self,
        e: Deposited,
        at: &RecordedEvent,
        _: &mut (),
    ) -> Result<(), Refused> {
        self.add(at, e.amount)
    }
}
impl Project<Shipped> for Totals {
    async fn project(&mut self, e: Shipped, at: &RecordedEvent, _: &mut ()) -> Result<(), Refused> {
        self.add(at, -e.cost)
    }
}
impl Reset for Totals {
    async fn reset(&mut self, _: &mut ()) -> Result<(), Refused> {
        self.sums.lock().unwrap().clear();
        self.applied.lock().unwrap().clear();
        Ok(())
    }
}

fn fast() -> RunnerOptions {
    RunnerOptions {
        batch_size: 4,
        max_retries: 2,
        backoff: Duration::from_millis(1),
        poll_interval: Duration::from_millis(20),
        ..RunnerOptions::default()
    }
}

async fn deposit(store: &MemoryStore, id: &str, amount: i64) {
    let event = NewEvent::new("account.deposited", 1, json!({ "amount": amount }));
    store
        .append(
            &StreamId::new("account", id),
            ExpectedVersion::Any,
            vec![event],
        )
        .await
        .unwrap();
}

async fn ship(store: &MemoryStore, id: &str, cost: i64) {
    let event = NewEvent::new("order.shipped", 1, json!({ "cost": cost }));
    store
        .append(
            &StreamId::new("order", id),
            ExpectedVersion::Any,
            vec![event],
        )
        .await
        .unwrap();
}

async fn noise(store: &MemoryStore) {
    let event = NewEvent::new("account.renamed", 1, json!({ "name": "x" }));
    store
        .append(
            &StreamId::new("account", "a"),
            ExpectedVersion::Any,
            vec![event],
        )
        .await
        .unwrap();
}

#[tokio::test]
async fn catch_up_dispatches_events_of_two_aggregates_once() {
    let store = MemoryStore::new();
    for i in 1..=10 {
        deposit(&store, "a", i).await;
        noise(&store).await;
        ship(&store, "o", 1).await;
    }
    let totals = Totals::default();
    let mut runner = ProjectionRunner::new(totals.clone(), store.clone()).with_options(fast());
    let mut reports = Vec::new();
    let done = runner.catch_up_with(|p| reports.push(p)).await.unwrap();
    assert_eq!(
        done.applied, 20,
        "the 10 renames are not the projection's events"
    );
    assert_eq!(totals.sums()["account-a"], 55);
    assert_eq!(totals.sums()["order-o"], -10);
    assert_eq!(reports.last().unwrap().done, 20);
    assert!(reports.windows(2).all(|w| w[0].done < w[1].done));
    // Nothing new: a second catch-up applies nothing.
    assert_eq!(runner.catch_up().await.unwrap().applied, 0);
    let status = runner.status().await.unwrap();
    assert_eq!(status.checkpoint.unwrap().position().0, 30);
    assert_eq!((status.head.0, status.lag), (30, 0));
    deposit(&store, "b", 5).await;
    assert_eq!(runner.status().await.unwrap().lag, 1);
}

#[tokio::test]
async fn poison_event_stops_before_it_and_resumes_after_the_fix() {
    let store = MemoryStore::new();
    for amount in [1, 2, 3, 13, 4, 5] {
        deposit(&store, "a", amount).await;
    }
    let totals = Totals::default();
    *totals.poison.lock().unwrap() = Some(13);
    let mut runner = ProjectionRunner::new(totals.clone(), store.clone()).with_options(fast());
    let error = runner.catch_up().await.unwrap_err();
    match &error {
        ProjectionError::Failed {
            projection,
            name,
            stream,
            version,
            position,
            attempts,
            source,
        } => {
            assert_eq!(*projection, "totals");
            assert_eq!(name, "account.deposited");
            assert_eq!(stream.as_str(), "account-a");
            assert_eq!((*version, position.0, *attempts), (Version(4), 4, 3));
            assert!(matches!(source, HandlerError::Handler(Refused(13))));
        }
        other => panic!("expected Failed, got {other:?}"),
    }
    let message = error.to_string();
    assert!(
        message.contains("`totals`")
            && message.contains("account-a")
            && message.contains("position 4"),
        "{message}"
    );
    let checkpoint = store.load_checkpoint("totals").await.unwrap().unwrap();
    assert_eq!(
        checkpoint.position().0,
        3,
        "checkpoint just before the poison event"
    );
    assert_eq!(totals.sums()["account-a"], 6);

    *totals.poison.lock().unwrap() = None;
    let done = runner.catch_up().await.unwrap();
    assert_eq!(done.applied, 3);
    assert_eq!(totals.sums()["account-a"], 28);
    assert_eq!(
        *totals.applied.lock().unwrap(),
        [1, 2, 3, 4, 5, 6],
        "each event once"
    );
}

#[tokio::test]
async fn undecodable_event_is_named() {
    let store = MemoryStore::new();
    deposit(&store, "a", 1).await;
    let bad = NewEvent::new("account.deposited", 1, json!({ "amount": "lots" }));
    store
        .append(
            &StreamId::new("account", "a"),
            ExpectedVersion::Any,
            vec![bad],
        )
        .await
        .unwrap();
    let mut runner = ProjectionRunner::new(Totals::default(), store.clone()).with_options(fast());
    match runner.catch_up().await.unwrap_err() {
        ProjectionError::Failed {
            version,
            source: HandlerError::Decode(_),
            ..
        } => assert_eq!(version, Version(2)),
        other => panic!("expected a decode failure, got {other:?}"),
    }
}

#[tokio::test]
async fn rebuild_matches_incremental_run() {
    let store = MemoryStore::new();
    let totals = Totals::default();
    let mut runner = ProjectionRunner::new(totals.clone(), store.clone()).with_options(fast());
    for round in 0..5 {
        for i in 0..7 {
            deposit(&store, &format!("s{}", i % 3), round * 10 + i).await;
            ship(&store, "o", i).await;
        }
        runner.catch_up().await.unwrap();
    }
    let incremental = totals.sums();
    let mut reports = Vec::new();
    let rebuilt = runner.rebuild(|p| reports.push(p)).await.unwrap();
    assert_eq!(rebuilt.applied, 70);
    assert_eq!(totals.sums(), incremental);
    let last = reports.last().unwrap();
    assert_eq!((last.done, last.total), (70, 70));
}

#[tokio::test]
async fn live_run_follows_new_events_and_shuts_down() {
    let store = MemoryStore::new();
    deposit(&store, "a", 1).await;
    let totals = Totals::default();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let mut runner =
        ProjectionRunner::new(totals.clone(), store.clone()).with_options(RunnerOptions {
            poll_interval: Duration::from_secs(30),
            ..fast()
        });
    let task = tokio::spawn(async move { runner.run(async { stopped.await.unwrap_or(()) }).await });
    for amount in 2..=10 {
        deposit(&store, "a", amount).await;
    }
    // The wake-up (not the 30 s poll) brings the runner to the head.
    tokio::time::timeout(Duration::from_secs(5), async {
        while totals.sums().get("account-a") != Some(&55) {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
    .expect("the live runner did not catch up within 5 s");
    stop.send(()).unwrap();
    task.await.unwrap().unwrap();
}

#[tokio::test]
async fn two_runners_of_one_projection_never_double_apply() {
    let store = MemoryStore::new();
    for i in 0..200 {
        deposit(&store, &format!("s{}", i % 7), 1).await;
    }
    let totals = Totals::default();
    let mut tasks = Vec::new();
    for _ in 0..2 {
        let mut runner = ProjectionRunner::new(totals.clone(), store.clone()).with_options(fast());
        tasks.push(tokio::spawn(async move {
            runner.catch_up().await.unwrap().applied
        }));
    }
    let mut applied = 0;
    for task in tasks {
        applied += task.await.unwrap();
    }
    assert_eq!(applied, 200);
    let positions = totals.applied.lock().unwrap().clone();
    assert_eq!(positions, (1..=200).collect::<Vec<_>>());
}

#[tokio::test]
async fn lag_and_progress_count_only_the_projections_events() {
    let store = MemoryStore::new();
    for i in 1..=6 {
        deposit(&store, "a", i).await;
    }
    // The newest events of the log are not the projection's.
    noise(&store).await;
    noise(&store).await;
    let totals = Totals::default();
    let mut runner = ProjectionRunner::new(totals.clone(), store.clone()).with_options(fast());
    let before = runner.status().await.unwrap();
    assert_eq!(before.lag, 6, "the renames are not counted");
    let mut reports = Vec::new();
    runner.catch_up_with(|p| reports.push(p)).await.unwrap();
    let last = reports.last().unwrap();
    assert_eq!(
        (last.done, last.total),
        (6, 6),
        "progress reaches its total"
    );
    assert!(reports.iter().all(|p| p.total == 6), "{reports:?}");
    let after = runner.status().await.unwrap();
    assert_eq!(after.lag, 0, "caught up although the head is a rename");
    assert!(after.head.0 > after.checkpoint.unwrap().position().0);
    // Exactly one page: the run ends at its total too.
    for i in 1..=4 {
        deposit(&store, "b", i).await;
    }
    let mut reports = Vec::new();
    runner.catch_up_with(|p| reports.push(p)).await.unwrap();
    let last = reports.last().unwrap();
    assert_eq!((last.done, last.total), (4, 4), "{reports:?}");
}

#[tokio::test]
async fn a_requested_reset_is_never_replayed_on_top_of_the_read_model() {
    let store = MemoryStore::new();
    for i in 1..=5 {
        deposit(&store, "a", i).await;
    }
    let totals = Totals::default();
    let mut runner = ProjectionRunner::new(totals.clone(), store.clone()).with_options(fast());
    runner.catch_up().await.unwrap();
    assert_eq!(totals.sums()["account-a"], 15);

    assert!(store.request_reset(Totals::NAME).await.unwrap());
    assert!(!store.request_reset("never-ran").await.unwrap());
    let status = runner.status().await.unwrap();
    assert!(status.reset_requested);
    assert_eq!(status.lag, 5, "a reset projection has everything to apply");
    // A runner that cannot rebuild refuses, before applying anything.
    deposit(&store, "a", 100).await;
    let refused = runner.catch_up().await.unwrap_err();
    assert!(
        matches!(
            refused,
            ProjectionError::ResetRequested {
                projection: "totals"
            }
        ),
        "{refused}"
    );
    assert!(refused.to_string().contains("rebuild"), "{refused}");
    assert_eq!(totals.sums()["account-a"], 15, "nothing applied on top");

    // One that can rebuilds: reset hook, then the whole log.
    let mut runner = ProjectionRunner::new(totals.clone(), store.clone())
        .with_options(fast())
        .rebuild_on_reset();
    let done = runner.catch_up().await.unwrap();
    assert_eq!(done.applied, 6);
    assert_eq!(totals.sums()["account-a"], 115);
    assert!(!runner.status().await.unwrap().reset_requested);
    // And the next start just catches up.
    assert_eq!(runner.catch_up().await.unwrap().applied, 0);
    assert_eq!(totals.sums()["account-a"], 115);
}

#[tokio::test]
async fn a_reset_asked_for_during_a_live_run_rebuilds_it() {
    let store = MemoryStore::new();
    for i in 1..=3 {
        deposit(&store, "a", i).await;
    }
    let totals = Totals::default();
    let mut runner = ProjectionRunner::new(totals.clone(), store.clone())
        .with_options(fast())
        .rebuild_on_reset();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let live = tokio::spawn(async move { runner.run(async { stopped.await.unwrap_or(()) }).await });
    while totals.sums().get("account-a") != Some(&6) {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert!(store.request_reset(Totals::NAME).await.unwrap());
    deposit(&store, "a", 10).await;
    while totals.sums().get("account-a") != Some(&16) {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    stop.send(()).unwrap();
    live.await.unwrap().unwrap();
    assert_eq!(totals.sums()["account-a"], 16, "rebuilt, not doubled");
    assert_eq!(totals.applied.lock().unwrap().len(), 4);
}

/// Buffers amounts and writes them in `flush`, counting the flushes.
#[derive(Default, Clone)]
struct Paged {
    buffer: Vec<i64>,
    written: Arc<Mutex<Vec<Vec<i64>>>>,
}

impl Projection for Paged {
    const NAME: &'static str = "paged";
    type Handles = eventsource::Batched<(Deposited,)>;
    type Error = Refused;
}
impl Project<Deposited> for Paged {
    async fn project(
        &mut self,
        e: Deposited,
        _: &RecordedEvent,
        _: &mut (),
    ) -> Result<(), Refused> {
        self.buffer.push(e.amount);
        Ok(())
    }
}
impl eventsource::Flush for Paged {
    async fn flush(&mut self, _: &mut ()) -> Result<(), Refused> {
        let page = std::mem::take(&mut self.buffer);
        self.written.lock().unwrap().push(page);
        Ok(())
    }
}

#[tokio::test]
async fn a_batched_projection_is_flushed_before_each_commit() {
    let store = MemoryStore::new();
    for i in 1..=5 {
        deposit(&store, "a", i).await;
    }
    let paged = Paged::default();
    let mut runner = ProjectionRunner::new(paged.clone(), store.clone()).with_options(fast());
    assert_eq!(runner.catch_up().await.unwrap().applied, 5);
    // The in-memory store commits every event on its own, so every page holds one event.
    let written = paged.written.lock().unwrap().clone();
    assert_eq!(written, vec![vec![1], vec![2], vec![3], vec![4], vec![5]]);
    assert!(runner.projection().buffer.is_empty());
}

#[tokio::test]
async fn a_parking_runner_goes_on_and_applies_a_parked_event_when_retried() {
    let store = MemoryStore::new();
    for amount in [1, 2, 3, 4, 5] {
        deposit(&store, "a", amount).await;
    }
    let totals = Totals::default();
    *totals.poison.lock().unwrap() = Some(3);
    let mut runner =
        ProjectionRunner::new(totals.clone(), store.clone()).with_options(RunnerOptions {
            failure_policy: eventsource::FailurePolicy::Park,
            ..fast()
        });
    let done = runner.catch_up().await.unwrap();
    assert_eq!(totals.sums()["account-a"], 12, "everything but the poison");
    assert_eq!(done.applied, 5, "the parked event counts as handled");
    let status = runner.status().await.unwrap();
    assert_eq!(status.lag, 0);

    let parked = store.parked(Some(Totals::NAME)).await.unwrap();
    assert_eq!(parked.len(), 1);
    let event = &parked[0];
    assert_eq!(event.record.version, Version(3));
    assert_eq!(event.attempts, 3, "the first try and two retries");
    assert!(event.error.contains("refusing amount 3"), "{}", event.error);
    assert!(!event.retry_requested);
    assert!(store.parked(Some("other")).await.unwrap().is_empty());

    // Retried while still failing: parked again, with one more attempt.
    let position = eventsource::ParkedSelection::At(event.record.position);
    assert_eq!(store.retry_parked(Totals::NAME, position).await.unwrap(), 1);
    runner.catch_up().await.unwrap();
    let again = store.parked(None).await.unwrap();
    assert_eq!((again.len(), again[0].attempts), (1, 4));
    assert!(!again[0].retry_requested);

    // Fixed, then retried: applied once, and no longer parked.
    *totals.poison.lock().unwrap() = None;
    store.retry_parked(Totals::NAME, position).await.unwrap();
    runner.catch_up().await.unwrap();
    assert_eq!(totals.sums()["account-a"], 15);
    assert!(store.parked(None).await.unwrap().is_empty());
    runner.catch_up().await.unwrap();
    assert_eq!(totals.sums()["account-a"], 15, "applied once");

    // Discarded: never applied.
    *totals.poison.lock().unwrap() = Some(6);
    deposit(&store, "a", 6).await;
    runner.catch_up().await.unwrap();
    let all = eventsource::ParkedSelection::All;
    assert_eq!(store.discard_parked(Totals::NAME, all).await.unwrap(), 1);
    assert_eq!(store.retry_parked(Totals::NAME, all).await.unwrap(), 0);
    *totals.poison.lock().unwrap() = None;
    runner.catch_up().await.unwrap();
    assert_eq!(totals.sums()["account-a"], 15);
}

#[tokio::test]
async fn the_default_policy_still_stops_at_a_poison_event() {
    let store = MemoryStore::new();
    for amount in [1, 2, 3] {
        deposit(&store, "a", amount).await;
    }
    let totals = Totals::default();
    *totals.poison.lock().unwrap() = Some(2);
    let mut runner = ProjectionRunner::new(totals.clone(), store.clone()).with_options(fast());
    let error = runner.catch_up().await.unwrap_err();
    assert!(matches!(error, ProjectionError::Failed { .. }), "{error}");
    assert!(store.parked(None).await.unwrap().is_empty());
}

/// Collects the records its handler sees, reading the lean envelope.
#[derive(Clone, Default)]
struct LeanSeen {
    records: Arc<Mutex<Vec<RecordedEvent>>>,
}

impl Projection for LeanSeen {
    const NAME: &'static str = "lean_seen";
    type Handles = (Deposited,);
    type Error = Refused;
    const ENVELOPE: Envelope = Envelope::Lean;
}

impl Project<Deposited> for LeanSeen {
    async fn project(
        &mut self,
        _: Deposited,
        at: &RecordedEvent,
        _: &mut (),
    ) -> Result<(), Refused> {
        self.records.lock().unwrap().push(at.clone());
        Ok(())
    }
}

/// A lean projection sees the same records on the in-memory store as on PostgreSQL: the
/// full ones less `event_id`, `metadata` and `recorded_at` (so a handler that reads them by
/// mistake fails its tests here, not in production).
#[tokio::test]
async fn a_lean_projection_sees_the_lean_envelope_on_the_memory_store_too() {
    let store = MemoryStore::new();
    for n in 0..5 {
        let metadata = Metadata {
            correlation_id: Some(uuid::Uuid::now_v7()),
            ..Metadata::default()
        };
        let event =
            NewEvent::new("account.deposited", 1, json!({ "amount": n })).with_metadata(metadata);
        store
            .append(
                &StreamId::new("account", "a"),
                ExpectedVersion::Any,
                vec![event],
            )
            .await
            .unwrap();
    }
    let seen = LeanSeen::default();
    let mut runner = ProjectionRunner::new(seen.clone(), store.clone());
    assert_eq!(runner.catch_up().await.unwrap().applied, 5);
    let full = store
        .read_all(Checkpoint::START, 100, &LogFilter::all())
        .await
        .unwrap();
    assert!(
        full.iter()
            .all(|e| e.metadata.correlation_id.is_some() && !e.event_id.is_nil())
    );
    let lean: Vec<RecordedEvent> = full.into_iter().map(|e| e.within(Envelope::Lean)).collect();
    assert_eq!(*seen.records.lock().unwrap(), lean);
    assert!(
        lean.iter()
            .all(|e| e.event_id.is_nil() && e.metadata == Metadata::default())
    );
}

/// A batch size of 0 is read as 1: the runner applies every event (it used to read empty
/// pages and report itself caught up, having applied nothing).
#[tokio::test]
async fn a_batch_size_of_zero_applies_everything_one_event_at_a_time() {
    let store = MemoryStore::new();
    for n in 0..3 {
        store
            .append(
                &StreamId::new("account", "z"),
                ExpectedVersion::Any,
                vec![NewEvent::new(
                    "account.deposited",
                    1,
                    json!({ "amount": n }),
                )],
            )
            .await
            .unwrap();
    }
    let seen = LeanSeen::default();
    let mut runner = ProjectionRunner::new(seen.clone(), store).with_options(RunnerOptions {
        batch_size: 0,
        ..RunnerOptions::default()
    });
    assert_eq!(runner.catch_up().await.unwrap().applied, 3);
    assert_eq!(seen.records.lock().unwrap().len(), 3);
    assert_eq!(runner.status().await.unwrap().lag, 0);
}

/// Refuses the amount 2; reads the lean envelope.
struct LeanRefusing;

impl Projection for LeanRefusing {
    const NAME: &'static str = "lean_refusing";
    type Handles = (Deposited,);
    type Error = Refused;
    const ENVELOPE: Envelope = Envelope::Lean;
}

impl Project<Deposited> for LeanRefusing {
    async fn project(
        &mut self,
        event: Deposited,
        _: &RecordedEvent,
        _: &mut (),
    ) -> Result<(), Refused> {
        if event.amount == 2 {
            return Err(Refused(2));
        }
        Ok(())
    }
}

/// A lean runner has the failing event without its id, metadata and time in hand; the event
/// it parks is the stored one, as on PostgreSQL.
#[tokio::test]
async fn a_lean_runner_parks_the_stored_event() {
    let store = MemoryStore::new();
    let s = StreamId::new("account", "lean-park");
    let events = (1..=3).map(|n| NewEvent::new("account.deposited", 1, json!({ "amount": n })));
    store
        .append(&s, ExpectedVersion::NoStream, events.collect())
        .await
        .unwrap();
    let poison = store.read_stream(&s, Version(2), 1).await.unwrap();
    let mut runner =
        ProjectionRunner::new(LeanRefusing, store.clone()).with_options(RunnerOptions {
            max_retries: 0,
            failure_policy: eventsource::FailurePolicy::Park,
            ..RunnerOptions::default()
        });
    assert_eq!(runner.catch_up().await.unwrap().applied, 3);
    let parked = store.parked(Some("lean_refusing")).await.unwrap();
    assert_eq!(parked.len(), 1);
    assert_eq!(parked[0].record, poison[0]);
}
