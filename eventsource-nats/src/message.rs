//! The message format: an event's payload as the body, its envelope in headers.
//!
//! | header | value |
//! |---|---|
//! | `Nats-Msg-Id` | the event id (JetStream deduplicates on it) |
//! | `Eventsource-Event-Id` | the event id |
//! | `Eventsource-Stream` | the stream id, e.g. `cart-42` |
//! | `Eventsource-Version` | the event's version in its stream |
//! | `Eventsource-Name` | the event name, e.g. `cart.item_added` |
//! | `Eventsource-Schema-Version` | the payload's schema version |
//! | `Eventsource-Position` | the global position in the origin store |
//! | `Eventsource-Checkpoint` | the origin store's checkpoint, `<transaction>:<position>` |
//! | `Eventsource-Recorded-At` | RFC 3339 time the origin store recorded it |
//! | `Eventsource-Correlation-Id`, `Eventsource-Causation-Id` | when the metadata has them |
//! | `Eventsource-Metadata` | the application's metadata fields as compact JSON, when any |
//!
//! The body is the payload's JSON, as stored, so that services in any language can read it.

use async_nats::HeaderMap;
use async_nats::jetstream::message::PublishMessage;
use bytes::Bytes;
use chrono::{DateTime, Utc};
use eventsource_core::{Checkpoint, Metadata, Position, RecordedEvent, StreamId, Version};
use uuid::Uuid;

use crate::error::{DecodeMessageError, MessageProblem};

/// Header names of the message format.
pub mod headers {
    /// JetStream's deduplication id: the event id.
    pub const MSG_ID: &str = "Nats-Msg-Id";
    /// The event id.
    pub const EVENT_ID: &str = "Eventsource-Event-Id";
    /// The stream id.
    pub const STREAM: &str = "Eventsource-Stream";
    /// The version within the stream.
    pub const VERSION: &str = "Eventsource-Version";
    /// The event name.
    pub const NAME: &str = "Eventsource-Name";
    /// The payload's schema version.
    pub const SCHEMA_VERSION: &str = "Eventsource-Schema-Version";
    /// The origin store's global position.
    pub const POSITION: &str = "Eventsource-Position";
    /// The origin store's checkpoint, `<transaction>:<position>`.
    pub const CHECKPOINT: &str = "Eventsource-Checkpoint";
    /// When the origin store recorded the event (RFC 3339).
    pub const RECORDED_AT: &str = "Eventsource-Recorded-At";
    /// The correlation id.
    pub const CORRELATION_ID: &str = "Eventsource-Correlation-Id";
    /// The causation id.
    pub const CAUSATION_ID: &str = "Eventsource-Causation-Id";
    /// The application's metadata fields (compact JSON object).
    pub const METADATA: &str = "Eventsource-Metadata";
    /// The idempotency key and command fingerprint of the command that wrote the event
    /// (compact JSON object), when it had a key.
    pub const COMMAND: &str = "Eventsource-Command";
}

/// What [`headers::COMMAND`] carries.
#[derive(serde::Serialize, serde::Deserialize)]
struct CommandHeader {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    idempotency_key: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    command: Option<eventsource_core::CommandFingerprint>,
}

/// Builds the JetStream publish of `event`: body, headers and `Nats-Msg-Id`.
pub fn encode(event: &RecordedEvent) -> Result<PublishMessage, serde_json::Error> {
    let body = serde_json::to_vec(&event.payload)?;
    let id = event.event_id.to_string();
    let mut map = HeaderMap::new();
    map.insert(headers::EVENT_ID, id.as_str());
    map.insert(headers::STREAM, escape_value(event.stream_id.as_str()));
    map.insert(headers::VERSION, event.version.0.to_string().as_str());
    map.insert(headers::NAME, escape_value(&event.name));
    map.insert(
        headers::SCHEMA_VERSION,
        event.schema_version.to_string().as_str(),
    );
    map.insert(headers::POSITION, event.position.0.to_string().as_str());
    map.insert(headers::CHECKPOINT, event.checkpoint.to_string().as_str());
    map.insert(
        headers::RECORDED_AT,
        event.recorded_at.to_rfc3339().as_str(),
    );
    if let Some(id) = event.metadata.correlation_id {
        map.insert(headers::CORRELATION_ID, id.to_string().as_str());
    }
    if let Some(id) = event.metadata.causation_id {
        map.insert(headers::CAUSATION_ID, id.to_string().as_str());
    }
    if event.metadata.idempotency_key.is_some() || event.metadata.command.is_some() {
        let header = serde_json::to_string(&CommandHeader {
            idempotency_key: event.metadata.idempotency_key.clone(),
            command: event.metadata.command.clone(),
        })?;
        map.insert(headers::COMMAND, header.as_str());
    }
    if !event.metadata.custom.is_empty() {
        // Compact JSON escapes control characters, so the value holds no line break.
        let custom = serde_json::to_string(&event.metadata.custom)?;
        map.insert(headers::METADATA, custom.as_str());
    }
    Ok(PublishMessage::build()
        .payload(Bytes::from(body))
        .headers(map)
        .message_id(id))
}

