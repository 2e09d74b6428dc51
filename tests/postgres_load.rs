//! Loads from PostgreSQL decode each payload straight from the row's JSON text
//! (`EventEnum::decode_json`): current and old versions, every shape of event enum, and
//! payloads that do not fit, which are typed decode errors naming the stream, version, position
//! and event, never a panic.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "support/postgres.rs"]
mod support;

use eventsource::postgres::PostgresStore;
use eventsource::postgres::sqlx::{self, AssertSqlSafe};
use eventsource::prelude::*;
use eventsource::{
    DecodeFailure, FoldPayload, LoadError, MemoryStore, NewEvent, Personal, StreamId, Version,
};
use serde_json::{Value, json};
use support::fresh_pg_store;
use uuid::Uuid;

/// Version 2 of `account.opened`, with a personal field (read as stored: a plain store holds
/// `{"$personal": ..}`, which this test writes by hand).
#[derive(Event, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[event(name = "account.opened", version = 2, previous = OpenedV1)]
struct Opened {
    owner: String,
    overdraft_limit: u64,
    #[serde(default)]
    email: Option<Personal<String>>,
}

#[derive(Event, Deserialize, Debug)]
#[event(name = "account.opened", version = 1)]
struct OpenedV1 {
    owner: String,
}

impl From<OpenedV1> for Opened {
    fn from(v1: OpenedV1) -> Self {
        Opened {
            owner: v1.owner,
            overdraft_limit: 0,
            email: None,
        }
    }
}

#[derive(Event, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[event(name = "account.deposited")]
struct Deposited {
    amount: u64,
    #[serde(default)]
    memo: Option<String>,
}

#[derive(Aggregate, Default, Serialize, Deserialize, Debug, PartialEq)]
#[aggregate(name = "account", events(Opened, Deposited))]
struct Account {
    owner: String,
    limit: u64,
    email: Option<String>,
    balance: u64,
    memos: Vec<String>,
}

impl Apply<Opened> for Account {
    fn apply(&mut self, event: &Opened) {
        self.owner.clone_from(&event.owner);
        self.limit = event.overdraft_limit;
        self.email = match &event.email {
            Some(Personal::Known(email)) => Some(email.clone()),
            _ => None,
        };
    }
}

impl Apply<Deposited> for Account {
    fn apply(&mut self, event: &Deposited) {
        self.balance += event.amount;
        self.memos.extend(event.memo.clone());
    }
}

/// A user's enum of events: unit, newtype and struct variants, one with an upcaster chain.
#[derive(EventEnum, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[event(prefix = "door.")]
enum DoorEvent {
    Opened,
    Labelled(String),
    #[event(version = 2, previous = MovedV1)]
    Moved {
        x: i64,
        y: i64,
    },
}

#[derive(Event, Deserialize, Debug)]
#[event(name = "door.moved")]
struct MovedV1 {
    x: i64,
}

impl From<MovedV1> for DoorEvent {
    fn from(v1: MovedV1) -> Self {
        DoorEvent::Moved { x: v1.x, y: 0 }
    }
}

#[derive(Aggregate, Default, Serialize, Deserialize, Debug, PartialEq)]
#[aggregate(name = "door", events = DoorEvent)]
struct Door {
    open: bool,
    label: String,
    at: (i64, i64),
}

impl Apply<DoorEvent> for Door {
    fn apply(&mut self, event: &DoorEvent) {
        match event {
            DoorEvent::Opened => self.open = true,
            DoorEvent::Labelled(label) => self.label.clone_from(label),
            DoorEvent::Moved { x, y } => self.at = (*x, *y),
        }
    }
}

async fn append(store: &impl EventStore, stream: &StreamId, events: Vec<NewEvent>) {
    store
        .append(stream, ExpectedVersion::Any, events)
        .await
        .unwrap();
}

fn opened_v1(owner: &str) -> NewEvent {
    NewEvent::new("account.opened", 1, json!({ "owner": owner }))
}

fn deposited(payload: Value) -> NewEvent {
    NewEvent::new("account.deposited", 1, payload)
}

