//! An event's tracing ids (its metadata's `correlation_id` and `causation_id`) are stored in
//! columns of their own since migration 10, and the rest of its metadata in `metadata`. Every
//! write path (one event, a batch, `append_in`'s `append()` function, a cross-stream decision,
//! the bulk import) must store them, and every read path (a stream, the global log, one event
//! by id, a decision's query) must give back exactly the metadata that was written, also for
//! rows written before the migration (ids inside `metadata`, the columns NULL).
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "support/postgres.rs"]
mod support;

use eventsource::postgres::sqlx::{self, AssertSqlSafe};
use eventsource::postgres::{ImportEvent, PostgresStore};
use eventsource::{
    Checkpoint, DecisionStore, EventStore, ExpectedVersion, LogFilter, Metadata, NewEvent, Query,
    QueryItem, RecordedEvent, StreamAppend, StreamId, Tag, Version,
};
use serde_json::json;
use support::fresh_pg_store;
use uuid::Uuid;

/// Metadata with both ids (different ones), an application field, and, for `keyed`, an
/// idempotency key: what stays in `metadata` beside the columns.
fn metadata(n: u128, keyed: bool) -> Metadata {
    let mut metadata = Metadata {
        correlation_id: Some(Uuid::from_u128(n)),
        causation_id: Some(Uuid::from_u128(n + 1_000)),
        idempotency_key: keyed.then(|| format!("key-{n}")),
        ..Metadata::default()
    };
    metadata.insert("user", &format!("user-{n}")).unwrap();
    metadata
}

fn event(n: u128, metadata: Metadata) -> NewEvent {
    let mut event = NewEvent::new("thing.happened", 1, json!({ "n": n as u64 }));
    event.metadata = metadata;
    event
}

/// The stored `metadata` column and the two id columns of `event_id`.
async fn stored(
    store: &PostgresStore,
    event_id: Uuid,
) -> (serde_json::Value, Option<Uuid>, Option<Uuid>) {
    sqlx::query_as(AssertSqlSafe(format!(
        "SELECT metadata, correlation_id, causation_id FROM \"{}\".events WHERE event_id = $1",
        store.schema().as_str()
    )))
    .bind(event_id)
    .fetch_one(store.pool())
    .await
    .unwrap()
}

/// Every read path gives back `expected` for each of `written` (event id, metadata).
async fn assert_reads_back(store: &PostgresStore, written: &[(StreamId, Uuid, Metadata)]) {
    let all = store
        .read_all(Checkpoint::START, 10_000, &LogFilter::all())
        .await
        .unwrap();
    for (stream, id, expected) in written {
        let by_stream: Vec<RecordedEvent> =
            store.read_stream(stream, Version(1), 100).await.unwrap();
        let from_stream = by_stream.iter().find(|e| e.event_id == *id).unwrap();
        assert_eq!(&from_stream.metadata, expected, "read_stream of {stream}");
        let from_log = all.iter().find(|e| e.event_id == *id).unwrap();
        assert_eq!(&from_log.metadata, expected, "read_all, {stream}");
        let found = store.find_event(*id).await.unwrap().unwrap();
        assert_eq!(&found.metadata, expected, "find_event, {stream}");
    }
}

/// The one-event statement, the batch statement and `append_in` (the `append()` function):
/// the ids land in the columns where the statement writes them, the rest in `metadata`, and
/// every read gives the written metadata back.
#[tokio::test]
async fn every_append_path_stores_and_reads_back_the_tracing_ids() {
    let store = fresh_pg_store().await;
    let mut written = Vec::new();

    // One event, one statement.
    let one = StreamId::new("thing", "one");
    let e = event(1, metadata(1, true));
    written.push((one.clone(), e.event_id, e.metadata.clone()));
    store
        .append(&one, ExpectedVersion::NoStream, vec![e])
        .await
        .unwrap();

    // A batch, one statement; one event with no ids, one with a correlation id only.
    let batch = StreamId::new("thing", "batch");
    let only_correlation = Metadata {
        correlation_id: Some(Uuid::from_u128(7)),
        ..Metadata::default()
    };
    let events = vec![
        event(2, metadata(2, false)),
        event(3, Metadata::default()),
        event(4, only_correlation),
    ];
    for e in &events {
        written.push((batch.clone(), e.event_id, e.metadata.clone()));
    }
    store
        .append(&batch, ExpectedVersion::Any, events)
        .await
        .unwrap();

    // `append_in`: the `append()` function, inside the caller's transaction.
    let inside = StreamId::new("thing", "inside");
    let e = event(5, metadata(5, false));
    written.push((inside.clone(), e.event_id, e.metadata.clone()));
    let mut tx = store.begin_transaction().await.unwrap();
    store
        .append_in(&mut tx, &inside, ExpectedVersion::NoStream, vec![e])
        .await
        .unwrap();
    tx.commit().await.unwrap();

    assert_reads_back(&store, &written).await;

    // Where they are: every path writes the ids to their columns, the rest to `metadata`.
    let (one_id, batch_first, inside_id) = (written[0].1, written[1].1, written[4].1);
    let (rest, correlation, causation) = stored(&store, one_id).await;
    assert_eq!(correlation, Some(Uuid::from_u128(1)));
    assert_eq!(causation, Some(Uuid::from_u128(1_001)));
    assert_eq!(
        rest,
        json!({ "idempotency_key": "key-1", "custom": { "user": "user-1" } })
    );
    let (rest, correlation, _) = stored(&store, batch_first).await;
    assert_eq!(correlation, Some(Uuid::from_u128(2)));
    assert_eq!(rest, json!({ "custom": { "user": "user-2" } }));
    let (rest, correlation, causation) = stored(&store, inside_id).await;
    assert_eq!(correlation, Some(Uuid::from_u128(5)));
    assert_eq!(causation, Some(Uuid::from_u128(1_005)));
    assert_eq!(rest, json!({ "custom": { "user": "user-5" } }));
}

