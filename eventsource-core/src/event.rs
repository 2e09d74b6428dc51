//! Events: facts with a stable name and a schema version, and how stored payloads decode.

use serde_json::Value;

use crate::envelope::Tag;

/// A domain event: a fact with a stable name and a schema version.
///
/// Usually derived (`#[derive(Event)]`). A current event type decodes payloads written at any
/// of its past versions by walking its upcaster chain (`previous` types converted with `From`
/// or `TryFrom`); [`Event::decode_version`] is that walk.
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not an event",
    label = "`{Self}` does not implement `Event`",
    note = "derive it: `#[derive(Event, Serialize, Deserialize)]` with `#[event(name = \"...\", version = 1)]`"
)]
pub trait Event: Sized + Send + Sync + 'static {
    /// The stable name stored with every event, e.g. `"cart.item_added"`.
    const NAME: &'static str;
    /// The schema version of this shape (1 for the first).
    const VERSION: u32;
    /// The wire shape of this version as canonical text: the type's `serde` attributes, then
    /// each field's `serde` attributes, name and type, e.g. `{sku:String;qty:u32}`. The derive
    /// writes it to the schema lock and uses it to explain a change. Empty for a hand-written
    /// impl that does not describe its shape.
    const SHAPE: &'static str = "";
    /// A 64-bit FNV-1a hash of [`Event::SHAPE`] as 16 hex digits: equal fingerprints, same
    /// wire shape. Empty when `SHAPE` is.
    const FINGERPRINT: &'static str = "";

    /// Decodes a payload stored at `version` (at most [`Event::VERSION`]) into this type,
    /// upcasting through earlier versions as needed.
    fn decode_version(version: u32, payload: &Value) -> Result<Self, DecodeFailure>;

    /// [`Event::decode_version`] of a payload given as JSON text (as PostgreSQL hands it over):
    /// the derive deserializes the current version straight from the text, without a
    /// [`Value`] in between, and older versions through the chain. The default parses a
    /// `Value` and calls `decode_version`, so a hand-written impl decodes both forms alike.
    fn decode_version_json(version: u32, json: &str) -> Result<Self, DecodeFailure> {
        let payload: Value = crate::payload::StoredJson::parse(json, version)?;
        Self::decode_version(version, &payload)
    }

    /// Pushes this event's personal fields ([`Personal`](crate::Personal) values declared
    /// with `#[personal(subject = ..)]`) and their subjects onto `out`. None by default.
    fn personal_fields(&self, out: &mut Vec<crate::PersonalField>) {
        let _ = out;
    }

    /// The JSON Schema of this version and of every older version of its chain, newest
    /// first, for a schema registry ([`crate::json_schema`]). The derive writes it (from
    /// [`Shape::json_schema`](crate::Shape::json_schema) of each version); a hand-written impl
    /// has none unless it writes it.
    fn version_schemas() -> Vec<crate::json_schema::EventSchema> {
        Vec::new()
    }

    /// The tags this event carries (see [`Tag`]): `#[derive(Event)]` makes one of each field
    /// marked `#[tag]` (`<field name>:<value>`) or `#[tag(key = "course")]`
    /// (`course:<value>`), using the field's `Display`. None by default.
    fn tags(&self) -> Vec<Tag> {
        Vec::new()
    }
}

