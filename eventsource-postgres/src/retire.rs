//! Retiring streams (archive, delete) and snapshot maintenance: the SQL of migration 7 behind
//! the core contracts.

use eventsource_core::{
    SnapshotMaintenance, SnapshotScope, StoreError, StreamId, StreamRetirement, StreamStatus,
    Version,
};
use sqlx::Row;
use sqlx::postgres::PgRow;

use crate::row::Timestamp;
use crate::store::PostgresStore;

impl StreamRetirement for PostgresStore {
    async fn archive_stream(&self, stream: &StreamId) -> Result<Option<StreamStatus>, StoreError> {
        if crate::read::unstorable(stream) {
            return Ok(None);
        }
        let query = self
            .sql()
            .lifecycle
            .archive_stream
            .query()
            .bind(stream.as_str());
        let row = self
            .optional_row(query, format!("archiving stream `{stream}`"))
            .await?;
        row.map(|row| decode_status(stream, &row)).transpose()
    }

    async fn delete_stream(&self, stream: &StreamId) -> Result<u64, StoreError> {
        if crate::read::unstorable(stream) {
            return Ok(0);
        }
        let query = self
            .sql()
            .lifecycle
            .delete_stream
            .query()
            .bind(stream.as_str());
        let deleted: i64 = self
            .scalar(query, format!("deleting stream `{stream}`"))
            .await?;
        tracing::info!(stream = %stream, events = deleted, "eventsource: a stream was deleted");
        Ok(u64::try_from(deleted).unwrap_or(0))
    }

    async fn stream_status(&self, stream: &StreamId) -> Result<Option<StreamStatus>, StoreError> {
        if crate::read::unstorable(stream) {
            return Ok(None);
        }
        let query = self
            .sql()
            .lifecycle
            .stream_status
            .query()
            .bind(stream.as_str());
        let row = self
            .optional_row(query, format!("reading the status of stream `{stream}`"))
            .await?;
        row.map(|row| decode_status(stream, &row)).transpose()
    }
}

impl SnapshotMaintenance for PostgresStore {
    async fn delete_snapshots(&self, scope: &SnapshotScope) -> Result<u64, StoreError> {
        let lifecycle = &self.sql().lifecycle;
        let (query, what) = match scope {
            SnapshotScope::Stream(stream) => (
                lifecycle
                    .delete_snapshot
                    .query()
                    .bind(stream.as_str().to_owned()),
                format!("deleting the snapshot of stream `{stream}`"),
            ),
            SnapshotScope::Category(category) => (
                lifecycle
                    .delete_category_snapshots
                    .query()
                    .bind(category.clone()),
                format!(
                    "deleting the snapshots of category `{}`",
                    crate::error::excerpt(category)
                ),
            ),
            SnapshotScope::All => (
                lifecycle.delete_all_snapshots.query(),
                "deleting every snapshot".to_owned(),
            ),
        };
        if let SnapshotScope::Stream(stream) = scope
            && crate::read::unstorable(stream)
        {
            return Ok(0);
        }
        let done = query
            .execute(self.pool())
            .await
            .map_err(self.failed(what))?;
        Ok(done.rows_affected())
    }
}

fn decode_status(stream: &StreamId, row: &PgRow) -> Result<StreamStatus, StoreError> {
    let corrupt = |message: String| StoreError::CorruptRow {
        stream: stream.clone(),
        version: Version::NONE,
        message: format!("stream head: {message}"),
    };
    let version: i64 = row.try_get("version").map_err(|e| corrupt(e.to_string()))?;
    Ok(StreamStatus {
        stream_id: stream.clone(),
        version: Version(
            u64::try_from(version).map_err(|_| corrupt(format!("negative version {version}")))?,
        ),
        archived_at: row
            .try_get::<Option<Timestamp>, _>("archived_at")
            .map_err(|e| corrupt(e.to_string()))?
            .map(Timestamp::get),
        deleted_at: row
            .try_get::<Option<Timestamp>, _>("deleted_at")
            .map_err(|e| corrupt(e.to_string()))?
            .map(Timestamp::get),
    })
}
