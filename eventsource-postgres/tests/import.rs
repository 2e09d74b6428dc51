//! Bulk import (`PostgresStore::begin_import` / `import`) against a real PostgreSQL server:
//! imported events read back as appended ones, in input order, one transaction; every refusal
//! names its stream and version and leaves nothing behind.
//!
//! The tests need `DATABASE_URL` (`scripts/test.sh` starts a throwaway PostgreSQL and sets it);
//! without it they fail, they never skip.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use eventsource_core::{
    Checkpoint, EventStore, ExpectedVersion, LogFilter, NewEvent, StreamId, Version,
};
use eventsource_postgres::{ImportError, ImportEvent, PostgresStore};
use serde_json::json;
use uuid::Uuid;

async fn fresh_store() -> PostgresStore {
    let url = match std::env::var("DATABASE_URL") {
        Ok(url) if !url.trim().is_empty() => url,
        _ => panic!(
            "DATABASE_URL is not set: the import tests need a PostgreSQL server. Run \
             `scripts/test.sh` (it starts a throwaway PostgreSQL and sets DATABASE_URL)"
        ),
    };
    let store = PostgresStore::builder()
        .schema(format!("t_{}", Uuid::now_v7().simple()))
        .max_connections(4)
        .acquire_timeout(Duration::from_secs(20))
        .horizon_wait(Duration::from_secs(5))
        .connect(&url)
        .await
        .unwrap_or_else(|e| panic!("the import tests need a reachable PostgreSQL server: {e}"));
    store.migrate().await.unwrap();
    store
}

fn event(stream: &str, version: u64, amount: i64) -> ImportEvent {
    ImportEvent {
        stream: StreamId::from_raw(stream),
        version: Version(version),
        event: NewEvent::new(
            "account.deposited",
            1,
            json!({"amount": amount, "note": "tab\there \\ back\nslash \u{e9}"}),
        ),
    }
}

async fn all_events(store: &PostgresStore) -> Vec<eventsource_core::RecordedEvent> {
    let mut out = Vec::new();
    let mut from = Checkpoint::START;
    loop {
        let page = store.read_all(from, 1000, &LogFilter::all()).await.unwrap();
        if page.is_empty() {
            return out;
        }
        from = page.last().unwrap().checkpoint;
        out.extend(page);
    }
}

#[tokio::test]
async fn imported_events_read_back_like_appended_ones_in_input_order() {
    let store = fresh_store().await;
    store
        .append(
            &StreamId::from_raw("account-old"),
            ExpectedVersion::NoStream,
            vec![NewEvent::new("account.opened", 1, json!({}))],
        )
        .await
        .unwrap();
    // Interleaved streams, one continuing a stored stream, across several COPY batches.
    let mut input = Vec::new();
    for i in 1..=25u64 {
        input.push(event("account-a", i, i as i64));
        input.push(event("account-b", i, -(i as i64)));
        input.push(event("account-old", i + 1, 0));
    }
    let mut import = store.begin_import().await.unwrap().batch_size(7);
    for e in input.clone() {
        import.push(e).await.unwrap();
    }
    let imported = import.finish().await.unwrap();
    assert_eq!(imported.events, 75);
    assert_eq!(imported.streams, 3);
    let (first, last) = imported.positions.unwrap();
    assert_eq!(last.0 - first.0, 74);

    let log = all_events(&store).await;
    assert_eq!(log.len(), 76);
    for (recorded, sent) in log[1..].iter().zip(&input) {
        assert_eq!(recorded.stream_id, sent.stream);
        assert_eq!(recorded.version, sent.version);
        assert_eq!(recorded.event_id, sent.event.event_id);
        assert_eq!(recorded.payload, sent.event.payload);
        assert_eq!(recorded.name, sent.event.name);
    }
    // One transaction: every imported event carries the same transaction id.
    assert!(
        log[1..]
            .windows(2)
            .all(|w| w[0].checkpoint.transaction() == w[1].checkpoint.transaction())
    );
    // Heads moved: appends go on after the import.
    let next = store
        .append(
            &StreamId::from_raw("account-a"),
            ExpectedVersion::Exact(Version(25)),
            vec![NewEvent::new("account.closed", 1, json!({}))],
        )
        .await
        .unwrap();
    assert_eq!(next.first_version, Version(26));
    assert_eq!(
        store
            .stream_version(&StreamId::from_raw("account-old"))
            .await
            .unwrap(),
        Version(26)
    );
    let report = store.admin().verify().await.unwrap();
    assert!(report.is_ok(), "{report:?}");
}

#[tokio::test]
async fn an_import_into_a_stream_not_at_the_version_before_conflicts_and_writes_nothing() {
    let store = fresh_store().await;
    let stream = StreamId::from_raw("account-x");
    store
        .append(
            &stream,
            ExpectedVersion::NoStream,
            vec![
                NewEvent::new("account.opened", 1, json!({})),
                NewEvent::new("account.opened", 1, json!({})),
            ],
        )
        .await
        .unwrap();
    let error = store
        .import(vec![event("account-y", 1, 1), event("account-x", 1, 1)])
        .await
        .unwrap_err();
    match &error {
        ImportError::Conflict {
            index: 1,
            stream: s,
            first,
            actual,
        } => {
            assert_eq!(s, &stream);
            assert_eq!((*first, *actual), (Version(1), Version(2)));
        }
        other => panic!("expected a conflict, got {other:?}"),
    }
    assert!(error.to_string().contains("account-x"), "{error}");
    // Nothing of it: not even the new stream's head.
    assert_eq!(all_events(&store).await.len(), 2);
    assert_eq!(
        store
            .stream_version(&StreamId::from_raw("account-y"))
            .await
            .unwrap(),
        Version(0)
    );
    // Right after the head it goes in.
    store.import(vec![event("account-x", 3, 1)]).await.unwrap();
}

