//! The PostgreSQL benchmarks: append (one event with a concurrency check, batches of 100), a
//! command (load, decide, append), loading a 10,000-event aggregate with and without snapshots,
//! each against raw sqlx doing the same work, measured interleaved in one run.
//!
//! Needs `DATABASE_URL` (`scripts/bench.sh` starts a throwaway durable cluster and sets it). It
//! drops and recreates the schemas `bench_es`, `bench_raw_indexed` and `bench_raw_minimal`.
//! `BENCH_ROUNDS` sets the measured rounds per scenario (default 15, after 2 warm-up rounds).
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use eventsource::postgres::PostgresStore;
use eventsource::prelude::*;
use eventsource::{NewEvent, RecordedEvent};
use eventsource_bench::fixture::{
    Account, AccountEvent, Deposit, Opened, Withdrawn, deposited, nth_event,
};
use eventsource_bench::hand::{HandAccount, HandEvent};
use eventsource_bench::measure::{Contest, Table, Unit};
use serde_json::Value;
use sqlx::postgres::PgPoolOptions;
use sqlx::{PgPool, Row};

mod decisions;
mod idempotency;
mod import;
mod projection;
mod scale;
use uuid::Uuid;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

const WARM_UP: usize = 2;
const STORE_SCHEMA: &str = "bench_es";

/// The same events table as the store's (columns, defaults, constraints and indexes), without
/// the stream heads, the append function or the trigger (it fires on UPDATE and DELETE only).
/// Its `transaction_id` is still the cluster's `xid8` (the store's key before schema version
/// 3), so the ratios also carry what the store's logical transaction id costs.
const RAW_INDEXED: &str = "
CREATE SCHEMA bench_raw_indexed;
CREATE TABLE bench_raw_indexed.events (
    position bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    transaction_id xid8 NOT NULL DEFAULT pg_current_xact_id(),
    stream_id text NOT NULL,
    category text NOT NULL GENERATED ALWAYS AS (split_part(stream_id, '-', 1)) STORED,
    version bigint NOT NULL CHECK (version > 0),
    event_id uuid NOT NULL,
    name text NOT NULL,
    schema_version bigint NOT NULL,
    payload jsonb NOT NULL,
    metadata jsonb NOT NULL,
    recorded_at timestamptz NOT NULL DEFAULT now(),
    correlation_id uuid,
    causation_id uuid,
    CONSTRAINT events_event_id_unique UNIQUE (event_id),
    CONSTRAINT events_stream_version_unique UNIQUE (stream_id, version)
);
CREATE INDEX events_checkpoint_idx ON bench_raw_indexed.events (transaction_id, position);
CREATE INDEX events_category_checkpoint_idx ON bench_raw_indexed.events (category, transaction_id, position);
CREATE INDEX events_name_checkpoint_idx ON bench_raw_indexed.events (name, transaction_id, position);
CREATE TABLE bench_raw_indexed.snapshots (
    stream_id text PRIMARY KEY,
    version bigint NOT NULL,
    state jsonb NOT NULL
);
";

/// The least a stream table can be: the unique (stream, version) is the concurrency check.
const RAW_MINIMAL: &str = "
CREATE SCHEMA bench_raw_minimal;
CREATE TABLE bench_raw_minimal.events (
    stream_id text NOT NULL,
    version bigint NOT NULL,
    name text NOT NULL,
    payload jsonb NOT NULL,
    PRIMARY KEY (stream_id, version)
);
";

const INSERT_INDEXED: &str = "INSERT INTO bench_raw_indexed.events \
     (stream_id, version, event_id, name, schema_version, payload, metadata) \
     VALUES ($1, $2, $3, $4, $5, $6, $7)";
/// [`INSERT_INDEXED`] with the tracing ids a command's events carry, where the store keeps
/// them (columns of their own since migration 10; `metadata` holds the rest: `{}`).
const INSERT_INDEXED_TRACED: &str = "INSERT INTO bench_raw_indexed.events \
     (stream_id, version, event_id, name, schema_version, payload, metadata, correlation_id, \
      causation_id) \
     VALUES ($1, $2, $3, $4, $5, $6, '{}', $7, $7)";
const INSERT_INDEXED_BATCH: &str = "INSERT INTO bench_raw_indexed.events \
     (stream_id, version, event_id, name, schema_version, payload, metadata) \
     SELECT * FROM UNNEST($1::text[], $2::bigint[], $3::uuid[], $4::text[], $5::bigint[], \
                          $6::jsonb[], $7::jsonb[])";
const INSERT_MINIMAL: &str = "INSERT INTO bench_raw_minimal.events (stream_id, version, name, payload) VALUES ($1, $2, $3, $4)";
const INSERT_MINIMAL_BATCH: &str = "INSERT INTO bench_raw_minimal.events (stream_id, version, name, payload) \
     SELECT * FROM UNNEST($1::text[], $2::bigint[], $3::text[], $4::jsonb[])";
const SELECT_STREAM: &str = "SELECT name, payload FROM bench_raw_indexed.events \
     WHERE stream_id = $1 AND version > $2 ORDER BY version";

