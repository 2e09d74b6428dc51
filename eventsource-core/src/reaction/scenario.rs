//! Given/when/then for reactions: given events (or a state), when an event or a deadline
//! arrives, then these commands (and deadlines) follow. Pure: no store, no runtime.

use std::fmt::{Debug, Write as _};
use std::time::Duration;

use chrono::Utc;
use serde_json::Value;
use uuid::Uuid;

use crate::envelope::{Checkpoint, Metadata, Position, RecordedEvent, StreamId, Version};
use crate::harness::ScenarioFailure;

use super::dispatch::Dispatch;
use super::policy::{Policy, React};
use super::process::{Advance, ProcessManager, Reactions};

/// The correlation id of every event a reaction scenario delivers.
pub const SCENARIO_CORRELATION: Uuid = Uuid::from_u128(0x5ce0_a210_0000_4000_8000_0000_0000_0001);

/// The stored record a scenario hands the reaction with `E`: stream `scenario-1`, a fresh id,
/// correlation id [`SCENARIO_CORRELATION`], recorded now.
fn record_for<E>(sequence: u64) -> RecordedEvent {
    RecordedEvent {
        event_id: Uuid::now_v7(),
        stream_id: StreamId::new("scenario", 1),
        version: Version(sequence),
        position: Position(sequence),
        checkpoint: Checkpoint::from_parts(0, sequence),
        name: crate::observe::short_type_name::<E>().to_owned(),
        schema_version: 1,
        payload: Value::Null,
        metadata: Metadata {
            correlation_id: Some(SCENARIO_CORRELATION),
            ..Metadata::default()
        },
        recorded_at: Utc::now(),
    }
}

/// A given/when/then scenario for a [`Policy`]: `PolicyScenario::new(policy).when(event)`.
///
/// ```ignore
/// PolicyScenario::new(RequestPaymentOnOrder)
///     .when(OrderPlaced { order: "o-1".into(), total: 30 })
///     .then_dispatches([Dispatch::to::<Payment>("o-1", RequestPayment { order: "o-1".into(), amount: 30 })]);
/// ```
#[derive(Debug)]
pub struct PolicyScenario<P> {
    policy: P,
    events: Vec<String>,
    dispatches: Vec<Dispatch>,
}

impl<P: Policy> PolicyScenario<P> {
    /// A scenario of `policy`.
    pub fn new(policy: P) -> Self {
        PolicyScenario {
            policy,
            events: Vec::new(),
            dispatches: Vec::new(),
        }
    }

    /// Delivers `event`; the commands of every delivered event are collected in order.
    #[must_use]
    pub fn when<E: Debug>(mut self, event: E) -> Self
    where
        P: React<E>,
    {
        let record = record_for::<E>(self.events.len() as u64 + 1);
        self.dispatches.extend(self.policy.react(&event, &record));
        self.events.push(format!("{event:?}"));
        self
    }

    /// The commands so far.
    pub fn dispatches(&self) -> &[Dispatch] {
        &self.dispatches
    }

    /// Asserts that the delivered events called for exactly `expected`, in order.
    ///
    /// # Panics
    /// With the expected and actual commands side by side when they differ.
    #[track_caller]
    pub fn then_dispatches(self, expected: impl IntoIterator<Item = Dispatch>) -> Self {
        if let Err(failure) = self.check_dispatches(expected) {
            panic!("{failure}");
        }
        self
    }

    /// Like [`then_dispatches`](Self::then_dispatches), returning the failure.
    pub fn check_dispatches(
        &self,
        expected: impl IntoIterator<Item = Dispatch>,
    ) -> Result<(), ScenarioFailure> {
        let expected: Vec<Dispatch> = expected.into_iter().collect();
        if expected == self.dispatches {
            return Ok(());
        }
        Err(ScenarioFailure::new(format!(
            "policy scenario failed for `{}`: the events called for other commands than expected\nwhen:\n{}\n{}",
            P::NAME,
            list(&self.events),
            side_by_side(&expected, &self.dispatches)
        )))
    }
}

/// A given/when/then scenario for a [`ProcessManager`]: given past events (or a state), when
/// an event or a deadline arrives, then these commands, deadlines, completion or state.
///
/// ```ignore
/// ProcessScenario::new(Fulfilment)
///     .given(OrderPlaced { order: "o-1".into(), total: 30 })
///     .when_deadline(FulfilmentDeadline::PaymentTimeout)
///     .then_dispatches([Dispatch::to::<Order>("o-1", CancelOrder { reason: "payment timed out".into() })])
///     .then_completed();
/// ```
pub struct ProcessScenario<P: ProcessManager> {
    process: P,
    state: P::State,
    given: Vec<String>,
    when: Option<String>,
    reactions: Reactions<P::Deadline>,
    sequence: u64,
}

impl<P: ProcessManager> ProcessScenario<P> {
    /// A scenario of `process` on a new instance.
    pub fn new(process: P) -> Self {
        ProcessScenario {
            process,
            state: P::State::default(),
            given: Vec::new(),
            when: None,
            reactions: Reactions::none(),
            sequence: 0,
        }
    }

