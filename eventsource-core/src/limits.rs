//! What a store accepts: the checks every append passes before anything is written.
//!
//! An event store is a system of record: a row it accepted and cannot read back is a stream
//! lost for good, because events are immutable. So both stores run the same checks, before
//! anything is written, and refuse with an [`InvalidAppend`] that names what and where:
//!
//! | what | rule | why |
//! |---|---|---|
//! | stream id | 1 to [`Limits::max_stream_id_bytes`] bytes (default 512), no control characters (`U+0000`–`U+001F`, `U+007F`–`U+009F`) | PostgreSQL text cannot hold NUL; an index entry holds at most ~2.7 KB; ids are shown in logs and the CLI |
//! | event name | 1 to 255 bytes, no control characters | the same, and names are matched by equality |
//! | schema version | 1 to 2³¹ − 1 | stored as a PostgreSQL integer column |
//! | tag | 1 to [`MAX_TAG_BYTES`] bytes (255), no control characters; at most [`MAX_TAGS`] (32) per event | tags are indexed and matched by equality, like names |
//! | multi-stream append | at least one stream, no stream twice, no event id twice | one expectation and one version range per stream |
//! | query (of a read or a condition) | every item has at least one tag, valid as above | the store locks and scans a boundary by its tags; an untagged item would be the whole log |
//! | payload, metadata | nesting at most [`Limits::max_depth`] levels (default 64); no NUL (`\u0000`) in any string or key; encoded JSON at most [`Limits::max_event_bytes`] (default 4 MiB) for payload and metadata together | PostgreSQL `jsonb` rejects `\u0000`; readers parse JSON with a recursion limit of 128, so writes stop well below it; a size limit keeps one event from filling memory |
//!
//! Reading never has a tighter limit than writing: a row that passed these checks reads back.
//!
//! Messages quote at most a short excerpt of user data ([`excerpt`]), with its full length.

use std::borrow::Cow;
use std::fmt;
use std::io;

use serde_json::Value;

use crate::envelope::{Metadata, NewEvent, StreamId, Tag};
use crate::store::{AppendCondition, Query, StreamAppend};

/// The default of [`Limits::max_stream_id_bytes`].
pub const DEFAULT_MAX_STREAM_ID_BYTES: usize = 512;
/// The longest event name, in bytes.
pub const MAX_EVENT_NAME_BYTES: usize = 255;
/// The longest tag, in bytes.
pub const MAX_TAG_BYTES: usize = 255;
/// The most tags one event may carry.
pub const MAX_TAGS: usize = 32;
/// The default of [`Limits::max_depth`].
pub const DEFAULT_MAX_DEPTH: usize = 64;
/// The default of [`Limits::max_event_bytes`]: 4 MiB.
pub const DEFAULT_MAX_EVENT_BYTES: usize = 4 << 20;
/// The deepest nesting any configuration may allow: the JSON readers' recursion limit (128)
/// minus a margin, so that whatever is accepted can be read back.
pub const MAX_DEPTH_CEILING: usize = 100;
/// How many characters of user data a message quotes.
pub const EXCERPT_CHARS: usize = 80;
/// How many characters of a nested error's message an error quotes (a serde error can embed a
/// whole payload value).
pub const MESSAGE_CHARS: usize = 400;

/// The limits a store enforces on appends. `Limits::default()` is what both stores use unless
/// configured otherwise (`MemoryStore::with_limits`, the PostgreSQL builder's `limits`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    max_stream_id_bytes: usize,
    max_depth: usize,
    max_event_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_stream_id_bytes: DEFAULT_MAX_STREAM_ID_BYTES,
            max_depth: DEFAULT_MAX_DEPTH,
            max_event_bytes: DEFAULT_MAX_EVENT_BYTES,
        }
    }
}

impl Limits {
    /// The longest stream id, in bytes (default 512; at most 1,024, which keeps a PostgreSQL
    /// index entry within its page limit).
    pub fn max_stream_id_bytes(&self) -> usize {
        self.max_stream_id_bytes
    }

