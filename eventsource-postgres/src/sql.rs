//! The statements of one store, written once for its schema.
//!
//! Identifiers cannot be bound as parameters, so the validated, quoted schema name is put into
//! the text; every value is bound. Each text is fixed per store, so the driver prepares it once
//! per connection and reuses the plan.

use std::sync::Arc;

use eventsource_core::{Checkpoint, ExpectedVersion, LogFilter, Version};
use sqlx::postgres::PgArguments;
use sqlx::{AssertSqlSafe, Postgres};

use crate::schema::SchemaName;

mod admin;
pub(crate) use admin::{AdminStatements, EVENT_TRIGGERS, SCHEMA_EXISTS, SCHEMA_TABLES};

/// A query on one of a store's statements, its values still to bind.
pub(crate) type PgQuery = sqlx::query::Query<'static, Postgres, PgArguments>;

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

/// One statement per shape of [`LogFilter`], so that each uses the index that serves it (all
/// events, by category, by name) rather than one generic plan. The filter's values follow the
/// checkpoint (see [`ByFilter::after`]).
#[derive(Debug)]
pub(crate) struct ByFilter {
    all: Statement,
    category: Statement,
    name: Statement,
    category_and_name: Statement,
}

impl ByFilter {
    /// Builds the four statements from `build(filter, next)`: `filter` is the SQL condition
    /// (with `{t}` for the table alias) and `next` the number of the first parameter after it.
    /// `fixed` is the number of parameters before the filter's.
    fn new(fixed: usize, build: impl Fn(&str, usize) -> String) -> Self {
        let (one, two) = (fixed + 1, fixed + 2);
        ByFilter {
            all: build("", one).into(),
            category: build(&format!(" AND {{t}}.category = ANY(${one})"), two).into(),
            name: build(&format!(" AND {{t}}.name = ANY(${one})"), two).into(),
            category_and_name: build(
                &format!(" AND {{t}}.category = ANY(${one}) AND {{t}}.name = ANY(${two})"),
                fixed + 3,
            )
            .into(),
        }
    }

    /// A query on the statement for `filter`, its parameters bound: `$1` and `$2` the
    /// transaction and position of `after`, then the filter's values. Further parameters (a
    /// limit) follow.
    pub(crate) fn after(&self, after: Checkpoint, filter: &LogFilter) -> PgQuery {
        let statement = match (filter.categories.is_empty(), filter.names.is_empty()) {
            (true, true) => &self.all,
            (false, true) => &self.category,
            (true, false) => &self.name,
            (false, false) => &self.category_and_name,
        };
        let mut query = statement
            .query()
            .bind(after.transaction().to_string())
            .bind(bigint(after.position().0));
        if !filter.categories.is_empty() {
            query = query.bind(filter.categories.as_slice());
        }
        if !filter.names.is_empty() {
            query = query.bind(filter.names.as_slice());
        }
        query
    }
}

/// The columns `row::decode_event` reads. The `xid8` transaction id travels as text: the driver
/// has no type for it.
const EVENT_COLUMNS: &str = "position, transaction_id::text AS transaction_id, stream_id, version, \
     event_id, name, schema_version, payload, metadata, recorded_at";

/// The columns `row::decode_parked` reads: the parked event's bookkeeping (`p`) and its stored
/// row (`e`) under the names `row::decode_event` reads.
const PARKED_COLUMNS: &str = "p.projection, p.error, p.attempts, p.parked_at, \
     p.retry_requested_at IS NOT NULL AS retry_requested, \
     e.position, e.transaction_id::text AS transaction_id, e.stream_id, e.version, e.event_id, \
     e.name, e.schema_version, e.payload, e.metadata, e.recorded_at";

