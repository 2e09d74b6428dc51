//! The store contract every adapter implements, and the in-memory store.

use std::future::Future;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use uuid::Uuid;

use crate::envelope::{
    Checkpoint, Envelope, ExpectedVersion, NewEvent, Position, RecordedEvent, StreamId, Version,
};
use crate::error::StoreError;

mod decision;
mod fold;
pub(crate) mod memory;
pub(crate) mod memory_deadlines;
mod pages;
pub(crate) mod retire;

pub use decision::{
    AppendCondition, Query, QueryItem, QueryRead, ReadPosition, StreamAppend, StreamConflict,
};
pub use fold::{FoldEvent, FoldPage, FoldPayload};
pub use pages::StreamPages;
pub use retire::{SnapshotMaintenance, SnapshotScope, StreamRetirement, StreamStatus};

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

    /// What [`read_stream`](Self::read_stream) returns for the same arguments, narrowed to
    /// what a fold reads ([`FoldEvent`]); `last` is set when the page is known to end the
    /// stream. Loads read through this (not time travel by timestamp, nor audit trails).
    ///
    /// The default reads whole records and narrows them, with `last` for a short page;
    /// stores override it to read fewer columns and to spare the empty page after a full last
    /// one.
    fn read_stream_for_fold(
        &self,
        stream: &StreamId,
        from: Version,
        max_count: usize,
    ) -> impl Future<Output = Result<FoldPage, StoreError>> + Send {
        async move {
            let events = self.read_stream(stream, from, max_count).await?;
            let last = events.len() < max_count;
            Ok(FoldPage {
                events: events.into_iter().map(FoldEvent::from).collect(),
                last,
            })
        }
    }

    /// Up to `max_count` events of the global log after `after` that pass `filter`, in
    /// checkpoint order. Resuming from the last returned event's checkpoint never skips or
    /// repeats an event.
    fn read_all(
        &self,
        after: Checkpoint,
        max_count: usize,
        filter: &LogFilter,
    ) -> impl Future<Output = Result<Vec<RecordedEvent>, StoreError>> + Send;

    /// [`read_all`](Self::read_all) for a reader that needs only `envelope`'s fields: every
    /// event comes back as [`RecordedEvent::within`]`(envelope)` makes it, so that a reader
    /// sees the same records on every store, and a store may skip reading what it leaves out
    /// (the PostgreSQL adapter does). The default reads everything and blanks the rest.
    fn read_all_within(
        &self,
        after: Checkpoint,
        max_count: usize,
        filter: &LogFilter,
        envelope: Envelope,
    ) -> impl Future<Output = Result<Vec<RecordedEvent>, StoreError>> + Send {
        async move {
            let events = self.read_all(after, max_count, filter).await?;
            Ok(match envelope {
                Envelope::Full => events,
                Envelope::Lean => events.into_iter().map(|e| e.within(envelope)).collect(),
            })
        }
    }

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

    /// Whether appends seal personal fields ([`Personal`](crate::Personal)) before storing
    /// them: true for [`Shredding`](crate::Shredding). A repository refuses to write events
    /// with personal values to a store that does not, rather than store them in plain text.
    fn seals_personal_data(&self) -> bool {
        false
    }
}

/// A store that keeps invariants spanning streams: atomic appends to several streams, and
/// appends conditional on a query of tagged events (Dynamic Consistency Boundaries).
///
/// A decision reads its facts with [`read_query`](Self::read_query), decides, and appends
/// with the read's [`AppendCondition`]: the append fails with
/// [`StoreError::ConditionFailed`] if an event matching the query was written in between, so
/// two decisions on one boundary never both commit. Disjoint boundaries do not wait for each
/// other.
///
/// Both `MemoryStore` and the PostgreSQL store implement it and pass the conformance cases.
pub trait DecisionStore: EventStore {
    /// Appends to several streams atomically: all or nothing.
    ///
    /// Each stream is checked against its own [`ExpectedVersion`]; if any does not hold,
    /// nothing is written and the error is [`StoreError::Conflicts`], naming every stream that
    /// failed. With a `condition`, the append also fails, writing nothing, with
    /// [`StoreError::ConditionFailed`] if an event matching its query was written after its
    /// position. Returns one [`Appended`] per stream, in the order given.
    ///
    /// Idempotency: if every event id of every stream is already stored, each stream's batch
    /// exactly as given, nothing is written and the original results are returned with
    /// `replayed = true` (the condition and the expectations are not checked again: a retry
    /// after a lost acknowledgement succeeds). Some but not all of the ids stored is
    /// [`StoreError::DuplicateEventId`]. The checks of [`Limits`](crate::Limits) apply to
    /// every stream and event, plus: no stream twice, no event id twice, at least one stream,
    /// every query item with at least one tag.
    fn append_streams(
        &self,
        appends: Vec<StreamAppend>,
        condition: Option<AppendCondition>,
    ) -> impl Future<Output = Result<Vec<Appended>, StoreError>> + Send;

    /// Every event matching `query`, in checkpoint order, and the position the read saw the
    /// log up to. An empty query matches nothing; every item needs at least one tag.
    fn read_query(
        &self,
        query: &Query,
    ) -> impl Future<Output = Result<QueryRead, StoreError>> + Send;
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
