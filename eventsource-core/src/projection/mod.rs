//! Projections: read models fed from the global log, with durable checkpoints.
//!
//! A projection names the events it handles once, as a tuple (`type Handles = (Opened,
//! Deposited)`) or an event enum (`type Handles = AccountEvent`), and implements [`Project<E>`]
//! for each; the [`ProjectionRunner`] reads the global log from the projection's checkpoint,
//! decodes each event to its current type and dispatches it. Where the store is transactional (PostgreSQL) the handler's writes and the
//! checkpoint commit in one transaction, so each event is applied exactly once.
//!
//! What an operator can rely on:
//! - **Resets never double-apply.** [`ProjectionStore::request_reset`] (the CLI's `projection
//!   reset`) marks the checkpoint; it then only moves back to the start, with the
//!   projection's [`Reset`] hook in the same unit of work. See
//!   [`ProjectionRunner::rebuild_on_reset`].
//! - **Honest lag.** [`ProjectionStatus::lag`] and the lag gauge count the events the
//!   projection handles: 0 when it is caught up.
//! - **Outages and lost leases.** [`ProjectionRunner::run`] retries transient store failures
//!   ([`StoreError::is_transient`]) with backoff and waits for its lease again when it lost
//!   it; the lease is checked before every batch.
//! - **Batched writes.** `type Handles = Batched<(A, B)>` and a [`Flush`] impl write a whole
//!   batch in one statement.
//! - **Dead letters, opt-in.** [`FailurePolicy::Park`] parks an event that keeps failing and
//!   goes on; parked events are listed, retried and discarded through the store.

use std::future::Future;
use std::time::Duration;

use crate::envelope::{Checkpoint, Envelope, Position, RecordedEvent};
use crate::error::StoreError;
use crate::event::{DecodeFailure, Event, EventEnum};
use crate::store::{EventStore, LogFilter};

mod batch;
mod parked;
mod runner;

pub use batch::{Batched, Flush};
pub use parked::{FailurePolicy, ParkedEvent, ParkedSelection};
pub use runner::{
    CaughtUp, Progress, ProjectionError, ProjectionRunner, ProjectionStatus, RunnerOptions,
};

/// A read model fed from the global log.
///
/// ```
/// use std::collections::BTreeMap;
/// use std::convert::Infallible;
/// use eventsource_core::{Event, DecodeFailure, Project, Projection, RecordedEvent};
/// # #[derive(serde::Deserialize)] struct Deposited { amount: i64 }
/// # impl Event for Deposited {
/// #     const NAME: &'static str = "account.deposited"; const VERSION: u32 = 1;
/// #     fn decode_version(v: u32, p: &serde_json::Value) -> Result<Self, DecodeFailure> { DecodeFailure::parse(v, p) }
/// # }
///
/// #[derive(Default)]
/// struct Balances(BTreeMap<String, i64>);
///
/// impl Projection for Balances {
///     const NAME: &'static str = "balances";
///     type Handles = (Deposited,);
///     type Error = Infallible;
/// }
///
/// impl Project<Deposited> for Balances {
///     async fn project(&mut self, e: Deposited, at: &RecordedEvent, _: &mut ()) -> Result<(), Infallible> {
///         *self.0.entry(at.stream_id.to_string()).or_default() += e.amount;
///         Ok(())
///     }
/// }
/// ```
pub trait Projection: Send + 'static {
    /// The projection's name, which keys its checkpoint. Changing it starts from scratch.
    const NAME: &'static str;
    /// The events it handles: a tuple of [`Event`] types, each with a [`Project`] impl, or one
    /// [`EventEnum`] (e.g. a `#[derive(EventEnum)]` enum) with one `Project` impl for the enum.
    type Handles;
    /// Why a handler fails.
    type Error: std::error::Error + Send + Sync + 'static;
    /// The fields of each [`RecordedEvent`] the handlers read: [`Envelope::Full`] (the
    /// default), or [`Envelope::Lean`] for handlers that do not read `event_id`, `metadata`
    /// or `recorded_at` (which they then see as nil, empty and the Unix epoch, on every
    /// store): the runner's reads then skip them, a faster catch-up on PostgreSQL.
    const ENVELOPE: Envelope = Envelope::Full;
}

