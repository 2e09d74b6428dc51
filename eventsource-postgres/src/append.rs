//! Appending: a batch in one statement, and the `append()` function for every other outcome.

use std::collections::HashSet;
use std::sync::Arc;

use eventsource_core::{
    Appended, ExpectedVersion, NewEvent, Position, StoreError, StreamId, Version,
};
use serde_json::value::RawValue;
use sqlx::postgres::{PgDatabaseError, PgRow};
use sqlx::types::Json;
use sqlx::{PgConnection, Row};
use uuid::Uuid;

use crate::error::{excerpt, store_error};
use crate::kept::KeptConnection;
use crate::sql::{PgQuery, PgQueryOf, expected_version};
use crate::store::PostgresStore;

/// At most this many appends share one transaction.
const GROUP_MAX_REQUESTS: usize = 64;
/// Batches of more events than this go alone: they already spread a commit over many events.
const GROUP_MAX_EVENTS: usize = 16;
/// Shared transactions in flight at once, by default. One: the appends that arrive while it
/// is in flight are all written in the next (session 29, 8 clients: 0.60-0.63 of the raw
/// INSERTs' time with one, 0.74-0.78 with two, and no loss at 2 or 4 clients; see
/// `PostgresStoreBuilder::group_commit_transactions`).
pub(crate) const DEFAULT_GROUPS_IN_FLIGHT: usize = 1;
/// The most shared transactions in flight a store may be set to.
pub(crate) const MAX_GROUPS_IN_FLIGHT: usize = 16;

impl GroupCommit {
    /// The most transactions in flight.
    pub(crate) fn slots(&self) -> usize {
        self.slots
    }

    /// A group commit with at most `slots` transactions in flight (1 to
    /// [`MAX_GROUPS_IN_FLIGHT`]).
    pub(crate) fn new(slots: usize) -> Self {
        GroupCommit {
            in_flight: 0,
            slots: slots.clamp(1, MAX_GROUPS_IN_FLIGHT),
            queue: Vec::new(),
        }
    }
}

/// An append waiting for a shared transaction, with the channel for its own outcome.
pub(crate) struct GroupRequest {
    stream: StreamId,
    expected: ExpectedVersion,
    batch: Arc<Batch>,
    reply: tokio::sync::oneshot::Sender<Result<Appended, StoreError>>,
}

/// The group commit of one store (shared by its clones): how many transactions are in flight,
/// and the appends waiting for the next one.
///
/// There is no writer task: an append that finds a transaction slot free writes itself, on
/// its caller's task (a lone writer waits for nothing, not even a hop to another task). An
/// append that finds every slot busy queues here; the append that frees a slot takes the whole
/// queue (up to [`GROUP_MAX_REQUESTS`]) and hands it, with its slot, to a task that writes it
/// as one group. So the queue is only ever non-empty while every slot is busy.
pub(crate) struct GroupCommit {
    /// Transactions in flight (at most `slots`).
    in_flight: usize,
    /// The most transactions in flight.
    slots: usize,
    /// Appends waiting for a slot, in arrival order.
    queue: Vec<GroupRequest>,
}

/// A transaction slot of the group commit, released (and handed to the queue, if any) on drop,
/// also when its append is cancelled.
struct Slot {
    store: PostgresStore,
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.store.release_slot();
    }
}

impl PostgresStore {
    /// Appends like [`EventStore::append`](eventsource_core::EventStore::append), but inside the
    /// caller's transaction on `conn`: the events become visible, and listeners are notified,
    /// when that transaction commits; a rollback writes nothing. Use it to append together with
    /// other writes.
    ///
    /// Unlike [`EventStore::append`](eventsource_core::EventStore::append) it does not retry
    /// when a concurrent transaction stores one of the batch's ids first: that is reported as a
    /// backend error (a unique violation), and the caller's transaction is aborted.
    pub async fn append_in(
        &self,
        conn: &mut PgConnection,
        stream: &StreamId,
        expected: ExpectedVersion,
        events: Vec<NewEvent>,
    ) -> Result<Appended, StoreError> {
        // Tagged events take their boundaries' locks: `decision.rs`.
        if events.iter().any(|e| !e.tags.is_empty()) {
            return self
                .append_tagged(Some(conn), stream, expected, events)
                .await;
        }
        let batch = self.checked_batch(stream, events)?;
        self.ensure_fits_on(conn).await?;
        // The function NOTIFYs: listeners hear of the events when the caller commits.
        self.call_append(conn, stream, expected, &batch, true)
            .await
            .map_err(AppendFailure::into_store_error)
    }