/// A page of the global log after a checkpoint (`$1` transaction as text, `$2` position), only
/// below the oldest running transaction (the horizon), so that a transaction committing late
/// never lands behind a reader's checkpoint. Every row also says whether committed events
/// matching the filter wait beyond the horizon (`held_back`); an empty page is one row of
/// NULLs with that flag.
///
/// `filter` names the scanned table `{t}`; it is applied to both scans.
///
/// The `held_back` probe asks for a row after `max(checkpoint, (horizon, -1))` as one row
/// comparison, the same rows as "after the checkpoint and at or beyond the horizon" (positions
/// are positive): with the two bounds apart, the index scan starts at the checkpoint and walks
/// every row up to the horizon, which made each page cost the rest of the log (a quadratic
/// catch-up; see BENCHMARKS.md).
///
/// No ORDER BY outside the lateral page: it made the server sort every page again (0.3 ms of
/// 0.7 ms per page of 500 in `EXPLAIN ANALYZE`), although the page comes out of its index scan
/// in order; `PostgresStore::read_all` puts the rows in checkpoint order itself (a pass over
/// rows already in order).
fn read_all(schema: &str, filter: &str, limit: usize) -> String {
    let held_back_filter = filter.replace("{t}", "l");
    let filter = filter.replace("{t}", "e");
    format!(
        "WITH horizon AS MATERIALIZED ( \
             SELECT x.xmin, EXISTS ( \
                 SELECT 1 FROM {schema}.events l \
                  WHERE (l.transaction_id, l.position) > ( \
                            CASE WHEN x.xmin > $1::text::xid8 THEN x.xmin ELSE $1::text::xid8 END, \
                            CASE WHEN x.xmin > $1::text::xid8 THEN -1 ELSE $2 END \
                        ){held_back_filter} \
             ) AS held_back \
             FROM (SELECT pg_snapshot_xmin(pg_current_snapshot()) AS xmin) x \
         ) \
         SELECT h.held_back, p.xid::text AS transaction_id, p.position, p.stream_id, p.version, \
                p.event_id, p.name, p.schema_version, p.payload, p.metadata, p.recorded_at \
           FROM horizon h LEFT JOIN LATERAL ( \
                SELECT e.transaction_id AS xid, e.position, e.stream_id, e.version, e.event_id, \
                       e.name, e.schema_version, e.payload, e.metadata, e.recorded_at \
                  FROM {schema}.events e \
                 WHERE (e.transaction_id, e.position) > ($1::text::xid8, $2) \
                   AND e.transaction_id < h.xmin{filter} \
                 ORDER BY e.transaction_id, e.position \
                 LIMIT ${limit} \
           ) p ON true"
    )
}

/// The common case of an append as one data-modifying statement: `head` moves the stream head
/// (and yields the new version) only if the expectation holds; the rows are inserted only if it
/// did, from the column arrays `$3`..`$7`. No row comes back when the head did not move, and a
/// batch with an id that is already stored fails on the unique index (rolling the head back):
/// the caller then asks the `append()` function, which tells a conflict from a retry or a
/// duplicate. `$1` is the stream, `$2` the expected version (NULL unless `head` needs it).
///
/// One statement rather than the plpgsql function: no interpreter, no up-front id lookup (the
/// unique index checks the ids anyway) and no NOTIFY inside the transaction (see
/// `PostgresStore::append`); measured in BENCHMARKS.md.
fn append_fast(schema: &str, head: &str) -> Statement {
    format!(
        "WITH head AS ({head} RETURNING s.version), \
         inserted AS ( \
             INSERT INTO {schema}.events \
                 (stream_id, version, event_id, name, schema_version, payload, metadata) \
             SELECT $1, h.version - cardinality($3::uuid[]) + t.ord, t.id, t.name, \
                    t.schema_version, t.payload, t.metadata \
               FROM head h, \
                    unnest($3::uuid[], $4::text[], $5::bigint[], $6::jsonb[], $7::jsonb[]) \
                        WITH ORDINALITY AS t(id, name, schema_version, payload, metadata, ord) \
              ORDER BY t.ord \
             RETURNING position \
         ) \
         SELECT h.version - cardinality($3::uuid[]) + 1 AS first_version, \
                h.version AS last_version, \
                (SELECT min(i.position) FROM inserted i) AS first_position, \
                (SELECT max(i.position) FROM inserted i) AS last_position \
           FROM head h"
    )
    .into()
}

