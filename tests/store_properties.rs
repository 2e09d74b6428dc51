//! Property tests of what the stores accept (issue 15): whatever `append` accepts reads back
//! equal through `read_stream`, `read_all` and `find_event`; whatever it refuses is a typed
//! `StoreError::Invalid` and leaves nothing behind. Run against `MemoryStore` and PostgreSQL.
//!
//! Bounded for CI: `PROPTEST_CASES` (default below) cases per property and store.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "support/postgres.rs"]
mod support;

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};

use eventsource::{
    Checkpoint, EventStore, ExpectedVersion, LogFilter, Metadata, NewEvent, StoreError, StreamId,
    Version,
};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use serde_json::{Map, Value};

const MEMORY_CASES: u32 = 256;
const POSTGRES_CASES: u32 = 128;

fn runtime() -> &'static tokio::runtime::Runtime {
    static RUNTIME: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RUNTIME.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap()
    })
}

/// Text with the characters that break stores: NUL and other controls, quotes, backslashes,
/// non-ASCII, and now and then a long run.
fn hostile_text() -> impl Strategy<Value = String> {
    let piece = prop_oneof![
        24 => "[a-z0-9._-]{0,12}",
        1 => Just("\0".to_owned()),
        1 => "[\\x01-\\x1f\\x7f]{1,3}",
        1 => Just("\"\\'/~".to_owned()),
        1 => "\\PC{1,6}",
        1 => (1usize..3000).prop_map(|n| "x".repeat(n)),
    ];
    prop::collection::vec(piece, 0..4).prop_map(|pieces| pieces.concat())
}

fn json_number() -> impl Strategy<Value = Value> {
    prop_oneof![
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>()
            .prop_filter("JSON has no NaN or infinity", |f| f.is_finite())
            .prop_map(Value::from),
        Just(Value::from(0.1)),
        Just(Value::from(-0.0)),
        Just(Value::from(1e300)),
        Just(Value::from(5e-324)),
    ]
}

/// JSON values, some nested past the default depth limit of 64.
fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        json_number(),
        hostile_text().prop_map(Value::String),
    ];
    let tree = leaf.prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::vec((hostile_text(), inner), 0..6)
                .prop_map(|entries| Value::Object(entries.into_iter().collect::<Map<_, _>>())),
        ]
    });
    (tree, prop_oneof![16 => Just(0usize), 1 => 55usize..80]).prop_map(|(value, wrap)| {
        let mut value = value;
        for _ in 0..wrap {
            value = Value::Array(vec![value]);
        }
        value
    })
}

#[derive(Clone, Debug)]
struct Case {
    stream: String,
    events: Vec<(String, u32, Value, Map<String, Value>)>,
}

fn case() -> impl Strategy<Value = Case> {
    let name = prop_oneof![
        6 => "[a-z]{1,8}\\.[a-z_]{1,12}",
        1 => hostile_text(),
    ];
    let version = prop_oneof![8 => 1u32..5, 1 => any::<u32>()];
    let metadata = prop::collection::btree_map(hostile_text(), json_value(), 0..3)
        .prop_map(|m| m.into_iter().collect::<Map<_, _>>());
    let event = (name, version, json_value(), metadata);
    (hostile_text(), prop::collection::vec(event, 1..4))
        .prop_map(|(stream, events)| Case { stream, events })
}

/// Runs one case: append, then either read it back equal or find nothing written.
async fn check<S: EventStore>(store: &S, case: Case, serial: u64) -> Result<(), TestCaseError> {
    // A suffix keeps the cases' streams apart; the generated part keeps its hostility.
    let stream = StreamId::from_raw(format!("{}#{serial}", case.stream));
    let events: Vec<NewEvent> = case
        .events
        .iter()
        .map(|(name, version, payload, custom)| {
            NewEvent::new(name.clone(), *version, payload.clone()).with_metadata(Metadata {
                custom: custom.clone(),
                ..Metadata::default()
            })
        })
        .collect();
    let head_before = store.head_position().await.map_err(fail)?;
    match store
        .append(&stream, ExpectedVersion::NoStream, events.clone())
        .await
    {
        Ok(written) => {
            prop_assert_eq!(written.first_version, Version(1));
            prop_assert_eq!(written.last_version, Version(events.len() as u64));
            let read = store
                .read_stream(&stream, Version(1), 100)
                .await
                .map_err(fail)?;
            prop_assert_eq!(read.len(), events.len());
            for (stored, sent) in read.iter().zip(&events) {
                prop_assert_eq!(&stored.stream_id, &stream);
                prop_assert_eq!(stored.event_id, sent.event_id);
                prop_assert_eq!(&stored.name, &sent.name);
                prop_assert_eq!(stored.schema_version, sent.schema_version);
                prop_assert_eq!(&stored.payload, &sent.payload);
                prop_assert_eq!(&stored.metadata, &sent.metadata);
                let found = store.find_event(sent.event_id).await.map_err(fail)?;
                prop_assert_eq!(found.as_ref().map(|e| &e.payload), Some(&sent.payload));
            }
            // The global log holds them too, after the checkpoint just before the first.
            let ids: Vec<_> = events.iter().map(|e| e.event_id).collect();
            let mut after = Checkpoint::START;
            let mut seen = Vec::new();
            loop {
                let page = store
                    .read_all(after, 500, &LogFilter::all())
                    .await
                    .map_err(fail)?;
                let Some(last) = page.last() else { break };
                after = last.checkpoint;
                seen.extend(
                    page.into_iter()
                        .filter(|e| e.stream_id == stream)
                        .map(|e| (e.event_id, e.payload)),
                );
            }
            prop_assert_eq!(seen.iter().map(|(id, _)| *id).collect::<Vec<_>>(), ids);
            for ((_, payload), sent) in seen.iter().zip(&events) {
                prop_assert_eq!(payload, &sent.payload);
            }
        }
        Err(StoreError::Invalid(invalid)) => {
            // Refused with a short message, and nothing of the batch is anywhere.
            let message = invalid.to_string();
            prop_assert!(
                message.len() < 700,
                "message too long: {} bytes",
                message.len()
            );
            prop_assert_eq!(
                store.stream_version(&stream).await.map_err(fail)?,
                Version(0)
            );
            for event in &events {
                prop_assert!(
                    store
                        .find_event(event.event_id)
                        .await
                        .map_err(fail)?
                        .is_none()
                );
            }
            let head_after = store.head_position().await.map_err(fail)?;
            prop_assert_eq!(head_after, head_before);
        }
        Err(other) => {
            return Err(TestCaseError::fail(format!(
                "append failed with an error other than Invalid: {other}"
            )));
        }
    }
    Ok(())
}