    /// The batch in column form, after the store's [`Limits`](eventsource_core::Limits)
    /// accepted it: nothing is sent for a batch the store could not read back.
    fn checked_batch(&self, stream: &StreamId, events: Vec<NewEvent>) -> Result<Batch, StoreError> {
        self.limits().check_append(stream, &events)?;
        Batch::encode(stream, events)
    }

    /// [`EventStore::append`](eventsource_core::EventStore::append).
    pub(crate) async fn append_batch(
        &self,
        stream: &StreamId,
        expected: ExpectedVersion,
        events: Vec<NewEvent>,
    ) -> Result<Appended, StoreError> {
        // Tagged events take their boundaries' locks: `decision.rs`.
        if events.iter().any(|e| !e.tags.is_empty()) {
            return self.append_tagged(None, stream, expected, events).await;
        }
        let batch = self.checked_batch(stream, events)?;
        // New events would sort before restored ones in a store moved from another cluster.
        self.ensure_fits_store().await?;
        if batch.repeated_id().is_some() || batch.ids.len() > GROUP_MAX_EVENTS {
            // Outside the slots: on a kept connection if one is free.
            return self.append_kept(stream, expected, &batch).await;
        }
        // Take a free transaction slot and write at once, or wait in the queue for the next
        // shared transaction.
        let turn = {
            let mut group = self.group_commit();
            if group.in_flight < group.slots {
                group.in_flight += 1;
                Ok(batch)
            } else {
                let batch = Arc::new(batch);
                let (reply, outcome) = tokio::sync::oneshot::channel();
                group.queue.push(GroupRequest {
                    stream: stream.clone(),
                    expected,
                    batch: Arc::clone(&batch),
                    reply,
                });
                Err((batch, outcome))
            }
        };
        match turn {
            Ok(batch) => {
                let slot = Slot {
                    store: self.clone(),
                };
                let outcome = self.append_kept(stream, expected, &batch).await;
                drop(slot);
                outcome
            }
            Err((batch, outcome)) => match outcome.await {
                Ok(outcome) => outcome,
                // The group was dropped unwritten or half-way (its runtime shut down), perhaps
                // after writing the batch: alone, a batch already stored is reported as
                // replayed.
                Err(_) => self.append_alone(&mut None, stream, expected, &batch).await,
            },
        }
    }

    /// An append alone, on a kept connection if one is free (else on the pool), written once
    /// more on the pool if it failed with that connection.
    async fn append_kept(
        &self,
        stream: &StreamId,
        expected: ExpectedVersion,
        batch: &Batch,
    ) -> Result<Appended, StoreError> {
        let mut writer = self.writers().take(self.pool()).await;
        let outcome = self
            .append_alone(&mut writer, stream, expected, batch)
            .await;
        self.again_if_lost(writer, outcome, stream, expected, batch)
            .await
    }

    /// Ends the use of `writer` after an append on it: if the append failed with the
    /// connection (lost, a protocol error), the connection is closed and the append written
    /// once more on the pool, whose connections are checked before use. An append is
    /// idempotent by its event ids: one that committed before its connection was lost is
    /// reported as replayed.
    async fn again_if_lost(
        &self,
        writer: Option<KeptConnection<'_>>,
        outcome: Result<Appended, StoreError>,
        stream: &StreamId,
        expected: ExpectedVersion,
        batch: &Batch,
    ) -> Result<Appended, StoreError> {
        let Some(writer) = writer else {
            return outcome;
        };
        let lost = writer.is_broken();
        writer.give_back();
        match outcome {
            Err(error) if lost => {
                tracing::debug!(%error, stream = %stream, "an append connection was lost; appending on the pool");
                self.append_alone(&mut None, stream, expected, batch).await
            }
            outcome => outcome,
        }
    }

