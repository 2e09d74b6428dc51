//! Given/when/then tests for aggregates: given past events, when a command arrives, then these
//! events (or this error, or this state) follow.
//!
//! Every aggregate gets `given` from the [`GivenWhenThen`] trait (in the prelude). The harness
//! is pure: no store, no runtime, only the aggregate's own `apply` and `handle`.
//!
//! ```ignore
//! Account::given([Opened { owner: "ada".into() }])
//!     .and(Deposited { amount: 10 })
//!     .when(Withdraw { amount: 30 })
//!     .then_error(AccountError::InsufficientFunds { balance: 10, requested: 30 });
//! ```
//!
//! Each `then*` assertion panics with a message that shows the given events, the command and
//! the expected and actual outcome side by side; each has a `check*` twin that returns the
//! failure as a [`ScenarioFailure`] instead.
//!
//! Reactions have their own scenarios: [`PolicyScenario`] (when events, then commands) and
//! [`ProcessScenario`] (given events or a state, when an event or a deadline, then commands,
//! deadlines, completion).

use std::any::Any;
use std::fmt::{self, Debug, Write as _};

use crate::aggregate::Aggregate;

pub use crate::reaction::scenario::{PolicyScenario, ProcessScenario, SCENARIO_CORRELATION};

/// Starts a given/when/then scenario on any aggregate. Implemented for every [`Aggregate`].
pub trait GivenWhenThen: Aggregate {
    /// A scenario whose aggregate has already recorded `events` (in order).
    fn given<I>(events: I) -> Given<Self>
    where
        I: IntoIterator,
        I::Item: Into<Self::Event>,
    {
        Given {
            events: events.into_iter().map(Into::into).collect(),
            services: None,
        }
    }

    /// A scenario on a new aggregate, with no past events.
    fn given_nothing() -> Given<Self> {
        Given {
            events: Vec::new(),
            services: None,
        }
    }
}

impl<A: Aggregate> GivenWhenThen for A {}

/// The past of a scenario: the events the aggregate has recorded.
pub struct Given<A: Aggregate> {
    events: Vec<A::Event>,
    services: Option<A::Services>,
}

impl<A: Aggregate> Given<A> {
    /// Adds one more past event (events of different types do not fit in one array).
    #[must_use]
    pub fn and(mut self, event: impl Into<A::Event>) -> Self {
        self.events.push(event.into());
        self
    }

    /// The services the handlers receive, for aggregates that declare `services`.
    #[must_use]
    pub fn with_services(mut self, services: A::Services) -> Self {
        self.services = Some(services);
        self
    }

    /// Folds the past events, then decides on `command`.
    ///
    /// # Panics
    /// If the aggregate declares services and none were given with [`Given::with_services`].
    #[track_caller]
    pub fn when(self, command: impl Into<A::Command>) -> When<A>
    where
        A::Command: Debug,
    {
        let mut state = A::default();
        for event in &self.events {
            state.evolve(event);
        }
        let command = command.into();
        let command_text = format!("{command:?}");
        let unit: &'static () = &();
        let services = match self.services.as_ref() {
            Some(services) => services,
            None => match (unit as &dyn Any).downcast_ref::<A::Services>() {
                Some(services) => services,
                None => panic!(
                    "aggregate `{}` declares services: call `.with_services(...)` before `.when(...)`",
                    A::NAME
                ),
            },
        };
        let outcome = state
            .decide(command, services)
            .map(|events| events.into_vec());
        When {
            given: self.events,
            command: command_text,
            state,
            outcome,
        }
    }
}

/// A scenario after its command: what the aggregate decided, ready to be asserted.
pub struct When<A: Aggregate> {
    given: Vec<A::Event>,
    command: String,
    state: A,
    outcome: Result<Vec<A::Event>, A::Error>,
}

