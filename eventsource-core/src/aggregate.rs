//! Aggregates: state folded from events, deciding on commands.

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::event::EventEnum;
use crate::fingerprint::CommandFingerprint;

/// An event-sourced aggregate: state that is the fold of its events, and that decides
/// which events a command produces.
///
/// Usually derived (`#[derive(Aggregate)]`), which generates the event and command enums and
/// dispatches to your [`Apply`] and [`Handle`] impls.
///
/// The state is serializable so that it can be snapshotted; `STATE_FINGERPRINT` identifies its
/// serialized shape, and a snapshot written with another fingerprint is ignored and the stream
/// refolded, never decoded into wrong state.
pub trait Aggregate:
    Default + Serialize + DeserializeOwned + Send + Sync + Sized + 'static
{
    /// The aggregate's name, which is also its streams' category (`<name>-<id>`).
    const NAME: &'static str;
    /// How often the repository stores a snapshot.
    const SNAPSHOT: SnapshotPolicy = SnapshotPolicy::Never;
    /// An identifier of the state's schema: change it whenever the state's shape changes.
    const STATE_FINGERPRINT: &'static str;

    /// The events this aggregate owns (the generated `<Name>Event` enum).
    type Event: EventEnum;
    /// The commands it handles (the generated `<Name>Command` enum).
    type Command: Send + 'static;
    /// Why a command is rejected.
    type Error: std::error::Error + Send + Sync + 'static;
    /// Outside help the handlers receive (a price list, a uniqueness check); `()` for none.
    type Services: Send + Sync + 'static;

    /// Folds one event into the state. Must not fail: events are facts.
    fn evolve(&mut self, event: &Self::Event);

    /// Decides which events a command produces, or rejects it.
    fn decide(
        &self,
        command: Self::Command,
        services: &Self::Services,
    ) -> Result<Events<Self>, Self::Error>;

    /// What identifies `command` when it carries an idempotency key: a repeat of the key on
    /// the same stream must match the fingerprint stored with the first execution, or it is
    /// [`ExecuteError::IdempotencyKeyReused`](crate::ExecuteError::IdempotencyKeyReused).
    ///
    /// `#[derive(Aggregate)]` returns the command's name (its variant) with a digest of its
    /// content when the command implements `Serialize`; see
    /// [`CommandFingerprint`] for the rule. The default, for hand-written aggregates, is
    /// `None`: a repeated key is then not compared, only replayed.
    fn command_fingerprint(command: &Self::Command) -> Option<CommandFingerprint> {
        let _ = command;
        None
    }
}

/// Folds one event type into an aggregate's state.
///
/// `#[derive(Aggregate)]` dispatches each event listed in `events(...)` to its `Apply` impl, so
/// a listed event without one is a compile error naming the event and the aggregate.
#[diagnostic::on_unimplemented(
    message = "`{Self}` does not apply the event `{E}`",
    label = "`{E}` is named in `events` but `{Self}` has no `Apply<{E}>` impl",
    note = "fold the event into the state: `impl Apply<{E}> for {Self} {{ fn apply(&mut self, event: &{E}) {{ ... }} }}`"
)]
pub trait Apply<E> {
    /// Updates the state with the fact `event`.
    fn apply(&mut self, event: &E);
}

/// Decides on one command type.
///
/// `#[derive(Aggregate)]` dispatches each command listed in `commands(...)` to its `Handle`
/// impl (or [`HandleWith`] when the aggregate declares `services`), so a listed command without
/// one is a compile error naming the command and the aggregate.
#[diagnostic::on_unimplemented(
    message = "`{Self}` does not handle the command `{C}`",
    label = "`{C}` is listed in `commands(...)` but `{Self}` has no `Handle<{C}>` impl",
    note = "decide on the command: `impl Handle<{C}> for {Self} {{ fn handle(&self, command: {C}) -> Result<Events<Self>, Self::Error> {{ ... }} }}`"
)]
pub trait Handle<C>: Aggregate {
    /// The events the command produces, or why it is rejected.
    fn handle(&self, command: C) -> Result<Events<Self>, Self::Error>;
}

