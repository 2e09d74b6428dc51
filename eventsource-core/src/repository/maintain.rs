//! Snapshot maintenance and stream retirement for one aggregate type.

use std::fmt;

use crate::aggregate::Aggregate;
use crate::error::StoreError;
use crate::store::{
    EventStore, SnapshotMaintenance, SnapshotScope, SnapshotStore, StreamRetirement, StreamStatus,
};

use super::Repository;

impl<A: Aggregate, S: EventStore + SnapshotStore + SnapshotMaintenance> Repository<A, S> {
    /// Deletes the stored snapshot of aggregate `id`; returns whether there was one. The next
    /// load folds the whole stream (and, with a snapshot policy, the next command past a
    /// multiple of `n` writes a new one; [`snapshot`](Self::snapshot) takes one at once).
    pub async fn delete_snapshot(&self, id: impl fmt::Display) -> Result<bool, StoreError> {
        let scope = SnapshotScope::Stream(self.stream_id(id));
        Ok(self.store.delete_snapshots(&scope).await? > 0)
    }

    /// Deletes the snapshots of every aggregate of this type (after a change to the state's
    /// shape, say); returns how many were deleted.
    pub async fn delete_snapshots(&self) -> Result<u64, StoreError> {
        let scope = SnapshotScope::Category(A::NAME.to_owned());
        self.store.delete_snapshots(&scope).await
    }
}

impl<A: Aggregate, S: EventStore + SnapshotStore + StreamRetirement> Repository<A, S> {
    /// Archives aggregate `id`'s stream: it stays readable, and every further command or
    /// append fails with [`StoreError::StreamArchived`]. `None` for an aggregate without
    /// events.
    pub async fn archive(&self, id: impl fmt::Display) -> Result<Option<StreamStatus>, StoreError> {
        let stream = self.stream_id(id);
        if let Some(cache) = &self.cache {
            cache.take(&stream);
        }
        self.store.archive_stream(&stream).await
    }

    /// Whether aggregate `id`'s stream is open, archived or deleted (`None`: no events).
    pub async fn status(&self, id: impl fmt::Display) -> Result<Option<StreamStatus>, StoreError> {
        self.store.stream_status(&self.stream_id(id)).await
    }
}