    /// Frees a transaction slot, or hands it to the appends queued meanwhile: they are written
    /// as one group by a task of their own.
    fn release_slot(&self) {
        let group = {
            let mut state = self.group_commit();
            if state.queue.is_empty() {
                state.in_flight = state.in_flight.saturating_sub(1);
                return;
            }
            let n = state.queue.len().min(GROUP_MAX_REQUESTS);
            state.queue.drain(..n).collect::<Vec<_>>()
        };
        let slot = Slot {
            store: self.clone(),
        };
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => {
                runtime.spawn(async move {
                    slot.store.write_group(group).await;
                    // The group's callers were just woken: let them run before the slot is
                    // released, so that those appending again queue for it together instead
                    // of the first taking it alone (8 clients: 0.32 commits per append
                    // instead of 0.48).
                    tokio::task::yield_now().await;
                    drop(slot);
                });
            }
            // Outside a runtime nothing can write: the waiters, whose replies are dropped
            // here, append alone; the slot goes to whoever is queued next.
            Err(_) => drop((group, slot)),
        }
    }

    /// An append in a transaction of its own. The common case is one statement; every other
    /// outcome (a conflict, a retry of stored ids, a duplicate, a batch repeating an id) comes
    /// from the `append()` function.
    ///
    /// The statements go on `writer`'s connection while it is healthy, else on the pool.
    async fn append_alone(
        &self,
        writer: &mut Option<KeptConnection<'_>>,
        stream: &StreamId,
        expected: ExpectedVersion,
        batch: &Batch,
    ) -> Result<Appended, StoreError> {
        if batch.repeated_id().is_none()
            && let Some(written) = self.append_fast(writer, stream, expected, batch).await?
        {
            self.notifications()
                .appended(self.pool(), written.last_position);
            return Ok(written);
        }
        // The function does not NOTIFY here (that would serialize the commits of every
        // append it writes, see migration 10): listeners are signalled after the commit.
        let first = self
            .fetch_one_on(writer, self.append_query(stream, expected, batch, false))
            .await;
        let outcome = match decode_call(first, stream, expected, batch) {
            Err(AppendFailure::IdRace(_)) => {
                let again = self
                    .fetch_one_on(writer, self.append_query(stream, expected, batch, false))
                    .await;
                decode_call(again, stream, expected, batch).map_err(AppendFailure::into_store_error)
            }
            other => other.map_err(AppendFailure::into_store_error),
        };
        if let Ok(written) = &outcome
            && !written.replayed
        {
            self.notifications()
                .appended(self.pool(), written.last_position);
        }
        outcome
    }

    /// Writes the queued appends of `group`. One goes alone, as usual. Of several, the first
    /// append of each stream goes into one statement (one transaction, `sql::append_group`);
    /// those whose expectation did not hold, and later appends of a stream already in it, are
    /// then written alone, in arrival order, which tells a conflict from a replay or a
    /// duplicate as always. Should the shared statement fail as a whole (an id of the group
    /// is already stored, a deadlock, a lost connection), each append is written alone.
    async fn write_group(&self, group: Vec<GroupRequest>) {
        let mut writer = self.writers().take(self.pool()).await;
        let mut alone = Vec::new();
        if group.len() > 1 {
            // Heads in stream order, so that two shared statements lock them in one order; a
            // stable sort keeps the appends of a stream in arrival order.
            let mut group = group;
            group.sort_by(|a, b| a.stream.as_str().cmp(b.stream.as_str()));
            let mut seen = HashSet::with_capacity(group.len());
            let (shared, later): (Vec<_>, Vec<_>) = group
                .into_iter()
                .partition(|request| seen.insert(request.stream.clone()));
            match self.append_group(&mut writer, &shared).await {
                Ok(outcomes) => {
                    let mut newest = None;
                    for (request, outcome) in shared.into_iter().zip(outcomes) {
                        match outcome {
                            Some(outcome) => {
                                if let Ok(appended) = &outcome {
                                    newest = newest.max(Some(appended.last_position));
                                }
                                // The caller may have stopped waiting.
                                let _ = request.reply.send(outcome);
                            }
                            None => alone.push(request),
                        }
                    }
                    if let Some(position) = newest {
                        self.notifications().appended(self.pool(), position);
                    }
                }
                Err(error) => {
                    tracing::debug!(
                        %error,
                        appends = shared.len(),
                        "a shared append statement failed; appending alone"
                    );
                    alone.extend(shared);
                }
            }
            alone.extend(later);
        } else {
            alone = group;
        }
        for request in alone {
            let outcome = self
                .append_alone(
                    &mut writer,
                    &request.stream,
                    request.expected,
                    &request.batch,
                )
                .await;
            // After a lost connection the rest go on the pool (see `again_if_lost`).
            let outcome = match outcome {
                Err(_) if writer.as_ref().is_some_and(KeptConnection::is_broken) => {
                    self.append_alone(&mut None, &request.stream, request.expected, &request.batch)
                        .await
                }
                outcome => outcome,
            };
            let _ = request.reply.send(outcome);
        }
        if let Some(writer) = writer {
            writer.give_back();
        }
    }

    /// The statement of [`Self::write_group`] for appends to distinct streams: per request,
    /// its outcome when its head moved, `None` when it is left to the `append()` function;
    /// `Err` when the statement failed (nothing of it was written).
    async fn append_group(
        &self,
        writer: &mut Option<KeptConnection<'_>>,
        group: &[GroupRequest],
    ) -> Result<Vec<Option<Result<Appended, StoreError>>>, sqlx::Error> {
        let events: usize = group.iter().map(|r| r.batch.ids.len()).sum();
        let mut streams = Vec::with_capacity(group.len());
        let mut expected = Vec::with_capacity(group.len());
        let mut counts = Vec::with_capacity(group.len());
        let mut requests = Vec::with_capacity(events);
        let mut places = Vec::with_capacity(events);
        let mut all = Batch::with_capacity(events);
        // A group holds at most 64 requests of at most 16 events.
        let small = |n: usize| i32::try_from(n).unwrap_or(i32::MAX);
        for (index, request) in group.iter().enumerate() {
            let n = request.batch.ids.len();
            streams.push(request.stream.as_str());
            expected.push(expected_version(request.expected));
            counts.push(small(n));
            requests.extend(std::iter::repeat_n(small(index + 1), n));
            places.extend((1..=n).map(small));
            all.extend(&request.batch);
        }
        let query = self
            .sql()
            .append_group
            .query()
            .bind(streams)
            .bind(expected)
            .bind(counts)
            .bind(all.ids.as_slice())
            .bind(all.names.as_slice())
            .bind(all.schema_versions.as_slice())
            .bind(all.payloads.as_slice())
            .bind(all.metadata.as_slice())
            .bind(requests)
            .bind(places)
            .bind(all.correlation_ids.as_slice())
            .bind(all.causation_ids.as_slice());
        let rows = self.fetch_all_on(writer, query).await?;
        let mut outcomes: Vec<Option<Result<Appended, StoreError>>> =
            group.iter().map(|_| None).collect();
        for row in &rows {
            // The transaction has committed: a row that does not decode fails its own append.
            let index: Option<i64> = row.try_get("request").ok().flatten();
            let Some((slot, request)) = index
                .and_then(|i| usize::try_from(i).ok())
                .and_then(|i| i.checked_sub(1))
                .and_then(|i| outcomes.get_mut(i).zip(group.get(i)))
            else {
                continue;
            };
            *slot = Some(decode_appended(row, &request.stream, false));
        }
        Ok(outcomes)
    }

    /// The common case of an append, as one statement (see `sql::append_fast`): `None` when
    /// the expectation does not hold or an id of the batch is already stored, which the
    /// `append()` function then sorts out.
    async fn append_fast(
        &self,
        writer: &mut Option<KeptConnection<'_>>,
        stream: &StreamId,
        expected: ExpectedVersion,
        batch: &Batch,
    ) -> Result<Option<Appended>, StoreError> {
        let result = match batch.single() {
            Some(one) => {
                let query = self
                    .sql()
                    .append_fast
                    .pick_one(expected)
                    .query()
                    .bind(stream.as_str())
                    .bind(expected_version(expected))
                    .bind(one.id)
                    .bind(one.name)
                    .bind(one.schema_version)
                    .bind(one.payload)
                    .bind(one.metadata)
                    .bind(one.correlation_id)
                    .bind(one.causation_id);
                self.fetch_optional_on(writer, query).await
            }
            None => {
                let statement = self.sql().append_fast.pick(expected);
                let query = batch.bind(statement.query(), stream, expected);
                self.fetch_optional_on(writer, query).await
            }
        };
        match result {
            Ok(Some(row)) => decode_appended(&row, stream, false).map(Some),
            Ok(None) => Ok(None),
            Err(error) if is_stored_id(&error) => Ok(None),
            Err(error) if is_archived(&error) => Err(StoreError::StreamArchived {
                stream: stream.clone(),
            }),
            Err(error) => Err(store_error(
                format!("appending to stream `{stream}`"),
                error,
            )),
        }
    }

    /// The `append()` function on `conn`; `notify`: it NOTIFYs listeners itself (when the
    /// caller's transaction commits), else the caller signals them after its own commit.
    async fn call_append(
        &self,
        conn: &mut PgConnection,
        stream: &StreamId,
        expected: ExpectedVersion,
        batch: &Batch,
        notify: bool,
    ) -> Result<Appended, AppendFailure> {
        let row = self
            .append_query(stream, expected, batch, notify)
            .fetch_one(conn)
            .await;
        decode_call(row, stream, expected, batch)
    }

    /// The call of the `append()` function for `batch`.
    fn append_query<'b>(
        &self,
        stream: &'b StreamId,
        expected: ExpectedVersion,
        batch: &'b Batch,
        notify: bool,
    ) -> PgQueryOf<'b> {
        batch
            .bind(self.sql().append.query(), stream, expected)
            .bind(notify)
    }

    /// `query`'s rows, on `writer`'s connection while it is healthy, else on the pool.
    async fn fetch_all_on(
        &self,
        writer: &mut Option<KeptConnection<'_>>,
        query: PgQueryOf<'_>,
    ) -> Result<Vec<PgRow>, sqlx::Error> {
        if let Some(writer) = writer.as_mut()
            && let Some(conn) = writer.connection()
        {
            let rows = query.fetch_all(conn).await;
            writer.observe(&rows);
            return rows;
        }
        query.fetch_all(self.pool()).await
    }

    /// `query`'s row, if any: see [`Self::fetch_all_on`].
    async fn fetch_optional_on(
        &self,
        writer: &mut Option<KeptConnection<'_>>,
        query: PgQueryOf<'_>,
    ) -> Result<Option<PgRow>, sqlx::Error> {
        let rows = self.fetch_all_on(writer, query).await?;
        Ok(rows.into_iter().next())
    }

    /// `query`'s one row: see [`Self::fetch_all_on`].
    async fn fetch_one_on(
        &self,
        writer: &mut Option<KeptConnection<'_>>,
        query: PgQueryOf<'_>,
    ) -> Result<PgRow, sqlx::Error> {
        let rows = self.fetch_all_on(writer, query).await?;
        rows.into_iter().next().ok_or(sqlx::Error::RowNotFound)
    }
}