struct Bench {
    store: PostgresStore,
    raw: PgPool,
    rounds: usize,
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<(), BoxError> {
    let url = std::env::var("DATABASE_URL").map_err(
        |_| "DATABASE_URL is not set: run scripts/bench.sh, which starts a throwaway PostgreSQL",
    )?;
    let rounds = std::env::var("BENCH_ROUNDS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(15);
    // cargo passes `--bench`; any other argument selects scenarios by substring.
    let only: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    let wanted = |name: &str| {
        only.is_empty()
            || only
                .iter()
                .any(|o| o != "scale" && name.contains(o.as_str()))
    };

    // The raw side's pool: 8 connections like the store's; `RAW_POOL=64` gives the 64-client
    // scenario a connection per client (BENCHMARKS.md, session 27: no faster).
    let raw = PgPoolOptions::new()
        .max_connections(
            std::env::var("RAW_POOL")
                .ok()
                .and_then(|v| v.parse().ok())
                .unwrap_or(8),
        )
        .connect(&url)
        .await?;
    for schema in [STORE_SCHEMA, "bench_raw_indexed", "bench_raw_minimal"] {
        sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
            "DROP SCHEMA IF EXISTS {schema} CASCADE"
        )))
        .execute(&raw)
        .await?;
    }
    sqlx::raw_sql(RAW_INDEXED).execute(&raw).await?;
    sqlx::raw_sql(RAW_MINIMAL).execute(&raw).await?;
    // BENCH_PING_IDLE_MS=N: the store's pool skips sqlx's ping before handing out a connection
    // given back less than N ms ago (`PostgresStoreBuilder::ping_idle_after`, opt-in); the raw
    // pools keep sqlx's defaults.
    let mut builder = PostgresStore::builder()
        .schema(STORE_SCHEMA)
        .max_connections(8);
    if let Some(ms) = std::env::var("BENCH_PING_IDLE_MS")
        .ok()
        .and_then(|ms| ms.parse::<u64>().ok())
    {
        builder = builder.ping_idle_after(Duration::from_millis(ms));
    }
    let store = builder.connect(&url).await?;
    store.migrate().await?;
    print_server(&raw).await?;
    let bench = Arc::new(Bench { store, raw, rounds });

    let mut table = Table::default();
    // 64 clients share the 8 connections of each side (the raw pool's and the store's), as an
    // application's tasks share a pool: how far the group commit scales beyond 8.
    // 2 and 4 clients: too few to share much, but a group commit must not make them wait
    // for each other (no target).
    for (clients, ops) in [(1, 200), (2, 100), (4, 100), (8, 50), (64, 10)] {
        let name = format!("append 1 event, {clients} client(s)");
        if wanted(&name) {
            // Eight clients (and more) share transactions: the target is 1.5x the throughput
            // of one transaction per INSERT (a time ratio of 0.67).
            let target = match clients {
                1 => Some(1.2),
                2 | 4 => None,
                _ => Some(0.67),
            };
            append(&bench, &mut table, &name, clients, ops, 1, target).await?;
        }
    }
    if wanted("commits") {
        commits(&url).await?;
    }
    if wanted("append anatomy") {
        anatomy(&bench, &mut table).await?;
    }
    for (clients, ops) in [(1, 40), (8, 8)] {
        let name = format!("append batch of 100, {clients} client(s)");
        if wanted(&name) {
            append(&bench, &mut table, &name, clients, ops, 100, Some(1.25)).await?;
        }
    }
    for (clients, ops) in [(1, 150), (8, 40)] {
        let name = format!("command (load, decide, append 1), {clients} client(s)");
        if wanted(&name) {
            command(&bench, &mut table, &name, clients, ops, false).await?;
        }
        let name = format!("command, aggregate cache warm, {clients} client(s)");
        if wanted(&name) {
            command(&bench, &mut table, &name, clients, ops, true).await?;
        }
    }
    let name = "8 tasks on one stream (load, decide, append 1)";
    if wanted(name) {
        contention(&bench, &mut table, name).await?;
    }
    if wanted("load") {
        load(&bench, &mut table).await?;
    }
    if wanted("pool overhead") {
        pool_overhead(&url, &mut table, rounds).await?;
    }
    if wanted("projection") {
        projection::catch_up(&url, &mut table, rounds).await?;
    }
    if wanted("idempotency") {
        idempotency::lookup(&url, &mut table, rounds).await?;
    }
    // Opt-in only: it grows a store to millions of events.
    if only.iter().any(|o| o == "scale") {
        let events = std::env::var("SCALE_EVENTS")
            .ok()
            .and_then(|n| n.parse().ok())
            .unwrap_or(5_000_000);
        scale::scale(&url, &bench.raw, &mut table, events).await?;
    }
    if wanted("import") {
        import::import(&url, &bench.raw, &mut table, rounds).await?;
    }
    if wanted("decision") {
        decisions::contention(&url, &mut table, rounds).await?;
    }
    println!(
        "\nPOSTGRES (median of {rounds} rounds after {WARM_UP} warm-up rounds; ratio = framework time / baseline time)\n"
    );
    println!("{}", table.render());
    Ok(())
}

async fn print_server(pool: &PgPool) -> Result<(), BoxError> {
    let mut settings = Vec::new();
    for name in [
        "server_version",
        "fsync",
        "synchronous_commit",
        "wal_sync_method",
        "full_page_writes",
        "shared_buffers",
        "max_wal_size",
    ] {
        let value: String = sqlx::query_scalar(sqlx::AssertSqlSafe(format!("SHOW {name}")))
            .fetch_one(pool)
            .await?;
        settings.push(format!("{name}={value}"));
    }
    println!("PostgreSQL: {}", settings.join(" "));
    Ok(())
}

