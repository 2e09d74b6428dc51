//! What a load reads of each event ([`FoldEvent`]), a page at a time ([`FoldPage`]).

use std::borrow::Cow;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::Value;
use serde_json::value::RawValue;

use crate::envelope::{Position, RecordedEvent, Version};
use crate::event::{DecodeFailure, EventEnum};

/// The parts of a stored event that folding it into an aggregate reads: what
/// [`EventStore::read_stream_for_fold`](crate::EventStore::read_stream_for_fold) returns (no
/// id, metadata, time or transaction).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FoldEvent {
    /// The event's version in its stream.
    pub version: Version,
    /// Its position in the global log (named in decode errors).
    pub position: Position,
    /// The event's stable name.
    pub name: String,
    /// The schema version its payload was written with.
    pub schema_version: u32,
    /// The payload, parsed or as JSON text.
    pub payload: FoldPayload,
}

impl From<RecordedEvent> for FoldEvent {
    fn from(record: RecordedEvent) -> Self {
        FoldEvent {
            version: record.version,
            position: record.position,
            name: record.name,
            schema_version: record.schema_version,
            payload: FoldPayload::Value(record.payload),
        }
    }
}

/// A [`FoldEvent`]'s payload, in the form the store holds it: a load decodes either straight
/// into the aggregate's event ([`FoldPayload::decode`]).
///
/// Equality compares JSON values: text equals the value it parses to (text that does not
/// parse equals only the same text). It serializes as the JSON it holds and deserializes as a
/// [`FoldPayload::Value`].
#[derive(Clone, Debug)]
pub enum FoldPayload {
    /// A parsed value: what stores that hold values (the in-memory store), the default
    /// `read_stream_for_fold` and wrappers that rewrite payloads (`Shredding`) hand over.
    Value(Value),
    /// The payload's JSON text as the store sent it (PostgreSQL's `jsonb`), which
    /// [`EventEnum::decode_json`] deserializes straight into the typed event, without a
    /// [`Value`] in between. Not checked when read: text that is not JSON fails that decode as
    /// [`DecodeFailure::Payload`].
    Json(Box<str>),
}

impl FoldPayload {
    /// Decodes the payload of an event named `name`, stored at schema `version`, into `E`:
    /// [`EventEnum::decode`] of a value, [`EventEnum::decode_json`] of text.
    pub fn decode<E: EventEnum>(&self, name: &str, version: u32) -> Result<E, DecodeFailure> {
        match self {
            FoldPayload::Value(value) => E::decode(name, version, value),
            FoldPayload::Json(json) => E::decode_json(name, version, json),
        }
    }

    /// The payload as a value: borrowed, or parsed from the text.
    pub fn to_value(&self) -> Result<Cow<'_, Value>, serde_json::Error> {
        match self {
            FoldPayload::Value(value) => Ok(Cow::Borrowed(value)),
            FoldPayload::Json(json) => serde_json::from_str(json).map(Cow::Owned),
        }
    }
}

impl From<Value> for FoldPayload {
    fn from(value: Value) -> Self {
        FoldPayload::Value(value)
    }
}

impl PartialEq for FoldPayload {
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (FoldPayload::Value(a), FoldPayload::Value(b)) => a == b,
            (FoldPayload::Json(a), FoldPayload::Json(b)) if a == b => true,
            _ => match (self.to_value(), other.to_value()) {
                (Ok(a), Ok(b)) => a == b,
                _ => false,
            },
        }
    }
}

impl Serialize for FoldPayload {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            FoldPayload::Value(value) => value.serialize(serializer),
            FoldPayload::Json(json) => {
                let raw: &RawValue = serde_json::from_str(json).map_err(|error| {
                    serde::ser::Error::custom(format!("the payload is not JSON: {error}"))
                })?;
                raw.serialize(serializer)
            }
        }
    }
}

impl<'de> Deserialize<'de> for FoldPayload {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        Value::deserialize(deserializer).map(FoldPayload::Value)
    }
}

/// A page of [`FoldEvent`]s of one stream, in version order.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct FoldPage {
    /// The events, in version order.
    pub events: Vec<FoldEvent>,
    /// True when the store knows that no event of the stream came after the page's last one
    /// when it was read, so that a reader need not ask for another page. False says nothing
    /// (a full page may or may not be the stream's end).
    pub last: bool,
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use serde_json::json;

    use super::FoldPayload;

    #[test]
    fn text_equals_the_value_it_parses_to() {
        let value = FoldPayload::Value(json!({ "a": [1, "x"], "b": null }));
        let text = FoldPayload::Json(r#"{"b": null, "a": [1, "x"]}"#.into());
        assert_eq!(value, text);
        assert_eq!(text, value);
        assert_ne!(text, FoldPayload::Value(json!({ "a": [1, "x"] })));
        let broken = FoldPayload::Json("{".into());
        assert_eq!(broken, FoldPayload::Json("{".into()));
        assert_ne!(broken, FoldPayload::Value(json!({})));
    }

    #[test]
    fn text_serializes_as_its_json() {
        let text = FoldPayload::Json(r#"{"a": 1}"#.into());
        assert_eq!(serde_json::to_value(&text).unwrap(), json!({ "a": 1 }));
        assert!(serde_json::to_value(FoldPayload::Json("nope".into())).is_err());
        let back: FoldPayload = serde_json::from_str(r#"{"a": 1}"#).unwrap();
        assert_eq!(back, FoldPayload::Value(json!({ "a": 1 })));
    }
}
