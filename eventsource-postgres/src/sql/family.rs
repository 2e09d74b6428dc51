//! Statements that come in families: one per shape of a log filter, one per kind of expected
//! version.

use eventsource_core::{Checkpoint, Envelope, ExpectedVersion, LogFilter, Version};

use super::{PgQuery, Statement, bigint, offset};

/// Up to this many distinct names (or categories) a filtered read walks the index of each value
/// on its own and merges the pages (see [`Shape::ordered`]); with more, it walks the global
/// checkpoint index and filters. The merge sorts up to this many pages per page, so its cost
/// follows the number of values, not the size of the store.
pub(crate) const EACH_VALUE_LIMIT: usize = 8;

/// Which index finds the events passing a filter in checkpoint order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Scan {
    /// The global `(transaction_id, position)` index, the filter applied to its rows.
    Global,
    /// For each distinct category, the `(category, transaction_id, position)` index.
    EachCategory,
    /// For each distinct name, the `(name, transaction_id, position)` index.
    EachName,
}

/// The shape of a statement's filter: which values it has (as parameter numbers) and which
/// index walks them.
#[derive(Clone, Copy, Debug)]
pub(super) struct Shape {
    /// The parameter holding the categories, if the filter has any.
    categories: Option<usize>,
    /// The parameter holding the names, if the filter has any.
    names: Option<usize>,
    scan: Scan,
    /// The number of the first parameter after the filter's.
    pub(super) next: usize,
}

impl Shape {
    /// Every condition of the filter on table alias `t` (for statements that count).
    pub(super) fn filter(&self, t: &str) -> String {
        let mut sql = String::new();
        if let Some(c) = self.categories {
            sql.push_str(&format!(" AND {t}.category = ANY(${c}::text[])"));
        }
        if let Some(n) = self.names {
            sql.push_str(&format!(" AND {t}.name = ANY(${n}::text[])"));
        }
        sql
    }

    /// A query yielding `columns` (naming the table `t`) of the first `limit` events after
    /// `bound` (a row `(transaction, position)`), below `also` (extra conditions on `t`, may be
    /// empty), passing the filter, in checkpoint order.
    ///
    /// The plan is the same whatever the statistics and with generic plans: each scan is an
    /// index scan in the order of its index, started at `bound` and stopped after `limit`
    /// rows. With [`Scan::EachName`] (or `EachCategory`) each distinct value gets its own
    /// ordered scan of its index (`name = v` keeps the index order, `name = ANY(..)` does not)
    /// and the at most `limit` rows of each are merged: a page costs what it returns, times the
    /// number of values, however rare the values are in the log.
    pub(super) fn ordered(
        &self,
        schema: &str,
        t: &str,
        columns: &str,
        bound: &str,
        also: &str,
        limit: &str,
    ) -> String {
        let order = format!("ORDER BY {t}.transaction_id, {t}.position LIMIT {limit}");
        let (value_param, column) = match self.scan {
            Scan::Global => {
                return format!(
                    "SELECT {columns} FROM {schema}.events {t} \
                      WHERE ({t}.transaction_id, {t}.position) > {bound}{also}{filter} {order}",
                    filter = self.filter(t)
                );
            }
            Scan::EachCategory => (self.categories, "category"),
            Scan::EachName => (self.names, "name"),
        };
        let value_param = value_param.unwrap_or(0);
        // The other value set (if any) filters the rows of each value's scan.
        let rest = self.rest(t, column);
        format!(
            "SELECT {columns} \
               FROM (SELECT DISTINCT v FROM unnest(${value_param}::text[]) AS v) f_{t} \
                    CROSS JOIN LATERAL ( \
                        SELECT {t}.* FROM {schema}.events {t} \
                         WHERE {t}.{column} = f_{t}.v \
                           AND ({t}.transaction_id, {t}.position) > {bound}{also}{rest} \
                         {order} \
                    ) {t} \
              {order}"
        )
    }
}

