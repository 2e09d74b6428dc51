//! The NATS JetStream relay and projection source against real servers (PostgreSQL and
//! nats-server, started by `scripts/test.sh`): 10,000 events relayed exactly once and in
//! order, the relay process killed with SIGKILL and restarted, nats-server restarted under a
//! running relay and consumer, and a consumer's read model equal to a rebuild from PostgreSQL.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "support/nats.rs"]
mod nats_support;
#[path = "support/postgres.rs"]
mod support;

use std::collections::HashSet;
use std::process::{Command, Stdio};
use std::time::Duration;

use eventsource::nats::async_nats::jetstream;
use eventsource::nats::message::{decode, headers};
use eventsource::nats::{
    JetStreamSource, Relay, RelayOptions, SourceError, SourceOptions, SubjectPrefix,
};
use eventsource::postgres::sqlx::{self, AssertSqlSafe, Row};
use eventsource::postgres::{PostgresStore, PostgresTx};
use eventsource::prelude::*;
use eventsource::{
    Checkpoint, EventStore, LogFilter, NewEvent, Project, Projection, ProjectionRunner,
    ProjectionStore, RecordedEvent, Reset, StreamId,
};
use nats_support::{
    OwnServer, all_messages, connect, fresh_stream, message_count, nats_url, wait_until,
};
use serde_json::json;
use support::{database_url, fresh_pg_store};

const WINDOW: Duration = Duration::from_secs(120);
const LIMIT: Duration = Duration::from_secs(180);

#[derive(Event, Serialize, Deserialize, Clone, Debug)]
#[event(name = "ledger.posted")]
struct Posted {
    amount: i64,
}

#[derive(Debug, thiserror::Error)]
#[error("database: {0}")]
struct LedgerError(#[from] sqlx::Error);

/// A read model in `<schema>.ledger`: one row per applied event (a second apply of the same
/// event violates the primary key, so the source would stop), so rows prove exactly-once.
struct Ledger {
    table: String,
}

impl Ledger {
    async fn new(store: &PostgresStore) -> Ledger {
        let table = format!("\"{}\".ledger", store.schema().as_str());
        let sql = format!(
            "CREATE TABLE {table} (event_id uuid PRIMARY KEY, stream text NOT NULL, version bigint NOT NULL, position bigint NOT NULL, amount bigint NOT NULL, correlation uuid)"
        );
        sqlx::query(AssertSqlSafe(sql))
            .execute(store.pool())
            .await
            .unwrap();
        Ledger { table }
    }

    async fn rows(
        table: &str,
        store: &PostgresStore,
    ) -> Vec<(uuid::Uuid, String, i64, i64, i64, Option<uuid::Uuid>)> {
        let sql = format!(
            "SELECT event_id, stream, version, position, amount, correlation FROM {table} ORDER BY position"
        );
        sqlx::query(AssertSqlSafe(sql))
            .fetch_all(store.pool())
            .await
            .unwrap()
            .iter()
            .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3), r.get(4), r.get(5)))
            .collect()
    }

    async fn count(table: &str, store: &PostgresStore) -> i64 {
        sqlx::query(AssertSqlSafe(format!("SELECT count(*) FROM {table}")))
            .fetch_one(store.pool())
            .await
            .map(|row| row.get(0))
            .unwrap_or(0)
    }
}

impl Projection for Ledger {
    const NAME: &'static str = "ledger";
    type Handles = (Posted,);
    type Error = LedgerError;
}

impl Project<Posted, PostgresTx> for Ledger {
    async fn project(
        &mut self,
        event: Posted,
        at: &RecordedEvent,
        tx: &mut PostgresTx,
    ) -> Result<(), LedgerError> {
        let sql = format!(
            "INSERT INTO {} (event_id, stream, version, position, amount, correlation) VALUES ($1, $2, $3, $4, $5, $6)",
            self.table
        );
        sqlx::query(AssertSqlSafe(sql))
            .bind(at.event_id)
            .bind(at.stream_id.as_str())
            .bind(at.version.0 as i64)
            .bind(at.position.0 as i64)
            .bind(event.amount)
            .bind(at.metadata.correlation_id)
            .execute(&mut **tx)
            .await?;
        Ok(())
    }
}

impl Reset<PostgresTx> for Ledger {
    async fn reset(&mut self, tx: &mut PostgresTx) -> Result<(), LedgerError> {
        sqlx::query(AssertSqlSafe(format!("DELETE FROM {}", self.table)))
            .execute(&mut **tx)
            .await?;
        Ok(())
    }
}