fn new_event(n: u64) -> NewEvent {
    NewEvent::encode(&AccountEvent::from(deposited(n % 13 + 1))).expect("events encode")
}

#[derive(Clone, Copy, Debug)]
enum Writer {
    Framework,
    RawIndexed,
    RawMinimal,
}

/// Commits per event with 8 clients appending one event at a time, from
/// `pg_stat_database.xact_commit`: each side on pools of its own, closed before counting (a
/// backend reports its counts when it exits), so that only its own commits are counted.
async fn commits(url: &str) -> Result<(), BoxError> {
    const CLIENTS: usize = 8;
    const OPS: usize = 200;
    async fn committed(url: &str) -> Result<i64, BoxError> {
        let pool = PgPoolOptions::new().max_connections(1).connect(url).await?;
        let count = sqlx::query_scalar(
            "SELECT xact_commit FROM pg_stat_database WHERE datname = current_database()",
        )
        .fetch_one(&pool)
        .await?;
        pool.close().await;
        Ok(count)
    }
    for framework in [true, false] {
        let store = PostgresStore::builder()
            .schema(STORE_SCHEMA)
            .max_connections(8)
            .connect(url)
            .await?;
        let raw = PgPoolOptions::new().max_connections(8).connect(url).await?;
        let bench = Arc::new(Bench {
            store: store.clone(),
            raw: raw.clone(),
            rounds: 0,
        });
        // Warm: the store's one-time check, the pools' connections.
        store.head_position().await?;
        let mut warm = Vec::new();
        for _ in 0..CLIENTS {
            warm.push(raw.acquire().await?);
        }
        drop(warm);
        tokio::time::sleep(std::time::Duration::from_millis(1_100)).await;
        let before = committed(url).await?;
        let start = Instant::now();
        let mut tasks = Vec::new();
        for client in 0..CLIENTS {
            let bench = Arc::clone(&bench);
            let writer = if framework {
                Writer::Framework
            } else {
                Writer::RawIndexed
            };
            let stream = format!("account-commits-{framework}-{client}");
            tasks.push(tokio::spawn(async move {
                append_client(&bench, writer, &stream, 0, OPS, 1).await
            }));
        }
        for task in tasks {
            task.await??;
        }
        let elapsed = start.elapsed();
        drop(bench);
        store.close().await;
        drop(store);
        raw.close().await;
        tokio::time::sleep(std::time::Duration::from_millis(1_100)).await;
        let after = committed(url).await?;
        let events = CLIENTS * OPS;
        let commits = after - before - 1;
        println!(
            "COMMITS {}: {events} one-event appends from {CLIENTS} clients, {commits} commits ({:.2} per append), {:.0} events/s",
            if framework {
                "eventsource append()"
            } else {
                "raw INSERT, same table and indexes"
            },
            commits as f64 / events as f64,
            events as f64 / elapsed.as_secs_f64(),
        );
    }
    Ok(())
}

/// `clients` tasks, each appending `ops` batches of `batch` events to a stream of its own.
async fn append(
    bench: &Arc<Bench>,
    table: &mut Table,
    name: &str,
    clients: usize,
    ops: usize,
    batch: usize,
    target: Option<f64>,
) -> Result<(), BoxError> {
    let writers = [Writer::Framework, Writer::RawIndexed, Writer::RawMinimal];
    let mut contest = Contest::new(
        &[
            "eventsource append(), ExpectedVersion::Exact",
            "raw INSERT, same table and indexes",
            "raw INSERT, minimal table",
        ],
        WARM_UP,
    );
    for round in 0..WARM_UP + bench.rounds {
        for who in contest.order(round) {
            let start = Instant::now();
            let mut tasks = Vec::new();
            for client in 0..clients {
                let bench = Arc::clone(bench);
                let writer = writers[who];
                let stream = format!("account-a{batch}x{clients}-{client}");
                tasks.push(tokio::spawn(async move {
                    append_client(&bench, writer, &stream, round, ops, batch).await
                }));
            }
            for task in tasks {
                task.await??;
            }
            contest.record(round, who, (clients * ops * batch) as u64, start.elapsed());
        }
    }
    table.add(
        name,
        &contest,
        Unit::PerSecond("events"),
        target.map(|target| (1, target)),
    );
    Ok(())
}

