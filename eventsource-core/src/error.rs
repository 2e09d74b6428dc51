//! Errors of the store contract and the repository. Each names what a person needs to act.
//!
//! # Transient and permanent store errors
//!
//! [`StoreError::is_transient`] says whether repeating the operation can succeed without
//! anybody changing anything: the connection was lost or refused, the pool timed out, the
//! server is shutting down or restarting, the database aborted a transaction on a
//! serialization failure or a deadlock. Adapters report those as [`StoreError::Transient`];
//! everything else (a conflict, a corrupt row, a permission or schema problem, a driver error
//! nobody has classified) is permanent, and retrying it only repeats the failure. The
//! projection runner retries transient errors with backoff and stops on permanent ones.

use crate::envelope::{ExpectedVersion, Position, StreamId, Version};
use crate::event::DecodeFailure;
use crate::fingerprint::CommandFingerprint;

/// A boxed error from a store's backend (a database driver, the network).
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Why a store operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The stream was not at the expected version; nothing was written.
    #[error(
        "concurrency conflict on stream `{stream}`: expected {expected}, but it is at version {actual}"
    )]
    Conflict {
        /// The stream appended to.
        stream: StreamId,
        /// What the writer expected.
        expected: ExpectedVersion,
        /// The stream's version when the append was checked.
        actual: Version,
    },
    /// A multi-stream append ([`DecisionStore::append_streams`](crate::DecisionStore::append_streams))
    /// found streams not at their expected versions; nothing was written. Lists every one.
    #[error("concurrency conflict on {} stream(s): {}", conflicts.len(), conflict_list(conflicts))]
    Conflicts {
        /// Every stream whose expectation did not hold, in the order given.
        conflicts: Vec<crate::StreamConflict>,
    },
    /// A conditional append found an event matching its query written after the position
    /// the decision read; nothing was written. Read again and decide again.
    #[error(
        "append condition failed: event `{}` at position {position} in stream `{stream}` matches the decision's query and was written after it was read",
        crate::limits::excerpt(name)
    )]
    ConditionFailed {
        /// The stream of the first such event.
        stream: StreamId,
        /// Its global position.
        position: Position,
        /// Its name.
        name: String,
    },
    /// An event id of the batch is already stored elsewhere, or the batch only partly repeats an
    /// earlier append; nothing was written.
    #[error(
        "event id {event_id} in the batch for stream `{stream}` is already stored in stream `{existing_stream}` at version {existing_version}, and the batch is not an exact retry of that append"
    )]
    DuplicateEventId {
        /// The stream appended to.
        stream: StreamId,
        /// The repeated id.
        event_id: uuid::Uuid,
        /// Where the id is stored.
        existing_stream: StreamId,
        /// The version it is stored at.
        existing_version: Version,
    },
    /// The batch breaks the store's limits (see [`crate::limits`]); nothing was written.
    #[error(transparent)]
    Invalid(#[from] crate::limits::InvalidAppend),
    /// An append was asked with no events.
    #[error("append to stream `{stream}` has no events")]
    EmptyBatch {
        /// The stream appended to.
        stream: StreamId,
    },
    /// A stored row could not be read back (not a payload decode error: the envelope itself).
    #[error(
        "corrupt row in stream `{stream}` at version {version}: {}",
        crate::limits::bounded(message)
    )]
    CorruptRow {
        /// The stream of the row.
        stream: StreamId,
        /// The row's version.
        version: Version,
        /// What is wrong with it.
        message: String,
    },
    /// A projection's checkpoint was not where the committing runner expected: another
    /// runner moved it. Nothing was committed.
    #[error(
        "checkpoint of projection `{projection}` moved: expected {expected:?}, found {actual:?}"
    )]
    CheckpointMoved {
        /// The projection.
        projection: String,
        /// Where the runner expected it.
        expected: Option<crate::Checkpoint>,
        /// Where it was.
        actual: Option<crate::Checkpoint>,
    },
    /// The backend failed in a way a retry can cure: the connection was lost or refused, the
    /// pool timed out, the server is shutting down, a serialization failure or a deadlock
    /// aborted the transaction. Nothing was committed by the failed operation (or, for a lost
    /// connection during a commit, the outcome is unknown and the operation must be idempotent
    /// to be retried, as appends with event ids and projection commits are).
    #[error("{context} (transient, a retry may succeed): {}", crate::limits::bounded(&source.to_string()))]
    Transient {
        /// What the store was doing.
        context: String,
        /// The backend's error.
        #[source]
        source: BoxError,
    },
    /// A projection runner no longer holds its lease (its lease connection died, or an
    /// administrator ended it), so another runner may be active. Nothing was committed; the
    /// runner must take the lease again before it goes on.
    #[error("projection `{projection}` lost its lease: {reason}")]
    LeaseLost {
        /// The projection.
        projection: String,
        /// How the loss showed.
        reason: String,
    },
    /// A reset of the projection was requested (`eventsource projection reset`,
    /// `ProjectionStore::request_reset`): its checkpoint only moves again when it is rebuilt
    /// from the start, so that no event is applied on top of the old read model.
    #[error(
        "projection `{projection}` has a reset pending: it must be rebuilt from the start of the log before it applies more events"
    )]
    ResetRequested {
        /// The projection.
        projection: String,
    },
    /// The stream was archived (or deleted): it takes no more appends. Nothing was written.
    #[error("stream `{stream}` is archived: it takes no more appends")]
    StreamArchived {
        /// The stream appended to.
        stream: StreamId,
    },
    /// An event's personal data could not be sealed; nothing was written. The message never
    /// holds a personal value or key material.
    #[error("cannot seal the personal data of event `{name}` for stream `{stream}`: {problem}")]
    PersonalData {
        /// The stream appended to.
        stream: StreamId,
        /// The event's name.
        name: String,
        /// What is wrong.
        problem: String,
    },
    /// The backend (database, network) failed, and retrying is not expected to help.
    #[error("{context}: {}", crate::limits::bounded(&source.to_string()))]
    Backend {
        /// What the store was doing.
        context: String,
        /// The backend's error.
        #[source]
        source: BoxError,
    },
}

