//! Crypto-shredding and stream retirement on PostgreSQL: the customer scenario with the
//! PostgreSQL key store, the immutability rule with its one exit, and archived streams on
//! every append path.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "support/customer.rs"]
mod customer;
#[path = "support/postgres.rs"]
mod support;

use std::collections::HashSet;

use eventsource::postgres::PostgresStore;
use eventsource::postgres::sqlx;
use eventsource::{
    EventStore, ExpectedVersion, KeyStore, NewEvent, SnapshotStore, StoreError, StreamId,
    StreamRetirement, Version,
};
use serde_json::json;
use support::fresh_pg_store;

fn event(n: u64) -> NewEvent {
    NewEvent::new("counter.added", 1, json!({ "amount": n }))
}

#[tokio::test]
async fn a_forgotten_customer_reads_back_forgotten_everywhere() {
    let store = fresh_pg_store().await;
    let keys = store.key_store();
    customer::forget_scenario(store.clone(), keys.clone()).await;
    let forgotten = keys.forgotten_subjects(10).await.unwrap();
    assert_eq!(
        forgotten
            .iter()
            .map(|(s, _)| s.as_str())
            .collect::<Vec<_>>(),
        Vec::<&str>::new(),
        "c-1 has a new key since: not all of its keys are forgotten"
    );
    // The key material of the forgotten version is gone from the table.
    let schema = store.schema().to_string();
    let stored: Option<Vec<u8>> = sqlx::query_scalar(eventsource::postgres::sqlx::AssertSqlSafe(
        format!("SELECT key FROM {schema}.subject_keys WHERE subject = 'c-1' AND key_version = 1"),
    ))
    .fetch_one(store.pool())
    .await
    .unwrap();
    assert!(stored.is_none());
}

#[tokio::test]
async fn a_store_that_does_not_seal_is_refused() {
    customer::plain_store_refuses_personal_values(fresh_pg_store().await).await;
}

#[tokio::test]
async fn forgotten_subjects_are_listed_and_keys_race_to_one() {
    let store = fresh_pg_store().await;
    let keys = store.key_store();
    // Many processes creating the first key of a subject at once agree on one key.
    let racers = (0..8).map(|_| {
        let keys = keys.clone();
        tokio::spawn(async move { keys.current_key("s-1").await.unwrap() })
    });
    let mut materials = HashSet::new();
    for racer in racers {
        let key = racer.await.unwrap();
        assert_eq!(key.version(), 1);
        materials.insert(key.material().to_vec());
    }
    assert_eq!(materials.len(), 1);
    keys.record_stream("s-1", &StreamId::new("customer", "s-1"))
        .await
        .unwrap();
    keys.record_stream("s-1", &StreamId::new("customer", "s-1"))
        .await
        .unwrap();
    let streams = keys.forget("s-1").await.unwrap();
    assert_eq!(streams, vec![StreamId::new("customer", "s-1")]);
    assert!(keys.key("s-1", 1).await.unwrap().is_none());
    let listed = keys.forgotten_subjects(10).await.unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].0, "s-1");
    // A subject written to again gets version 2.
    assert_eq!(keys.current_key("s-1").await.unwrap().version(), 2);
    assert!(keys.forgotten_subjects(10).await.unwrap().is_empty());
    assert!(keys.key("nobody", 1).await.unwrap().is_none());
    assert!(keys.key("s-1", u32::MAX).await.unwrap().is_none());
}

async fn execute(store: &PostgresStore, sql: String) -> Result<u64, String> {
    sqlx::query(eventsource::postgres::sqlx::AssertSqlSafe(sql))
        .execute(store.pool())
        .await
        .map(|done| done.rows_affected())
        .map_err(|e| e.to_string())
}

