//! The projection runner: catch-up, live following, retries, rebuild, status.

use std::future::Future;
use std::time::{Duration, Instant};

use crate::envelope::{Checkpoint, Position, RecordedEvent, StreamId, Version};
use crate::error::StoreError;
use crate::observe::names;
use crate::projection::{HandledEvents, HandlerError, Projection, ProjectionStore, Reset};
use crate::store::LogFilter;
use tracing::Instrument;

/// How a runner reads and retries.
#[derive(Clone, Debug)]
pub struct RunnerOptions {
    /// Events read and committed per batch (default 500).
    pub batch_size: usize,
    /// Retries of a failing event before the runner stops (default 3).
    pub max_retries: u32,
    /// Delay before the first retry; doubled for each further one (default 100 ms).
    pub backoff: Duration,
    /// Longest wait for new events when live, even without a wake-up (default 1 s).
    pub poll_interval: Duration,
}

impl Default for RunnerOptions {
    fn default() -> Self {
        RunnerOptions {
            batch_size: 500,
            max_retries: 3,
            backoff: Duration::from_millis(100),
            poll_interval: Duration::from_secs(1),
        }
    }
}

/// Why a runner stopped.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ProjectionError<E: std::error::Error + 'static> {
    /// An event kept failing; the checkpoint is just before it, and a restart resumes there.
    #[error(
        "projection `{projection}` stopped at event `{name}` of stream `{stream}` (version {version}, position {position}) after {attempts} attempt(s): {source}"
    )]
    Failed {
        /// The projection.
        projection: &'static str,
        /// The failing event's name.
        name: String,
        /// Its stream.
        stream: StreamId,
        /// Its version in the stream.
        version: Version,
        /// Its global position.
        position: Position,
        /// How many times it was tried.
        attempts: u32,
        /// The last failure.
        #[source]
        source: HandlerError<E>,
    },
    /// The store failed (reading, committing, locking).
    #[error("projection `{projection}`: {source}")]
    Store {
        /// The projection.
        projection: &'static str,
        /// The store's error.
        #[source]
        source: StoreError,
    },
}

/// The result of catching up.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CaughtUp {
    /// Events applied.
    pub applied: u64,
    /// The checkpoint reached (`None` if the projection has never seen an event).
    pub checkpoint: Option<Checkpoint>,
}

/// Progress of a rebuild or catch-up, for a progress bar.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Progress {
    /// Events applied so far.
    pub done: u64,
    /// Events to apply in all (an estimate from positions: the log's head when the run
    /// started minus the start position; stores may skip positions).
    pub total: u64,
    /// Events applied per second so far.
    pub rate: f64,
}

/// Where a projection stands.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ProjectionStatus {
    /// The committed checkpoint.
    pub checkpoint: Option<Checkpoint>,
    /// The log's head position.
    pub head: Position,
    /// Events behind the head (from positions; counts events of every name).
    pub lag: u64,
    /// The store's horizon lag: how long the oldest open write transaction has been open.
    pub horizon_lag: Duration,
}

/// Runs one projection against a store: catch-up, then live.
///
/// Only one runner of a projection is active at a time (the store's lease); a second one
/// waits. Handlers that cause side effects outside the store's transaction (email, HTTP) run
/// at least once: after a crash between the side effect and the commit, the event is
/// delivered again.
pub struct ProjectionRunner<P, S> {
    projection: P,
    store: S,
    options: RunnerOptions,
    filter: LogFilter,
}

impl<P, S> std::fmt::Debug for ProjectionRunner<P, S>
where
    P: Projection,
{
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProjectionRunner")
            .field("projection", &P::NAME)
            .field("options", &self.options)
            .finish()
    }
}

type RunResult<T, P> = Result<T, ProjectionError<<P as Projection>::Error>>;