/// The fast append statements, one per kind of expectation.
#[derive(Debug)]
pub(crate) struct FastAppend {
    /// `ExpectedVersion::Any`: create or move the head.
    any: Statement,
    /// `ExpectedVersion::NoStream` (or `Exact(0)`): create the head.
    no_stream: Statement,
    /// `ExpectedVersion::StreamExists`: move an existing head.
    stream_exists: Statement,
    /// `ExpectedVersion::Exact(n)`, n >= 1: move the head from `$2`.
    exact: Statement,
}

impl FastAppend {
    fn new(s: &str) -> Self {
        let move_head = "SET version = s.version + cardinality($3::uuid[])";
        FastAppend {
            any: append_fast(
                s,
                &format!(
                    "INSERT INTO {s}.streams AS s (stream_id, version) \
                     SELECT $1, cardinality($3::uuid[]) WHERE $2::bigint IS NULL \
                     ON CONFLICT (stream_id) DO UPDATE {move_head}"
                ),
            ),
            no_stream: append_fast(
                s,
                &format!(
                    "INSERT INTO {s}.streams AS s (stream_id, version) \
                     SELECT $1, cardinality($3::uuid[]) WHERE $2::bigint = 0 \
                     ON CONFLICT (stream_id) DO NOTHING"
                ),
            ),
            stream_exists: append_fast(
                s,
                &format!(
                    "UPDATE {s}.streams AS s {move_head} \
                     WHERE s.stream_id = $1 AND $2::bigint = -1"
                ),
            ),
            exact: append_fast(
                s,
                &format!(
                    "UPDATE {s}.streams AS s {move_head} \
                     WHERE s.stream_id = $1 AND s.version = $2"
                ),
            ),
        }
    }

    /// The statement for `expected`; its `$2` is [`expected_version`]`(expected)`.
    pub(crate) fn pick(&self, expected: ExpectedVersion) -> &Statement {
        match expected {
            ExpectedVersion::Any => &self.any,
            ExpectedVersion::StreamExists => &self.stream_exists,
            ExpectedVersion::NoStream | ExpectedVersion::Exact(Version(0)) => &self.no_stream,
            ExpectedVersion::Exact(_) => &self.exact,
        }
    }
}

/// `expected` as the `p_expected` parameter of the `append()` function and `$2` of the fast
/// append: NULL = any version, -1 = the stream must exist, n >= 0 = exactly version n (0 = no
/// stream). No stream reaches a version beyond `i64::MAX`: such an expectation just conflicts.
pub(crate) fn expected_version(expected: ExpectedVersion) -> Option<i64> {
    match expected {
        ExpectedVersion::Any => None,
        ExpectedVersion::StreamExists => Some(-1),
        ExpectedVersion::NoStream => Some(0),
        ExpectedVersion::Exact(Version(v)) => Some(bigint(v)),
    }
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
    /// `$1` stream, `$2` first version, `$3` limit.
    pub(crate) read_stream: Statement,
    /// `$1` transaction, `$2` position, then the filter's values, then the limit.
    pub(crate) read_all: ByFilter,
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
    /// What the admin API asks.
    pub(crate) admin: AdminStatements,
}

impl Statements {
    pub(crate) fn new(schema: &SchemaName) -> Self {
        let s = schema.quoted();
        let s = s.as_str();
        let checkpoints = format!("{s}.checkpoints");
        let parked = format!("{s}.parked_events");
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
            append: format!("SELECT * FROM {s}.append($1, $2, $3, $4, $5, $6, $7)").into(),
            append_fast: FastAppend::new(s),
            read_stream: format!(
                "SELECT {EVENT_COLUMNS} FROM {s}.events \
                 WHERE stream_id = $1 AND version >= $2 ORDER BY version LIMIT $3"
            )
            .into(),
            read_all: ByFilter::new(2, |filter, limit| read_all(s, filter, limit)),
            // Served by the checkpoint-order indexes (all, by category, by name); stops at the
            // first row.
            unread: ByFilter::new(2, |filter, _| {
                format!(
                    "SELECT EXISTS (SELECT 1 FROM {s}.events e \
                      WHERE (e.transaction_id, e.position) > ($1::text::xid8, $2){})",
                    filter.replace("{t}", "e")
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
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8) \
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
            admin: AdminStatements::new(s),
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
