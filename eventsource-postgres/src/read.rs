//! Reading: streams, the gap-safe global log, heads, and how far the read horizon lags.

use std::time::{Duration, Instant};

use eventsource_core::{
    Appended, Checkpoint, EventStore, ExpectedVersion, FoldPage, LogFilter, NewEvent, Position,
    RecordedEvent, StoreError, StreamId, Version,
};
use sqlx::Row;
use sqlx::postgres::PgRow;
use uuid::Uuid;

use crate::row::{decode_event, decode_fold_event};
use crate::sql::{HORIZON_LAG, Statement, bigint};
use crate::store::PostgresStore;

impl PostgresStore {
    /// The rows of one page of `stream` from `from` read by `statement` (`read_stream` or its
    /// narrow form for folds, which bind the same parameters); `None` when the page is empty
    /// without asking (no rows wanted, or an id no stream can have).
    async fn stream_page(
        &self,
        statement: &Statement,
        stream: &StreamId,
        from: Version,
        max_count: usize,
    ) -> Result<Option<Vec<PgRow>>, StoreError> {
        if max_count == 0 || unstorable(stream) {
            return Ok(None);
        }
        self.ensure_fits_store().await?;
        let query = statement
            .query()
            .bind(stream.as_str())
            .bind(bigint(from.0))
            .bind(bigint(max_count));
        let what = format!("reading stream `{stream}` from version {from}");
        self.rows(query, what).await.map(Some)
    }

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
            .map_err(|e| crate::error::store_error("measuring the horizon lag", e))?;
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
        let query = self.sql().unread.after(checkpoint, filter);
        self.scalar(query, "looking for unread events".to_owned())
            .await
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
        let statement = &self.sql().read_stream;
        match self.stream_page(statement, stream, from, max_count).await? {
            Some(rows) => rows.iter().map(decode_event).collect(),
            None => Ok(Vec::new()),
        }
    }

    async fn read_stream_for_fold(
        &self,
        stream: &StreamId,
        from: Version,
        max_count: usize,
    ) -> Result<FoldPage, StoreError> {
        let statement = &self.sql().read_stream_for_fold;
        if max_count == 0 {
            return Ok(FoldPage::default());
        }
        // One row more than the page: present, the stream goes on after the page (the row is
        // dropped undecoded); absent, the page ends the stream as of the read's snapshot.
        let wanted = max_count.saturating_add(1);
        let Some(rows) = self.stream_page(statement, stream, from, wanted).await? else {
            return Ok(FoldPage::default());
        };
        let last = rows.len() <= max_count;
        let events = rows
            .iter()
            .take(max_count)
            .map(|row| decode_fold_event(stream, row))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(FoldPage { events, last })
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
        let what = || format!("reading the global log after {after}");
        // Committed events may wait beyond the horizon for an older transaction to end; give it
        // `horizon_wait` to do so (most transactions are short), so that a reader sees what was
        // committed before it asked. Never read past the horizon: that could skip events.
        let deadline = Instant::now() + self.horizon_wait();
        let mut pause = Duration::from_millis(2);
        loop {
            let query = self.sql().read_all.after(after, filter);
            let rows = self.rows(query.bind(bigint(max_count)), what()).await?;
            let held_back = match rows.first() {
                Some(row) => row
                    .try_get::<bool, _>("held_back")
                    .map_err(self.failed(what()))?,
                None => false,
            };
            let mut events = Vec::with_capacity(rows.len());
            for row in &rows {
                // An empty page is one row of NULLs beside the flag.
                let position: Option<i64> = row.try_get("position").map_err(self.failed(what()))?;
                if position.is_some() {
                    events.push(decode_event(row)?);
                }
            }
            // The statement leaves the order to its index scan (see `sql::read_all`); a stable
            // sort of rows already in order is one pass.
            events.sort_by_key(|e| e.checkpoint);
            let now = Instant::now();
            if !held_back || events.len() >= max_count || now >= deadline {
                return Ok(events);
            }
            tokio::time::sleep(pause.min(deadline - now)).await;
            pause = (pause * 2).min(Duration::from_millis(50));
        }
    }

    async fn stream_version(&self, stream: &StreamId) -> Result<Version, StoreError> {
        if unstorable(stream) {
            return Ok(Version(0));
        }
        let query = self.sql().stream_version.query().bind(stream.as_str());
        let what = format!("reading the version of stream `{stream}`");
        let version: i64 = self.scalar(query, what).await?;
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
        let query = self.sql().head_position.query();
        let position: i64 = self
            .scalar(query, "reading the head position".into())
            .await?;
        Ok(Position(u64::try_from(position).unwrap_or(0)))
    }

    async fn find_event(&self, event_id: Uuid) -> Result<Option<RecordedEvent>, StoreError> {
        let query = self.sql().find_event.query().bind(event_id);
        let what = format!("finding event {event_id}");
        let row = self.optional_row(query, what).await?;
        row.as_ref().map(decode_event).transpose()
    }
}

/// Whether no stream of this id can exist: PostgreSQL text cannot hold NUL (the limits refuse
/// such ids on append), and querying one fails with a raw encoding error, so reads of it
/// answer "no such stream" without a query.
pub(crate) fn unstorable(stream: &StreamId) -> bool {
    stream.as_str().contains('\0')
}