/// Decides on one command type with the aggregate's declared services.
///
/// Used instead of [`Handle`] by aggregates that declare `#[aggregate(services = ...)]`.
#[diagnostic::on_unimplemented(
    message = "`{Self}` does not handle the command `{C}`",
    label = "`{C}` is listed in `commands(...)` but `{Self}` has no `HandleWith<{C}>` impl",
    note = "`{Self}` declares `services`, so its handlers receive them: `impl HandleWith<{C}> for {Self} {{ fn handle(&self, command: {C}, services: &Self::Services) -> Result<Events<Self>, Self::Error> {{ ... }} }}`"
)]
pub trait HandleWith<C>: Aggregate {
    /// The events the command produces, or why it is rejected.
    fn handle(&self, command: C, services: &Self::Services) -> Result<Events<Self>, Self::Error>;
}

/// An event that aggregate `A` can emit: a type its event enum converts from (each event
/// listed in `#[aggregate(events(...))]`, or the event enum itself). What [`Events::one`] and
/// [`Events::and`] accept.
///
/// Implemented for every `T: Into<A::Event>`; never implement it yourself. It exists so that
/// emitting an event the aggregate does not own is reported as such, naming the aggregate,
/// rather than as a missing `From` impl on the generated enum.
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not an event of `{A}`",
    label = "`{A}` cannot emit `{Self}`: it is not among its events",
    note = "add it to the aggregate's events: `#[aggregate(events(..., {Self}))]` on `{A}` (and `impl Apply<{Self}> for {A}`)",
    note = "with `events = SomeEnum`, emit a variant of that enum instead"
)]
pub trait EventOf<A: Aggregate> {
    /// Converts into the aggregate's event enum.
    fn into_event(self) -> A::Event;
}

#[diagnostic::do_not_recommend]
impl<A: Aggregate, T: Into<A::Event>> EventOf<A> for T {
    fn into_event(self) -> A::Event {
        self.into()
    }
}

/// What an event listed in `#[aggregate(events(...))]` must be: an [`Event`](crate::Event)
/// (which deserializes) that serializes, clones, prints and compares (the generated event enum
/// derives those through this trait). The generated enum reaches them through it, spanned at
/// the event's name in the list, so that a missing derive is reported there, naming the
/// aggregate.
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot be an event of `{A}`: an event listed in `events(...)` is `Event + Serialize + Clone + Debug + PartialEq`",
    label = "listed in `events(...)` of `{A}`",
    note = "derive what is missing on `{Self}`: `#[derive(Event, Serialize, Deserialize, Clone, Debug, PartialEq)]`"
)]
pub trait ListedEvent<A>: Sized {
    /// `Event::NAME`.
    const LISTED_NAME: &'static str;
    /// `Event::VERSION`.
    const LISTED_VERSION: u32;
    /// `Event::decode_version` of a value, `Event::decode_version_json` of JSON text.
    fn decode_listed(
        version: u32,
        payload: impl crate::upcast::StoredJson,
    ) -> Result<Self, crate::DecodeFailure>;
    /// `Clone::clone`.
    fn clone_event(&self) -> Self;
    /// `PartialEq::eq`.
    fn eq_event(&self, other: &Self) -> bool;
    /// `Debug::fmt`.
    fn fmt_event(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result;
    /// The stored payload.
    fn encode_event(&self) -> Result<serde_json::Value, serde_json::Error>;
    /// `Event::personal_fields`.
    fn listed_personal_fields(&self, out: &mut Vec<crate::PersonalField>) {
        let _ = out;
    }
    /// `Event::version_schemas`.
    fn listed_schemas() -> Vec<crate::json_schema::EventSchema>;
    /// `Event::tags`.
    fn listed_tags(&self) -> Vec<crate::Tag>;
}

#[diagnostic::do_not_recommend]
impl<A, E> ListedEvent<A> for E
where
    E: crate::Event + Serialize + Clone + std::fmt::Debug + PartialEq,
{
    const LISTED_NAME: &'static str = E::NAME;
    const LISTED_VERSION: u32 = E::VERSION;
    fn decode_listed(
        version: u32,
        payload: impl crate::upcast::StoredJson,
    ) -> Result<Self, crate::DecodeFailure> {
        payload.decode_event::<E>(version)
    }
    fn clone_event(&self) -> Self {
        self.clone()
    }
    fn eq_event(&self, other: &Self) -> bool {
        self == other
    }
    fn fmt_event(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Debug::fmt(self, f)
    }
    fn encode_event(&self) -> Result<serde_json::Value, serde_json::Error> {
        serde_json::to_value(self)
    }
    fn listed_personal_fields(&self, out: &mut Vec<crate::PersonalField>) {
        crate::Event::personal_fields(self, out);
    }
    fn listed_schemas() -> Vec<crate::json_schema::EventSchema> {
        E::version_schemas()
    }
    fn listed_tags(&self) -> Vec<crate::Tag> {
        crate::Event::tags(self)
    }
}

/// When the repository snapshots an aggregate.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SnapshotPolicy {
    /// Never; every load folds the whole stream.
    Never,
    /// Whenever an append crosses a multiple of `n` events.
    Every(u64),
}

