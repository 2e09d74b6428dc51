//! Decisions across streams against single-stream commands, at the store level, 1 and 8
//! clients: a decision reads its boundary (`read_query`), decides and appends on the condition
//! that the boundary did not change (`append_streams`), reading again when it did; a
//! single-stream command reads its stream (`read_stream`), decides and appends at the version
//! it read (`append` with `Exact`), reading again on a conflict. Each once on one shared
//! boundary (one course tag, one stream: every writer contends) and once on a boundary per
//! client (no contention). The figure is decisions written per second; the ratio is the
//! decision's time per write over the command's.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use eventsource::postgres::PostgresStore;
use eventsource::{
    DecisionStore, EventStore, ExpectedVersion, NewEvent, Query, QueryItem, StoreError,
    StreamAppend, StreamId, Tag, Version,
};
use eventsource_bench::measure::{Contest, Table, Unit};
use serde_json::json;

use crate::{BoxError, WARM_UP};

const SCHEMA: &str = "bench_dcb";
/// Writes per client per round.
const OPS: u64 = 20;

pub(crate) async fn contention(
    url: &str,
    table: &mut Table,
    rounds: usize,
) -> Result<(), BoxError> {
    let raw = sqlx::postgres::PgPoolOptions::new()
        .max_connections(2)
        .connect(url)
        .await?;
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
        "DROP SCHEMA IF EXISTS {SCHEMA} CASCADE"
    )))
    .execute(&raw)
    .await?;
    let store = PostgresStore::builder()
        .schema(SCHEMA)
        .max_connections(8)
        .connect(url)
        .await?;
    store.migrate().await?;

    for clients in [1u64, 8] {
        for shared in [true, false] {
            let scenario = format!(
                "decision vs single-stream command, {clients} client(s), {}",
                if shared {
                    "one shared boundary"
                } else {
                    "a boundary per client"
                }
            );
            let mut contest = Contest::new(
                &[
                    "read_query + append_streams on the condition",
                    "read_stream + append at the version read",
                ],
                WARM_UP,
            );
            let retries = [Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0))];
            for round in 0..WARM_UP + rounds {
                for who in contest.order(round) {
                    let start = Instant::now();
                    let mut tasks = Vec::new();
                    for client in 0..clients {
                        let store = store.clone();
                        let retries = Arc::clone(&retries[who]);
                        let boundary = if shared {
                            format!("{clients}-shared")
                        } else {
                            format!("{clients}-{client}")
                        };
                        tasks.push(tokio::spawn(async move {
                            for _ in 0..OPS {
                                let tries = if who == 0 {
                                    decide(&store, &boundary).await?
                                } else {
                                    command(&store, &boundary).await?
                                };
                                retries.fetch_add(tries - 1, Ordering::Relaxed);
                            }
                            Ok::<_, StoreError>(())
                        }));
                    }
                    for task in tasks {
                        task.await??;
                    }
                    contest.record(round, who, clients * OPS, start.elapsed());
                }
            }
            table.add(&scenario, &contest, Unit::PerSecond("writes"), None);
            let writes = (clients * OPS * (WARM_UP + rounds) as u64) as f64;
            println!(
                "{scenario}: retries per write, decision {:.2}, command {:.2}",
                retries[0].load(Ordering::Relaxed) as f64 / writes,
                retries[1].load(Ordering::Relaxed) as f64 / writes,
            );
        }
    }
    Ok(())
}

/// One decision on the boundary tagged `course:<boundary>`: how many times it was decided.
async fn decide(store: &PostgresStore, boundary: &str) -> Result<u64, StoreError> {
    let query = Query::new().item(QueryItem::tagged([Tag::new("course", boundary)]));
    let mut tries = 0;
    loop {
        tries += 1;
        let read = store.read_query(&query).await?;
        let seats = read.events.len();
        let event = NewEvent::new("seat.taken", 1, json!({ "seat": seats }))
            .with_tags([Tag::new("course", boundary)]);
        let append = StreamAppend::new(
            StreamId::new("student", uuid::Uuid::now_v7().simple()),
            ExpectedVersion::NoStream,
            vec![event],
        );
        match store
            .append_streams(vec![append], Some(read.condition(query.clone())))
            .await
        {
            Ok(_) => return Ok(tries),
            Err(StoreError::ConditionFailed { .. }) => {}
            Err(other) => return Err(other),
        }
    }
}

/// One command on the stream `course-<boundary>`: how many times it was decided.
async fn command(store: &PostgresStore, boundary: &str) -> Result<u64, StoreError> {
    let stream = StreamId::new("course", boundary);
    let mut tries = 0;
    loop {
        tries += 1;
        let events = store.read_stream(&stream, Version(1), usize::MAX).await?;
        let version = Version(events.len() as u64);
        let event = NewEvent::new("seat.taken", 1, json!({ "seat": events.len() }));
        match store
            .append(&stream, ExpectedVersion::Exact(version), vec![event])
            .await
        {
            Ok(_) => return Ok(tries),
            Err(StoreError::Conflict { .. }) => {}
            Err(other) => return Err(other),
        }
    }
}
