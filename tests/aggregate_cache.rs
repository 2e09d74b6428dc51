//! The opt-in aggregate cache: warm commands skip the load, stale entries are reloaded, the
//! cache is bounded.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::num::NonZeroUsize;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use eventsource::testing::fixture::{Counter, CounterCommand, CounterEvent};
use eventsource::{
    AppendError, Appended, Checkpoint, EventStore, ExpectedVersion, LogFilter, MemoryStore,
    NewEvent, Position, RecordedEvent, Repository, Snapshot, SnapshotStore, StoreError, StreamId,
    Version,
};
use uuid::Uuid;

/// A MemoryStore that counts stream reads (the load query).
#[derive(Clone, Default)]
struct Counting {
    inner: MemoryStore,
    stream_reads: Arc<AtomicUsize>,
}

impl Counting {
    fn reads(&self) -> usize {
        self.stream_reads.load(Ordering::SeqCst)
    }
}

impl EventStore for Counting {
    async fn append(
        &self,
        s: &StreamId,
        e: ExpectedVersion,
        ev: Vec<NewEvent>,
    ) -> Result<Appended, StoreError> {
        self.inner.append(s, e, ev).await
    }
    async fn read_stream(
        &self,
        s: &StreamId,
        from: Version,
        n: usize,
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        self.stream_reads.fetch_add(1, Ordering::SeqCst);
        self.inner.read_stream(s, from, n).await
    }
    async fn read_all(
        &self,
        after: Checkpoint,
        n: usize,
        f: &LogFilter,
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        self.inner.read_all(after, n, f).await
    }
    async fn stream_version(&self, s: &StreamId) -> Result<Version, StoreError> {
        self.inner.stream_version(s).await
    }
    async fn head_position(&self) -> Result<Position, StoreError> {
        self.inner.head_position().await
    }
    async fn find_event(&self, id: Uuid) -> Result<Option<RecordedEvent>, StoreError> {
        self.inner.find_event(id).await
    }
}

impl SnapshotStore for Counting {
    async fn save_snapshot(&self, s: Snapshot) -> Result<(), StoreError> {
        self.inner.save_snapshot(s).await
    }
    async fn load_snapshot(&self, s: &StreamId) -> Result<Option<Snapshot>, StoreError> {
        self.inner.load_snapshot(s).await
    }
}

fn cap(n: usize) -> NonZeroUsize {
    NonZeroUsize::new(n).unwrap()
}

#[tokio::test]
async fn a_warm_command_does_not_read_the_stream() {
    let store = Counting::default();
    let repo = Repository::<Counter, _>::new(store.clone()).with_cache(cap(10));
    repo.execute("x", CounterCommand::Add(1)).await.unwrap();
    let after_first = store.reads();
    assert!(after_first >= 1, "the first command loads");
    for amount in 2..=5 {
        let done = repo
            .execute("x", CounterCommand::Add(amount))
            .await
            .unwrap();
        assert_eq!(done.attempts, 1);
    }
    assert_eq!(
        store.reads(),
        after_first,
        "warm commands skip the load query"
    );
    let done = repo.execute("x", CounterCommand::Add(0)).await.unwrap();
    assert_eq!((done.state.value, done.version), (15, Version(6)));
    // A rejection leaves the (still valid) entry in place.
    assert!(
        repo.execute("x", CounterCommand::Add(Counter::LIMIT))
            .await
            .is_err()
    );
    repo.execute("x", CounterCommand::Add(1)).await.unwrap();
    assert_eq!(store.reads(), after_first);
    assert_eq!(repo.load("x").await.unwrap().state.value, 16);
}

