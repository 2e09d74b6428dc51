//! Process managers (sagas): state per instance, kept as the instance's own event stream, and
//! deadlines that come back to the manager later.

use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::envelope::{ExpectedVersion, Metadata, NewEvent, RecordedEvent, StreamId, Version};
use crate::error::StoreError;
use crate::projection::{Project, Projection, Reset};
use crate::store::EventStore;

use super::deadline::{Deadline, DeadlineStore};
use super::dispatch::{Dispatch, Dispatcher};
use super::{REACTION_NAMESPACE, ReactionError, Trigger, dispatch_all};

/// The name of the events in a process instance's stream: one per step, holding the state
/// after it (`{"state": ..., "completed": bool}`).
pub const STEP_EVENT: &str = "eventsource.process.step";

/// How many times a step is decided again when another runner moved the instance's stream.
const STEP_ATTEMPTS: u32 = 5;

/// A process manager (saga): reacts to events and deadlines with commands, keeping state per
/// instance.
///
/// Its events run as a projection ([`ProcessProjection`]) and its deadlines through a
/// [`DeadlineRunner`](crate::DeadlineRunner). Each step stores the new state (see [the module
/// docs](crate::reaction#process-state)) before its commands are sent, with keys derived from
/// the trigger, so every step and every command happens once, across crashes and restarts.
/// Once a step [completes](Reactions::complete) the instance, its pending deadlines are
/// cancelled and later events and deadlines of the instance are ignored.
pub trait ProcessManager: Send + Sync + 'static {
    /// The manager's name: it keys the projection's checkpoint, the instances' streams
    /// ([`process_stream`]), the deadlines and the commands' idempotency keys.
    const NAME: &'static str;
    /// The events it reacts to: a tuple of event types, each with an [`Advance`] impl, or one
    /// event enum with one `Advance` impl.
    type Handles;
    /// An instance's state (`Default` before its first step). Stored as JSON with every step.
    type State: Default + Serialize + DeserializeOwned + Send + Sync + 'static;
    /// What a deadline carries back to [`on_deadline`](Self::on_deadline) (`()` if the
    /// manager schedules none). Stored as JSON until it fires.
    type Deadline: Serialize + DeserializeOwned + Send + Sync + 'static;

    /// A deadline scheduled by an earlier step is due: decide what follows on the instance's
    /// current state (a payment timeout after the payment arrived may do nothing). The
    /// default does nothing.
    fn on_deadline(
        &self,
        state: &mut Self::State,
        deadline: Self::Deadline,
    ) -> Reactions<Self::Deadline> {
        let _ = (state, deadline);
        Reactions::none()
    }
}

/// Advances a [`ProcessManager`] on one event type.
#[diagnostic::on_unimplemented(
    message = "the process manager `{Self}` does not advance on `{E}`",
    label = "`{E}` is in `type Handles` but `{Self}` has no `Advance<{E}>` impl",
    note = "`impl Advance<{E}> for {Self} {{ fn advance(&self, state: &mut Self::State, event: &{E}, record: &RecordedEvent) -> Reactions<Self::Deadline> {{ ... }} }}`"
)]
pub trait Advance<E>: ProcessManager {
    /// The instance `event` belongs to: by default its correlation id (the conversation the
    /// first command started, which reactions pass on), else its own id. Override it to key
    /// instances by a business id (an order id) when events from outside the conversation
    /// take part. `None` ignores the event.
    fn instance(&self, event: &E, record: &RecordedEvent) -> Option<String> {
        let _ = event;
        Some(
            record
                .metadata
                .correlation_id
                .unwrap_or(record.event_id)
                .to_string(),
        )
    }

    /// Updates the instance's `state` with `event` (stored as `record`) and says what follows.
    /// Must be deterministic: the same event on the same state calls for the same reactions.
    fn advance(
        &self,
        state: &mut Self::State,
        event: &E,
        record: &RecordedEvent,
    ) -> Reactions<Self::Deadline>;
}

/// What a process step calls for: commands now, deadlines later, cancellation, completion.
///
/// ```
/// # use std::time::Duration;
/// # use eventsource_core::Reactions;
/// let next: Reactions<&str> = Reactions::none().schedule("payment-timeout", Duration::from_secs(900));
/// assert_eq!(next.deadlines(), &[("payment-timeout", Duration::from_secs(900))]);
/// ```
#[derive(Debug, PartialEq)]
pub struct Reactions<D> {
    dispatches: Vec<Dispatch>,
    deadlines: Vec<(D, Duration)>,
    cancel: bool,
    complete: bool,
}