/// The outcome of a call of the `append()` function.
fn decode_call(
    row: Result<PgRow, sqlx::Error>,
    stream: &StreamId,
    expected: ExpectedVersion,
    batch: &Batch,
) -> Result<Appended, AppendFailure> {
    let row = row.map_err(|error| AppendFailure::from_sqlx(error, stream, batch))?;
    decode_append(&row, stream, expected).map_err(AppendFailure::Store)
}

/// A batch in the column-array form the `append()` function takes.
/// `value` as JSON text that `jsonb` stores without changing what it reads back as.
///
/// `jsonb` keeps numbers as `numeric`: a float written in exponent form that happens to be
/// an integer (`-2.754074151680626e17`) would come back as the integer
/// `-275407415168062600`, a different JSON value. Such floats are written out in full with a
/// `.0`, which `numeric` keeps, so they read back as the same float.
pub(crate) fn jsonb_text<T: serde::Serialize + ?Sized>(
    value: &T,
) -> Result<Box<RawValue>, serde_json::Error> {
    struct PlainIntegralFloats;
    impl serde_json::ser::Formatter for PlainIntegralFloats {
        fn write_f64<W: ?Sized + std::io::Write>(
            &mut self,
            writer: &mut W,
            value: f64,
        ) -> std::io::Result<()> {
            // Below 1e15 the shortest form has no exponent; from 2e19 on the integer is
            // beyond u64 and reads back as a float anyway.
            if value.fract() == 0.0 && (1e15..2e19).contains(&value.abs()) {
                write!(writer, "{value:.1}")
            } else {
                serde_json::ser::CompactFormatter.write_f64(writer, value)
            }
        }
    }
    let mut text = Vec::with_capacity(128);
    value.serialize(&mut serde_json::Serializer::with_formatter(
        &mut text,
        PlainIntegralFloats,
    ))?;
    // The serializer wrote valid UTF-8 JSON.
    let text = String::from_utf8(text)
        .map_err(|e| <serde_json::Error as serde::ser::Error>::custom(format!("not UTF-8: {e}")))?;
    RawValue::from_string(text)
}