impl Shape {
    /// Like [`Shape::ordered`] with the bound `($1::bigint, $2)`, for a page of many rows:
    /// each value's ordered index scan is one branch of a `UNION ALL` (up to
    /// [`EACH_VALUE_LIMIT`] branches, the `n`-th reading the `n`-th value of the array; a
    /// branch past the array's end is skipped by a one-time filter), and the branches are
    /// merged in checkpoint order (a Merge Append) up to `limit`: the page reads about `limit`
    /// rows however many values the filter has, where a lateral join per value reads `limit`
    /// rows of each and sorts them (three times the rows, and a sort, for three names).
    ///
    /// The value's row comparison, `(name, transaction_id, position) > (value, $1, $2)`, starts
    /// the value's index at the checkpoint in every plan; with statistics that make a value
    /// common, a custom plan may walk the global index instead, started by the second
    /// comparison. The values must be distinct (`ByFilter::after` binds them so).
    pub(super) fn merged(
        &self,
        schema: &str,
        t: &str,
        columns: &str,
        also: &str,
        limit: &str,
    ) -> String {
        let bound = "($1::bigint, $2)";
        let (value_param, column) = match self.scan {
            Scan::Global => return self.ordered(schema, t, columns, bound, also, limit),
            Scan::EachCategory => (self.categories, "category"),
            Scan::EachName => (self.names, "name"),
        };
        let value_param = value_param.unwrap_or(0);
        let rest = self.rest(t, column);
        let order = format!("ORDER BY {t}.transaction_id, {t}.position LIMIT {limit}");
        let branches: Vec<String> = (1..=EACH_VALUE_LIMIT)
            .map(|n| {
                let value = format!("(${value_param}::text[])[{n}]");
                format!(
                    "(SELECT {t}.* FROM {schema}.events {t} \
                       WHERE {value} IS NOT NULL AND {t}.{column} = {value} \
                         AND ({t}.{column}, {t}.transaction_id, {t}.position) \
                             > ({value}, $1::bigint, $2) \
                         AND ({t}.transaction_id, {t}.position) > {bound}{also}{rest} \
                       {order})"
                )
            })
            .collect();
        format!(
            "SELECT {columns} FROM ({}) {t} {order}",
            branches.join(" UNION ALL ")
        )
    }

    /// The condition of the value set not walked by an each-value scan of `column` (if any).
    fn rest(&self, t: &str, column: &str) -> String {
        match (column, self.categories, self.names) {
            ("name", Some(c), _) => format!(" AND {t}.category = ANY(${c}::text[])"),
            ("category", _, Some(n)) => format!(" AND {t}.name = ANY(${n}::text[])"),
            _ => String::new(),
        }
    }
}

/// One statement per shape of [`LogFilter`], so that each uses the index that serves it (all
/// events, by category, by name) rather than one generic plan. The filter's values follow the
/// checkpoint (see [`ByFilter::after`]).
#[derive(Debug)]
pub(crate) struct ByFilter {
    all: Statement,
    /// Few categories: each category's index.
    category: Statement,
    /// Many categories: the global index.
    many_categories: Statement,
    /// Few names: each name's index.
    name: Statement,
    /// Many names: the global index.
    many_names: Statement,
    /// Few names (and any categories): each name's index.
    category_and_name: Statement,
    /// Many names, few categories: each category's index.
    category_and_many_names: Statement,
    /// Many of both: the global index.
    many_categories_and_names: Statement,
}

impl ByFilter {
    /// Builds the statements from `build(shape)`. `fixed` is the number of parameters before
    /// the filter's (categories first, then names).
    pub(super) fn new(fixed: usize, build: impl Fn(&Shape) -> String) -> Self {
        let (one, two) = (fixed + 1, fixed + 2);
        let shape = |categories, names, scan, next| {
            build(&Shape {
                categories,
                names,
                scan,
                next,
            })
            .into()
        };
        ByFilter {
            all: shape(None, None, Scan::Global, one),
            category: shape(Some(one), None, Scan::EachCategory, two),
            many_categories: shape(Some(one), None, Scan::Global, two),
            name: shape(None, Some(one), Scan::EachName, two),
            many_names: shape(None, Some(one), Scan::Global, two),
            category_and_name: shape(Some(one), Some(two), Scan::EachName, fixed + 3),
            category_and_many_names: shape(Some(one), Some(two), Scan::EachCategory, fixed + 3),
            many_categories_and_names: shape(Some(one), Some(two), Scan::Global, fixed + 3),
        }
    }

