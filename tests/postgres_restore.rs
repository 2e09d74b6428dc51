//! The backup-and-restore drill (issue 13), against two real PostgreSQL clusters: a store is
//! filled on one, its projections run, its schema is dumped with `pg_dump` and restored with
//! `pg_restore` into the other, more events are appended there, and then a resumed projection
//! and a projection from zero each apply every event exactly once, each stream in version
//! order, while `status` and `verify` agree at every step.
//!
//! Both directions: a source whose transaction counter is well ahead of the target's (the
//! restored ids are above the target's counter: the store must refuse until `migrate`
//! re-bases it), and a target ahead of the source (the store fits as restored).
//!
//! `scripts/test.sh` starts both clusters: `DATABASE_URL` (shared with the other tests) and
//! `RESTORE_CLUSTER_URL` (this drill's); `PG_DUMP_BIN` is the directory of `pg_dump` and
//! `pg_restore`. Without them the drill fails, it never skips.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "support/postgres.rs"]
mod support;

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use eventsource::postgres::sqlx::{self, AssertSqlSafe, Connection, PgConnection, PgPool, Row};
use eventsource::postgres::{Check, PostgresError, PostgresStore, PostgresTx};
use eventsource::prelude::*;
use eventsource::{
    Checkpoint, EventStore, ExpectedVersion, HandledEvents, LogFilter, NewEvent, Project,
    Projection, ProjectionRunner, RecordedEvent, RunnerOptions, StoreError, StreamId, Version,
};
use serde_json::json;

/// The store's schema in both databases.
const SCHEMA: &str = "bank";

#[derive(Event, Serialize, Deserialize, Clone, Debug)]
#[event(name = "drill.deposited")]
struct Deposited {
    amount: i64,
}

