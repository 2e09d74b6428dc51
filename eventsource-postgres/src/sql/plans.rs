//! The plans of the statements the store runs, on a table big enough for a bad plan to show:
//! never analysed (as after a restore or a bulk import) and analysed, with custom plans and
//! with forced generic plans (`plan_cache_mode = force_generic_plan`, blind to parameter
//! values). Each statement must read `events` through the index meant for it, never by a
//! sequential scan, and never sort an unbounded part of the log (issue 22).
//!
//! Needs `DATABASE_URL` (`scripts/test.sh` sets it); fails, never skips, without it.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::fmt::Write as _;
use std::time::Duration;

use eventsource_core::ExpectedVersion;
use serde_json::Value;
use sqlx::{AssertSqlSafe, Row};

use super::{Statement, Statements};
use crate::PostgresStore;

/// Rows in the test table: enough that a sequential scan costs more than an index probe
/// whatever the estimates, small enough to load in well under a second.
const ROWS: i64 = 200_000;
/// Streams in the test table, of 10 events each, in four categories.
const STREAMS: i64 = ROWS / 10;

/// A statement to check: its name, text, literal arguments and the indexes on `events` its
/// plan must use (at least one of them: for a category, walking the global index and
/// filtering is as good when the category is a large share of the log).
struct Case {
    name: String,
    text: String,
    args: Vec<&'static str>,
    indexes: Vec<&'static str>,
}