/// The columns of a batch's only event (see [`Batch::single`]).
struct OneEvent<'a> {
    id: Uuid,
    name: &'a str,
    schema_version: i64,
    payload: &'a Json<Box<RawValue>>,
    metadata: &'a Json<Box<RawValue>>,
    correlation_id: Option<Uuid>,
    causation_id: Option<Uuid>,
}

/// A batch in column form. An event's tracing ids go to columns of their own
/// (`correlation_ids`, `causation_ids`; migration 10), and `metadata` holds the rest of its
/// metadata.
pub(crate) struct Batch {
    pub(crate) ids: Vec<Uuid>,
    pub(crate) names: Vec<String>,
    pub(crate) schema_versions: Vec<i64>,
    pub(crate) payloads: Vec<Json<Box<RawValue>>>,
    pub(crate) metadata: Vec<Json<Box<RawValue>>>,
    pub(crate) correlation_ids: Vec<Option<Uuid>>,
    pub(crate) causation_ids: Vec<Option<Uuid>>,
}

impl Batch {
    pub(crate) fn with_capacity(events: usize) -> Self {
        Batch {
            ids: Vec::with_capacity(events),
            names: Vec::with_capacity(events),
            schema_versions: Vec::with_capacity(events),
            payloads: Vec::with_capacity(events),
            metadata: Vec::with_capacity(events),
            correlation_ids: Vec::with_capacity(events),
            causation_ids: Vec::with_capacity(events),
        }
    }