#[derive(Debug, thiserror::Error)]
#[error("database: {0}")]
struct SeenError(#[from] sqlx::Error);

/// A read model in `bank.seen_<name>`: one row per applied event, numbered in the order applied
/// (`seq`). The primary key on the event id makes a second application fail the commit.
#[derive(Clone, Debug)]
struct Seen<const K: u8>;

impl<const K: u8> Seen<K> {
    fn table() -> String {
        let name = if K == 0 { "resumed" } else { "fresh" };
        format!("{SCHEMA}.seen_{name}")
    }
}

impl Projection for Seen<0> {
    const NAME: &'static str = "resumed";
    type Handles = (Deposited,);
    type Error = SeenError;
}

impl Projection for Seen<1> {
    const NAME: &'static str = "fresh";
    type Handles = (Deposited,);
    type Error = SeenError;
}

impl<const K: u8> Project<Deposited, PostgresTx> for Seen<K>
where
    Seen<K>: Projection<Error = SeenError>,
{
    async fn project(
        &mut self,
        _event: Deposited,
        at: &RecordedEvent,
        tx: &mut PostgresTx,
    ) -> Result<(), SeenError> {
        let sql = format!(
            "INSERT INTO {} (event_id, stream_id, version) VALUES ($1, $2, $3)",
            Self::table()
        );
        sqlx::query(AssertSqlSafe(sql))
            .bind(at.event_id)
            .bind(at.stream_id.as_str())
            .bind(at.version.0 as i64)
            .execute(&mut **tx)
            .await?;
        Ok(())
    }
}

fn options() -> RunnerOptions {
    RunnerOptions {
        batch_size: 500,
        max_retries: 0,
        backoff: Duration::from_millis(5),
        poll_interval: Duration::from_millis(100),
        ..RunnerOptions::default()
    }
}

/// The drill's own cluster.
fn restore_cluster_url() -> String {
    match std::env::var("RESTORE_CLUSTER_URL") {
        Ok(url) if !url.trim().is_empty() => url,
        _ => panic!(
            "RESTORE_CLUSTER_URL is not set: the restore drill needs a second PostgreSQL cluster. \
             Run `scripts/test.sh`, which starts both clusters and sets it"
        ),
    }
}

/// `pg_dump` or `pg_restore`: from `PG_DUMP_BIN` (set by `scripts/test.sh`), else the newest
/// `/usr/lib/postgresql/*/bin`, else `PATH`.
fn pg_tool(name: &str) -> PathBuf {
    if let Ok(dir) = std::env::var("PG_DUMP_BIN") {
        return PathBuf::from(dir).join(name);
    }
    let mut dirs: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .map(|entry| entry.path().join("bin"))
        .filter(|dir| dir.join(name).exists())
        .collect();
    dirs.sort_by_key(|dir| {
        dir.parent()
            .and_then(|p| p.file_name())
            .and_then(|n| n.to_str())
            .and_then(|n| n.parse::<u32>().ok())
            .unwrap_or(0)
    });
    dirs.pop()
        .map_or_else(|| PathBuf::from(name), |dir| dir.join(name))
}

/// A new database on the cluster of `cluster_url`; its URL.
async fn create_database(cluster_url: &str, name: &str) -> String {
    let mut conn = PgConnection::connect(cluster_url)
        .await
        .unwrap_or_else(|e| {
            panic!("the restore drill needs a reachable server at {cluster_url}: {e}")
        });
    sqlx::raw_sql(AssertSqlSafe(format!("CREATE DATABASE \"{name}\"")))
        .execute(&mut conn)
        .await
        .unwrap();
    let _ = conn.close().await;
    let (base, _) = cluster_url.rsplit_once('/').unwrap();
    format!("{base}/{name}")
}

async fn connect(url: &str) -> PostgresStore {
    PostgresStore::builder()
        .schema(SCHEMA)
        .max_connections(4)
        .acquire_timeout(Duration::from_secs(20))
        .connect(url)
        .await
        .unwrap()
}

/// The id of the next transaction of the cluster `pool` is on.
async fn next_xid(pool: &PgPool) -> i64 {
    sqlx::query_scalar("SELECT pg_snapshot_xmax(pg_current_snapshot())::text::bigint")
        .fetch_one(pool)
        .await
        .unwrap()
}

/// Pushes the cluster's transaction counter `count` ids ahead: one committed transaction each.
async fn burn(pool: &PgPool, count: i64) {
    if count <= 0 {
        return;
    }
    let sql = format!(
        "DO $$ BEGIN FOR i IN 1..{count} LOOP PERFORM pg_current_xact_id(); COMMIT; END LOOP; END $$"
    );
    sqlx::raw_sql(AssertSqlSafe(sql))
        .execute(pool)
        .await
        .unwrap();
}

async fn execute(store: &PostgresStore, sql: &str) {
    sqlx::raw_sql(AssertSqlSafe(sql.replace("{s}", SCHEMA)))
        .execute(store.pool())
        .await
        .unwrap();
}

fn deposit(amount: i64) -> NewEvent {
    NewEvent::new("drill.deposited", 1, json!({ "amount": amount }))
}

/// Appends `per_stream` events to each of `streams` streams, in rounds of one event per stream
/// (so streams interleave in the log), burning `burn_every` transaction ids after each round.
/// Every append expects the stream's exact version.
async fn fill(store: &PostgresStore, streams: u64, per_stream: u64, burn_every: i64) {
    for _ in 0..per_stream {
        for s in 0..streams {
            let stream = StreamId::from_raw(format!("account-{s}"));
            let version = store.stream_version(&stream).await.unwrap();
            store
                .append(
                    &stream,
                    ExpectedVersion::Exact(version),
                    vec![deposit(version.0 as i64 + 1)],
                )
                .await
                .unwrap();
        }
        burn(store.pool(), burn_every).await;
    }
}

/// `store`'s error as the adapter's error, if it is one.
fn postgres_error(error: &StoreError) -> Option<&PostgresError> {
    match error {
        StoreError::Backend { source, .. } => source.downcast_ref::<PostgresError>(),
        _ => None,
    }
}

fn is_cluster_moved(error: &StoreError) -> bool {
    matches!(
        postgres_error(error),
        Some(PostgresError::ClusterMoved { .. })
    )
}

/// Each event of the log exactly once in the read model of `K`, each stream in version order
/// (1, 2, 3... in the order applied).
async fn assert_applied_exactly_once<const K: u8>(store: &PostgresStore, expected: i64) {
    let sql = format!(
        "SELECT stream_id, version FROM {} ORDER BY seq",
        Seen::<K>::table()
    );
    let rows = sqlx::query(AssertSqlSafe(sql))
        .fetch_all(store.pool())
        .await
        .unwrap();
    assert_eq!(rows.len() as i64, expected, "events applied by {}", K);
    let mut last: HashMap<String, i64> = HashMap::new();
    for row in &rows {
        let stream: String = row.get(0);
        let version: i64 = row.get(1);
        let previous = last.insert(stream.clone(), version).unwrap_or(0);
        assert_eq!(
            version,
            previous + 1,
            "stream {stream}: version {version} applied after version {previous}"
        );
    }
    // And the read model holds exactly the stored events.
    let missing: i64 = sqlx::query_scalar(AssertSqlSafe(format!(
        "SELECT count(*) FROM {SCHEMA}.events e WHERE NOT EXISTS \
           (SELECT 1 FROM {} s WHERE s.event_id = e.event_id)",
        Seen::<K>::table()
    )))
    .fetch_one(store.pool())
    .await
    .unwrap();
    assert_eq!(missing, 0);
}

/// Reading the whole log from the start returns every event once, in strictly increasing
/// checkpoints, each stream in version order.
async fn assert_log_in_order(store: &PostgresStore, expected: usize) {
    let mut after = Checkpoint::START;
    let mut seen = 0;
    let mut last: HashMap<StreamId, Version> = HashMap::new();
    loop {
        let page = store.read_all(after, 700, &LogFilter::all()).await.unwrap();
        if page.is_empty() {
            break;
        }
        for event in &page {
            assert!(
                event.checkpoint > after,
                "{} after {after}",
                event.checkpoint
            );
            after = event.checkpoint;
            let previous = last.insert(event.stream_id.clone(), event.version);
            assert_eq!(
                event.version.0,
                previous.map_or(0, |v| v.0) + 1,
                "{}",
                event.stream_id
            );
            seen += 1;
        }
    }
    assert_eq!(seen, expected);
}

/// The behind count `status` shows for `projection`.
async fn behind(store: &PostgresStore, projection: &str) -> Option<u64> {
    let status = store.admin().status().await.unwrap();
    status
        .checkpoints
        .iter()
        .find(|c| c.projection == projection)
        .map(|c| c.behind)
}

/// Dumps schema `bank` of `source` with `pg_dump` and restores it into `target` with
/// `pg_restore`; returns how long both took.
fn dump_and_restore(source: &str, target: &str) -> Duration {
    let started = Instant::now();
    let file =
        std::env::temp_dir().join(format!("eventsource-drill-{}.dump", uuid::Uuid::now_v7()));
    let status = std::process::Command::new(pg_tool("pg_dump"))
        .args(["--format=custom", "--schema", SCHEMA, "--file"])
        .arg(&file)
        .args(["--dbname", source])
        .status()
        .expect("run pg_dump");
    assert!(status.success(), "pg_dump failed: {status}");
    let status = std::process::Command::new(pg_tool("pg_restore"))
        .args(["--exit-on-error", "--no-owner", "--dbname", target])
        .arg(&file)
        .status()
        .expect("run pg_restore");
    let _ = std::fs::remove_file(&file);
    assert!(status.success(), "pg_restore failed: {status}");
    started.elapsed()
}

/// Creates the two read-model tables.
async fn create_read_models(store: &PostgresStore) {
    for table in [Seen::<0>::table(), Seen::<1>::table()] {
        execute(
            store,
            &format!(
                "CREATE TABLE {table} (seq bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, \
                 event_id uuid NOT NULL UNIQUE, stream_id text NOT NULL, version bigint NOT NULL)"
            ),
        )
        .await;
    }
}

async fn catch_up<P>(projection: P, store: &PostgresStore) -> u64
where
    P: Projection,
    P::Handles: HandledEvents<P, PostgresTx>,
{
    let mut runner = ProjectionRunner::new(projection, store.clone()).with_options(options());
    runner.catch_up().await.unwrap().applied
}

/// Source well ahead of the target: the restored store does not fit the target cluster. Until
/// `migrate` re-bases it, the store refuses to read or append, `status` fails and `verify`
/// reports it; afterwards every projection is exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restore_into_a_cluster_behind_the_source() {
    let started = Instant::now();
    let name = format!("drill_behind_{}", uuid::Uuid::now_v7().simple());
    let source_url = create_database(&support::database_url(), &name).await;
    let target_url = create_database(&restore_cluster_url(), &name).await;
    let source = connect(&source_url).await;
    source.migrate().await.unwrap();
    create_read_models(&source).await;
    let target_pool = PgPool::connect(&target_url).await.unwrap();

    // The source's ids start well above the target's counter, and spread over a wide range.
    let ahead = next_xid(&target_pool).await + 20_000 - next_xid(source.pool()).await;
    burn(source.pool(), ahead).await;
    fill(&source, 100, 30, 200).await;
    assert_eq!(catch_up(Seen::<0>, &source).await, 3_000);
    assert_eq!(behind(&source, "resumed").await, Some(0));
    let source_clock = source.admin().clock().await.unwrap();
    let restore_time = dump_and_restore(&source_url, &target_url);

    // Restored as is: the newest id is above the target's counter.
    let target = connect(&target_url).await;
    let clock = target.admin().clock().await.unwrap();
    assert!(!clock.fits(), "{clock:?} (source {source_clock:?})");
    let error = target
        .append(
            &StreamId::from_raw("account-0"),
            ExpectedVersion::Any,
            vec![deposit(0)],
        )
        .await
        .unwrap_err();
    assert!(is_cluster_moved(&error), "{error}");
    assert!(error.to_string().contains("eventsource migrate"), "{error}");
    let error = target
        .read_all(Checkpoint::START, 10, &LogFilter::all())
        .await
        .unwrap_err();
    assert!(is_cluster_moved(&error), "{error}");
    let runner = ProjectionRunner::new(Seen::<0>, target.clone());
    let error = runner.status().await.unwrap_err();
    assert!(is_cluster_moved(&error), "{error}");
    // `status` refuses (it would count 0 behind), and `verify` reports the same.
    let error = target.admin().status().await.unwrap_err();
    assert!(
        matches!(error, PostgresError::ClusterMoved { .. }),
        "{error}"
    );
    let report = target.admin().verify().await.unwrap();
    let moved: Vec<_> = report
        .findings
        .iter()
        .filter(|f| f.check == Check::TransactionIds)
        .collect();
    assert_eq!(moved.len(), 1, "{:?}", report.findings);
    assert!(moved[0].message.contains("eventsource migrate"));
    assert_eq!(report.problems, 1, "{:?}", report.findings);

    // The repair: once, then a no-op.
    let migrated = target.admin().migrate().await.unwrap();
    let rebased = migrated.rebased.expect("re-based");
    assert_eq!(Some(rebased.newest_event), clock.newest_event);
    assert!(rebased.to_offset > rebased.from_offset);
    assert!(migrated.analyzed, "a restore brings no statistics");
    let again = target.admin().migrate().await.unwrap();
    assert_eq!((again.rebased, again.analyzed), (None, false));
    assert!(target.admin().clock().await.unwrap().fits());
    assert!(target.admin().verify().await.unwrap().is_ok());
    assert_eq!(behind(&target, "resumed").await, Some(0));

    // More events on the target: they follow every restored one.
    fill(&target, 100, 5, 0).await;
    assert_eq!(behind(&target, "resumed").await, Some(500));
    let status = ProjectionRunner::new(Seen::<0>, target.clone())
        .status()
        .await
        .unwrap();
    assert_eq!(status.lag, 500);

    assert_eq!(catch_up(Seen::<0>, &target).await, 500);
    assert_applied_exactly_once::<0>(&target, 3_500).await;
    assert_eq!(catch_up(Seen::<1>, &target).await, 3_500);
    assert_applied_exactly_once::<1>(&target, 3_500).await;
    assert_log_in_order(&target, 3_500).await;
    assert_eq!(behind(&target, "resumed").await, Some(0));
    assert_eq!(behind(&target, "fresh").await, Some(0));
    assert!(target.admin().verify().await.unwrap().is_ok());
    eprintln!(
        "restore drill, target behind the source: source ids up to {} (offset {}), target counter {} -> offset {}; dump + restore {:.2} s, whole drill {:.2} s",
        rebased.newest_event,
        rebased.from_offset,
        clock.next,
        rebased.to_offset,
        restore_time.as_secs_f64(),
        started.elapsed().as_secs_f64()
    );
}