impl<A: Aggregate> When<A>
where
    A::Event: PartialEq + Debug,
    A::Error: Debug,
{
    /// Asserts that the command produced exactly `expected`, in order.
    ///
    /// # Panics
    /// With the expected and actual events side by side when they differ, or with the error if
    /// the command was rejected.
    #[track_caller]
    pub fn then<I>(self, expected: I) -> Self
    where
        I: IntoIterator,
        I::Item: Into<A::Event>,
    {
        if let Err(failure) = self.check(expected) {
            panic!("{failure}");
        }
        self
    }

    /// Asserts that the command was accepted and produced no events.
    ///
    /// # Panics
    /// As [`When::then`].
    #[track_caller]
    pub fn then_no_events(self) -> Self {
        self.then(Vec::<A::Event>::new())
    }

    /// Like [`When::then`], but returns the failure instead of panicking.
    pub fn check<I>(&self, expected: I) -> Result<(), ScenarioFailure>
    where
        I: IntoIterator,
        I::Item: Into<A::Event>,
    {
        let expected: Vec<A::Event> = expected.into_iter().map(Into::into).collect();
        match &self.outcome {
            Ok(actual) if *actual == expected => Ok(()),
            Ok(actual) => Err(self.failure(
                "the command produced other events than expected",
                side_by_side(&expected, actual),
            )),
            Err(error) => Err(self.failure(
                "expected events, but the command was rejected",
                format!(
                    "rejected with: {error:?}\nexpected:\n{}",
                    list(&expected, "  (no events)")
                ),
            )),
        }
    }

    /// Asserts that the command was rejected with `expected`.
    ///
    /// # Panics
    /// If it was accepted, or rejected with another error.
    #[track_caller]
    pub fn then_error(self, expected: A::Error) -> Self
    where
        A::Error: PartialEq,
    {
        if let Err(failure) = self.check_error(&expected) {
            panic!("{failure}");
        }
        self
    }

    /// Like [`When::then_error`], but returns the failure instead of panicking.
    pub fn check_error(&self, expected: &A::Error) -> Result<(), ScenarioFailure>
    where
        A::Error: PartialEq,
    {
        match &self.outcome {
            Err(actual) if actual == expected => Ok(()),
            Err(actual) => Err(self.failure(
                "the command was rejected with another error than expected",
                format!("expected error: {expected:?}\nactual error:   {actual:?}"),
            )),
            Ok(actual) => Err(self.failure(
                "expected the command to be rejected, but it was accepted",
                format!(
                    "expected error: {expected:?}\nproduced:\n{}",
                    list(actual, "  (no events)")
                ),
            )),
        }
    }

    /// Asserts that the command was rejected with an error for which `matches` holds, e.g.
    /// `|e| matches!(e, AccountError::InsufficientFunds { .. })`.
    ///
    /// # Panics
    /// If it was accepted, or `matches` returns false.
    #[track_caller]
    pub fn then_error_matches(self, matches: impl FnOnce(&A::Error) -> bool) -> Self {
        let failure = match &self.outcome {
            Err(actual) if matches(actual) => return self,
            Err(actual) => self.failure(
                "the command was rejected with an error that does not match",
                format!("actual error: {actual:?}"),
            ),
            Ok(actual) => self.failure(
                "expected the command to be rejected, but it was accepted",
                format!("produced:\n{}", list(actual, "  (no events)")),
            ),
        };
        panic!("{failure}");
    }

    /// Hands `inspect` the state after the produced events are applied, for assertions on it.
    ///
    /// # Panics
    /// If the command was rejected (there is no new state), or if `inspect` panics.
    #[track_caller]
    pub fn then_state(self, inspect: impl FnOnce(&A)) -> Self {
        match &self.outcome {
            Ok(events) => {
                let mut state = A::default();
                for event in self.given.iter().chain(events) {
                    state.evolve(event);
                }
                inspect(&state);
                self
            }
            Err(error) => panic!(
                "{}",
                self.failure(
                    "expected a new state, but the command was rejected",
                    format!("rejected with: {error:?}"),
                )
            ),
        }
    }

    /// The state the command was decided on (the fold of the given events).
    pub fn state_before(&self) -> &A {
        &self.state
    }

    /// What the command decided: its events, or its error.
    pub fn outcome(&self) -> Result<&[A::Event], &A::Error> {
        self.outcome.as_deref()
    }

    fn failure(&self, summary: &str, details: String) -> ScenarioFailure {
        ScenarioFailure {
            message: format!(
                "given/when/then failed for `{}`: {summary}\ngiven:\n{}\nwhen: {}\n{details}",
                A::NAME,
                list(&self.given, "  (no events)"),
                self.command,
            ),
        }
    }
}

/// Why a given/when/then assertion failed: its message shows the given events, the command and
/// the expected and actual outcome.
#[derive(Clone, PartialEq, Eq)]
pub struct ScenarioFailure {
    message: String,
}

impl ScenarioFailure {
    pub(crate) fn new(message: String) -> Self {
        ScenarioFailure { message }
    }

    /// The full failure message.
    pub fn message(&self) -> &str {
        &self.message
    }
}

impl fmt::Display for ScenarioFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl Debug for ScenarioFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The message is multi-line; print it as is so that `unwrap()` shows a readable table.
        f.write_str(&self.message)
    }
}

impl std::error::Error for ScenarioFailure {}

fn list<E: Debug>(events: &[E], empty: &str) -> String {
    if events.is_empty() {
        return empty.to_owned();
    }
    let mut out = String::new();
    for (index, event) in events.iter().enumerate() {
        if index > 0 {
            out.push('\n');
        }
        let _ = write!(out, "  {}. {event:?}", index + 1);
    }
    out
}

/// Expected and actual events in two columns; rows that differ are marked with `!`.
fn side_by_side<E: Debug + PartialEq>(expected: &[E], actual: &[E]) -> String {
    let rows = expected.len().max(actual.len());
    let cell = |events: &[E], index: usize| {
        events
            .get(index)
            .map_or_else(|| "-".to_owned(), |event| format!("{event:?}"))
    };
    let left: Vec<String> = (0..rows).map(|i| cell(expected, i)).collect();
    let width = left
        .iter()
        .map(|text| text.chars().count())
        .chain(["expected".len()])
        .max()
        .unwrap_or(0);
    let mut out = format!("     {:width$} | actual", "expected");
    for (index, left) in left.iter().enumerate() {
        let marker = if expected.get(index) == actual.get(index) {
            ' '
        } else {
            '!'
        };
        let _ = write!(
            out,
            "\n{marker} {:>2} {left:width$} | {}",
            index + 1,
            cell(actual, index)
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::side_by_side;

    #[test]
    fn side_by_side_marks_differing_rows() {
        let table = side_by_side(&["a", "b"], &["a", "c", "d"]);
        assert_eq!(
            table,
            "     expected | actual\n   1 \"a\"      | \"a\"\n!  2 \"b\"      | \"c\"\n!  3 -        | \"d\""
        );
    }
}
