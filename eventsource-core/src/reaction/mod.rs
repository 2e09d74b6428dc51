//! Reactions: events that turn into commands on other aggregates, exactly once.
//!
//! - A [`Policy`] is stateless: "when an order is placed, request its payment". It runs as a
//!   projection ([`PolicyProjection`]).
//! - A [`ProcessManager`] (a saga) keeps state per instance (by default per correlation id),
//!   reacts to events with [`Advance`] and schedules [deadlines](Deadline) that come back to
//!   it later ([`ProcessManager::on_deadline`]) unless it completes first. Its events run as a
//!   projection ([`ProcessProjection`]); its deadlines are fired by a [`DeadlineRunner`].
//!
//! # Exactly once
//!
//! Reactions send their commands through a [`Dispatcher`], which executes them on the
//! aggregates' [`Repository`](crate::Repository) with an idempotency key derived from the
//! reaction's name, the trigger's id (the event, or the deadline) and the command's index. A
//! trigger handled again — an event redelivered after a crash before the checkpoint moved, a
//! deadline claimed again after a crash before it was marked fired — sends the same keys, and
//! the repository runs each command once. Each command's correlation id is the trigger's and
//! its causation id is the trigger's id.
//!
//! Reactions must therefore be deterministic: the same trigger on the same state calls for the
//! same commands.
//!
//! # Process state
//!
//! A process manager's state is event-sourced: each step appends one event to the instance's
//! own stream ([`process_stream`]: `<name>.process-<instance>`, event `eventsource.process.step`, holding the
//! state after the step), with an id derived from the trigger and at the expected version.
//! That works the same on every store, keeps each instance's history, makes a redelivered
//! step a no-op (the id exists), and orders the runner of events and the runners of deadlines
//! on one instance (the expected version). The commands run after the step is stored; when a
//! trigger comes again and its step exists, the commands are decided again from the state
//! before that step and re-sent under their keys, so none is lost and none runs twice.

use chrono::{DateTime, Utc};
use uuid::Uuid;

use crate::command::CommandMetadata;
use crate::envelope::{RecordedEvent, Version};
use crate::error::StoreError;
use crate::limits::excerpt;

mod deadline;
mod dispatch;
mod policy;
mod process;
pub(crate) mod scenario;

pub use deadline::{Deadline, DeadlineRunner, DeadlineState, DeadlineStore, Fired};
pub use dispatch::{Dispatch, DispatchError, Dispatched, Dispatcher};
pub use policy::{Policy, PolicyProjection, React};
pub use process::{
    Advance, ProcessManager, ProcessProjection, Reactions, STEP_EVENT, process_stream,
};

/// Why a reaction failed to handle a trigger (an event or a deadline). Nothing it did is
/// lost: handling the trigger again resumes where it stopped.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ReactionError {
    /// A command could not be executed (other than by the aggregate's rejection).
    #[error("`{reaction}`: command {index} in reaction to {trigger}: {source}")]
    Dispatch {
        /// The policy or process manager.
        reaction: &'static str,
        /// The trigger: event (name, stream, version, id) or deadline (id).
        trigger: String,
        /// The command's index among the trigger's commands.
        index: usize,
        /// Why.
        #[source]
        source: DispatchError,
    },
    /// The process state could not be read or written, or its deadlines could not be
    /// scheduled or cancelled.
    #[error(
        "process manager `{process}`, instance `{}`, reacting to {trigger}: {source}",
        excerpt(instance)
    )]
    Store {
        /// The process manager.
        process: &'static str,
        /// The instance.
        instance: String,
        /// The trigger.
        trigger: String,
        /// The store's error.
        #[source]
        source: Box<StoreError>,
    },
    /// A stored process state or deadline does not decode into the manager's types (they
    /// changed shape), or a new one does not encode.
    #[error(
        "process manager `{process}`, instance `{}`: {what}: {source}",
        excerpt(instance)
    )]
    Serde {
        /// The process manager.
        process: &'static str,
        /// The instance.
        instance: String,
        /// What was being read or written, e.g. "the state at version 3 does not decode".
        what: String,
        /// The serde error.
        #[source]
        source: serde_json::Error,
    },
    /// Another writer kept moving the instance's state stream.
    #[error(
        "process manager `{process}`, instance `{}`: the state stream moved under {attempts} attempt(s) in a row at version {version}",
        excerpt(instance)
    )]
    Contended {
        /// The process manager.
        process: &'static str,
        /// The instance.
        instance: String,
        /// How many times the step was decided.
        attempts: u32,
        /// The last version seen.
        version: Version,
    },
}