    /// The deepest nesting of arrays and objects in a payload or metadata (default 64).
    pub fn max_depth(&self) -> usize {
        self.max_depth
    }

    /// The largest encoded payload plus metadata of one event, in bytes (default 4 MiB).
    pub fn max_event_bytes(&self) -> usize {
        self.max_event_bytes
    }

    /// Sets the longest stream id, clamped to 1..=1,024 bytes.
    #[must_use]
    pub fn with_max_stream_id_bytes(mut self, bytes: usize) -> Self {
        self.max_stream_id_bytes = bytes.clamp(1, 1024);
        self
    }

    /// Sets the deepest nesting, clamped to 1..=[`MAX_DEPTH_CEILING`] so that readers can
    /// always parse what was written.
    #[must_use]
    pub fn with_max_depth(mut self, depth: usize) -> Self {
        self.max_depth = depth.clamp(1, MAX_DEPTH_CEILING);
        self
    }

    /// Sets the largest encoded event (payload plus metadata), at least 1 KiB.
    #[must_use]
    pub fn with_max_event_bytes(mut self, bytes: usize) -> Self {
        self.max_event_bytes = bytes.max(1024);
        self
    }

    /// Checks a stream id.
    pub fn check_stream_id(&self, stream: &StreamId) -> Result<(), InvalidAppend> {
        let id = stream.as_str();
        let problem = if id.is_empty() {
            Some(IdProblem::Empty)
        } else if id.len() > self.max_stream_id_bytes {
            Some(IdProblem::TooLong {
                max: self.max_stream_id_bytes,
            })
        } else {
            id.char_indices()
                .find(|(_, c)| c.is_control())
                .map(|(at, c)| IdProblem::ControlCharacter {
                    at,
                    code: u32::from(c),
                })
        };
        match problem {
            None => Ok(()),
            Some(problem) => Err(InvalidAppend::StreamId {
                excerpt: excerpt(id).into_owned(),
                len: id.len(),
                problem,
            }),
        }
    }

    /// Checks a batch before it is appended to `stream`: the stream id, then each event.
    pub fn check_append(
        &self,
        stream: &StreamId,
        events: &[NewEvent],
    ) -> Result<(), InvalidAppend> {
        self.check_stream_id(stream)?;
        for (index, event) in events.iter().enumerate() {
            self.check_event(stream, index, event)?;
        }
        Ok(())
    }

    /// Checks one event of a batch (`index` is its place in the batch).
    pub fn check_event(
        &self,
        stream: &StreamId,
        index: usize,
        event: &NewEvent,
    ) -> Result<(), InvalidAppend> {
        let at = || EventAt {
            stream: stream.clone(),
            index,
            name: excerpt(&event.name).into_owned(),
        };
        let name_problem = if event.name.is_empty() {
            Some(IdProblem::Empty)
        } else if event.name.len() > MAX_EVENT_NAME_BYTES {
            Some(IdProblem::TooLong {
                max: MAX_EVENT_NAME_BYTES,
            })
        } else {
            event
                .name
                .char_indices()
                .find(|(_, c)| c.is_control())
                .map(|(at, c)| IdProblem::ControlCharacter {
                    at,
                    code: u32::from(c),
                })
        };
        if let Some(problem) = name_problem {
            return Err(InvalidAppend::EventName {
                at: at(),
                len: event.name.len(),
                problem,
            });
        }
        if event.tags.len() > MAX_TAGS {
            return Err(InvalidAppend::TooManyTags {
                at: at(),
                count: event.tags.len(),
                max: MAX_TAGS,
            });
        }
        for tag in &event.tags {
            if let Some(problem) = tag_problem(tag) {
                return Err(InvalidAppend::Tag {
                    at: at(),
                    tag: excerpt(tag.as_str()).into_owned(),
                    len: tag.as_str().len(),
                    problem,
                });
            }
        }
        if event.schema_version == 0 || event.schema_version > i32::MAX as u32 {
            return Err(InvalidAppend::SchemaVersion {
                at: at(),
                schema_version: event.schema_version,
            });
        }
        self.check_json(&event.payload, Part::Payload)
            .map_err(|problem| InvalidAppend::Json {
                at: at(),
                part: Part::Payload,
                problem,
            })?;
        self.check_metadata(&event.metadata)
            .map_err(|problem| InvalidAppend::Json {
                at: at(),
                part: Part::Metadata,
                problem,
            })?;
        let bytes = encoded_len(&event.payload) + encoded_len(&event.metadata);
        if bytes > self.max_event_bytes {
            return Err(InvalidAppend::TooLarge {
                at: at(),
                bytes,
                max: self.max_event_bytes,
            });
        }
        Ok(())
    }

