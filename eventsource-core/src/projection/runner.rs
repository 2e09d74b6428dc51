//! The projection runner: catch-up, live following, retries, resets, rebuild, status.

use std::future::Future;
use std::pin::Pin;
use std::time::{Duration, Instant};

use crate::envelope::{Checkpoint, Position, RecordedEvent, StreamId, Version};
use crate::error::StoreError;
use crate::observe::names;
use crate::projection::{
    BegunAhead, FailurePolicy, HandledEvents, HandlerError, ParkedEvent, Projection,
    ProjectionStore, Reset, apply_and_commit, apply_and_commit_ahead,
};
use crate::store::LogFilter;
use tracing::Instrument;

/// How a runner reads and retries.
#[derive(Clone, Debug)]
pub struct RunnerOptions {
    /// Events read and committed per batch (default 500; 0 counts as 1).
    pub batch_size: usize,
    /// Retries of a failing event before the runner stops (default 3).
    pub max_retries: u32,
    /// Delay before the first retry; doubled for each further one, up to `max_backoff`
    /// (default 100 ms). Also the first delay after a transient store failure in
    /// [`ProjectionRunner::run`] (there at least 10 ms: a zero backoff would hammer a store
    /// that is down).
    pub backoff: Duration,
    /// Longest wait for new events when live, even without a wake-up (default 1 s; at least
    /// 10 ms: zero would poll the store in a busy loop).
    pub poll_interval: Duration,
    /// How many transient store failures in a row (connection lost, server restarting, pool
    /// timeout...) [`ProjectionRunner::run`] rides out before it returns the error; `None`
    /// (the default) keeps trying for as long as the store is down.
    pub max_store_retries: Option<u32>,
    /// Longest delay between two attempts, of a failing event or after transient store
    /// failures (default 30 s).
    pub max_backoff: Duration,
    /// What to do with an event that still fails after `max_retries` retries: stop (the
    /// default) or park it and go on (see [`FailurePolicy`]).
    pub failure_policy: FailurePolicy,
}

/// The shortest live poll, and the shortest wait before [`ProjectionRunner::run`] tries a
/// store again after a transient failure or a lost lease.
const SHORTEST_WAIT: Duration = Duration::from_millis(10);

impl Default for RunnerOptions {
    fn default() -> Self {
        RunnerOptions {
            batch_size: 500,
            max_retries: 3,
            backoff: Duration::from_millis(100),
            poll_interval: Duration::from_secs(1),
            max_store_retries: None,
            max_backoff: Duration::from_secs(30),
            failure_policy: FailurePolicy::Stop,
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
    /// A reset of the projection is pending (`eventsource projection reset`,
    /// [`ProjectionStore::request_reset`]) and this runner was not told how to rebuild it.
    /// Nothing was applied: catching up now would apply every event again on top of the old
    /// read model.
    #[error(
        "projection `{projection}` was reset and must be rebuilt before it applies more events: call `ProjectionRunner::rebuild`, or build the runner with `rebuild_on_reset()`"
    )]
    ResetRequested {
        /// The projection.
        projection: &'static str,
    },
    /// The projection's [`Reset`] hook failed; nothing was reset.
    #[error("projection `{projection}`: clearing the read model for a rebuild failed: {source}")]
    ResetFailed {
        /// The projection.
        projection: &'static str,
        /// The hook's error.
        #[source]
        source: E,
    },
    /// The store failed (reading, committing, locking). [`ProjectionRunner::run`] retries
    /// transient failures ([`StoreError::is_transient`]) and a lost lease itself.
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
    /// Events to apply in all: the events the projection handles that were committed after
    /// its checkpoint when the run started (more, if more arrived meanwhile). The last report
    /// of a run that caught up has `done == total`.
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
    /// Events the projection handles that are committed after its checkpoint (all of them
    /// when a reset is pending): 0 when it is caught up, whatever else the log holds.
    pub lag: u64,
    /// Whether a reset is pending: the next runner start rebuilds the projection (or refuses
    /// to run, see [`ProjectionError::ResetRequested`]).
    pub reset_requested: bool,
    /// The store's horizon lag: how long the oldest open write transaction has been open.
    pub horizon_lag: Duration,
}

/// A boxed future borrowing the projection and the unit of work.
type HookFuture<'a, E> = Pin<Box<dyn Future<Output = Result<(), E>> + Send + 'a>>;

