//! The store contract every adapter implements, and the in-memory store.

use std::future::Future;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use uuid::Uuid;

use crate::envelope::{
    Checkpoint, ExpectedVersion, NewEvent, Position, RecordedEvent, StreamId, Version,
};
use crate::error::StoreError;

pub(crate) mod memory;
pub(crate) mod memory_deadlines;
mod pages;

pub use pages::StreamPages;

/// What an append wrote (or, for an idempotent retry, what the original append wrote).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Appended {
    /// The stream appended to.
    pub stream_id: StreamId,
    /// The version of the batch's first event.
    pub first_version: Version,
    /// The version of the batch's last event: the stream's version after the append.
    pub last_version: Version,
    /// The global position of the batch's first event.
    pub first_position: Position,
    /// The global position of the batch's last event.
    pub last_position: Position,
    /// True when every event id was already stored by an earlier, identical append, so nothing
    /// new was written.
    pub replayed: bool,
}

/// Which events a global read returns. The default returns every event.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogFilter {
    /// Stream categories (aggregate names) to include; empty means all.
    pub categories: Vec<String>,
    /// Event names to include; empty means all.
    pub names: Vec<String>,
}

impl LogFilter {
    /// Every event.
    pub fn all() -> Self {
        LogFilter::default()
    }

    /// Only events of streams in `category`.
    #[must_use]
    pub fn category(mut self, category: impl Into<String>) -> Self {
        self.categories.push(category.into());
        self
    }

    /// Only events named `name` (combine with more calls for several names).
    #[must_use]
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.names.push(name.into());
        self
    }

    /// Whether `event` passes the filter.
    pub fn matches(&self, event: &RecordedEvent) -> bool {
        (self.categories.is_empty()
            || self
                .categories
                .iter()
                .any(|c| c == event.stream_id.category()))
            && (self.names.is_empty() || self.names.contains(&event.name))
    }
}

/// A durable, append-only log of events, organised in streams.
///
/// Every adapter passes the conformance suite (`eventsource_core::testing`), which pins down
/// the semantics below.
pub trait EventStore: Send + Sync + 'static {
    /// Appends `events` to `stream` atomically if the stream matches `expected`.
    ///
    /// All or nothing: on any error nothing is written. A conflict is
    /// [`StoreError::Conflict`] with the expected and actual versions. If the batch's event ids
    /// are all already stored, in this stream and in this order, nothing is written and the
    /// original result is returned with `replayed = true` (a safe client retry).
    fn append(
        &self,
        stream: &StreamId,
        expected: ExpectedVersion,
        events: Vec<NewEvent>,
    ) -> impl Future<Output = Result<Appended, StoreError>> + Send;

    /// Up to `max_count` events of `stream` with versions from `from` on, in version order.
    fn read_stream(
        &self,
        stream: &StreamId,
        from: Version,
        max_count: usize,
    ) -> impl Future<Output = Result<Vec<RecordedEvent>, StoreError>> + Send;

    /// Up to `max_count` events of the global log after `after` that pass `filter`, in
    /// checkpoint order. Resuming from the last returned event's checkpoint never skips or
    /// repeats an event.
    fn read_all(
        &self,
        after: Checkpoint,
        max_count: usize,
        filter: &LogFilter,
    ) -> impl Future<Output = Result<Vec<RecordedEvent>, StoreError>> + Send;

    /// The events of `stream` from version `from` on, read page by page (see [`StreamPages`];
    /// [`until`](StreamPages::until) bounds the range).
    fn read_stream_pages(&self, stream: &StreamId, from: Version) -> StreamPages<'_, Self>
    where
        Self: Sized,
    {
        StreamPages::new(self, stream.clone(), from)
    }

    /// The stream's current version (`Version::NONE` if it has no events).
    fn stream_version(
        &self,
        stream: &StreamId,
    ) -> impl Future<Output = Result<Version, StoreError>> + Send;

    /// The position of the newest event in the log (`Position(0)` when empty).
    fn head_position(&self) -> impl Future<Output = Result<Position, StoreError>> + Send;

    /// The stored event with this id, if any.
    fn find_event(
        &self,
        event_id: Uuid,
    ) -> impl Future<Output = Result<Option<RecordedEvent>, StoreError>> + Send;
}

/// A stored copy of an aggregate's state at a version.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Snapshot {
    /// The aggregate's stream.
    pub stream_id: StreamId,
    /// The stream version the state includes.
    pub version: Version,
    /// The aggregate's `STATE_FINGERPRINT` when the snapshot was taken.
    pub state_fingerprint: String,
    /// The serialized state.
    pub state: Value,
    /// When the snapshot was taken.
    pub taken_at: DateTime<Utc>,
}

/// Storage for snapshots; one (the newest) per stream.
pub trait SnapshotStore: Send + Sync + 'static {
    /// Stores `snapshot` unless a snapshot at a higher version is already stored (snapshots
    /// only move forward).
    fn save_snapshot(
        &self,
        snapshot: Snapshot,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// The stream's stored snapshot, if any.
    fn load_snapshot(
        &self,
        stream: &StreamId,
    ) -> impl Future<Output = Result<Option<Snapshot>, StoreError>> + Send;
}