async fn append_client(
    bench: &Bench,
    writer: Writer,
    stream: &str,
    round: usize,
    ops: usize,
    batch: usize,
) -> Result<(), BoxError> {
    let stream_id = StreamId::from_raw(stream);
    for op in 0..ops {
        let version = ((round * ops + op) * batch) as u64;
        let events: Vec<NewEvent> = (0..batch as u64).map(|i| new_event(version + i)).collect();
        match (writer, batch) {
            (Writer::Framework, _) => {
                bench
                    .store
                    .append(&stream_id, ExpectedVersion::Exact(Version(version)), events)
                    .await?;
            }
            (Writer::RawIndexed, 1) => {
                let event = &events[0];
                sqlx::query(INSERT_INDEXED)
                    .bind(stream)
                    .bind(version as i64 + 1)
                    .bind(event.event_id)
                    .bind(&event.name)
                    .bind(i64::from(event.schema_version))
                    .bind(&event.payload)
                    .bind(serde_json::to_value(&event.metadata)?)
                    .execute(&bench.raw)
                    .await?;
            }
            (Writer::RawIndexed, _) => {
                let mut columns = Columns::default();
                for (i, event) in events.into_iter().enumerate() {
                    columns.push(stream, version + i as u64 + 1, event)?;
                }
                sqlx::query(INSERT_INDEXED_BATCH)
                    .bind(&columns.streams)
                    .bind(&columns.versions)
                    .bind(&columns.ids)
                    .bind(&columns.names)
                    .bind(&columns.schema_versions)
                    .bind(&columns.payloads)
                    .bind(&columns.metadata)
                    .execute(&bench.raw)
                    .await?;
            }
            (Writer::RawMinimal, 1) => {
                let event = &events[0];
                sqlx::query(INSERT_MINIMAL)
                    .bind(stream)
                    .bind(version as i64 + 1)
                    .bind(&event.name)
                    .bind(&event.payload)
                    .execute(&bench.raw)
                    .await?;
            }
            (Writer::RawMinimal, _) => {
                let mut columns = Columns::default();
                for (i, event) in events.into_iter().enumerate() {
                    columns.push(stream, version + i as u64 + 1, event)?;
                }
                sqlx::query(INSERT_MINIMAL_BATCH)
                    .bind(&columns.streams)
                    .bind(&columns.versions)
                    .bind(&columns.names)
                    .bind(&columns.payloads)
                    .execute(&bench.raw)
                    .await?;
            }
        }
    }
    Ok(())
}

/// A batch as column arrays, for `INSERT ... SELECT * FROM UNNEST(...)`.
#[derive(Default)]
struct Columns {
    streams: Vec<String>,
    versions: Vec<i64>,
    ids: Vec<Uuid>,
    names: Vec<String>,
    schema_versions: Vec<i64>,
    payloads: Vec<Value>,
    metadata: Vec<Value>,
}

impl Columns {
    fn push(&mut self, stream: &str, version: u64, event: NewEvent) -> Result<(), BoxError> {
        self.streams.push(stream.to_owned());
        self.versions.push(version as i64);
        self.ids.push(event.event_id);
        self.names.push(event.name);
        self.schema_versions.push(i64::from(event.schema_version));
        self.metadata.push(serde_json::to_value(&event.metadata)?);
        self.payloads.push(event.payload);
        Ok(())
    }
}

const HISTORY: u64 = 10;
const STREAMS_PER_CLIENT: usize = 25;

/// Commands on streams with a short history (10 events to start with): the framework's
/// `Repository::execute` against raw sqlx loading the rows, decoding and folding them by hand,
/// deciding, and inserting one row whose (stream, version) uniqueness is the concurrency check.
///
/// With `cached`, the repository keeps its aggregates in memory (warmed up before the first
/// round), so a command skips the load; the baseline is then a bare INSERT at a version the
/// application keeps in memory.
async fn command(
    bench: &Arc<Bench>,
    table: &mut Table,
    name: &str,
    clients: usize,
    ops: usize,
    cached: bool,
) -> Result<(), BoxError> {
    let tag = if cached { "w" } else { "c" };
    // Seed the same histories on both sides.
    let seeder = Repository::<Account, _>::new(bench.store.clone());
    for client in 0..clients {
        for k in 0..STREAMS_PER_CLIENT {
            let id = format!("{tag}{clients}-{client}-{k}");
            seed(bench, &seeder, &id, 0, HISTORY).await?;
        }
    }
    let mut contest = if cached {
        Contest::new(
            &[
                "Repository::execute, aggregate cache warm",
                "raw INSERT at a version kept in memory, same table and indexes",
            ],
            WARM_UP,
        )
    } else {
        Contest::new(
            &[
                "Repository::execute",
                "raw SELECT + decode + fold + INSERT, same table and indexes",
            ],
            WARM_UP,
        )
    };
    // One repository (and cache) per client, kept across rounds; the raw side's versions.
    let mut clients_state = Vec::new();
    for _ in 0..clients {
        let mut repo = Repository::<Account, _>::new(bench.store.clone());
        if cached {
            repo =
                repo.with_cache(std::num::NonZeroUsize::new(STREAMS_PER_CLIENT).expect("positive"));
        }
        let versions = vec![HISTORY; STREAMS_PER_CLIENT];
        clients_state.push(Some((repo, versions)));
    }
    for round in 0..WARM_UP + bench.rounds {
        for who in contest.order(round) {
            let start = Instant::now();
            let mut tasks = Vec::new();
            for (client, state) in clients_state.iter_mut().enumerate() {
                let bench = Arc::clone(bench);
                let (repo, mut versions) = state.take().expect("returned by the last round");
                tasks.push(tokio::spawn(async move {
                    for op in 0..ops {
                        let k = op % STREAMS_PER_CLIENT;
                        let id = format!("{tag}{clients}-{client}-{k}");
                        let amount = (op % 13 + 1) as u64;
                        match (who, cached) {
                            (0, _) => {
                                repo.execute(&id, Deposit { amount }).await?;
                            }
                            (_, false) => {
                                raw_command(&bench.raw, &format!("account-{id}"), amount).await?;
                            }
                            (_, true) => {
                                versions[k] += 1;
                                raw_insert_one(
                                    &bench.raw,
                                    &format!("account-{id}"),
                                    versions[k],
                                    amount,
                                )
                                .await?;
                            }
                        }
                    }
                    Ok::<_, BoxError>((repo, versions))
                }));
            }
            for (task, state) in tasks.into_iter().zip(clients_state.iter_mut()) {
                *state = Some(task.await??);
            }
            contest.record(round, who, (clients * ops) as u64, start.elapsed());
        }
    }
    let target = if cached { 1.15 } else { 1.05 };
    table.add(
        name,
        &contest,
        Unit::PerSecond("commands"),
        Some((1, target)),
    );
    Ok(())
}

