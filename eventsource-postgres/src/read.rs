//! Reading: streams, the gap-safe global log, heads, and how far the read horizon lags.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use eventsource_core::{
    Appended, Checkpoint, Envelope, EventStore, ExpectedVersion, FoldPage, LogFilter, NewEvent,
    Position, RecordedEvent, StoreError, StreamId, Version,
};
use sqlx::Row;
use sqlx::postgres::PgRow;
use uuid::Uuid;

use crate::row::{decode_event, decode_event_at, decode_fold_event};
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
        let query = || {
            statement
                .query()
                .bind(stream.as_str())
                .bind(bigint(from.0))
                .bind(bigint(max_count))
        };
        let what = || format!("reading stream `{stream}` from version {from}");
        self.stream_rows(query, what).await.map(Some)
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

    /// Up to `max_count` events passing `filter` after `after`, below the read horizon; when
    /// fewer come back while matching events wait beyond the horizon, waits up to
    /// `horizon_wait` for them (most transactions are short), so that a reader sees what was
    /// committed before it asked. Never reads past the horizon: that could skip events.
    async fn read_visible(
        &self,
        after: Checkpoint,
        max_count: usize,
        filter: &LogFilter,
        envelope: Envelope,
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        // No deadline when the wait is too long for an `Instant` (`Duration::MAX`: wait for
        // as long as it takes).
        let deadline = Instant::now().checked_add(self.horizon_wait());
        let mut pause = Duration::from_millis(2);
        loop {
            let (events, held_back) = self.page(after, max_count, filter, envelope).await?;
            let now = Instant::now();
            let left = deadline.map_or(Duration::MAX, |deadline| deadline - now);
            if !held_back || events.len() >= max_count || left.is_zero() {
                return Ok(events);
            }
            tokio::time::sleep(pause.min(left)).await;
            pause = (pause * 2).min(Duration::from_millis(50));
        }
    }

    /// One page of `sql::Statements::read_all` (or `read_all_lean`) for `filter`, in
    /// checkpoint order, and whether events passing it wait beyond the horizon.
    async fn page(
        &self,
        after: Checkpoint,
        max_count: usize,
        filter: &LogFilter,
        envelope: Envelope,
    ) -> Result<(Vec<RecordedEvent>, bool), StoreError> {
        let what = || format!("reading the global log after {after}");
        let statements = match envelope {
            Envelope::Full => &self.sql().read_all,
            Envelope::Lean => &self.sql().read_all_lean,
        };
        let query = statements.after(after, filter);
        let rows = self.rows(query.bind(bigint(max_count)), what()).await?;
        // The flag first, then the events' columns (see `sql::family::read_all`). Error
        // contexts are formatted only on failure: this runs for every row of a catch-up.
        let held_back = match rows.first() {
            Some(row) => row
                .try_get::<bool, _>(0)
                .map_err(|e| self.failed(what())(e))?,
            None => false,
        };
        let mut events = Vec::with_capacity(rows.len());
        for row in &rows {
            // An empty page is one row of NULLs beside the flag.
            let position: Option<i64> = row.try_get(1).map_err(|e| self.failed(what())(e))?;
            if position.is_some() {
                events.push(decode_event_at(row, 1)?);
            }
        }
        // The statement leaves the order to its index scan (see `sql::read_all`); a stable
        // sort of rows already in order is one pass.
        events.sort_by_key(|e| e.checkpoint);
        Ok((events, held_back))
    }
}

/// Whether `events` (a full page of a filtered read) hold nearly every position of the
/// stretch of the log they span: then the whole log there passes the filter, and reading
/// on in plain checkpoint order is cheaper than the filter's merge of one scan per value.
fn nearly_contiguous(events: &[RecordedEvent]) -> bool {
    let positions = events.iter().map(|e| e.position.0);
    let (Some(low), Some(high)) = (positions.clone().min(), positions.max()) else {
        return false;
    };
    let span = high.saturating_sub(low).saturating_add(1);
    let held = events.len() as u64;
    // At least seven in eight (gaps are rolled-back appends and other events), and enough
    // events to say so.
    held >= DENSE_PAGE_MIN && span.saturating_sub(held) <= held / 8
}

/// Filtered reads that may resume in plain checkpoint order: for a filter, the checkpoints
/// where one of its reads ended on a [`nearly_contiguous`] page (or a window read that held
/// nothing else). Several readers of one filter (several projections handling the same
/// events) each leave their own. Only a hint on which statement to use: both are gap-safe.
#[derive(Debug, Default)]
pub(crate) struct DenseReads(Mutex<Vec<(LogFilter, Checkpoint)>>);

/// The smallest page whose positions say that a filter is dense.
const DENSE_PAGE_MIN: u64 = 4;

/// At most this many hints are kept (the oldest go first).
const DENSE_READS_KEPT: usize = 32;

impl DenseReads {
    fn hints(&self) -> std::sync::MutexGuard<'_, Vec<(LogFilter, Checkpoint)>> {
        // The list holds no invariant a panic could break.
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Whether a read of `filter` ended dense at `after`; the hint is used up.
    fn take(&self, filter: &LogFilter, after: Checkpoint) -> bool {
        let mut hints = self.hints();
        let found = hints
            .iter()
            .position(|(f, end)| *end == after && f == filter);
        found.map(|i| hints.remove(i)).is_some()
    }

    /// Records that a read of `filter` ended dense at `end`.
    fn record(&self, filter: &LogFilter, end: Checkpoint) {
        let mut hints = self.hints();
        if hints.len() >= DENSE_READS_KEPT {
            hints.remove(0);
        }
        hints.push((filter.clone(), end));
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
        self.read_all_within(after, max_count, filter, Envelope::Full)
            .await
    }

    async fn read_all_within(
        &self,
        after: Checkpoint,
        max_count: usize,
        filter: &LogFilter,
        envelope: Envelope,
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        if max_count == 0 {
            return Ok(Vec::new());
        }
        self.ensure_fits_store().await?;
        let filtered = !filter.names.is_empty() || !filter.categories.is_empty();
        if !filtered {
            return self.read_visible(after, max_count, filter, envelope).await;
        }
        let dense = self.dense_reads();
        let mut events = Vec::new();
        let mut from = after;
        // The last page of this filter held nearly every event of its stretch of the log:
        // read the next stretch whole, in checkpoint order (one ordered scan, where the
        // filter's statement merges one scan per value), and filter it here. If that fails
        // (an event the filter leaves out may not even decode), the filter's statement reads.
        let window = if dense.take(filter, after) {
            self.page(after, max_count, &LogFilter::all(), envelope)
                .await
                .ok()
        } else {
            None
        };
        if let Some((window, _)) = window {
            let complete = window.len() == max_count;
            let end = window.last().map(|e| e.checkpoint);
            events = window.into_iter().filter(|e| filter.matches(e)).collect();
            if complete && events.len() == max_count {
                if let Some(last) = events.last() {
                    dense.record(filter, last.checkpoint);
                }
                return Ok(events);
            }
            // Every event up to the window's last one was seen (whatever commits later lies
            // beyond the window's horizon, so after it): the filter's own statement reads on
            // from there, waiting for held-back events as usual.
            if let Some(end) = end {
                from = end;
            }
        }
        let rest = self
            .read_visible(from, max_count - events.len(), filter, envelope)
            .await?;
        if events.is_empty()
            && rest.len() == max_count
            && nearly_contiguous(&rest)
            && let Some(last) = rest.last()
        {
            dense.record(filter, last.checkpoint);
        }
        events.extend(rest);
        Ok(events)
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