/// Appends `count` events over 50 streams (with hostile characters in the ids), 50 per
/// append, amounts from `first_amount` on, every event with a correlation id.
async fn append(store: &PostgresStore, first_amount: i64, count: i64) {
    let mut amount = first_amount;
    let end = first_amount + count;
    while amount < end {
        let stream = StreamId::new("ledger", format!("acc {}.*>%", amount % 50));
        let batch: Vec<NewEvent> = (amount..(amount + 50).min(end))
            .map(|a| {
                let mut e = NewEvent::new("ledger.posted", 1, json!({ "amount": a }));
                e.metadata.correlation_id = Some(uuid::Uuid::now_v7());
                e
            })
            .collect();
        amount += batch.len() as i64;
        store
            .append(&stream, eventsource::ExpectedVersion::Any, batch)
            .await
            .unwrap();
    }
}

async fn all_events(store: &PostgresStore) -> Vec<RecordedEvent> {
    let mut out = Vec::new();
    let mut after = Checkpoint::START;
    loop {
        let batch = store
            .read_all(after, 1000, &LogFilter::all())
            .await
            .unwrap();
        let Some(last) = batch.last() else { return out };
        after = last.checkpoint;
        out.extend(batch);
    }
}

/// The stream holds exactly the store's events: each once, in checkpoint order, on the
/// subject of its category and name, with an envelope that decodes to the stored one.
async fn assert_stream_equals_log(
    js: &jetstream::Context,
    stream: &str,
    prefix: &SubjectPrefix,
    store: &PostgresStore,
) {
    let events = all_events(store).await;
    let messages = all_messages(js, stream).await;
    assert_eq!(
        messages.len(),
        events.len(),
        "messages in the stream vs events in the store"
    );
    let mut seen = HashSet::new();
    for (message, event) in messages.iter().zip(&events) {
        let info = message.info().unwrap();
        let decoded = decode(
            message.subject.as_str(),
            info.stream_sequence,
            message.headers.as_ref(),
            &message.payload,
        )
        .unwrap();
        assert!(
            seen.insert(decoded.event_id),
            "event {} twice in the stream",
            decoded.event_id
        );
        assert_eq!(
            &decoded, event,
            "the stream's order is the log's checkpoint order"
        );
        assert_eq!(
            message.subject.as_str(),
            prefix.subject(event.stream_id.category(), &event.name)
        );
        let id = message
            .headers
            .as_ref()
            .and_then(|h| h.get(headers::MSG_ID))
            .map(|v| v.as_str().to_owned());
        assert_eq!(id, Some(event.event_id.to_string()));
    }
}