    /// Adds the events of `other`.
    pub(crate) fn extend(&mut self, other: &Batch) {
        self.ids.extend_from_slice(&other.ids);
        self.names.extend_from_slice(&other.names);
        self.schema_versions
            .extend_from_slice(&other.schema_versions);
        self.payloads.extend(other.payloads.iter().cloned());
        self.metadata.extend(other.metadata.iter().cloned());
        self.correlation_ids
            .extend_from_slice(&other.correlation_ids);
        self.causation_ids.extend_from_slice(&other.causation_ids);
    }

    pub(crate) fn encode(stream: &StreamId, events: Vec<NewEvent>) -> Result<Self, StoreError> {
        if events.is_empty() {
            return Err(StoreError::EmptyBatch {
                stream: stream.clone(),
            });
        }
        let mut batch = Batch::with_capacity(events.len());
        for event in events {
            let encoding_error = |what: &str, e: serde_json::Error| {
                StoreError::backend(
                    format!(
                        "encoding the {what} of event `{}` for stream `{stream}`",
                        excerpt(&event.name)
                    ),
                    e,
                )
            };
            let payload = jsonb_text(&event.payload).map_err(|e| encoding_error("payload", e))?;
            let mut rest = event.metadata;
            let (correlation_id, causation_id) =
                (rest.correlation_id.take(), rest.causation_id.take());
            let metadata = jsonb_text(&rest).map_err(|e| encoding_error("metadata", e))?;
            batch.ids.push(event.event_id);
            batch.names.push(event.name);
            batch.schema_versions.push(i64::from(event.schema_version));
            batch.payloads.push(Json(payload));
            batch.metadata.push(Json(metadata));
            batch.correlation_ids.push(correlation_id);
            batch.causation_ids.push(causation_id);
        }
        Ok(batch)
    }