/// The W4: 8 tasks executing commands on one aggregate. The framework's tasks share
/// one repository (its writers of a stream take turns): with the aggregate cache (a queued
/// writer starts from the state the previous one left), without it (each loads), and with the
/// queue off (writers race and retry on conflict). The raw tasks load, fold and INSERT, and
/// start again when the unique `(stream_id, version)` refuses the row. Each round writes a
/// fresh stream of `HISTORY` events per contestant; the figure is committed commands per
/// second.
async fn contention(bench: &Arc<Bench>, table: &mut Table, name: &str) -> Result<(), BoxError> {
    const TASKS: usize = 8;
    const OPS: usize = 10;
    let seeder = Repository::<Account, _>::new(bench.store.clone());
    let mut contest = Contest::new(
        &[
            "Repository::execute, one repository shared by the tasks, with the aggregate cache",
            "raw SELECT + decode + fold + INSERT, retried on a unique violation",
            "Repository::execute, one repository shared by the tasks, no cache",
            "Repository::execute, writers not queued (retry on conflict), no cache",
        ],
        WARM_UP,
    );
    let cached = Arc::new(
        Repository::<Account, _>::new(bench.store.clone())
            .with_cache(std::num::NonZeroUsize::new(64).expect("positive"))
            .retry_on_conflict(1_000),
    );
    let queued =
        Arc::new(Repository::<Account, _>::new(bench.store.clone()).retry_on_conflict(1_000));
    let racing = Arc::new(
        Repository::<Account, _>::new(bench.store.clone())
            .queue_writers(false)
            .retry_on_conflict(1_000),
    );
    for round in 0..WARM_UP + bench.rounds {
        for who in contest.order(round) {
            let id = format!("one{who}-{round}");
            seed(bench, &seeder, &id, 0, HISTORY).await?;
            let start = Instant::now();
            let mut tasks = Vec::new();
            for task in 0..TASKS {
                let (bench, id) = (Arc::clone(bench), id.clone());
                let repo = Arc::clone(match who {
                    0 => &cached,
                    2 => &queued,
                    _ => &racing,
                });
                tasks.push(tokio::spawn(async move {
                    for op in 0..OPS {
                        let amount = ((task + op) % 13 + 1) as u64;
                        if who == 1 {
                            let stream = format!("account-{id}");
                            while let Err(error) = raw_command(&bench.raw, &stream, amount).await {
                                let unique = error
                                    .downcast_ref::<sqlx::Error>()
                                    .and_then(|e| e.as_database_error())
                                    .is_some_and(|e| e.is_unique_violation());
                                if !unique {
                                    return Err(error);
                                }
                            }
                        } else {
                            repo.execute(&id, Deposit { amount }).await?;
                        }
                    }
                    Ok::<_, BoxError>(())
                }));
            }
            for task in tasks {
                task.await??;
            }
            contest.record(round, who, (TASKS * OPS) as u64, start.elapsed());
            let version = if who == 1 {
                let v: i64 = sqlx::query_scalar(
                    "SELECT max(version) FROM bench_raw_indexed.events WHERE stream_id = $1",
                )
                .bind(format!("account-{id}"))
                .fetch_one(&bench.raw)
                .await?;
                v as u64
            } else {
                bench
                    .store
                    .stream_version(&StreamId::new("account", &id))
                    .await?
                    .0
            };
            assert_eq!(version, HISTORY + (TASKS * OPS) as u64, "contestant {who}");
        }
    }
    table.add(name, &contest, Unit::PerSecond("commands"), Some((1, 1.0)));
    Ok(())
}

/// Appends events `from..to` of the synthetic history to the aggregate `id` through `repo`,
/// and the same rows (as the framework stored them) to the raw table.
async fn seed(
    bench: &Bench,
    repo: &Repository<Account, PostgresStore>,
    id: &str,
    from: u64,
    to: u64,
) -> Result<(), BoxError> {
    let expected = ExpectedVersion::Exact(Version(from));
    repo.append(id, expected, (from..to).map(nth_event)).await?;
    let stream = repo.stream_id(id);
    let mut rows = bench.store.read_stream_pages(&stream, Version(from + 1));
    while let Some(page) = rows.next_page().await? {
        let after = page[0].version.0 - 1;
        insert_raw(&bench.raw, stream.as_str(), after, page).await?;
    }
    Ok(())
}

