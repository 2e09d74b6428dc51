//! Snapshots: the newest per stream, never replaced by an older one.

use eventsource_core::{Snapshot, SnapshotStore, StoreError, StreamId};

use crate::error::PostgresError;
use crate::row::decode_snapshot;
use crate::store::PostgresStore;

impl SnapshotStore for PostgresStore {
    async fn save_snapshot(&self, snapshot: Snapshot) -> Result<(), StoreError> {
        let version = i64::try_from(snapshot.version.0).map_err(|_| PostgresError::OutOfRange {
            what: "snapshot version",
            value: snapshot.version.0,
        })?;
        self.sql()
            .save_snapshot
            .query()
            .bind(snapshot.stream_id.as_str())
            .bind(version)
            .bind(&snapshot.state_fingerprint)
            .bind(&snapshot.state)
            .bind(snapshot.taken_at)
            .execute(self.pool())
            .await
            .map_err(self.failed(format!(
                "saving the snapshot of stream `{}` at version {}",
                snapshot.stream_id, snapshot.version
            )))?;
        Ok(())
    }

    async fn load_snapshot(&self, stream: &StreamId) -> Result<Option<Snapshot>, StoreError> {
        if crate::read::unstorable(stream) {
            return Ok(None);
        }
        let query = || self.sql().load_snapshot.query().bind(stream.as_str());
        let what = || format!("loading the snapshot of stream `{stream}`");
        let rows = self.stream_rows(query, what).await?;
        rows.first()
            .map(|row| decode_snapshot(stream, row))
            .transpose()
    }
}
