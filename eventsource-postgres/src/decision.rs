//! Decisions across streams: multi-stream and conditional appends (the `append_streams()`
//! function of migration 6), appends of tagged events, and reads by query.
//!
//! # Why advisory locks, not SERIALIZABLE
//!
//! disintegrate's PostgreSQL store runs each conditional append in a SERIALIZABLE transaction
//! (a `SELECT EXISTS` then the insert, four round trips) and maps serialization failures to
//! concurrency errors: the database's predicate locks find the conflict. That needs every
//! writer of a boundary at SERIALIZABLE, a retry of every false positive (checks against the
//! log's tail conflict with each other constantly; sliceworkz measured 86 % failures), and
//! predicate-lock memory. Here one call of a plpgsql function at READ COMMITTED first takes
//! transaction-scoped advisory locks on every tag it writes and on the first tag of every
//! query item (sorted, so never in a cycle), then checks, then writes. Each statement of a
//! volatile function takes a new snapshot, so the check, made after the locks, sees every
//! event of a writer that held one of them. Plain appends of tagged events go through the
//! same function, so they take the same locks; untagged appends take none and keep their
//! one-statement path and group commit. Tags of different boundaries never wait for each
//! other. (Advisory locks are local to a server and pinned to a session by pooling proxies;
//! a row-lock strategy for those is left for later.)

use std::collections::BTreeSet;

use eventsource_core::{
    AppendCondition, Appended, DecisionStore, ExpectedVersion, NewEvent, Position, Query,
    QueryRead, ReadPosition, StoreError, StreamAppend, StreamConflict, StreamId, Version,
};
use serde_json::json;
use sqlx::PgConnection;
use sqlx::postgres::{PgDatabaseError, PgRow};
use sqlx::types::Json;
use uuid::Uuid;

use crate::append::{Batch, column, count, decode_appended, is_stored_id};
use crate::error::{excerpt, store_error};
use crate::row::decode_event_at;
use crate::sql::{bigint, expected_version};
use crate::store::PostgresStore;

/// SQLSTATE of `append_streams()` when a stream it found missing was created meanwhile.
const STREAM_CREATED: &str = "ES020";
/// How often a call is repeated after `STREAM_CREATED` or a concurrent store of one of its
/// ids; each repeat sees the other writer's commit, so one is nearly always enough.
const REPEATS: usize = 3;

/// The arguments of one `append_streams()` call.
struct Call {
    streams: Vec<StreamId>,
    expected: Vec<ExpectedVersion>,
    counts: Vec<i32>,
    batch: Batch,
    tags: Vec<String>,
    tag_events: Vec<i32>,
    query: Option<Json<serde_json::Value>>,
    unseen_from: i64,
    unseen: Vec<i64>,
}

impl Call {
    fn new(
        appends: Vec<StreamAppend>,
        condition: Option<AppendCondition>,
    ) -> Result<Self, StoreError> {
        let events: usize = appends.iter().map(|a| a.events.len()).sum();
        let mut call = Call {
            streams: Vec::with_capacity(appends.len()),
            expected: Vec::with_capacity(appends.len()),
            counts: Vec::with_capacity(appends.len()),
            batch: Batch::with_capacity(events),
            tags: Vec::new(),
            tag_events: Vec::new(),
            query: None,
            unseen_from: 0,
            unseen: Vec::new(),
        };
        // Event numbers within the call are 1-based, as `unnest ... WITH ORDINALITY` counts.
        let mut event_number: i32 = 0;
        for append in appends {
            for event in &append.events {
                event_number = event_number.saturating_add(1);
                let distinct: BTreeSet<&str> = event.tags.iter().map(|t| t.as_str()).collect();
                for tag in distinct {
                    call.tags.push(tag.to_owned());
                    call.tag_events.push(event_number);
                }
            }
            call.counts
                .push(i32::try_from(append.events.len()).unwrap_or(i32::MAX));
            call.batch
                .extend(&Batch::encode(&append.stream, append.events)?);
            call.streams.push(append.stream);
            call.expected.push(append.expected);
        }
        if let Some(condition) = condition
            && !condition.query.items().is_empty()
        {
            call.query = Some(Json(query_json(&condition.query)));
            call.unseen_from = bigint(condition.after.below());
            call.unseen = condition
                .after
                .in_flight()
                .iter()
                .map(|&t| bigint(t))
                .collect();
        }
        Ok(call)
    }