/// Handles one event type of a projection. `Tx` is the store's unit of work: `()` for the
/// in-memory store, a database transaction for PostgreSQL (write the read model through it
/// and the write commits together with the checkpoint).
pub trait Project<E, Tx = ()>: Projection {
    /// Applies `event`, whose stored record (stream, version, position, metadata, time) is
    /// `record`. Returning an error makes the runner roll back and retry, then stop.
    fn project(
        &mut self,
        event: E,
        record: &RecordedEvent,
        tx: &mut Tx,
    ) -> impl Future<Output = Result<(), Self::Error>> + Send;
}

/// A projection whose read model can be cleared, so that it can be rebuilt from zero.
pub trait Reset<Tx = ()>: Projection {
    /// Deletes the read model (in `tx`, which commits with the checkpoint reset).
    fn reset(&mut self, tx: &mut Tx) -> impl Future<Output = Result<(), Self::Error>> + Send;
}

/// Why one event was not applied: what [`HandledEvents::dispatch`] returns, and the source
/// of [`ProjectionError::Failed`].
#[derive(Debug, thiserror::Error)]
pub enum HandlerError<E: std::error::Error + 'static> {
    /// The stored payload did not decode to the handled event type.
    #[error("cannot decode the payload: {0}")]
    Decode(#[source] DecodeFailure),
    /// The handler returned an error.
    #[error("the handler failed: {0}")]
    Handler(#[source] E),
}

/// A tuple of event types and the dispatch of a stored event to the matching handler.
/// Implemented for tuples of up to 12 [`Event`] types, and for every [`EventEnum`].
pub trait HandledEvents<P: Projection, Tx> {
    /// The names of the events, used to filter the global log at the store.
    fn names() -> Vec<&'static str>;

    /// Decodes `record` and calls the matching [`Project`] impl; events of other names are
    /// skipped.
    fn dispatch(
        projection: &mut P,
        record: &RecordedEvent,
        tx: &mut Tx,
    ) -> impl Future<Output = Result<(), HandlerError<P::Error>>> + Send;

    /// Runs after the last event of a batch, before the commit: nothing for a plain tuple,
    /// [`Flush::flush`] for [`Batched`].
    fn end_of_batch(
        projection: &mut P,
        tx: &mut Tx,
    ) -> impl Future<Output = Result<(), P::Error>> + Send {
        let _ = (projection, tx);
        async { Ok(()) }
    }
}

macro_rules! event_list_for_tuple {
    ($($E:ident),+) => {
        impl<P, Tx, $($E),+> HandledEvents<P, Tx> for ($($E,)+)
        where
            P: Projection $(+ Project<$E, Tx>)+,
            Tx: Send,
            $($E: Event,)+
        {
            fn names() -> Vec<&'static str> {
                vec![$($E::NAME),+]
            }

            async fn dispatch(
                projection: &mut P,
                record: &RecordedEvent,
                tx: &mut Tx,
            ) -> Result<(), HandlerError<P::Error>> {
                $(
                    if record.name == $E::NAME {
                        let event = $E::decode_version(record.schema_version, &record.payload)
                            .map_err(HandlerError::Decode)?;
                        return <P as Project<$E, Tx>>::project(projection, event, record, tx)
                            .await
                            .map_err(HandlerError::Handler);
                    }
                )+
                Ok(())
            }
        }
    };
}

// An event enum handled as a whole (`type Handles = CartEvent`, one `Project<CartEvent>`): its
// variants' names filter the log, and a record decodes through the enum. Coherent beside the
// tuple impls because no tuple implements `EventEnum` (only this crate could write that impl).
impl<P, Tx, E> HandledEvents<P, Tx> for E
where
    P: Projection + Project<E, Tx>,
    Tx: Send,
    E: EventEnum,
{
    fn names() -> Vec<&'static str> {
        E::NAMES.to_vec()
    }

    async fn dispatch(
        projection: &mut P,
        record: &RecordedEvent,
        tx: &mut Tx,
    ) -> Result<(), HandlerError<P::Error>> {
        if !E::NAMES.contains(&record.name.as_str()) {
            return Ok(());
        }
        let event = E::decode(&record.name, record.schema_version, &record.payload)
            .map_err(HandlerError::Decode)?;
        <P as Project<E, Tx>>::project(projection, event, record, tx)
            .await
            .map_err(HandlerError::Handler)
    }
}