impl<D> Default for Reactions<D> {
    fn default() -> Self {
        Reactions::none()
    }
}

impl<D> Reactions<D> {
    /// Nothing follows.
    pub fn none() -> Self {
        Reactions {
            dispatches: Vec::new(),
            deadlines: Vec::new(),
            cancel: false,
            complete: false,
        }
    }

    /// Sends a command (after the step is stored).
    #[must_use]
    pub fn dispatch(mut self, dispatch: Dispatch) -> Self {
        self.dispatches.push(dispatch);
        self
    }

    /// Schedules `deadline` to come back to [`ProcessManager::on_deadline`] `after` this long,
    /// counted from the trigger (the event's recorded time, or the due time of the deadline
    /// being handled), so that a redelivered trigger schedules the same time.
    #[must_use]
    pub fn schedule(mut self, deadline: D, after: Duration) -> Self {
        self.deadlines.push((deadline, after));
        self
    }

    /// Cancels the instance's deadlines scheduled by earlier steps that have not fired.
    #[must_use]
    pub fn cancel_deadlines(mut self) -> Self {
        self.cancel = true;
        self
    }

    /// Completes the instance: its pending deadlines are cancelled (also those scheduled by
    /// this step) and later events and deadlines of the instance are ignored.
    #[must_use]
    pub fn complete(mut self) -> Self {
        self.complete = true;
        self
    }

    /// The commands, in order.
    pub fn dispatches(&self) -> &[Dispatch] {
        &self.dispatches
    }

    /// The deadlines to schedule, each with its delay.
    pub fn deadlines(&self) -> &[(D, Duration)] {
        &self.deadlines
    }

    /// Whether earlier deadlines are cancelled.
    pub fn cancels_deadlines(&self) -> bool {
        self.cancel
    }

    /// Whether the instance completes.
    pub fn completes(&self) -> bool {
        self.complete
    }
}

/// The stream of one process instance: `<NAME>.process-<instance>`, with each `-` of the name
/// written `_`, so that the stream's category is `<NAME>.process` and never an aggregate's
/// (`order-fulfilment` would otherwise fall in the category `order`).
pub fn process_stream(process: &str, instance: &str) -> StreamId {
    StreamId::new(&format!("{}.process", process.replace('-', "_")), instance)
}

/// A [`ProcessManager`]'s events as a [`Projection`]: `ProjectionRunner::new(
/// ProcessProjection::new(manager, store.clone(), dispatcher), store)`. `store` keeps the
/// instances' streams and the deadlines. As for a [`PolicyProjection`](crate::PolicyProjection),
/// give its runner a small batch size and a pool of at least two connections on PostgreSQL.
pub struct ProcessProjection<P, S> {
    process: P,
    store: S,
    dispatcher: Dispatcher,
}

impl<P: ProcessManager, S> ProcessProjection<P, S> {
    /// `process`, keeping its state and deadlines in `store` and sending commands through
    /// `dispatcher`.
    pub fn new(process: P, store: S, dispatcher: Dispatcher) -> Self {
        ProcessProjection {
            process,
            store,
            dispatcher,
        }
    }
}

impl<P: ProcessManager, S> std::fmt::Debug for ProcessProjection<P, S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProcessProjection")
            .field("process", &P::NAME)
            .field("dispatcher", &self.dispatcher)
            .finish()
    }
}

impl<P, S> Projection for ProcessProjection<P, S>
where
    P: ProcessManager,
    S: Send + 'static,
{
    const NAME: &'static str = P::NAME;
    type Handles = P::Handles;
    type Error = ReactionError;
}

impl<P, S, E, Tx> Project<E, Tx> for ProcessProjection<P, S>
where
    P: Advance<E>,
    S: EventStore + DeadlineStore,
    E: Send + Sync + 'static,
    Tx: Send,
{
    async fn project(
        &mut self,
        event: E,
        record: &RecordedEvent,
        _: &mut Tx,
    ) -> Result<(), ReactionError> {
        let Some(instance) = self.process.instance(&event, record) else {
            return Ok(());
        };
        let trigger = Trigger::event(record);
        let step = Step {
            process: &self.process,
            store: &self.store,
            dispatcher: &self.dispatcher,
            instance: &instance,
            trigger: &trigger,
        };
        step.run(|process, state| Ok(process.advance(state, &event, record)))
            .await
            .map(drop)
    }
}

/// The state lives in the instances' streams, not in a read model: a rebuild delivers every
/// event again, each finds its step stored, and its commands and deadlines, sent again under
/// their keys, happen no second time.
impl<P, S, Tx> Reset<Tx> for ProcessProjection<P, S>
where
    P: ProcessManager,
    S: Send + 'static,
    Tx: Send,
{
    async fn reset(&mut self, _: &mut Tx) -> Result<(), ReactionError> {
        Ok(())
    }
}

