//! Statements that come in families: one per shape of a log filter, one per kind of expected
//! version.

use eventsource_core::{Checkpoint, ExpectedVersion, LogFilter, Version};

use super::{PgQuery, Statement, bigint};

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
    pub(super) fn new(fixed: usize, build: impl Fn(&str, usize) -> String) -> Self {
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
pub(super) fn read_all(schema: &str, filter: &str, limit: usize) -> String {
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
    pub(super) fn new(s: &str) -> Self {
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
