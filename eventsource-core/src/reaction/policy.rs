//! Policies: stateless reactions from events to commands, run as projections.

use crate::envelope::RecordedEvent;
use crate::projection::{Project, Projection, Reset};

use super::dispatch::{Dispatch, Dispatcher};
use super::{ReactionError, Trigger, dispatch_all};

/// A declared reaction from events to commands on other aggregates ("when an order is placed,
/// request its payment").
///
/// A policy names the events it reacts to as a projection does (`type Handles = (A, B)` or an
/// event enum) and implements [`React`] for each. [`PolicyProjection`] turns it into a
/// [`Projection`] that the [`ProjectionRunner`](crate::ProjectionRunner) runs: every command is
/// sent with an idempotency key derived from the policy's name, the triggering event's id and
/// the command's index, so an event delivered again (after a crash before the checkpoint
/// moved) runs each of its commands once. The command's correlation id is the event's, and its
/// causation id is the event's id.
///
/// ```
/// use eventsource_core::{Dispatch, Policy, React, RecordedEvent};
/// # use eventsource_core::*;
/// # #[derive(serde::Deserialize)] struct OrderPlaced { order: String, total: u64 }
/// # impl Event for OrderPlaced {
/// #     const NAME: &'static str = "order.placed"; const VERSION: u32 = 1;
/// #     fn decode_version(v: u32, p: &serde_json::Value) -> Result<Self, DecodeFailure> { DecodeFailure::parse(v, p) }
/// # }
/// # #[derive(Default, serde::Serialize, serde::Deserialize)] struct Payment;
/// # #[derive(Clone, Debug)] struct RequestPayment { order: String, amount: u64 }
/// # #[derive(Debug, thiserror::Error)] #[error("x")] struct Never;
/// # #[derive(Clone, Debug, PartialEq)] enum NoEvents {}
/// # impl EventEnum for NoEvents { const NAMES: &'static [&'static str] = &[];
/// #   fn name(&self) -> &'static str { match *self {} } fn schema_version(&self) -> u32 { match *self {} }
/// #   fn encode(&self) -> Result<serde_json::Value, serde_json::Error> { match *self {} }
/// #   fn decode(n: &str, _: u32, _: &serde_json::Value) -> Result<Self, DecodeFailure> { { let _ = n; Err(DecodeFailure::UnknownEvent) } } }
/// # impl Aggregate for Payment { const NAME: &'static str = "payment"; const STATE_FINGERPRINT: &'static str = "1";
/// #   type Event = NoEvents; type Command = RequestPayment; type Error = Never; type Services = ();
/// #   fn evolve(&mut self, _: &NoEvents) {} fn decide(&self, _: RequestPayment, _: &()) -> Result<Events<Self>, Never> { Ok(Events::none()) } }
///
/// struct RequestPaymentOnOrder;
///
/// impl Policy for RequestPaymentOnOrder {
///     const NAME: &'static str = "request-payment-on-order";
///     type Handles = (OrderPlaced,);
/// }
///
/// impl React<OrderPlaced> for RequestPaymentOnOrder {
///     fn react(&self, event: &OrderPlaced, _: &RecordedEvent) -> Vec<Dispatch> {
///         let command = RequestPayment { order: event.order.clone(), amount: event.total };
///         vec![Dispatch::to::<Payment>(&event.order, command)]
///     }
/// }
/// ```
pub trait Policy: Send + Sync + 'static {
    /// The policy's name: it keys the projection's checkpoint and the commands' idempotency
    /// keys, so renaming a policy runs it again from the start of the log.
    const NAME: &'static str;
    /// The events it reacts to: a tuple of [`Event`](crate::Event) types, each with a
    /// [`React`] impl, or one [`EventEnum`](crate::EventEnum) with one `React` impl.
    type Handles;
}

/// Reacts to one event type of a [`Policy`].
#[diagnostic::on_unimplemented(
    message = "the policy `{Self}` does not react to `{E}`",
    label = "`{E}` is in `type Handles` but `{Self}` has no `React<{E}>` impl",
    note = "`impl React<{E}> for {Self} {{ fn react(&self, event: &{E}, record: &RecordedEvent) -> Vec<Dispatch> {{ ... }} }}`"
)]
pub trait React<E>: Policy {
    /// The commands `event` (stored as `record`) calls for, in order. Must be deterministic:
    /// an event delivered again must call for the same commands, which then run once.
    fn react(&self, event: &E, record: &RecordedEvent) -> Vec<Dispatch>;
}

/// A [`Policy`] as a [`Projection`]: `ProjectionRunner::new(PolicyProjection::new(policy,
/// dispatcher), store)`.
///
/// Each event's commands run through the dispatcher's repositories, one after the other,
/// before the runner commits the checkpoint. A command the aggregate rejects is a domain
/// outcome: it is logged (`tracing` warning) and the policy goes on. Any other failure (the
/// store, no route, a reused key) fails the event, which the runner retries and then stops at
/// (or parks, with [`FailurePolicy::Park`](crate::FailurePolicy::Park)); the retry sends the
/// same keys, so the commands that did run are not run again.
///
/// With PostgreSQL the runner's unit of work holds a connection while the commands use
/// others: give the pool at least two connections. The unit of work stays open while the
/// batch's commands run, and global readers see nothing committed after it began until it
/// ends (the read horizon): give reaction runners a small
/// [`batch_size`](crate::RunnerOptions::batch_size), e.g. 20.
pub struct PolicyProjection<P> {
    policy: P,
    dispatcher: Dispatcher,
}

impl<P: Policy> PolicyProjection<P> {
    /// `policy`, sending its commands through `dispatcher`.
    pub fn new(policy: P, dispatcher: Dispatcher) -> Self {
        PolicyProjection { policy, dispatcher }
    }

    /// The policy.
    pub fn policy(&self) -> &P {
        &self.policy
    }
}

impl<P: Policy> std::fmt::Debug for PolicyProjection<P> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PolicyProjection")
            .field("policy", &P::NAME)
            .field("dispatcher", &self.dispatcher)
            .finish()
    }
}

impl<P: Policy> Projection for PolicyProjection<P> {
    const NAME: &'static str = P::NAME;
    type Handles = P::Handles;
    type Error = ReactionError;
}

impl<P, E, Tx> Project<E, Tx> for PolicyProjection<P>
where
    P: React<E>,
    E: Send + 'static,
    Tx: Send,
{
    async fn project(
        &mut self,
        event: E,
        record: &RecordedEvent,
        _: &mut Tx,
    ) -> Result<(), ReactionError> {
        let dispatches = self.policy.react(&event, record);
        drop(event);
        let trigger = Trigger::event(record);
        dispatch_all(&self.dispatcher, P::NAME, &trigger, dispatches).await
    }
}

/// A policy keeps no read model: a rebuild (`eventsource projection reset`) delivers every
/// event again, and each command, sent again under its key, runs no second time.
impl<P: Policy, Tx: Send> Reset<Tx> for PolicyProjection<P> {
    async fn reset(&mut self, _: &mut Tx) -> Result<(), ReactionError> {
        Ok(())
    }
}
