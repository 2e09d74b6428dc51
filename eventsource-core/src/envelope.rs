//! The stored form of an event and the identifiers around it.

use std::fmt;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use uuid::Uuid;

use crate::event::EventEnum;
use crate::fingerprint::CommandFingerprint;

/// The name of a stream: `<category>-<id>`, e.g. `account-42`.
///
/// The category is the aggregate's name (the part before the first `-`), as in
/// EventStoreDB, so that a projection can follow all streams of one aggregate.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct StreamId(String);

impl StreamId {
    /// The stream of the aggregate `category` with the given id: `category-id`.
    pub fn new(category: &str, id: impl fmt::Display) -> Self {
        StreamId(format!("{category}-{id}"))
    }

    /// Wraps a full stream name as stored, e.g. `"account-42"`.
    pub fn from_raw(name: impl Into<String>) -> Self {
        StreamId(name.into())
    }

    /// The stream name as stored.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The category: the part before the first `-` (the whole name if there is none).
    pub fn category(&self) -> &str {
        self.0
            .split_once('-')
            .map_or(&self.0, |(category, _)| category)
    }
}

impl fmt::Display for StreamId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl AsRef<str> for StreamId {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

/// A stream version: the number of events in the stream after an event was appended.
///
/// Versions are 1-based and gap-free within a stream; `Version(0)` means "no events yet".
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
#[serde(transparent)]
pub struct Version(pub u64);

impl Version {
    /// The version of a stream that has no events.
    pub const NONE: Version = Version(0);

    /// The version after this one (the last possible version stays itself).
    #[must_use]
    pub fn next(self) -> Version {
        Version(self.0.saturating_add(1))
    }
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// What the writer believes the stream's version to be (optimistic concurrency).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum ExpectedVersion {
    /// Append whatever the stream's version is.
    Any,
    /// The stream must not exist (have no events).
    NoStream,
    /// The stream must exist (have at least one event).
    StreamExists,
    /// The stream must be exactly at this version; `Exact(Version(0))` is the same as `NoStream`.
    Exact(Version),
}

impl ExpectedVersion {
    /// Whether a stream currently at `actual` satisfies this expectation.
    pub fn matches(self, actual: Version) -> bool {
        match self {
            ExpectedVersion::Any => true,
            ExpectedVersion::NoStream => actual == Version::NONE,
            ExpectedVersion::StreamExists => actual > Version::NONE,
            ExpectedVersion::Exact(expected) => actual == expected,
        }
    }
}

impl fmt::Display for ExpectedVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ExpectedVersion::Any => f.write_str("any version"),
            ExpectedVersion::NoStream => f.write_str("no stream"),
            ExpectedVersion::StreamExists => f.write_str("an existing stream"),
            ExpectedVersion::Exact(v) => write!(f, "version {v}"),
        }
    }
}

/// A position in the global log, unique per event and increasing in append order.
///
/// Positions are *not* a safe resume point on stores where concurrent transactions commit
/// out of order; resume from a [`Checkpoint`] instead.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
#[serde(transparent)]
pub struct Position(pub u64);

impl fmt::Display for Position {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// An opaque, ordered, serializable resume token for reads of the global log.
///
/// A reader that stores the checkpoint of the last event it handled and later asks for the
/// events after it sees every event exactly once, in order, even on stores where concurrent
/// transactions commit out of position order (PostgreSQL pairs the writing transaction's id
/// with the position for this). `Checkpoint::START` is before every event.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
pub struct Checkpoint {
    // Field order matters: the derived `Ord` compares the transaction first.
    transaction: u64,
    position: u64,
}

impl Checkpoint {
    /// Before the first event of the log.
    pub const START: Checkpoint = Checkpoint {
        transaction: 0,
        position: 0,
    };

    /// Builds a checkpoint from a store's (transaction, position) pair. For store adapters.
    pub fn from_parts(transaction: u64, position: u64) -> Self {
        Checkpoint {
            transaction,
            position,
        }
    }

    /// The store's transaction order component. For store adapters.
    pub fn transaction(&self) -> u64 {
        self.transaction
    }

    /// The global position of the event this checkpoint was taken at.
    pub fn position(&self) -> Position {
        Position(self.position)
    }
}

impl fmt::Display for Checkpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.transaction, self.position)
    }
}

