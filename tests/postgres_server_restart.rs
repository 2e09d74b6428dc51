//! A live projection runner while the PostgreSQL server restarts under it, twice: `run()` rides
//! out the outage and ends with a read model equal to a rebuild, and an event committed right
//! after a restart (before the shared listener could LISTEN again) is applied without waiting
//! for the poll interval.
//!
//! Restarts the test cluster itself, so this file holds one test: cargo runs test binaries one
//! after the other. It needs `PG_BIN`, `PG_DIR` and `PG_DATA`, which `scripts/test.sh` exports.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "support/postgres.rs"]
mod support;

use std::time::{Duration, Instant};

use eventsource::postgres::sqlx::{self, AssertSqlSafe, Row};
use eventsource::postgres::{PostgresStore, PostgresTx};
use eventsource::prelude::*;
use eventsource::{NewEvent, Project, Projection, ProjectionRunner, RecordedEvent, RunnerOptions};
use serde_json::json;
use support::{fresh_pg_store, restart_server};

#[derive(Event, Serialize, Deserialize, Clone, Debug)]
#[event(name = "ledger.posted")]
struct Posted {
    amount: i64,
}

struct Ledger {
    table: String,
}

impl Projection for Ledger {
    const NAME: &'static str = "ledger";
    type Handles = (Posted,);
    type Error = sqlx::Error;
}

impl Project<Posted, PostgresTx> for Ledger {
    async fn project(
        &mut self,
        event: Posted,
        at: &RecordedEvent,
        tx: &mut PostgresTx,
    ) -> Result<(), sqlx::Error> {
        tokio::time::sleep(Duration::from_millis(2)).await;
        sqlx::query(AssertSqlSafe(format!(
            "INSERT INTO {} (event_id, position, amount) VALUES ($1, $2, $3)",
            self.table
        )))
        .bind(at.event_id)
        .bind(at.position.0 as i64)
        .bind(event.amount)
        .execute(&mut **tx)
        .await?;
        Ok(())
    }
}

async fn applied(store: &PostgresStore) -> i64 {
    let sql = format!(
        "SELECT count(*) FROM \"{}\".ledger",
        store.schema().as_str()
    );
    sqlx::query_scalar(AssertSqlSafe(sql))
        .fetch_one(store.pool())
        .await
        .unwrap()
}