    /// Starts from `state` instead of the default.
    #[must_use]
    pub fn given_state(mut self, state: P::State) -> Self
    where
        P::State: Debug,
    {
        self.given.push(format!("state {state:?}"));
        self.state = state;
        self
    }

    /// A past event: it advances the state; its reactions are discarded.
    #[must_use]
    pub fn given<E: Debug>(mut self, event: E) -> Self
    where
        P: Advance<E>,
    {
        self.sequence += 1;
        let record = record_for::<E>(self.sequence);
        let _ = self.process.advance(&mut self.state, &event, &record);
        self.given.push(format!("{event:?}"));
        self
    }

    /// The event whose reactions are asserted.
    #[must_use]
    pub fn when<E: Debug>(mut self, event: E) -> Self
    where
        P: Advance<E>,
    {
        self.sequence += 1;
        let record = record_for::<E>(self.sequence);
        self.reactions = self.process.advance(&mut self.state, &event, &record);
        self.when = Some(format!("{event:?}"));
        self
    }

    /// The deadline whose reactions are asserted: it fires on the current state.
    #[must_use]
    pub fn when_deadline(mut self, deadline: P::Deadline) -> Self
    where
        P::Deadline: Debug,
    {
        self.when = Some(format!("deadline {deadline:?}"));
        self.reactions = self.process.on_deadline(&mut self.state, deadline);
        self
    }

    /// The reactions of the `when` trigger.
    pub fn reactions(&self) -> &Reactions<P::Deadline> {
        &self.reactions
    }

    /// The state after the `when` trigger.
    pub fn state(&self) -> &P::State {
        &self.state
    }

    /// Asserts that the trigger called for exactly the commands `expected`, in order.
    ///
    /// # Panics
    /// With the expected and actual commands side by side when they differ.
    #[track_caller]
    pub fn then_dispatches(self, expected: impl IntoIterator<Item = Dispatch>) -> Self {
        let expected: Vec<Dispatch> = expected.into_iter().collect();
        if expected.as_slice() != self.reactions.dispatches() {
            let table = side_by_side(&expected, self.reactions.dispatches());
            self.fail("the trigger called for other commands than expected", table);
        }
        self
    }

    /// Asserts that the trigger scheduled exactly `expected` (deadline and delay), in order.
    ///
    /// # Panics
    /// With the expected and actual deadlines side by side when they differ.
    #[track_caller]
    pub fn then_schedules(self, expected: impl IntoIterator<Item = (P::Deadline, Duration)>) -> Self
    where
        P::Deadline: PartialEq + Debug,
    {
        let expected: Vec<(P::Deadline, Duration)> = expected.into_iter().collect();
        if expected.as_slice() != self.reactions.deadlines() {
            let table = side_by_side(&expected, self.reactions.deadlines());
            self.fail("the trigger scheduled other deadlines than expected", table);
        }
        self
    }

    /// Asserts that the trigger completed the instance.
    ///
    /// # Panics
    /// If it did not.
    #[track_caller]
    pub fn then_completed(self) -> Self {
        if !self.reactions.completes() {
            self.fail(
                "expected the trigger to complete the instance",
                String::new(),
            );
        }
        self
    }

    /// Asserts that the trigger cancelled the earlier deadlines (completing does too).
    ///
    /// # Panics
    /// If it did not.
    #[track_caller]
    pub fn then_cancels_deadlines(self) -> Self {
        if !self.reactions.cancels_deadlines() && !self.reactions.completes() {
            self.fail(
                "expected the trigger to cancel the instance's deadlines",
                String::new(),
            );
        }
        self
    }

    /// Hands `inspect` the state after the trigger.
    pub fn then_state(self, inspect: impl FnOnce(&P::State)) -> Self {
        inspect(&self.state);
        self
    }

    #[track_caller]
    fn fail(&self, summary: &str, details: String) -> ! {
        let message = format!(
            "process scenario failed for `{}`: {summary}\ngiven:\n{}\nwhen: {}\n{details}",
            P::NAME,
            list(&self.given),
            self.when.as_deref().unwrap_or("(nothing)"),
        );
        panic!("{}", ScenarioFailure::new(message));
    }
}

fn list(items: &[String]) -> String {
    if items.is_empty() {
        return "  (nothing)".to_owned();
    }
    let mut out = String::new();
    for (index, item) in items.iter().enumerate() {
        if index > 0 {
            out.push('\n');
        }
        let _ = write!(out, "  {}. {item}", index + 1);
    }
    out
}

fn side_by_side<T: Debug + PartialEq>(expected: &[T], actual: &[T]) -> String {
    let rows = expected.len().max(actual.len());
    let mut out = String::from("     expected | actual");
    for index in 0..rows {
        let cell = |items: &[T]| {
            items
                .get(index)
                .map_or_else(|| "-".to_owned(), |item| format!("{item:?}"))
        };
        let marker = if expected.get(index) == actual.get(index) {
            ' '
        } else {
            '!'
        };
        let _ = write!(
            out,
            "\n{marker} {:>2} {} | {}",
            index + 1,
            cell(expected),
            cell(actual)
        );
    }
    out
}
