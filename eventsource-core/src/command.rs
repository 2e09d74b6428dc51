//! What travels with a command: ids for tracing and an optional idempotency key.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use uuid::Uuid;

use crate::envelope::{Metadata, StreamId};
use crate::fingerprint::CommandFingerprint;

/// Metadata of one command execution.
///
/// The events a command produces carry its correlation id (the command's own id when none is
/// given, so a new conversation starts here), its causation id (the command's id when none is
/// given) and its custom fields.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CommandMetadata {
    /// This command's id (UUID v7 by default).
    pub command_id: Uuid,
    /// The id of the conversation the command belongs to.
    pub correlation_id: Option<Uuid>,
    /// The id of the message that caused the command.
    pub causation_id: Option<Uuid>,
    /// A key that makes execution idempotent: a second execution with the same key on the same
    /// stream writes nothing and reports the first one (see
    /// [`Repository::execute_with`](crate::Repository::execute_with)).
    pub idempotency_key: Option<String>,
    /// Replaces the aggregate's [`command_fingerprint`](crate::Aggregate::command_fingerprint)
    /// for this execution (only used with an idempotency key).
    pub command_fingerprint: Option<CommandFingerprint>,
    /// Application-defined fields copied onto every event.
    pub custom: Map<String, Value>,
}

impl Default for CommandMetadata {
    fn default() -> Self {
        CommandMetadata {
            command_id: Uuid::now_v7(),
            correlation_id: None,
            causation_id: None,
            idempotency_key: None,
            command_fingerprint: None,
            custom: Map::new(),
        }
    }
}

impl CommandMetadata {
    /// Fresh metadata with a new command id.
    pub fn new() -> Self {
        CommandMetadata::default()
    }

    /// Sets the correlation id.
    #[must_use]
    pub fn correlation_id(mut self, id: Uuid) -> Self {
        self.correlation_id = Some(id);
        self
    }

    /// Sets the causation id.
    #[must_use]
    pub fn causation_id(mut self, id: Uuid) -> Self {
        self.causation_id = Some(id);
        self
    }

    /// Sets the idempotency key: the command is decided and written once per stream, and
    /// every repeat gets that execution's outcome; the same key with a different command is
    /// [`ExecuteError::IdempotencyKeyReused`](crate::ExecuteError::IdempotencyKeyReused). The
    /// key is stored in the events' metadata (keep personal data out of it). See
    /// [`Repository::execute_with`](crate::Repository::execute_with) for the rules.
    #[must_use]
    pub fn idempotency_key(mut self, key: impl Into<String>) -> Self {
        self.idempotency_key = Some(key.into());
        self
    }

    /// Sets the fingerprint a repeat of the idempotency key is compared with, instead of the
    /// aggregate's own (for a hand-written aggregate, or a command whose content the derive
    /// cannot read).
    #[must_use]
    pub fn command_fingerprint(mut self, fingerprint: CommandFingerprint) -> Self {
        self.command_fingerprint = Some(fingerprint);
        self
    }

    /// Adds an application field copied onto every event.
    #[must_use]
    pub fn with(mut self, key: impl Into<String>, value: impl Into<Value>) -> Self {
        self.custom.insert(key.into(), value.into());
        self
    }

    /// The metadata the command's events carry: with an idempotency key, the key and the
    /// command's fingerprint too.
    pub(crate) fn event_metadata(&self, fingerprint: Option<&CommandFingerprint>) -> Metadata {
        let keyed = self.idempotency_key.is_some();
        Metadata {
            correlation_id: Some(self.correlation_id.unwrap_or(self.command_id)),
            causation_id: Some(self.causation_id.unwrap_or(self.command_id)),
            idempotency_key: self.idempotency_key.clone(),
            command: fingerprint.filter(|_| keyed).cloned(),
            custom: self.custom.clone(),
        }
    }

    /// The id of the `index`-th event of an idempotent command: the same key on the same
    /// stream always yields the same ids, so the store recognises a repeat.
    pub(crate) fn event_id(&self, stream: &StreamId, index: usize) -> Uuid {
        match &self.idempotency_key {
            Some(key) => derived_event_id(stream, key, index),
            None => Uuid::now_v7(),
        }
    }
}

/// The id of the `index`-th event written by the command with idempotency `key` on `stream`
/// (UUID v5 of the three): the key's scope is the stream.
pub(crate) fn derived_event_id(stream: &StreamId, key: &str, index: usize) -> Uuid {
    Uuid::new_v5(
        &IDEMPOTENCY_NAMESPACE,
        format!("{stream}\u{0}{key}\u{0}{index}").as_bytes(),
    )
}

/// Namespace of the UUID v5 event ids derived from idempotency keys.
const IDEMPOTENCY_NAMESPACE: Uuid = Uuid::from_u128(0x6576_656e_7473_6f75_7263_652d_6964_656d);