#[tokio::test]
async fn a_stale_entry_is_reloaded_without_using_up_retries() {
    let store = Counting::default();
    let cached = Repository::<Counter, _>::new(store.clone()).with_cache(cap(10));
    let other_process = Repository::<Counter, _>::new(store.clone());
    cached.execute("x", CounterCommand::Add(1)).await.unwrap();
    other_process
        .execute("x", CounterCommand::Add(10))
        .await
        .unwrap();
    // The cached copy is at version 1, the stream at 2: the append conflicts, the entry is
    // dropped, the command reloads and lands. No retries were configured.
    let done = cached.execute("x", CounterCommand::Add(100)).await.unwrap();
    assert_eq!(
        (done.state.value, done.version, done.attempts),
        (111, Version(3), 1)
    );
    assert_eq!(cached.load("x").await.unwrap().state.value, 111);
}

#[tokio::test]
async fn a_typed_append_through_the_repository_drops_the_cached_copy() {
    let store = Counting::default();
    let repo = Repository::<Counter, _>::new(store.clone()).with_cache(cap(10));
    repo.execute("x", CounterCommand::Add(1)).await.unwrap();
    assert_eq!(repo.cached(), 1);
    let events = [CounterEvent::Added { amount: 10 }, CounterEvent::Cleared];
    let appended = repo
        .append("x", ExpectedVersion::Exact(Version(1)), events)
        .await
        .unwrap();
    assert_eq!(appended.last_version, Version(3));
    assert_eq!(repo.cached(), 0, "the cached copy is behind the stream now");
    // The next command loads afresh (no conflict to discover first).
    let reads = store.reads();
    let done = repo.execute("x", CounterCommand::Add(5)).await.unwrap();
    assert_eq!(
        (done.state.value, done.version, done.attempts),
        (5, Version(4), 1)
    );
    assert!(store.reads() > reads);
    // A failed append leaves other entries alone and writes nothing.
    let stale = repo
        .append(
            "x",
            ExpectedVersion::Exact(Version(1)),
            [CounterEvent::Cleared],
        )
        .await;
    assert!(matches!(
        stale,
        Err(AppendError::Conflict {
            actual: Version(4),
            ..
        })
    ));
    assert_eq!(repo.load("x").await.unwrap().version, Version(4));
}

#[tokio::test]
async fn the_cache_is_bounded_least_recently_used_first() {
    let store = Counting::default();
    let repo = Repository::<Counter, _>::new(store.clone()).with_cache(cap(2));
    for id in ["a", "b", "c"] {
        repo.execute(id, CounterCommand::Add(1)).await.unwrap();
    }
    assert_eq!(repo.cached(), 2);
    let before = store.reads();
    repo.execute("c", CounterCommand::Add(1)).await.unwrap();
    repo.execute("b", CounterCommand::Add(1)).await.unwrap();
    assert_eq!(store.reads(), before, "b and c are warm");
    repo.execute("a", CounterCommand::Add(1)).await.unwrap();
    assert!(store.reads() > before, "a was evicted and is loaded again");
    assert_eq!(repo.load("a").await.unwrap().state.value, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_commands_through_one_cached_repository_lose_nothing() {
    let store = Counting::default();
    let repo = Arc::new(
        Repository::<Counter, _>::new(store.clone())
            .with_cache(cap(4))
            .retry_on_conflict(100),
    );
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let repo = Arc::clone(&repo);
        tasks.push(tokio::spawn(async move {
            for _ in 0..25 {
                repo.execute("hot", CounterCommand::Add(1)).await.unwrap();
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    let loaded = repo.load("hot").await.unwrap();
    assert_eq!((loaded.state.value, loaded.version), (200, Version(200)));
}

/// A cache as large as `NonZeroUsize::MAX` ("keep everything") is allocated as it fills, not
/// up front (sizing its map for that many entries panicked with a capacity overflow).
#[tokio::test]
async fn a_cache_of_any_size_is_allocated_as_it_fills() {
    let repo = Repository::<Counter, _>::new(MemoryStore::new()).with_cache(NonZeroUsize::MAX);
    for n in 0..3 {
        let done = repo
            .execute(format!("c{n}"), CounterCommand::Add(2))
            .await
            .unwrap();
        assert_eq!(done.state.value, 2);
    }
    let again = repo.execute("c0", CounterCommand::Add(3)).await.unwrap();
    assert_eq!((again.state.value, again.version), (5, Version(2)));
}