/// At most this many conflicts are spelled out in a message.
const LISTED_CONFLICTS: usize = 10;

fn conflict_list(conflicts: &[crate::StreamConflict]) -> String {
    let mut text: Vec<String> = conflicts
        .iter()
        .take(LISTED_CONFLICTS)
        .map(ToString::to_string)
        .collect();
    if conflicts.len() > LISTED_CONFLICTS {
        text.push(format!("and {} more", conflicts.len() - LISTED_CONFLICTS));
    }
    text.join("; ")
}

impl StoreError {
    /// A permanent backend failure while doing `context`.
    pub fn backend(context: impl Into<String>, source: impl Into<BoxError>) -> Self {
        StoreError::Backend {
            context: context.into(),
            source: source.into(),
        }
    }

    /// A transient backend failure while doing `context` (see [`StoreError::Transient`]).
    pub fn transient(context: impl Into<String>, source: impl Into<BoxError>) -> Self {
        StoreError::Transient {
            context: context.into(),
            source: source.into(),
        }
    }

    /// Whether repeating the operation may succeed without anybody changing anything: true
    /// only for [`StoreError::Transient`], which adapters report for a lost or refused
    /// connection, a pool timeout, a server shutting down or restarting, a serialization
    /// failure and a deadlock. Everything else (conflicts, corrupt rows, permissions, schema
    /// problems, unclassified driver errors) is permanent: a retry only repeats it.
    ///
    /// ```
    /// # use eventsource_core::StoreError;
    /// let lost = std::io::Error::new(std::io::ErrorKind::ConnectionReset, "reset by peer");
    /// assert!(StoreError::transient("reading the log", lost).is_transient());
    /// assert!(!StoreError::backend("reading the log", "permission denied").is_transient());
    /// ```
    pub fn is_transient(&self) -> bool {
        matches!(self, StoreError::Transient { .. })
    }
}

/// A stored event that could not be decoded into the current event type.
#[derive(Debug, thiserror::Error)]
#[error(
    "cannot decode event `{name}` (schema version {schema_version}) in stream `{stream}` at version {version}, position {position}: {source}"
)]
pub struct DecodeError {
    /// The stream of the event.
    pub stream: StreamId,
    /// Its stream version.
    pub version: Version,
    /// Its global position.
    pub position: Position,
    /// Its stored name.
    pub name: String,
    /// Its stored schema version.
    pub schema_version: u32,
    /// What went wrong.
    #[source]
    pub source: DecodeFailure,
}

/// Why an aggregate could not be loaded.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LoadError {
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A stored event did not decode.
    #[error(transparent)]
    Decode(#[from] DecodeError),
    /// Time travel to a version the stream has not reached.
    #[error("stream `{stream}` has no version {requested}: it is at version {head}")]
    VersionNotFound {
        /// The aggregate's stream.
        stream: StreamId,
        /// The version asked for.
        requested: Version,
        /// The stream's version.
        head: Version,
    },
}

