//! The statements of one store, written once for its schema.
//!
//! Identifiers cannot be bound as parameters, so the validated, quoted schema name is put into
//! the text; every value is bound. Each text is fixed per store, so the driver prepares it once
//! per connection and reuses the plan.

use std::sync::Arc;

use eventsource_core::Envelope;
use sqlx::postgres::PgArguments;
use sqlx::{AssertSqlSafe, Postgres};

use crate::schema::SchemaName;

mod deadlines;
mod family;
mod lifecycle;
pub(crate) use deadlines::DeadlineStatements;
use family::read_all;
pub(crate) use family::{ByFilter, FastAppend, expected_version};
pub(crate) use lifecycle::{Lifecycle, STREAM_ARCHIVED};

/// A query on one of a store's statements, its values still to bind.
pub(crate) type PgQuery = sqlx::query::Query<'static, Postgres, PgArguments>;

/// A statement with arguments borrowed for `'q`.
pub(crate) type PgQueryOf<'q> = sqlx::query::Query<'q, Postgres, PgArguments>;

/// The text of one statement, built once per store and shared by its clones.
#[derive(Clone, Debug)]
pub(crate) struct Statement(Arc<str>);

impl Statement {
    /// A query on this statement.
    pub(crate) fn query(&self) -> PgQuery {
        sqlx::query(AssertSqlSafe(Arc::clone(&self.0)))
    }

    /// The text, e.g. for `sqlx::raw_sql`.
    pub(crate) fn text(&self) -> Arc<str> {
        Arc::clone(&self.0)
    }
}

impl From<String> for Statement {
    fn from(text: String) -> Self {
        Statement(text.into())
    }
}

/// A number as a PostgreSQL `bigint` parameter. Values beyond `i64::MAX` (versions, positions,
/// transaction ids, limits) cannot be stored, so clamping keeps every comparison exact for the
/// values that can.
pub(crate) fn bigint<T: TryInto<i64>>(value: T) -> i64 {
    value.try_into().unwrap_or(i64::MAX)
}

/// The columns `row::decode_event` reads.
const EVENT_COLUMNS: &str = "position, transaction_id, stream_id, version, \
     event_id, name, schema_version, payload, metadata, recorded_at, correlation_id, causation_id";

/// The columns `row::decode_parked` reads: the parked event's bookkeeping (`p`) and its stored
/// row (`e`) under the names `row::decode_event` reads.
const PARKED_COLUMNS: &str = "p.projection, p.error, p.attempts, p.parked_at, \
     p.retry_requested_at IS NOT NULL AS retry_requested, \
     e.position, e.transaction_id, e.stream_id, e.version, e.event_id, \
     e.name, e.schema_version, e.payload, e.metadata, e.recorded_at, e.correlation_id, \
     e.causation_id";

/// The store's transaction offset (see the crate docs, "Global order"), as a scalar subquery
/// of a statement on schema `s`: read in the statement's own snapshot, like the ids it
/// compares with.
fn offset(s: &str) -> String {
    format!("(SELECT o.value FROM {s}.transaction_offset o)")
}

/// The planner's estimate of the rows of `table` in schema `s`, as it computes it: the density
/// at the last ANALYZE (or VACUUM) times the table's pages now; NULL before the first one.
fn estimate(s: &str, table: &str) -> String {
    format!(
        "(SELECT CASE WHEN c.reltuples < 0 OR c.relpages <= 0 THEN NULL \
                      ELSE (c.reltuples / c.relpages * (pg_catalog.pg_relation_size(c.oid) \
                            / current_setting('block_size')::float8))::bigint END \
            FROM pg_catalog.pg_class c \
           WHERE c.oid = to_regclass('{s}.{table}'))"
    )
}