async fn insert_raw(
    pool: &PgPool,
    stream: &str,
    after: u64,
    events: Vec<RecordedEvent>,
) -> Result<(), BoxError> {
    let mut columns = Columns::default();
    for (i, event) in events.into_iter().enumerate() {
        let stored = NewEvent::new(event.name, event.schema_version, event.payload)
            .with_id(event.event_id)
            .with_metadata(event.metadata);
        columns.push(stream, after + i as u64 + 1, stored)?;
    }
    sqlx::query(INSERT_INDEXED_BATCH)
        .bind(&columns.streams)
        .bind(&columns.versions)
        .bind(&columns.ids)
        .bind(&columns.names)
        .bind(&columns.schema_versions)
        .bind(&columns.payloads)
        .bind(&columns.metadata)
        .execute(pool)
        .await?;
    Ok(())
}

/// Loads the rows of `stream` after `after`, decodes them with serde and folds them with a
/// hand-written `match`.
async fn raw_fold(
    pool: &PgPool,
    stream: &str,
    after: u64,
    mut state: HandAccount,
) -> Result<(HandAccount, u64), BoxError> {
    let rows = sqlx::query(SELECT_STREAM)
        .bind(stream)
        .bind(after as i64)
        .fetch_all(pool)
        .await?;
    let mut version = after;
    for row in &rows {
        let name: &str = row.try_get("name")?;
        let payload: Value = row.try_get("payload")?;
        let event = match name {
            "account.opened" => HandEvent::Opened(serde_json::from_value::<Opened>(payload)?),
            "account.deposited" => HandEvent::Deposited(serde_json::from_value::<
                eventsource_bench::fixture::Deposited,
            >(payload)?),
            "account.withdrawn" => {
                HandEvent::Withdrawn(serde_json::from_value::<Withdrawn>(payload)?)
            }
            other => return Err(format!("unknown event {other}").into()),
        };
        state.apply(&event);
        version += 1;
    }
    Ok((state, version))
}

async fn raw_command(pool: &PgPool, stream: &str, amount: u64) -> Result<(), BoxError> {
    let (state, version) = raw_fold(pool, stream, 0, HandAccount::default()).await?;
    if amount == 0 || state.owner.is_none() {
        return Err("rejected".into());
    }
    raw_insert_one(pool, stream, version + 1, amount).await
}

/// Inserts one deposit at `version`, encoded and with metadata as the framework writes them:
/// `Repository::execute` gives every event of a command its correlation and causation ids
/// (both the command's id when the caller sets neither), so the raw row carries the same two.
async fn raw_insert_one(
    pool: &PgPool,
    stream: &str,
    version: u64,
    amount: u64,
) -> Result<(), BoxError> {
    let event = deposited(amount);
    // The command's id, which `Repository::execute` gives its events as both tracing ids.
    let command = Uuid::now_v7();
    sqlx::query(INSERT_INDEXED_TRACED)
        .bind(stream)
        .bind(version as i64)
        .bind(Uuid::now_v7())
        .bind("account.deposited")
        .bind(3_i64)
        .bind(serde_json::to_value(&event)?)
        .bind(command)
        .execute(pool)
        .await?;
    Ok(())
}

const BIG: u64 = 10_000;
const MID: u64 = 2_000;