    fn stream(&self, request: Option<i32>) -> Option<&StreamId> {
        let index = usize::try_from(request?).ok()?.checked_sub(1)?;
        self.streams.get(index)
    }

    /// Runs the call on `executor`. `notify`: the function NOTIFYs listeners itself (in the
    /// caller's transaction, heard when it commits); else the store signals them after the
    /// commit (see migration 10: a NOTIFY serializes every committing transaction).
    async fn run<'c>(
        &self,
        store: &PostgresStore,
        executor: impl sqlx::PgExecutor<'c>,
        notify: bool,
    ) -> Result<Vec<PgRow>, sqlx::Error> {
        let streams: Vec<&str> = self.streams.iter().map(StreamId::as_str).collect();
        let expected: Vec<Option<i64>> =
            self.expected.iter().map(|&e| expected_version(e)).collect();
        store
            .sql()
            .append_streams
            .query()
            .bind(streams)
            .bind(expected)
            .bind(self.counts.as_slice())
            .bind(self.batch.ids.as_slice())
            .bind(self.batch.names.as_slice())
            .bind(self.batch.schema_versions.as_slice())
            .bind(self.batch.payloads.as_slice())
            .bind(self.batch.metadata.as_slice())
            .bind(self.tags.as_slice())
            .bind(self.tag_events.as_slice())
            .bind(self.query.as_ref())
            .bind(self.unseen_from)
            .bind(self.unseen.as_slice())
            .bind(self.batch.correlation_ids.as_slice())
            .bind(self.batch.causation_ids.as_slice())
            .bind(notify)
            .fetch_all(executor)
            .await
    }

    /// What the function's rows say.
    fn outcome(&self, rows: &[PgRow]) -> Result<Vec<Appended>, StoreError> {
        let first_stream = self
            .streams
            .first()
            .cloned()
            .unwrap_or_else(|| StreamId::from_raw(""));
        let context = || format!("appending to stream `{first_stream}` and others");
        let mut written = Vec::with_capacity(self.streams.len());
        let mut conflicts = Vec::new();
        for row in rows {
            let outcome: String = column(row, "outcome", &first_stream)?;
            let request: Option<i32> = column(row, "request", &first_stream)?;
            let stream = self.stream(request);
            match (outcome.as_str(), stream) {
                ("appended" | "replayed", Some(stream)) => {
                    written.push(decode_appended(row, stream, outcome == "replayed")?);
                }
                ("conflict", Some(stream)) => {
                    let index =
                        usize::try_from(request.unwrap_or(1).saturating_sub(1)).unwrap_or(0);
                    conflicts.push(StreamConflict {
                        stream: stream.clone(),
                        expected: self
                            .expected
                            .get(index)
                            .copied()
                            .unwrap_or(ExpectedVersion::Any),
                        actual: Version(count(row, "actual_version", stream)?),
                    });
                }
                ("duplicate", Some(stream)) => {
                    let event_id: Option<Uuid> = column(row, "event_id", stream)?;
                    let existing: Option<String> = column(row, "existing_stream", stream)?;
                    let (Some(event_id), Some(existing)) = (event_id, existing) else {
                        return Err(StoreError::backend(
                            context(),
                            "append_streams() reported a duplicate without naming it",
                        ));
                    };
                    return Err(StoreError::DuplicateEventId {
                        stream: stream.clone(),
                        event_id,
                        existing_stream: StreamId::from_raw(existing),
                        existing_version: Version(count(row, "existing_version", stream)?),
                    });
                }
                ("condition", _) => {
                    let stream: Option<String> = column(row, "match_stream", &first_stream)?;
                    let name: Option<String> = column(row, "match_name", &first_stream)?;
                    let stream = StreamId::from_raw(stream.unwrap_or_default());
                    return Err(StoreError::ConditionFailed {
                        position: Position(count(row, "match_position", &stream)?),
                        name: name.unwrap_or_default(),
                        stream,
                    });
                }
                (other, _) => {
                    return Err(StoreError::backend(
                        context(),
                        format!(
                            "append_streams() returned the outcome `{}` for request {request:?}",
                            excerpt(other)
                        ),
                    ));
                }
            }
        }
        if !conflicts.is_empty() {
            return Err(StoreError::Conflicts { conflicts });
        }
        if written.len() != self.streams.len() {
            return Err(StoreError::backend(
                context(),
                format!(
                    "append_streams() answered for {} of {} streams",
                    written.len(),
                    self.streams.len()
                ),
            ));
        }
        Ok(written)
    }
}

