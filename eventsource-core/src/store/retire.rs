//! Retiring streams (archive, delete) and snapshot maintenance: the only ways anything leaves
//! or stops growing in a store.

use std::future::Future;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::envelope::{StreamId, Version};
use crate::error::StoreError;
use crate::store::{EventStore, SnapshotStore};

/// Where a stream stands: its head, and whether it was archived or deleted.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StreamStatus {
    /// The stream.
    pub stream_id: StreamId,
    /// Its head: the version of its last event. It stays after a delete, so that the id is
    /// never reused for other events.
    pub version: Version,
    /// When it was archived (it takes no more appends); `None` while it is open.
    pub archived_at: Option<DateTime<Utc>>,
    /// When its events were deleted; `None` while they are stored.
    pub deleted_at: Option<DateTime<Utc>>,
}

impl StreamStatus {
    /// Whether the stream takes no more appends (archived, or deleted).
    pub fn is_archived(&self) -> bool {
        self.archived_at.is_some()
    }
}

/// Archiving and deleting streams: the one path by which events leave a store.
///
/// - **Archive**: the stream keeps its events and stays readable, but every further append
///   that would succeed fails with [`StoreError::StreamArchived`] naming the stream (an append
///   whose expectation does not hold is still a [`StoreError::Conflict`]).
/// - **Delete** (where the law demands it): archives the stream, then removes its events and
///   its snapshot. Nothing else can remove events (the PostgreSQL store's immutability trigger
///   lets only this path through). The stream's head stays as a tombstone, so the id is never
///   reused. The global log stays consistent for running projections: positions are never
///   reused and no reader waits for the deleted ones; a projection already past them is
///   unaffected, one behind them never sees them. Read models built from them are the
///   application's to clean (typically in a handler of a "deleted" event it appends first).
pub trait StreamRetirement: EventStore {
    /// Archives `stream`. `None` when the stream has no events (nothing archived); archiving
    /// twice keeps the first time.
    fn archive_stream(
        &self,
        stream: &StreamId,
    ) -> impl Future<Output = Result<Option<StreamStatus>, StoreError>> + Send;

    /// Archives `stream` and deletes its events and snapshot; returns how many events were
    /// deleted (0 for a stream without events, or one deleted before).
    fn delete_stream(
        &self,
        stream: &StreamId,
    ) -> impl Future<Output = Result<u64, StoreError>> + Send;

    /// The stream's status; `None` when it has no events and was never archived.
    fn stream_status(
        &self,
        stream: &StreamId,
    ) -> impl Future<Output = Result<Option<StreamStatus>, StoreError>> + Send;
}

/// Which snapshots to delete.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum SnapshotScope {
    /// The snapshot of one stream.
    Stream(StreamId),
    /// The snapshots of every stream of an aggregate type (a stream category: `cart` for
    /// `cart-42`).
    Category(String),
    /// Every snapshot.
    All,
}

impl SnapshotScope {
    /// Whether the snapshot of `stream` is in scope.
    pub fn contains(&self, stream: &StreamId) -> bool {
        match self {
            SnapshotScope::Stream(id) => id == stream,
            SnapshotScope::Category(category) => stream.category() == category,
            SnapshotScope::All => true,
        }
    }
}

/// Deleting snapshots. Snapshots are a cache: deleting them loses nothing, the next loads
/// fold the streams and (with a snapshot policy) write new ones.
pub trait SnapshotMaintenance: SnapshotStore {
    /// Deletes the snapshots in `scope`; returns how many were deleted.
    fn delete_snapshots(
        &self,
        scope: &SnapshotScope,
    ) -> impl Future<Output = Result<u64, StoreError>> + Send;
}
