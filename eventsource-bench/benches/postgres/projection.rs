//! Projection catch-up: 100,000 events of 1,000 accounts folded into a PostgreSQL read model
//! (a balance per account) by the `ProjectionRunner`, against raw sqlx doing the same work, and
//! against the bare speed of reading and decoding the log.

use std::collections::HashMap;
use std::time::Instant;

use eventsource::postgres::{PostgresStore, PostgresTx};
use eventsource::prelude::*;
use eventsource::{Batched, Flush};
use eventsource::{Envelope, RunnerOptions};
use eventsource_bench::fixture::{Account, Deposited, Opened, Withdrawn, nth_event};
use eventsource_bench::measure::{Contest, Table, Unit};
use serde_json::Value;
use sqlx::{PgPool, Row};

use crate::{BoxError, WARM_UP};

const SCHEMA: &str = "bench_proj";
const ACCOUNTS: u64 = 1_000;
const EVENTS_PER_ACCOUNT: u64 = 100;
const EVENTS: u64 = ACCOUNTS * EVENTS_PER_ACCOUNT;
/// The runner's batch: one transaction (read-model writes and checkpoint) per batch.
const BATCH: usize = 500;

const UPSERT: &str = "INSERT INTO bench_proj.balances AS b (stream_id, balance, movements) \
     SELECT * FROM UNNEST($1::text[], $2::bigint[], $3::bigint[]) \
     ON CONFLICT (stream_id) DO UPDATE \
     SET balance = b.balance + EXCLUDED.balance, movements = b.movements + EXCLUDED.movements";

/// Balances per account, written to `bench_proj.balances` with one multi-row UPSERT per batch
/// of the runner, in the batch's transaction (with the checkpoint): the changes of a batch are
/// folded in memory by the handlers and written by the end-of-batch hook (`Flush`).
///
/// Its handlers read the stream id only, so it declares the lean envelope (`LEAN`), as such a
/// projection would; `Balances<false>` reads the full one, measured beside it.
#[derive(Default)]
struct Balances<const LEAN: bool> {
    pending: HashMap<String, (i64, i64)>,
}

impl<const LEAN: bool> Balances<LEAN> {
    fn fold(&mut self, stream: &str, delta: i64) {
        let entry = match self.pending.get_mut(stream) {
            Some(entry) => entry,
            None => self.pending.entry(stream.to_owned()).or_default(),
        };
        entry.0 += delta;
        entry.1 += 1;
    }
}

async fn flush(
    pending: &mut HashMap<String, (i64, i64)>,
    executor: impl sqlx::PgExecutor<'_>,
) -> Result<(), sqlx::Error> {
    let (mut streams, mut balances, mut movements) = (Vec::new(), Vec::new(), Vec::new());
    for (stream, (balance, moves)) in pending.drain() {
        streams.push(stream);
        balances.push(balance);
        movements.push(moves);
    }
    sqlx::query(UPSERT)
        .bind(streams)
        .bind(balances)
        .bind(movements)
        .execute(executor)
        .await?;
    Ok(())
}

impl<const LEAN: bool> Projection for Balances<LEAN> {
    const NAME: &'static str = if LEAN {
        "bench_balances"
    } else {
        "bench_balances_full"
    };
    type Handles = Batched<(Opened, Deposited, Withdrawn)>;
    type Error = sqlx::Error;
    const ENVELOPE: Envelope = if LEAN { Envelope::Lean } else { Envelope::Full };
}

impl<const LEAN: bool> Flush<PostgresTx> for Balances<LEAN> {
    async fn flush(&mut self, tx: &mut PostgresTx) -> Result<(), sqlx::Error> {
        // Cleared also when the write fails: the runner applies the batch again.
        let written = flush(&mut self.pending, &mut **tx).await;
        self.pending.clear();
        written
    }
}

impl<const LEAN: bool> Project<Opened, PostgresTx> for Balances<LEAN> {
    async fn project(
        &mut self,
        _: Opened,
        record: &RecordedEvent,
        _: &mut PostgresTx,
    ) -> Result<(), sqlx::Error> {
        self.fold(record.stream_id.as_str(), 0);
        Ok(())
    }
}

impl<const LEAN: bool> Project<Deposited, PostgresTx> for Balances<LEAN> {
    async fn project(
        &mut self,
        event: Deposited,
        record: &RecordedEvent,
        _: &mut PostgresTx,
    ) -> Result<(), sqlx::Error> {
        self.fold(record.stream_id.as_str(), event.amount as i64);
        Ok(())
    }
}

impl<const LEAN: bool> Project<Withdrawn, PostgresTx> for Balances<LEAN> {
    async fn project(
        &mut self,
        event: Withdrawn,
        record: &RecordedEvent,
        _: &mut PostgresTx,
    ) -> Result<(), sqlx::Error> {
        self.fold(record.stream_id.as_str(), -(event.amount as i64));
        Ok(())
    }
}

/// Decodes a row's payload by hand into the balance change it makes.
fn raw_delta(name: &str, payload: Value) -> Result<i64, BoxError> {
    Ok(match name {
        "account.opened" => {
            serde_json::from_value::<Opened>(payload)?;
            0
        }
        "account.deposited" => serde_json::from_value::<Deposited>(payload)?.amount as i64,
        "account.withdrawn" => -(serde_json::from_value::<Withdrawn>(payload)?.amount as i64),
        other => return Err(format!("unknown event {other}").into()),
    })
}