#[tokio::test]
async fn only_delete_stream_removes_events() {
    let store = fresh_pg_store().await;
    let s = store.schema().to_string();
    let a = StreamId::new("counter", "a");
    let b = StreamId::new("counter", "b");
    store
        .append(&a, ExpectedVersion::NoStream, vec![event(1), event(2)])
        .await
        .unwrap();
    store
        .append(&b, ExpectedVersion::NoStream, vec![event(3)])
        .await
        .unwrap();

    for statement in [
        format!("DELETE FROM {s}.events WHERE stream_id = 'counter-a'"),
        format!("DELETE FROM {s}.events"),
        format!("UPDATE {s}.events SET payload = '{{}}' WHERE stream_id = 'counter-a'"),
        format!("TRUNCATE {s}.events"),
    ] {
        let error = execute(&store, statement.clone())
            .await
            .expect_err(&statement);
        assert!(error.contains("immutable"), "{statement}: {error}");
    }
    // The setting the delete path uses does not open the table to a DELETE of another stream,
    // nor to updates or a truncate.
    for statement in [
        format!("DELETE FROM {s}.events"),
        format!("UPDATE {s}.events SET payload = '{{}}' WHERE stream_id = 'counter-a'"),
        format!("TRUNCATE {s}.events"),
    ] {
        let mut tx = store.pool().begin().await.unwrap();
        sqlx::query("SELECT set_config('eventsource.deleting_stream', 'counter-a', true)")
            .execute(&mut *tx)
            .await
            .unwrap();
        let error = sqlx::query(sqlx::AssertSqlSafe(statement.clone()))
            .execute(&mut *tx)
            .await
            .expect_err(&statement)
            .to_string();
        assert!(error.contains("immutable"), "{statement}: {error}");
        tx.rollback().await.unwrap();
    }
    assert_eq!(
        store.read_stream(&a, Version(1), 10).await.unwrap().len(),
        2
    );

    assert_eq!(store.delete_stream(&a).await.unwrap(), 2);
    assert!(
        store
            .read_stream(&a, Version(1), 10)
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        store.read_stream(&b, Version(1), 10).await.unwrap().len(),
        1
    );
    // The setting does not outlive the delete.
    let error = execute(
        &store,
        format!("DELETE FROM {s}.events WHERE stream_id = 'counter-a'"),
    )
    .await;
    assert_eq!(error, Ok(0), "no rows left to refuse");
    let error = execute(
        &store,
        format!("DELETE FROM {s}.events WHERE stream_id = 'counter-b'"),
    )
    .await
    .unwrap_err();
    assert!(error.contains("immutable"), "{error}");

    // `verify` finds nothing wrong with a deleted stream's tombstone.
    let report = store.admin().verify().await.unwrap();
    assert!(report.is_ok(), "{:?}", report.findings);
}

#[tokio::test]
async fn archived_streams_refuse_appends_on_every_path() {
    let store = fresh_pg_store().await;
    let archived = StreamId::new("counter", "archived");
    store
        .append(&archived, ExpectedVersion::NoStream, vec![event(1)])
        .await
        .unwrap();
    store.archive_stream(&archived).await.unwrap().unwrap();
    store
        .save_snapshot(eventsource::Snapshot {
            stream_id: archived.clone(),
            version: Version(1),
            state_fingerprint: "fp".into(),
            state: json!({}),
            taken_at: chrono::Utc::now(),
        })
        .await
        .unwrap();
    // Concurrent appends share transactions (group commit): the archived stream's append fails
    // alone, the others are written.
    let mut tasks = Vec::new();
    for i in 0..16u64 {
        let store = store.clone();
        let archived = archived.clone();
        tasks.push(tokio::spawn(async move {
            let stream = if i % 4 == 0 {
                archived
            } else {
                StreamId::new("counter", format!("open{i}"))
            };
            (
                stream.clone(),
                store
                    .append(&stream, ExpectedVersion::Any, vec![event(i)])
                    .await,
            )
        }));
    }
    for task in tasks {
        let (stream, outcome) = task.await.unwrap();
        if stream == archived {
            match outcome {
                Err(StoreError::StreamArchived { stream: s }) => assert_eq!(s, archived),
                other => panic!("expected StreamArchived, got {other:?}"),
            }
        } else {
            outcome.unwrap();
        }
    }
    assert_eq!(store.stream_version(&archived).await.unwrap(), Version(1));
    // Deleting an archived stream takes its snapshot too.
    assert_eq!(store.delete_stream(&archived).await.unwrap(), 1);
    assert!(store.load_snapshot(&archived).await.unwrap().is_none());
    let status = store.stream_status(&archived).await.unwrap().unwrap();
    assert!(status.deleted_at.is_some() && status.archived_at.is_some());
    match store
        .append(&archived, ExpectedVersion::NoStream, vec![event(9)])
        .await
    {
        Err(StoreError::Conflict { .. }) => {}
        other => panic!("the tombstone keeps the id taken: {other:?}"),
    }
}