/// What handling one trigger did to its instance.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum StepOutcome {
    /// A new step was stored and its reactions sent.
    Stepped,
    /// The step had been stored before (a redelivery): its reactions were sent again under
    /// their keys (each runs once).
    Repeated,
    /// The instance had completed: the trigger was ignored.
    Completed,
}

/// One trigger on one instance.
pub(crate) struct Step<'a, P, S> {
    pub(crate) process: &'a P,
    pub(crate) store: &'a S,
    pub(crate) dispatcher: &'a Dispatcher,
    pub(crate) instance: &'a str,
    pub(crate) trigger: &'a Trigger,
}

/// An instance's state at some version.
struct Stored<T> {
    state: T,
    version: Version,
    completed: bool,
}

impl<P, S> Step<'_, P, S>
where
    P: ProcessManager,
    S: EventStore + DeadlineStore,
{
    /// Decides the step with `decide` (possibly more than once, on contention), stores it,
    /// then schedules and cancels its deadlines and sends its commands.
    pub(crate) async fn run<F>(&self, decide: F) -> Result<StepOutcome, ReactionError>
    where
        F: Fn(&P, &mut P::State) -> Result<Reactions<P::Deadline>, ReactionError>,
    {
        let stream = process_stream(P::NAME, self.instance);
        let step_id = Uuid::new_v5(
            &REACTION_NAMESPACE,
            format!("{}\u{0}{}\u{0}{}", P::NAME, self.instance, self.trigger.id).as_bytes(),
        );
        let mut attempts = 0;
        loop {
            attempts += 1;
            let found = self
                .store
                .find_event(step_id)
                .await
                .map_err(|e| self.store_error(e))?;
            if let Some(done) = found.filter(|done| done.stream_id == stream) {
                // Stored before, perhaps without its effects (a crash): decide again from the
                // state before it and send the same reactions, which run once.
                let mut before = self.state_before(&stream, done.version).await?;
                let reactions = decide(self.process, &mut before.state)?;
                self.effects(reactions, done.version).await?;
                return Ok(StepOutcome::Repeated);
            }
            let mut current = self.latest(&stream).await?;
            if current.completed {
                tracing::debug!(
                    process = P::NAME,
                    instance = self.instance,
                    trigger = %self.trigger.description,
                    "process instance completed: trigger ignored"
                );
                return Ok(StepOutcome::Completed);
            }
            // Every trigger stores a step, also one that changed nothing: a redelivery must
            // find it, not decide again on the state that later steps left.
            let reactions = decide(self.process, &mut current.state)?;
            let after = self.encode_state(&current.state)?;
            let event = NewEvent::new(
                STEP_EVENT,
                1,
                json!({ "state": after, "completed": reactions.complete }),
            )
            .with_id(step_id)
            .with_metadata(Metadata {
                correlation_id: Some(self.trigger.correlation.unwrap_or(self.trigger.id)),
                causation_id: Some(self.trigger.id),
                ..Metadata::default()
            });
            let expected = ExpectedVersion::Exact(current.version);
            match self.store.append(&stream, expected, vec![event]).await {
                Ok(appended) if !appended.replayed => {
                    self.effects(reactions, appended.last_version).await?;
                    return Ok(StepOutcome::Stepped);
                }
                // Stored meanwhile by another runner: the next round finds it.
                Ok(_) | Err(StoreError::DuplicateEventId { .. }) if attempts < STEP_ATTEMPTS => {}
                Err(StoreError::Conflict { .. }) if attempts < STEP_ATTEMPTS => {}
                Ok(_) | Err(StoreError::Conflict { .. } | StoreError::DuplicateEventId { .. }) => {
                    return Err(ReactionError::Contended {
                        process: P::NAME,
                        instance: self.instance.to_owned(),
                        attempts,
                        version: current.version,
                    });
                }
                Err(error) => return Err(self.store_error(error)),
            }
        }
    }

    /// Cancels and schedules the step's deadlines, then sends its commands. `version` is the
    /// step's version in the instance's stream.
    async fn effects(
        &self,
        reactions: Reactions<P::Deadline>,
        version: Version,
    ) -> Result<(), ReactionError> {
        let Reactions {
            dispatches,
            deadlines,
            cancel,
            complete,
        } = reactions;
        if complete || cancel {
            // A completed instance cancels everything; otherwise what earlier steps scheduled
            // (a redelivered step must not cancel what later steps scheduled).
            let before = if complete { Version(u64::MAX) } else { version };
            self.store
                .cancel_deadlines(P::NAME, self.instance, before)
                .await
                .map_err(|e| self.store_error(e))?;
        }
        if !complete && !deadlines.is_empty() {
            let mut scheduled = Vec::with_capacity(deadlines.len());
            for (index, (deadline, after)) in deadlines.into_iter().enumerate() {
                let payload =
                    serde_json::to_value(&deadline).map_err(|source| ReactionError::Serde {
                        process: P::NAME,
                        instance: self.instance.to_owned(),
                        what: format!(
                            "deadline {index} of {} does not encode",
                            self.trigger.description
                        ),
                        source,
                    })?;
                scheduled.push(Deadline {
                    id: Uuid::new_v5(
                        &REACTION_NAMESPACE,
                        format!(
                            "{}\u{0}{}\u{0}{}\u{0}deadline\u{0}{index}",
                            P::NAME,
                            self.instance,
                            self.trigger.id
                        )
                        .as_bytes(),
                    ),
                    process: P::NAME.to_owned(),
                    instance: self.instance.to_owned(),
                    due_at: due_at(self.trigger.at, after),
                    payload,
                    correlation_id: Some(self.trigger.correlation.unwrap_or(self.trigger.id)),
                    causation_id: self.trigger.id,
                    scheduled_by: version,
                });
            }
            self.store
                .schedule(&scheduled)
                .await
                .map_err(|e| self.store_error(e))?;
        }
        dispatch_all(self.dispatcher, P::NAME, self.trigger, dispatches).await
    }

    async fn latest(&self, stream: &StreamId) -> Result<Stored<P::State>, ReactionError> {
        let version = self
            .store
            .stream_version(stream)
            .await
            .map_err(|e| self.store_error(e))?;
        self.state_at(stream, version).await
    }

    async fn state_before(
        &self,
        stream: &StreamId,
        version: Version,
    ) -> Result<Stored<P::State>, ReactionError> {
        self.state_at(stream, Version(version.0.saturating_sub(1)))
            .await
    }

    /// The state stored by the step at `version` (the default state at version 0).
    async fn state_at(
        &self,
        stream: &StreamId,
        version: Version,
    ) -> Result<Stored<P::State>, ReactionError> {
        if version == Version::NONE {
            return Ok(Stored {
                state: P::State::default(),
                version,
                completed: false,
            });
        }
        let rows = self
            .store
            .read_stream(stream, version, 1)
            .await
            .map_err(|e| self.store_error(e))?;
        let Some(row) = rows.into_iter().next().filter(|row| row.version == version) else {
            return Err(self.store_error(StoreError::CorruptRow {
                stream: stream.clone(),
                version,
                message: "the process step at this version is missing".to_owned(),
            }));
        };
        let serde = |source| ReactionError::Serde {
            process: P::NAME,
            instance: self.instance.to_owned(),
            what: format!("the state stored at version {version} does not decode"),
            source,
        };
        let state = row.payload.get("state").cloned().unwrap_or(Value::Null);
        let state = serde_json::from_value(state).map_err(serde)?;
        let completed = row
            .payload
            .get("completed")
            .and_then(Value::as_bool)
            .unwrap_or(false);
        Ok(Stored {
            state,
            version,
            completed,
        })
    }

    fn encode_state(&self, state: &P::State) -> Result<Value, ReactionError> {
        serde_json::to_value(state).map_err(|source| ReactionError::Serde {
            process: P::NAME,
            instance: self.instance.to_owned(),
            what: "the new state does not encode".to_owned(),
            source,
        })
    }

    pub(crate) fn store_error(&self, source: StoreError) -> ReactionError {
        ReactionError::Store {
            process: P::NAME,
            instance: self.instance.to_owned(),
            trigger: self.trigger.description.clone(),
            source: Box::new(source),
        }
    }
}

/// `at` plus `after`, saturating at the latest representable time.
pub(crate) fn due_at(at: DateTime<Utc>, after: Duration) -> DateTime<Utc> {
    TimeDelta::from_std(after)
        .ok()
        .and_then(|delta| at.checked_add_signed(delta))
        .unwrap_or(DateTime::<Utc>::MAX_UTC)
}

#[cfg(test)]
mod tests {
    use super::process_stream;

    #[test]
    fn a_process_stream_is_in_its_own_category() {
        let stream = process_stream("order-fulfilment", "o-1");
        assert_eq!(stream.as_str(), "order_fulfilment.process-o-1");
        assert_eq!(stream.category(), "order_fulfilment.process");
    }
}
