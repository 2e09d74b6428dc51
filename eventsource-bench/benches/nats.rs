//! The relay's throughput against raw async-nats publishing the same messages.
//!
//! Needs `DATABASE_URL` and `NATS_URL` (`scripts/bench.sh` starts both servers). Each round
//! relays the same 10,000 stored events into a fresh JetStream stream: the framework through
//! [`Relay::catch_up`] (reading the log from PostgreSQL in batches of 500, publishing with
//! `Nats-Msg-Id` and `Nats-Expected-Last-Sequence`, awaiting the acknowledgements, moving the
//! checkpoint in PostgreSQL after each batch), the baseline with async-nats alone (the
//! already-encoded messages, same subjects and headers, published in batches of 500 with
//! their acknowledgements awaited per batch: the least a safe relay does). `BENCH_ROUNDS` sets
//! the measured rounds (default 7, after 1 warm-up round). A third contestant is a relay by
//! hand without a checkpoint: `read_all` pages of 500, encode, publish, await the acks (the
//! framework's work minus the checkpoint commits, the lease and the order fence).
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use eventsource::nats::async_nats::jetstream;
use eventsource::nats::message::encode;
use eventsource::nats::{Relay, RelayOptions, SubjectPrefix, stream_config};
use eventsource::postgres::PostgresStore;
use eventsource::{Checkpoint, EventStore, ExpectedVersion, LogFilter, NewEvent, StreamId};
use eventsource_bench::measure::{Contest, Table, Unit};
use serde_json::json;

const EVENTS: u64 = 10_000;
const BATCH: usize = 500;
const WARM_UP: usize = 1;

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let database_url = std::env::var("DATABASE_URL").expect("DATABASE_URL");
    let nats_url = std::env::var("NATS_URL").expect("NATS_URL");
    let rounds: usize = std::env::var("BENCH_ROUNDS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(7);

    let store = PostgresStore::builder()
        .schema("bench_nats")
        .connect(&database_url)
        .await
        .unwrap();
    sqlx_reset(&store).await;
    store.migrate().await.unwrap();
    for n in 0..(EVENTS / 50) {
        let events = (0..50)
            .map(|i| {
                NewEvent::new(
                    "account.deposited",
                    1,
                    json!({ "amount": n * 50 + i, "memo": "a deposit of a typical size" }),
                )
            })
            .collect();
        store
            .append(
                &StreamId::new("account", n % 100),
                ExpectedVersion::Any,
                events,
            )
            .await
            .unwrap();
    }
    let mut recorded = Vec::new();
    let mut after = Checkpoint::START;
    loop {
        let batch = store
            .read_all(after, 1000, &LogFilter::all())
            .await
            .unwrap();
        let Some(last) = batch.last() else { break };
        after = last.checkpoint;
        recorded.extend(batch);
    }
    let prefix = SubjectPrefix::new("bench.events").unwrap();
    let messages: Vec<_> = recorded
        .iter()
        .map(|e| {
            (
                prefix.subject(e.stream_id.category(), &e.name),
                encode(e).unwrap(),
            )
        })
        .collect();

    let client = eventsource::nats::async_nats::connect(&nats_url)
        .await
        .unwrap();
    let js = jetstream::new(client);
    let mut contest = Contest::new(
        &[
            "relay",
            "raw async-nats",
            "read + encode + publish, no checkpoint",
        ],
        WARM_UP,
    );
    for round in 0..(WARM_UP + rounds) {
        for who in contest.order(round) {
            let stream = format!("BENCH{round}x{who}");
            let _ = js.delete_stream(&stream).await;
            js.create_stream(stream_config(&stream, &prefix, Duration::from_secs(120), 1))
                .await
                .unwrap();
            let started = Instant::now();
            if who == 0 {
                let mut relay = Relay::new(
                    store.clone(),
                    js.clone(),
                    format!("bench-relay-{round}"),
                    &stream,
                    prefix.clone(),
                )
                .with_options(RelayOptions {
                    batch_size: BATCH,
                    ..RelayOptions::default()
                });
                assert_eq!(relay.catch_up().await.unwrap(), EVENTS);
            } else if who == 2 {
                let mut after = Checkpoint::START;
                loop {
                    let batch = store
                        .read_all(after, BATCH, &LogFilter::all())
                        .await
                        .unwrap();
                    let Some(last) = batch.last() else { break };
                    after = last.checkpoint;
                    let mut acks = Vec::with_capacity(batch.len());
                    for e in &batch {
                        let subject = prefix.subject(e.stream_id.category(), &e.name);
                        acks.push(js.send_publish(subject, encode(e).unwrap()).await.unwrap());
                    }
                    for ack in acks {
                        ack.await.unwrap();
                    }
                }
            } else {
                for chunk in messages.chunks(BATCH) {
                    let mut acks = Vec::with_capacity(chunk.len());
                    for (subject, message) in chunk {
                        acks.push(
                            js.send_publish(subject.clone(), message.clone())
                                .await
                                .unwrap(),
                        );
                    }
                    for ack in acks {
                        ack.await.unwrap();
                    }
                }
            }
            contest.record(round, who, EVENTS, started.elapsed());
            js.delete_stream(&stream).await.unwrap();
        }
    }
    let mut table = Table::default();
    table.add(
        "relay 10,000 events to JetStream (batches of 500)",
        &contest,
        Unit::PerSecond("events"),
        None,
    );
    println!("NATS: nats-server at {nats_url}, {rounds} rounds");
    print!("{}", table.render());
}

/// Drops the bench schema (a fresh log every run).
async fn sqlx_reset(store: &PostgresStore) {
    eventsource::postgres::sqlx::query("DROP SCHEMA IF EXISTS bench_nats CASCADE")
        .execute(store.pool())
        .await
        .unwrap();
}