/// The account rows of `history`, stored as-is, load from PostgreSQL (text) to the same state
/// as from the in-memory store (values).
async fn loads_alike(store: &PostgresStore, id: &str, history: Vec<NewEvent>) -> Account {
    let memory = MemoryStore::new();
    let from_pg = Repository::<Account, _>::new(store.clone());
    let from_memory = Repository::<Account, _>::new(memory.clone());
    append(store, &from_pg.stream_id(id), history.clone()).await;
    append(&memory, &from_memory.stream_id(id), history).await;
    let text = from_pg.load(id).await.unwrap();
    let value = from_memory.load(id).await.unwrap();
    assert_eq!(text.state, value.state, "{id}");
    assert_eq!(text.version, value.version, "{id}");
    text.state
}

#[tokio::test]
async fn current_and_old_versions_load_from_the_rows_text() {
    let store = fresh_pg_store().await;
    let state = loads_alike(
        &store,
        "old",
        vec![
            opened_v1("ada"),
            deposited(json!({ "amount": 5 })),
            deposited(json!({ "amount": 7, "memo": "r\u{e9}sum\u{e9} \"\\\n\u{1}" })),
        ],
    )
    .await;
    assert_eq!(
        (state.owner.as_str(), state.limit, state.balance),
        ("ada", 0, 12)
    );
    assert_eq!(state.memos, ["r\u{e9}sum\u{e9} \"\\\n\u{1}"]);

    let state = loads_alike(
        &store,
        "current",
        vec![
            NewEvent::new(
                "account.opened",
                2,
                json!({ "owner": "bob", "overdraft_limit": 50, "email": { "$personal": "b@x" } }),
            ),
            deposited(json!({ "amount": u64::MAX, "unknown": [1, { "x": null }] })),
        ],
    )
    .await;
    assert_eq!(
        (state.owner.as_str(), state.limit, state.balance),
        ("bob", 50, u64::MAX)
    );
    assert_eq!(state.email.as_deref(), Some("b@x"));

    // More events than a page of the fold's reads (5,000).
    let mut many = vec![opened_v1("cy")];
    many.extend((1..=5_200).map(|n| deposited(json!({ "amount": n }))));
    let state = loads_alike(&store, "many", many).await;
    assert_eq!(state.balance, 5_200 * 5_201 / 2);
}

#[tokio::test]
async fn every_variant_shape_of_an_event_enum_loads_from_text() {
    let store = fresh_pg_store().await;
    let repo = Repository::<Door, _>::new(store.clone());
    append(
        &store,
        &repo.stream_id("d"),
        vec![
            NewEvent::new("door.opened", 1, json!(null)),
            NewEvent::new("door.labelled", 1, json!("front")),
            NewEvent::new("door.moved", 1, json!({ "x": 3 })),
        ],
    )
    .await;
    let loaded = repo.load("d").await.unwrap();
    assert_eq!(
        loaded.state,
        Door {
            open: true,
            label: "front".into(),
            at: (3, 0)
        }
    );
    append(
        &store,
        &repo.stream_id("d"),
        vec![NewEvent::new("door.moved", 2, json!({ "x": -1, "y": 9 }))],
    )
    .await;
    assert_eq!(repo.load("d").await.unwrap().state.at, (-1, 9));
}

