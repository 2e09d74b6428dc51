//! `verify`'s checks added for scale (issue 22): positions and ids are scanned for repeats only
//! when no valid unique index guarantees them, and a big table never analysed is a warning.
//!
//! The tests need `DATABASE_URL` (`scripts/test.sh` starts a throwaway PostgreSQL and sets it);
//! without it they fail, they never skip.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use eventsource_core::{NewEvent, StreamId, Version};
use eventsource_postgres::sqlx::{self, AssertSqlSafe};
use eventsource_postgres::{Check, ImportEvent, PostgresStore, Severity};
use serde_json::json;
use uuid::Uuid;

async fn fresh_store() -> PostgresStore {
    let url = match std::env::var("DATABASE_URL") {
        Ok(url) if !url.trim().is_empty() => url,
        _ => panic!(
            "DATABASE_URL is not set: the verify tests need a PostgreSQL server. Run \
             `scripts/test.sh` (it starts a throwaway PostgreSQL and sets DATABASE_URL)"
        ),
    };
    let store = PostgresStore::builder()
        .schema(format!("t_{}", Uuid::now_v7().simple()))
        .max_connections(4)
        .acquire_timeout(Duration::from_secs(20))
        .connect(&url)
        .await
        .unwrap_or_else(|e| panic!("the verify tests need a reachable PostgreSQL server: {e}"));
    store.migrate().await.unwrap();
    store
}

async fn sql(store: &PostgresStore, statement: &str) {
    let statement = statement.replace("{s}", &format!("\"{}\"", store.schema()));
    sqlx::raw_sql(AssertSqlSafe(statement))
        .execute(store.pool())
        .await
        .unwrap();
}

fn events(streams: u64, per_stream: u64) -> Vec<ImportEvent> {
    (0..streams)
        .flat_map(|s| {
            (1..=per_stream).map(move |v| ImportEvent {
                stream: StreamId::from_raw(format!("account-{s}")),
                version: Version(v),
                event: NewEvent::new("account.deposited", 1, json!({ "amount": v })),
            })
        })
        .collect()
}

#[tokio::test]
async fn repeated_positions_and_ids_are_found_once_the_unique_indexes_are_gone() {
    let store = fresh_store().await;
    store.import(events(3, 2)).await.unwrap();
    assert!(store.admin().verify().await.unwrap().is_ok());
    // Without the constraints, a copy of event 1 under position 1 and the same id.
    sql(
        &store,
        "ALTER TABLE {s}.events DROP CONSTRAINT events_pkey; \
         ALTER TABLE {s}.events DROP CONSTRAINT events_event_id_unique; \
         INSERT INTO {s}.events \
             (position, transaction_id, stream_id, version, event_id, name, schema_version, \
              payload, metadata) OVERRIDING SYSTEM VALUE \
         SELECT position, transaction_id, 'account-9', 1, event_id, name, schema_version, \
                payload, metadata FROM {s}.events WHERE position = 1; \
         INSERT INTO {s}.streams VALUES ('account-9', 1);",
    )
    .await;
    let report = store.admin().verify().await.unwrap();
    let checks: Vec<Check> = report.findings.iter().map(|f| f.check).collect();
    assert!(checks.contains(&Check::Positions), "{report:?}");
    assert!(checks.contains(&Check::EventIds), "{report:?}");
    let position = report
        .findings
        .iter()
        .find(|f| f.check == Check::Positions)
        .unwrap();
    assert!(
        position.message.contains("account-9 v1"),
        "{}",
        position.message
    );
    // A non-unique index on the column guarantees nothing either.
    sql(
        &store,
        "CREATE INDEX plain_position ON {s}.events (position); \
         CREATE UNIQUE INDEX partial_ids ON {s}.events (event_id) WHERE version > 1;",
    )
    .await;
    let report = store.admin().verify().await.unwrap();
    let checks: Vec<Check> = report.findings.iter().map(|f| f.check).collect();
    assert!(checks.contains(&Check::Positions), "{report:?}");
    assert!(checks.contains(&Check::EventIds), "{report:?}");
}

