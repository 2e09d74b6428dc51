//! Errors of the relay and the JetStream projection source.

use eventsource_core::{BoxError, HandlerError, Position, StoreError, StreamId, Version};

/// A subject prefix that is not a valid NATS subject without wildcards.
#[derive(Debug, thiserror::Error)]
#[error(
    "invalid subject prefix `{prefix}`: it needs one or more non-empty tokens separated by `.`, without whitespace, `*` or `>`"
)]
pub struct InvalidPrefix {
    /// The prefix (an excerpt).
    pub prefix: String,
}

/// A JetStream message that is not an event the relay published.
#[derive(Debug, thiserror::Error)]
#[error(
    "the message at stream sequence {sequence} on subject `{subject}` is not an eventsource event: {problem}"
)]
pub struct DecodeMessageError {
    /// The message's subject (an excerpt).
    pub subject: String,
    /// Its stream sequence.
    pub sequence: u64,
    /// What is wrong with it.
    pub problem: MessageProblem,
}

/// What is wrong with a message (see [`DecodeMessageError`]).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MessageProblem {
    /// A required header is absent.
    #[error("header `{header}` is missing")]
    MissingHeader {
        /// The header's name.
        header: &'static str,
    },
    /// A header does not parse.
    #[error("header `{header}` has the invalid value `{value}`")]
    InvalidHeader {
        /// The header's name.
        header: &'static str,
        /// Its value (an excerpt).
        value: String,
    },
    /// The body is not JSON.
    #[error("the body is not JSON: {message}")]
    Body {
        /// The parser's message (bounded).
        message: String,
    },
}

/// Why a relay stopped.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RelayError {
    /// The store failed (reading the log, the checkpoint, the lease).
    #[error("relay `{relay}`: {source}")]
    Store {
        /// The relay's name.
        relay: String,
        /// The store's error.
        #[source]
        source: StoreError,
    },
    /// An event could not be published, and the relay gave up after its retries (see
    /// [`RelayOptions::max_retries`](crate::RelayOptions::max_retries)). The checkpoint is
    /// before it; a restart publishes it again.
    #[error(
        "relay `{relay}` could not publish event `{name}` of stream `{stream}` (version {version}, position {position}) to `{subject}` after {attempts} attempt(s): {}",
        eventsource_core::limits::bounded(&source.to_string())
    )]
    Publish {
        /// The relay's name.
        relay: String,
        /// The event's name.
        name: String,
        /// Its stream.
        stream: StreamId,
        /// Its version in the stream.
        version: Version,
        /// Its global position.
        position: Position,
        /// The subject it was published to.
        subject: String,
        /// How many times the batch holding it was tried.
        attempts: u32,
        /// The last failure (from async-nats).
        #[source]
        source: BoxError,
    },
    /// An event's payload or metadata could not be encoded (it came from the store, so this
    /// means a corrupt row).
    #[error(
        "relay `{relay}` cannot encode event `{name}` of stream `{stream}` at version {version}: {source}"
    )]
    Encode {
        /// The relay's name.
        relay: String,
        /// The event's name.
        name: String,
        /// Its stream.
        stream: StreamId,
        /// Its version.
        version: Version,
        /// The encoder's error.
        #[source]
        source: serde_json::Error,
    },
    /// The JetStream stream the relay publishes to is missing or does not take its subjects.
    #[error("relay `{relay}`: {message}")]
    Setup {
        /// The relay's name.
        relay: String,
        /// What is wrong.
        message: String,
    },
}

/// Why a JetStream projection source stopped.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SourceError<E: std::error::Error + 'static> {
    /// An event kept failing in the projection; its message is not acknowledged and the read
    /// model's checkpoint is before it, so a restart resumes there.
    #[error(
        "projection `{projection}` stopped at event `{name}` of stream `{stream}` (version {version}, position {position}) after {attempts} attempt(s): {source}"
    )]
    Failed {
        /// The projection.
        projection: String,
        /// The failing event's name.
        name: String,
        /// Its stream.
        stream: StreamId,
        /// Its version in the stream.
        version: Version,
        /// Its global position in the origin store.
        position: Position,
        /// How many times it was tried.
        attempts: u32,
        /// The last failure.
        #[source]
        source: HandlerError<E>,
    },
    /// A message on the consumer is not an event the relay published. It is not acknowledged.
    #[error("projection `{projection}`: {source}")]
    Message {
        /// The projection.
        projection: String,
        /// What is wrong with the message.
        #[source]
        source: DecodeMessageError,
    },
    /// The read model's store failed.
    #[error("projection `{projection}`: {source}")]
    Store {
        /// The projection.
        projection: String,
        /// The store's error.
        #[source]
        source: StoreError,
    },
    /// JetStream failed (creating the consumer, pulling) more often than the options allow.
    #[error(
        "projection `{projection}`: JetStream {action} failed {attempts} time(s) in a row: {}",
        eventsource_core::limits::bounded(&source.to_string())
    )]
    JetStream {
        /// The projection.
        projection: String,
        /// What the source was doing.
        action: &'static str,
        /// Consecutive failures.
        attempts: u32,
        /// The last failure.
        #[source]
        source: BoxError,
    },
}
