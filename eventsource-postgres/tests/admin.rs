//! The admin API (`PostgresStore::admin`) against a real PostgreSQL server: schema diagnostics,
//! counts, checkpoints, held-back counts, the log's start at a position, and every integrity
//! check of `verify` on a store broken on purpose.
//!
//! Every test works in a schema of its own. The tests need `DATABASE_URL` (`scripts/test.sh`
//! starts a throwaway cluster and sets it); without it they fail, they never skip.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use eventsource_core::{
    Checkpoint, EventStore, ExpectedVersion, LogFilter, Metadata, NewEvent, Position,
    ProjectionStore, StoreError, StreamId,
};
use eventsource_postgres::sqlx::{self, AssertSqlSafe};
use eventsource_postgres::{
    Check, PostgresError, PostgresStore, SCHEMA_VERSION, Severity, VerifyReport,
};
use serde_json::json;
use uuid::Uuid;

fn database_url() -> String {
    match std::env::var("DATABASE_URL") {
        Ok(url) if !url.trim().is_empty() => url,
        _ => panic!(
            "DATABASE_URL is not set: the admin tests need a PostgreSQL server. Run \
             `scripts/test.sh` (it starts a throwaway PostgreSQL and sets DATABASE_URL)"
        ),
    }
}

fn unique_schema() -> String {
    format!("t_{}", Uuid::now_v7().simple())
}

/// A store in a schema of its own, not migrated; reads never wait for other tests' open
/// transactions longer than a moment.
async fn store_in(schema: &str) -> PostgresStore {
    PostgresStore::builder()
        .schema(schema)
        .max_connections(4)
        .acquire_timeout(Duration::from_secs(20))
        .horizon_wait(Duration::from_secs(5))
        .connect(&database_url())
        .await
        .unwrap_or_else(|e| panic!("the admin tests need a reachable PostgreSQL server: {e}"))
}

async fn fresh_store() -> PostgresStore {
    let store = store_in(&unique_schema()).await;
    store.migrate().await.unwrap();
    store
}

/// Runs `statement` with `{s}` standing for the quoted schema.
async fn sql(store: &PostgresStore, statement: &str) {
    let statement = statement.replace("{s}", &format!("\"{}\"", store.schema()));
    sqlx::raw_sql(AssertSqlSafe(statement))
        .execute(store.pool())
        .await
        .unwrap();
}

fn event(name: &str) -> NewEvent {
    NewEvent::new(name, 1, json!({ "n": 1 }))
}

async fn append(store: &PostgresStore, stream: &str, names: &[&str]) {
    store
        .append(
            &StreamId::from_raw(stream),
            ExpectedVersion::Any,
            names.iter().map(|n| event(n)).collect(),
        )
        .await
        .unwrap();
}

