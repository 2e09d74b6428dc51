//! `ProjectionRunner::run` against a store that fails on purpose: transient failures are ridden
//! out (up to the configured cap), permanent ones stop the runner with the store's error.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use eventsource::{
    Appended, Checkpoint, DecodeFailure, Event, EventStore, ExpectedVersion, LogFilter,
    MemoryStore, NewEvent, ParkedEvent, ParkedSelection, Position, Project, Projection,
    ProjectionError, ProjectionRunner, ProjectionStore, RecordedEvent, RunnerOptions, StoreError,
    StreamId, Version,
};
use serde::Deserialize;
use serde_json::json;

#[derive(Debug, Deserialize)]
struct Ticked {
    n: i64,
}
impl Event for Ticked {
    const NAME: &'static str = "clock.ticked";
    const VERSION: u32 = 1;
    fn decode_version(version: u32, payload: &serde_json::Value) -> Result<Self, DecodeFailure> {
        DecodeFailure::parse(version, payload)
    }
}

#[derive(Default, Clone)]
struct Sum(Arc<std::sync::Mutex<i64>>);

impl Projection for Sum {
    const NAME: &'static str = "sum";
    type Handles = (Ticked,);
    type Error = std::convert::Infallible;
}
impl Project<Ticked> for Sum {
    async fn project(
        &mut self,
        e: Ticked,
        _: &RecordedEvent,
        _: &mut (),
    ) -> Result<(), std::convert::Infallible> {
        *self.0.lock().unwrap() += e.n;
        Ok(())
    }
}

/// A memory store whose global reads fail while `failures` is above zero: transiently (a lost
/// connection) or, with `permanent`, for good (a permission problem).
#[derive(Clone)]
struct Flaky {
    inner: MemoryStore,
    failures: Arc<AtomicU32>,
    permanent: bool,
    /// Global reads asked for, failed or not.
    reads: Arc<AtomicU32>,
}

impl Flaky {
    fn failure(&self) -> Option<StoreError> {
        let left = self.failures.load(Ordering::SeqCst);
        if left == 0 {
            return None;
        }
        self.failures.store(left - 1, Ordering::SeqCst);
        let cause = std::io::Error::new(std::io::ErrorKind::ConnectionReset, "reset by peer");
        Some(if self.permanent {
            StoreError::backend(
                "reading the global log",
                "permission denied for table events",
            )
        } else {
            StoreError::transient("reading the global log", cause)
        })
    }
}

impl EventStore for Flaky {
    async fn append(
        &self,
        stream: &StreamId,
        expected: ExpectedVersion,
        events: Vec<NewEvent>,
    ) -> Result<Appended, StoreError> {
        self.inner.append(stream, expected, events).await
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
        self.reads.fetch_add(1, Ordering::SeqCst);
        match self.failure() {
            Some(error) => Err(error),
            None => self.inner.read_all(after, max_count, filter).await,
        }
    }
    async fn stream_version(&self, stream: &StreamId) -> Result<Version, StoreError> {
        self.inner.stream_version(stream).await
    }
    async fn head_position(&self) -> Result<Position, StoreError> {
        self.inner.head_position().await
    }
    async fn find_event(&self, id: uuid::Uuid) -> Result<Option<RecordedEvent>, StoreError> {
        self.inner.find_event(id).await
    }
}

impl ProjectionStore for Flaky {
    type Tx = ();
    type Lease = <MemoryStore as ProjectionStore>::Lease;
    const TRANSACTIONAL: bool = false;

    async fn acquire_lease(&self, p: &str, f: &LogFilter) -> Result<Self::Lease, StoreError> {
        self.inner.acquire_lease(p, f).await
    }
    async fn load_checkpoint(&self, p: &str) -> Result<Option<Checkpoint>, StoreError> {
        self.inner.load_checkpoint(p).await
    }
    async fn begin(&self, lease: &Self::Lease) -> Result<(), StoreError> {
        self.inner.begin(lease).await
    }
    async fn commit(
        &self,
        tx: (),
        p: &str,
        expected: Option<Checkpoint>,
        to: Checkpoint,
    ) -> Result<(), StoreError> {
        self.inner.commit(tx, p, expected, to).await
    }
    async fn rollback(&self, tx: ()) {
        self.inner.rollback(tx).await;
    }
    async fn request_reset(&self, p: &str) -> Result<bool, StoreError> {
        self.inner.request_reset(p).await
    }
    async fn reset_requested(&self, p: &str) -> Result<bool, StoreError> {
        self.inner.reset_requested(p).await
    }
    async fn park(
        &self,
        tx: &mut (),
        p: &str,
        record: &RecordedEvent,
        error: &str,
        attempts: u32,
    ) -> Result<(), StoreError> {
        self.inner.park(tx, p, record, error, attempts).await
    }
    async fn unpark(&self, tx: &mut (), p: &str, at: Position) -> Result<(), StoreError> {
        self.inner.unpark(tx, p, at).await
    }
    async fn parked(&self, p: Option<&str>) -> Result<Vec<ParkedEvent>, StoreError> {
        self.inner.parked(p).await
    }
    async fn retry_parked(&self, p: &str, which: ParkedSelection) -> Result<u64, StoreError> {
        self.inner.retry_parked(p, which).await
    }
    async fn discard_parked(&self, p: &str, which: ParkedSelection) -> Result<u64, StoreError> {
        self.inner.discard_parked(p, which).await
    }
    async fn due_for_retry(&self, p: &str, max: usize) -> Result<Vec<ParkedEvent>, StoreError> {
        self.inner.due_for_retry(p, max).await
    }
    async fn count_after(&self, after: Checkpoint, f: &LogFilter) -> Result<u64, StoreError> {
        self.inner.count_after(after, f).await
    }
    async fn wait_for_append(
        &self,
        checkpoint: Checkpoint,
        head: Position,
        filter: &LogFilter,
        timeout: Duration,
    ) {
        self.inner
            .wait_for_append(checkpoint, head, filter, timeout)
            .await;
    }
}