    /// Checks a multi-stream append and its condition: at least one stream, none twice, no
    /// event id twice, each batch as [`check_append`](Self::check_append) (empty batches
    /// included), and the condition's query as [`check_query`](Self::check_query).
    pub fn check_streams(
        &self,
        appends: &[StreamAppend],
        condition: Option<&AppendCondition>,
    ) -> Result<(), crate::StoreError> {
        if appends.is_empty() {
            return Err(InvalidAppend::NoStreams.into());
        }
        let mut streams = std::collections::HashSet::with_capacity(appends.len());
        let mut ids = std::collections::HashMap::new();
        for append in appends {
            if !streams.insert(&append.stream) {
                return Err(InvalidAppend::RepeatedStream {
                    stream: excerpt(append.stream.as_str()).into_owned(),
                }
                .into());
            }
            if append.events.is_empty() {
                return Err(crate::StoreError::EmptyBatch {
                    stream: append.stream.clone(),
                });
            }
            self.check_append(&append.stream, &append.events)?;
            for event in &append.events {
                if let Some(first) = ids.insert(event.event_id, &append.stream) {
                    return Err(InvalidAppend::RepeatedEventId {
                        event_id: event.event_id,
                        first_stream: excerpt(first.as_str()).into_owned(),
                        stream: excerpt(append.stream.as_str()).into_owned(),
                    }
                    .into());
                }
            }
        }
        if let Some(condition) = condition {
            self.check_query(&condition.query)?;
        }
        Ok(())
    }

    /// Checks a query: every item has at least one tag, and each tag is valid.
    pub fn check_query(&self, query: &Query) -> Result<(), InvalidAppend> {
        for (item, query_item) in query.items().iter().enumerate() {
            if query_item.tags().is_empty() {
                return Err(InvalidAppend::UntaggedQueryItem { item });
            }
            for name in query_item.names() {
                if let Some(problem) = name_problem(name) {
                    return Err(InvalidAppend::QueryName {
                        item,
                        name: excerpt(name).into_owned(),
                        len: name.len(),
                        problem,
                    });
                }
            }
            for tag in query_item.tags() {
                if let Some(problem) = tag_problem(tag) {
                    return Err(InvalidAppend::QueryTag {
                        item,
                        tag: excerpt(tag.as_str()).into_owned(),
                        len: tag.as_str().len(),
                        problem,
                    });
                }
            }
        }
        Ok(())
    }

    fn check_metadata(&self, metadata: &Metadata) -> Result<(), JsonProblem> {
        if let Some(key) = &metadata.idempotency_key {
            check_string(key, "/idempotency_key")?;
        }
        if let Some(command) = &metadata.command {
            check_string(&command.name, "/command/name")?;
            if let Some(digest) = &command.digest {
                check_string(digest, "/command/digest")?;
            }
        }
        // The custom fields sit one level below the metadata object.
        for (key, value) in &metadata.custom {
            check_string(key, &format!("/{}", pointer_escape(key)))?;
            walk(value, 2, self.max_depth, &mut |path| {
                format!("/{}{path}", pointer_escape(key))
            })?;
        }
        Ok(())
    }