/// Decodes a JetStream message (its subject, headers and body, and its stream sequence for
/// error messages) back into the [`RecordedEvent`] the relay published.
pub fn decode(
    subject: &str,
    sequence: u64,
    headers: Option<&HeaderMap>,
    body: &[u8],
) -> Result<RecordedEvent, DecodeMessageError> {
    let fail = |problem| DecodeMessageError {
        subject: eventsource_core::limits::bounded(subject).into_owned(),
        sequence,
        problem,
    };
    let empty = HeaderMap::new();
    let map = headers.unwrap_or(&empty);
    let get = |name: &'static str| -> Result<&str, DecodeMessageError> {
        map.get(name)
            .map(|value| value.as_str())
            .ok_or_else(|| fail(MessageProblem::MissingHeader { header: name }))
    };
    let invalid = |name: &'static str, value: &str| {
        fail(MessageProblem::InvalidHeader {
            header: name,
            value: eventsource_core::limits::excerpt(value).into_owned(),
        })
    };
    let uuid = |name: &'static str| -> Result<Uuid, DecodeMessageError> {
        let raw = get(name)?;
        Uuid::parse_str(raw).map_err(|_| invalid(name, raw))
    };
    let number = |name: &'static str| -> Result<u64, DecodeMessageError> {
        let raw = get(name)?;
        raw.parse::<u64>().map_err(|_| invalid(name, raw))
    };
    let optional_uuid = |name: &'static str| -> Result<Option<Uuid>, DecodeMessageError> {
        match map.get(name) {
            None => Ok(None),
            Some(value) => Uuid::parse_str(value.as_str())
                .map(Some)
                .map_err(|_| invalid(name, value.as_str())),
        }
    };

    let event_id = uuid(headers::EVENT_ID)?;
    let raw_stream = get(headers::STREAM)?;
    let stream_id = StreamId::from_raw(
        unescape_value(raw_stream).ok_or_else(|| invalid(headers::STREAM, raw_stream))?,
    );
    let version = Version(number(headers::VERSION)?);
    let raw_name = get(headers::NAME)?;
    let name = unescape_value(raw_name).ok_or_else(|| invalid(headers::NAME, raw_name))?;
    let raw_schema = get(headers::SCHEMA_VERSION)?;
    let schema_version = raw_schema
        .parse::<u32>()
        .map_err(|_| invalid(headers::SCHEMA_VERSION, raw_schema))?;
    let position = Position(number(headers::POSITION)?);
    let raw_checkpoint = get(headers::CHECKPOINT)?;
    let checkpoint = parse_checkpoint(raw_checkpoint)
        .ok_or_else(|| invalid(headers::CHECKPOINT, raw_checkpoint))?;
    let raw_time = get(headers::RECORDED_AT)?;
    let recorded_at = DateTime::parse_from_rfc3339(raw_time)
        .map_err(|_| invalid(headers::RECORDED_AT, raw_time))?
        .with_timezone(&Utc);
    let custom = match map.get(headers::METADATA) {
        None => serde_json::Map::new(),
        Some(value) => serde_json::from_str(value.as_str())
            .map_err(|_| invalid(headers::METADATA, value.as_str()))?,
    };
    let command = match map.get(headers::COMMAND) {
        None => CommandHeader {
            idempotency_key: None,
            command: None,
        },
        Some(value) => serde_json::from_str(value.as_str())
            .map_err(|_| invalid(headers::COMMAND, value.as_str()))?,
    };
    let metadata = Metadata {
        correlation_id: optional_uuid(headers::CORRELATION_ID)?,
        causation_id: optional_uuid(headers::CAUSATION_ID)?,
        custom,
        idempotency_key: command.idempotency_key,
        command: command.command,
    };
    let payload = serde_json::from_slice(body).map_err(|error| {
        fail(MessageProblem::Body {
            message: eventsource_core::limits::bounded(&error.to_string()).into_owned(),
        })
    })?;
    Ok(RecordedEvent {
        event_id,
        stream_id,
        version,
        position,
        checkpoint,
        name,
        schema_version,
        payload,
        metadata,
        recorded_at,
    })
}