/// The query as `append_streams()` and the read statement take it.
fn query_json(query: &Query) -> serde_json::Value {
    let items: Vec<serde_json::Value> = query
        .items()
        .iter()
        .map(|item| {
            let tags: Vec<&str> = item.tags().iter().map(|t| t.as_str()).collect();
            json!({ "names": item.names(), "tags": tags })
        })
        .collect();
    serde_json::Value::Array(items)
}

/// Whether `error` is `append_streams()` finding a stream it saw missing created meanwhile.
fn stream_created(error: &sqlx::Error) -> bool {
    error
        .as_database_error()
        .and_then(|db| db.try_downcast_ref::<PgDatabaseError>())
        .is_some_and(|db| db.code() == STREAM_CREATED)
}

impl PostgresStore {
    /// Like [`DecisionStore::append_streams`], but inside the caller's transaction on `conn`:
    /// the events become visible when it commits, and the boundary locks are held until then.
    /// A concurrent writer creating one of the streams, or storing one of the ids, aborts the
    /// caller's transaction with a transient error instead of being retried.
    pub async fn append_streams_in(
        &self,
        conn: &mut PgConnection,
        appends: Vec<StreamAppend>,
        condition: Option<AppendCondition>,
    ) -> Result<Vec<Appended>, StoreError> {
        self.append_streams_on(Some(conn), appends, condition).await
    }

    async fn append_streams_on(
        &self,
        conn: Option<&mut PgConnection>,
        appends: Vec<StreamAppend>,
        condition: Option<AppendCondition>,
    ) -> Result<Vec<Appended>, StoreError> {
        self.limits().check_streams(&appends, condition.as_ref())?;
        let call = Call::new(appends, condition)?;
        let context = || {
            let first = call
                .streams
                .first()
                .map(StreamId::as_str)
                .unwrap_or_default();
            format!(
                "appending to {} stream(s) from `{}`",
                call.streams.len(),
                excerpt(first)
            )
        };
        let Some(conn) = conn else {
            self.ensure_fits_store().await?;
            let mut repeats = 0;
            // On the pool, not a kept connection (`kept.rs`): the call may wait for its
            // boundary's locks, holding one of the group commit's two connections meanwhile
            // (8 clients on one boundary: a third fewer decisions per second, session 29).
            loop {
                match call.run(self, self.pool(), false).await {
                    Ok(rows) => {
                        let written = call.outcome(&rows)?;
                        let newest = written
                            .iter()
                            .filter(|a| !a.replayed)
                            .map(|a| a.last_position)
                            .max();
                        if let Some(position) = newest {
                            self.notifications().appended(self.pool(), position);
                        }
                        return Ok(written);
                    }
                    Err(error)
                        if repeats < REPEATS
                            && (stream_created(&error) || is_stored_id(&error)) =>
                    {
                        repeats += 1;
                    }
                    Err(error) => return Err(store_error(context(), error)),
                }
            }
        };
        self.ensure_fits_on(conn).await?;
        match call.run(self, &mut *conn, true).await {
            Ok(rows) => call.outcome(&rows),
            Err(error) if stream_created(&error) || is_stored_id(&error) => Err(
                StoreError::transient(format!("{} (a concurrent append)", context()), error),
            ),
            Err(error) => Err(store_error(context(), error)),
        }
    }