/// Waits until every committed event is readable (other tests' open transactions may hold
/// the horizon back for a moment).
async fn settle(store: &PostgresStore, count: usize) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while store
        .read_all(Checkpoint::START, 10_000, &LogFilter::all())
        .await
        .unwrap()
        .len()
        < count
    {
        assert!(Instant::now() < deadline, "the log did not settle");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schema_diagnostics_say_what_is_missing() {
    let store = store_in(&unique_schema()).await;
    let admin = store.admin();
    let schema = store.schema().to_string();

    let status = admin.schema_status().await.unwrap();
    assert!(!status.exists);
    assert_eq!(status.version, None);
    match admin.require_current_schema().await {
        Err(PostgresError::SchemaMissing { schema: s }) => assert_eq!(s, schema),
        other => panic!("expected SchemaMissing, got {other:?}"),
    }

    sql(&store, "CREATE SCHEMA {s}").await;
    let status = admin.schema_status().await.unwrap();
    assert!(status.exists);
    assert_eq!(status.missing_table, Some("schema_migrations"));
    let error = admin.require_current_schema().await.unwrap_err();
    assert!(
        matches!(
            error,
            PostgresError::NotMigrated {
                missing_table: "schema_migrations",
                ..
            }
        ),
        "{error:?}"
    );
    assert!(
        error
            .to_string()
            .contains(&format!("schema `{schema}` holds no event store")),
        "{error}"
    );

    let migrated = admin.migrate().await.unwrap();
    assert_eq!(
        (migrated.from_version, migrated.to_version),
        (0, SCHEMA_VERSION)
    );
    let again = admin.migrate().await.unwrap();
    assert_eq!(
        (again.from_version, again.to_version),
        (SCHEMA_VERSION, SCHEMA_VERSION)
    );
    assert_eq!(
        admin.require_current_schema().await.unwrap(),
        SCHEMA_VERSION
    );
    let status = admin.schema_status().await.unwrap();
    assert_eq!(status.missing_table, None);
    assert_eq!(status.version, Some(SCHEMA_VERSION));

    // A schema whose bookkeeping says nothing was applied; then one from a newer release.
    sql(&store, "DELETE FROM {s}.schema_migrations").await;
    assert!(
        matches!(
            admin.require_current_schema().await,
            Err(PostgresError::SchemaOutdated { found: 0, .. })
        ),
        "an emptied schema_migrations is outdated"
    );
    sql(
        &store,
        "INSERT INTO {s}.schema_migrations (version, description) VALUES (1, 'x'), (99, 'future')",
    )
    .await;
    assert!(matches!(
        admin.require_current_schema().await,
        Err(PostgresError::SchemaTooNew { found: 99, .. })
    ));
    // The status needs a current schema; verify reports on any.
    assert!(admin.status().await.is_err());
    let report = admin.verify().await.unwrap();
    assert_eq!(report.schema_version, 99);
    assert!(
        report
            .findings
            .iter()
            .any(|f| f.check == Check::SchemaVersion && f.message.contains("99 is newer")),
        "{report:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_counts_the_store_and_its_checkpoints() {
    let store = fresh_store().await;
    let admin = store.admin();
    let empty = admin.status().await.unwrap();
    assert_eq!((empty.counts.events, empty.counts.streams), (0, 0));
    assert_eq!(empty.counts.last_recorded_at, None);
    assert_eq!(empty.head_position, Position(0));
    assert!(empty.checkpoints.is_empty());

    append(&store, "account-ada", &["opened", "deposited"]).await;
    append(&store, "account-bob", &["opened"]).await;
    settle(&store, 3).await;
    let events = store
        .read_all(Checkpoint::START, 10, &LogFilter::all())
        .await
        .unwrap();
    // A projection that applied the first event, one at the start.
    let balances = store
        .acquire_lease("balances", &LogFilter::all())
        .await
        .unwrap();
    let tx = store.begin(&balances).await.unwrap();
    store
        .commit(tx, "balances", None, events[0].checkpoint)
        .await
        .unwrap();
    let audit = store
        .acquire_lease("audit", &LogFilter::all())
        .await
        .unwrap();
    let tx = store.begin(&audit).await.unwrap();
    store
        .commit(tx, "audit", None, events[2].checkpoint)
        .await
        .unwrap();
    drop(audit);
    // One that reads only openings: behind counts only those.
    let openings = store
        .acquire_lease("openings", &LogFilter::all().name("opened"))
        .await
        .unwrap();
    let tx = store.begin(&openings).await.unwrap();
    store
        .commit(tx, "openings", None, events[0].checkpoint)
        .await
        .unwrap();
    drop(openings);

    let status = admin.status().await.unwrap();
    assert_eq!(status.schema_version, SCHEMA_VERSION);
    assert_eq!((status.counts.events, status.counts.streams), (3, 2));
    assert!(status.counts.last_recorded_at.is_some());
    assert_eq!(status.head_position, events[2].position);
    let checkpoints: Vec<(&str, Checkpoint, u64)> = status
        .checkpoints
        .iter()
        .map(|c| (c.projection.as_str(), c.checkpoint, c.behind))
        .collect();
    assert_eq!(
        checkpoints,
        [
            ("audit", events[2].checkpoint, 0),
            ("balances", events[0].checkpoint, 2),
            ("openings", events[0].checkpoint, 1),
        ]
    );
    assert_eq!(status.checkpoints[2].event_names, ["opened"]);
    assert_eq!(
        admin.checkpoint("balances").await.unwrap(),
        Some(events[0].checkpoint)
    );

    // A reset is a request: the checkpoint stays, marked, and only moves back to the start.
    assert_eq!(
        admin.request_reset("balances").await.unwrap(),
        Some(events[0].checkpoint)
    );
    assert_eq!(admin.request_reset("nobody").await.unwrap(), None);
    let listed = admin.checkpoints().await.unwrap();
    assert!(listed[1].reset_requested_at.is_some());
    assert_eq!(
        listed[1].behind, 3,
        "a reset projection has the whole log to apply"
    );
    assert!(store.reset_requested("balances").await.unwrap());
    let tx = store.begin(&balances).await.unwrap();
    let refused = store
        .commit(
            tx,
            "balances",
            Some(events[0].checkpoint),
            events[1].checkpoint,
        )
        .await
        .unwrap_err();
    assert!(
        matches!(refused, StoreError::ResetRequested { ref projection } if projection == "balances"),
        "{refused}"
    );
    // The rebuild's commit (to the start) clears it.
    let tx = store.begin(&balances).await.unwrap();
    store
        .commit(
            tx,
            "balances",
            Some(events[0].checkpoint),
            Checkpoint::START,
        )
        .await
        .unwrap();
    assert_eq!(store.load_checkpoint("balances").await.unwrap(), None);
    assert!(!store.reset_requested("balances").await.unwrap());
    assert_eq!(
        admin.checkpoints().await.unwrap()[1].reset_requested_at,
        None
    );

    // A runner that was not stopped, still at the old checkpoint, cannot move past the rebuild.
    let tx = store.begin(&balances).await.unwrap();
    let error = store
        .commit(
            tx,
            "balances",
            Some(events[0].checkpoint),
            events[1].checkpoint,
        )
        .await
        .unwrap_err();
    assert!(
        matches!(error, StoreError::CheckpointMoved { actual: None, .. }),
        "{error:?}"
    );
    assert_eq!(store.load_checkpoint("balances").await.unwrap(), None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_projection_names_are_values() {
    let store = fresh_store().await;
    let admin = store.admin();
    let hostile = "x'); DROP TABLE checkpoints; --\"ü\\'\\\\E'";
    let lease = store
        .acquire_lease(hostile, &LogFilter::all().name(hostile))
        .await
        .unwrap();
    let tx = store.begin(&lease).await.unwrap();
    store
        .commit(tx, hostile, None, Checkpoint::from_parts(1, 1))
        .await
        .unwrap();
    let listed = admin.checkpoints().await.unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].projection, hostile);
    assert_eq!(listed[0].event_names, [hostile]);
    assert_eq!(
        admin.request_reset(hostile).await.unwrap(),
        Some(Checkpoint::from_parts(1, 1))
    );
    assert!(
        admin.checkpoints().await.unwrap()[0]
            .reset_requested_at
            .is_some()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn count_after_counts_events_held_back_behind_an_open_transaction() {
    let store = fresh_store().await.with_horizon_wait(Duration::ZERO);
    let admin = store.admin();
    append(&store, "account-a", &["opened"]).await;
    settle(&store, 1).await;
    let first = store
        .read_all(Checkpoint::START, 10, &LogFilter::all())
        .await
        .unwrap()[0]
        .checkpoint;

    // An open transaction that has appended holds back everything committed after it.
    let mut open = store.pool().begin().await.unwrap();
    store
        .append_in(
            &mut open,
            &StreamId::from_raw("account-slow"),
            ExpectedVersion::Any,
            vec![event("opened")],
        )
        .await
        .unwrap();
    append(&store, "account-b", &["opened", "deposited"]).await;
    append(&store, "transfer-t", &["requested"]).await;

    let page = store.read_all(first, 10, &LogFilter::all()).await.unwrap();
    assert!(page.is_empty(), "held back: {page:?}");
    assert_eq!(
        admin.count_after(first, &LogFilter::all()).await.unwrap(),
        3
    );
    let accounts = LogFilter::all().category("account");
    assert_eq!(admin.count_after(first, &accounts).await.unwrap(), 2);
    let deposits = LogFilter::all().name("deposited");
    assert_eq!(admin.count_after(first, &deposits).await.unwrap(), 1);
    let both = LogFilter::all().category("transfer").name("requested");
    assert_eq!(admin.count_after(first, &both).await.unwrap(), 1);
    assert_eq!(
        admin
            .count_after(Checkpoint::START, &LogFilter::all())
            .await
            .unwrap(),
        4
    );
    open.commit().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_checkpoint_from_a_position_misses_no_event_at_or_after_it() {
    let store = fresh_store().await;
    let admin = store.admin();
    for i in 0..5 {
        append(&store, &format!("account-{i}"), &["opened", "deposited"]).await;
    }
    settle(&store, 10).await;
    assert_eq!(
        admin.checkpoint_from_position(Position(0)).await.unwrap(),
        Checkpoint::START
    );
    for from in [1, 2, 5, 9, 10, 11, u64::MAX] {
        let checkpoint = admin
            .checkpoint_from_position(Position(from))
            .await
            .unwrap();
        let positions: Vec<u64> = store
            .read_all(checkpoint, 100, &LogFilter::all())
            .await
            .unwrap()
            .iter()
            .map(|e| e.position.0)
            .filter(|p| *p >= from)
            .collect();
        let expected: Vec<u64> = (from..=10).collect();
        assert_eq!(positions, expected, "from position {from}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_checkpoint_from_a_position_skips_the_start_of_a_bulk_transaction() {
    let store = fresh_store().await;
    let names = vec!["deposited"; 50];
    append(&store, "account-bulk", &names).await;
    settle(&store, 50).await;
    let checkpoint = store
        .admin()
        .checkpoint_from_position(Position(40))
        .await
        .unwrap();
    let positions: Vec<u64> = store
        .read_all(checkpoint, 100, &LogFilter::all())
        .await
        .unwrap()
        .iter()
        .map(|e| e.position.0)
        .collect();
    assert_eq!(positions, (40..=50).collect::<Vec<_>>());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_finds_nothing_wrong_with_a_healthy_store() {
    let store = fresh_store().await;
    append(&store, "account-ada", &["opened", "deposited", "withdrawn"]).await;
    append(&store, "account-bob", &["opened"]).await;
    let mut seen = Vec::new();
    let report = store
        .admin()
        .verify_with_progress(|progress| seen.push((progress.scanned, progress.total)))
        .await
        .unwrap();
    assert!(report.is_ok(), "{report:?}");
    assert_eq!(report.findings, []);
    assert_eq!(
        (report.events, report.streams, report.checkpoints),
        (4, 2, 0)
    );
    assert_eq!(report.schema_version, SCHEMA_VERSION);
    assert_eq!(seen.last(), Some(&(4, 4)));
}

/// The findings of `check` in `report`.
fn findings(report: &VerifyReport, check: Check) -> Vec<&eventsource_postgres::Finding> {
    report
        .findings
        .iter()
        .filter(|f| f.check == check)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_locates_every_kind_of_damage() {
    let store = fresh_store().await;
    append(&store, "account-gap", &["a", "b", "c"]).await;
    append(&store, "account-ok", &["a"]).await;
    let lease = store
        .acquire_lease("ahead", &LogFilter::all())
        .await
        .unwrap();
    let tx = store.begin(&lease).await.unwrap();
    store
        .commit(tx, "ahead", None, Checkpoint::from_parts(1, 1_000))
        .await
        .unwrap();
    // Damage that only someone bypassing the store can do.
    sql(
        &store,
        "ALTER TABLE {s}.events DISABLE TRIGGER events_immutable;
         DROP TRIGGER events_no_truncate ON {s}.events;
         DELETE FROM {s}.events WHERE stream_id = 'account-gap' AND version = 2;
         UPDATE {s}.streams SET version = 7 WHERE stream_id = 'account-ok';
         INSERT INTO {s}.streams (stream_id, version) VALUES ('account-ghost', 2);
         UPDATE {s}.events SET metadata = 'null', payload = '\"text\"'
          WHERE stream_id = 'account-ok';
         INSERT INTO {s}.events (stream_id, version, event_id, name, schema_version, payload,
                                 metadata, transaction_id)
              VALUES ('account-future', 1, gen_random_uuid(), '', 0, '{}', '{}', '999999999999');
         INSERT INTO {s}.streams (stream_id, version) VALUES ('account-future', 1);
         INSERT INTO {s}.snapshots (stream_id, version, state_fingerprint, state, taken_at)
              VALUES ('account-gap', 9, 'x', '{}', now()), ('account-ok', 1, 'x', '{}', now());",
    )
    .await;

    let report = store.admin().verify().await.unwrap();
    assert!(!report.is_ok());
    // A snapshot past its stream's head (version 9 of a stream at 3) is flagged; one at the
    // head is not.
    let snapshots = findings(&report, Check::Snapshots);
    assert_eq!(snapshots.len(), 1, "{snapshots:?}");
    assert_eq!(snapshots[0].stream.as_deref(), Some("account-gap"));
    assert_eq!(snapshots[0].version, Some(9));
    assert!(
        snapshots[0].message.contains("past the stream's head (3)"),
        "{}",
        snapshots[0].message
    );
    let immutability = findings(&report, Check::Immutability);
    assert_eq!(immutability.len(), 2, "{immutability:?}");
    assert!(
        immutability[0]
            .message
            .contains("`events_immutable` on `events` is disabled")
    );
    assert!(
        immutability[1]
            .message
            .contains("`events_no_truncate` on `events` is missing")
    );

    let gap = findings(&report, Check::StreamVersions);
    assert_eq!(gap.len(), 1, "{gap:?}");
    assert_eq!(gap[0].stream.as_deref(), Some("account-gap"));
    assert_eq!(gap[0].version, Some(3));
    assert!(
        gap[0].message.contains("version 2 is missing"),
        "{}",
        gap[0].message
    );

    let heads = findings(&report, Check::StreamHead);
    let head_streams: Vec<_> = heads.iter().map(|f| f.stream.as_deref()).collect();
    assert_eq!(
        head_streams,
        [Some("account-ok"), Some("account-ghost")],
        "{heads:?}"
    );
    assert!(
        heads[0]
            .message
            .contains("`streams` says version 7, but the last event is version 1")
    );
    assert!(heads[1].message.contains("has no events"));

    let metadata = findings(&report, Check::Metadata);
    assert_eq!(metadata.len(), 1);
    assert!(
        metadata[0].message.contains("is null"),
        "{}",
        metadata[0].message
    );
    let payload = findings(&report, Check::Payload);
    assert_eq!(payload.len(), 1);
    assert_eq!(payload[0].severity, Severity::Warning);
    assert!(payload[0].message.contains("a JSON string"));

    assert_eq!(findings(&report, Check::EventName).len(), 1);
    let versions = findings(&report, Check::SchemaVersion);
    assert_eq!(versions.len(), 1);
    assert_eq!(versions[0].stream.as_deref(), Some("account-future"));

    let ahead = findings(&report, Check::Checkpoints);
    assert_eq!(ahead.len(), 1);
    assert_eq!(ahead[0].projection.as_deref(), Some("ahead"));
    assert_eq!(ahead[0].position, Some(1_000));

    let foreign = findings(&report, Check::TransactionIds);
    assert_eq!(foreign.len(), 1, "{foreign:?}");
    assert!(
        foreign[0].message.contains("999999999999"),
        "{}",
        foreign[0].message
    );

    assert_eq!(report.warnings, 1);
    assert_eq!(report.problems, report.findings.len() as u64 - 1);
    assert!(!report.findings_truncated());
    assert_eq!(report.checkpoints, 1);
    assert_eq!(report.streams, 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_of_a_schema_without_a_store_is_an_error_not_a_report() {
    let store = store_in(&unique_schema()).await;
    assert!(matches!(
        store.admin().verify().await,
        Err(PostgresError::SchemaMissing { .. })
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_that_never_answers_is_a_timeout_not_a_hang() {
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = silent.local_addr().unwrap().port();
    let started = Instant::now();
    let error = PostgresStore::builder()
        .acquire_timeout(Duration::from_millis(500))
        .connect(&format!("postgres://nobody@127.0.0.1:{port}/nothing"))
        .await
        .unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(10));
    assert!(
        matches!(error, PostgresError::ConnectTimeout { port: p, .. } if p == port),
        "{error:?}"
    );
    assert!(
        error.to_string().contains("no answer within 500 ms"),
        "{error}"
    );
    drop(silent);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_database_says_so() {
    let url = database_url();
    let base = url.rsplit_once('/').map_or(url.as_str(), |(base, _)| base);
    let error = PostgresStore::connect(&format!("{base}/no_such_database"))
        .await
        .unwrap_err();
    assert!(matches!(error, PostgresError::Connect { .. }), "{error:?}");
    assert!(error.to_string().contains("no_such_database"), "{error}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_accepts_metadata_the_store_wrote() {
    // The verify scan decodes metadata as the store does: a full envelope passes.
    let store = fresh_store().await;
    let mut metadata = Metadata {
        correlation_id: Some(Uuid::now_v7()),
        ..Metadata::default()
    };
    metadata.insert("request", &"r-1").unwrap();
    store
        .append(
            &StreamId::from_raw("account-m"),
            ExpectedVersion::NoStream,
            vec![event("opened").with_metadata(metadata)],
        )
        .await
        .unwrap();
    let report = store.admin().verify().await.unwrap();
    assert!(report.is_ok(), "{report:?}");
}

/// Inserts `count` events of stream `stream` (versions 1..=count) as a restore from another
/// cluster would: with transaction ids `first`, `first + step`, ... of that cluster.
async fn restore_events(store: &PostgresStore, stream: &str, count: i64, first: i64, step: i64) {
    sql(
        store,
        &format!(
            "INSERT INTO {{s}}.events (stream_id, version, event_id, name, schema_version, payload, \
                                      metadata, transaction_id) \
             SELECT '{stream}', v, gen_random_uuid(), 'restored', 1, '{{}}', '{{}}', {first} + (v - 1) * {step} \
               FROM generate_series(1, {count}) v; \
             INSERT INTO {{s}}.streams (stream_id, version) VALUES ('{stream}', {count});"
        ),
    )
    .await;
}

/// A store "restored" from a cluster whose ids run from below this cluster's counter to above
/// it (the young store: source ids 726..1684, target at 760): a new store instance
/// refuses until `migrate`; then new appends, also ones racing the repair, sort after every
/// restored event and a reader from the start gets every event once, each stream in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_store_straddling_the_cluster_counter_is_refused_then_rebased() {
    let store = fresh_store().await;
    // Ids from half this cluster's counter to well above it (a fresh cluster starts near 700).
    let next = store.admin().clock().await.unwrap().next as i64;
    let (first, step) = (next / 2, (next / 2 + 10_000) / 199);
    restore_events(&store, "account-old", 200, first, step).await;
    let projection_at = Checkpoint::from_parts((first + 100 * step) as u64, 0);
    let lease = store
        .acquire_lease("halfway", &LogFilter::all())
        .await
        .unwrap();
    let tx = store.begin(&lease).await.unwrap();
    store
        .commit(tx, "halfway", None, projection_at)
        .await
        .unwrap();

    // A new instance (the flag of `store` says it fitted when it was migrated).
    let moved = store_in(store.schema().as_str()).await;
    let clock = moved.admin().clock().await.unwrap();
    assert!(!clock.fits(), "{clock:?}");
    let error = moved
        .read_all(Checkpoint::START, 10, &LogFilter::all())
        .await
        .unwrap_err();
    assert!(error.to_string().contains("eventsource migrate"), "{error}");
    assert!(matches!(
        moved.admin().status().await,
        Err(PostgresError::ClusterMoved { .. })
    ));
    assert!(matches!(
        moved.admin().checkpoints().await,
        Err(PostgresError::ClusterMoved { .. })
    ));
    assert!(matches!(
        moved
            .admin()
            .count_after(Checkpoint::START, &LogFilter::all())
            .await,
        Err(PostgresError::ClusterMoved { .. })
    ));
    let report = moved.admin().verify().await.unwrap();
    assert_eq!(findings(&report, Check::TransactionIds).len(), 1);

    // Appenders that started before the repair (their instance fitted) race it.
    let racing = store.clone();
    let writers = tokio::spawn(async move {
        for i in 0..100 {
            racing
                .append(
                    &StreamId::from_raw(format!("account-new-{}", i % 5)),
                    ExpectedVersion::Any,
                    vec![event("new")],
                )
                .await
                .unwrap();
        }
    });
    let migrated = moved.admin().migrate().await.unwrap();
    writers.await.unwrap();
    let rebased = migrated.rebased.expect("re-based");
    assert_eq!(rebased.newest_event, (first + 199 * step) as u64);
    assert!(moved.admin().clock().await.unwrap().fits());
    assert!(moved.admin().verify().await.unwrap().is_ok());

    // Appends after the repair follow every restored event. (The racing ones that committed
    // before the repair took its lock sort among the restored events: they came through a
    // store instance that had found the store fitting before the "restore".)
    // Through the `append()` function (`append_in`), whose insert computes the id itself.
    let mut tx = moved.pool().begin().await.unwrap();
    moved
        .append_in(
            &mut tx,
            &StreamId::from_raw("account-after"),
            ExpectedVersion::NoStream,
            vec![event("new")],
        )
        .await
        .unwrap();
    tx.commit().await.unwrap();
    settle(&moved, 301).await;
    let mut after = Checkpoint::START;
    let mut all = Vec::new();
    loop {
        let page = moved.read_all(after, 64, &LogFilter::all()).await.unwrap();
        let Some(last) = page.last() else { break };
        after = last.checkpoint;
        all.extend(page);
    }
    assert_eq!(all.len(), 301);
    let mut versions = std::collections::HashMap::new();
    for pair in all.windows(2) {
        assert!(pair[0].checkpoint < pair[1].checkpoint);
    }
    for e in &all {
        let previous = versions
            .insert(e.stream_id.clone(), e.version.0)
            .unwrap_or(0);
        assert_eq!(e.version.0, previous + 1, "{}", e.stream_id);
    }
    // The halfway projection resumes on the restored events after its checkpoint, then on
    // the new one, which sorts after the last restored one.
    let after_halfway = moved
        .read_all(projection_at, 1_000, &LogFilter::all())
        .await
        .unwrap();
    let restored_after = after_halfway
        .iter()
        .filter(|e| e.name == "restored")
        .count();
    assert_eq!(restored_after, 100);
    let last = all.last().unwrap();
    assert_eq!(last.stream_id.as_str(), "account-after");
    assert_eq!(
        after_halfway.last().map(|e| e.event_id),
        Some(last.event_id)
    );
    assert_eq!(
        moved.admin().checkpoints().await.unwrap()[0].behind,
        after_halfway.len() as u64,
        "status counts every event the projection has not applied"
    );
    // Idempotent.
    let again = moved.admin().migrate().await.unwrap();
    assert_eq!(again.rebased, None);
}

/// Damage, not a move: a missing offset row is refused with a message naming the repair,
/// which puts it back; an id no cluster could have written is refused without a re-base.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_offset_row_or_an_absurd_id_is_reported_not_guessed() {
    let store = fresh_store().await;
    append(&store, "account-a", &["a"]).await;
    sql(&store, "DELETE FROM {s}.transaction_offset").await;
    let fresh = store_in(store.schema().as_str()).await;
    let error = fresh
        .append(
            &StreamId::from_raw("account-a"),
            ExpectedVersion::Any,
            vec![event("b")],
        )
        .await
        .unwrap_err();
    assert!(error.to_string().contains("transaction_offset"), "{error}");
    assert!(error.to_string().contains("migrate"), "{error}");
    let report = fresh.admin().verify().await.unwrap();
    assert_eq!(findings(&report, Check::TransactionIds).len(), 1);
    fresh.migrate().await.unwrap();
    assert_eq!(fresh.admin().clock().await.unwrap().offset, 0);
    append(&fresh, "account-a", &["b"]).await;

    let absurd = fresh_store().await;
    restore_events(&absurd, "account-x", 1, i64::MAX - 5, 1).await;
    let error = absurd.admin().migrate().await.unwrap_err();
    assert!(error.to_string().contains("too large"), "{error}");
    let fresh = store_in(absurd.schema().as_str()).await;
    assert!(matches!(
        fresh.admin().status().await,
        Err(PostgresError::ClusterMoved { .. })
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_keeps_the_first_findings_and_counts_every_one() {
    let store = fresh_store().await;
    let many = VerifyReport::MAX_FINDINGS + 7;
    sql(
        &store,
        &format!(
            "INSERT INTO {{s}}.streams (stream_id, version) \
             SELECT 'ghost-' || lpad(i::text, 6, '0'), 1 FROM generate_series(1, {many}) i"
        ),
    )
    .await;
    let report = store.admin().verify().await.unwrap();
    assert_eq!(report.problems, many as u64);
    assert_eq!(report.findings.len(), VerifyReport::MAX_FINDINGS);
    assert!(report.findings_truncated());
    assert_eq!(
        report.findings[0].stream.as_deref(),
        Some("ghost-000001"),
        "in stream order"
    );
}

/// The once-per-store check runs on the caller's connection in `append_in`: a caller holding
/// the pool's only connection in its transaction does not wait for a second one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn append_in_checks_the_cluster_on_the_callers_connection() {
    let migrated = fresh_store().await;
    let store = PostgresStore::builder()
        .schema(migrated.schema().as_str())
        .max_connections(1)
        .acquire_timeout(Duration::from_secs(2))
        .connect(&database_url())
        .await
        .unwrap();
    let mut tx = store.pool().begin().await.unwrap();
    store
        .append_in(
            &mut tx,
            &StreamId::from_raw("account-one"),
            ExpectedVersion::NoStream,
            vec![event("opened")],
        )
        .await
        .unwrap();
    tx.commit().await.unwrap();
    assert_eq!(
        store
            .stream_version(&StreamId::from_raw("account-one"))
            .await
            .unwrap()
            .0,
        1
    );
}

/// Processes starting together on a moved store: each migrates, one re-bases, the others find
/// it done; the offset is raised once.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_migrations_of_a_moved_store_rebase_it_once() {
    let store = fresh_store().await;
    let next = store.admin().clock().await.unwrap().next as i64;
    restore_events(&store, "account-old", 20, next + 5_000, 10).await;
    let mut tasks = Vec::new();
    for _ in 0..4 {
        let schema = store.schema().to_string();
        tasks.push(tokio::spawn(async move {
            let process = store_in(&schema).await;
            process.admin().migrate().await.unwrap()
        }));
    }
    let mut rebased = Vec::new();
    for task in tasks {
        rebased.extend(task.await.unwrap().rebased);
    }
    assert_eq!(rebased.len(), 1, "{rebased:?}");
    let clock = store.admin().clock().await.unwrap();
    assert_eq!(clock.offset, rebased[0].to_offset);
    assert!(clock.fits());
    assert!(clock.horizon > (next + 5_000 + 190) as u64);
}