/// The SQL texts of a store.
#[derive(Debug)]
pub(crate) struct Statements {
    /// Creates the schema and its `schema_migrations` table if needed.
    pub(crate) create_schema: Statement,
    /// The newest migration applied (NULL when none).
    pub(crate) schema_version: Statement,
    /// Records migration `$1` described as `$2`.
    pub(crate) record_migration: Statement,
    /// The `append()` function: every outcome (conflict, retry, duplicate), and `append_in`.
    pub(crate) append: Statement,
    pub(crate) append_fast: FastAppend,
    /// The common case of several appends to distinct streams in one statement (one
    /// transaction): the heads whose expectation holds move (`$1` streams, `$2` expected
    /// versions as in `append_fast`, `$3` event counts), and their events are inserted from
    /// the arrays `$4`..`$8`, `$9` holding each event's request (1-based) and `$10` its place
    /// in it. A row per request whose head moved (`request`, versions, positions); the others
    /// are left to the `append()` function.
    pub(crate) append_group: Statement,
    /// The `append_streams()` function of migration 6: several streams, tags, a condition.
    pub(crate) append_streams: Statement,
    /// The events matching the query `$1` (JSON: `[{"names": [..], "tags": [..]}, ..]`, each
    /// item's tags sorted) in checkpoint order, each row also carrying what the statement's
    /// snapshot did not see (`unseen_from`, `unseen`); one row of NULL events when none match.
    pub(crate) read_query: Statement,
    /// `$1` stream, `$2` first version, `$3` limit.
    pub(crate) read_stream: Statement,
    /// The same rows as `read_stream`, only the columns `row::decode_fold_event` reads, by
    /// position: version, position, name, schema version, payload, and the stream's head
    /// version (read once per statement) beside each row.
    pub(crate) read_stream_for_fold: Statement,
    /// `$1` logical transaction, `$2` position, then the filter's values, then the limit.
    pub(crate) read_all: ByFilter,
    /// [`read_all`](Self::read_all) for [`Envelope::Lean`]: NULL for the columns it leaves out.
    pub(crate) read_all_lean: ByFilter,
    /// Whether events passing the filter exist after (`$1` transaction, `$2` position).
    pub(crate) unread: ByFilter,
    pub(crate) stream_version: Statement,
    pub(crate) head_position: Statement,
    pub(crate) find_event: Statement,
    pub(crate) save_snapshot: Statement,
    pub(crate) load_snapshot: Statement,
    /// `$1` projection: its checkpoint row ((0, 0) while registered without a checkpoint).
    pub(crate) load_checkpoint: Statement,
    /// `$1` projection from (0, 0) to (`$2` transaction, `$3` position), creating the row if
    /// needed; refused while a reset is pending unless `$3` is 0 (a rebuild, which clears it).
    pub(crate) start_checkpoint: Statement,
    /// `$1` projection to (`$2`, `$3`), only if at (`$4`, `$5`); refused while a reset is
    /// pending unless `$3` is 0 (a rebuild, which clears it).
    pub(crate) move_checkpoint: Statement,
    /// Whether a reset of `$1` is pending.
    pub(crate) reset_requested: Statement,
    /// Registers `$1` reading names `$2` and categories `$3` (a row at (0, 0) if it has none).
    /// Takes the row lock, so it waits for a batch the previous lease holder has in flight.
    pub(crate) register_projection: Statement,
    /// Marks projection `$1` for a rebuild; no row when it is unknown.
    pub(crate) request_reset: Statement,
    /// The first statement of a runner's batch: `lease_fence()` of migration 2 locks the
    /// checkpoint row of `$1`, then checks that session `$2` still holds the lease lock of key
    /// `$3` (SQLSTATE [`LEASE_LOST`] or [`CHECKPOINT_ROW_GONE`] if not). A function, so that
    /// the order (lock, then check) is the order of its statements, not a planner's choice.
    pub(crate) lease_fence: Statement,
    /// Parks for `$1` the event at `$2` (`$3` id, `$4` stream, `$5` version, `$6` name) with
    /// error `$7` after `$8` attempts; parking it again replaces the error and adds attempts.
    /// The id is the stored row's (`$3` only if the row is gone): a runner reading
    /// `Envelope::Lean` has a nil id in hand.
    pub(crate) park: Statement,
    /// Removes the parked event at `$2` of `$1`.
    pub(crate) unpark: Statement,
    /// Removes every parked event of `$1` (a rebuild).
    pub(crate) unpark_all: Statement,
    /// The parked events of `$1` (all when NULL), with their stored rows.
    pub(crate) parked: Statement,
    /// Up to `$2` parked events of `$1` marked for retry, by position.
    pub(crate) due_for_retry: Statement,
    /// Marks the parked events of `$1` (the one at `$2`, or all when NULL) for retry.
    pub(crate) retry_parked: Statement,
    /// Deletes the parked events of `$1` (the one at `$2`, or all when NULL).
    pub(crate) discard_parked: Statement,
    // What the admin API (`admin.rs`, `verify.rs`) asks.
    /// `events` and `streams` (counting at most `$1` rows each), `events_estimate` (the
    /// planner's, the head position before the first ANALYZE) and `streams_estimate` (NULL
    /// before the first ANALYZE), `last_recorded_at`.
    pub(crate) counts: Statement,
    /// Every checkpoint with its projection's filter, by projection name.
    pub(crate) checkpoints: Statement,
    /// The planner's estimate (`EXPLAIN (FORMAT JSON)`, "Plan Rows") of how many events
    /// passing the filter follow (`$1` transaction, `$2` position): a count beyond
    /// `EXACT_COUNT_LIMIT` at the cost of planning, not of counting.
    pub(crate) count_estimate: ByFilter,
    /// As `count_after`, but counting at most the limit (the parameter after the filter's),
    /// in the order of the index serving the filter: bounded work for `status` and for the
    /// total of a catch-up.
    pub(crate) count_upto: ByFilter,
    /// The oldest transaction with an event at or after position `$1`, and the horizon.
    pub(crate) first_transaction_from: Statement,
    /// A page of events in (stream, version) order after (`$1` stream, `$2` version), `$3`
    /// rows, with what the checks look at.
    pub(crate) scan_page: Statement,
    /// Stream heads without events. Like the next two: the first `$1` rows, each with the
    /// `total` number of rows there are.
    pub(crate) heads_without_events: Statement,
    /// Positions held by several events, with (a few of) their holders.
    pub(crate) repeated_positions: Statement,
    /// Event ids stored several times, with (a few of) their holders.
    pub(crate) repeated_event_ids: Statement,
    /// Whether a valid unique index on `events (position)` and one on `events (event_id)`
    /// exist in schema `$1` (`positions`, `event_ids`): then PostgreSQL guarantees them.
    pub(crate) unique_guarantees: Statement,
    /// The tables of schema `$1` with more than `$2` live rows that were never analysed
    /// (`table_name`, `live_rows`).
    pub(crate) never_analysed: Statement,
    /// Every checkpoint with the head of the log.
    pub(crate) checkpoints_and_head: Statement,
    /// Snapshots whose version is past their stream's head (at most `$1`).
    pub(crate) snapshots_ahead: Statement,
    /// The newest logical transaction id in the events and checkpoints, and the next one the
    /// cluster would give (NULL when the offset row is missing).
    pub(crate) transaction_ids: Statement,
    // The transaction clock (`clock.rs`).
    /// The store's clock: its transaction offset (NULL when the row is missing), the newest
    /// stored logical transaction id, and the cluster's `xmin` and `xmax` (raw xids).
    pub(crate) clock: Statement,
    /// Keeps appends out (readers go on) until the end of the transaction.
    pub(crate) lock_events: Statement,
    /// Puts the offset row back (at 0) if someone deleted it.
    pub(crate) offset_row: Statement,
    /// Raises the offset to `$1`, never lowering it; returns the new value.
    pub(crate) raise_offset: Statement,
    /// Whether events exist but the planner has no statistics on them (`$1` the schema), as
    /// after a restore.
    pub(crate) needs_analyze: Statement,
    /// Gathers the planner's statistics on the store's tables.
    pub(crate) analyze: Statement,
    /// Retiring streams, snapshot maintenance, subject keys.
    pub(crate) lifecycle: Lifecycle,
    /// The `deadlines` table's statements.
    pub(crate) deadlines: DeadlineStatements,
}