#[tokio::test]
async fn a_big_table_never_analysed_is_a_warning_until_it_is() {
    let store = fresh_store().await;
    // Autovacuum must not analyse it first.
    sql(
        &store,
        "ALTER TABLE {s}.events SET (autovacuum_enabled = false); \
         ALTER TABLE {s}.streams SET (autovacuum_enabled = false);",
    )
    .await;
    store.import(events(1_001, 10)).await.unwrap();
    // The statistics collector learns of the rows within a second or so.
    let deadline = Instant::now() + Duration::from_secs(30);
    let report = loop {
        let report = store.admin().verify().await.unwrap();
        if report.findings.iter().any(|f| f.check == Check::Statistics) || Instant::now() > deadline
        {
            break report;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    let warning = report
        .findings
        .iter()
        .find(|f| f.check == Check::Statistics)
        .unwrap_or_else(|| panic!("no statistics warning: {report:?}"));
    assert_eq!(warning.severity, Severity::Warning);
    assert!(warning.message.contains("`events`"), "{}", warning.message);
    assert!(warning.message.contains("ANALYZE"), "{}", warning.message);
    assert_eq!(report.problems, 0, "{report:?}");
    sql(&store, "ANALYZE {s}.events; ANALYZE {s}.streams;").await;
    let report = store.admin().verify().await.unwrap();
    assert!(
        report.findings.iter().all(|f| f.check != Check::Statistics),
        "{report:?}"
    );
}

#[tokio::test]
async fn metadata_that_does_not_decode_is_found_by_the_scan() {
    let store = fresh_store().await;
    store.import(events(2, 3)).await.unwrap();
    sql(
        &store,
        "INSERT INTO {s}.events (stream_id, version, event_id, name, schema_version, payload, \
                                 metadata) \
         VALUES ('account-m', 1, gen_random_uuid(), 'x', 1, '{}', \
                 '{\"correlation_id\": 5}'), \
                ('account-m', 2, gen_random_uuid(), 'x', 1, '{}', '[1]'); \
         INSERT INTO {s}.streams VALUES ('account-m', 2);",
    )
    .await;
    let report = store.admin().verify().await.unwrap();
    let metadata: Vec<_> = report
        .findings
        .iter()
        .filter(|f| f.check == Check::Metadata)
        .collect();
    assert_eq!(metadata.len(), 2, "{report:?}");
    assert!(
        metadata[0].message.contains("does not decode"),
        "{}",
        metadata[0].message
    );
    assert_eq!(metadata[0].version, Some(1));
    assert!(
        metadata[1].message.contains("an array"),
        "{}",
        metadata[1].message
    );
    assert_eq!(report.events, 8);
    assert_eq!(report.streams, 3);
}

#[tokio::test]
async fn counts_after_a_checkpoint_are_exact_up_to_the_limit_and_estimated_beyond() {
    use eventsource_core::{Checkpoint, EventStore, LogFilter, ProjectionStore};
    use eventsource_postgres::EXACT_COUNT_LIMIT;
    let store = fresh_store().await;
    let mut input = events(1_200, 10);
    // One event in a hundred has a name of its own.
    for (i, event) in input.iter_mut().enumerate() {
        if i % 100 == 0 {
            event.event.name = "account.flagged".into();
        }
    }
    store.import(input).await.unwrap();
    sql(&store, "ANALYZE {s}.events").await;
    let admin = store.admin();
    let (all, estimated) = admin
        .count_after_estimated(Checkpoint::START, &LogFilter::all())
        .await
        .unwrap();
    assert!(estimated);
    assert_eq!(all, 12_000, "head position minus the checkpoint's");
    assert!(all > EXACT_COUNT_LIMIT);
    assert_eq!(
        ProjectionStore::count_after(&store, Checkpoint::START, &LogFilter::all())
            .await
            .unwrap(),
        12_000
    );
    // Few enough to count exactly.
    let mut flagged = LogFilter::all();
    flagged.names = vec!["account.flagged".into()];
    assert_eq!(
        admin
            .count_after_estimated(Checkpoint::START, &flagged)
            .await
            .unwrap(),
        (120, false)
    );
    // Many, filtered: the planner's estimate, at least the limit.
    let mut deposits = LogFilter::all();
    deposits.names = vec!["account.deposited".into()];
    let (count, estimated) = admin
        .count_after_estimated(Checkpoint::START, &deposits)
        .await
        .unwrap();
    assert!(estimated);
    assert!((EXACT_COUNT_LIMIT + 1..=13_000).contains(&count), "{count}");
    // Near the end: exact again.
    let events = store
        .read_all(Checkpoint::START, 11_990, &LogFilter::all())
        .await
        .unwrap();
    let near_end = events.last().unwrap().checkpoint;
    assert_eq!(
        admin
            .count_after_estimated(near_end, &LogFilter::all())
            .await
            .unwrap(),
        (10, false)
    );
}
