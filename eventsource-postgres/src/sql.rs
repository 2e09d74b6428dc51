//! The statements of one store, written once for its schema.
//!
//! Identifiers cannot be bound as parameters, so the validated, quoted schema name is put into
//! the text; every value is bound. Each text is fixed per store, so the driver prepares it once
//! per connection and reuses the plan.

use std::sync::Arc;

use crate::schema::SchemaName;

/// The columns `row::decode_event` reads. The `xid8` transaction id travels as text: the driver
/// has no type for it.
const EVENT_COLUMNS: &str = "position, transaction_id::text AS transaction_id, stream_id, version, \
     event_id, name, schema_version, payload, metadata, recorded_at";

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
fn read_all(schema: &str, filter: &str, limit: usize) -> Arc<str> {
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
           ) p ON true \
          ORDER BY p.xid, p.position"
    )
    .into()
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
fn append_fast(schema: &str, head: &str) -> Arc<str> {
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
    pub(crate) any: Arc<str>,
    /// `ExpectedVersion::NoStream`: create the head.
    pub(crate) no_stream: Arc<str>,
    /// `ExpectedVersion::StreamExists`: move an existing head.
    pub(crate) stream_exists: Arc<str>,
    /// `ExpectedVersion::Exact(n)`, n >= 1: move the head from `$2`.
    pub(crate) exact: Arc<str>,
}

/// The SQL texts of a store.
#[derive(Debug)]
pub(crate) struct Statements {
    /// The `append()` function: every outcome (conflict, retry, duplicate), and `append_in`.
    pub(crate) append: Arc<str>,
    pub(crate) append_fast: FastAppend,
    pub(crate) read_stream: Arc<str>,
    /// Unfiltered: `$1` transaction, `$2` position, `$3` limit.
    pub(crate) read_all: Arc<str>,
    /// `$3` categories, `$4` limit.
    pub(crate) read_all_by_category: Arc<str>,
    /// `$3` names, `$4` limit.
    pub(crate) read_all_by_name: Arc<str>,
    /// `$3` categories, `$4` names, `$5` limit.
    pub(crate) read_all_by_category_and_name: Arc<str>,
    pub(crate) stream_version: Arc<str>,
    pub(crate) head_position: Arc<str>,
    pub(crate) find_event: Arc<str>,
    pub(crate) save_snapshot: Arc<str>,
    pub(crate) load_snapshot: Arc<str>,
}

impl Statements {
    pub(crate) fn new(schema: &SchemaName) -> Self {
        let s = schema.quoted();
        Statements {
            append: format!("SELECT * FROM {s}.append($1, $2, $3, $4, $5, $6, $7)").into(),
            append_fast: FastAppend {
                any: append_fast(
                    &s,
                    &format!(
                        "INSERT INTO {s}.streams AS s (stream_id, version) \
                         SELECT $1, cardinality($3::uuid[]) WHERE $2::bigint IS NULL \
                         ON CONFLICT (stream_id) DO UPDATE \
                         SET version = s.version + cardinality($3::uuid[])"
                    ),
                ),
                no_stream: append_fast(
                    &s,
                    &format!(
                        "INSERT INTO {s}.streams AS s (stream_id, version) \
                         SELECT $1, cardinality($3::uuid[]) WHERE $2::bigint = 0 \
                         ON CONFLICT (stream_id) DO NOTHING"
                    ),
                ),
                stream_exists: append_fast(
                    &s,
                    &format!(
                        "UPDATE {s}.streams AS s SET version = s.version + cardinality($3::uuid[]) \
                         WHERE s.stream_id = $1 AND $2::bigint = -1"
                    ),
                ),
                exact: append_fast(
                    &s,
                    &format!(
                        "UPDATE {s}.streams AS s SET version = s.version + cardinality($3::uuid[]) \
                         WHERE s.stream_id = $1 AND s.version = $2"
                    ),
                ),
            },
            read_stream: format!(
                "SELECT {EVENT_COLUMNS} FROM {s}.events \
                 WHERE stream_id = $1 AND version >= $2 ORDER BY version LIMIT $3"
            )
            .into(),
            read_all: read_all(&s, "", 3),
            read_all_by_category: read_all(&s, " AND {t}.category = ANY($3)", 4),
            read_all_by_name: read_all(&s, " AND {t}.name = ANY($3)", 4),
            read_all_by_category_and_name: read_all(
                &s,
                " AND {t}.category = ANY($3) AND {t}.name = ANY($4)",
                5,
            ),
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
        }
    }
}

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