    /// The batch's only event, when it has exactly one.
    fn single(&self) -> Option<OneEvent<'_>> {
        match (
            self.ids.as_slice(),
            self.names.as_slice(),
            self.schema_versions.as_slice(),
            self.payloads.as_slice(),
            self.metadata.as_slice(),
            self.correlation_ids.as_slice(),
            self.causation_ids.as_slice(),
        ) {
            (
                [id],
                [name],
                [schema_version],
                [payload],
                [metadata],
                [correlation_id],
                [causation_id],
            ) => Some(OneEvent {
                id: *id,
                name,
                schema_version: *schema_version,
                payload,
                metadata,
                correlation_id: *correlation_id,
                causation_id: *causation_id,
            }),
            _ => None,
        }
    }

    /// Binds `$1`..`$9` of both append statements: the stream, the expected version and the
    /// batch's columns.
    fn bind(&self, query: PgQuery, stream: &StreamId, expected: ExpectedVersion) -> PgQuery {
        query
            .bind(stream.as_str())
            .bind(expected_version(expected))
            .bind(self.ids.as_slice())
            .bind(self.names.as_slice())
            .bind(self.schema_versions.as_slice())
            .bind(self.payloads.as_slice())
            .bind(self.metadata.as_slice())
            .bind(self.correlation_ids.as_slice())
            .bind(self.causation_ids.as_slice())
    }

    /// The first id the batch repeats within itself.
    pub(crate) fn repeated_id(&self) -> Option<Uuid> {
        let mut seen = HashSet::with_capacity(self.ids.len());
        self.ids.iter().copied().find(|id| !seen.insert(*id))
    }
}

enum AppendFailure {
    Store(StoreError),
    /// A concurrent transaction stored one of the ids between the function's retry check and
    /// its insert: calling again reports the retry or the duplicate properly.
    IdRace(sqlx::Error),
}

impl AppendFailure {
    fn from_sqlx(error: sqlx::Error, stream: &StreamId, batch: &Batch) -> Self {
        let backend = |error| {
            AppendFailure::Store(store_error(
                format!("appending to stream `{stream}`"),
                error,
            ))
        };
        let Some(db) = error
            .as_database_error()
            .and_then(|db| db.try_downcast_ref::<PgDatabaseError>())
        else {
            return backend(error);
        };
        match db.code() {
            crate::sql::STREAM_ARCHIVED => AppendFailure::Store(StoreError::StreamArchived {
                stream: stream.clone(),
            }),
            // The batch repeats an id within itself; the detail is the stream's version.
            "ES004" => {
                let version = db.detail().and_then(|d| d.parse::<u64>().ok());
                match (batch.repeated_id(), version) {
                    (Some(event_id), Some(version)) => {
                        AppendFailure::Store(StoreError::DuplicateEventId {
                            stream: stream.clone(),
                            event_id,
                            existing_stream: stream.clone(),
                            existing_version: Version(version),
                        })
                    }
                    _ => backend(error),
                }
            }
            _ if is_stored_id(&error) => AppendFailure::IdRace(error),
            _ => backend(error),
        }
    }