async fn flaky(failures: u32, permanent: bool) -> Flaky {
    let store = Flaky {
        inner: MemoryStore::new(),
        failures: Arc::new(AtomicU32::new(0)),
        permanent,
        reads: Arc::new(AtomicU32::new(0)),
    };
    let ticks = (1..=10)
        .map(|n| NewEvent::new("clock.ticked", 1, json!({ "n": n })))
        .collect();
    store
        .append(&StreamId::new("clock", 1), ExpectedVersion::Any, ticks)
        .await
        .unwrap();
    store.failures.store(failures, Ordering::SeqCst);
    store
}

fn options(max_store_retries: Option<u32>) -> RunnerOptions {
    RunnerOptions {
        batch_size: 4,
        backoff: Duration::from_millis(1),
        max_backoff: Duration::from_millis(4),
        poll_interval: Duration::from_millis(10),
        max_store_retries,
        ..RunnerOptions::default()
    }
}

/// Runs until the sum reaches `until` (then shuts down), or the runner returns.
async fn run_until(
    store: Flaky,
    sum: Sum,
    options: RunnerOptions,
    until: i64,
) -> Result<(), ProjectionError<std::convert::Infallible>> {
    let mut runner = ProjectionRunner::new(sum.clone(), store).with_options(options);
    let shutdown = async move {
        while *sum.0.lock().unwrap() < until {
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    };
    tokio::time::timeout(Duration::from_secs(30), runner.run(shutdown))
        .await
        .expect("the runner neither finished nor failed")
}

#[tokio::test]
async fn transient_failures_are_ridden_out_by_default() {
    let store = flaky(25, false).await;
    let sum = Sum::default();
    run_until(store.clone(), sum.clone(), options(None), 55)
        .await
        .unwrap();
    assert_eq!(*sum.0.lock().unwrap(), 55, "every tick applied once");
    assert_eq!(
        store.failures.load(Ordering::SeqCst),
        0,
        "all 25 failures met"
    );
}

#[tokio::test]
async fn transient_failures_beyond_the_cap_stop_the_runner_with_the_store_error() {
    let store = flaky(5, false).await;
    let error = run_until(store, Sum::default(), options(Some(3)), 55)
        .await
        .unwrap_err();
    match &error {
        ProjectionError::Store { projection, source } => {
            assert_eq!(*projection, "sum");
            assert!(source.is_transient(), "{source}");
        }
        other => panic!("expected the store's error, got {other:?}"),
    }
    assert!(error.to_string().contains("reset by peer"), "{error}");
}

#[tokio::test]
async fn a_permanent_failure_stops_the_runner_at_once() {
    let store = flaky(1, true).await;
    let error = run_until(store.clone(), Sum::default(), options(None), 55)
        .await
        .unwrap_err();
    assert!(
        matches!(&error, ProjectionError::Store { source, .. } if !source.is_transient()),
        "{error}"
    );
    assert!(error.to_string().contains("permission denied"), "{error}");
}

/// Zero waits are floored at 10 ms: a live runner told to poll every 0 s, idle, and one told to
/// back off 0 s riding out an outage, do not query the store in a busy loop (the idle one
/// read 271 times in 300 ms before the floor).
#[tokio::test]
async fn zero_poll_interval_and_backoffs_do_not_query_in_a_busy_loop() {
    let zero = RunnerOptions {
        poll_interval: Duration::ZERO,
        backoff: Duration::ZERO,
        max_backoff: Duration::ZERO,
        ..options(None)
    };
    for (failures, what) in [(0, "idle and live"), (u32::MAX, "during an outage")] {
        let store = flaky(failures, false).await;
        let mut runner =
            ProjectionRunner::new(Sum::default(), store.clone()).with_options(zero.clone());
        let run = runner.run(tokio::time::sleep(Duration::from_millis(300)));
        tokio::time::timeout(Duration::from_secs(10), run)
            .await
            .expect("the runner stops at shutdown")
            .unwrap();
        let reads = store.reads.load(Ordering::SeqCst);
        // 300 ms at one or two reads per 10 ms, and the catch-up of 10 events in batches of 4.
        assert!(reads <= 80, "{what}: {reads} global reads in 300 ms");
        assert!(reads >= 3, "{what}: {reads} global reads: the runner ran");
    }
}