fn fail(e: StoreError) -> TestCaseError {
    TestCaseError::fail(e.to_string())
}

fn run<S: EventStore + Clone>(store: S, cases: u32) -> (u32, u32) {
    static SERIAL: AtomicU64 = AtomicU64::new(0);
    let accepted = std::sync::Arc::new(AtomicU64::new(0));
    let total = std::sync::Arc::new(AtomicU64::new(0));
    // `PROPTEST_CASES` raises the count for a longer local run.
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(cases);
    let mut runner = TestRunner::new(Config {
        cases,
        failure_persistence: None,
        ..Config::default()
    });
    let (a, t) = (accepted.clone(), total.clone());
    let result = runner.run(&case(), move |case| {
        let serial = SERIAL.fetch_add(1, Ordering::Relaxed);
        let store = store.clone();
        let outcome = runtime().block_on(async move {
            let stream = StreamId::from_raw(format!("{}#{serial}", case.stream));
            let result = check(&store, case, serial).await;
            let stored = store.stream_version(&stream).await.map(|v| v.0 > 0);
            (result, stored)
        });
        t.fetch_add(1, Ordering::Relaxed);
        if let (_, Ok(true)) = outcome {
            a.fetch_add(1, Ordering::Relaxed);
        }
        outcome.0
    });
    if let Err(e) = result {
        panic!("{e}");
    }
    (
        accepted.load(Ordering::Relaxed) as u32,
        total.load(Ordering::Relaxed) as u32,
    )
}

#[test]
fn memory_store_reads_back_what_it_accepts() {
    let (accepted, total) = run(eventsource::MemoryStore::new(), MEMORY_CASES);
    eprintln!("memory: {accepted} of {total} cases accepted, the rest refused as Invalid");
    // Both sides of the property were exercised.
    assert!(accepted > 0 && accepted < total, "{accepted} of {total}");
}

#[test]
fn postgres_store_reads_back_what_it_accepts() {
    let store = runtime().block_on(support::fresh_pg_store());
    let (accepted, total) = run(store, POSTGRES_CASES);
    eprintln!("postgres: {accepted} of {total} cases accepted, the rest refused as Invalid");
    assert!(accepted > 0 && accepted < total, "{accepted} of {total}");
}

// ---------------------------------------------------------------------------------------------
// Decoding whatever a stored row holds: typed errors, never a panic.

mod decoding {
    use eventsource::prelude::*;
    use serde::{Deserialize, Serialize};

    #[derive(Event, Serialize, Deserialize, Clone, Debug, PartialEq)]
    #[event(name = "thing.added", version = 2, previous = AddedV1)]
    pub(crate) struct Added {
        pub(crate) amount: u64,
        pub(crate) note: Option<String>,
        pub(crate) tags: Vec<String>,
    }

    #[derive(Event, Deserialize)]
    #[event(name = "thing.added", version = 1)]
    pub(crate) struct AddedV1 {
        pub(crate) amount: i32,
    }

    impl TryFrom<AddedV1> for Added {
        type Error = String;
        fn try_from(old: AddedV1) -> Result<Self, String> {
            let amount =
                u64::try_from(old.amount).map_err(|_| format!("negative amount {}", old.amount))?;
            Ok(Added {
                amount,
                note: None,
                tags: Vec::new(),
            })
        }
    }

    #[derive(Event, Serialize, Deserialize, Clone, Debug, PartialEq)]
    #[event(name = "thing.renamed")]
    pub(crate) struct Renamed {
        pub(crate) name: String,
    }