/// Target well ahead of the source: the restored store fits as it is; `migrate` only gathers
/// the statistics the restore did not bring; every projection is exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restore_into_a_cluster_ahead_of_the_source() {
    let started = Instant::now();
    let name = format!("drill_ahead_{}", uuid::Uuid::now_v7().simple());
    // The drill's cluster is the source here: its counter is young.
    let source_url = create_database(&restore_cluster_url(), &name).await;
    let target_url = create_database(&support::database_url(), &name).await;
    let source = connect(&source_url).await;
    source.migrate().await.unwrap();
    create_read_models(&source).await;
    fill(&source, 50, 20, 20).await;
    assert_eq!(catch_up(Seen::<0>, &source).await, 1_000);
    let newest = source.admin().clock().await.unwrap().newest_event.unwrap();

    let target_pool = PgPool::connect(&target_url).await.unwrap();
    burn(
        &target_pool,
        newest as i64 + 20_000 - next_xid(&target_pool).await,
    )
    .await;
    let restore_time = dump_and_restore(&source_url, &target_url);

    let target = connect(&target_url).await;
    let clock = target.admin().clock().await.unwrap();
    assert!(clock.fits(), "{clock:?}");
    assert_eq!(clock.newest_event, Some(newest));
    assert_eq!(behind(&target, "resumed").await, Some(0));
    assert!(target.admin().verify().await.unwrap().is_ok());
    let migrated = target.admin().migrate().await.unwrap();
    assert_eq!(migrated.rebased, None);
    assert!(migrated.analyzed);
    assert_eq!(target.admin().clock().await.unwrap().offset, 0);

    fill(&target, 50, 4, 0).await;
    assert_eq!(behind(&target, "resumed").await, Some(200));
    assert_eq!(catch_up(Seen::<0>, &target).await, 200);
    assert_applied_exactly_once::<0>(&target, 1_200).await;
    assert_eq!(catch_up(Seen::<1>, &target).await, 1_200);
    assert_applied_exactly_once::<1>(&target, 1_200).await;
    assert_log_in_order(&target, 1_200).await;
    assert_eq!(behind(&target, "fresh").await, Some(0));
    assert!(target.admin().verify().await.unwrap().is_ok());
    eprintln!(
        "restore drill, target ahead of the source: source ids up to {newest}, target counter {}; dump + restore {:.2} s, whole drill {:.2} s",
        clock.next,
        restore_time.as_secs_f64(),
        started.elapsed().as_secs_f64()
    );
}
