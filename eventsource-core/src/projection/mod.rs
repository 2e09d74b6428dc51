//! Projections: read models fed from the global log, with durable checkpoints.
//!
//! A projection names the events it handles once, as a tuple (`type Handles = (Opened,
//! Deposited)`) or an event enum (`type Handles = AccountEvent`), and implements [`Project<E>`]
//! for each; the [`ProjectionRunner`] reads the global log from the projection's checkpoint,
//! decodes each event to its current type and dispatches it. Where the store is transactional (PostgreSQL) the handler's writes and the
//! checkpoint commit in one transaction, so each event is applied exactly once.

use std::future::Future;
use std::time::Duration;

use crate::envelope::{Checkpoint, Position, RecordedEvent};
use crate::error::StoreError;
use crate::event::{DecodeFailure, Event, EventEnum};
use crate::store::{EventStore, LogFilter};

mod runner;

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

/// What a store offers projections: durable checkpoints, a unit of work, a lease, and a
/// wake-up on appends.
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
    /// store is shared), then holds it until the lease is dropped.
    fn acquire_lease(
        &self,
        projection: &str,
    ) -> impl Future<Output = Result<Self::Lease, StoreError>> + Send;

    /// The projection's committed checkpoint (`None` if it never committed).
    fn load_checkpoint(
        &self,
        projection: &str,
    ) -> impl Future<Output = Result<Option<Checkpoint>, StoreError>> + Send;

    /// Starts a unit of work.
    fn begin(&self) -> impl Future<Output = Result<Self::Tx, StoreError>> + Send;

    /// Moves the checkpoint from `expected` to `to` (compare-and-set) and commits `tx` with
    /// it. Moving it to [`Checkpoint::START`] deletes it (a rebuild). If the checkpoint is not
    /// at `expected`, nothing commits and the error is [`StoreError::CheckpointMoved`].
    fn commit(
        &self,
        tx: Self::Tx,
        projection: &str,
        expected: Option<Checkpoint>,
        to: Checkpoint,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Abandons `tx`.
    fn rollback(&self, tx: Self::Tx) -> impl Future<Output = ()> + Send;

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
}