impl<P, S> ProjectionRunner<P, S>
where
    P: Projection,
    S: ProjectionStore,
    P::Handles: HandledEvents<P, S::Tx>,
{
    /// A runner with default options.
    pub fn new(projection: P, store: S) -> Self {
        let mut filter = LogFilter::all();
        for name in <P::Handles as HandledEvents<P, S::Tx>>::names() {
            filter = filter.name(name);
        }
        ProjectionRunner {
            projection,
            store,
            options: RunnerOptions::default(),
            filter,
        }
    }

    /// Replaces the options.
    #[must_use]
    pub fn with_options(mut self, options: RunnerOptions) -> Self {
        self.options = options;
        self
    }

    /// The projection (for read models held in memory).
    pub fn projection(&self) -> &P {
        &self.projection
    }

    /// The projection, giving up the runner.
    pub fn into_projection(self) -> P {
        self.projection
    }

    fn store_error(source: StoreError) -> ProjectionError<P::Error> {
        ProjectionError::Store {
            projection: P::NAME,
            source,
        }
    }

    /// Where the projection stands: checkpoint, head, lag.
    pub async fn status(&self) -> Result<ProjectionStatus, StoreError> {
        let checkpoint = self.store.load_checkpoint(P::NAME).await?;
        let head = self.store.head_position().await?;
        let done = checkpoint.map_or(0, |c| c.position().0);
        Ok(ProjectionStatus {
            checkpoint,
            head,
            lag: head.0.saturating_sub(done),
            horizon_lag: self.store.horizon_lag().await?,
        })
    }

    /// Applies every visible event after the checkpoint, then returns.
    pub async fn catch_up(&mut self) -> RunResult<CaughtUp, P> {
        self.catch_up_with(|_| {}).await
    }

    /// Like [`catch_up`](Self::catch_up), reporting progress after every batch.
    pub async fn catch_up_with(
        &mut self,
        mut progress: impl FnMut(Progress) + Send,
    ) -> RunResult<CaughtUp, P> {
        let _lease = self
            .store
            .acquire_lease(P::NAME)
            .await
            .map_err(Self::store_error)?;
        self.catch_up_leased(&mut progress).await
    }

    /// Clears the read model and the checkpoint, then applies the whole log again.
    pub async fn rebuild(
        &mut self,
        mut progress: impl FnMut(Progress) + Send,
    ) -> RunResult<CaughtUp, P>
    where
        P: Reset<S::Tx>,
    {
        let _lease = self
            .store
            .acquire_lease(P::NAME)
            .await
            .map_err(Self::store_error)?;
        let expected = self
            .store
            .load_checkpoint(P::NAME)
            .await
            .map_err(Self::store_error)?;
        let mut tx = self.store.begin().await.map_err(Self::store_error)?;
        if let Err(error) = self.projection.reset(&mut tx).await {
            self.store.rollback(tx).await;
            return Err(ProjectionError::Failed {
                projection: P::NAME,
                name: "(reset)".to_owned(),
                stream: StreamId::from_raw(""),
                version: Version::NONE,
                position: Position(0),
                attempts: 1,
                source: HandlerError::Handler(error),
            });
        }
        self.store
            .commit(tx, P::NAME, expected, Checkpoint::START)
            .await
            .map_err(Self::store_error)?;
        self.catch_up_leased(&mut progress).await
    }

    /// Catches up, then follows new events until `shutdown` completes. The batch in flight
    /// when shutdown is asked for is committed first.
    pub async fn run(&mut self, shutdown: impl Future<Output = ()> + Send) -> RunResult<(), P> {
        let _lease = self
            .store
            .acquire_lease(P::NAME)
            .await
            .map_err(Self::store_error)?;
        let mut shutdown = std::pin::pin!(shutdown);
        loop {
            // The head before catching up: whatever is appended after it may be unread.
            let head = self
                .store
                .head_position()
                .await
                .map_err(Self::store_error)?;
            let caught_up = self.catch_up_leased(&mut |_| {}).await?;
            let checkpoint = caught_up.checkpoint.unwrap_or(Checkpoint::START);
            let wait = self.store.wait_for_append(
                checkpoint,
                head,
                &self.filter,
                self.options.poll_interval,
            );
            tokio::select! {
                () = &mut shutdown => return Ok(()),
                () = wait => {}
            }
        }
    }

    async fn catch_up_leased(
        &mut self,
        progress: &mut (impl FnMut(Progress) + Send),
    ) -> RunResult<CaughtUp, P> {
        let started = Instant::now();
        let mut checkpoint = self
            .store
            .load_checkpoint(P::NAME)
            .await
            .map_err(Self::store_error)?;
        let head = self
            .store
            .head_position()
            .await
            .map_err(Self::store_error)?;
        let start = checkpoint.map_or(0, |c| c.position().0);
        let total = head.0.saturating_sub(start);
        let horizon = self.store.horizon_lag().await.map_err(Self::store_error)?;
        metrics::gauge!(names::PROJECTION_HORIZON_LAG, "projection" => P::NAME)
            .set(horizon.as_secs_f64());
        if total == 0 {
            metrics::gauge!(names::PROJECTION_LAG, "projection" => P::NAME).set(0.0);
        }
        let mut applied = 0u64;
        loop {
            let batch = self
                .store
                .read_all(
                    checkpoint.unwrap_or(Checkpoint::START),
                    self.options.batch_size,
                    &self.filter,
                )
                .await
                .map_err(Self::store_error)?;
            let Some(last) = batch.last() else { break };
            let full = batch.len() == self.options.batch_size;
            let from = checkpoint.unwrap_or(Checkpoint::START);
            let to = last.checkpoint;
            let span = tracing::debug_span!(
                "eventsource.projection.batch",
                projection = P::NAME,
                from = %from,
                to = %to,
                count = batch.len(),
            );
            let outcome = self
                .apply_batch(&batch, &mut checkpoint)
                .instrument(span)
                .await;
            let count = match outcome {
                Ok(count) => count,
                Err(error) => {
                    if matches!(error, ProjectionError::Failed { .. }) {
                        metrics::counter!(names::PROJECTION_FAILURES, "projection" => P::NAME)
                            .increment(1);
                    }
                    return Err(error);
                }
            };
            applied += count;
            metrics::counter!(names::PROJECTION_EVENTS, "projection" => P::NAME).increment(count);
            metrics::gauge!(names::PROJECTION_LAG, "projection" => P::NAME)
                .set(head.0.saturating_sub(to.position().0) as f64);
            let elapsed = started.elapsed().as_secs_f64();
            progress(Progress {
                done: applied,
                total: total.max(applied),
                rate: if elapsed > 0.0 {
                    applied as f64 / elapsed
                } else {
                    0.0
                },
            });
            if !full {
                break;
            }
        }
        Ok(CaughtUp {
            applied,
            checkpoint,
        })
    }

    /// Applies `batch` and moves `checkpoint` past it. Transactional stores commit the batch
    /// as one unit; if an event fails, the events before it are committed, the failing one is
    /// retried alone with backoff, and after the last retry the runner stops before it.
    async fn apply_batch(
        &mut self,
        batch: &[RecordedEvent],
        checkpoint: &mut Option<Checkpoint>,
    ) -> RunResult<u64, P> {
        if S::TRANSACTIONAL {
            match self.try_commit(batch, *checkpoint).await? {
                Ok(()) => {
                    *checkpoint = batch.last().map(|e| e.checkpoint);
                    return Ok(batch.len() as u64);
                }
                Err((failed_at, _)) if failed_at > 0 => {
                    // Keep the work before the failing event. Should the prefix fail now (a
                    // handler that is not deterministic), the loop below retries it event by
                    // event, so nothing is lost either way.
                    let prefix = &batch[..failed_at];
                    if self.try_commit(prefix, *checkpoint).await?.is_ok() {
                        *checkpoint = prefix.last().map(|e| e.checkpoint);
                    }
                }
                Err(_) => {}
            }
        }
        // Event by event: non-transactional stores always, transactional ones after a failure.
        for record in batch {
            if checkpoint.is_some_and(|c| c >= record.checkpoint) {
                continue;
            }
            self.apply_one_with_retries(record, checkpoint).await?;
        }
        Ok(batch.len() as u64)
    }

    async fn apply_one_with_retries(
        &mut self,
        record: &RecordedEvent,
        checkpoint: &mut Option<Checkpoint>,
    ) -> RunResult<(), P> {
        let mut attempts = 0;
        let mut delay = self.options.backoff;
        loop {
            attempts += 1;
            match self
                .try_commit(std::slice::from_ref(record), *checkpoint)
                .await?
            {
                Ok(()) => {
                    *checkpoint = Some(record.checkpoint);
                    return Ok(());
                }
                Err((_, failure)) if attempts > self.options.max_retries => {
                    return Err(ProjectionError::Failed {
                        projection: P::NAME,
                        name: record.name.clone(),
                        stream: record.stream_id.clone(),
                        version: record.version,
                        position: record.position,
                        attempts,
                        source: failure,
                    });
                }
                Err(_) => {
                    tokio::time::sleep(delay).await;
                    delay = delay.saturating_mul(2);
                }
            }
        }
    }

    /// Applies `events` in one unit of work and commits it with the checkpoint of the last.
    /// The outer error is the store's; the inner one names the index of the failing event.
    async fn try_commit(
        &mut self,
        events: &[RecordedEvent],
        expected: Option<Checkpoint>,
    ) -> RunResult<Result<(), (usize, HandlerError<P::Error>)>, P> {
        let Some(last) = events.last() else {
            return Ok(Ok(()));
        };
        let mut tx = self.store.begin().await.map_err(Self::store_error)?;
        for (index, record) in events.iter().enumerate() {
            let outcome = <P::Handles as HandledEvents<P, S::Tx>>::dispatch(
                &mut self.projection,
                record,
                &mut tx,
            )
            .await;
            if let Err(failure) = outcome {
                self.store.rollback(tx).await;
                return Ok(Err((index, failure)));
            }
        }
        self.store
            .commit(tx, P::NAME, expected, last.checkpoint)
            .await
            .map_err(Self::store_error)?;
        Ok(Ok(()))
    }
}