    fn check_json(&self, value: &Value, _part: Part) -> Result<(), JsonProblem> {
        walk(value, 1, self.max_depth, &mut |path| path.to_owned())
    }
}

/// Walks `value` (at nesting `depth`, 1 for a top-level container) without recursion, so that
/// hostile input cannot overflow the stack, checking depth and NUL characters.
fn walk(
    value: &Value,
    depth: usize,
    max_depth: usize,
    prefix: &mut dyn FnMut(&str) -> String,
) -> Result<(), JsonProblem> {
    // (value, depth of the value if it is a container, JSON pointer of the value)
    let mut stack: Vec<(&Value, usize, String)> = vec![(value, depth, String::new())];
    while let Some((value, depth, path)) = stack.pop() {
        match value {
            Value::String(s) => check_string(s, &prefix(&path))?,
            Value::Array(items) => {
                if depth > max_depth {
                    return Err(JsonProblem::TooDeep {
                        path: excerpt(&prefix(&path)).into_owned(),
                        max: max_depth,
                    });
                }
                for (i, item) in items.iter().enumerate() {
                    stack.push((item, depth + 1, format!("{path}/{i}")));
                }
            }
            Value::Object(map) => {
                if depth > max_depth {
                    return Err(JsonProblem::TooDeep {
                        path: excerpt(&prefix(&path)).into_owned(),
                        max: max_depth,
                    });
                }
                for (key, item) in map {
                    let item_path = format!("{path}/{}", pointer_escape(key));
                    check_string(key, &prefix(&item_path))?;
                    stack.push((item, depth + 1, item_path));
                }
            }
            Value::Null | Value::Bool(_) | Value::Number(_) => {}
        }
    }
    Ok(())
}

/// What is wrong with a tag, if anything: the rules of event names.
fn tag_problem(tag: &Tag) -> Option<IdProblem> {
    label_problem(tag.as_str(), MAX_TAG_BYTES)
}

/// What is wrong with an event name in a query, if anything.
fn name_problem(name: &str) -> Option<IdProblem> {
    label_problem(name, MAX_EVENT_NAME_BYTES)
}

/// Empty, longer than `max` bytes, or holding a control character.
fn label_problem(text: &str, max: usize) -> Option<IdProblem> {
    if text.is_empty() {
        Some(IdProblem::Empty)
    } else if text.len() > max {
        Some(IdProblem::TooLong { max })
    } else {
        text.char_indices()
            .find(|(_, c)| c.is_control())
            .map(|(at, c)| IdProblem::ControlCharacter {
                at,
                code: u32::from(c),
            })
    }
}

fn check_string(s: &str, path: &str) -> Result<(), JsonProblem> {
    match s.find('\0') {
        None => Ok(()),
        Some(at) => Err(JsonProblem::Nul {
            path: excerpt(path).into_owned(),
            at,
        }),
    }
}

/// Escapes a key for a JSON pointer (RFC 6901).
fn pointer_escape(key: &str) -> Cow<'_, str> {
    if key.contains(['~', '/']) {
        Cow::Owned(key.replace('~', "~0").replace('/', "~1"))
    } else {
        Cow::Borrowed(key)
    }
}

/// The length of `value` encoded as compact JSON, counted without building the text.
fn encoded_len<T: serde::Serialize + ?Sized>(value: &T) -> usize {
    struct Count(usize);
    impl io::Write for Count {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.0 += buf.len();
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }
    let mut count = Count(0);
    // Serializing a `Value` or `Metadata` into a counter cannot fail; count what was written.
    let _ = serde_json::to_writer(&mut count, value);
    count.0
}

/// A short excerpt of user data for a message: at most [`EXCERPT_CHARS`] characters, with
/// control characters escaped, followed by `… (N bytes)` when cut.
pub fn excerpt(text: &str) -> Cow<'_, str> {
    excerpt_chars(text, EXCERPT_CHARS)
}

