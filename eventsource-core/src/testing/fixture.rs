//! A small aggregate, written by hand (no derives), used by the conformance suite.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::aggregate::{Aggregate, Events, SnapshotPolicy};
use crate::event::{DecodeFailure, EventEnum};
use crate::fingerprint::CommandFingerprint;

/// A counter: the fixture aggregate. Snapshots every 3 events.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counter {
    /// The current value.
    pub value: u64,
    /// How many times it was cleared.
    pub clears: u32,
}

/// The counter's events.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum CounterEvent {
    /// `counter.added` v1: `{"amount": n}`.
    Added {
        /// How much was added.
        amount: u64,
    },
    /// `counter.cleared` v1: `{}`.
    Cleared,
}

/// The counter's commands.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CounterCommand {
    /// Add an amount; rejected if it would pass `LIMIT`.
    Add(u64),
    /// Set back to zero (no events if already zero).
    Clear,
}

/// Why the counter refuses a command.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum CounterError {
    /// The sum would pass the limit.
    #[error("adding {amount} to {value} would pass the limit {limit}")]
    OverLimit {
        /// Current value.
        value: u64,
        /// The amount asked.
        amount: u64,
        /// The limit.
        limit: u64,
    },
}

impl Counter {
    /// The largest value the counter accepts.
    pub const LIMIT: u64 = 1_000_000;
}

/// Name of the added event.
pub const ADDED: &str = "counter.added";
/// Name of the cleared event.
pub const CLEARED: &str = "counter.cleared";

impl EventEnum for CounterEvent {
    const NAMES: &'static [&'static str] = &[ADDED, CLEARED];

    fn name(&self) -> &'static str {
        match self {
            CounterEvent::Added { .. } => ADDED,
            CounterEvent::Cleared => CLEARED,
        }
    }

    fn schema_version(&self) -> u32 {
        1
    }

    fn encode(&self) -> Result<Value, serde_json::Error> {
        Ok(match self {
            CounterEvent::Added { amount } => serde_json::json!({ "amount": amount }),
            CounterEvent::Cleared => serde_json::json!({}),
        })
    }

    fn decode(name: &str, version: u32, payload: &Value) -> Result<Self, DecodeFailure> {
        #[derive(Deserialize)]
        struct AddedV1 {
            amount: u64,
        }
        if version > 1 {
            return Err(DecodeFailure::VersionTooNew {
                found: version,
                latest: 1,
            });
        }
        if version < 1 {
            return Err(DecodeFailure::UnknownVersion {
                found: version,
                latest: 1,
            });
        }
        match name {
            ADDED => {
                DecodeFailure::parse::<AddedV1>(version, payload).map(|added| CounterEvent::Added {
                    amount: added.amount,
                })
            }
            CLEARED => Ok(CounterEvent::Cleared),
            _ => Err(DecodeFailure::UnknownEvent),
        }
    }
}

impl Aggregate for Counter {
    const NAME: &'static str = "counter";
    const SNAPSHOT: SnapshotPolicy = SnapshotPolicy::Every(3);
    const STATE_FINGERPRINT: &'static str = "counter-state-v1";
    type Event = CounterEvent;
    type Command = CounterCommand;
    type Error = CounterError;
    type Services = ();

    fn evolve(&mut self, event: &CounterEvent) {
        match event {
            CounterEvent::Added { amount } => self.value += amount,
            CounterEvent::Cleared => {
                self.value = 0;
                self.clears += 1;
            }
        }
    }

    fn decide(&self, command: CounterCommand, _: &()) -> Result<Events<Self>, CounterError> {
        match command {
            CounterCommand::Add(amount) if self.value + amount > Counter::LIMIT => {
                Err(CounterError::OverLimit {
                    value: self.value,
                    amount,
                    limit: Counter::LIMIT,
                })
            }
            CounterCommand::Add(amount) => Ok(Events::one(CounterEvent::Added { amount })),
            CounterCommand::Clear if self.value == 0 => Ok(Events::none()),
            CounterCommand::Clear => Ok(Events::one(CounterEvent::Cleared)),
        }
    }

    fn command_fingerprint(command: &CounterCommand) -> Option<CommandFingerprint> {
        Some(match command {
            CounterCommand::Add(amount) => CommandFingerprint::hashed("Add", amount),
            CounterCommand::Clear => CommandFingerprint::named("Clear"),
        })
    }
}