/// Loading a 10,000-event aggregate: without a snapshot (every event folded), and with the
/// snapshots an every-100 policy leaves (at version 10,000: no tail; a stream of 10,099 events:
/// a tail of 99), each against raw sqlx doing the same reads.
async fn load(bench: &Arc<Bench>, table: &mut Table) -> Result<(), BoxError> {
    let store = &bench.store;
    let plain = Repository::<Account, _>::new(store.clone());
    // The same aggregate, with a snapshot every 100 events instead of none.
    let snapshotted = Repository::<Account, _>::new(store.clone())
        .with_snapshot_policy(SnapshotPolicy::Every(100));
    // account-big: 10,000 events; account-small: 100; account-snap: 10,000 and a snapshot at
    // 10,000; account-snap99: the same plus 99 events.
    for (id, len) in [
        ("big", BIG),
        ("mid", MID),
        ("small", 100),
        ("snap", BIG),
        ("snap99", BIG),
    ] {
        for from in (0..len).step_by(1_000) {
            seed(bench, &plain, id, from, (from + 1_000).min(len)).await?;
        }
    }
    for id in ["snap", "snap99"] {
        assert_eq!(snapshotted.snapshot(id).await?, Version(BIG));
        let stream = snapshotted.stream_id(id);
        let snapshot = store.load_snapshot(&stream).await?.expect("just stored");
        sqlx::query("INSERT INTO bench_raw_indexed.snapshots VALUES ($1, $2, $3)")
            .bind(stream.as_str())
            .bind(BIG as i64)
            .bind(snapshot.state)
            .execute(&bench.raw)
            .await?;
    }
    seed(bench, &plain, "snap99", BIG, BIG + 99).await?;

    let raw = &bench.raw;

    let loads = 3;
    let mut contest = Contest::new(&["Repository::load", "raw SELECT + decode + fold"], WARM_UP);
    for round in 0..WARM_UP + bench.rounds {
        for who in contest.order(round) {
            let start = Instant::now();
            for _ in 0..loads {
                if who == 0 {
                    let loaded = plain.load("big").await?;
                    assert_eq!(loaded.version, Version(BIG));
                } else {
                    let (_, version) =
                        raw_fold(raw, "account-big", 0, HandAccount::default()).await?;
                    assert_eq!(version, BIG);
                }
            }
            contest.record(round, who, loads, start.elapsed());
        }
    }
    table.add(
        "load 10,000 events, no snapshot",
        &contest,
        Unit::Millis,
        None,
    );

    // The W3: a 2,000-event stream, two full pages of the framework's reads.
    let loads = 5;
    let mut contest = Contest::new(&["Repository::load", "raw SELECT + decode + fold"], WARM_UP);
    for round in 0..WARM_UP + bench.rounds {
        for who in contest.order(round) {
            let start = Instant::now();
            for _ in 0..loads {
                if who == 0 {
                    let loaded = plain.load("mid").await?;
                    assert_eq!(loaded.version, Version(MID));
                } else {
                    let (_, version) =
                        raw_fold(raw, "account-mid", 0, HandAccount::default()).await?;
                    assert_eq!(version, MID);
                }
            }
            contest.record(round, who, loads, start.elapsed());
        }
    }
    table.add(
        "load 2,000 events, no snapshot",
        &contest,
        Unit::Millis,
        Some((1, 1.2)),
    );

    for (id, tail) in [("snap", 0), ("snap99", 99)] {
        let loads = 20;
        let mut contest = Contest::new(
            &[
                "Repository::load",
                "raw SELECT snapshot + tail, decode + fold",
            ],
            WARM_UP,
        );
        for round in 0..WARM_UP + bench.rounds {
            for who in contest.order(round) {
                let start = Instant::now();
                for _ in 0..loads {
                    if who == 0 {
                        let loaded = snapshotted.load(id).await?;
                        assert_eq!(loaded.events_folded, tail);
                    } else {
                        raw_snapshot_load(raw, &format!("account-{id}")).await?;
                    }
                }
                contest.record(round, who, loads, start.elapsed());
            }
        }
        table.add(
            &format!("load 10,000 + {tail} events, snapshot at 10,000 (every 100), tail {tail}"),
            &contest,
            Unit::Millis,
            None,
        );
    }

    let loads = 20;
    let mut contest = Contest::new(&["Repository::load", "raw SELECT + decode + fold"], WARM_UP);
    for round in 0..WARM_UP + bench.rounds {
        for who in contest.order(round) {
            let start = Instant::now();
            for _ in 0..loads {
                if who == 0 {
                    plain.load("small").await?;
                } else {
                    raw_fold(raw, "account-small", 0, HandAccount::default()).await?;
                }
            }
            contest.record(round, who, loads, start.elapsed());
        }
    }
    table.add(
        "load 100 events, no snapshot (scale)",
        &contest,
        Unit::Millis,
        None,
    );
    Ok(())
}

async fn raw_snapshot_load(pool: &PgPool, stream: &str) -> Result<HandAccount, BoxError> {
    let row =
        sqlx::query("SELECT version, state FROM bench_raw_indexed.snapshots WHERE stream_id = $1")
            .bind(stream)
            .fetch_one(pool)
            .await?;
    let version: i64 = row.try_get("version")?;
    let state: Account = serde_json::from_value(row.try_get("state")?)?;
    let state = HandAccount {
        owner: state.owner,
        balance: state.balance,
        movements: state.movements,
    };
    let (state, _) = raw_fold(pool, stream, version as u64, state).await?;
    Ok(state)
}

/// The framework's append statement for `ExpectedVersion::Exact` (as `sql::append_fast` writes
/// it for the schema `bench_es`), to time it without the framework around it.
const FAST_APPEND_EXACT: &str = "WITH head AS ( \
        UPDATE bench_es.streams AS s SET version = s.version + cardinality($3::uuid[]) \
         WHERE s.stream_id = $1 AND s.version = $2 RETURNING s.version), \
     inserted AS ( \
        INSERT INTO bench_es.events \
            (transaction_id, stream_id, version, event_id, name, schema_version, payload, \
             metadata) \
        SELECT x.id, $1, h.version - cardinality($3::uuid[]) + t.ord, t.id, t.name, \
               t.schema_version, t.payload, t.metadata \
          FROM head h, \
               (SELECT pg_current_xact_id()::text::bigint \
                       + (SELECT o.value FROM bench_es.transaction_offset o) AS id) x, \
               unnest($3::uuid[], $4::text[], $5::bigint[], $6::jsonb[], $7::jsonb[]) \
                   WITH ORDINALITY AS t(id, name, schema_version, payload, metadata, ord) \
         ORDER BY t.ord \
        RETURNING position) \
     SELECT h.version - cardinality($3::uuid[]) + 1 AS first_version, h.version AS last_version, \
            (SELECT min(i.position) FROM inserted i) AS first_position, \
            (SELECT max(i.position) FROM inserted i) AS last_position \
       FROM head h";