/// Polls `applied` (riding out the restart's dead connections) until it reaches `n`.
async fn wait_for_applied(store: &PostgresStore, n: i64, within: Duration) {
    let deadline = Instant::now() + within;
    let sql = format!(
        "SELECT count(*) FROM \"{}\".ledger",
        store.schema().as_str()
    );
    loop {
        let count: Result<i64, _> = sqlx::query_scalar(AssertSqlSafe(sql.clone()))
            .fetch_one(store.pool())
            .await;
        if count.as_ref().is_ok_and(|&c| c >= n) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{n} events not applied within {within:?} ({count:?})"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Appends, retrying while the server comes back.
async fn append_retrying(store: &PostgresStore, stream: &StreamId, amounts: std::ops::Range<i64>) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let batch: Vec<_> = amounts
            .clone()
            .map(|a| NewEvent::new("ledger.posted", 1, json!({ "amount": a })))
            .collect();
        match store.append(stream, ExpectedVersion::Any, batch).await {
            Ok(_) => return,
            Err(error) => {
                assert!(
                    error.is_transient(),
                    "an append during a restart fails transiently: {error}"
                );
                assert!(Instant::now() < deadline, "the server did not come back");
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_live_runner_survives_server_restarts_and_wakes_after_reconnecting() {
    let store = fresh_pg_store().await;
    let schema = store.schema().as_str().to_owned();
    sqlx::query(AssertSqlSafe(format!(
        "CREATE TABLE \"{schema}\".ledger (event_id uuid PRIMARY KEY, position bigint NOT NULL, amount bigint NOT NULL)"
    )))
    .execute(store.pool())
    .await
    .unwrap();
    let stream = StreamId::new("ledger", "restart");
    for chunk in 0..6 {
        append_retrying(&store, &stream, chunk * 100..chunk * 100 + 100).await;
    }

    let ledger = Ledger {
        table: format!("\"{schema}\".ledger"),
    };
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    // Polling every 10 minutes: after catching up, only a wake-up brings the runner back.
    let mut runner = ProjectionRunner::new(ledger, store.clone()).with_options(RunnerOptions {
        batch_size: 20,
        backoff: Duration::from_millis(50),
        max_backoff: Duration::from_millis(500),
        poll_interval: Duration::from_secs(600),
        ..RunnerOptions::default()
    });
    let live = tokio::spawn(async move { runner.run(async { stopped.await.unwrap_or(()) }).await });

    // 1. Mid-run: batches in flight while the server shuts down (sessions ended with 57P01).
    wait_for_applied(&store, 100, Duration::from_secs(30)).await;
    restart_server("fast");
    wait_for_applied(&store, 600, Duration::from_secs(60)).await;
    assert!(!live.is_finished(), "run() returned during the outage");

    // 2. Idle and waiting: the server goes down hard; an event committed as soon as it is back
    // is announced before the listener is listening again.
    tokio::time::sleep(Duration::from_millis(300)).await;
    restart_server("immediate");
    append_retrying(&store, &stream, 600..601).await;
    wait_for_applied(&store, 601, Duration::from_secs(20)).await;
    append_retrying(&store, &stream, 601..650).await;
    wait_for_applied(&store, 650, Duration::from_secs(20)).await;

    stop.send(()).unwrap();
    live.await
        .unwrap()
        .expect("run() rode out both restarts and stopped cleanly");
    let rows: Vec<(i64, i64)> = sqlx::query(AssertSqlSafe(format!(
        "SELECT position, amount FROM \"{schema}\".ledger ORDER BY position"
    )))
    .fetch_all(store.pool())
    .await
    .unwrap()
    .iter()
    .map(|r| (r.get(0), r.get(1)))
    .collect();
    let events: Vec<(i64, i64)> = sqlx::query(AssertSqlSafe(format!(
        "SELECT position, (payload->>'amount')::bigint FROM \"{schema}\".events ORDER BY position"
    )))
    .fetch_all(store.pool())
    .await
    .unwrap()
    .iter()
    .map(|r| (r.get(0), r.get(1)))
    .collect();
    assert_eq!(rows.len(), 650);
    assert_eq!(rows, events, "the read model equals a rebuild");
    assert_eq!(applied(&store).await, 650);

    // 3. Connections that sat in a pool through a restart are pinged and replaced before use,
    // not handed out dead: with sqlx's defaults (a ping before every use), and with
    // `ping_idle_after` (no ping for a connection given back less than 50 ms ago; a restart
    // takes longer). Eight appends at once leave several idle connections in each pool; right
    // after the restart, every append and read succeeds at its first try.
    let quick = PostgresStore::builder()
        .schema(schema.clone())
        .ping_idle_after(Duration::from_millis(50))
        .connect(&support::database_url())
        .await
        .unwrap();
    let eight = |store: &PostgresStore, prefix: &'static str, expected: u64| {
        let appends = (0..8).map(move |n| {
            let store = store.clone();
            async move {
                store
                    .append(
                        &StreamId::new("ledger", format!("{prefix}{n}")),
                        ExpectedVersion::Exact(eventsource::Version(expected)),
                        vec![NewEvent::new("ledger.posted", 1, json!({ "amount": n }))],
                    )
                    .await
            }
        });
        futures_util::future::join_all(appends)
    };
    for (pool, prefix) in [(&store, "warm"), (&quick, "quick")] {
        for appended in eight(pool, prefix, 0).await {
            appended.unwrap();
        }
        assert!(
            pool.pool().num_idle() >= 2,
            "{} idle",
            pool.pool().num_idle()
        );
    }
    restart_server("fast");
    for (pool, prefix) in [(&store, "warm"), (&quick, "quick")] {
        for appended in eight(pool, prefix, 1).await {
            appended.expect("an append right after the restart succeeds");
        }
        pool.read_stream(&stream, eventsource::Version(1), 10)
            .await
            .expect("a read right after the restart succeeds");
    }
}