event_list_for_tuple!(E1);
event_list_for_tuple!(E1, E2);
event_list_for_tuple!(E1, E2, E3);
event_list_for_tuple!(E1, E2, E3, E4);
event_list_for_tuple!(E1, E2, E3, E4, E5);
event_list_for_tuple!(E1, E2, E3, E4, E5, E6);
event_list_for_tuple!(E1, E2, E3, E4, E5, E6, E7);
event_list_for_tuple!(E1, E2, E3, E4, E5, E6, E7, E8);
event_list_for_tuple!(E1, E2, E3, E4, E5, E6, E7, E8, E9);
event_list_for_tuple!(E1, E2, E3, E4, E5, E6, E7, E8, E9, E10);
event_list_for_tuple!(E1, E2, E3, E4, E5, E6, E7, E8, E9, E10, E11);
event_list_for_tuple!(E1, E2, E3, E4, E5, E6, E7, E8, E9, E10, E11, E12);

/// What a store offers projections: durable checkpoints, a unit of work, a lease, resets and
/// a wake-up on appends.
pub trait ProjectionStore: EventStore + Clone {
    /// The unit of work handlers write into, committed together with the checkpoint.
    type Tx: Send;
    /// Held while a runner owns a projection; dropping it releases the projection.
    type Lease: Send;
    /// Whether rolling back a `Tx` undoes the handler's writes. When false (the in-memory
    /// store, whose read model lives in the projection value), the runner commits after every
    /// event, so a failed event is never half-applied by the runner.
    const TRANSACTIONAL: bool;

    /// Waits until this caller is the only runner of `projection` (across processes where the
    /// store is shared), then holds it until the lease is dropped. `filter` is what the runner
    /// reads; stores record it so that operators see lag in the projection's own events.
    ///
    /// A lease can be lost (the connection holding it dies); [`begin`](Self::begin) then fails
    /// with [`StoreError::LeaseLost`], and whatever the previous holder had in flight is
    /// finished before a new holder gets the lease, so two runners never process a batch at
    /// once.
    fn acquire_lease(
        &self,
        projection: &str,
        filter: &LogFilter,
    ) -> impl Future<Output = Result<Self::Lease, StoreError>> + Send;

    /// The projection's committed checkpoint (`None` if it never committed, or was rebuilt
    /// and has not committed since).
    fn load_checkpoint(
        &self,
        projection: &str,
    ) -> impl Future<Output = Result<Option<Checkpoint>, StoreError>> + Send;

    /// Starts a unit of work for the holder of `lease`. Fails with [`StoreError::LeaseLost`]
    /// when the lease is gone, before any handler runs.
    fn begin(
        &self,
        lease: &Self::Lease,
    ) -> impl Future<Output = Result<Self::Tx, StoreError>> + Send;

