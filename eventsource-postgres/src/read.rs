//! Reading: streams, the gap-safe global log, heads, and how far the read horizon lags.

use std::time::{Duration, Instant};

use eventsource_core::{
    Appended, Checkpoint, EventStore, ExpectedVersion, LogFilter, NewEvent, Position,
    RecordedEvent, StoreError, StreamId, Version,
};
use sqlx::Row;
use uuid::Uuid;

use crate::row::decode_event;
use crate::sql::{HORIZON_LAG, bigint, bind_filter};
use crate::store::PostgresStore;

impl PostgresStore {
    /// How far global reads lag behind the newest commits: the age of the oldest open
    /// transaction of the cluster that holds a transaction id (events of later transactions
    /// stay invisible to [`read_all`](EventStore::read_all) until it ends). Zero when none is
    /// open. Seeing other roles' transactions needs the `pg_read_all_stats` role (or superuser);
    /// without it the figure covers only the store's own role.
    pub async fn horizon_lag(&self) -> Result<Duration, StoreError> {
        self.ensure_fits_store().await?;
        let seconds: f64 = sqlx::query_scalar(HORIZON_LAG)
            .fetch_one(self.pool())
            .await
            .map_err(|e| StoreError::backend("measuring the horizon lag", e))?;
        Ok(Duration::try_from_secs_f64(seconds.max(0.0)).unwrap_or(Duration::ZERO))
    }

    /// Whether committed events passing `filter` exist after `checkpoint`, readable or still
    /// behind the read horizon.
    pub(crate) async fn unread(
        &self,
        checkpoint: Checkpoint,
        filter: &LogFilter,
    ) -> Result<bool, StoreError> {
        self.ensure_fits_store().await?;
        let query = self
            .sql()
            .unread
            .pick(filter)
            .query()
            .bind(bigint(checkpoint.transaction()))
            .bind(bigint(checkpoint.position().0));
        bind_filter(query, filter)
            .fetch_one(self.pool())
            .await
            .and_then(|row| row.try_get(0))
            .map_err(self.failed("looking for unread events".to_owned()))
    }
}

/// Appends are in `append.rs`; everything else here.
impl EventStore for PostgresStore {
    async fn append(
        &self,
        stream: &StreamId,
        expected: ExpectedVersion,
        events: Vec<NewEvent>,
    ) -> Result<Appended, StoreError> {
        let batch_size = events.len();
        let append = self.append_batch(stream, expected, events);
        eventsource_core::observe::observe_append("postgres", stream, expected, batch_size, append)
            .await
    }

    async fn read_stream(
        &self,
        stream: &StreamId,
        from: Version,
        max_count: usize,
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        if max_count == 0 {
            return Ok(Vec::new());
        }
        self.ensure_fits_store().await?;
        let rows = self
            .sql()
            .read_stream
            .query()
            .bind(stream.as_str())
            .bind(bigint(from.0))
            .bind(bigint(max_count))
            .fetch_all(self.pool())
            .await
            .map_err(self.failed(format!("reading stream `{stream}` from version {from}")))?;
        rows.iter().map(decode_event).collect()
    }

    async fn read_all(
        &self,
        after: Checkpoint,
        max_count: usize,
        filter: &LogFilter,
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        if max_count == 0 {
            return Ok(Vec::new());
        }
        self.ensure_fits_store().await?;
        let statement = self.sql().read_all.pick(filter);
        let failed = || self.failed(format!("reading the global log after {after}"));
        // Committed events may wait beyond the horizon for an older transaction to end; give it
        // `horizon_wait` to do so (most transactions are short), so that a reader sees what was
        // committed before it asked. Never read past the horizon: that could skip events.
        let deadline = Instant::now() + self.horizon_wait();
        let mut pause = Duration::from_millis(2);
        loop {
            let query = statement
                .query()
                .bind(bigint(after.transaction()))
                .bind(bigint(after.position().0));
            let rows = bind_filter(query, filter)
                .bind(bigint(max_count))
                .fetch_all(self.pool())
                .await
                .map_err(failed())?;
            let held_back = match rows.first() {
                Some(row) => row.try_get::<bool, _>("held_back").map_err(failed())?,
                None => false,
            };
            let mut events = Vec::with_capacity(rows.len());
            for row in &rows {
                // An empty page is one row of NULLs beside the flag.
                let position: Option<i64> = row.try_get("position").map_err(failed())?;
                if position.is_some() {
                    events.push(decode_event(row)?);
                }
            }
            let now = Instant::now();
            if !held_back || events.len() >= max_count || now >= deadline {
                return Ok(events);
            }
            tokio::time::sleep(pause.min(deadline - now)).await;
            pause = (pause * 2).min(Duration::from_millis(50));
        }
    }

    async fn stream_version(&self, stream: &StreamId) -> Result<Version, StoreError> {
        let version: i64 = self
            .sql()
            .stream_version
            .query()
            .bind(stream.as_str())
            .fetch_one(self.pool())
            .await
            .and_then(|row| row.try_get(0))
            .map_err(self.failed(format!("reading the version of stream `{stream}`")))?;
        u64::try_from(version)
            .map(Version)
            .map_err(|_| StoreError::CorruptRow {
                stream: stream.clone(),
                version: Version::NONE,
                message: format!("the stream head is at the negative version {version}"),
            })
    }

    async fn head_position(&self) -> Result<Position, StoreError> {
        self.ensure_fits_store().await?;
        let position: i64 = self
            .sql()
            .head_position
            .query()
            .fetch_one(self.pool())
            .await
            .and_then(|row| row.try_get(0))
            .map_err(self.failed("reading the head position".to_owned()))?;
        Ok(Position(u64::try_from(position).unwrap_or(0)))
    }

    async fn find_event(&self, event_id: Uuid) -> Result<Option<RecordedEvent>, StoreError> {
        let row = self
            .sql()
            .find_event
            .query()
            .bind(event_id)
            .fetch_optional(self.pool())
            .await
            .map_err(self.failed(format!("finding event {event_id}")))?;
        row.as_ref().map(decode_event).transpose()
    }
}