/// The projection's [`Reset`] hook, kept as a function pointer so that runners of projections
/// without one can exist.
type ResetHook<P, Tx> =
    for<'a> fn(&'a mut P, &'a mut Tx) -> HookFuture<'a, <P as Projection>::Error>;

fn reset_hook<'a, P, Tx>(projection: &'a mut P, tx: &'a mut Tx) -> HookFuture<'a, P::Error>
where
    P: Reset<Tx>,
    Tx: Send,
{
    Box::pin(projection.reset(tx))
}

/// Runs one projection against a store: catch-up, then live.
///
/// Only one runner of a projection is active at a time (the store's lease); a second one
/// waits. Handlers that cause side effects outside the store's transaction (email, HTTP) run
/// at least once: after a crash between the side effect and the commit, the event is
/// delivered again. A runner whose lease is lost finds out before its next batch and does not
/// run it.
///
/// # Resets
///
/// After a reset was requested (`eventsource projection reset NAME`, or
/// [`ProjectionStore::request_reset`]) the store refuses to move the checkpoint anywhere but
/// back to the start, so events are never applied twice on top of the old read model. A
/// runner built with [`rebuild_on_reset`](Self::rebuild_on_reset) then rebuilds: it runs the
/// projection's [`Reset`] hook and moves the checkpoint to the start in one unit of work, and
/// applies the log from the start. Any other runner stops with
/// [`ProjectionError::ResetRequested`] before applying anything.
///
/// # Store outages
///
/// [`run`](Self::run) rides out transient store failures ([`StoreError::is_transient`]):
/// it gives up its lease, waits (from [`RunnerOptions::backoff`], doubling up to
/// [`RunnerOptions::max_backoff`]), takes the lease again and resumes from the committed
/// checkpoint, logging each failure and counting it in `eventsource_projection_store_retries_total`,
/// for as long as [`RunnerOptions::max_store_retries`] allows (by default, forever). Permanent
/// failures stop it with the error. [`catch_up`](Self::catch_up) and
/// [`rebuild`](Self::rebuild) return every failure to the caller.
pub struct ProjectionRunner<P: Projection, S: ProjectionStore> {
    projection: P,
    store: S,
    options: RunnerOptions,
    filter: LogFilter,
    reset_hook: Option<ResetHook<P, S::Tx>>,
}

impl<P, S> std::fmt::Debug for ProjectionRunner<P, S>
where
    P: Projection,
    S: ProjectionStore,
{
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProjectionRunner")
            .field("projection", &P::NAME)
            .field("options", &self.options)
            .field("rebuild_on_reset", &self.reset_hook.is_some())
            .finish()
    }
}

type RunResult<T, P> = Result<T, ProjectionError<<P as Projection>::Error>>;

