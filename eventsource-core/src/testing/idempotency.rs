//! Conformance cases for idempotency keys: every caller of a keyed command gets the one
//! stored outcome, whatever path its call took; a reused key is refused.
//!
//! `LateStore` replays a race deterministically: its first `find_event` lets a competing
//! caller store the same keyed command, then answers "not found" as a lookup that ran just
//! before that write would have.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use uuid::Uuid;

use super::conformance::TestStore;
use super::fixture::{Counter, CounterCommand, CounterError, CounterEvent};
use crate::{
    Checkpoint, CommandFingerprint, CommandMetadata, EventStore, ExecuteError, ExpectedVersion,
    LogFilter, NewEvent, Position, RecordedEvent, Repository, Snapshot, SnapshotStore, StoreError,
    StreamId, Version,
};

fn keyed(key: &str) -> CommandMetadata {
    CommandMetadata::new().idempotency_key(key)
}

/// The competing execution a [`LateStore`] performs during its first lookup.
type Competitor = (String, CounterCommand, CommandMetadata);

/// A store whose first `find_event` lets a competitor write first (see the module docs), and
/// whose append can lose its reply (the events are stored, the caller sees an error).
#[derive(Clone)]
struct LateStore<S> {
    inner: S,
    competitor: Arc<Mutex<Option<Competitor>>>,
    lose_reply: Arc<AtomicBool>,
    /// The next append fails transiently: before writing (`fail_before`) or after (the
    /// reply is lost, `fail_after`).
    fail_before: Arc<AtomicBool>,
    fail_after: Arc<AtomicBool>,
}

impl<S: TestStore> LateStore<S> {
    fn new(inner: S) -> Self {
        LateStore {
            inner,
            competitor: Arc::default(),
            lose_reply: Arc::default(),
            fail_before: Arc::default(),
            fail_after: Arc::default(),
        }
    }

    fn arm(&self, id: &str, command: CounterCommand, metadata: CommandMetadata) {
        *self.competitor.lock().unwrap() = Some((id.to_owned(), command, metadata));
    }
}

impl<S: TestStore> EventStore for LateStore<S> {
    async fn append(
        &self,
        stream: &StreamId,
        expected: ExpectedVersion,
        events: Vec<NewEvent>,
    ) -> Result<crate::Appended, StoreError> {
        let transient = || StoreError::Transient {
            context: format!("appending to stream `{stream}`"),
            source: "connection reset by peer".into(),
        };
        if self.fail_before.swap(false, Ordering::SeqCst) {
            return Err(transient());
        }
        let written = self.inner.append(stream, expected, events).await?;
        if self.fail_after.swap(false, Ordering::SeqCst) {
            return Err(transient());
        }
        if self.lose_reply.swap(false, Ordering::SeqCst) {
            return Err(StoreError::backend(
                format!("appending to stream `{stream}`"),
                "connection reset after the commit",
            ));
        }
        Ok(written)
    }
    async fn read_stream(
        &self,
        stream: &StreamId,
        from: Version,
        max_count: usize,
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        self.inner.read_stream(stream, from, max_count).await
    }
    async fn read_all(
        &self,
        after: Checkpoint,
        max_count: usize,
        filter: &LogFilter,
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        self.inner.read_all(after, max_count, filter).await
    }
    async fn stream_version(&self, stream: &StreamId) -> Result<Version, StoreError> {
        self.inner.stream_version(stream).await
    }
    async fn head_position(&self) -> Result<Position, StoreError> {
        self.inner.head_position().await
    }
    async fn find_event(&self, event_id: Uuid) -> Result<Option<RecordedEvent>, StoreError> {
        let competitor = self.competitor.lock().unwrap().take();
        if let Some((id, command, metadata)) = competitor {
            let done = Repository::<Counter, _>::new(self.inner.clone())
                .execute_with(id, command, metadata)
                .await
                .unwrap();
            assert!(!done.replayed, "the competitor writes first");
            return Ok(None);
        }
        self.inner.find_event(event_id).await
    }
}

impl<S: TestStore> SnapshotStore for LateStore<S> {
    async fn save_snapshot(&self, snapshot: Snapshot) -> Result<(), StoreError> {
        self.inner.save_snapshot(snapshot).await
    }
    async fn load_snapshot(&self, stream: &StreamId) -> Result<Option<Snapshot>, StoreError> {
        self.inner.load_snapshot(stream).await
    }
}