/// Why a command was not executed. Nothing was written in any of these cases.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ExecuteError<E: std::error::Error + 'static> {
    /// The aggregate rejected the command.
    #[error("command rejected by `{stream}` at version {version}: {source}")]
    Rejected {
        /// The aggregate's stream.
        stream: StreamId,
        /// The version the command was decided at.
        version: Version,
        /// The aggregate's error.
        #[source]
        source: E,
    },
    /// Other writers kept changing the stream; the retries allowed were used up.
    #[error(
        "stream `{stream}` moved under the command {attempts} time(s) in a row: the last attempt was decided at version {expected}, but another writer had taken the stream to version {actual}; gave up (allow more with `Repository::retry_on_conflict`)"
    )]
    Conflict {
        /// The aggregate's stream.
        stream: StreamId,
        /// How many times the command was decided.
        attempts: u32,
        /// The version the last attempt was decided at.
        expected: Version,
        /// The version the stream was at instead.
        actual: Version,
    },
    /// The idempotency key was already used on this stream by a different command (another
    /// name, or the same name with other content): the command was not executed, and the
    /// earlier execution's events are unchanged. Use a new key for a new command.
    #[error(
        "idempotency key `{}` was already used on stream `{stream}` (first written at version {version}) by the command {stored}, not by {given}: use a new key for a different command",
        crate::limits::excerpt(key)
    )]
    IdempotencyKeyReused {
        /// The aggregate's stream.
        stream: StreamId,
        /// The key.
        key: String,
        /// The stream version of the earlier execution's first event.
        version: Version,
        /// The fingerprint stored with the earlier execution.
        stored: CommandFingerprint,
        /// The fingerprint of the command given now.
        given: CommandFingerprint,
    },
    /// An event could not be encoded.
    #[error(transparent)]
    Encode(#[from] EncodeError),
    /// Loading the aggregate failed.
    #[error(transparent)]
    Load(#[from] LoadError),
    /// The store failed while appending.
    #[error(transparent)]
    Store(StoreError),
}

impl<E: std::error::Error + 'static> ExecuteError<E> {
    /// The aggregate's own rejection, if that is why the command failed.
    pub fn rejection(&self) -> Option<&E> {
        match self {
            ExecuteError::Rejected { source, .. } => Some(source),
            _ => None,
        }
    }
}

/// An event that could not be encoded for storage; nothing of its batch was written.
#[derive(Debug, thiserror::Error)]
#[error("cannot encode event `{name}` for stream `{stream}`: {source}")]
pub struct EncodeError {
    /// The stream it was meant for.
    pub stream: StreamId,
    /// The event's name.
    pub name: &'static str,
    /// The serializer's error.
    #[source]
    pub source: serde_json::Error,
}

/// Why a typed batch was not appended ([`Repository::append`](crate::Repository::append)).
/// Nothing was written in any of these cases.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AppendError {
    /// The stream was not at the expected version.
    #[error("conflict: stream `{stream}` is at version {actual}, the append expected {expected}")]
    Conflict {
        /// The aggregate's stream.
        stream: StreamId,
        /// What the append expected.
        expected: ExpectedVersion,
        /// The stream's version when the append was checked.
        actual: Version,
    },
    /// An event could not be encoded.
    #[error(transparent)]
    Encode(#[from] EncodeError),
    /// The store refused or failed the append otherwise: an empty batch, an event id stored
    /// elsewhere, a backend failure.
    #[error(transparent)]
    Store(StoreError),
}

impl From<StoreError> for AppendError {
    /// A conflict becomes [`AppendError::Conflict`]; anything else [`AppendError::Store`].
    fn from(error: StoreError) -> Self {
        match error {
            StoreError::Conflict {
                stream,
                expected,
                actual,
            } => AppendError::Conflict {
                stream,
                expected,
                actual,
            },
            other => AppendError::Store(other),
        }
    }
}

/// Why a snapshot was not stored ([`Repository::snapshot`](crate::Repository::snapshot)).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SnapshotError {
    /// Loading the aggregate failed.
    #[error(transparent)]
    Load(#[from] LoadError),
    /// The stream has no events, so there is no state to store.
    #[error("stream `{stream}` has no events: there is no state to snapshot")]
    NoEvents {
        /// The aggregate's stream.
        stream: StreamId,
    },
    /// The state could not be serialized.
    #[error(
        "cannot encode the state of stream `{stream}` at version {version} for a snapshot: {source}"
    )]
    Encode {
        /// The aggregate's stream.
        stream: StreamId,
        /// The version the state includes.
        version: Version,
        /// The serializer's error.
        #[source]
        source: serde_json::Error,
    },
    /// The store failed to save it.
    #[error("cannot store the snapshot of stream `{stream}` at version {version}: {source}")]
    Store {
        /// The aggregate's stream.
        stream: StreamId,
        /// The version the state includes.
        version: Version,
        /// The store's error.
        #[source]
        source: StoreError,
    },
}