/// Where the time of a one-event append goes, one client: the framework beside its own
/// statement sent by bare sqlx (the difference is the framework's Rust side and the
/// notification), the plpgsql `append()` function, a bare INSERT, and round trips that write
/// nothing (`SELECT 1`, `pg_notify`): the rest of a bare INSERT is the durable commit.
async fn anatomy(bench: &Arc<Bench>, table: &mut Table) -> Result<(), BoxError> {
    let mut contest = Contest::new(
        &[
            "eventsource append(), ExpectedVersion::Exact",
            "its statement alone, bare sqlx (no notification)",
            "the plpgsql append() function, bare sqlx",
            "raw INSERT, same table and indexes",
            "SELECT pg_notify (a round trip, no WAL)",
            "SELECT 1 (a round trip)",
        ],
        WARM_UP,
    );
    let ops = 200;
    let version = |round: usize, op: usize| (round * ops + op) as u64;
    for who in [0, 1, 2] {
        // Each writer of the store's table appends to a stream of its own.
        let stream = StreamId::from_raw(format!("account-anatomy-{who}"));
        bench
            .store
            .append(&stream, ExpectedVersion::NoStream, vec![new_event(0)])
            .await?;
    }
    for round in 0..WARM_UP + bench.rounds {
        for who in contest.order(round) {
            let stream = format!("account-anatomy-{who}");
            let stream_id = StreamId::from_raw(&stream);
            let start = Instant::now();
            for op in 0..ops {
                let v = version(round, op) + 1;
                let event = new_event(v);
                let raw = &bench.raw;
                match who {
                    0 => {
                        bench
                            .store
                            .append(&stream_id, ExpectedVersion::Exact(Version(v)), vec![event])
                            .await?;
                    }
                    1 | 2 => {
                        let sql = if who == 1 {
                            FAST_APPEND_EXACT
                        } else {
                            // The tracing ids (none here) and no NOTIFY, as the store calls it.
                            "SELECT * FROM bench_es.append($1, $2, $3, $4, $5, $6, $7, \
                             $8::uuid[], $9::uuid[], false)"
                        };
                        let no_ids: Vec<Option<Uuid>> = vec![None];
                        let mut query = sqlx::query(sqlx::AssertSqlSafe(sql))
                            .bind(&stream)
                            .bind(v as i64)
                            .bind(vec![event.event_id])
                            .bind(vec![event.name.clone()])
                            .bind(vec![i64::from(event.schema_version)])
                            .bind(vec![event.payload.clone()])
                            .bind(vec![serde_json::to_value(&event.metadata)?]);
                        if who == 2 {
                            query = query.bind(no_ids.clone()).bind(no_ids);
                        }
                        let row = query.fetch_one(raw).await?;
                        let last: Option<i64> = row.try_get("last_version")?;
                        assert_eq!(last, Some(v as i64 + 1));
                    }
                    3 => {
                        sqlx::query(INSERT_INDEXED)
                            .bind(&stream)
                            .bind(v as i64)
                            .bind(event.event_id)
                            .bind(&event.name)
                            .bind(i64::from(event.schema_version))
                            .bind(&event.payload)
                            .bind(serde_json::to_value(&event.metadata)?)
                            .execute(raw)
                            .await?;
                    }
                    4 => {
                        sqlx::query("SELECT pg_notify($1, $2)")
                            .bind("bench_anatomy")
                            .bind(v.to_string())
                            .execute(raw)
                            .await?;
                    }
                    _ => {
                        sqlx::query("SELECT 1").execute(raw).await?;
                    }
                }
            }
            contest.record(round, who, ops as u64, start.elapsed());
        }
    }
    table.add(
        "append anatomy, 1 client (time per operation)",
        &contest,
        Unit::Micros,
        None,
    );
    Ok(())
}

/// What sqlx's pool adds to one statement: the same one-row INSERT through a `PgPool` with
/// sqlx's defaults (as the raw baselines and the store use it), through one that skips the
/// ping before handing out a connection idle for under 100 ms, and on a connection of its own.
/// sqlx 0.9 pings a connection when it is handed out (`test_before_acquire`) and again, always,
/// when it is given back: a lever for issue 17 (BENCHMARKS.md, session 28), measured here.
async fn pool_overhead(url: &str, table: &mut Table, rounds: usize) -> Result<(), BoxError> {
    use sqlx::Connection as _;
    const N: u64 = 500;
    let pool = PgPoolOptions::new().max_connections(8).connect(url).await?;
    let lazy_test = PgPoolOptions::new()
        .max_connections(8)
        .test_before_acquire(false)
        .before_acquire(|conn, meta| {
            Box::pin(async move {
                if meta.idle_for >= Duration::from_millis(100) {
                    conn.ping().await?;
                }
                Ok(true)
            })
        })
        .connect(url)
        .await?;
    sqlx::raw_sql(
        "DROP TABLE IF EXISTS pool_overhead; \
         CREATE TABLE pool_overhead (id bigserial PRIMARY KEY, v text NOT NULL)",
    )
    .execute(&pool)
    .await?;
    let mut own = sqlx::PgConnection::connect(url).await?;
    let mut contest = Contest::new(
        &[
            "INSERT through a PgPool (sqlx defaults)",
            "the same INSERT on a connection of its own",
            "through a PgPool without the ping on hand-out",
        ],
        WARM_UP,
    );
    for round in 0..WARM_UP + rounds {
        for who in contest.order(round) {
            let start = Instant::now();
            for i in 0..N {
                let query =
                    sqlx::query("INSERT INTO pool_overhead (v) VALUES ($1)").bind(i.to_string());
                match who {
                    0 => query.execute(&pool).await?,
                    1 => query.execute(&mut own).await?,
                    _ => query.execute(&lazy_test).await?,
                };
            }
            contest.record(round, who, N, start.elapsed());
        }
    }
    table.add(
        "sqlx pool overhead, one-row INSERT, 1 client",
        &contest,
        Unit::Micros,
        None,
    );
    Ok(())
}