#[tokio::test]
async fn gaps_repeats_invalid_events_and_stored_ids_are_refused_by_name() {
    let store = fresh_store().await;
    let gap = store
        .import(vec![event("account-a", 1, 1), event("account-a", 3, 1)])
        .await
        .unwrap_err();
    assert!(
        matches!(
            &gap,
            ImportError::Version {
                index: 1,
                version: Version(3),
                previous: Some(Version(1)),
                ..
            }
        ),
        "{gap:?}"
    );
    let zero = store
        .import(vec![event("account-a", 0, 1)])
        .await
        .unwrap_err();
    assert!(
        matches!(zero, ImportError::Version { previous: None, .. }),
        "{zero:?}"
    );
    let mut bad = event("account-a", 1, 1);
    bad.event.name = "bad\u{0}name".into();
    let invalid = store.import(vec![bad]).await.unwrap_err();
    assert!(
        matches!(invalid, ImportError::Invalid { index: 0, .. }),
        "{invalid:?}"
    );

    let stored = store.import(vec![event("account-s", 1, 1)]).await.unwrap();
    assert_eq!(stored.events, 1);
    let existing = all_events(&store).await.remove(0);
    let mut again = event("account-t", 1, 1);
    again.event.event_id = existing.event_id;
    let duplicate = store
        .import(vec![event("account-u", 1, 1), again])
        .await
        .unwrap_err();
    match duplicate {
        ImportError::DuplicateEventId {
            index: 1,
            event_id,
            stream,
            version,
            existing: Some((at, at_version)),
        } => {
            assert_eq!(event_id, existing.event_id);
            assert_eq!(stream.as_str(), "account-t");
            assert_eq!(version, Version(1));
            assert_eq!((at.as_str(), at_version), ("account-s", Version(1)));
        }
        other => panic!("expected a duplicate, got {other:?}"),
    }
    let first = event("account-v", 1, 1);
    let mut repeated = event("account-w", 1, 1);
    repeated.event.event_id = first.event.event_id;
    let within = store.import(vec![first, repeated]).await.unwrap_err();
    assert!(
        matches!(within, ImportError::DuplicateEventId { existing: None, .. }),
        "{within:?}"
    );
    assert_eq!(all_events(&store).await.len(), 1);
}

#[tokio::test]
async fn a_dropped_import_writes_nothing_and_an_open_one_holds_readers_back() {
    let store = fresh_store().await;
    let mut import = store.begin_import().await.unwrap().batch_size(2);
    for i in 1..=5 {
        import.push(event("account-a", i, 1)).await.unwrap();
    }
    // Sent, not committed: invisible.
    assert!(all_events(&store).await.is_empty());
    drop(import);
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(all_events(&store).await.is_empty());
    assert_eq!(
        store
            .stream_version(&StreamId::from_raw("account-a"))
            .await
            .unwrap(),
        Version(0)
    );
    let imported = store.import(Vec::new()).await.unwrap();
    assert_eq!((imported.events, imported.positions), (0, None));
}

#[tokio::test]
async fn an_open_import_holds_later_appends_back_and_a_concurrent_append_to_its_stream_waits() {
    let store = fresh_store()
        .await
        .with_horizon_wait(Duration::from_millis(50));
    let mut import = store.begin_import().await.unwrap().batch_size(2);
    for v in 1..=3 {
        import.push(event("account-i", v, 1)).await.unwrap();
    }
    // Another stream's append commits while the import is open...
    let other = store
        .append(
            &StreamId::from_raw("account-other"),
            ExpectedVersion::NoStream,
            vec![NewEvent::new("account.opened", 1, json!({}))],
        )
        .await
        .unwrap();
    // ...but readers do not get past the open import: it may still write events before it.
    assert!(all_events(&store).await.is_empty());
    // The first batch went out: its head row is locked by the import. (Appended after the
    // other one: group commit may put concurrent appends in one statement, which would then
    // wait together.)
    let writer = store.clone();
    let blocked = tokio::spawn(async move {
        writer
            .append(
                &StreamId::from_raw("account-i"),
                ExpectedVersion::NoStream,
                vec![NewEvent::new("account.opened", 1, json!({}))],
            )
            .await
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(
        !blocked.is_finished(),
        "the append waits for the import's head lock"
    );
    let imported = import.finish().await.unwrap();
    let error = blocked.await.unwrap().unwrap_err();
    assert!(
        matches!(error, eventsource_core::StoreError::Conflict { .. }),
        "{error:?}"
    );
    // The import's events come first in the log, then the append that committed meanwhile.
    let log = all_events(&store).await;
    assert_eq!(log.len(), 4);
    assert!(log[..3].iter().all(|e| e.stream_id.as_str() == "account-i"));
    assert_eq!(log[3].position, other.first_position);
    // Its position lies between the import's (the import's last batch was sent after it
    // committed): the log orders by transaction, so it still comes after all of them.
    let (first, last) = imported.positions.unwrap();
    assert!(first < other.first_position && other.first_position < last);
}