impl ReactionError {
    /// Whether a retry may succeed: a transient store failure, or contention.
    pub fn is_transient(&self) -> bool {
        match self {
            ReactionError::Dispatch { source, .. } => source.is_transient(),
            ReactionError::Store { source, .. } => source.is_transient(),
            ReactionError::Contended { .. } => true,
            ReactionError::Serde { .. } => false,
        }
    }
}

/// What a reaction reacts to: an event or a deadline.
#[derive(Clone, Debug)]
pub(crate) struct Trigger {
    /// The event's id, or the deadline's.
    pub(crate) id: Uuid,
    /// The conversation it belongs to (`None`: it starts one).
    pub(crate) correlation: Option<Uuid>,
    /// When it happened: the event's time, or the deadline's due time. Deadlines it schedules
    /// are due that long after it, so a redelivery schedules the same time.
    pub(crate) at: DateTime<Utc>,
    /// For messages.
    pub(crate) description: String,
}

impl Trigger {
    pub(crate) fn event(record: &RecordedEvent) -> Trigger {
        Trigger {
            id: record.event_id,
            correlation: record.metadata.correlation_id,
            at: record.recorded_at,
            description: format!(
                "event `{}` of stream `{}` at version {} (id {})",
                excerpt(&record.name),
                record.stream_id,
                record.version,
                record.event_id
            ),
        }
    }

    pub(crate) fn deadline(deadline: &Deadline) -> Trigger {
        Trigger {
            id: deadline.id,
            correlation: deadline.correlation_id,
            at: deadline.due_at,
            description: format!("deadline {} due at {}", deadline.id, deadline.due_at),
        }
    }

    /// The metadata of the trigger's `index`-th command of `reaction`.
    pub(crate) fn command_metadata(&self, reaction: &str, index: usize) -> CommandMetadata {
        let key = format!("{reaction}:{}:{index}", self.id);
        CommandMetadata {
            command_id: Uuid::new_v5(&REACTION_NAMESPACE, key.as_bytes()),
            ..CommandMetadata::new()
        }
        .correlation_id(self.correlation.unwrap_or(self.id))
        .causation_id(self.id)
        .idempotency_key(key)
    }
}

/// Namespace of the ids reactions derive (command ids, step event ids, deadline ids).
pub(crate) const REACTION_NAMESPACE: Uuid =
    Uuid::from_u128(0x7265_6163_7469_6f6e_2d65_7665_6e74_7321);

/// Sends `dispatches` in order with keys derived from `trigger`. A rejection is logged and
/// skipped; any other failure stops at that command.
pub(crate) async fn dispatch_all(
    dispatcher: &Dispatcher,
    reaction: &'static str,
    trigger: &Trigger,
    dispatches: Vec<Dispatch>,
) -> Result<(), ReactionError> {
    for (index, dispatch) in dispatches.into_iter().enumerate() {
        let metadata = trigger.command_metadata(reaction, index);
        match dispatcher.execute(dispatch, metadata).await {
            Ok(done) => {
                tracing::debug!(
                    reaction,
                    stream = %done.stream,
                    version = done.version.0,
                    replayed = done.replayed,
                    "reaction dispatched a command"
                );
            }
            Err(error @ DispatchError::Rejected { .. }) => {
                tracing::warn!(
                    reaction,
                    trigger = %trigger.description,
                    index,
                    error = %error,
                    "reaction's command was rejected; going on"
                );
            }
            Err(source) => {
                return Err(ReactionError::Dispatch {
                    reaction,
                    trigger: trigger.description.clone(),
                    index,
                    source,
                });
            }
        }
    }
    Ok(())
}