impl Statements {
    pub(crate) fn new(schema: &SchemaName) -> Self {
        let s = schema.quoted();
        let s = s.as_str();
        let checkpoints = format!("{s}.checkpoints");
        // Before the first ANALYZE, the head position: positions start at 1 and only
        // rolled-back appends leave gaps.
        let events_estimate = format!(
            "coalesce({}, (SELECT max(position) FROM {s}.events))",
            estimate(s, "events")
        );
        let parked = format!("{s}.parked_events");
        // At most this many holders are named in a finding about a repeated position or id.
        let holders = "array_to_string((array_agg(stream_id || ' v' || version \
                        ORDER BY stream_id, version))[1:5], ', ')";
        Statements {
            create_schema: format!(
                "CREATE SCHEMA IF NOT EXISTS {s}; \
                 CREATE TABLE IF NOT EXISTS {s}.schema_migrations ( \
                     version bigint PRIMARY KEY, \
                     description text NOT NULL, \
                     applied_at timestamptz NOT NULL DEFAULT now() \
                 );"
            )
            .into(),
            schema_version: format!("SELECT max(version) FROM {s}.schema_migrations").into(),
            record_migration: format!(
                "INSERT INTO {s}.schema_migrations (version, description) VALUES ($1, $2)"
            )
            .into(),
            append: format!("SELECT * FROM {s}.append($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)")
                .into(),
            append_fast: FastAppend::new(s),
            append_group: format!(
                "WITH req AS ( \
                     SELECT * FROM unnest($1::text[], $2::bigint[], $3::int[]) \
                         WITH ORDINALITY AS r(stream_id, expected, n, request) \
                 ), \
                 moved AS ( \
                     UPDATE {s}.streams s SET version = s.version + r.n \
                       FROM (SELECT * FROM req ORDER BY stream_id) r \
                      WHERE s.stream_id = r.stream_id \
                        AND (r.expected IS NULL OR r.expected = -1 \
                             OR (r.expected > 0 AND s.version = r.expected)) \
                     RETURNING r.request, s.version \
                 ), \
                 created AS ( \
                     INSERT INTO {s}.streams (stream_id, version) \
                     SELECT r.stream_id, r.n FROM req r \
                      WHERE r.expected IS NULL OR r.expected = 0 \
                     ON CONFLICT (stream_id) DO NOTHING \
                     RETURNING stream_id, version \
                 ), \
                 heads AS ( \
                     SELECT m.request, m.version FROM moved m \
                     UNION ALL \
                     SELECT r.request, c.version FROM created c JOIN req r USING (stream_id) \
                 ), \
                 inserted AS ( \
                     INSERT INTO {s}.events \
                         (transaction_id, stream_id, version, event_id, name, schema_version, \
                          payload, metadata, correlation_id, causation_id) \
                     SELECT x.id, r.stream_id, h.version - r.n + t.ord, t.id, t.name, \
                            t.schema_version, t.payload, t.metadata, t.correlation_id, \
                            t.causation_id \
                       FROM (SELECT pg_current_xact_id()::text::bigint + {offset} AS id) x, \
                            heads h \
                            JOIN req r USING (request) \
                            JOIN unnest($4::uuid[], $5::text[], $6::bigint[], $7::jsonb[], \
                                        $8::jsonb[], $9::int[], $10::int[], $11::uuid[], \
                                        $12::uuid[]) \
                                 AS t(id, name, schema_version, payload, metadata, request, ord, \
                                      correlation_id, causation_id) \
                              ON t.request = h.request \
                      ORDER BY h.request, t.ord \
                     RETURNING stream_id, position \
                 ) \
                 SELECT h.request, h.version - r.n + 1 AS first_version, \
                        h.version AS last_version, \
                        min(i.position) AS first_position, max(i.position) AS last_position \
                   FROM heads h JOIN req r USING (request) \
                        LEFT JOIN inserted i ON i.stream_id = r.stream_id \
                  GROUP BY h.request, h.version, r.n",
                offset = offset(s)
            )
            .into(),
            append_streams: format!(
                "SELECT * FROM {s}.append_streams($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, \
                                                  $11, $12, $13, $14, $15, $16)"
            )
            .into(),
            // One statement, one snapshot: the events it returns and what it reports unseen
            // come from the same picture of the log. Each item is found through its first tag
            // in the tag index (in checkpoint order), then checked for its other tags and its
            // names on the event row.
            read_query: format!(
                "WITH snap AS ( \
                     SELECT pg_snapshot_xmax(c.s)::text::bigint + {offset} AS unseen_from, \
                            ARRAY(SELECT x::text::bigint + {offset} \
                                    FROM pg_snapshot_xip(c.s) AS x) AS unseen \
                       FROM (SELECT pg_current_snapshot() AS s) c \
                 ) \
                 SELECT snap.unseen_from, snap.unseen, m.* \
                   FROM snap LEFT JOIN LATERAL ( \
                        SELECT DISTINCT ON (e.transaction_id, e.position) \
                               e.position, e.transaction_id, e.stream_id, e.version, \
                               e.event_id, e.name, e.schema_version, e.payload, e.metadata, \
                               e.recorded_at, e.correlation_id, e.causation_id \
                          FROM jsonb_array_elements($1::jsonb) AS q(item) \
                          JOIN {s}.event_tags g ON g.tag = q.item -> 'tags' ->> 0 \
                          JOIN {s}.events e ON e.position = g.position \
                         WHERE e.tags @> ARRAY(SELECT jsonb_array_elements_text(q.item -> 'tags')) \
                           AND (jsonb_array_length(q.item -> 'names') = 0 \
                                OR e.name IN (SELECT jsonb_array_elements_text(q.item -> 'names'))) \
                         ORDER BY e.transaction_id, e.position \
                   ) m ON true \
                  ORDER BY m.transaction_id, m.position",
                offset = offset(s)
            )
            .into(),
            read_stream: format!(
                "SELECT {EVENT_COLUMNS} FROM {s}.events \
                 WHERE stream_id = $1 AND version >= $2 ORDER BY version LIMIT $3"
            )
            .into(),
            // Five narrow columns, asked for one row more than the page holds: that row (read
            // in the same snapshot, then dropped) says whether the page ends the stream, with
            // no column of the stream's head on every row (session 26: each column is carried
            // through the sort and sent for every row; BENCHMARKS.md).
            read_stream_for_fold: format!(
                "SELECT version, position, name, schema_version, payload FROM {s}.events \
                  WHERE stream_id = $1 AND version >= $2 ORDER BY version LIMIT $3"
            )
            .into(),
            read_all: ByFilter::new(2, |shape| read_all(s, shape, Envelope::Full)),
            read_all_lean: ByFilter::new(2, |shape| read_all(s, shape, Envelope::Lean)),
            // The first row after the checkpoint in the order of the index that serves the
            // filter (see `Shape::ordered`): an ordered `LIMIT 1` rather than `EXISTS`, which
            // without statistics was planned as a sequential scan of the whole table.
            unread: ByFilter::new(2, |shape| {
                format!(
                    "SELECT coalesce(({}), false)",
                    shape.ordered(s, "e", "true", "($1::bigint, $2)", "", "1")
                )
            }),
            stream_version: format!(
                "SELECT coalesce(max(version), 0) FROM {s}.streams WHERE stream_id = $1"
            )
            .into(),
            head_position: format!("SELECT coalesce(max(position), 0) FROM {s}.events").into(),
            find_event: format!("SELECT {EVENT_COLUMNS} FROM {s}.events WHERE event_id = $1")
                .into(),
            save_snapshot: format!(
                "INSERT INTO {s}.snapshots AS stored \
                     (stream_id, version, state_fingerprint, state, taken_at) \
                 VALUES ($1, $2, $3, $4, $5) \
                 ON CONFLICT (stream_id) DO UPDATE SET \
                     version = EXCLUDED.version, \
                     state_fingerprint = EXCLUDED.state_fingerprint, \
                     state = EXCLUDED.state, \
                     taken_at = EXCLUDED.taken_at \
                 WHERE stored.version <= EXCLUDED.version"
            )
            .into(),
            load_snapshot: format!(
                "SELECT version, state_fingerprint, state, taken_at FROM {s}.snapshots \
                 WHERE stream_id = $1"
            )
            .into(),
            load_checkpoint: format!(
                "SELECT transaction_id, position FROM {checkpoints} WHERE projection = $1"
            )
            .into(),
            start_checkpoint: format!(
                "INSERT INTO {checkpoints} AS c (projection, transaction_id, position) \
                 VALUES ($1, $2, $3) \
                 ON CONFLICT (projection) DO UPDATE SET \
                     transaction_id = EXCLUDED.transaction_id, position = EXCLUDED.position, \
                     updated_at = now(), \
                     reset_requested_at = CASE WHEN EXCLUDED.position = 0 THEN NULL \
                                               ELSE c.reset_requested_at END \
                 WHERE c.transaction_id = 0 AND c.position = 0 \
                   AND (c.reset_requested_at IS NULL OR EXCLUDED.position = 0)"
            )
            .into(),
            move_checkpoint: format!(
                "UPDATE {checkpoints} SET transaction_id = $2, position = $3, updated_at = now(), \
                     reset_requested_at = CASE WHEN $3 = 0 THEN NULL ELSE reset_requested_at END \
                 WHERE projection = $1 AND transaction_id = $4 AND position = $5 \
                   AND (reset_requested_at IS NULL OR $3 = 0)"
            )
            .into(),
            reset_requested: format!(
                "SELECT reset_requested_at IS NOT NULL FROM {checkpoints} WHERE projection = $1"
            )
            .into(),
            register_projection: format!(
                "INSERT INTO {checkpoints} (projection, transaction_id, position, event_names, categories) \
                 VALUES ($1, 0, 0, $2, $3) \
                 ON CONFLICT (projection) DO UPDATE SET \
                     event_names = EXCLUDED.event_names, categories = EXCLUDED.categories"
            )
            .into(),
            park: format!(
                "INSERT INTO {parked} AS p \
                     (projection, position, event_id, stream_id, version, name, error, attempts) \
                 VALUES ($1, $2, \
                         coalesce((SELECT e.event_id FROM {s}.events e WHERE e.position = $2), \
                                  $3), \
                         $4, $5, $6, $7, $8) \
                 ON CONFLICT (projection, position) DO UPDATE SET \
                     error = EXCLUDED.error, attempts = p.attempts + EXCLUDED.attempts, \
                     parked_at = now(), retry_requested_at = NULL"
            )
            .into(),
            unpark: format!("DELETE FROM {parked} WHERE projection = $1 AND position = $2").into(),
            unpark_all: format!("DELETE FROM {parked} WHERE projection = $1").into(),
            parked: format!(
                "SELECT {PARKED_COLUMNS} FROM {parked} p JOIN {s}.events e ON e.position = p.position \
                  WHERE $1::text IS NULL OR p.projection = $1 \
                  ORDER BY p.projection, p.position"
            )
            .into(),
            due_for_retry: format!(
                "SELECT {PARKED_COLUMNS} FROM {parked} p JOIN {s}.events e ON e.position = p.position \
                  WHERE p.projection = $1 AND p.retry_requested_at IS NOT NULL \
                  ORDER BY p.position LIMIT $2"
            )
            .into(),
            retry_parked: format!(
                "UPDATE {parked} SET retry_requested_at = now() \
                  WHERE projection = $1 AND ($2::bigint IS NULL OR position = $2)"
            )
            .into(),
            discard_parked: format!(
                "DELETE FROM {parked} WHERE projection = $1 AND ($2::bigint IS NULL OR position = $2)"
            )
            .into(),
            lease_fence: format!("SELECT {s}.lease_fence($1, $2, $3)").into(),
            request_reset: format!(
                "UPDATE {checkpoints} SET reset_requested_at = coalesce(reset_requested_at, now()) \
                 WHERE projection = $1"
            )
            .into(),
            // Bounded work whatever the size of the store: counts stop after `$1` rows (any
            // rows: no filter, so any plan stops there); beyond, the planner's own estimate of
            // the table (its density at the last ANALYZE times its size now), NULL when it
            // was never analysed. The newest time among the newest positions: no index serves
            // `max(recorded_at)`, which read the whole table.
            counts: format!(
                "SELECT (SELECT count(*) FROM (SELECT 1 FROM {s}.events LIMIT $1) e) AS events, \
                        (SELECT count(*) FROM (SELECT 1 FROM {s}.streams LIMIT $1) h) AS streams, \
                        {events_estimate} AS events_estimate, \
                        {streams_estimate} AS streams_estimate, \
                        (SELECT max(r.recorded_at) FROM (SELECT recorded_at FROM {s}.events \
                          ORDER BY position DESC LIMIT 100) r) AS last_recorded_at",
                streams_estimate = estimate(s, "streams"),
            )
            .into(),
            // The `behind` counts are `count_upto`, one per projection.
            checkpoints: format!(
                "SELECT c.projection, c.transaction_id, c.position, c.updated_at, \
                        c.reset_requested_at, c.event_names, c.categories \
                   FROM {s}.checkpoints c ORDER BY c.projection"
            )
            .into(),
            // The pages' merge of each value's ordered scan (`Shape::merged`): it reads about
            // the limit's rows, where a lateral join per value read the limit's rows of each
            // and sorted them (14-34 ms against 5 ms for 10,001 events of three names).
            count_upto: ByFilter::new(2, |shape| {
                format!(
                    "SELECT count(*) FROM ({}) counted",
                    shape.merged(s, "e", "1", "", &format!("${}", shape.next))
                )
            }),
            count_estimate: ByFilter::new(2, |shape| {
                format!(
                    "EXPLAIN (FORMAT JSON) SELECT 1 FROM {s}.events e \
                      WHERE (e.transaction_id, e.position) > ($1::bigint, $2){}",
                    shape.filter("e")
                )
            }),
            // One statement, one snapshot: every transaction older than the snapshot's horizon
            // has ended, so its events are visible; a younger one may still commit an event at
            // or after `$1`.
            first_transaction_from: format!(
                "SELECT (SELECT transaction_id FROM {s}.events WHERE position >= $1 \
                          ORDER BY transaction_id LIMIT 1) AS oldest, \
                        pg_snapshot_xmin(pg_current_snapshot())::text::bigint + {offset} \
                            AS horizon",
                offset = offset(s)
            )
            .into(),
            // `h.stream_id >= $1` says nothing new (every event of the page is at or after
            // stream `$1`), but it starts the streams side of the merge join at the cursor:
            // without it each page walked `streams` from its first row, a quadratic verify
            // (issue 22). A per-row subquery instead costs the same, but its estimate under a
            // generic plan crossed `jit_above_cost` and each page paid ~270 ms of JIT.
            scan_page: format!(
                "SELECT e.stream_id, e.version, e.position, e.name, e.schema_version, \
                        jsonb_typeof(e.payload) AS payload_type, \
                        CASE WHEN e.metadata = '{{}}'::jsonb THEN NULL \
                             ELSE e.metadata::text END AS metadata, \
                        jsonb_typeof(e.metadata) AS metadata_type, h.version AS head \
                   FROM {s}.events e LEFT JOIN {s}.streams h \
                        ON h.stream_id = e.stream_id AND h.stream_id >= $1 \
                  WHERE (e.stream_id, e.version) > ($1, $2) \
                  ORDER BY e.stream_id, e.version LIMIT $3"
            )
            .into(),
            heads_without_events: format!(
                "SELECT h.stream_id, h.version, count(*) OVER () AS total FROM {s}.streams h \
                  WHERE h.deleted_at IS NULL \
                    AND NOT EXISTS (SELECT 1 FROM {s}.events e WHERE e.stream_id = h.stream_id) \
                  ORDER BY h.stream_id LIMIT $1"
            )
            .into(),
            // Two passes: the repeated keys first (an index-only scan of the unique index,
            // aggregating nothing else), then the holders of those keys only. One pass with
            // the holders aggregated for every key took 24 s at 2M events (issue 22).
            repeated_positions: format!(
                "SELECT e.position, count(*), {holders}, count(*) OVER () AS total \
                   FROM (SELECT position FROM {s}.events GROUP BY position \
                          HAVING count(*) > 1) r \
                   JOIN {s}.events e ON e.position = r.position \
                  GROUP BY e.position ORDER BY e.position LIMIT $1"
            )
            .into(),
            repeated_event_ids: format!(
                "SELECT e.event_id::text, count(*), {holders}, count(*) OVER () AS total \
                   FROM (SELECT event_id FROM {s}.events GROUP BY event_id \
                          HAVING count(*) > 1) r \
                   JOIN {s}.events e ON e.event_id = r.event_id \
                  GROUP BY e.event_id ORDER BY e.event_id LIMIT $1"
            )
            .into(),
            unique_guarantees: UNIQUE_GUARANTEES.to_owned().into(),
            never_analysed: NEVER_ANALYSED.to_owned().into(),
            checkpoints_and_head: format!(
                "SELECT c.projection, c.transaction_id, c.position, \
                        (SELECT coalesce(max(position), 0) FROM {s}.events) AS head \
                   FROM {s}.checkpoints c ORDER BY c.projection"
            )
            .into(),
            snapshots_ahead: format!(
                "SELECT n.stream_id, n.version, coalesce(h.version, 0) AS head \
                   FROM {s}.snapshots n LEFT JOIN {s}.streams h ON h.stream_id = n.stream_id \
                  WHERE n.version > coalesce(h.version, 0) \
                  ORDER BY n.stream_id LIMIT $1"
            )
            .into(),
            transaction_ids: format!(
                "SELECT (SELECT max(transaction_id) FROM {s}.events) AS events, \
                        (SELECT max(transaction_id) FROM {s}.checkpoints) AS checkpoints, \
                        pg_snapshot_xmax(pg_current_snapshot())::text::bigint + {offset} AS next",
                offset = offset(s)
            )
            .into(),
            clock: format!(
                "SELECT (SELECT o.value FROM {s}.transaction_offset o) AS offset_value, \
                        (SELECT max(transaction_id) FROM {s}.events) AS newest, \
                        pg_snapshot_xmin(pg_current_snapshot())::text::bigint AS xmin, \
                        pg_snapshot_xmax(pg_current_snapshot())::text::bigint AS xmax"
            )
            .into(),
            lock_events: format!("LOCK TABLE {s}.events IN SHARE ROW EXCLUSIVE MODE").into(),
            offset_row: format!(
                "INSERT INTO {s}.transaction_offset (singleton, value) VALUES (true, 0) \
                 ON CONFLICT (singleton) DO NOTHING"
            )
            .into(),
            raise_offset: format!(
                "UPDATE {s}.transaction_offset SET value = greatest(value, $1), raised_at = now() \
                 RETURNING value"
            )
            .into(),
            needs_analyze: format!(
                "SELECT EXISTS (SELECT 1 FROM {s}.events) \
                    AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_stats \
                                     WHERE schemaname = $1 AND tablename = 'events')"
            )
            .into(),
            analyze: format!(
                "ANALYZE {s}.events, {s}.streams, {s}.checkpoints, {s}.snapshots, \
                         {s}.transaction_offset"
            )
            .into(),
            lifecycle: Lifecycle::new(s),
            deadlines: DeadlineStatements::new(s),
        }
    }
}