/// Stored payloads that do not fit their event, each in a stream of its own after a good
/// first event: the load is a typed decode error naming the stream, version, position and
/// event, with the payload's version, and its message stays short.
#[tokio::test]
async fn payloads_that_do_not_fit_are_typed_decode_errors() {
    let store = fresh_pg_store().await;
    let repo = Repository::<Account, _>::new(store.clone());
    let long = "x".repeat(100_000);
    let cases: Vec<(&str, NewEvent, &str)> = vec![
        ("type", deposited(json!({ "amount": "five" })), "payload"),
        ("negative", deposited(json!({ "amount": -5 })), "payload"),
        ("float", deposited(json!({ "amount": 1.5 })), "payload"),
        ("missing", deposited(json!({})), "payload"),
        ("null", deposited(json!(null)), "payload"),
        ("array", deposited(json!([true])), "payload"),
        ("long", deposited(json!({ "amount": long })), "payload"),
        (
            "personal",
            NewEvent::new(
                "account.opened",
                2,
                json!({ "owner": "a", "overdraft_limit": 1, "email": "plain" }),
            ),
            "payload",
        ),
        (
            "old",
            NewEvent::new("account.opened", 1, json!({ "owner": 1 })),
            "payload",
        ),
        (
            "newer",
            NewEvent::new("account.opened", 3, json!({ "owner": "a" })),
            "newer",
        ),
        (
            "unknown",
            NewEvent::new("account.closed", 1, json!({})),
            "unknown",
        ),
    ];
    for (id, event, kind) in cases {
        let stream = repo.stream_id(id);
        append(&store, &stream, vec![opened_v1("ada"), event]).await;
        let error = match repo.load(id).await {
            Err(LoadError::Decode(error)) => error,
            other => panic!("{id}: expected a decode error, got {other:?}"),
        };
        assert_eq!(
            (&error.stream, error.version),
            (&stream, Version(2)),
            "{id}"
        );
        match (kind, &error.source) {
            ("payload", DecodeFailure::Payload { version, .. }) => {
                assert_eq!(*version, error.schema_version, "{id}");
            }
            (
                "newer",
                DecodeFailure::VersionTooNew {
                    found: 3,
                    latest: 2,
                },
            ) => {}
            ("unknown", DecodeFailure::UnknownEvent) => {}
            (_, other) => panic!("{id}: expected {kind}, got {other:?}"),
        }
        let message = error.to_string();
        for part in [stream.as_str(), "version 2", &error.name, "position"] {
            assert!(message.contains(part), "{id}: `{message}` names {part}");
        }
        assert!(message.len() < 2_000, "{id}: {} bytes", message.len());
        // The same rows through the audit trail (values) fail alike.
        assert!(repo.history(id).await.is_err(), "{id}");
    }

    // Nested deeper than an append accepts (64) and than serde_json parses (128), written
    // with SQL: a payload failure too, not a stack overflow.
    let stream = repo.stream_id("deep");
    append(&store, &stream, vec![opened_v1("ada")]).await;
    let deep = format!("{}1{}", r#"{"amount": "#.repeat(1_000), "}".repeat(1_000));
    let schema = store.schema();
    sqlx::query(AssertSqlSafe(format!(
        "INSERT INTO \"{schema}\".events \
             (stream_id, version, event_id, name, schema_version, payload, metadata) \
         VALUES ($1, 2, $2, 'account.deposited', 1, $3::jsonb, '{{}}')"
    )))
    .bind(stream.as_str())
    .bind(Uuid::now_v7())
    .bind(deep)
    .execute(store.pool())
    .await
    .unwrap();
    sqlx::query(AssertSqlSafe(format!(
        "UPDATE \"{schema}\".streams SET version = 2 WHERE stream_id = $1"
    )))
    .bind(stream.as_str())
    .execute(store.pool())
    .await
    .unwrap();
    match repo.load("deep").await {
        Err(LoadError::Decode(error)) => {
            assert!(
                matches!(error.source, DecodeFailure::Payload { version: 1, .. }),
                "{error}"
            );
            assert_eq!(error.version, Version(2));
        }
        other => panic!("deep: expected a decode error, got {other:?}"),
    }
}

/// The narrow read marks a page as the stream's last exactly when no event follows it, a full
/// page included (so that a load of a stream whose length is a multiple of the page size does
/// not read an empty page).
#[tokio::test]
async fn a_fold_page_is_last_exactly_when_nothing_follows() {
    let store = fresh_pg_store().await;
    let stream = StreamId::new("account", "pages");
    let events = (1..=7).map(|n| deposited(json!({ "amount": n }))).collect();
    append(&store, &stream, events).await;
    for (from, max, count, last) in [
        (1, 7, 7, true),
        (1, 6, 6, false),
        (5, 3, 3, true),
        (5, 2, 2, false),
        (7, 1, 1, true),
        (8, 1, 0, true),
        (1, usize::MAX, 7, true),
        (2, 0, 0, false),
    ] {
        let page = store
            .read_stream_for_fold(&stream, Version(from), max)
            .await
            .unwrap();
        let versions: Vec<u64> = page.events.iter().map(|e| e.version.0).collect();
        let expected: Vec<u64> = (from..=7).take(count).collect();
        assert_eq!(versions, expected, "from {from}, max {max}");
        assert_eq!(page.last, last, "from {from}, max {max}");
        assert!(
            page.events
                .iter()
                .all(|e| matches!(e.payload, FoldPayload::Json(_))),
            "PostgreSQL hands over the text"
        );
    }
}

#[test]
fn the_payload_forms_compare_as_json() {
    let text = FoldPayload::Json(r#"{"amount": 5}"#.into());
    assert_eq!(text, FoldPayload::Value(json!({ "amount": 5 })));
    let decoded = text.decode::<AccountEvent>("account.deposited", 1).unwrap();
    assert_eq!(
        decoded,
        AccountEvent::from(Deposited {
            amount: 5,
            memo: None
        })
    );
}