/// A nested error's message cut to [`MESSAGE_CHARS`] characters, like [`excerpt`].
pub fn bounded(message: &str) -> Cow<'_, str> {
    excerpt_chars(message, MESSAGE_CHARS)
}

fn excerpt_chars(text: &str, max_chars: usize) -> Cow<'_, str> {
    let clean = !text.chars().any(char::is_control);
    if clean && text.chars().nth(max_chars).is_none() {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(max_chars + 24);
    let mut cut = false;
    for (n, c) in text.chars().enumerate() {
        if n == max_chars {
            cut = true;
            break;
        }
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    if cut {
        out.push_str(&format!("… ({} bytes)", text.len()));
    }
    Cow::Owned(out)
}

/// Which part of an event a JSON problem is in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Part {
    /// The payload.
    Payload,
    /// The metadata (its custom fields).
    Metadata,
}

impl fmt::Display for Part {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Part::Payload => "payload",
            Part::Metadata => "metadata",
        })
    }
}

/// What is wrong with a stream id or an event name.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum IdProblem {
    /// It is empty.
    #[error("it is empty")]
    Empty,
    /// It is longer than allowed.
    #[error("it is longer than {max} bytes")]
    TooLong {
        /// The limit, in bytes.
        max: usize,
    },
    /// It contains a control character.
    #[error("it contains the control character U+{code:04X} at byte {at}")]
    ControlCharacter {
        /// The byte offset.
        at: usize,
        /// The character's code point.
        code: u32,
    },
}

/// What is wrong with a payload or metadata.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum JsonProblem {
    /// Arrays and objects nest deeper than allowed.
    #[error("it nests deeper than {max} levels at `{path}`")]
    TooDeep {
        /// A JSON pointer (excerpt) to the first container past the limit.
        path: String,
        /// The limit.
        max: usize,
    },
    /// A string or key contains a NUL character, which PostgreSQL cannot store.
    #[error("the string at `{path}` contains a NUL character (U+0000) at byte {at}")]
    Nul {
        /// A JSON pointer (excerpt) to the string (or to the value whose key it is).
        path: String,
        /// The byte offset in the string.
        at: usize,
    },
}

/// Where in a batch an invalid event is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EventAt {
    /// The stream appended to.
    pub stream: StreamId,
    /// The event's place in the batch (0-based).
    pub index: usize,
    /// The event's name (an excerpt).
    pub name: String,
}

impl fmt::Display for EventAt {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "event #{} (`{}`) of the batch for stream `{}`",
            self.index,
            self.name,
            excerpt(self.stream.as_str())
        )
    }
}