fn relay_options() -> RelayOptions {
    RelayOptions {
        batch_size: 250,
        poll_interval: Duration::from_millis(200),
        ..RelayOptions::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_events_are_relayed_once_each_in_checkpoint_order() {
    let store = fresh_pg_store().await;
    let js = connect(&nats_url()).await;
    let (stream, prefix) = fresh_stream(&js, WINDOW).await;
    append(&store, 0, 10_000).await;

    let mut relay = Relay::new(store.clone(), js.clone(), "relay", &stream, prefix.clone())
        .with_options(relay_options());
    assert_eq!(relay.catch_up().await.unwrap(), 10_000);
    assert_eq!(relay.catch_up().await.unwrap(), 0, "nothing left to relay");
    let status = relay.status().await.unwrap();
    assert_eq!(status.lag, 0);
    assert_eq!(message_count(&js, &stream).await, 10_000);
    assert_stream_equals_log(&js, &stream, &prefix, &store).await;

    // A relay that lost its checkpoint (another name) publishes everything again: within the
    // duplicate window JetStream drops every repeat.
    append(&store, 10_000, 100).await;
    let mut again = Relay::new(
        store.clone(),
        js.clone(),
        "relay-from-scratch",
        &stream,
        prefix.clone(),
    )
    .with_options(relay_options());
    assert_eq!(again.catch_up().await.unwrap(), 10_100);
    assert_eq!(message_count(&js, &stream).await, 10_100);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relay_killed_with_sigkill_and_restarted_loses_and_repeats_nothing() {
    let store = fresh_pg_store().await;
    let js = connect(&nats_url()).await;
    let (stream, prefix) = fresh_stream(&js, WINDOW).await;
    append(&store, 0, 6_000).await;

    let spawn = || {
        Command::new(std::env::current_exe().unwrap())
            .args(["--exact", "relay_process", "--ignored", "--nocapture"])
            .env("RELAY_SCHEMA", store.schema().as_str())
            .env("RELAY_STREAM", &stream)
            .env("RELAY_PREFIX", prefix.as_str())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap()
    };
    let mut child = spawn();
    wait_until("the relay to publish 1,500 events", LIMIT, || async {
        message_count(&js, &stream).await >= 1_500
    })
    .await;
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    let published_at_kill = message_count(&js, &stream).await;
    assert!(published_at_kill < 6_000, "killed before the end");

    // Written while no relay runs.
    append(&store, 6_000, 1_000).await;
    let mut child = spawn();
    wait_until("the restarted relay to catch up", LIMIT, || async {
        message_count(&js, &stream).await >= 7_000
    })
    .await;
    // Kill it again while live, then let a third one find nothing to do.
    tokio::time::sleep(Duration::from_millis(300)).await;
    child.kill().unwrap();
    child.wait().unwrap();
    let mut relay = Relay::new(store.clone(), js.clone(), "relay", &stream, prefix.clone())
        .with_options(relay_options());
    relay.catch_up().await.unwrap();
    assert_eq!(relay.status().await.unwrap().lag, 0);
    assert_eq!(message_count(&js, &stream).await, 7_000);
    assert_stream_equals_log(&js, &stream, &prefix, &store).await;
}

/// The relay of the SIGKILL test, run as a child process (`--ignored` runs it; without the
/// environment it panics).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a child process of a_relay_killed_with_sigkill_and_restarted_loses_and_repeats_nothing"]
async fn relay_process() {
    let schema = std::env::var("RELAY_SCHEMA").expect("RELAY_SCHEMA");
    let store = PostgresStore::builder()
        .schema(schema)
        .max_connections(4)
        .connect(&database_url())
        .await
        .unwrap();
    let js = connect(&nats_url()).await;
    let prefix = SubjectPrefix::new(std::env::var("RELAY_PREFIX").unwrap()).unwrap();
    let mut relay = Relay::new(
        store,
        js,
        "relay",
        std::env::var("RELAY_STREAM").unwrap(),
        prefix,
    )
    .with_options(RelayOptions {
        batch_size: 100,
        ..relay_options()
    });
    relay.run(std::future::pending()).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_nats_server_restart_under_a_running_relay_and_consumer_loses_nothing() {
    // Disconnects and the relay's and the source's retries show with `--nocapture`.
    let _ = tracing_subscriber::fmt()
        .with_env_filter("eventsource_nats=warn,async_nats=info")
        .with_test_writer()
        .try_init();
    let mut server = OwnServer::start();
    let origin = fresh_pg_store().await;
    let reader = fresh_pg_store().await;
    let js = connect(&server.url()).await;
    let (stream, prefix) = fresh_stream(&js, WINDOW).await;
    let ledger = Ledger::new(&reader).await;
    let table = ledger.table.clone();

    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let stopped = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|stop| *stop).await;
    };
    let mut relay = Relay::new(origin.clone(), js.clone(), "relay", &stream, prefix.clone())
        .with_options(relay_options());
    let relay_task = tokio::spawn({
        let stop = stopped(stop_rx.clone());
        async move { relay.run(stop).await }
    });
    let mut source =
        JetStreamSource::new(ledger, reader.clone(), js.clone(), &stream, prefix.all())
            .with_options(SourceOptions {
                batch_size: 200,
                ..SourceOptions::default()
            });
    let source_task = tokio::spawn({
        let stop = stopped(stop_rx.clone());
        async move { source.run(stop).await }
    });

    // Enough for the relay to be mid-catch-up, with publishes in flight, when the server dies.
    append(&origin, 0, 8_000).await;
    wait_until("the relay to be under way", LIMIT, || async {
        message_count(&js, &stream).await >= 1_500
    })
    .await;
    server.kill();
    // Written while the server is down.
    append(&origin, 8_000, 1_000).await;
    tokio::time::sleep(Duration::from_millis(1_000)).await;
    server.restart();
    append(&origin, 9_000, 1_000).await;
    wait_until("every event in the read model", LIMIT, || async {
        Ledger::count(&table, &reader).await >= 10_000
    })
    .await;
    stop_tx.send(true).unwrap();
    relay_task.await.unwrap().unwrap();
    source_task.await.unwrap().unwrap();

    assert_eq!(message_count(&js, &stream).await, 10_000);
    assert_stream_equals_log(&js, &stream, &prefix, &origin).await;
    assert_eq!(Ledger::count(&table, &reader).await, 10_000);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_consumers_read_model_equals_a_rebuild_from_postgres() {
    let origin = fresh_pg_store().await;
    let reader = fresh_pg_store().await;
    let js = connect(&nats_url()).await;
    let (stream, prefix) = fresh_stream(&js, WINDOW).await;
    append(&origin, 0, 3_000).await;
    Relay::new(origin.clone(), js.clone(), "relay", &stream, prefix.clone())
        .catch_up()
        .await
        .unwrap();

    // A consumer that dies mid-run (its task aborted: batches committed but not acknowledged,
    // deliveries pending), then a new one that finishes the job.
    let ledger = Ledger::new(&reader).await;
    let table = ledger.table.clone();
    let options = SourceOptions {
        batch_size: 100,
        ack_wait: Duration::from_secs(2),
        ..SourceOptions::default()
    };
    let mut first = JetStreamSource::new(ledger, reader.clone(), js.clone(), &stream, prefix.all())
        .with_options(options.clone());
    let task = tokio::spawn(async move { first.run(std::future::pending()).await });
    wait_until("the first consumer to apply some events", LIMIT, || async {
        Ledger::count(&table, &reader).await >= 700
    })
    .await;
    task.abort();
    let _ = task.await;

    let mut second = JetStreamSource::new(
        Ledger {
            table: table.clone(),
        },
        reader.clone(),
        js.clone(),
        &stream,
        prefix.all(),
    )
    .with_options(options.clone());
    tokio::time::timeout(LIMIT, second.catch_up(std::future::pending()))
        .await
        .expect("the second consumer catches up")
        .unwrap();
    assert_eq!(Ledger::count(&table, &reader).await, 3_000);

    // A duplicate that slipped past the duplicate window (another Nats-Msg-Id) is skipped.
    let first_message = all_messages(&js, &stream).await.remove(0);
    let mut copy = first_message.headers.clone().unwrap();
    copy.insert(headers::MSG_ID, "another id");
    js.publish_with_headers(
        first_message.subject.clone(),
        copy,
        first_message.payload.clone(),
    )
    .await
    .unwrap()
    .await
    .unwrap();
    let mut third = JetStreamSource::new(
        Ledger {
            table: table.clone(),
        },
        reader.clone(),
        js.clone(),
        &stream,
        prefix.all(),
    )
    .with_options(options);
    tokio::time::timeout(LIMIT, third.catch_up(std::future::pending()))
        .await
        .expect("the third consumer catches up")
        .unwrap();

    // The same projection rebuilt from the origin PostgreSQL.
    let rebuilt = Ledger::new(&origin).await;
    let rebuilt_table = rebuilt.table.clone();
    ProjectionRunner::new(rebuilt, origin.clone())
        .rebuild(|_| {})
        .await
        .unwrap();
    let from_nats = Ledger::rows(&table, &reader).await;
    assert_eq!(from_nats.len(), 3_000);
    assert_eq!(from_nats, Ledger::rows(&rebuilt_table, &origin).await);
    assert_eq!(
        reader.load_checkpoint(Ledger::NAME).await.unwrap(),
        origin.load_checkpoint(Ledger::NAME).await.unwrap(),
        "the read model's checkpoint is the origin's"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_that_is_not_an_event_stops_the_consumer_and_is_named() {
    let reader = fresh_pg_store().await;
    let js = connect(&nats_url()).await;
    let (stream, prefix) = fresh_stream(&js, WINDOW).await;
    js.publish(prefix.subject("ledger", "ledger.posted"), "{}".into())
        .await
        .unwrap()
        .await
        .unwrap();
    let ledger = Ledger::new(&reader).await;
    let mut source =
        JetStreamSource::new(ledger, reader.clone(), js.clone(), &stream, prefix.all());
    let error = tokio::time::timeout(LIMIT, source.run(std::future::pending()))
        .await
        .expect("the consumer stops")
        .unwrap_err();
    assert!(matches!(error, SourceError::Message { .. }), "{error}");
    let text = error.to_string();
    assert!(
        text.contains("stream sequence 1") && text.contains("Eventsource-Event-Id"),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relay_without_its_stream_gives_up_after_its_retries_and_names_the_event() {
    let store = fresh_pg_store().await;
    let js = connect(&nats_url()).await;
    append(&store, 0, 3).await;
    let prefix = SubjectPrefix::new(format!("t{}.missing", uuid::Uuid::now_v7().simple())).unwrap();
    let mut relay = Relay::new(store.clone(), js, "relay", "NO_SUCH_STREAM", prefix).with_options(
        RelayOptions {
            backoff: Duration::from_millis(10),
            max_retries: Some(2),
            ..relay_options()
        },
    );
    let error = tokio::time::timeout(LIMIT, relay.catch_up())
        .await
        .expect("the relay gives up")
        .unwrap_err();
    let text = error.to_string();
    assert!(
        text.contains("ledger.posted")
            && text.contains("version 1")
            && text.contains("3 attempt(s)"),
        "{text}"
    );
    let status = relay.status().await.unwrap();
    assert_eq!(status.checkpoint, None, "nothing was acknowledged");
    assert_eq!(status.lag, 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_larger_than_max_payload_stops_the_relay_at_once() {
    let store = fresh_pg_store().await;
    let js = connect(&nats_url()).await;
    let (stream, prefix) = fresh_stream(&js, WINDOW).await;
    append(&store, 0, 2).await;
    // 1.5 MiB: the store takes it (its limit is 4 MiB), the server's default max_payload is 1 MiB.
    let big = NewEvent::new(
        "ledger.posted",
        1,
        json!({ "amount": 2, "memo": "x".repeat(1_500_000) }),
    );
    store
        .append(
            &StreamId::new("ledger", "big"),
            eventsource::ExpectedVersion::Any,
            vec![big],
        )
        .await
        .unwrap();
    let mut relay = Relay::new(store.clone(), js.clone(), "relay", &stream, prefix)
        .with_options(relay_options());
    let error = tokio::time::timeout(LIMIT, relay.catch_up())
        .await
        .expect("the relay stops instead of retrying for ever")
        .unwrap_err();
    let text = error.to_string();
    assert!(
        text.contains("ledger-big") && text.contains("max payload"),
        "{text}"
    );
    // The events before it were published and checkpointed.
    assert_eq!(message_count(&js, &stream).await, 2);
    assert_eq!(relay.status().await.unwrap().lag, 1);
}

/// A consumer whose stream does not exist gives up after `max_jetstream_failures` failed
/// attempts, naming itself, what failed and how often; told to back off 0 s, it still waits
/// between attempts (it retried in a busy loop before).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_consumer_without_its_stream_gives_up_after_its_retries_waiting_between_them() {
    let reader = fresh_pg_store().await;
    let js = connect(&nats_url()).await;
    let ledger = Ledger::new(&reader).await;
    let prefix = SubjectPrefix::new(format!("t{}.missing", uuid::Uuid::now_v7().simple())).unwrap();
    let mut source = JetStreamSource::new(ledger, reader, js, "NO_SUCH_STREAM", prefix.all())
        .with_options(SourceOptions {
            backoff: Duration::ZERO,
            max_jetstream_failures: Some(4),
            ..SourceOptions::default()
        });
    let started = std::time::Instant::now();
    let error = tokio::time::timeout(LIMIT, source.run(std::future::pending()))
        .await
        .expect("the consumer gives up")
        .unwrap_err();
    let waited = started.elapsed();
    match &error {
        SourceError::JetStream {
            action, attempts, ..
        } => {
            assert_eq!(*action, "consumer setup");
            assert_eq!(*attempts, 5);
        }
        other => panic!("{other}"),
    }
    let text = error.to_string();
    assert!(text.contains("ledger"), "{text}");
    // Four waits of at least 10, 20, 40 and 80 ms.
    assert!(waited >= Duration::from_millis(150), "{waited:?}");
}

/// A relay told to back off 0 s still waits between its attempts to publish to a stream that
/// does not exist (it retried in a busy loop before), then gives up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relay_with_a_zero_backoff_still_waits_between_its_retries() {
    let store = fresh_pg_store().await;
    let js = connect(&nats_url()).await;
    append(&store, 0, 1).await;
    let prefix = SubjectPrefix::new(format!("t{}.missing", uuid::Uuid::now_v7().simple())).unwrap();
    let mut relay = Relay::new(store.clone(), js, "relay", "NO_SUCH_STREAM", prefix).with_options(
        RelayOptions {
            backoff: Duration::ZERO,
            max_backoff: Duration::ZERO,
            max_retries: Some(4),
            ..relay_options()
        },
    );
    let started = std::time::Instant::now();
    let error = tokio::time::timeout(LIMIT, relay.catch_up())
        .await
        .expect("the relay gives up")
        .unwrap_err();
    let waited = started.elapsed();
    assert!(error.to_string().contains("5 attempt(s)"), "{error}");
    // Four waits of at least 10 ms.
    assert!(waited >= Duration::from_millis(40), "{waited:?}");
}
