//! The statements of one store, written once for its schema.
//!
//! Identifiers cannot be bound as parameters, so the validated, quoted schema name is put into
//! the text; every value is bound. Each text is fixed per store, so the driver prepares it once
//! per connection and reuses the plan.

use std::sync::Arc;

use eventsource_core::{ExpectedVersion, LogFilter, Version};
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

/// Binds the categories, then the names, of `filter`, each only when the filter has any: the
/// values of the `{t}` conditions of the statement [`ByFilter::pick`] chose.
pub(crate) fn bind_filter(mut query: PgQuery, filter: &LogFilter) -> PgQuery {
    if !filter.categories.is_empty() {
        query = query.bind(filter.categories.as_slice());
    }
    if !filter.names.is_empty() {
        query = query.bind(filter.names.as_slice());
    }
    query
}

/// One statement per shape of [`LogFilter`], so that each uses the index that serves it (all
/// events, by category, by name) rather than one generic plan. The filter's values follow the
/// statement's own parameters (see [`bind_filter`]).
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

    /// The statement for `filter`.
    pub(crate) fn pick(&self, filter: &LogFilter) -> &Statement {
        match (filter.categories.is_empty(), filter.names.is_empty()) {
            (true, true) => &self.all,
            (false, true) => &self.category,
            (true, false) => &self.name,
            (false, false) => &self.category_and_name,
        }
    }
}

/// The columns `row::decode_event` reads.
const EVENT_COLUMNS: &str = "position, transaction_id, stream_id, version, \
     event_id, name, schema_version, payload, metadata, recorded_at";

/// The store's transaction offset (see the crate docs, "Global order"), as a scalar subquery
/// of a statement on schema `s`: read in the statement's own snapshot, like the ids it
/// compares with.
fn offset(s: &str) -> String {
    format!("(SELECT o.value FROM {s}.transaction_offset o)")
}

/// A page of the global log after a checkpoint (`$1` logical transaction, `$2` position), only
/// below the oldest running transaction (the horizon, as a logical id: the cluster's
/// `pg_snapshot_xmin` plus the store's offset), so that a transaction committing late never
/// lands behind a reader's checkpoint. Every row also says whether committed events
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
fn read_all(schema: &str, filter: &str, limit: usize) -> String {
    let held_back_filter = filter.replace("{t}", "l");
    let filter = filter.replace("{t}", "e");
    let offset = offset(schema);
    format!(
        "WITH horizon AS MATERIALIZED ( \
             SELECT x.xmin, EXISTS ( \
                 SELECT 1 FROM {schema}.events l \
                  WHERE (l.transaction_id, l.position) > ( \
                            CASE WHEN x.xmin > $1::bigint THEN x.xmin ELSE $1::bigint END, \
                            CASE WHEN x.xmin > $1::bigint THEN -1 ELSE $2 END \
                        ){held_back_filter} \
             ) AS held_back \
             FROM (SELECT pg_snapshot_xmin(pg_current_snapshot())::text::bigint + {offset} \
                       AS xmin) x \
         ) \
         SELECT h.held_back, p.xid AS transaction_id, p.position, p.stream_id, p.version, \
                p.event_id, p.name, p.schema_version, p.payload, p.metadata, p.recorded_at \
           FROM horizon h LEFT JOIN LATERAL ( \
                SELECT e.transaction_id AS xid, e.position, e.stream_id, e.version, e.event_id, \
                       e.name, e.schema_version, e.payload, e.metadata, e.recorded_at \
                  FROM {schema}.events e \
                 WHERE (e.transaction_id, e.position) > ($1::bigint, $2) \
                   AND e.transaction_id < h.xmin{filter} \
                 ORDER BY e.transaction_id, e.position \
                 LIMIT ${limit} \
           ) p ON true \
          ORDER BY p.xid, p.position"
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
///
/// The logical transaction id is computed once per statement (the column's default,
/// `logical_xact_id()`, would run a SQL function per row).
fn append_fast(schema: &str, head: &str) -> Statement {
    let offset = offset(schema);
    format!(
        "WITH head AS ({head} RETURNING s.version), \
         inserted AS ( \
             INSERT INTO {schema}.events \
                 (transaction_id, stream_id, version, event_id, name, schema_version, payload, \
                  metadata) \
             SELECT x.id, $1, h.version - cardinality($3::uuid[]) + t.ord, t.id, t.name, \
                    t.schema_version, t.payload, t.metadata \
               FROM head h, \
                    (SELECT pg_current_xact_id()::text::bigint + {offset} AS id) x, \
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
    /// `$1` logical transaction, `$2` position, then the filter's values, then the limit.
    pub(crate) read_all: ByFilter,
    /// Whether events passing the filter exist after (`$1` transaction, `$2` position).
    pub(crate) unread: ByFilter,
    pub(crate) stream_version: Statement,
    pub(crate) head_position: Statement,
    pub(crate) find_event: Statement,
    pub(crate) save_snapshot: Statement,
    pub(crate) load_snapshot: Statement,
    /// `$1` projection.
    pub(crate) load_checkpoint: Statement,
    /// `$1` projection: remove it, wherever it is.
    pub(crate) delete_checkpoint: Statement,
    /// `$1` projection, only if at (`$2` transaction, `$3` position).
    pub(crate) delete_checkpoint_at: Statement,
    /// `$1` projection at (`$2`, `$3`), only if it has none.
    pub(crate) insert_checkpoint: Statement,
    /// `$1` projection to (`$2`, `$3`), only if at (`$4`, `$5`).
    pub(crate) update_checkpoint: Statement,
    /// What the admin API asks.
    pub(crate) admin: AdminStatements,
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
}

impl Statements {
    pub(crate) fn new(schema: &SchemaName) -> Self {
        let s = schema.quoted();
        let s = s.as_str();
        let checkpoints = format!("{s}.checkpoints");
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
                      WHERE (e.transaction_id, e.position) > ($1::bigint, $2){})",
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
            delete_checkpoint: format!(
                "DELETE FROM {checkpoints} WHERE projection = $1 RETURNING transaction_id, position"
            )
            .into(),
            delete_checkpoint_at: format!(
                "DELETE FROM {checkpoints} \
                 WHERE projection = $1 AND transaction_id = $2 AND position = $3"
            )
            .into(),
            insert_checkpoint: format!(
                "INSERT INTO {checkpoints} (projection, transaction_id, position) \
                 VALUES ($1, $2, $3) ON CONFLICT (projection) DO NOTHING"
            )
            .into(),
            update_checkpoint: format!(
                "UPDATE {checkpoints} SET transaction_id = $2, position = $3, updated_at = now() \
                 WHERE projection = $1 AND transaction_id = $4 AND position = $5"
            )
            .into(),
            admin: AdminStatements::new(s),
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

/// Takes the session-level advisory lock of key `$1` (a projection's lease); waits while
/// another session holds it.
pub(crate) const LEASE_LOCK: &str = "SELECT pg_advisory_lock(hashtextextended($1, 0))";

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