/// An append the store refused before writing anything, and why. See the [module
/// docs](self) for the rules.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum InvalidAppend {
    /// The stream id breaks the rules.
    #[error("invalid stream id `{excerpt}` ({len} bytes): {problem}")]
    StreamId {
        /// An excerpt of the id.
        excerpt: String,
        /// Its length in bytes.
        len: usize,
        /// What is wrong.
        problem: IdProblem,
    },
    /// An event name breaks the rules.
    #[error("invalid event name in {at} ({len} bytes): {problem}")]
    EventName {
        /// Which event.
        at: EventAt,
        /// The name's length in bytes.
        len: usize,
        /// What is wrong.
        problem: IdProblem,
    },
    /// A schema version out of range.
    #[error("invalid schema version {schema_version} in {at}: it must be 1 to 2147483647")]
    SchemaVersion {
        /// Which event.
        at: EventAt,
        /// The version given.
        schema_version: u32,
    },
    /// A payload or metadata that could not be read back.
    #[error("invalid {part} in {at}: {problem}")]
    Json {
        /// Which event.
        at: EventAt,
        /// Payload or metadata.
        part: Part,
        /// What is wrong.
        problem: JsonProblem,
    },
    /// A tag breaks the rules.
    #[error("invalid tag `{tag}` ({len} bytes) in {at}: {problem}")]
    Tag {
        /// Which event.
        at: EventAt,
        /// An excerpt of the tag.
        tag: String,
        /// Its length in bytes.
        len: usize,
        /// What is wrong.
        problem: IdProblem,
    },
    /// An event with more tags than allowed.
    #[error("{at} carries {count} tags, more than the limit of {max}")]
    TooManyTags {
        /// Which event.
        at: EventAt,
        /// How many it carries.
        count: usize,
        /// The limit.
        max: usize,
    },
    /// A multi-stream append without streams.
    #[error("a multi-stream append needs at least one stream")]
    NoStreams,
    /// A multi-stream append names a stream twice.
    #[error("stream `{stream}` appears twice in one multi-stream append: give it one batch")]
    RepeatedStream {
        /// An excerpt of the stream id.
        stream: String,
    },
    /// A multi-stream append carries an event id twice.
    #[error(
        "event id {event_id} appears twice in one multi-stream append (in streams `{first_stream}` and `{stream}`)"
    )]
    RepeatedEventId {
        /// The id.
        event_id: uuid::Uuid,
        /// An excerpt of the stream of its first occurrence.
        first_stream: String,
        /// An excerpt of the stream of its second.
        stream: String,
    },
    /// A query item without tags: it would span the whole log.
    #[error(
        "query item #{item} has no tags: a decision's boundary is found by its tags (e.g. `QueryItem::tagged([Tag::new(\"course\", id)])`)"
    )]
    UntaggedQueryItem {
        /// The item's place in the query (0-based).
        item: usize,
    },
    /// An event name in a query breaks the rules of event names.
    #[error("invalid event name `{name}` ({len} bytes) in query item #{item}: {problem}")]
    QueryName {
        /// The item's place in the query (0-based).
        item: usize,
        /// An excerpt of the name.
        name: String,
        /// Its length in bytes.
        len: usize,
        /// What is wrong.
        problem: IdProblem,
    },
    /// A query tag breaks the rules.
    #[error("invalid tag `{tag}` ({len} bytes) in query item #{item}: {problem}")]
    QueryTag {
        /// The item's place in the query (0-based).
        item: usize,
        /// An excerpt of the tag.
        tag: String,
        /// Its length in bytes.
        len: usize,
        /// What is wrong.
        problem: IdProblem,
    },
    /// An event larger than the configured limit.
    #[error(
        "{at} is {bytes} bytes of encoded payload and metadata, more than the limit of {max} (see `Limits::with_max_event_bytes`)"
    )]
    TooLarge {
        /// Which event.
        at: EventAt,
        /// Its encoded size.
        bytes: usize,
        /// The limit.
        max: usize,
    },
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn nested(depth: usize) -> Value {
        // Built by hand: `json!([value])` would serialize `value` again, recursively.
        let mut value = json!(1);
        for _ in 0..depth {
            value = Value::Array(vec![value]);
        }
        value
    }

    fn event(payload: Value) -> NewEvent {
        NewEvent::new("test.happened", 1, payload)
    }

    #[test]
    fn depth_is_counted_in_containers() {
        let limits = Limits::default();
        let stream = StreamId::new("t", 1);
        assert!(limits.check_append(&stream, &[event(nested(64))]).is_ok());
        let err = limits
            .check_append(&stream, &[event(nested(65))])
            .unwrap_err();
        assert!(matches!(
            err,
            InvalidAppend::Json {
                part: Part::Payload,
                problem: JsonProblem::TooDeep { max: 64, .. },
                ..
            }
        ));
    }

    #[test]
    fn a_very_deep_payload_does_not_overflow_the_stack() {
        // Dropping a `Value` this deep would recurse, so it is leaked on purpose.
        let deep = std::mem::ManuallyDrop::new(event(nested(200_000)));
        let err = Limits::default()
            .check_append(&StreamId::new("t", 1), std::slice::from_ref(&*deep))
            .unwrap_err();
        assert!(err.to_string().contains("deeper than 64"), "{err}");
    }

    #[test]
    fn nul_is_refused_in_strings_keys_and_metadata() {
        let limits = Limits::default();
        let stream = StreamId::new("t", 1);
        let err = limits
            .check_append(&stream, &[event(json!({"a": ["x\0y"]}))])
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "invalid payload in event #0 (`test.happened`) of the batch for stream `t-1`: the string at `/a/0` contains a NUL character (U+0000) at byte 1"
        );
        assert!(
            limits
                .check_append(&stream, &[event(json!({"k\0": 1}))])
                .is_err()
        );
        let mut metadata = Metadata::default();
        metadata.insert("who", &"a\0b").unwrap();
        let err = limits
            .check_append(&stream, &[event(json!({})).with_metadata(metadata)])
            .unwrap_err();
        assert!(matches!(
            err,
            InvalidAppend::Json {
                part: Part::Metadata,
                ..
            }
        ));
        let keyed = Metadata {
            idempotency_key: Some("req\0-1".to_owned()),
            ..Metadata::default()
        };
        let err = limits
            .check_append(&stream, &[event(json!({})).with_metadata(keyed)])
            .unwrap_err();
        assert!(err.to_string().contains("`/idempotency_key`"), "{err}");
        let fingerprinted = Metadata {
            command: Some(crate::CommandFingerprint::named("Dep\0osit")),
            ..Metadata::default()
        };
        let err = limits
            .check_append(&stream, &[event(json!({})).with_metadata(fingerprinted)])
            .unwrap_err();
        assert!(err.to_string().contains("`/command/name`"), "{err}");
    }

    #[test]
    fn stream_ids_and_names_are_checked() {
        let limits = Limits::default();
        let long = "x".repeat(10_000);
        let err = limits
            .check_append(&StreamId::from_raw(long.clone()), &[event(json!({}))])
            .unwrap_err();
        let message = err.to_string();
        assert!(message.len() < 300, "{message}");
        assert!(message.contains("10000 bytes"), "{message}");
        assert!(
            limits
                .check_append(&StreamId::from_raw("a\0b"), &[event(json!({}))])
                .is_err()
        );
        assert!(
            limits
                .check_append(&StreamId::from_raw(""), &[event(json!({}))])
                .is_err()
        );
        let bad_name = NewEvent::new("a\nb", 1, json!({}));
        assert!(
            limits
                .check_append(&StreamId::new("t", 1), &[bad_name])
                .is_err()
        );
        let bad_version = NewEvent::new("a", 0, json!({}));
        assert!(
            limits
                .check_append(&StreamId::new("t", 1), &[bad_version])
                .is_err()
        );
        assert!(
            limits
                .check_append(&StreamId::from_raw("ünïcode-ok 1"), &[event(json!({}))])
                .is_ok()
        );
    }

    #[test]
    fn size_counts_payload_and_metadata() {
        let limits = Limits::default().with_max_event_bytes(2048);
        let stream = StreamId::new("t", 1);
        assert!(
            limits
                .check_append(&stream, &[event(json!("x".repeat(2000)))])
                .is_ok()
        );
        let err = limits
            .check_append(&stream, &[event(json!("x".repeat(3000)))])
            .unwrap_err();
        // 3,002 bytes of payload (a string and its quotes) and `{}` of empty metadata.
        assert!(matches!(err, InvalidAppend::TooLarge { bytes: 3004, .. }));
    }

    #[test]
    fn excerpts_are_short_and_escaped() {
        assert_eq!(excerpt("short"), "short");
        let long = "y".repeat(1_000_000);
        let cut = excerpt(&long);
        assert!(
            cut.len() < 120 && cut.ends_with("… (1000000 bytes)"),
            "{cut}"
        );
        assert_eq!(excerpt("a\0b"), "a\\u{0}b");
    }
}