/// A conflict answered by the `append()` function, then a retry of stored ids (a replay), do
/// not disturb the stored ids; a cross-stream decision keeps them too, and its query reads
/// them back.
#[tokio::test]
async fn replays_and_decisions_keep_the_tracing_ids() {
    let store = fresh_pg_store().await;
    let s = StreamId::new("thing", "retried");
    let e = event(10, metadata(10, true));
    let id = e.event_id;
    let meta = e.metadata.clone();
    store
        .append(&s, ExpectedVersion::NoStream, vec![e.clone()])
        .await
        .unwrap();
    let replay = store
        .append(&s, ExpectedVersion::NoStream, vec![e])
        .await
        .unwrap();
    assert!(replay.replayed, "{replay:?}");
    let conflict = store
        .append(
            &s,
            ExpectedVersion::NoStream,
            vec![event(11, metadata(11, false))],
        )
        .await;
    assert!(conflict.is_err(), "{conflict:?}");

    let tag = Tag::new("course", 1);
    let d = StreamId::new("student", "decided");
    let decided = event(12, metadata(12, false)).with_tags([tag.clone()]);
    let decided_id = decided.event_id;
    let decided_meta = decided.metadata.clone();
    store
        .append_streams(
            vec![StreamAppend::new(
                d.clone(),
                ExpectedVersion::Any,
                vec![decided],
            )],
            None,
        )
        .await
        .unwrap();
    assert_reads_back(
        &store,
        &[(s, id, meta), (d, decided_id, decided_meta.clone())],
    )
    .await;
    let read = store
        .read_query(&Query::new().item(QueryItem::tagged([tag])))
        .await
        .unwrap();
    let found = read
        .events
        .iter()
        .find(|e| e.event_id == decided_id)
        .unwrap();
    assert_eq!(found.metadata, decided_meta);
    // `append_streams()` writes the columns too.
    let (rest, correlation, causation) = stored(&store, decided_id).await;
    assert_eq!(correlation, Some(Uuid::from_u128(12)));
    assert_eq!(causation, Some(Uuid::from_u128(1_012)));
    assert_eq!(rest, json!({ "custom": { "user": "user-12" } }));
}

/// The bulk import writes the ids into the columns (COPY), and rows written before
/// migration 10 (ids inside `metadata`, NULL columns) read back unchanged beside them.
#[tokio::test]
async fn imported_rows_and_rows_from_before_the_migration_read_back() {
    let store = fresh_pg_store().await;
    let imported = StreamId::new("thing", "imported");
    let mut written = Vec::new();
    let mut events = Vec::new();
    for n in 0..3u64 {
        let meta = if n == 1 {
            Metadata::default()
        } else {
            metadata(20 + u128::from(n), n == 2)
        };
        let e = event(20 + u128::from(n), meta);
        written.push((imported.clone(), e.event_id, e.metadata.clone()));
        events.push(ImportEvent {
            stream: imported.clone(),
            version: Version(n + 1),
            event: e,
        });
    }
    store.import(events).await.unwrap();
    let (rest, correlation, causation) = stored(&store, written[0].1).await;
    assert_eq!(correlation, Some(Uuid::from_u128(20)));
    assert_eq!(causation, Some(Uuid::from_u128(1_020)));
    assert_eq!(rest, json!({ "custom": { "user": "user-20" } }));

    // A row as every version before migration 10 wrote it.
    let old = StreamId::new("thing", "old");
    let old_meta = metadata(30, true);
    let old_id = Uuid::from_u128(30_000);
    let s = format!("\"{}\"", store.schema().as_str());
    sqlx::raw_sql(AssertSqlSafe(format!(
        "INSERT INTO {s}.streams (stream_id, version) VALUES ('{old}', 1); \
         INSERT INTO {s}.events (stream_id, version, event_id, name, schema_version, payload, metadata) \
         VALUES ('{old}', 1, '{old_id}', 'thing.happened', 1, '{{\"n\": 30}}', '{}')",
        serde_json::to_string(&old_meta).unwrap()
    )))
    .execute(store.pool())
    .await
    .unwrap();
    assert_eq!(stored(&store, old_id).await.1, None);
    written.push((old, old_id, old_meta));
    assert_reads_back(&store, &written).await;
}