/// The raw equivalent of the runner: pages of `BATCH` rows by position, decoded and folded by
/// hand, each page's balances and checkpoint written in one transaction.
async fn raw_catch_up(pool: &PgPool) -> Result<u64, BoxError> {
    let mut after = 0_i64;
    let mut applied = 0;
    loop {
        let rows = sqlx::query(
            "SELECT position, stream_id, name, payload FROM bench_proj.events \
             WHERE position > $1 ORDER BY position LIMIT $2",
        )
        .bind(after)
        .bind(BATCH as i64)
        .fetch_all(pool)
        .await?;
        let Some(last) = rows.last() else {
            return Ok(applied);
        };
        after = last.try_get("position")?;
        let mut pending: HashMap<String, (i64, i64)> = HashMap::new();
        for row in &rows {
            let delta = raw_delta(row.try_get("name")?, row.try_get("payload")?)?;
            let stream: String = row.try_get("stream_id")?;
            let entry = pending.entry(stream).or_default();
            entry.0 += delta;
            entry.1 += 1;
        }
        let mut tx = pool.begin().await?;
        flush(&mut pending, &mut *tx).await?;
        sqlx::query(
            "INSERT INTO bench_proj.raw_checkpoint (id, position) VALUES (1, $1) \
             ON CONFLICT (id) DO UPDATE SET position = EXCLUDED.position",
        )
        .bind(after)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        applied += rows.len() as u64;
    }
}

/// Reading and decoding the log, nothing else: one SELECT of every row, decoded by hand.
async fn raw_read_decode(pool: &PgPool) -> Result<u64, BoxError> {
    let rows = sqlx::query("SELECT name, payload FROM bench_proj.events ORDER BY position")
        .fetch_all(pool)
        .await?;
    let mut total = 0_i64;
    for row in &rows {
        total += raw_delta(row.try_get("name")?, row.try_get("payload")?)?;
    }
    std::hint::black_box(total);
    Ok(rows.len() as u64)
}

async fn reset(pool: &PgPool) -> Result<(), BoxError> {
    sqlx::raw_sql(
        "DELETE FROM bench_proj.checkpoints; TRUNCATE bench_proj.balances, bench_proj.raw_checkpoint",
    )
    .execute(pool)
    .await?;
    Ok(())
}

/// Seeds 100,000 events in a schema of their own, then measures catch-ups from zero.
pub(crate) async fn catch_up(url: &str, table: &mut Table, rounds: usize) -> Result<(), BoxError> {
    let store = PostgresStore::builder()
        .schema(SCHEMA)
        .max_connections(4)
        .connect(url)
        .await?;
    let pool = store.pool().clone();
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
        "DROP SCHEMA IF EXISTS {SCHEMA} CASCADE"
    )))
    .execute(&pool)
    .await?;
    store.migrate().await?;
    sqlx::raw_sql(
        "CREATE TABLE bench_proj.balances (stream_id text PRIMARY KEY, balance bigint NOT NULL, \
                                           movements bigint NOT NULL); \
         CREATE TABLE bench_proj.raw_checkpoint (id int PRIMARY KEY, position bigint NOT NULL);",
    )
    .execute(&pool)
    .await?;
    let accounts = Repository::<Account, _>::new(store.clone());
    for account in 0..ACCOUNTS {
        let events = (0..EVENTS_PER_ACCOUNT).map(nth_event);
        accounts
            .append(format!("p{account}"), ExpectedVersion::NoStream, events)
            .await?;
    }
    sqlx::raw_sql("VACUUM ANALYZE bench_proj.events")
        .execute(&pool)
        .await?;

    let mut contest = Contest::new(
        &[
            "ProjectionRunner::catch_up into a PostgreSQL table (Envelope::Lean)",
            "raw paged SELECT + decode + same writes, by hand",
            "raw SELECT + decode of the log, no writes",
            "ProjectionRunner::catch_up, the same projection reading Envelope::Full",
        ],
        WARM_UP,
    );
    for round in 0..WARM_UP + rounds {
        for who in contest.order(round) {
            reset(&pool).await?;
            let start = Instant::now();
            let options = RunnerOptions {
                batch_size: BATCH,
                ..RunnerOptions::default()
            };
            let applied = match who {
                0 => {
                    let mut runner =
                        ProjectionRunner::new(Balances::<true>::default(), store.clone())
                            .with_options(options);
                    runner.catch_up().await?.applied
                }
                1 => raw_catch_up(&pool).await?,
                2 => raw_read_decode(&pool).await?,
                _ => {
                    let mut runner =
                        ProjectionRunner::new(Balances::<false>::default(), store.clone())
                            .with_options(options);
                    runner.catch_up().await?.applied
                }
            };
            let elapsed = start.elapsed();
            if applied != EVENTS {
                return Err(format!("contestant {who} applied {applied} events").into());
            }
            if who != 2 {
                let movements: i64 = sqlx::query_scalar(
                    "SELECT coalesce(sum(movements), 0)::bigint FROM bench_proj.balances",
                )
                .fetch_one(&pool)
                .await?;
                if movements != EVENTS as i64 {
                    return Err(format!("contestant {who} wrote {movements} movements").into());
                }
            }
            contest.record(round, who, EVENTS, elapsed);
        }
    }
    table.add(
        "projection catch-up, 100,000 events",
        &contest.select(&[0, 1, 2, 3]),
        Unit::PerSecond("events"),
        Some((1, 1.25)),
    );
    table.add(
        "projection catch-up, 100,000 events, full envelope",
        &contest.select(&[3, 1]),
        Unit::PerSecond("events"),
        Some((1, 1.25)),
    );
    Ok(())
}