    fn into_store_error(self) -> StoreError {
        match self {
            AppendFailure::Store(error) => error,
            AppendFailure::IdRace(error) => StoreError::backend(
                "appending: a concurrent transaction stored one of the batch's event ids",
                error,
            ),
        }
    }
}

/// Whether `error` is the `streams_archived` trigger refusing an append (migration 7).
fn is_archived(error: &sqlx::Error) -> bool {
    error
        .as_database_error()
        .and_then(|db| db.try_downcast_ref::<PgDatabaseError>())
        .is_some_and(|db| db.code() == crate::sql::STREAM_ARCHIVED)
}

/// Whether `error` is the unique index on event ids refusing a row: an id of the batch is stored.
pub(crate) fn is_stored_id(error: &sqlx::Error) -> bool {
    error
        .as_database_error()
        .and_then(|db| db.try_downcast_ref::<PgDatabaseError>())
        .is_some_and(|db| db.code() == "23505" && db.constraint() == Some("events_event_id_unique"))
}

/// Reads column `column` of an append's result row.
pub(crate) fn column<T>(row: &PgRow, column: &str, stream: &StreamId) -> Result<T, StoreError>
where
    T: for<'r> sqlx::Decode<'r, sqlx::Postgres> + sqlx::Type<sqlx::Postgres>,
{
    row.try_get(column).map_err(|e| {
        StoreError::backend(format!("reading the append result of stream `{stream}`"), e)
    })
}

/// Reads the non-negative `bigint` column `column` of an append's result row.
pub(crate) fn count(row: &PgRow, column_name: &str, stream: &StreamId) -> Result<u64, StoreError> {
    let value: Option<i64> = column(row, column_name, stream)?;
    value.and_then(|v| u64::try_from(v).ok()).ok_or_else(|| {
        StoreError::backend(
            format!("appending to stream `{stream}`"),
            format!("the append statement returned {column_name} = {value:?}"),
        )
    })
}

/// The versions and positions an append wrote (or, `replayed`, had written before).
pub(crate) fn decode_appended(
    row: &PgRow,
    stream: &StreamId,
    replayed: bool,
) -> Result<Appended, StoreError> {
    Ok(Appended {
        stream_id: stream.clone(),
        first_version: Version(count(row, "first_version", stream)?),
        last_version: Version(count(row, "last_version", stream)?),
        first_position: Position(count(row, "first_position", stream)?),
        last_position: Position(count(row, "last_position", stream)?),
        replayed,
    })
}

/// The outcome the `append()` function reports.
fn decode_append(
    row: &PgRow,
    stream: &StreamId,
    expected: ExpectedVersion,
) -> Result<Appended, StoreError> {
    let outcome: String = column(row, "outcome", stream)?;
    match outcome.as_str() {
        "appended" => decode_appended(row, stream, false),
        "replayed" => decode_appended(row, stream, true),
        "conflict" => Err(StoreError::Conflict {
            stream: stream.clone(),
            expected,
            actual: Version(count(row, "actual_version", stream)?),
        }),
        "duplicate" => {
            let event_id: Option<Uuid> = column(row, "event_id", stream)?;
            let existing_stream: Option<String> = column(row, "existing_stream", stream)?;
            match (event_id, existing_stream) {
                (Some(event_id), Some(existing_stream)) => Err(StoreError::DuplicateEventId {
                    stream: stream.clone(),
                    event_id,
                    existing_stream: StreamId::from_raw(existing_stream),
                    existing_version: Version(count(row, "existing_version", stream)?),
                }),
                _ => Err(StoreError::backend(
                    format!("appending to stream `{stream}`"),
                    "the append function reported a duplicate without naming it",
                )),
            }
        }
        other => Err(StoreError::backend(
            format!("appending to stream `{stream}`"),
            format!(
                "the append function returned the unknown outcome `{}`",
                excerpt(other)
            ),
        )),
    }
}