/// The text of an embedded migration for `schema`: `__SCHEMA__` stands for the quoted schema
/// name and `__CHANNEL__` for the NOTIFY channel.
pub(crate) fn migration(template: &str, schema: &SchemaName) -> String {
    template
        .replace("__SCHEMA__", &schema.quoted())
        .replace("__CHANNEL__", &schema.channel())
}

/// See `Statements::unique_guarantees`: a unique, valid, non-partial, plain index on exactly
/// that column.
const UNIQUE_GUARANTEES: &str = "SELECT \
       coalesce(bool_or(a.attname = 'position'), false) AS positions, \
       coalesce(bool_or(a.attname = 'event_id'), false) AS event_ids \
  FROM pg_catalog.pg_index i \
  JOIN pg_catalog.pg_class c ON c.oid = i.indrelid \
  JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace \
  JOIN pg_catalog.pg_attribute a ON a.attrelid = c.oid AND a.attnum = i.indkey[0] \
 WHERE n.nspname = $1 AND c.relname = 'events' \
   AND i.indisunique AND i.indisvalid AND i.indisready AND i.indnatts = 1 \
   AND i.indpred IS NULL AND i.indexprs IS NULL";

/// See `Statements::never_analysed`.
const NEVER_ANALYSED: &str = "SELECT relname::text AS table_name, n_live_tup AS live_rows \
  FROM pg_catalog.pg_stat_user_tables \
 WHERE schemaname = $1 AND relname IN ('events', 'streams') \
   AND last_analyze IS NULL AND last_autoanalyze IS NULL AND n_live_tup > $2 \
 ORDER BY relname";