/// Escapes a header value: `%`, whitespace and control characters (which would break the
/// header block or be trimmed by readers) become `%HH`; everything else stays readable.
pub fn escape_value(raw: &str) -> String {
    let mut out = String::with_capacity(raw.len());
    for c in raw.chars() {
        if c == '%' || c.is_whitespace() || c.is_control() {
            let mut buffer = [0u8; 4];
            for byte in c.encode_utf8(&mut buffer).bytes() {
                out.push_str(&format!("%{byte:02X}"));
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// Reverses [`escape_value`]; `None` for a malformed escape or bytes that are not UTF-8.
pub fn unescape_value(escaped: &str) -> Option<String> {
    if !escaped.contains('%') {
        return Some(escaped.to_owned());
    }
    let bytes = escaped.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut index = 0;
    while index < bytes.len() {
        if bytes[index] == b'%' {
            let hex = escaped.get(index + 1..index + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            index += 3;
        } else {
            out.push(bytes[index]);
            index += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// Parses `<transaction>:<position>` (the `Display` form of [`Checkpoint`]).
fn parse_checkpoint(raw: &str) -> Option<Checkpoint> {
    let (transaction, position) = raw.split_once(':')?;
    Some(Checkpoint::from_parts(
        transaction.parse().ok()?,
        position.parse().ok()?,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn sample() -> RecordedEvent {
        let mut metadata = Metadata {
            correlation_id: Some(Uuid::now_v7()),
            causation_id: None,
            custom: serde_json::Map::new(),
            idempotency_key: Some("req-7".to_owned()),
            command: None,
        };
        metadata
            .insert("note", &"line\r\nbreak")
            .unwrap_or_else(|e| panic!("{e}"));
        RecordedEvent {
            event_id: Uuid::now_v7(),
            stream_id: StreamId::from_raw("cart-1"),
            version: Version(3),
            position: Position(17),
            checkpoint: Checkpoint::from_parts(900, 17),
            name: "cart.item_added".to_owned(),
            schema_version: 2,
            payload: json!({"sku": "A1", "qty": 2}),
            metadata,
            recorded_at: Utc::now(),
        }
    }

    fn round_trip(event: &RecordedEvent) -> RecordedEvent {
        let publish = encode(event).unwrap_or_else(|e| panic!("{e}"));
        let outbound = publish.outbound_message("x");
        decode("x", 1, outbound.headers.as_ref(), &outbound.payload)
            .unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn an_event_survives_the_round_trip() {
        let event = sample();
        let back = round_trip(&event);
        // RFC 3339 keeps nanoseconds, so the whole envelope is equal.
        assert_eq!(back, event);
    }

    #[test]
    fn the_message_id_is_the_event_id() {
        let event = sample();
        let outbound = encode(&event)
            .unwrap_or_else(|e| panic!("{e}"))
            .outbound_message("x");
        let headers = outbound.headers.unwrap_or_default();
        assert_eq!(
            headers.get(headers::MSG_ID).map(|v| v.as_str().to_owned()),
            Some(event.event_id.to_string())
        );
    }

    #[test]
    fn missing_and_bad_headers_are_named() {
        let error = decode("events.a.b", 7, None, b"{}").err();
        let text = error.map(|e| e.to_string()).unwrap_or_default();
        assert!(text.contains("Eventsource-Event-Id"), "{text}");
        assert!(text.contains("sequence 7"), "{text}");

        let event = sample();
        let outbound = encode(&event)
            .unwrap_or_else(|e| panic!("{e}"))
            .outbound_message("x");
        let mut map = outbound.headers.unwrap_or_default();
        map.insert(headers::VERSION, "-1");
        let text = decode("x", 1, Some(&map), b"{}")
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(
            text.contains("Eventsource-Version") && text.contains("-1"),
            "{text}"
        );

        let map = encode(&event)
            .unwrap_or_else(|e| panic!("{e}"))
            .outbound_message("x")
            .headers
            .unwrap_or_default();
        let text = decode("x", 1, Some(&map), b"{not json")
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(text.contains("body"), "{text}");
    }

    #[test]
    fn hostile_stream_ids_and_names_survive() {
        let mut event = sample();
        event.stream_id = StreamId::from_raw(" cart-%41 \r\n:x\u{85}é ");
        event.name = "a b%\t".to_owned();
        assert_eq!(round_trip(&event), event);
        for bad in ["%", "%4", "%ZZ", "%FF", "a%C3"] {
            assert_eq!(unescape_value(bad), None, "{bad}");
        }
    }

    #[test]
    fn checkpoints_parse_strictly() {
        assert_eq!(parse_checkpoint("5:6"), Some(Checkpoint::from_parts(5, 6)));
        for bad in ["", "5", "5:", ":6", "a:b", "5:6:7", "-1:2"] {
            assert_eq!(parse_checkpoint(bad), None, "{bad}");
        }
    }
}