impl SnapshotPolicy {
    /// Whether moving a stream from `before` to `after` events should store a snapshot.
    pub fn due(self, before: u64, after: u64) -> bool {
        match self {
            SnapshotPolicy::Never => false,
            SnapshotPolicy::Every(0) => false,
            SnapshotPolicy::Every(n) => before / n != after / n,
        }
    }
}

/// The events a command produced, in order.
pub struct Events<A: Aggregate>(Vec<A::Event>);

impl<A: Aggregate> Events<A> {
    /// No events: the command changed nothing.
    pub fn none() -> Self {
        Events(Vec::new())
    }

    /// One event.
    pub fn one(event: impl EventOf<A>) -> Self {
        Events(vec![event.into_event()])
    }

    /// Adds an event after the ones already here.
    #[must_use]
    pub fn and(mut self, event: impl EventOf<A>) -> Self {
        self.0.push(event.into_event());
        self
    }

    /// The events, in order.
    pub fn into_vec(self) -> Vec<A::Event> {
        self.0
    }

    /// The events, in order.
    pub fn as_slice(&self) -> &[A::Event] {
        &self.0
    }

    /// How many events.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl<A: Aggregate> Default for Events<A> {
    fn default() -> Self {
        Events::none()
    }
}

impl<A: Aggregate> Clone for Events<A> {
    fn clone(&self) -> Self {
        Events(self.0.clone())
    }
}

impl<A: Aggregate> std::fmt::Debug for Events<A>
where
    A::Event: std::fmt::Debug,
{
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(&self.0).finish()
    }
}

impl<A: Aggregate> FromIterator<A::Event> for Events<A> {
    fn from_iter<I: IntoIterator<Item = A::Event>>(iter: I) -> Self {
        Events(iter.into_iter().collect())
    }
}

impl<A: Aggregate> From<Vec<A::Event>> for Events<A> {
    fn from(events: Vec<A::Event>) -> Self {
        Events(events)
    }
}

impl<A: Aggregate> IntoIterator for Events<A> {
    type Item = A::Event;
    type IntoIter = std::vec::IntoIter<A::Event>;
    fn into_iter(self) -> Self::IntoIter {
        self.0.into_iter()
    }
}

#[cfg(test)]
mod tests {
    use super::SnapshotPolicy;

    #[test]
    fn snapshot_is_due_when_a_multiple_is_crossed() {
        let every3 = SnapshotPolicy::Every(3);
        assert!(!every3.due(0, 2));
        assert!(every3.due(2, 3));
        assert!(every3.due(2, 7), "a batch that crosses two multiples");
        assert!(!every3.due(3, 5));
        assert!(!SnapshotPolicy::Never.due(0, 1_000));
        assert!(!SnapshotPolicy::Every(0).due(0, 1_000));
    }
}