/// Whether schema `$1` exists.
pub(crate) const SCHEMA_EXISTS: &str =
    "SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_namespace WHERE nspname = $1)";

/// The tables of schema `$1`.
pub(crate) const SCHEMA_TABLES: &str =
    "SELECT tablename::text FROM pg_catalog.pg_tables WHERE schemaname = $1";

/// The user triggers on table `events` of schema `$1` and whether they fire (`O`rigin or
/// `A`lways; `D`isabled, `R`eplica only).
pub(crate) const EVENT_TRIGGERS: &str = "SELECT t.tgname::text AS name, t.tgenabled::text AS enabled \
       FROM pg_catalog.pg_trigger t \
       JOIN pg_catalog.pg_class c ON c.oid = t.tgrelid \
       JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace \
      WHERE n.nspname = $1 AND c.relname = 'events' AND NOT t.tgisinternal";

/// Serializes the migrations of schema `$1` across processes; released at commit or rollback.
pub(crate) const MIGRATION_LOCK: &str =
    "SELECT pg_advisory_xact_lock(hashtextextended('eventsource-postgres migrate ' || $1, 0))";

/// SQLSTATE of `lease_fence()` when the lease session no longer holds the lock.
pub(crate) const LEASE_LOST: &str = "ES010";
/// SQLSTATE of `lease_fence()` when the projection's checkpoint row is gone.
pub(crate) const CHECKPOINT_ROW_GONE: &str = "ES011";

/// The advisory-lock key of lease name `$1`.
pub(crate) const LEASE_KEY: &str = "SELECT hashtextextended($1, 0)";

/// Takes the session-level advisory lock of key `$1` (a projection's lease), waiting while
/// another session holds it; returns the session's process id.
pub(crate) const LEASE_LOCK: &str =
    "SELECT pg_backend_pid() FROM (SELECT pg_advisory_lock($1::bigint)) AS taken";

/// How long the oldest open transaction holding an id has been running: while it runs, global
/// reads stop at it. Prepared (two-phase) transactions count too.
pub(crate) const HORIZON_LAG: &str = "SELECT coalesce(extract(epoch FROM max(age)), 0)::float8 FROM ( \
         SELECT clock_timestamp() - xact_start AS age FROM pg_stat_activity \
          WHERE backend_xid IS NOT NULL AND pid <> pg_backend_pid() \
         UNION ALL \
         SELECT clock_timestamp() - prepared FROM pg_prepared_xacts \
     ) AS open_transactions";

/// Wakes the listeners of channel `$1` with payload `$2` (an append's last position).
pub(crate) const NOTIFY: &str = "SELECT pg_notify($1, $2)";

#[cfg(test)]
mod plans;