/// The key and the command's fingerprint are kept in the events' metadata, visible in the
/// history and the global log; unkeyed events carry neither.
pub async fn idempotency_key_is_kept_in_the_metadata<S: TestStore>(store: S) {
    let repo = Repository::<Counter, _>::new(store.clone());
    repo.execute_with("x", CounterCommand::Add(5), keyed("req-1"))
        .await
        .unwrap();
    repo.execute("x", CounterCommand::Add(1)).await.unwrap();
    let history = repo.history("x").await.unwrap();
    let first = &history[0].record.metadata;
    assert_eq!(first.idempotency_key.as_deref(), Some("req-1"));
    assert_eq!(
        first.command,
        Some(CommandFingerprint::hashed("Add", &5u64)),
        "the fixture's fingerprint of Add(5)"
    );
    let second = &history[1].record.metadata;
    assert_eq!((&second.idempotency_key, &second.command), (&None, &None));
    let log = store
        .read_all(Checkpoint::START, 10, &LogFilter::all())
        .await
        .unwrap();
    assert_eq!(log[0].metadata.idempotency_key.as_deref(), Some("req-1"));
    assert!(log[0].metadata.command.is_some());
}

/// A repeat reports the first execution as of its append: its events, its version and the
/// state at that version, not the stream's head.
pub async fn idempotent_repeat_reports_the_state_as_of_its_append<S: TestStore>(store: S) {
    let repo = Repository::<Counter, _>::new(store);
    let first = repo
        .execute_with("x", CounterCommand::Add(5), keyed("req-1"))
        .await
        .unwrap();
    assert!(!first.replayed);
    for amount in [1, 2, 3, 4] {
        repo.execute("x", CounterCommand::Add(amount))
            .await
            .unwrap();
    }
    let again = repo
        .execute_with("x", CounterCommand::Add(5), keyed("req-1"))
        .await
        .unwrap();
    assert!(again.replayed);
    assert_eq!(again.events, [CounterEvent::Added { amount: 5 }]);
    assert_eq!((again.version, again.state.value), (Version(1), 5));
    assert_eq!(again.attempts, 0, "answered by the lookup, not decided");
    assert_eq!(repo.load("x").await.unwrap().version, Version(5));
}

/// The same key with another command (another name, or other content) is refused and writes
/// nothing; a fingerprint set on the metadata replaces the aggregate's.
pub async fn reused_idempotency_key_is_refused<S: TestStore>(store: S) {
    let repo = Repository::<Counter, _>::new(store);
    repo.execute("x", CounterCommand::Add(1)).await.unwrap();
    repo.execute_with("x", CounterCommand::Add(5), keyed("req-1"))
        .await
        .unwrap();
    for other in [CounterCommand::Add(6), CounterCommand::Clear] {
        let error = repo
            .execute_with("x", other.clone(), keyed("req-1"))
            .await
            .unwrap_err();
        match &error {
            ExecuteError::IdempotencyKeyReused {
                stream,
                key,
                version,
                stored,
                given,
            } => {
                assert_eq!(stream, &StreamId::new("counter", "x"));
                assert_eq!((key.as_str(), *version), ("req-1", Version(2)));
                assert_eq!(stored, &CommandFingerprint::hashed("Add", &5u64));
                assert!(!stored.matches(given), "{other:?}");
            }
            unexpected => panic!("expected IdempotencyKeyReused for {other:?}, got {unexpected:?}"),
        }
        let message = error.to_string();
        assert!(
            message.contains("req-1") && message.contains("counter-x"),
            "{message}"
        );
    }
    assert_eq!(repo.load("x").await.unwrap().version, Version(2));
    // Compared by name only when the caller says so.
    let by_name = keyed("req-1").command_fingerprint(CommandFingerprint::named("Add"));
    let again = repo
        .execute_with("x", CounterCommand::Add(6), by_name)
        .await
        .unwrap();
    assert!(again.replayed);
    assert_eq!(again.events, [CounterEvent::Added { amount: 5 }]);
    // A hostile key is carried, bounded, into the message.
    let long = "k".repeat(10_000);
    repo.execute_with("y", CounterCommand::Add(1), keyed(&long))
        .await
        .unwrap();
    let error = repo
        .execute_with("y", CounterCommand::Add(2), keyed(&long))
        .await
        .unwrap_err();
    assert!(error.to_string().len() < 2_000, "{error}");
}