fn case(
    name: impl Into<String>,
    s: &Statement,
    args: &[&'static str],
    idx: &[&'static str],
) -> Case {
    Case {
        name: name.into(),
        text: s.text().to_string(),
        args: args.to_vec(),
        indexes: idx.to_vec(),
    }
}

fn cases(sql: &Statements) -> Vec<Case> {
    const CHECKPOINT: &str = "events_checkpoint_idx";
    const NAME: &str = "events_name_checkpoint_idx";
    const CATEGORY: &str = "events_category_checkpoint_idx";
    const STREAM: &str = "events_stream_version_unique";
    // `$1` transaction, `$2` position, then categories and names, then the limit: a reader
    // near the start of a long log, the case that used to scan the rest of it.
    let filter_args = |family: &str| -> (Vec<&'static str>, Vec<&'static str>) {
        match family {
            "all" => (vec!["1001", "1"], vec![CHECKPOINT]),
            "category" => (vec!["1001", "1", "{acct}"], vec![CATEGORY, CHECKPOINT]),
            // Many values: the global index, or the values' own (in a custom plan that sees
            // them; a sort of what that returns is checked apart).
            "many_categories" => (vec!["1001", "1", "{acct}"], vec![CHECKPOINT, CATEGORY]),
            "name" => (vec!["1001", "1", "{Name7,Rare}"], vec![NAME]),
            "many_names" => (vec!["1001", "1", "{Name7,Rare}"], vec![CHECKPOINT, NAME]),
            // Both filters: any index serving one of them (the planner knows which is rarer).
            _ => (
                vec!["1001", "1", "{acct}", "{Name7}"],
                vec![NAME, CATEGORY, CHECKPOINT],
            ),
        }
    };
    let mut cases = Vec::new();
    for (family, statement) in sql.read_all.each() {
        let (mut args, idx) = filter_args(family);
        args.push("500");
        cases.push(case(format!("read_all/{family}"), statement, &args, &idx));
    }
    for (family, statement) in sql.read_all_lean.each() {
        let (mut args, idx) = filter_args(family);
        args.push("500");
        cases.push(case(
            format!("read_all_lean/{family}"),
            statement,
            &args,
            &idx,
        ));
    }
    for (family, statement) in sql.unread.each() {
        let (args, idx) = filter_args(family);
        cases.push(case(format!("unread/{family}"), statement, &args, &idx));
    }
    for (family, statement) in sql.count_upto.each() {
        let (mut args, idx) = filter_args(family);
        args.push("10001");
        cases.push(case(format!("count_upto/{family}"), statement, &args, &idx));
    }
    let uuids = "{00000000-0000-0000-0000-000000000001}";
    let append_args = |expected: &'static str| {
        vec![
            "user-1", expected, uuids, "{E}", "{1}", "{\"{}\"}", "{\"{}\"}", uuids, "{NULL}",
        ]
    };
    for (kind, expected, arg) in [
        ("any", ExpectedVersion::Any, ""),
        ("no_stream", ExpectedVersion::NoStream, "0"),
        ("stream_exists", ExpectedVersion::StreamExists, "-1"),
        (
            "exact",
            ExpectedVersion::Exact(eventsource_core::Version(3)),
            "3",
        ),
    ] {
        let args = if arg.is_empty() {
            // `$2` NULL for `Any`: a literal NULL argument.
            let mut a = append_args("0");
            a[1] = "NULL";
            a
        } else {
            append_args(arg)
        };
        cases.push(case(
            format!("append_fast/{kind}"),
            sql.append_fast.pick(expected),
            &args,
            &[],
        ));
        // The same head, one event from scalar parameters.
        let mut one = args.clone();
        one[2..].copy_from_slice(&[
            "00000000-0000-0000-0000-000000000001",
            "E",
            "1",
            "{}",
            "{}",
            "00000000-0000-0000-0000-000000000002",
            "NULL",
        ]);
        cases.push(case(
            format!("append_fast_one/{kind}"),
            sql.append_fast.pick_one(expected),
            &one,
            &[],
        ));
    }
    cases.extend([
        case(
            "read_stream",
            &sql.read_stream,
            &["user-1", "3", "500"],
            &[STREAM],
        ),
        case(
            "read_stream_for_fold",
            &sql.read_stream_for_fold,
            &["user-1", "3", "500"],
            &[STREAM],
        ),
        case("stream_version", &sql.stream_version, &["user-1"], &[]),
        case("head_position", &sql.head_position, &[], &["events_pkey"]),
        case(
            "find_event",
            &sql.find_event,
            &[uuids],
            &["events_event_id_unique"],
        ),
        case("load_checkpoint", &sql.load_checkpoint, &["p"], &[]),
        case(
            "start_checkpoint",
            &sql.start_checkpoint,
            &["p", "1001", "5"],
            &[],
        ),
        case(
            "move_checkpoint",
            &sql.move_checkpoint,
            &["p", "1001", "5", "1000", "1"],
            &[],
        ),
        case(
            "scan_page",
            &sql.scan_page,
            &["user-1", "3", "500"],
            &[STREAM],
        ),
        case("clock", &sql.clock, &[], &[CHECKPOINT]),
        case("transaction_ids", &sql.transaction_ids, &[], &[CHECKPOINT]),
    ]);
    cases
}

/// Problems with one plan (node tree of `EXPLAIN (FORMAT JSON)`).
fn problems(plan: &Value, case: &Case) -> Vec<String> {
    let mut found = Vec::new();
    let mut used = Vec::new();
    walk(plan, false, false, &mut used, &mut found);
    if !case.indexes.is_empty() && !case.indexes.iter().any(|i| used.iter().any(|u| u == i)) {
        found.push(format!("uses none of {:?} (uses {used:?})", case.indexes));
    }
    found
}

/// The indexes on `events` whose scans start at one value (a name, a category, a stream): a
/// sort of what they return costs what that value holds, not what the log holds.
const VALUE_INDEXES: [&str; 3] = [
    "events_name_checkpoint_idx",
    "events_category_checkpoint_idx",
    "events_stream_version_unique",
];

/// `unbounded_sort`: under a Sort with no Limit between it and this node. `limited`: right
/// under a Limit (through subquery scans only), so that a scan without a filter stops there.
fn walk(
    node: &Value,
    unbounded_sort: bool,
    limited: bool,
    used: &mut Vec<String>,
    found: &mut Vec<String>,
) {
    let kind = node["Node Type"].as_str().unwrap_or_default();
    let relation = node["Relation Name"].as_str().unwrap_or_default();
    let index = node["Index Name"].as_str();
    if let Some(index) = index {
        used.push(index.to_owned());
    }
    // A sequential scan of the first rows, whatever they are, is bounded by its limit.
    let bounded = limited && node.get("Filter").is_none();
    if relation == "events" && kind == "Seq Scan" && !bounded {
        found.push("reads events by a sequential scan".to_owned());
    }
    let scans_events = relation == "events" && kind != "Bitmap Heap Scan"
        || kind == "Bitmap Index Scan" && index.is_some_and(|i| i.starts_with("events_"));
    if scans_events && unbounded_sort && !index.is_some_and(|i| VALUE_INDEXES.contains(&i)) {
        found.push(format!(
            "sorts what a {kind} of the whole log returns ({index:?})"
        ));
    }
    let unbounded_sort = match kind {
        "Sort" | "Incremental Sort" => true,
        "Limit" => false,
        _ => unbounded_sort,
    };
    let limited = kind == "Limit" || limited && kind == "Subquery Scan";
    if let Some(children) = node["Plans"].as_array() {
        for child in children {
            walk(child, unbounded_sort, limited, used, found);
        }
    }
}

fn database_url() -> String {
    match std::env::var("DATABASE_URL") {
        Ok(url) if !url.trim().is_empty() => url,
        _ => panic!(
            "DATABASE_URL is not set: the plan tests need a PostgreSQL server. Run \
             `scripts/test.sh` (it starts a throwaway PostgreSQL and sets DATABASE_URL)"
        ),
    }
}

/// A store in a new schema `t_<what>_<uuid>`, migrated, on a pool of two connections.
async fn migrated_store(what: &str) -> PostgresStore {
    let schema = format!("t_{what}_{}", uuid::Uuid::now_v7().simple());
    let store = PostgresStore::builder()
        .schema(schema.as_str())
        .max_connections(2)
        .acquire_timeout(Duration::from_secs(20))
        .connect(&database_url())
        .await
        .unwrap_or_else(|e| panic!("the {what} tests need a reachable PostgreSQL server: {e}"));
    store.migrate().await.unwrap();
    store
}

#[tokio::test]
async fn every_statement_reads_events_by_its_index_with_and_without_statistics() {
    let store = migrated_store("plans").await;
    let s = store.schema().quoted();
    let mut conn = store.pool().acquire().await.unwrap();
    // No autovacuum: the table stays never-analysed until the test analyses it. STREAMS streams
    // of 10 events, 100 names (one of them 1 %), 10 events per transaction.
    let stream = format!(
        "(ARRAY['acct', 'user', 'order', 'ship'])[(g % {STREAMS}) % 4 + 1] || '-' || \
         (g % {STREAMS})"
    );
    let load = format!(
        "ALTER TABLE {s}.events SET (autovacuum_enabled = false); \
         ALTER TABLE {s}.streams SET (autovacuum_enabled = false); \
         INSERT INTO {s}.events \
             (transaction_id, stream_id, version, event_id, name, schema_version, payload, \
              metadata) \
         SELECT 1000 + g / 10, {stream}, g / {STREAMS} + 1, gen_random_uuid(), \
                'Name' || (g % 100), 1, '{{\"amount\": 1}}', '{{}}' \
           FROM generate_series(0, {last}) g; \
         INSERT INTO {s}.streams (stream_id, version) \
         SELECT {stream_i}, 10 FROM generate_series(0, {streams}) i;",
        last = ROWS - 1,
        streams = STREAMS - 1,
        stream = stream,
        stream_i = "(ARRAY['acct', 'user', 'order', 'ship'])[i % 4 + 1] || '-' || i",
    );
    sqlx::raw_sql(AssertSqlSafe(load))
        .execute(&mut *conn)
        .await
        .unwrap();
    let never_analysed: bool = sqlx::query_scalar(
        "SELECT NOT EXISTS (SELECT 1 FROM pg_catalog.pg_stats \
          WHERE schemaname = $1 AND tablename = 'events')",
    )
    .bind(store.schema().as_str())
    .fetch_one(&mut *conn)
    .await
    .unwrap();
    assert!(
        never_analysed,
        "the events table must start without statistics"
    );

    let cases = cases(store.sql());
    let mut report = String::new();
    let mut round = 0;
    for statistics in ["never analysed", "analysed"] {
        if statistics == "analysed" {
            sqlx::raw_sql(AssertSqlSafe(store.sql().analyze.text()))
                .execute(&mut *conn)
                .await
                .unwrap();
        }
        for mode in ["force_generic_plan", "force_custom_plan"] {
            round += 1;
            let set = format!("SET plan_cache_mode = {mode}");
            sqlx::raw_sql(AssertSqlSafe(set))
                .execute(&mut *conn)
                .await
                .unwrap();
            for (i, case) in cases.iter().enumerate() {
                let name = format!("plan_test_{round}_{i}");
                let args: Vec<String> = case
                    .args
                    .iter()
                    .map(|a| {
                        if *a == "NULL" {
                            "NULL".to_owned()
                        } else {
                            format!("'{a}'")
                        }
                    })
                    .collect();
                let execute = if args.is_empty() {
                    format!("EXECUTE {name}")
                } else {
                    format!("EXECUTE {name}({})", args.join(", "))
                };
                let script = format!("PREPARE {name} AS {text}", text = case.text);
                sqlx::raw_sql(AssertSqlSafe(script))
                    .execute(&mut *conn)
                    .await
                    .unwrap_or_else(|e| panic!("{}: cannot prepare: {e}", case.name));
                let explain = format!("EXPLAIN (FORMAT JSON) {execute}");
                let row = sqlx::raw_sql(AssertSqlSafe(explain))
                    .fetch_one(&mut *conn)
                    .await
                    .unwrap_or_else(|e| panic!("{}: cannot explain: {e}", case.name));
                let json: Value = row.try_get(0).unwrap();
                let text = json.to_string();
                let plan = &json[0]["Plan"];
                for problem in problems(plan, case) {
                    let _ = writeln!(
                        report,
                        "{} ({statistics}, {mode}): {problem}\n{text}",
                        case.name
                    );
                }
            }
        }
    }
    let drop = format!("DROP SCHEMA {s} CASCADE");
    sqlx::raw_sql(AssertSqlSafe(drop))
        .execute(&mut *conn)
        .await
        .unwrap();
    conn.close().await.unwrap();
    assert!(report.is_empty(), "plans that depend on luck:\n{report}");
}

/// The names of `super::EVENT_COLUMNS`, in order.
fn event_columns() -> Vec<&'static str> {
    super::EVENT_COLUMNS.split(',').map(str::trim).collect()
}