/// Data carried beside an event's payload: tracing ids and the application's own fields.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Metadata {
    /// The id shared by everything that happened because of one original request.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub correlation_id: Option<Uuid>,
    /// The id of the message (command or event) that directly caused this event.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub causation_id: Option<Uuid>,
    /// The idempotency key of the command that wrote this event, if it had one
    /// ([`CommandMetadata::idempotency_key`](crate::CommandMetadata::idempotency_key)). Kept
    /// forever, with the event: a repeat of the key on the same stream, however late, replays
    /// the stored outcome.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idempotency_key: Option<String>,
    /// The fingerprint of the keyed command that wrote this event (its name and, where it
    /// could be read, a digest of its content): what a repeat of the key is compared with.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command: Option<CommandFingerprint>,
    /// Application-defined fields (user id, tenant, client ip...).
    #[serde(default, skip_serializing_if = "Map::is_empty")]
    pub custom: Map<String, Value>,
}

impl Metadata {
    /// Sets an application field, serialized to JSON.
    pub fn insert<T: Serialize>(&mut self, key: &str, value: &T) -> Result<(), serde_json::Error> {
        self.custom
            .insert(key.to_owned(), serde_json::to_value(value)?);
        Ok(())
    }

    /// Reads an application field back as `T`; `Ok(None)` when absent.
    pub fn get<T: serde::de::DeserializeOwned>(
        &self,
        key: &str,
    ) -> Result<Option<T>, serde_json::Error> {
        self.custom
            .get(key)
            .map(|value| T::deserialize(value))
            .transpose()
    }
}

/// An event about to be appended, already encoded.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct NewEvent {
    /// Unique id; re-appending an id that is already stored is a no-op (idempotent retry).
    pub event_id: Uuid,
    /// The event's stable name, e.g. `account.deposited`.
    pub name: String,
    /// The schema version of the payload.
    pub schema_version: u32,
    /// The encoded event.
    pub payload: Value,
    /// Tracing ids and application fields.
    pub metadata: Metadata,
    /// The tags that place the event in decisions' consistency boundaries (see [`Tag`] and
    /// [`Query`](crate::Query)); usually from the event type's `#[tag]` fields.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<Tag>,
}

impl NewEvent {
    /// A new event with a fresh UUID v7 id and empty metadata.
    pub fn new(name: impl Into<String>, schema_version: u32, payload: Value) -> Self {
        NewEvent {
            event_id: Uuid::now_v7(),
            name: name.into(),
            schema_version,
            payload,
            metadata: Metadata::default(),
            tags: Vec::new(),
        }
    }

    /// Encodes a typed event (an aggregate's event enum, or anything `Into` it) under its
    /// name and current schema version, with a fresh id and empty metadata.
    ///
    /// Appending through [`Repository::append`](crate::Repository::append) does this for you.
    pub fn encode<E: EventEnum>(event: &E) -> Result<Self, serde_json::Error> {
        Ok(NewEvent::new(
            event.name(),
            event.schema_version(),
            crate::personal::encode_marked(event)?,
        )
        .with_tags(event.event_tags()))
    }

    /// Replaces the tags.
    #[must_use]
    pub fn with_tags(mut self, tags: impl IntoIterator<Item = Tag>) -> Self {
        self.tags = tags.into_iter().collect();
        self
    }

    /// Replaces the metadata.
    #[must_use]
    pub fn with_metadata(mut self, metadata: Metadata) -> Self {
        self.metadata = metadata;
        self
    }

    /// Replaces the event id.
    #[must_use]
    pub fn with_id(mut self, event_id: Uuid) -> Self {
        self.event_id = event_id;
        self
    }
}

/// A label that places an event in the consistency boundaries of decisions: `key:value`,
/// e.g. `course:c-42` or `username:ada`.
///
/// A [`Query`](crate::Query) selects events by name and tags across streams; an append
/// conditional on it fails when an event carrying its tags was written since the query was
/// read (see [`DecisionStore`](crate::DecisionStore)). Tags are plaintext and indexed: never
/// put personal data in them that must be erasable.
///
/// ```
/// # use eventsource_core::Tag;
/// assert_eq!(Tag::new("course", 42).as_str(), "course:42");
/// ```
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Tag(String);