/// A transient store failure of an append (before it wrote, or after, with the reply lost) is
/// retried with the same event ids: the command succeeds and its events are stored once.
pub async fn transient_append_failures_are_retried_without_writing_twice<S: TestStore>(store: S) {
    let late = LateStore::new(store.clone());
    let repo = Repository::<Counter, _>::new(late.clone());
    late.fail_before.store(true, Ordering::SeqCst);
    let first = repo.execute("x", CounterCommand::Add(1)).await.unwrap();
    assert_eq!(
        (first.version, first.state.value, first.replayed),
        (Version(1), 1, false)
    );
    late.fail_after.store(true, Ordering::SeqCst);
    let second = repo.execute("x", CounterCommand::Add(5)).await.unwrap();
    assert_eq!(
        (second.version, second.state.value, second.replayed),
        (Version(2), 6, false)
    );
    let stored = store
        .read_stream(&StreamId::new("counter", "x"), Version(1), 10)
        .await
        .unwrap();
    assert_eq!(stored.len(), 2, "each command's events are stored once");
    // With retries off, the transient error reaches the caller.
    let strict = Repository::<Counter, _>::new(late.clone()).retry_transient(0);
    late.fail_before.store(true, Ordering::SeqCst);
    let error = strict
        .execute("x", CounterCommand::Add(1))
        .await
        .unwrap_err();
    assert!(
        matches!(&error, ExecuteError::Store(e) if e.is_transient()),
        "{error}"
    );
}

/// The append committed but its reply was lost: the caller saw a store error. Its retry gets
/// the original outcome.
pub async fn idempotent_retry_after_a_lost_reply_reports_the_first_run<S: TestStore>(store: S) {
    let late = LateStore::new(store);
    let repo = Repository::<Counter, _>::new(late.clone()).with_cache(std::num::NonZeroUsize::MIN);
    repo.execute("x", CounterCommand::Add(1)).await.unwrap();
    late.lose_reply.store(true, Ordering::SeqCst);
    let lost = repo
        .execute_with("x", CounterCommand::Add(5), keyed("req-1"))
        .await
        .unwrap_err();
    assert!(
        matches!(lost, ExecuteError::Store(StoreError::Backend { .. })),
        "{lost}"
    );
    for _ in 0..2 {
        let retry = repo
            .execute_with("x", CounterCommand::Add(5), keyed("req-1"))
            .await
            .unwrap();
        assert!(retry.replayed);
        assert_eq!(retry.events, [CounterEvent::Added { amount: 5 }]);
        assert_eq!((retry.version, retry.state.value), (Version(2), 6));
    }
    let next = repo.execute("x", CounterCommand::Add(1)).await.unwrap();
    assert_eq!((next.version, next.state.value), (Version(3), 7));
}

/// The competitor stored the key after this caller's lookup; this caller's decision, on a
/// state holding that execution, is a rejection: it reports the execution instead.
pub async fn idempotent_repeat_is_not_rejected_by_its_own_execution<S: TestStore>(store: S) {
    let late = LateStore::new(store);
    let repo = Repository::<Counter, _>::new(late.clone());
    repo.execute("x", CounterCommand::Add(Counter::LIMIT - 5))
        .await
        .unwrap();
    late.arm("x", CounterCommand::Add(5), keyed("req-1"));
    let done = repo
        .execute_with("x", CounterCommand::Add(5), keyed("req-1"))
        .await
        .unwrap();
    assert!(done.replayed);
    assert_eq!(done.events, [CounterEvent::Added { amount: 5 }]);
    assert_eq!(
        (done.version, done.state.value),
        (Version(2), Counter::LIMIT)
    );
    // Without the key's execution, the rejection stands (and is not remembered).
    let rejected = repo
        .execute_with("x", CounterCommand::Add(1), keyed("req-2"))
        .await
        .unwrap_err();
    assert!(matches!(
        rejected.rejection(),
        Some(CounterError::OverLimit { .. })
    ));
    assert_eq!(repo.load("x").await.unwrap().version, Version(2));
}