/// What a run does after a failure.
enum Recovery {
    /// Take the lease again after this long.
    RetryAfter(Duration),
    /// Stop.
    Stop,
}

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
            reset_hook: None,
        }
    }

    /// Replaces the options. A `batch_size` of 0 counts as 1 (with 0 the runner read empty
    /// pages and reported itself caught up without applying anything).
    #[must_use]
    pub fn with_options(mut self, options: RunnerOptions) -> Self {
        self.options = RunnerOptions {
            batch_size: options.batch_size.max(1),
            ..options
        };
        self
    }

    /// When a reset is pending, rebuild (run the [`Reset`] hook, then apply the log from the
    /// start) instead of stopping with [`ProjectionError::ResetRequested`].
    #[must_use]
    pub fn rebuild_on_reset(mut self) -> Self
    where
        P: Reset<S::Tx>,
    {
        self.reset_hook = Some(reset_hook::<P, S::Tx>);
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
        match source {
            StoreError::ResetRequested { .. } => ProjectionError::ResetRequested {
                projection: P::NAME,
            },
            source => ProjectionError::Store {
                projection: P::NAME,
                source,
            },
        }
    }

    /// Where the projection stands: checkpoint, head, lag in the events it handles.
    pub async fn status(&self) -> Result<ProjectionStatus, StoreError> {
        let checkpoint = self.store.load_checkpoint(P::NAME).await?;
        let head = self.store.head_position().await?;
        let reset_requested = self.store.reset_requested(P::NAME).await?;
        let from = match checkpoint {
            Some(checkpoint) if !reset_requested => checkpoint,
            _ => Checkpoint::START,
        };
        Ok(ProjectionStatus {
            checkpoint,
            head,
            lag: self.store.count_after(from, &self.filter).await?,
            reset_requested,
            horizon_lag: self.store.horizon_lag().await?,
        })
    }

    /// Applies every visible event after the checkpoint, then returns. A pending reset is
    /// handled first (see [Resets](Self#resets)).
    pub async fn catch_up(&mut self) -> RunResult<CaughtUp, P> {
        self.catch_up_with(|_| {}).await
    }

    /// Like [`catch_up`](Self::catch_up), reporting progress after every batch.
    pub async fn catch_up_with(
        &mut self,
        mut progress: impl FnMut(Progress) + Send,
    ) -> RunResult<CaughtUp, P> {
        let lease = self.lease().await?;
        self.settle_reset(&lease).await?;
        loop {
            match self.catch_up_leased(&lease, &mut progress).await {
                // Asked for while catching up: nothing of the batch was committed.
                Err(ProjectionError::ResetRequested { .. }) if self.reset_hook.is_some() => {
                    self.settle_reset(&lease).await?;
                }
                outcome => return outcome,
            }
        }
    }

    /// Clears the read model and the checkpoint (and a pending reset) in one unit of work,
    /// then applies the whole log again.
    pub async fn rebuild(
        &mut self,
        mut progress: impl FnMut(Progress) + Send,
    ) -> RunResult<CaughtUp, P>
    where
        P: Reset<S::Tx>,
    {
        let lease = self.lease().await?;
        self.reset_leased(&lease, reset_hook::<P, S::Tx>).await?;
        self.catch_up_leased(&lease, &mut progress).await
    }

    /// Catches up, then follows new events until `shutdown` completes. The batch in flight
    /// when shutdown is asked for is committed first. Transient store failures and a lost
    /// lease are ridden out (see [Store outages](Self#store-outages)); other failures stop it.
    pub async fn run(&mut self, shutdown: impl Future<Output = ()> + Send) -> RunResult<(), P> {
        let mut shutdown = std::pin::pin!(shutdown);
        let mut failures = 0u32;
        loop {
            let error = match self.run_leased(shutdown.as_mut(), &mut failures).await {
                Ok(()) => return Ok(()),
                Err(error) => error,
            };
            let wait = match self.recovery(&error, &mut failures) {
                // A zero backoff would hammer a store that is down, or a lease held elsewhere.
                Recovery::RetryAfter(wait) => wait.max(SHORTEST_WAIT),
                Recovery::Stop => return Err(error),
            };
            tokio::select! {
                () = shutdown.as_mut() => return Ok(()),
                () = tokio::time::sleep(wait) => {}
            }
        }
    }

    /// Whether `run` goes on after `error`, and after how long.
    fn recovery(&self, error: &ProjectionError<P::Error>, failures: &mut u32) -> Recovery {
        let ProjectionError::Store { source, .. } = error else {
            return Recovery::Stop;
        };
        if matches!(source, StoreError::LeaseLost { .. }) {
            tracing::warn!(
                projection = P::NAME,
                error = %source,
                "projection runner lost its lease; waiting to take it again"
            );
            metrics::counter!(names::PROJECTION_LEASES_LOST, "projection" => P::NAME).increment(1);
            return Recovery::RetryAfter(self.options.backoff);
        }
        if !source.is_transient() {
            return Recovery::Stop;
        }
        *failures = failures.saturating_add(1);
        if self
            .options
            .max_store_retries
            .is_some_and(|max| *failures > max)
        {
            return Recovery::Stop;
        }
        let exponent = (*failures - 1).min(20);
        let wait = self
            .options
            .backoff
            .saturating_mul(1 << exponent)
            .min(self.options.max_backoff);
        tracing::warn!(
            projection = P::NAME,
            attempt = *failures,
            retry_in_ms = wait.as_millis() as u64,
            error = %source,
            "projection runner hit a transient store failure; retrying"
        );
        metrics::counter!(names::PROJECTION_STORE_RETRIES, "projection" => P::NAME).increment(1);
        Recovery::RetryAfter(wait)
    }

    /// One stretch of `run` under one lease: until shutdown (`Ok`) or a failure.
    async fn run_leased<F>(
        &mut self,
        mut shutdown: Pin<&mut F>,
        failures: &mut u32,
    ) -> RunResult<(), P>
    where
        F: Future<Output = ()>,
    {
        let lease = tokio::select! {
            () = shutdown.as_mut() => return Ok(()),
            lease = self.store.acquire_lease(P::NAME, &self.filter) => {
                lease.map_err(Self::store_error)?
            }
        };
        self.settle_reset(&lease).await?;
        loop {
            // The head before catching up: whatever is appended after it may be unread.
            let head = self
                .store
                .head_position()
                .await
                .map_err(Self::store_error)?;
            let caught_up = match self.catch_up_leased(&lease, &mut |_| {}).await {
                Ok(caught_up) => caught_up,
                Err(ProjectionError::ResetRequested { .. }) if self.reset_hook.is_some() => {
                    self.settle_reset(&lease).await?;
                    continue;
                }
                Err(error) => return Err(error),
            };
            *failures = 0;
            let checkpoint = caught_up.checkpoint.unwrap_or(Checkpoint::START);
            let wait = self.store.wait_for_append(
                checkpoint,
                head,
                &self.filter,
                self.options.poll_interval.max(SHORTEST_WAIT),
            );
            tokio::select! {
                () = shutdown.as_mut() => return Ok(()),
                () = wait => {}
            }
        }
    }

    async fn lease(&self) -> RunResult<S::Lease, P> {
        self.store
            .acquire_lease(P::NAME, &self.filter)
            .await
            .map_err(Self::store_error)
    }

    /// Rebuilds if a reset is pending and the runner may; refuses otherwise.
    async fn settle_reset(&mut self, lease: &S::Lease) -> RunResult<(), P> {
        let pending = self
            .store
            .reset_requested(P::NAME)
            .await
            .map_err(Self::store_error)?;
        if !pending {
            return Ok(());
        }
        match self.reset_hook {
            Some(hook) => self.reset_leased(lease, hook).await,
            None => Err(ProjectionError::ResetRequested {
                projection: P::NAME,
            }),
        }
    }

    /// Runs `hook` and moves the checkpoint to the start in one unit of work.
    async fn reset_leased(
        &mut self,
        lease: &S::Lease,
        hook: ResetHook<P, S::Tx>,
    ) -> RunResult<(), P> {
        let expected = self
            .store
            .load_checkpoint(P::NAME)
            .await
            .map_err(Self::store_error)?;
        let mut tx = self.store.begin(lease).await.map_err(Self::store_error)?;
        if let Err(source) = hook(&mut self.projection, &mut tx).await {
            self.store.rollback(tx).await;
            return Err(ProjectionError::ResetFailed {
                projection: P::NAME,
                source,
            });
        }
        self.store
            .commit(tx, P::NAME, expected, Checkpoint::START)
            .await
            .map_err(Self::store_error)?;
        tracing::info!(
            projection = P::NAME,
            "projection reset: read model cleared, applying the log from the start"
        );
        metrics::counter!(names::PROJECTION_REBUILDS, "projection" => P::NAME).increment(1);
        Ok(())
    }

    async fn catch_up_leased(
        &mut self,
        lease: &S::Lease,
        progress: &mut (impl FnMut(Progress) + Send),
    ) -> RunResult<CaughtUp, P> {
        let started = Instant::now();
        let mut checkpoint = self
            .store
            .load_checkpoint(P::NAME)
            .await
            .map_err(Self::store_error)?;
        self.retry_parked(lease, checkpoint).await?;
        let start = checkpoint.unwrap_or(Checkpoint::START);
        let (horizon, first) = tokio::join!(
            self.store.horizon_lag(),
            self.store
                .read_all_within(start, self.options.batch_size, &self.filter, P::ENVELOPE),
        );
        let horizon = horizon.map_err(Self::store_error)?;
        metrics::gauge!(names::PROJECTION_HORIZON_LAG, "projection" => P::NAME)
            .set(horizon.as_secs_f64());
        let first = first.map_err(Self::store_error)?;
        // What this projection has to apply: its own events only, so that a caught-up
        // projection shows no lag however many other events follow its checkpoint. A short
        // first page is all of it (a live runner's usual wake-up: nothing to count); after a
        // full one, the store counts while the first batch is applied.
        let mut total = (first.len() < self.options.batch_size).then_some(first.len() as u64);
        if let Some(total) = total {
            metrics::gauge!(names::PROJECTION_LAG, "projection" => P::NAME).set(total as f64);
        }
        let mut applied = 0u64;
        let mut reported_total = 0u64;
        // The page after a full batch, read while the batch is applied and committed.
        let mut ahead: Option<Vec<RecordedEvent>> = Some(first);
        // The unit of work of the batch after a full one, begun while that one commits
        // (`ProjectionStore::begin_ahead`); dropped (rolled back) on every way out of here, so
        // that nothing holds it while the runner waits or begins otherwise.
        let mut begun: Option<BegunAhead<S::Tx>> = None;
        loop {
            let batch = match ahead.take() {
                Some(batch) => batch,
                None => {
                    // Not while holding a connection in a unit of work begun ahead (the read
                    // ahead failed): the read may need that connection.
                    begun = None;
                    self.store
                        .read_all_within(
                            checkpoint.unwrap_or(Checkpoint::START),
                            self.options.batch_size,
                            &self.filter,
                            P::ENVELOPE,
                        )
                        .await
                        .map_err(Self::store_error)?
                }
            };
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
            // After a full batch, the next page is read meanwhile: the same gap-safe read
            // from the batch's last checkpoint that would follow its commit. It is used only
            // when the batch committed up to there (compare-and-set under the lease); after
            // any failure it is dropped and the next read starts from the committed checkpoint.
            // The first time, the run's total is counted meanwhile too.
            let read_ahead = full.then(|| {
                let (store, filter) = (self.store.clone(), self.filter.clone());
                let size = self.options.batch_size;
                let count = total.is_none();
                ReadAhead::start(async move {
                    let next = store.read_all_within(to, size, &filter, P::ENVELOPE);
                    if !count {
                        return (next.await, None);
                    }
                    let (next, counted) = tokio::join!(next, store.count_after(start, &filter));
                    (next, Some(counted))
                })
            });
            let apply = self
                .apply_batch(lease, &batch, &mut checkpoint, &mut begun, full)
                .instrument(span);
            // The read on a task of its own: the batch first. Should the read still wait (for
            // a connection, say), the unit of work begun ahead is let go first: the next batch
            // would need the read to use it, and the read may be waiting for the connection
            // that unit of work holds.
            let (outcome, read) = match read_ahead {
                Some(next) if next.on_a_task() => {
                    let outcome = apply.await;
                    if !next.is_finished() {
                        begun = None;
                    }
                    (outcome, next.finish().await)
                }
                Some(next) => tokio::join!(apply, next.finish()),
                None => (apply.await, None),
            };
            let mut counted = None;
            if let Some((next, count)) = read {
                if outcome.is_ok() && checkpoint == Some(to) {
                    ahead = next.ok();
                }
                counted = count;
            }
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
            if let Some(counted) = counted {
                total = Some(counted.map_err(Self::store_error)?);
            }
            // Counted while the first full batch was applied, so known here unless that
            // batch was not full (then this is the last one).
            let total = total.unwrap_or(applied);
            // A short page is the end of what is visible: caught up.
            let remaining = if full {
                total.saturating_sub(applied)
            } else {
                0
            };
            metrics::gauge!(names::PROJECTION_LAG, "projection" => P::NAME).set(remaining as f64);
            reported_total = if full { total.max(applied) } else { applied };
            progress(Progress {
                done: applied,
                total: reported_total,
                rate: rate(applied, started),
            });
            if !full {
                break;
            }
        }
        // Nothing followed the last full batch: roll back the unit of work begun for it, so
        // that none is open once the catch-up returns (it would hold the checkpoint row).
        if let Some(begun) = begun.take()
            && let Some(Ok(tx)) = begun.finish().await
        {
            self.store.rollback(tx).await;
        }
        metrics::gauge!(names::PROJECTION_LAG, "projection" => P::NAME).set(0.0);
        if reported_total > applied {
            // The last page was full and the next one empty (events held behind an open
            // transaction count in `total`): the run still ends at its total.
            progress(Progress {
                done: applied,
                total: applied,
                rate: rate(applied, started),
            });
        }
        Ok(CaughtUp {
            applied,
            checkpoint,
        })
    }

    /// Applies `batch` and moves `checkpoint` past it. Transactional stores commit the batch
    /// as one unit; if an event fails, the events before it are committed, the failing one is
    /// retried alone with backoff, and after the last retry the runner stops before it.
    ///
    /// `begun` is the batch's unit of work if the previous batch began it; with `ahead`, the
    /// next batch's is begun into it while this one commits (never after a failure here:
    /// the retries below begin units of work of their own, which a pending one would block).
    async fn apply_batch(
        &mut self,
        lease: &S::Lease,
        batch: &[RecordedEvent],
        checkpoint: &mut Option<Checkpoint>,
        begun: &mut Option<BegunAhead<S::Tx>>,
        ahead: bool,
    ) -> RunResult<u64, P> {
        if S::TRANSACTIONAL {
            let first = apply_and_commit_ahead(
                &mut self.projection,
                &self.store,
                lease,
                batch,
                *checkpoint,
                begun,
                ahead,
            )
            .await
            .map_err(Self::store_error)?;
            match first {
                Ok(()) => {
                    *checkpoint = batch.last().map(|e| e.checkpoint);
                    return Ok(batch.len() as u64);
                }
                Err((failed_at, _)) if failed_at > 0 => {
                    // Keep the work before the failing event. Should the prefix fail now (a
                    // handler that is not deterministic), the loop below retries it event by
                    // event, so nothing is lost either way.
                    let prefix = &batch[..failed_at];
                    if self.try_commit(lease, prefix, *checkpoint).await?.is_ok() {
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
            self.apply_one_with_retries(lease, record, checkpoint)
                .await?;
        }
        Ok(batch.len() as u64)
    }

    async fn apply_one_with_retries(
        &mut self,
        lease: &S::Lease,
        record: &RecordedEvent,
        checkpoint: &mut Option<Checkpoint>,
    ) -> RunResult<(), P> {
        let mut attempts = 0;
        let mut delay = self.options.backoff;
        loop {
            attempts += 1;
            match self
                .try_commit(lease, std::slice::from_ref(record), *checkpoint)
                .await?
            {
                Ok(()) => {
                    *checkpoint = Some(record.checkpoint);
                    return Ok(());
                }
                Err((_, failure)) if attempts > self.options.max_retries => {
                    let error = failed::<P>(record, attempts, failure);
                    if self.options.failure_policy != FailurePolicy::Park {
                        return Err(error);
                    }
                    let expected = *checkpoint;
                    self.park(lease, record, &error, attempts, expected, record.checkpoint)
                        .await?;
                    *checkpoint = Some(record.checkpoint);
                    return Ok(());
                }
                Err(_) => {
                    tokio::time::sleep(delay).await;
                    delay = delay
                        .saturating_mul(2)
                        .min(self.options.max_backoff.max(self.options.backoff));
                }
            }
        }
    }

    /// Parks `record`, which failed with `error`, and moves the checkpoint from `expected` to
    /// `to` in the same unit of work (to itself when re-parking a retried event).
    async fn park(
        &mut self,
        lease: &S::Lease,
        record: &RecordedEvent,
        error: &ProjectionError<P::Error>,
        attempts: u32,
        expected: Option<Checkpoint>,
        to: Checkpoint,
    ) -> RunResult<(), P> {
        let text = ParkedEvent::bounded_error(&error.to_string());
        let mut tx = self.store.begin(lease).await.map_err(Self::store_error)?;
        if let Err(source) = self
            .store
            .park(&mut tx, P::NAME, record, &text, attempts)
            .await
        {
            self.store.rollback(tx).await;
            return Err(Self::store_error(source));
        }
        self.store
            .commit(tx, P::NAME, expected, to)
            .await
            .map_err(Self::store_error)?;
        tracing::warn!(
            projection = P::NAME,
            position = record.position.0,
            stream = %record.stream_id,
            version = record.version.0,
            name = %record.name,
            error = %error,
            "projection parked a failing event and goes on"
        );
        metrics::counter!(names::PROJECTION_PARKED, "projection" => P::NAME).increment(1);
        Ok(())
    }

    /// Applies the parked events an operator asked to retry, each in a unit of work that also
    /// removes it from the parked events (the checkpoint stays); one that fails again is
    /// parked again with its new error.
    async fn retry_parked(
        &mut self,
        lease: &S::Lease,
        checkpoint: Option<Checkpoint>,
    ) -> RunResult<(), P> {
        // Parked events lie before the checkpoint: none without one.
        let Some(at) = checkpoint else { return Ok(()) };
        let due = self
            .store
            .due_for_retry(P::NAME, self.options.batch_size)
            .await
            .map_err(Self::store_error)?;
        for parked in due {
            // Handlers see a parked event as they would have in the log.
            let record = &parked.record.clone().within(P::ENVELOPE);
            let mut tx = self.store.begin(lease).await.map_err(Self::store_error)?;
            let mut outcome = <P::Handles as HandledEvents<P, S::Tx>>::dispatch(
                &mut self.projection,
                record,
                &mut tx,
            )
            .await;
            if outcome.is_ok() {
                outcome = <P::Handles as HandledEvents<P, S::Tx>>::end_of_batch(
                    &mut self.projection,
                    &mut tx,
                )
                .await
                .map_err(HandlerError::Handler);
            }
            match outcome {
                Ok(()) => {
                    if let Err(source) = self.store.unpark(&mut tx, P::NAME, record.position).await
                    {
                        self.store.rollback(tx).await;
                        return Err(Self::store_error(source));
                    }
                    self.store
                        .commit(tx, P::NAME, Some(at), at)
                        .await
                        .map_err(Self::store_error)?;
                    tracing::info!(
                        projection = P::NAME,
                        position = record.position.0,
                        "projection applied a parked event on retry"
                    );
                    metrics::counter!(names::PROJECTION_EVENTS, "projection" => P::NAME)
                        .increment(1);
                }
                Err(failure) => {
                    self.store.rollback(tx).await;
                    let error = failed::<P>(record, 1, failure);
                    self.park(lease, record, &error, 1, Some(at), at).await?;
                }
            }
        }
        Ok(())
    }

    /// Applies `events` in one unit of work, runs the end-of-batch hook, and commits it with
    /// the checkpoint of the last. The outer error is the store's; the inner one names the
    /// index of the failing event (0 when the end-of-batch hook failed).
    async fn try_commit(
        &mut self,
        lease: &S::Lease,
        events: &[RecordedEvent],
        expected: Option<Checkpoint>,
    ) -> RunResult<Result<(), (usize, HandlerError<P::Error>)>, P> {
        apply_and_commit(&mut self.projection, &self.store, lease, events, expected)
            .await
            .map_err(Self::store_error)
    }
}

/// The error of `record` failing `attempts` times, the last with `failure`.
fn failed<P: Projection>(
    record: &RecordedEvent,
    attempts: u32,
    failure: HandlerError<P::Error>,
) -> ProjectionError<P::Error> {
    ProjectionError::Failed {
        projection: P::NAME,
        name: record.name.clone(),
        stream: record.stream_id.clone(),
        version: record.version,
        position: record.position,
        attempts,
        source: failure,
    }
}

/// The read of the next page, run beside the batch being applied: on a task of its own when
/// the runner runs on a multi-thread runtime (the page is then fetched and decoded on another
/// worker while this one runs the handlers), else polled together with the batch.
enum ReadAhead<T> {
    Task(tokio::task::JoinHandle<T>),
    Inline(Pin<Box<dyn Future<Output = T> + Send>>),
}

impl<T: Send + 'static> ReadAhead<T> {
    fn start(read: impl Future<Output = T> + Send + 'static) -> Self {
        match tokio::runtime::Handle::try_current() {
            Ok(runtime)
                if runtime.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread =>
            {
                ReadAhead::Task(runtime.spawn(read))
            }
            _ => ReadAhead::Inline(Box::pin(read)),
        }
    }

    /// Whether the read runs on a task of its own (beside the batch, whoever awaits what).
    fn on_a_task(&self) -> bool {
        matches!(self, ReadAhead::Task(_))
    }

    /// Whether the read on its own task has finished.
    fn is_finished(&self) -> bool {
        match self {
            ReadAhead::Task(task) => task.is_finished(),
            ReadAhead::Inline(_) => false,
        }
    }

    /// The read's outcome; `None` when its task panicked or was cancelled (the page is then
    /// read again after the batch, as without read-ahead).
    async fn finish(mut self) -> Option<T> {
        match &mut self {
            ReadAhead::Task(task) => task.await.ok(),
            ReadAhead::Inline(read) => Some(read.as_mut().await),
        }
    }
}

impl<T> Drop for ReadAhead<T> {
    fn drop(&mut self) {
        if let ReadAhead::Task(task) = self {
            task.abort();
        }
    }
}

fn rate(applied: u64, started: Instant) -> f64 {
    let elapsed = started.elapsed().as_secs_f64();
    if elapsed > 0.0 {
        applied as f64 / elapsed
    } else {
        0.0
    }
}