/// The set of events one aggregate owns: the `<Aggregate>Event` enum that
/// `#[aggregate(events(A, B))]` generates, or an enum of your own with `#[derive(EventEnum)]`
/// whose variants are the events (`#[aggregate(events = CartEvent)]`).
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not an event enum",
    label = "`{Self}` does not implement `EventEnum`",
    note = "derive it on an enum whose variants are events: `#[derive(EventEnum, Serialize, Deserialize, Clone)]`; event structs are listed instead: `#[aggregate(events({Self}, ...))]`"
)]
pub trait EventEnum: Sized + Clone + Send + Sync + 'static {
    /// The names of every event of the set.
    const NAMES: &'static [&'static str];

    /// The stable name of this event.
    fn name(&self) -> &'static str;

    /// The schema version this event is written with (its current version).
    fn schema_version(&self) -> u32;

    /// Encodes the payload for storage.
    fn encode(&self) -> Result<Value, serde_json::Error>;

    /// Decodes a stored (name, schema version, payload) into the current type.
    fn decode(name: &str, version: u32, payload: &Value) -> Result<Self, DecodeFailure>;

    /// [`EventEnum::decode`] of a payload given as JSON text (see
    /// [`Event::decode_version_json`]); loads decode through it when the store hands over
    /// text ([`FoldPayload::Json`](crate::FoldPayload::Json)). The derives decode straight from
    /// the text; the default parses a `Value` and calls `decode`.
    fn decode_json(name: &str, version: u32, json: &str) -> Result<Self, DecodeFailure> {
        let payload: Value = crate::payload::StoredJson::parse(json, version)?;
        Self::decode(name, version, &payload)
    }

    /// Pushes the personal fields of this event onto `out` (see
    /// [`Event::personal_fields`]). None by default; the enum an aggregate generates asks its
    /// variant's event.
    fn personal_fields(&self, out: &mut Vec<crate::PersonalField>) {
        let _ = out;
    }

    /// The JSON Schema of every version of every event of the set, current and retired (each
    /// chain walked down to version 1), for a schema registry; write them with
    /// [`write_json_schemas`](crate::json_schema::write_json_schemas). The derives write it;
    /// a hand-written impl has none unless it writes it.
    fn event_schemas() -> Vec<crate::json_schema::EventSchema> {
        Vec::new()
    }

    /// The tags of this event ([`Event::tags`] of the variant's event for the enums
    /// `#[derive(Aggregate)]` generates). None by default. (Named apart from `Event::tags` so
    /// that a call is never ambiguous.)
    fn event_tags(&self) -> Vec<Tag> {
        Vec::new()
    }
}

/// Why a stored payload did not decode; the store context is added by [`crate::DecodeError`].
#[derive(Debug, thiserror::Error)]
pub enum DecodeFailure {
    /// No event of the set has this name.
    #[error("unknown event name")]
    UnknownEvent,
    /// The payload was written by a newer version of the code.
    #[error("schema version {found} is newer than the latest known version {latest}")]
    VersionTooNew {
        /// The stored schema version.
        found: u32,
        /// The newest version this code knows.
        latest: u32,
    },
    /// The stored schema version is not part of the event's version chain.
    #[error("schema version {found} is not in the version chain (latest is {latest})")]
    UnknownVersion {
        /// The stored schema version.
        found: u32,
        /// The newest version this code knows.
        latest: u32,
    },
    /// The payload does not match the event's shape at that version.
    #[error("payload does not match the shape of schema version {version}: {}", crate::limits::bounded(&source.to_string()))]
    Payload {
        /// The schema version whose shape was expected.
        version: u32,
        /// The deserializer's message.
        #[source]
        source: serde_json::Error,
    },
    /// A `TryFrom` upcaster step rejected the payload.
    #[error(
        "upcast of `{event}` from schema version {from} to {to} failed: {}",
        crate::limits::bounded(message)
    )]
    Upcast {
        /// The name of the event being upcast.
        event: &'static str,
        /// The version converted from.
        from: u32,
        /// The version converted to.
        to: u32,
        /// The upcaster's error message.
        message: String,
    },
}

impl DecodeFailure {
    /// Decodes `payload` as the shape `T` of schema `version`.
    pub fn parse<T: serde::de::DeserializeOwned>(
        version: u32,
        payload: &Value,
    ) -> Result<T, DecodeFailure> {
        T::deserialize(payload).map_err(|source| DecodeFailure::Payload { version, source })
    }
}
