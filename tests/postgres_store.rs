//! Behaviour of the PostgreSQL store beyond the conformance suite: contention, gap-safe global
//! reads around open transactions, bad rows, immutability, schema handling and failures.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "support/postgres.rs"]
mod support;

use std::collections::HashSet;
use std::time::{Duration, Instant};

use eventsource::postgres::sqlx::{self, AssertSqlSafe};
use eventsource::postgres::{PostgresError, PostgresStore, SCHEMA_VERSION};
use eventsource::testing::fixture::{ADDED, Counter};
use eventsource::{
    Checkpoint, DecodeFailure, EventStore, ExpectedVersion, LoadError, LogFilter, NewEvent,
    RecordedEvent, Repository, StoreError, StreamId, Version,
};
use serde_json::json;
use support::{database_url, fresh_pg_store, unique_schema};
use uuid::Uuid;

fn added(amount: u64) -> NewEvent {
    NewEvent::new(ADDED, 1, json!({ "amount": amount }))
}

fn stream(id: &str) -> StreamId {
    StreamId::new("counter", id)
}

/// Reads the global log after `after` until `count` events came back (other tests' open
/// transactions may hold the horizon back for a moment), then once more to see nothing follows.
async fn read_settled(
    store: &PostgresStore,
    after: Checkpoint,
    count: usize,
) -> Vec<RecordedEvent> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let events = store
            .read_all(after, 1_000, &LogFilter::all())
            .await
            .unwrap();
        if events.len() >= count || Instant::now() > deadline {
            return events;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn execute(store: &PostgresStore, sql: String) -> Result<(), sqlx::Error> {
    sqlx::raw_sql(AssertSqlSafe(sql))
        .execute(store.pool())
        .await
        .map(|_| ())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn eight_writers_for_two_seconds_lose_nothing() {
    let store = fresh_pg_store().await;
    let s = stream("contended");
    let until = Instant::now() + Duration::from_secs(2);
    let mut tasks = Vec::new();
    for task in 0..8u64 {
        let (store, s) = (store.clone(), s.clone());
        tasks.push(tokio::spawn(async move {
            let mut acknowledged = Vec::new();
            let mut conflicts = 0u64;
            while Instant::now() < until {
                // Half the writers check their expectation, half append at any version.
                let expected = if task % 2 == 0 {
                    ExpectedVersion::Exact(store.stream_version(&s).await.unwrap())
                } else {
                    ExpectedVersion::Any
                };
                let event = added(task);
                let id = event.event_id;
                match store.append(&s, expected, vec![event]).await {
                    Ok(written) => acknowledged.push((id, written.last_version)),
                    Err(StoreError::Conflict { .. }) => conflicts += 1,
                    Err(other) => panic!("unexpected error: {other}"),
                }
            }
            (acknowledged, conflicts)
        }));
    }
    let mut acknowledged = Vec::new();
    for task in tasks {
        acknowledged.extend(task.await.unwrap().0);
    }
    let events = store.read_stream(&s, Version(1), 1_000_000).await.unwrap();
    let total = acknowledged.len() as u64;
    assert!(total > 8, "the writers made progress ({total} appends)");
    let versions: Vec<u64> = events.iter().map(|e| e.version.0).collect();
    assert_eq!(versions, (1..=total).collect::<Vec<_>>(), "versions 1..N");
    let stored: HashSet<(Uuid, Version)> = events.iter().map(|e| (e.event_id, e.version)).collect();
    let acknowledged: HashSet<(Uuid, Version)> = acknowledged.into_iter().collect();
    assert_eq!(
        stored, acknowledged,
        "each acknowledged event at its version"
    );
    assert_eq!(store.stream_version(&s).await.unwrap(), Version(total));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn racing_creators_of_one_stream_one_wins_the_rest_conflict() {
    let store = fresh_pg_store().await;
    let s = stream("new");
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let (store, s) = (store.clone(), s.clone());
        tasks.push(tokio::spawn(async move {
            store
                .append(&s, ExpectedVersion::NoStream, vec![added(1), added(2)])
                .await
        }));
    }
    let mut won = 0;
    for task in tasks {
        match task.await.unwrap() {
            Ok(written) => {
                won += 1;
                assert_eq!(written.last_version, Version(2));
            }
            Err(StoreError::Conflict { actual, .. }) => assert_eq!(actual, Version(2)),
            Err(other) => panic!("unexpected error: {other}"),
        }
    }
    assert_eq!(won, 1);
    // Losers drew no positions: the next append follows on directly.
    let next = store
        .append(&stream("other"), ExpectedVersion::Any, vec![added(3)])
        .await
        .unwrap();
    assert_eq!(next.first_position.0, 3, "no position burned by a loser");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn racing_retries_of_one_batch_store_it_once() {
    let store = fresh_pg_store().await;
    let s = stream("retried");
    let batch = vec![added(1), added(2), added(3)];
    let mut tasks = Vec::new();
    for task in 0..8 {
        let (store, s, batch) = (store.clone(), s.clone(), batch.clone());
        // A retry may carry the original expectation, which the first attempt made stale.
        let expected = if task % 2 == 0 {
            ExpectedVersion::NoStream
        } else {
            ExpectedVersion::Any
        };
        tasks.push(tokio::spawn(async move {
            store.append(&s, expected, batch).await
        }));
    }
    let mut fresh = 0;
    for task in tasks {
        let written = task.await.unwrap().unwrap();
        assert_eq!(
            (written.first_version, written.last_version),
            (Version(1), Version(3))
        );
        fresh += usize::from(!written.replayed);
    }
    assert_eq!(
        fresh, 1,
        "one append wrote, the others were reported as retries"
    );
    assert_eq!(store.stream_version(&s).await.unwrap(), Version(3));
}

/// Opens a transaction that appends one event and stays open; later appends commit; a global
/// reader must not pass the open one. Returns the store, the reader's checkpoint, the open
/// transaction, its event and the later events.
async fn open_transaction_behind_later_commits() -> (
    PostgresStore,
    Checkpoint,
    sqlx::Transaction<'static, sqlx::Postgres>,
    Uuid,
    Vec<Uuid>,
) {
    let store = fresh_pg_store()
        .await
        .with_horizon_wait(Duration::from_millis(50));
    store
        .append(&stream("before"), ExpectedVersion::Any, vec![added(0)])
        .await
        .unwrap();
    let seen = read_settled(&store, Checkpoint::START, 1).await;
    assert_eq!(seen.len(), 1);
    let checkpoint = seen[0].checkpoint;

    let mut open = store.pool().begin().await.unwrap();
    let early = added(1);
    let early_id = early.event_id;
    let drawn = store
        .append_in(
            &mut open,
            &stream("slow"),
            ExpectedVersion::NoStream,
            vec![early],
        )
        .await
        .unwrap();

    let mut later = Vec::new();
    for (i, id) in ["fast1", "fast2", "fast1"].into_iter().enumerate() {
        let event = added(i as u64 + 2);
        later.push(event.event_id);
        let written = store
            .append(&stream(id), ExpectedVersion::Any, vec![event])
            .await
            .unwrap();
        assert!(written.first_position > drawn.last_position);
    }
    // The later events are committed, but the reader stops at the open transaction.
    for filter in [LogFilter::all(), LogFilter::all().category("counter")] {
        let events = store.read_all(checkpoint, 100, &filter).await.unwrap();
        assert!(
            events.is_empty(),
            "read past an open transaction: {events:?}"
        );
    }
    assert_eq!(
        store
            .read_stream(&stream("fast1"), Version(1), 10)
            .await
            .unwrap()
            .len(),
        2,
        "the later events are committed"
    );
    (store, checkpoint, open, early_id, later)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn global_reader_waits_for_an_open_transaction_that_commits() {
    let (store, checkpoint, open, early, later) = open_transaction_behind_later_commits().await;
    open.commit().await.unwrap();
    let events = read_settled(&store, checkpoint, 4).await;
    let ids: Vec<Uuid> = events.iter().map(|e| e.event_id).collect();
    let mut expected = vec![early];
    expected.extend(later);
    assert_eq!(
        ids, expected,
        "everything, in commit-safe order, nothing skipped"
    );
    let resumed = store
        .read_all(events[1].checkpoint, 100, &LogFilter::all())
        .await
        .unwrap();
    assert_eq!(resumed.len(), 2);
}

/// A horizon wait too long for an `Instant` (`Duration::MAX`: "as long as it takes") waits for
/// the open transaction instead of panicking on `Instant::now() + wait`.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_unbounded_horizon_wait_waits_for_the_open_transaction() {
    let (store, checkpoint, open, early, later) = open_transaction_behind_later_commits().await;
    let store = store.with_horizon_wait(Duration::MAX);
    let reader = tokio::spawn({
        let store = store.clone();
        async move { store.read_all(checkpoint, 100, &LogFilter::all()).await }
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        !reader.is_finished(),
        "the read waits while the transaction is open"
    );
    open.commit().await.unwrap();
    let events = tokio::time::timeout(Duration::from_secs(20), reader)
        .await
        .expect("the read returns once the transaction commits")
        .unwrap()
        .unwrap();
    let ids: Vec<Uuid> = events.iter().map(|e| e.event_id).collect();
    let mut expected = vec![early];
    expected.extend(later);
    assert_eq!(ids, expected);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn global_reader_skips_nothing_when_the_open_transaction_aborts() {
    let (store, checkpoint, open, early, later) = open_transaction_behind_later_commits().await;
    open.rollback().await.unwrap();
    let events = read_settled(&store, checkpoint, 3).await;
    let ids: Vec<Uuid> = events.iter().map(|e| e.event_id).collect();
    assert_eq!(ids, later);
    assert!(store.find_event(early).await.unwrap().is_none());
    assert_eq!(
        store.stream_version(&stream("slow")).await.unwrap(),
        Version(0)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn horizon_lag_reports_an_open_transaction() {
    let store = fresh_pg_store().await;
    let mut open = store.pool().begin().await.unwrap();
    store
        .append_in(
            &mut open,
            &stream("slow"),
            ExpectedVersion::Any,
            vec![added(1)],
        )
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let lag = store.horizon_lag().await.unwrap();
    assert!(lag >= Duration::from_millis(250), "lag {lag:?}");
    open.rollback().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn appends_notify_listeners_at_commit() {
    let store = fresh_pg_store().await;
    let mut listener = store.listen().await.unwrap();
    let written = store
        .append(&stream("a"), ExpectedVersion::Any, vec![added(1), added(2)])
        .await
        .unwrap();
    let note = tokio::time::timeout(Duration::from_secs(10), listener.recv())
        .await
        .expect("a notification within 10 s")
        .unwrap();
    assert_eq!(note.channel(), store.notify_channel());
    assert_eq!(note.payload(), written.last_position.to_string());
}

/// Inserts a row the way a buggy tool or a newer release might have written it.
async fn insert_raw(
    store: &PostgresStore,
    stream: &StreamId,
    version: u64,
    name: &str,
    schema_version: i64,
    payload: &str,
    metadata: &str,
) {
    let schema = store.schema();
    execute(
        store,
        format!(
            "INSERT INTO \"{schema}\".streams (stream_id, version) VALUES ('{stream}', {version}) \
             ON CONFLICT (stream_id) DO UPDATE SET version = EXCLUDED.version; \
             INSERT INTO \"{schema}\".events \
                 (stream_id, version, event_id, name, schema_version, payload, metadata) \
             VALUES ('{stream}', {version}, '{}', '{name}', {schema_version}, '{payload}', '{metadata}')",
            Uuid::now_v7()
        ),
    )
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn bad_stored_events_are_typed_decode_errors() {
    let store = fresh_pg_store().await;
    let repo = Repository::<Counter, _>::new(store.clone());
    insert_raw(
        &store,
        &stream("shape"),
        1,
        ADDED,
        1,
        r#"["not", "an", "object"]"#,
        "{}",
    )
    .await;
    insert_raw(
        &store,
        &stream("unknown"),
        1,
        "counter.squared",
        1,
        "{}",
        "{}",
    )
    .await;
    insert_raw(
        &store,
        &stream("newer"),
        1,
        ADDED,
        9,
        r#"{"amount": 1}"#,
        "{}",
    )
    .await;

    match repo.load("shape").await {
        Err(LoadError::Decode(error)) => {
            assert!(matches!(
                error.source,
                DecodeFailure::Payload { version: 1, .. }
            ));
            let message = error.to_string();
            for part in ["counter-shape", "version 1", ADDED, "position"] {
                assert!(message.contains(part), "`{message}` names {part}");
            }
        }
        other => panic!("expected a decode error, got {other:?}"),
    }
    match repo.load("unknown").await {
        Err(LoadError::Decode(error)) => {
            assert!(matches!(error.source, DecodeFailure::UnknownEvent));
            assert_eq!(error.name, "counter.squared");
        }
        other => panic!("expected a decode error, got {other:?}"),
    }
    match repo.load("newer").await {
        Err(LoadError::Decode(error)) => assert!(matches!(
            error.source,
            DecodeFailure::VersionTooNew {
                found: 9,
                latest: 1
            }
        )),
        other => panic!("expected a decode error, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn broken_envelopes_are_corrupt_rows() {
    let store = fresh_pg_store().await;
    let s = stream("broken");
    insert_raw(
        &store,
        &s,
        1,
        ADDED,
        1,
        r#"{"amount": 1}"#,
        r#""not metadata""#,
    )
    .await;
    insert_raw(
        &store,
        &stream("huge"),
        1,
        ADDED,
        1i64 << 40,
        r#"{"amount": 1}"#,
        "{}",
    )
    .await;
    for result in [
        store.read_stream(&s, Version(1), 10).await,
        store.read_stream(&stream("huge"), Version(1), 10).await,
    ] {
        match result {
            Err(error @ StoreError::CorruptRow { .. }) => {
                let message = error.to_string();
                for part in ["counter-", "version 1", ADDED, "position"] {
                    assert!(message.contains(part), "`{message}` names {part}");
                }
            }
            other => panic!("expected a corrupt row, got {other:?}"),
        }
    }
    let repo = Repository::<Counter, _>::new(store.clone());
    // A load reads what a fold uses (`read_stream_for_fold`), so the broken metadata does not
    // stop it; the schema version out of range does, and the audit trail reads everything.
    let loaded = repo.load("broken").await.unwrap();
    assert_eq!((loaded.state.value, loaded.version), (1, Version(1)));
    for result in [
        repo.load("huge").await.map(|_| ()),
        repo.history("broken").await.map(|_| ()),
    ] {
        match result {
            Err(LoadError::Store(error @ StoreError::CorruptRow { .. })) => {
                let message = error.to_string();
                for part in ["counter-", "version 1", ADDED, "position"] {
                    assert!(message.contains(part), "`{message}` names {part}");
                }
            }
            other => panic!("expected a corrupt row, got {other:?}"),
        }
    }
}

/// The global read decodes its rows by position: metadata of every shape a row can hold
/// decodes as written (empty, full, with fields a newer release added), and metadata that is
/// no envelope's is a corrupt row naming the stream, the version, the event and its position,
/// from every read that returns the row.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn global_reads_decode_odd_metadata_or_name_the_corrupt_row() {
    let store = fresh_pg_store().await;
    let correlation = Uuid::now_v7();
    let full = format!(
        r#"{{"correlation_id": "{correlation}", "idempotency_key": "k-1", "custom": {{"tenant": "t"}}}}"#
    );
    let rows = [
        ("spaced", "{ }".to_owned()),
        ("full", full),
        (
            "newer",
            r#"{"added_later": [1, 2], "custom": {}}"#.to_owned(),
        ),
    ];
    for (id, metadata) in &rows {
        insert_raw(
            &store,
            &stream(id),
            1,
            ADDED,
            1,
            r#"{"amount": 1}"#,
            metadata,
        )
        .await;
    }
    let events = read_settled(&store, Checkpoint::START, 3).await;
    assert_eq!(events.len(), 3, "{events:?}");
    let by_stream = |id: &str| {
        events
            .iter()
            .find(|e| e.stream_id == stream(id))
            .unwrap_or_else(|| panic!("no event of {id}"))
    };
    assert_eq!(by_stream("spaced").metadata, Default::default());
    let full = &by_stream("full").metadata;
    assert_eq!(full.correlation_id, Some(correlation));
    assert_eq!(full.idempotency_key.as_deref(), Some("k-1"));
    assert_eq!(full.custom.get("tenant"), Some(&json!("t")));
    assert!(by_stream("newer").metadata.custom.is_empty());
    for event in &events {
        assert_eq!(
            (event.name.as_str(), event.version, event.schema_version),
            (ADDED, Version(1), 1)
        );
        assert_eq!(event.payload, json!({ "amount": 1 }));
        let found = store.find_event(event.event_id).await.unwrap().unwrap();
        assert_eq!(&found, event, "find_event decodes the same columns");
    }
    let after = events.last().unwrap().checkpoint;

    for (id, metadata) in [
        ("null", "null"),
        ("text", r#""not metadata""#),
        ("badid", r#"{"correlation_id": "not-a-uuid"}"#),
    ] {
        insert_raw(
            &store,
            &stream(id),
            1,
            ADDED,
            1,
            r#"{"amount": 1}"#,
            metadata,
        )
        .await;
        let filters = [
            LogFilter::all(),
            LogFilter::all().name(ADDED),
            LogFilter::all().category("counter"),
        ];
        for filter in filters {
            match store.read_all(after, 10, &filter).await {
                Err(error @ StoreError::CorruptRow { .. }) => {
                    let message = error.to_string();
                    for part in [id, "version 1", ADDED, "position", "metadata"] {
                        assert!(message.contains(part), "`{message}` names {part}");
                    }
                }
                other => panic!("{id}, {filter:?}: expected a corrupt row, got {other:?}"),
            }
        }
        // Out of the way of the next case.
        execute(
            &store,
            format!(
                "ALTER TABLE \"{schema}\".events DISABLE TRIGGER events_immutable; \
                 DELETE FROM \"{schema}\".events WHERE stream_id = '{stream}'; \
                 ALTER TABLE \"{schema}\".events ENABLE TRIGGER events_immutable",
                schema = store.schema(),
                stream = stream(id),
            ),
        )
        .await
        .unwrap();
    }
}

/// A filter that holds nearly the whole log is read in plain checkpoint order and filtered in
/// the store; an event it leaves out is still never its problem, even one that does not
/// decode.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_dense_filter_reads_past_a_corrupt_event_it_leaves_out() {
    let store = fresh_pg_store().await;
    let batch = |n: u64| (0..n).map(added).collect::<Vec<_>>();
    store
        .append(&stream("first"), ExpectedVersion::NoStream, batch(8))
        .await
        .unwrap();
    insert_raw(
        &store,
        &stream("other"),
        1,
        "counter.other",
        1,
        "{}",
        r#""not metadata""#,
    )
    .await;
    store
        .append(&stream("second"), ExpectedVersion::NoStream, batch(8))
        .await
        .unwrap();
    assert!(matches!(
        store
            .read_all(Checkpoint::START, 100, &LogFilter::all())
            .await,
        Err(StoreError::CorruptRow { .. })
    ));
    let filter = LogFilter::all().name(ADDED);
    for _ in 0..2 {
        let mut read = Vec::new();
        let mut after = Checkpoint::START;
        loop {
            let page = store.read_all(after, 4, &filter).await.unwrap();
            let Some(last) = page.last() else { break };
            after = last.checkpoint;
            read.extend(page.into_iter().map(|e| (e.stream_id, e.version)));
        }
        let expected: Vec<_> = ["first", "second"]
            .into_iter()
            .flat_map(|id| (1..=8).map(move |v| (stream(id), Version(v))))
            .collect();
        assert_eq!(read, expected);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn stored_events_are_immutable() {
    let store = fresh_pg_store().await;
    store
        .append(&stream("a"), ExpectedVersion::Any, vec![added(1)])
        .await
        .unwrap();
    let schema = store.schema().to_string();
    for sql in [
        format!("UPDATE \"{schema}\".events SET payload = '{{}}'"),
        format!("DELETE FROM \"{schema}\".events"),
        format!("TRUNCATE \"{schema}\".events"),
    ] {
        let error = execute(&store, sql.clone()).await.unwrap_err();
        let db = error.as_database_error().expect("a database error");
        assert_eq!(db.code().as_deref(), Some("ES001"), "{sql}: {db}");
        assert!(db.message().contains("immutable"), "{}", db.message());
    }
    assert_eq!(
        store
            .read_stream(&stream("a"), Version(1), 10)
            .await
            .unwrap()[0]
            .payload,
        json!({ "amount": 1 })
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn invalid_schema_names_are_rejected() {
    for name in [
        "",
        "Events",
        "1st",
        "a-b",
        "x\"; DROP SCHEMA public; --",
        "pg_temp",
    ] {
        let error = PostgresStore::builder()
            .schema(name)
            .connect(&database_url())
            .await
            .unwrap_err();
        assert!(
            matches!(error, PostgresError::InvalidSchemaName { name: ref got, .. } if got == name),
            "{name:?}: {error}"
        );
    }
    let store = fresh_pg_store().await;
    let error = store.with_schema("no spaces").unwrap_err();
    assert!(
        error
            .to_string()
            .contains("invalid schema name `no spaces`"),
        "{error}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn unreachable_server_is_a_clear_error() {
    // A port nobody listens on: bind one, then let it go.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let started = Instant::now();
    let error = PostgresStore::builder()
        .acquire_timeout(Duration::from_secs(2))
        .connect(&format!("postgres://nobody@127.0.0.1:{port}/nothing"))
        .await
        .unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(10));
    assert!(
        matches!(error, PostgresError::Connect { port: p, .. } if p == port),
        "{error:?}"
    );
    let message = error.to_string();
    assert!(
        message.contains(&format!("cannot connect to PostgreSQL at 127.0.0.1:{port}")),
        "{message}"
    );
    let error = PostgresStore::connect("postgres://user@host:not-a-port/db")
        .await
        .unwrap_err();
    assert!(
        matches!(error, PostgresError::InvalidUrl { .. }),
        "{error:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_schema_migrated_by_a_newer_release_is_refused() {
    let store = fresh_pg_store().await;
    let future = SCHEMA_VERSION + 1;
    execute(
        &store,
        format!(
            "INSERT INTO \"{}\".schema_migrations (version, description) VALUES ({future}, 'from the future')",
            store.schema()
        ),
    )
    .await
    .unwrap();
    match store.migrate().await {
        Err(error @ PostgresError::SchemaTooNew { .. }) => {
            let message = error.to_string();
            assert!(
                message.contains(&format!("schema version {future}")),
                "{message}"
            );
            assert!(message.contains("newer"), "{message}");
        }
        other => panic!("expected SchemaTooNew, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn migrate_is_idempotent_and_safe_to_run_concurrently() {
    let url = database_url();
    let schema = unique_schema();
    let mut tasks = Vec::new();
    for _ in 0..4 {
        let (url, schema) = (url.clone(), schema.clone());
        tasks.push(tokio::spawn(async move {
            let store = PostgresStore::builder()
                .schema(schema)
                .max_connections(2)
                .connect(&url)
                .await
                .unwrap();
            store.migrate().await.unwrap();
            store.migrate().await.unwrap();
            store
        }));
    }
    let mut stores = Vec::new();
    for task in tasks {
        stores.push(task.await.unwrap());
    }
    let store = &stores[0];
    let applied: i64 = sqlx::query_scalar(AssertSqlSafe(format!(
        "SELECT max(version) FROM \"{schema}\".schema_migrations"
    )))
    .fetch_one(store.pool())
    .await
    .unwrap();
    assert_eq!(applied, SCHEMA_VERSION);
    store
        .append(&stream("a"), ExpectedVersion::NoStream, vec![added(1)])
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn schemas_are_isolated() {
    let one = fresh_pg_store().await;
    let two = fresh_pg_store().await;
    one.append(&stream("a"), ExpectedVersion::NoStream, vec![added(1)])
        .await
        .unwrap();
    two.append(&stream("a"), ExpectedVersion::NoStream, vec![added(2)])
        .await
        .unwrap();
    assert_eq!(read_settled(&one, Checkpoint::START, 1).await.len(), 1);
    assert_eq!(
        two.read_stream(&stream("a"), Version(1), 10).await.unwrap()[0].payload,
        json!({ "amount": 2 })
    );
}

/// A huge wrong-typed field (50 MB where the event has a number) is stored within raised
/// limits, and every error about it stays small: the load's decode error and its message are
/// bounded, and still name the stream, version and event.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_about_a_huge_payload_stay_small() {
    let store = fresh_pg_store()
        .await
        .with_limits(eventsource::Limits::default().with_max_event_bytes(64 << 20));
    let huge = "9".repeat(50 << 20);
    store
        .append(
            &stream("huge"),
            ExpectedVersion::NoStream,
            vec![NewEvent::new(ADDED, 1, json!({ "amount": huge }))],
        )
        .await
        .unwrap();
    let error = Repository::<Counter, _>::new(store.clone())
        .load("huge")
        .await
        .unwrap_err();
    let message = error.to_string();
    assert!(message.len() < 1_000, "a {} byte message", message.len());
    assert!(message.contains("counter-huge"), "{message}");
    assert!(message.contains(ADDED), "{message}");
    assert!(matches!(error, LoadError::Decode(_)), "{error:?}");

    // Over the default limit, the same append is refused before anything is written.
    let refused = fresh_pg_store()
        .await
        .append(
            &stream("huge"),
            ExpectedVersion::NoStream,
            vec![NewEvent::new(
                ADDED,
                1,
                json!({ "amount": "9".repeat(5 << 20) }),
            )],
        )
        .await
        .unwrap_err();
    assert!(matches!(refused, StoreError::Invalid(_)), "{refused}");
    assert!(refused.to_string().len() < 400, "{refused}");
}

/// Sets `recorded_at` to the SQL expression `at` for the events matching `condition`, as a
/// restore or a hand would write it (events are immutable to UPDATE otherwise).
async fn set_recorded_at(store: &PostgresStore, at: &str, condition: &str) {
    let schema = store.schema();
    execute(
        store,
        format!(
            "ALTER TABLE \"{schema}\".events DISABLE TRIGGER events_immutable; \
             UPDATE \"{schema}\".events SET recorded_at = {at} WHERE {condition}; \
             ALTER TABLE \"{schema}\".events ENABLE TRIGGER events_immutable"
        ),
    )
    .await
    .unwrap();
}

/// PostgreSQL stores timestamps chrono cannot hold (`infinity`, `-infinity`, instants in the
/// year 294,000): a row holding one, written by a tool, a hand or a restore, is a typed error
/// from every read that decodes it (sqlx's own decoder panicked: `NaiveDateTime + TimeDelta`
/// overflowed), and instants at PostgreSQL's edges that chrono holds read back exactly.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn timestamps_beyond_what_chrono_holds_are_typed_errors_not_panics() {
    use eventsource::postgres::sqlx::Row as _;
    use eventsource::{Snapshot, SnapshotStore, StreamRetirement};

    let store = fresh_pg_store().await;
    let schema = store.schema().as_str().to_owned();
    let unreadable = ["infinity", "-infinity", "294000-01-01 00:00:00+00"];
    for (n, at) in unreadable.iter().enumerate() {
        let s = stream(&format!("at{n}"));
        store
            .append(&s, ExpectedVersion::NoStream, vec![added(1)])
            .await
            .unwrap();
        set_recorded_at(&store, &format!("'{at}'"), &format!("stream_id = '{s}'")).await;
        match store.read_stream(&s, Version(1), 10).await {
            Err(error @ StoreError::CorruptRow { .. }) => {
                let message = error.to_string();
                for part in [s.as_str(), "version 1", ADDED, "recorded_at"] {
                    assert!(message.contains(part), "`{message}` names {part}");
                }
            }
            other => panic!("{at}: expected a corrupt row, got {other:?}"),
        }
        let history = Repository::<Counter, _>::new(store.clone())
            .history(&format!("at{n}"))
            .await;
        assert!(
            matches!(
                history,
                Err(LoadError::Store(StoreError::CorruptRow { .. }))
            ),
            "{at}: {history:?}"
        );
        let global = store
            .read_all(Checkpoint::START, 100, &LogFilter::all())
            .await;
        assert!(
            matches!(global, Err(StoreError::CorruptRow { .. })),
            "{at}: {global:?}"
        );
        // The store's newest `recorded_at`, unless it is the oldest.
        let counts = store.admin().counts().await;
        assert_eq!(counts.is_err(), *at != "-infinity", "{at}: {counts:?}");
        set_recorded_at(&store, "now()", &format!("stream_id = '{s}'")).await;

        // The other tables with instants: checkpoints, snapshots, stream heads.
        execute(
            &store,
            format!(
                "INSERT INTO \"{schema}\".checkpoints (projection, transaction_id, position, updated_at) \
                 VALUES ('p{n}', 0, 0, '{at}')"
            ),
        )
        .await
        .unwrap();
        let checkpoints = store.admin().checkpoints().await;
        assert!(checkpoints.is_err(), "{at}: {checkpoints:?}");
        execute(
            &store,
            format!("DELETE FROM \"{schema}\".checkpoints WHERE projection = 'p{n}'"),
        )
        .await
        .unwrap();

        store
            .save_snapshot(Snapshot {
                stream_id: s.clone(),
                version: Version(1),
                state_fingerprint: "f".to_owned(),
                state: json!({}),
                taken_at: chrono::Utc::now(),
            })
            .await
            .unwrap();
        execute(
            &store,
            format!("UPDATE \"{schema}\".snapshots SET taken_at = '{at}' WHERE stream_id = '{s}'"),
        )
        .await
        .unwrap();
        match store.load_snapshot(&s).await {
            Err(error @ StoreError::CorruptRow { .. }) => {
                assert!(error.to_string().contains("taken_at"), "{error}");
            }
            other => panic!("{at}: expected a corrupt snapshot, got {other:?}"),
        }

        store.archive_stream(&s).await.unwrap().unwrap();
        execute(
            &store,
            format!("UPDATE \"{schema}\".streams SET archived_at = '{at}' WHERE stream_id = '{s}'"),
        )
        .await
        .unwrap();
        let status = store.stream_status(&s).await;
        assert!(
            matches!(status, Err(StoreError::CorruptRow { .. })),
            "{at}: {status:?}"
        );
    }

    // Instants at PostgreSQL's edges that chrono holds read back as stored.
    let s = stream("edges");
    store
        .append(
            &s,
            ExpectedVersion::NoStream,
            vec![added(1), added(2), added(3)],
        )
        .await
        .unwrap();
    let edges = [
        "4713-01-01 00:00:00+00 BC",
        "1970-01-01 00:00:00.000001+00",
        "200000-12-31 23:59:59.999999+00",
    ];
    for (version, at) in (1_u64..).zip(edges) {
        set_recorded_at(
            &store,
            &format!("'{at}'"),
            &format!("stream_id = '{s}' AND version = {version}"),
        )
        .await;
    }
    let events = store.read_stream(&s, Version(1), 10).await.unwrap();
    let micros: Vec<i64> = events
        .iter()
        .map(|e| e.recorded_at.timestamp_micros())
        .collect();
    let expected: Vec<i64> = {
        let mut expected = Vec::new();
        for at in edges {
            let row = sqlx::query(AssertSqlSafe(format!(
                "SELECT (extract(epoch FROM '{at}'::timestamptz) * 1000000)::bigint AS micros"
            )))
            .fetch_one(store.pool())
            .await
            .unwrap();
            expected.push(row.get::<i64, _>("micros"));
        }
        expected
    };
    assert_eq!(micros, expected);
    assert_eq!(micros[1], 1);
}

/// Pool settings at their extremes: `max_connections(0)` counts as 1 and
/// `acquire_timeout(Duration::MAX)` as a year; the store connects and works at once (both
/// panicked inside sqlx: `capacity must be non-zero`, and `Instant + Duration` overflowing on
/// the first acquire).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pool_of_zero_connections_counts_as_one() {
    let store = PostgresStore::builder()
        .schema(unique_schema())
        .max_connections(0)
        .acquire_timeout(Duration::MAX)
        .connect(&database_url())
        .await
        .unwrap();
    store.migrate().await.unwrap();
    store
        .append(&stream("zero"), ExpectedVersion::NoStream, vec![added(1)])
        .await
        .unwrap();
    assert_eq!(store.pool().options().get_max_connections(), 1);
}