impl Tag {
    /// The tag `key:value`.
    pub fn new(key: &str, value: impl fmt::Display) -> Self {
        Tag(format!("{key}:{value}"))
    }

    /// A tag as stored, e.g. `"course:42"`.
    pub fn from_raw(tag: impl Into<String>) -> Self {
        Tag(tag.into())
    }

    /// The tag as stored.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Tag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// An event as stored: the envelope around a payload.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RecordedEvent {
    /// Unique id (UUID v7 unless the writer chose one).
    pub event_id: Uuid,
    /// The stream the event belongs to.
    pub stream_id: StreamId,
    /// The event's version within its stream (1-based, gap-free).
    pub version: Version,
    /// The global log position.
    pub position: Position,
    /// The resume token for global reads that handled this event.
    pub checkpoint: Checkpoint,
    /// The event's stable name.
    pub name: String,
    /// The schema version the payload was written with.
    pub schema_version: u32,
    /// The encoded event, as written.
    pub payload: Value,
    /// Tracing ids and application fields.
    pub metadata: Metadata,
    /// When the store recorded the event.
    pub recorded_at: DateTime<Utc>,
}

impl RecordedEvent {
    /// This event as a reader of `envelope` sees it: with [`Envelope::Lean`], `event_id` nil,
    /// `metadata` empty and `recorded_at` the Unix epoch.
    #[must_use]
    pub fn within(mut self, envelope: Envelope) -> Self {
        if envelope == Envelope::Lean {
            self.event_id = Uuid::nil();
            self.metadata = Metadata::default();
            self.recorded_at = DateTime::UNIX_EPOCH;
        }
        self
    }
}

/// The fields of [`RecordedEvent`] a reader of the global log needs, so that a store can leave
/// out the rest ([`EventStore::read_all_within`](crate::EventStore::read_all_within)); a
/// projection declares it as [`Projection::ENVELOPE`](crate::Projection::ENVELOPE).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Envelope {
    /// Every field (the default).
    #[default]
    Full,
    /// What finding, ordering and decoding an event takes: `stream_id`, `version`,
    /// `position`, `checkpoint`, `name`, `schema_version` and `payload`. The other fields
    /// are left at fixed values on every store: `event_id` nil, `metadata` empty (no
    /// correlation or causation id) and `recorded_at` the Unix epoch. For handlers that read
    /// none of them; the PostgreSQL adapter then sends four columns fewer per event, which
    /// made a catch-up about 12% faster (BENCHMARKS.md).
    Lean,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn category_is_the_part_before_the_first_dash() {
        assert_eq!(StreamId::new("cart", "1-2-3").category(), "cart");
        assert_eq!(StreamId::new("cart", "1-2-3").as_str(), "cart-1-2-3");
        assert_eq!(StreamId::from_raw("orphan").category(), "orphan");
    }

    #[test]
    fn expected_version_matches() {
        let cases = [
            (ExpectedVersion::Any, 0, true),
            (ExpectedVersion::Any, 7, true),
            (ExpectedVersion::NoStream, 0, true),
            (ExpectedVersion::NoStream, 1, false),
            (ExpectedVersion::StreamExists, 0, false),
            (ExpectedVersion::StreamExists, 1, true),
            (ExpectedVersion::Exact(Version(3)), 3, true),
            (ExpectedVersion::Exact(Version(3)), 4, false),
            (ExpectedVersion::Exact(Version(0)), 0, true),
        ];
        for (expected, actual, ok) in cases {
            assert_eq!(
                expected.matches(Version(actual)),
                ok,
                "{expected:?} vs {actual}"
            );
        }
    }

    #[test]
    fn checkpoints_order_by_transaction_then_position() {
        let early_tx_late_pos = Checkpoint::from_parts(5, 100);
        let late_tx_early_pos = Checkpoint::from_parts(6, 90);
        assert!(early_tx_late_pos < late_tx_early_pos);
        assert!(Checkpoint::START < Checkpoint::from_parts(0, 1));
        assert_eq!(late_tx_early_pos.to_string(), "6:90");
    }
}
