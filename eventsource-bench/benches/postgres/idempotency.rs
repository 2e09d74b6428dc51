//! The idempotency-key lookup with 1,000,000 events in the store: `find_event` by a derived id
//! (what a keyed command asks before deciding) against a raw indexed SELECT on the same table,
//! for an id that is stored (a retry) and one that is not (a first execution); and a keyed
//! command against the same command without a key.

use std::time::Instant;

use eventsource::postgres::PostgresStore;
use eventsource::prelude::*;
use eventsource::{CommandMetadata, EventStore, ExpectedVersion, NewEvent, StreamId};
use eventsource_bench::fixture::{Account, AccountEvent, Deposit, deposited};
use eventsource_bench::measure::{Contest, Table, Unit};
use uuid::Uuid;

use crate::{BoxError, WARM_UP};

const SCHEMA: &str = "bench_idem";
const FILL_STREAMS: u64 = 1_000;
const FILL_PER_STREAM: u64 = 1_000;
/// Keyed commands stored after the fill: the ids the "hit" lookups ask for.
const KEYED: usize = 200;
const NAMESPACE: Uuid = Uuid::from_u128(0x6265_6e63_6869_6465_6d70_6f74_656e_7400);

/// The raw side's lookup: every column of the row, by the unique event-id index.
const SELECT_BY_ID: &str = "SELECT * FROM bench_idem.events WHERE event_id = $1";

pub(crate) async fn lookup(url: &str, table: &mut Table, rounds: usize) -> Result<(), BoxError> {
    let raw = sqlx::postgres::PgPoolOptions::new()
        .max_connections(4)
        .connect(url)
        .await?;
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
        "DROP SCHEMA IF EXISTS {SCHEMA} CASCADE"
    )))
    .execute(&raw)
    .await?;
    let store = PostgresStore::builder()
        .schema(SCHEMA)
        .max_connections(4)
        .connect(url)
        .await?;
    store.migrate().await?;
    fill(&store).await?;
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!("ANALYZE {SCHEMA}.events")))
        .execute(&raw)
        .await?;

    // Keyed commands: their derived ids are what a retry looks up.
    let repo = Repository::<Account, _>::new(store.clone());
    let mut hits = Vec::with_capacity(KEYED);
    for i in 0..KEYED {
        let id = format!("keyed-{i}");
        let metadata = CommandMetadata::new().idempotency_key(format!("req-{i}"));
        repo.execute_with(&id, Deposit { amount: 5 }, metadata)
            .await?;
        let history = repo.history(&id).await?;
        hits.push(history[0].record.event_id);
    }
    let misses: Vec<Uuid> = (0..KEYED as u64)
        .map(|i| Uuid::new_v5(&NAMESPACE, &(u64::MAX - i).to_le_bytes()))
        .collect();
    let plan: Vec<String> =
        sqlx::query_scalar(sqlx::AssertSqlSafe(format!("EXPLAIN {SELECT_BY_ID}")))
            .bind(hits[0])
            .fetch_all(&raw)
            .await?;
    println!(
        "idempotency lookup plan at 1,000,000 events: {}",
        plan.join(" | ")
    );

    for (scenario, ids) in [
        (
            "idempotency lookup, key stored (a retry), 1,000,000 events",
            &hits,
        ),
        (
            "idempotency lookup, key not stored (a first run), 1,000,000 events",
            &misses,
        ),
    ] {
        let mut contest = Contest::new(
            &[
                "EventStore::find_event by the derived id",
                "raw SELECT by event_id (unique index), same table",
            ],
            WARM_UP,
        );
        for round in 0..WARM_UP + rounds {
            for who in contest.order(round) {
                let start = Instant::now();
                for &id in ids {
                    if who == 0 {
                        store.find_event(id).await?;
                    } else {
                        sqlx::query(SELECT_BY_ID)
                            .bind(id)
                            .fetch_optional(&raw)
                            .await?;
                    }
                }
                contest.record(round, who, ids.len() as u64, start.elapsed());
            }
        }
        table.add(scenario, &contest, Unit::Micros, None);
    }

    // What the lookup adds to a whole command (load, decide, append) on a store this size.
    let mut contest = Contest::new(
        &[
            "Repository::execute_with, a new idempotency key each",
            "Repository::execute, no key",
        ],
        WARM_UP,
    );
    let ops = 50;
    for round in 0..WARM_UP + rounds {
        for who in contest.order(round) {
            let start = Instant::now();
            for op in 0..ops {
                let id = format!("cmd-{who}-{}", op % 10);
                if who == 0 {
                    let key = format!("r{round}-{op}");
                    let metadata = CommandMetadata::new().idempotency_key(key);
                    repo.execute_with(&id, Deposit { amount: 1 }, metadata)
                        .await?;
                } else {
                    repo.execute(&id, Deposit { amount: 1 }).await?;
                }
            }
            contest.record(round, who, ops as u64, start.elapsed());
        }
    }
    table.add(
        "keyed command vs the same command without a key, 1,000,000 events",
        &contest,
        Unit::Millis,
        None,
    );
    Ok(())
}

/// 1,000,000 events: 1,000 streams of 1,000, appended in batches of 1,000 by four writers,
/// with ids spread like derived ones.
async fn fill(store: &PostgresStore) -> Result<(), BoxError> {
    let started = Instant::now();
    let mut writers = Vec::new();
    for writer in 0..4u64 {
        let store = store.clone();
        writers.push(tokio::spawn(async move {
            for s in (writer..FILL_STREAMS).step_by(4) {
                let stream = StreamId::new("account", format!("fill-{s}"));
                let events: Vec<NewEvent> = (0..FILL_PER_STREAM)
                    .map(|v| {
                        let n = s * FILL_PER_STREAM + v;
                        NewEvent::encode(&AccountEvent::from(deposited(n % 13 + 1)))
                            .expect("events encode")
                            .with_id(Uuid::new_v5(&NAMESPACE, &n.to_le_bytes()))
                    })
                    .collect();
                store
                    .append(&stream, ExpectedVersion::NoStream, events)
                    .await?;
            }
            Ok::<_, BoxError>(())
        }));
    }
    for writer in writers {
        writer.await??;
    }
    println!(
        "idempotency bench: stored {} events in {:.1} s",
        FILL_STREAMS * FILL_PER_STREAM,
        started.elapsed().as_secs_f64()
    );
    Ok(())
}