    /// Moves the checkpoint from `expected` to `to` (compare-and-set) and commits `tx` with
    /// it. Moving it to [`Checkpoint::START`] is a rebuild: it also clears a pending reset and
    /// discards the projection's parked events (the rebuild applies them again).
    /// If the checkpoint is not at `expected`, nothing commits and the error is
    /// [`StoreError::CheckpointMoved`]; if a reset is pending and `to` is not the start, the
    /// error is [`StoreError::ResetRequested`].
    fn commit(
        &self,
        tx: Self::Tx,
        projection: &str,
        expected: Option<Checkpoint>,
        to: Checkpoint,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Abandons `tx`.
    fn rollback(&self, tx: Self::Tx) -> impl Future<Output = ()> + Send;

    /// Asks for `projection` to be rebuilt: from now on its checkpoint only moves to the
    /// start (a rebuild, which runs the projection's [`Reset`] hook in the same unit of work),
    /// so events are never applied again on top of the old read model. Returns false when the
    /// store knows no projection of that name (it never ran).
    fn request_reset(
        &self,
        projection: &str,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;

    /// Whether a reset of `projection` is pending (asked for and not yet rebuilt).
    fn reset_requested(
        &self,
        projection: &str,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;

    /// Parks `record`, which `projection` failed to apply `attempts` times with `error`, in
    /// `tx` (which the runner commits with the checkpoint moved past it). Parking an event
    /// that is parked already replaces its error, adds the attempts and clears a retry
    /// request.
    fn park(
        &self,
        tx: &mut Self::Tx,
        projection: &str,
        record: &RecordedEvent,
        error: &str,
        attempts: u32,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Removes the parked event at `position` of `projection` in `tx` (it was applied).
    fn unpark(
        &self,
        tx: &mut Self::Tx,
        projection: &str,
        position: Position,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// The parked events of `projection` (of every projection with `None`), by projection and
    /// position.
    fn parked(
        &self,
        projection: Option<&str>,
    ) -> impl Future<Output = Result<Vec<ParkedEvent>, StoreError>> + Send;

    /// Asks for parked events of `projection` to be applied again by its runner; returns how
    /// many were marked.
    fn retry_parked(
        &self,
        projection: &str,
        which: ParkedSelection,
    ) -> impl Future<Output = Result<u64, StoreError>> + Send;

    /// Deletes parked events of `projection` for good; returns how many.
    fn discard_parked(
        &self,
        projection: &str,
        which: ParkedSelection,
    ) -> impl Future<Output = Result<u64, StoreError>> + Send;

    /// Up to `max` parked events of `projection` marked for retry, by position.
    fn due_for_retry(
        &self,
        projection: &str,
        max: usize,
    ) -> impl Future<Output = Result<Vec<ParkedEvent>, StoreError>> + Send;

    /// How many committed events passing `filter` come after `after`: the events a projection
    /// reading `filter` still has to apply (including any held behind an open transaction).
    fn count_after(
        &self,
        after: Checkpoint,
        filter: &LogFilter,
    ) -> impl Future<Output = Result<u64, StoreError>> + Send;

    /// Returns when there may be events passing `filter` to read after `checkpoint`, at the
    /// latest after `timeout`. `head` is the log's head position read *before* the reader
    /// caught up to `checkpoint`: anything appended after it may be unread. Stores with a read
    /// horizon also return soon while events after `checkpoint` wait behind an older open
    /// transaction, since its end announces nothing.
    fn wait_for_append(
        &self,
        checkpoint: Checkpoint,
        head: Position,
        filter: &LogFilter,
        timeout: Duration,
    ) -> impl Future<Output = ()> + Send;

    /// How long the oldest open write transaction has been running: events it writes are
    /// not yet visible to global readers. Zero for stores without that notion.
    fn horizon_lag(&self) -> impl Future<Output = Result<Duration, StoreError>> + Send {
        async { Ok(Duration::ZERO) }
    }

    /// Starts [`begin`](Self::begin) for the holder of `lease` ahead of time, on a task of its
    /// own ([`BegunAhead::spawn`]): the runner calls it just before it commits a full batch,
    /// so that the next batch's unit of work is begun, and its lease checked, while this one
    /// commits, instead of after. `None` (the default) when the store does not.
    ///
    /// The unit of work must be one [`begin`](Self::begin) could have returned once the batch
    /// in flight has committed: a store whose lease check locks what the batch holds (the
    /// PostgreSQL adapter locks the checkpoint row) waits for that commit; a store whose check
    /// would not wait must keep the default `None`. A unit of work nobody takes is dropped
    /// (rolled back).
    fn begin_ahead(&self, lease: &Self::Lease) -> Option<BegunAhead<Self::Tx>> {
        let _ = lease;
        None
    }
}

/// A unit of work a store began ahead of the batch that will use it
/// ([`ProjectionStore::begin_ahead`]).
///
/// Dropping it does not cancel the begin (a `BEGIN` cancelled half-way can leave a pooled
/// connection inside a transaction): the task finishes, and the unit of work it began is
/// dropped there.
#[derive(Debug)]
pub struct BegunAhead<T>(tokio::task::JoinHandle<Result<T, StoreError>>);

impl<T: Send + 'static> BegunAhead<T> {
    /// Runs `begin` on a task of its own; `None` outside a multi-thread tokio runtime (on a
    /// current-thread one it would only run when awaited, so there is nothing to gain).
    pub fn spawn(
        begin: impl Future<Output = Result<T, StoreError>> + Send + 'static,
    ) -> Option<Self> {
        match tokio::runtime::Handle::try_current() {
            Ok(runtime)
                if runtime.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread =>
            {
                Some(BegunAhead(runtime.spawn(begin)))
            }
            _ => None,
        }
    }

    /// The unit of work, or the error beginning it; `None` when the task did not finish (it
    /// panicked, or its runtime is shutting down).
    pub(crate) async fn finish(self) -> Option<Result<T, StoreError>> {
        self.0.await.ok()
    }
}

/// Applies `events` to `projection` in one unit of work of `store` (under `lease`), runs the
/// projection's end-of-batch hook, and commits it with the checkpoint of the last event,
/// moving it from `expected`. The outer error is the store's; the inner one is a handler's,
/// with the index of the failing event (0 for the end-of-batch hook), after a rollback.
///
/// This is the unit of work of every projection source: the [`ProjectionRunner`] and the
/// NATS JetStream source call it, so that both apply and commit a batch the same way.
pub async fn apply_and_commit<P, S>(
    projection: &mut P,
    store: &S,
    lease: &S::Lease,
    events: &[RecordedEvent],
    expected: Option<Checkpoint>,
) -> Result<Result<(), (usize, HandlerError<P::Error>)>, StoreError>
where
    P: Projection,
    S: ProjectionStore,
    P::Handles: HandledEvents<P, S::Tx>,
{
    apply_and_commit_ahead(projection, store, lease, events, expected, &mut None, false).await
}

/// [`apply_and_commit`] in a unit of work from `begun` if it holds one (begun ahead by the
/// previous batch), else a new one; with `ahead`, the next batch's unit of work is begun
/// ([`ProjectionStore::begin_ahead`]) into `begun` just before this one commits, and dropped
/// again if the commit fails.
pub(crate) async fn apply_and_commit_ahead<P, S>(
    projection: &mut P,
    store: &S,
    lease: &S::Lease,
    events: &[RecordedEvent],
    expected: Option<Checkpoint>,
    begun: &mut Option<BegunAhead<S::Tx>>,
    ahead: bool,
) -> Result<Result<(), (usize, HandlerError<P::Error>)>, StoreError>
where
    P: Projection,
    S: ProjectionStore,
    P::Handles: HandledEvents<P, S::Tx>,
{
    let Some(last) = events.last() else {
        return Ok(Ok(()));
    };
    let begun_tx = match begun.take() {
        Some(begun) => begun.finish().await,
        None => None,
    };
    let mut tx = match begun_tx {
        Some(tx) => tx?,
        None => store.begin(lease).await?,
    };
    for (index, record) in events.iter().enumerate() {
        let outcome =
            <P::Handles as HandledEvents<P, S::Tx>>::dispatch(projection, record, &mut tx).await;
        if let Err(failure) = outcome {
            store.rollback(tx).await;
            return Ok(Err((index, failure)));
        }
    }
    let flushed = <P::Handles as HandledEvents<P, S::Tx>>::end_of_batch(projection, &mut tx).await;
    if let Err(error) = flushed {
        store.rollback(tx).await;
        return Ok(Err((0, HandlerError::Handler(error))));
    }
    if ahead {
        *begun = store.begin_ahead(lease);
    }
    let committed = store.commit(tx, P::NAME, expected, last.checkpoint).await;
    if committed.is_err() {
        *begun = None;
    }
    committed?;
    Ok(Ok(()))
}