    /// An append of one batch carrying tags: through `append_streams()`, so that it takes its
    /// tags' locks, with the single-stream append's errors.
    pub(crate) async fn append_tagged(
        &self,
        conn: Option<&mut PgConnection>,
        stream: &StreamId,
        expected: ExpectedVersion,
        events: Vec<NewEvent>,
    ) -> Result<Appended, StoreError> {
        // A batch repeating an id is a duplicate in a single-stream append.
        let mut seen = std::collections::HashSet::with_capacity(events.len());
        if let Some(repeated) = events.iter().find(|e| !seen.insert(e.event_id)) {
            self.limits().check_append(stream, &events)?;
            return Err(StoreError::DuplicateEventId {
                stream: stream.clone(),
                event_id: repeated.event_id,
                existing_stream: stream.clone(),
                existing_version: self.stream_version_now(stream).await?,
            });
        }
        if events.is_empty() {
            return Err(StoreError::EmptyBatch {
                stream: stream.clone(),
            });
        }
        let appends = vec![StreamAppend::new(stream.clone(), expected, events)];
        match self.append_streams_on(conn, appends, None).await {
            Ok(mut written) if written.len() == 1 => Ok(written.remove(0)),
            Ok(_) => Err(StoreError::backend(
                format!("appending to stream `{stream}`"),
                "append_streams() did not answer for the stream",
            )),
            Err(StoreError::Conflicts { mut conflicts }) if conflicts.len() == 1 => {
                let conflict = conflicts.remove(0);
                Err(StoreError::Conflict {
                    stream: conflict.stream,
                    expected: conflict.expected,
                    actual: conflict.actual,
                })
            }
            Err(other) => Err(other),
        }
    }

    async fn stream_version_now(&self, stream: &StreamId) -> Result<Version, StoreError> {
        eventsource_core::EventStore::stream_version(self, stream).await
    }
}

impl DecisionStore for PostgresStore {
    async fn append_streams(
        &self,
        appends: Vec<StreamAppend>,
        condition: Option<AppendCondition>,
    ) -> Result<Vec<Appended>, StoreError> {
        self.append_streams_on(None, appends, condition).await
    }

    async fn read_query(&self, query: &Query) -> Result<QueryRead, StoreError> {
        self.limits().check_query(query)?;
        self.ensure_fits_store().await?;
        let rows = self
            .sql()
            .read_query
            .query()
            .bind(Json(query_json(query)))
            .fetch_all(self.pool())
            .await
            .map_err(|e| store_error("reading the events of a decision's query", e))?;
        let anchor = StreamId::from_raw("");
        let Some(first) = rows.first() else {
            return Err(StoreError::backend(
                "reading the events of a decision's query",
                "the read returned no row",
            ));
        };
        let unseen_from: i64 = column(first, "unseen_from", &anchor)?;
        let unseen: Vec<i64> = column(first, "unseen", &anchor)?;
        let to_u64 = |v: i64| u64::try_from(v).unwrap_or(0);
        let position = ReadPosition::from_parts(
            to_u64(unseen_from),
            unseen.into_iter().map(to_u64).collect(),
        );
        let mut events = Vec::with_capacity(rows.len());
        for row in &rows {
            let matched: Option<i64> = column(row, "position", &anchor)?;
            if matched.is_some() {
                // After `unseen_from` and `unseen`, the columns of `sql::EVENT_COLUMNS`.
                events.push(decode_event_at(row, 2)?);
            }
        }
        Ok(QueryRead { events, position })
    }
}