/// `row::decode_event_at` reads the event's columns by position: every statement it decodes
/// must select them in the order of `EVENT_COLUMNS`, starting at the column it is given.
#[tokio::test]
async fn event_columns_in_order() {
    use sqlx::{Column as _, Executor as _, SqlSafeStr as _, Statement as _};
    let store = migrated_store("columns").await;
    let sql = store.sql();
    // (statement, where its event columns start): the offsets `read.rs`, `decision.rs` and
    // `row::decode_parked` pass.
    let mut statements: Vec<(String, &Statement, usize)> = vec![
        ("read_stream".into(), &sql.read_stream, 0),
        ("find_event".into(), &sql.find_event, 0),
        ("read_query".into(), &sql.read_query, 2),
        ("parked".into(), &sql.parked, 5),
        ("due_for_retry".into(), &sql.due_for_retry, 5),
    ];
    for (family, statement) in sql.read_all.each() {
        statements.push((format!("read_all/{family}"), statement, 1));
    }
    for (family, statement) in sql.read_all_lean.each() {
        statements.push((format!("read_all_lean/{family}"), statement, 1));
    }
    let expected = event_columns();
    assert_eq!(expected.len(), 12, "{expected:?}");
    let mut conn = store.pool().acquire().await.unwrap();
    for (name, statement, first) in statements {
        let prepared = (&mut *conn)
            .prepare(AssertSqlSafe(statement.text().to_string()).into_sql_str())
            .await
            .unwrap_or_else(|e| panic!("{name}: cannot prepare: {e}"));
        let columns: Vec<&str> = prepared.columns().iter().map(|c| c.name()).collect();
        assert!(
            columns.len() >= first + expected.len(),
            "{name}: {columns:?}"
        );
        assert_eq!(
            &columns[first..first + expected.len()],
            expected.as_slice(),
            "{name}: the event's columns are not where `decode_event_at` reads them"
        );
    }
    let drop = format!("DROP SCHEMA {} CASCADE", store.schema().quoted());
    sqlx::raw_sql(AssertSqlSafe(drop))
        .execute(&mut *conn)
        .await
        .unwrap();
}