    #[derive(Debug, thiserror::Error)]
    #[error("never")]
    pub(crate) struct Never;

    #[derive(Aggregate, Default, Serialize, Deserialize, Clone, Debug)]
    #[aggregate(name = "thing", error = Never, events(Added, Renamed), commands())]
    pub(crate) struct Thing {
        pub(crate) total: u64,
    }

    impl Apply<Added> for Thing {
        fn apply(&mut self, e: &Added) {
            self.total = self.total.saturating_add(e.amount);
        }
    }
    impl Apply<Renamed> for Thing {
        fn apply(&mut self, _: &Renamed) {}
    }
}

/// Arbitrary rows as another writer (an older release, a hand-made SQL fix) could leave them.
fn stored_row() -> impl Strategy<Value = (String, i64, Value, Value)> {
    let name = prop_oneof![
        Just("thing.added".to_owned()),
        Just("thing.renamed".to_owned()),
        "[a-z.]{0,12}",
    ];
    let version = prop_oneof![4 => 0i64..4, 1 => any::<i64>()];
    let metadata = prop_oneof![
        Just(serde_json::json!({})),
        Just(serde_json::json!({"correlation_id": "not a uuid"})),
        Just(serde_json::json!({"custom": 5})),
        json_value(),
    ];
    let payload = prop_oneof![
        Just(serde_json::json!({"amount": 5})),
        Just(serde_json::json!({"amount": -5})),
        Just(serde_json::json!({"amount": 5, "note": null, "tags": ["a"]})),
        Just(serde_json::json!({"amount": 18446744073709551615u64, "note": "x", "tags": []})),
        Just(serde_json::json!({"amount": 1.5e300, "note": 3, "tags": {}})),
        json_value(),
    ];
    (name, version, payload, metadata)
}

#[test]
fn stored_rows_of_any_shape_decode_to_typed_errors_on_postgres() {
    use eventsource::postgres::PostgresStore;

    let store: PostgresStore = runtime().block_on(support::fresh_pg_store());
    let schema = store.schema().as_str().to_owned();
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(POSTGRES_CASES);
    let mut runner = TestRunner::new(Config {
        cases,
        failure_persistence: None,
        ..Config::default()
    });
    static SERIAL: AtomicU64 = AtomicU64::new(0);
    let (ok, typed) = (AtomicU64::new(0), AtomicU64::new(0));
    let result = runner.run(&stored_row(), |(name, version, payload, metadata)| {
        let serial = SERIAL.fetch_add(1, Ordering::Relaxed);
        let stream = StreamId::new("thing", serial);
        let outcome = runtime().block_on(async {
            let insert = format!(
                "INSERT INTO \"{schema}\".events (stream_id, version, event_id, name, schema_version, payload, metadata) \
                 VALUES ($1, 1, $2, $3, $4, $5::text::jsonb, $6::text::jsonb)"
            );
            eventsource::postgres::sqlx::query(eventsource::postgres::sqlx::AssertSqlSafe(insert))
                .bind(stream.as_str())
                .bind(uuid::Uuid::now_v7())
                .bind(&name)
                .bind(version)
                .bind(payload.to_string())
                .bind(metadata.to_string())
                .execute(store.pool())
                .await
                // What PostgreSQL itself cannot store (a NUL) is no row to decode.
                .map_err(|e| TestCaseError::reject(format!("raw insert: {e}")))?;
            // Neither the store nor the decoder may panic; each returns a value or a typed error.
            let read = store.read_stream(&stream, Version(1), 10).await;
            let decoded = match &read {
                Ok(rows) => rows
                    .iter()
                    .map(|row| eventsource::decode_event::<decoding::Thing>(row).map(|_| ()))
                    .map(|r| r.map_err(|e| e.to_string()))
                    .collect::<Vec<_>>(),
                Err(e) => vec![Err(e.to_string())],
            };
            let loaded = eventsource::Repository::<decoding::Thing, _>::new(store.clone())
                .load(stream.as_str().trim_start_matches("thing-"))
                .await
                .map(|_| ())
                .map_err(|e| e.to_string());
            Ok::<_, TestCaseError>((decoded, loaded))
        })?;
        let (decoded, loaded) = outcome;
        for message in decoded.iter().filter_map(|r| r.as_ref().err()).chain(loaded.as_ref().err()) {
            prop_assert!(message.len() < 1200, "message of {} bytes: {message}", message.len());
            prop_assert!(message.contains(stream.as_str()), "message does not name the stream: {message}");
        }
        if loaded.is_ok() {
            ok.fetch_add(1, Ordering::Relaxed);
        } else {
            typed.fetch_add(1, Ordering::Relaxed);
        }
        Ok(())
    });
    if let Err(e) = result {
        panic!("{e}");
    }
    let (ok, typed) = (ok.into_inner(), typed.into_inner());
    eprintln!("stored rows: {ok} loaded, {typed} typed errors, 0 panics");
    assert!(ok > 0 && typed > 0, "{ok} loaded, {typed} errors");
}