    /// Every statement of the family (for plan tests).
    #[cfg(test)]
    pub(crate) fn each(&self) -> [(&'static str, &Statement); 8] {
        [
            ("all", &self.all),
            ("category", &self.category),
            ("many_categories", &self.many_categories),
            ("name", &self.name),
            ("many_names", &self.many_names),
            ("category_and_name", &self.category_and_name),
            ("category_and_many_names", &self.category_and_many_names),
            ("many_categories_and_names", &self.many_categories_and_names),
        ]
    }

    /// A query on the statement for `filter`, its parameters bound: `$1` and `$2` the
    /// transaction and position of `after`, then the filter's values. Further parameters (a
    /// limit) follow.
    pub(crate) fn after(&self, after: Checkpoint, filter: &LogFilter) -> PgQuery {
        let few = |values: &[String]| distinct(values).len() <= EACH_VALUE_LIMIT;
        let statement = match (filter.categories.is_empty(), filter.names.is_empty()) {
            (true, true) => &self.all,
            (false, true) if few(&filter.categories) => &self.category,
            (false, true) => &self.many_categories,
            (true, false) if few(&filter.names) => &self.name,
            (true, false) => &self.many_names,
            (false, false) if few(&filter.names) => &self.category_and_name,
            (false, false) if few(&filter.categories) => &self.category_and_many_names,
            (false, false) => &self.many_categories_and_names,
        };
        let mut query = statement
            .query()
            .bind(bigint(after.transaction()))
            .bind(bigint(after.position().0));
        // Distinct values: a statement that walks each value's index (`Shape::merged`) would
        // return a repeated value's events twice.
        if !filter.categories.is_empty() {
            query = query.bind(distinct(&filter.categories));
        }
        if !filter.names.is_empty() {
            query = query.bind(distinct(&filter.names));
        }
        query
    }
}

/// The distinct values of `values` (a filter may repeat one), sorted.
fn distinct(values: &[String]) -> Vec<&str> {
    let mut seen: Vec<&str> = values.iter().map(String::as_str).collect();
    seen.sort_unstable();
    seen.dedup();
    seen
}

/// A page of the global log after a checkpoint (`$1` logical transaction, `$2` position), only
/// below the oldest running transaction (the horizon, as a logical id: the cluster's
/// `pg_snapshot_xmin` plus the store's offset), so that a transaction committing late never
/// lands behind a reader's checkpoint. Every row also says whether committed events
/// matching the filter wait beyond the horizon (`held_back`); an empty page is one row of
/// NULLs with that flag. The flag is the first column, the events' columns follow in the order
/// of `sql::EVENT_COLUMNS` (decoded by position, `row::decode_event_at`).
///
/// The `held_back` probe asks for the first row after `max(checkpoint, (horizon, -1))` as one
/// row comparison, the same rows as "after the checkpoint and at or beyond the horizon"
/// (positions are positive): with the two bounds apart, the index scan starts at the checkpoint
/// and walks every row up to the horizon, which made each page cost the rest of the log (a
/// quadratic catch-up; see BENCHMARKS.md). It is an ordered `LIMIT 1` on the index, not an
/// `EXISTS`: without statistics (after a restore) the planner costed `EXISTS` as a sequential
/// scan that stops at the first of a third of the rows, and then read the whole table on every
/// page, because usually no row is held back (issue 22).
///
/// The page itself is ordered by the index it walks ([`Shape::ordered`]); the statement does
/// not sort the page again outside the lateral join (that cost 0.3 ms of 0.7 ms per page of 500
/// in `EXPLAIN ANALYZE`); `PostgresStore::read_all` puts the rows in checkpoint order itself (a
/// pass over rows already in order).
pub(super) fn read_all(schema: &str, shape: &Shape, envelope: Envelope) -> String {
    let offset = offset(schema);
    // On the global index, the limit as a subquery: a custom plan sees it no better than the
    // generic one, so the plan cache settles on the generic plan after its first executions
    // (a custom plan, with the page's size known, looked cheaper than the generic one, and
    // the statement was planned again for every page: 0.2-0.5 ms of planning against
    // 0.15-0.2 ms of execution). Not for the merge of each value's scan, which goes generic
    // by itself and whose plan with an unknown limit runs slower (0.56 ms against 0.33).
    let limit = if shape.scan == Scan::Global {
        format!("(SELECT ${}::bigint)", shape.next)
    } else {
        format!("${}", shape.next)
    };
    let probe = shape.ordered(
        schema,
        "l",
        "true",
        "(CASE WHEN x.xmin > $1::bigint THEN x.xmin ELSE $1::bigint END, \
          CASE WHEN x.xmin > $1::bigint THEN -1 ELSE $2 END)",
        "",
        "1",
    );
    // A lean page sends NULL for the fields `Envelope::Lean` leaves out: a NULL costs the
    // server no conversion and the client no decoding (`row::decode_event_at` reads it as the
    // field's lean value). Four such columns were about 12% of a catch-up (BENCHMARKS.md).
    let columns = match envelope {
        Envelope::Full => {
            "e.transaction_id AS xid, e.position, e.stream_id, e.version, e.event_id, \
             e.name, e.schema_version, e.payload, e.metadata, e.recorded_at, e.correlation_id, \
             e.causation_id"
        }
        Envelope::Lean => {
            "e.transaction_id AS xid, e.position, e.stream_id, e.version, \
             NULL::uuid AS event_id, e.name, e.schema_version, e.payload, \
             NULL::jsonb AS metadata, NULL::timestamptz AS recorded_at, \
             NULL::uuid AS correlation_id, NULL::uuid AS causation_id"
        }
    };
    let page = shape.merged(
        schema,
        "e",
        columns,
        " AND e.transaction_id < h.xmin",
        &limit,
    );
    format!(
        "WITH horizon AS MATERIALIZED ( \
             SELECT x.xmin, coalesce(({probe}), false) AS held_back \
             FROM (SELECT pg_snapshot_xmin(pg_current_snapshot())::text::bigint + {offset} \
                       AS xmin) x \
         ) \
         SELECT h.held_back, p.position, p.xid AS transaction_id, p.stream_id, p.version, \
                p.event_id, p.name, p.schema_version, p.payload, p.metadata, p.recorded_at, \
                p.correlation_id, p.causation_id \
           FROM horizon h LEFT JOIN LATERAL ({page}) p ON true"
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
                  metadata, correlation_id, causation_id) \
             SELECT x.id, $1, h.version - cardinality($3::uuid[]) + t.ord, t.id, t.name, \
                    t.schema_version, t.payload, t.metadata, t.correlation_id, t.causation_id \
               FROM head h, \
                    (SELECT pg_current_xact_id()::text::bigint + {offset} AS id) x, \
                    unnest($3::uuid[], $4::text[], $5::bigint[], $6::jsonb[], $7::jsonb[], \
                           $8::uuid[], $9::uuid[]) \
                        WITH ORDINALITY AS t(id, name, schema_version, payload, metadata, \
                                             correlation_id, causation_id, ord) \
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

/// [`append_fast`] for a batch of one event, from scalar parameters: `$3` id, `$4` name, `$5`
/// schema version, `$6` payload, `$7` metadata. The same outcomes: no row when the head did not
/// move, a unique violation (head rolled back) when the id is already stored.
fn append_fast_one(schema: &str, head: &str) -> Statement {
    let offset = offset(schema);
    format!(
        "WITH head AS ({head} RETURNING s.version) \
         INSERT INTO {schema}.events \
             (transaction_id, stream_id, version, event_id, name, schema_version, payload, \
              metadata, correlation_id, causation_id) \
         SELECT pg_current_xact_id()::text::bigint + {offset}, $1, h.version, $3::uuid, \
                $4::text, $5::bigint, $6::jsonb, $7::jsonb, $8::uuid, $9::uuid \
           FROM head h \
         RETURNING version AS first_version, version AS last_version, \
                   position AS first_position, position AS last_position"
    )
    .into()
}

/// The fast append statements, one per kind of expectation, each for a batch (column arrays)
/// and for the single event most appends carry (scalar parameters: no arrays to build and
/// read, no `unnest`, no sort, no aggregates over the inserted rows).
#[derive(Debug)]
pub(crate) struct FastAppend {
    batch: FastAppendKinds,
    one: FastAppendKinds,
}

/// [`FastAppend`]'s statements of one shape.
#[derive(Debug)]
struct FastAppendKinds {
    /// `ExpectedVersion::Any`: create or move the head.
    any: Statement,
    /// `ExpectedVersion::NoStream` (or `Exact(0)`): create the head.
    no_stream: Statement,
    /// `ExpectedVersion::StreamExists`: move an existing head.
    stream_exists: Statement,
    /// `ExpectedVersion::Exact(n)`, n >= 1: move the head from `$2`.
    exact: Statement,
}

impl FastAppendKinds {
    /// The four heads, moved by `count` events, each completed by `statement`.
    fn new(s: &str, count: &str, statement: fn(&str, &str) -> Statement) -> Self {
        let move_head = format!("SET version = s.version + {count}");
        FastAppendKinds {
            any: statement(
                s,
                &format!(
                    "INSERT INTO {s}.streams AS s (stream_id, version) \
                     SELECT $1, {count} WHERE $2::bigint IS NULL \
                     ON CONFLICT (stream_id) DO UPDATE {move_head}"
                ),
            ),
            no_stream: statement(
                s,
                &format!(
                    "INSERT INTO {s}.streams AS s (stream_id, version) \
                     SELECT $1, {count} WHERE $2::bigint = 0 \
                     ON CONFLICT (stream_id) DO NOTHING"
                ),
            ),
            stream_exists: statement(
                s,
                &format!(
                    "UPDATE {s}.streams AS s {move_head} \
                     WHERE s.stream_id = $1 AND $2::bigint = -1"
                ),
            ),
            exact: statement(
                s,
                &format!(
                    "UPDATE {s}.streams AS s {move_head} \
                     WHERE s.stream_id = $1 AND s.version = $2"
                ),
            ),
        }
    }

    fn pick(&self, expected: ExpectedVersion) -> &Statement {
        match expected {
            ExpectedVersion::Any => &self.any,
            ExpectedVersion::StreamExists => &self.stream_exists,
            ExpectedVersion::NoStream | ExpectedVersion::Exact(Version(0)) => &self.no_stream,
            ExpectedVersion::Exact(_) => &self.exact,
        }
    }
}

impl FastAppend {
    pub(super) fn new(s: &str) -> Self {
        FastAppend {
            batch: FastAppendKinds::new(s, "cardinality($3::uuid[])", append_fast),
            one: FastAppendKinds::new(s, "1", append_fast_one),
        }
    }

    /// The batch statement for `expected`; its `$2` is [`expected_version`]`(expected)`, and
    /// `$3`..`$7` are the batch's columns as arrays.
    pub(crate) fn pick(&self, expected: ExpectedVersion) -> &Statement {
        self.batch.pick(expected)
    }

    /// The statement for one event and `expected`: `$3`..`$7` are the event's id, name,
    /// schema version, payload and metadata.
    pub(crate) fn pick_one(&self, expected: ExpectedVersion) -> &Statement {
        self.one.pick(expected)
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
