//! Batched writes: a projection that buffers rows while the events of a batch are dispatched
//! and writes them at the end of the batch, in the batch's unit of work.

use std::future::Future;
use std::marker::PhantomData;

use crate::envelope::RecordedEvent;
use crate::projection::{HandledEvents, HandlerError, Projection};

/// The end-of-batch hook of a projection whose [`Handles`](Projection::Handles) is
/// [`Batched`]: the runner calls `flush` after the last event of each batch it applies and
/// before it commits, with the same unit of work, so a read model can write a whole page in
/// one statement (a multi-row `INSERT`, `UPDATE … FROM unnest(…)`) instead of one per event.
///
/// Buffer in [`Project::project`](crate::Project::project), write and clear the buffer in
/// `flush`. When `flush` fails the unit of work is rolled back and the runner applies the
/// batch again event by event (each followed by `flush`), so the failure is pinned to one
/// event. Clear the buffer also when `flush` fails: a rolled-back batch is dispatched again.
pub trait Flush<Tx = ()>: Projection {
    /// Writes what the batch's events buffered, through `tx`.
    fn flush(&mut self, tx: &mut Tx) -> impl Future<Output = Result<(), Self::Error>> + Send;
}

/// Declares a projection's events and asks for the end-of-batch hook ([`Flush`]):
/// `type Handles = Batched<(Opened, Deposited)>;` dispatches like the plain tuple and calls
/// [`Flush::flush`] before each commit.
///
/// A marker type: it is never constructed.
pub struct Batched<T>(PhantomData<fn() -> T>);

impl<T> std::fmt::Debug for Batched<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Batched")
    }
}

impl<P, Tx, T> HandledEvents<P, Tx> for Batched<T>
where
    P: Flush<Tx>,
    T: HandledEvents<P, Tx>,
    Tx: Send,
{
    fn names() -> Vec<&'static str> {
        T::names()
    }

    fn dispatch(
        projection: &mut P,
        record: &RecordedEvent,
        tx: &mut Tx,
    ) -> impl Future<Output = Result<(), HandlerError<P::Error>>> + Send {
        T::dispatch(projection, record, tx)
    }

    fn end_of_batch(
        projection: &mut P,
        tx: &mut Tx,
    ) -> impl Future<Output = Result<(), P::Error>> + Send {
        projection.flush(tx)
    }
}