/// The competitor stored the key after this caller's lookup; this caller's decision produced
/// no events: it reports the execution, not a no-op.
pub async fn idempotent_repeat_without_events_reports_the_execution<S: TestStore>(store: S) {
    let late = LateStore::new(store);
    let repo = Repository::<Counter, _>::new(late.clone());
    repo.execute("x", CounterCommand::Add(3)).await.unwrap();
    late.arm("x", CounterCommand::Clear, keyed("clear-1"));
    let done = repo
        .execute_with("x", CounterCommand::Clear, keyed("clear-1"))
        .await
        .unwrap();
    assert!(done.replayed);
    assert_eq!(done.events, [CounterEvent::Cleared]);
    assert_eq!((done.version, done.state.clears), (Version(2), 1));
    // A keyed command without events stores nothing: its repeat decides again.
    let nothing = repo
        .execute_with("x", CounterCommand::Clear, keyed("clear-2"))
        .await
        .unwrap();
    assert!(!nothing.replayed && nothing.events.is_empty());
    let nothing = repo
        .execute_with("x", CounterCommand::Clear, keyed("clear-2"))
        .await
        .unwrap();
    assert!(!nothing.replayed && nothing.events.is_empty());
    assert_eq!(repo.load("x").await.unwrap().version, Version(2));
}

/// A warm cache holds the state before the competitor's write; the store recognises the ids
/// as a retry. The answer is the stored execution, with its deposit applied once.
pub async fn idempotent_repeat_on_a_warm_cache_applies_nothing_twice<S: TestStore>(store: S) {
    let late = LateStore::new(store);
    let repo = Repository::<Counter, _>::new(late.clone())
        .with_cache(std::num::NonZeroUsize::MIN)
        .with_snapshot_policy(crate::SnapshotPolicy::Never);
    repo.execute("x", CounterCommand::Add(1)).await.unwrap();
    assert_eq!(repo.cached(), 1);
    late.arm("x", CounterCommand::Add(5), keyed("req-1"));
    let done = repo
        .execute_with("x", CounterCommand::Add(5), keyed("req-1"))
        .await
        .unwrap();
    assert!(done.replayed);
    assert_eq!((done.version, done.state.value), (Version(2), 6));
    // The next command is decided on the stored state, not a copy with the deposit twice.
    let next = repo.execute("x", CounterCommand::Add(1)).await.unwrap();
    assert_eq!((next.version, next.state.value), (Version(3), 7));
}

/// Concurrent callers: per round, four send one keyed command, four send commands with keys
/// of their own, and only one command fits under the limit. Each caller's answer is checked,
/// and every returned state is the refold of the stream at the returned version.
pub async fn concurrent_idempotent_callers_share_one_outcome<S: TestStore>(store: S) {
    const ROUNDS: usize = 12;
    let repo = Repository::<Counter, _>::new(store.clone());
    for round in 0..ROUNDS {
        let id = format!("r{round}");
        repo.execute(&id, CounterCommand::Add(Counter::LIMIT - 10))
            .await
            .unwrap();
        let mut tasks = Vec::new();
        for task in 0..8 {
            let store = store.clone();
            let id = id.clone();
            tasks.push(tokio::spawn(async move {
                let repo = Repository::<Counter, _>::new(store).retry_on_conflict(20);
                let key = if task < 4 {
                    "shared".to_owned()
                } else {
                    format!("own-{task}")
                };
                let result = repo
                    .execute_with(&id, CounterCommand::Add(10), keyed(&key))
                    .await;
                (task < 4, result)
            }));
        }
        let mut shared = Vec::new();
        let mut written = 0;
        for task in tasks {
            let (is_shared, result) = task.await.unwrap();
            match result {
                Ok(done) => {
                    let refold = repo.load_at(&id, done.version).await.unwrap();
                    assert_eq!(
                        done.state, refold.state,
                        "round {round}: state at the version"
                    );
                    assert_eq!(done.events, [CounterEvent::Added { amount: 10 }]);
                    assert_eq!(done.version, Version(2), "round {round}");
                    if !done.replayed {
                        written += 1;
                    }
                    assert!(is_shared || !done.replayed, "an own key is never replayed");
                    if is_shared {
                        shared.push(Some((done.version, done.state.value)));
                    }
                }
                Err(ExecuteError::Rejected { version, .. }) => {
                    assert_eq!(
                        version,
                        Version(2),
                        "round {round}: rejected after the winner"
                    );
                    if is_shared {
                        shared.push(None);
                    }
                }
                Err(other) => panic!("round {round}: unexpected {other}"),
            }
        }
        assert_eq!(written, 1, "round {round}: exactly one command was written");
        // The shared key's callers agree: all rejected (another key won), or all the same run.
        assert!(
            shared.iter().all(|answer| answer == &shared[0]),
            "round {round}: {shared:?}"
        );
        let loaded = repo.load(&id).await.unwrap();
        assert_eq!(
            (loaded.version, loaded.state.value),
            (Version(2), Counter::LIMIT)
        );
    }
}
