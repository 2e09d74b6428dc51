//! The projection runner on PostgreSQL: exactly-once read models under concurrent writers and
//! open transactions, crash and restart, poison events, competing runners, rebuilds.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "support/postgres.rs"]
mod support;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use eventsource::postgres::sqlx::{self, AssertSqlSafe, Row};
use eventsource::postgres::{PostgresStore, PostgresTx};
use eventsource::prelude::*;
use eventsource::{
    Checkpoint, Envelope, HandlerError, LogFilter, NewEvent, Project, Projection, ProjectionError,
    ProjectionRunner, ProjectionStore, RecordedEvent, Reset, RunnerOptions, StoreError,
};
use serde_json::json;
use support::{fresh_pg_store, fresh_pg_store_with_pool};

#[derive(Event, Serialize, Deserialize, Clone, Debug)]
#[event(name = "ledger.posted")]
struct Posted {
    amount: i64,
}

#[derive(Debug, thiserror::Error)]
enum LedgerError {
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
    #[error("refusing amount {0}")]
    Refused(i64),
}

/// A read model in `<schema>.ledger`: one row per applied event (a second apply of the same
/// event violates the primary key), so count and sum prove exactly-once.
#[derive(Clone)]
struct Ledger {
    table: String,
    poison: Arc<Mutex<Option<i64>>>,
    delay: Duration,
}

impl Ledger {
    async fn new(store: &PostgresStore) -> Ledger {
        let table = format!("\"{}\".ledger", store.schema().as_str());
        let sql = format!(
            "CREATE TABLE {table} (event_id uuid PRIMARY KEY, position bigint NOT NULL, amount bigint NOT NULL)"
        );
        sqlx::query(AssertSqlSafe(sql))
            .execute(store.pool())
            .await
            .unwrap();
        Ledger {
            table,
            poison: Arc::default(),
            delay: Duration::ZERO,
        }
    }

    /// (count, sum of amounts, sum of positions) of the read model.
    async fn totals(&self, store: &PostgresStore) -> (i64, i64, i64) {
        let sql = format!(
            "SELECT count(*), coalesce(sum(amount), 0)::bigint, coalesce(sum(position), 0)::bigint FROM {}",
            self.table
        );
        let row = sqlx::query(AssertSqlSafe(sql))
            .fetch_one(store.pool())
            .await
            .unwrap();
        (row.get(0), row.get(1), row.get(2))
    }

    async fn rows(&self, store: &PostgresStore) -> Vec<(uuid::Uuid, i64, i64)> {
        let sql = format!(
            "SELECT event_id, position, amount FROM {} ORDER BY position",
            self.table
        );
        sqlx::query(AssertSqlSafe(sql))
            .fetch_all(store.pool())
            .await
            .unwrap()
            .iter()
            .map(|r| (r.get(0), r.get(1), r.get(2)))
            .collect()
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
        if *self.poison.lock().unwrap() == Some(event.amount) {
            return Err(LedgerError::Refused(event.amount));
        }
        if !self.delay.is_zero() {
            tokio::time::sleep(self.delay).await;
        }
        let sql = format!(
            "INSERT INTO {} (event_id, position, amount) VALUES ($1, $2, $3)",
            self.table
        );
        sqlx::query(AssertSqlSafe(sql))
            .bind(at.event_id)
            .bind(at.position.0 as i64)
            .bind(event.amount)
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

fn posted(amount: i64) -> NewEvent {
    NewEvent::new("ledger.posted", 1, json!({ "amount": amount }))
}

fn options() -> RunnerOptions {
    RunnerOptions {
        batch_size: 200,
        max_retries: 2,
        backoff: Duration::from_millis(5),
        poll_interval: Duration::from_millis(200),
        ..RunnerOptions::default()
    }
}

/// (count, sum of amounts, sum of positions) of the `ledger.posted` events in the store.
async fn store_totals(store: &PostgresStore) -> (i64, i64, i64) {
    let sql = format!(
        "SELECT count(*), coalesce(sum((payload->>'amount')::bigint), 0)::bigint, coalesce(sum(position), 0)::bigint \
         FROM \"{}\".events WHERE name = 'ledger.posted'",
        store.schema().as_str()
    );
    let row = sqlx::query(AssertSqlSafe(sql))
        .fetch_one(store.pool())
        .await
        .unwrap();
    (row.get(0), row.get(1), row.get(2))
}

/// A tiny deterministic generator, so that delays vary without a dependency.
fn next(seed: &mut u64) -> u64 {
    *seed = seed
        .wrapping_mul(6_364_136_223_846_793_005)
        .wrapping_add(1_442_695_040_888_963_407);
    *seed >> 33
}

async fn wait_until<F, Fut>(what: &str, mut done: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + Duration::from_secs(60);
    while !done().await {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_writers_with_open_transactions_are_applied_exactly_once() {
    const WRITERS: u64 = 4;
    const PER_WRITER: i64 = 2_500;
    let store = fresh_pg_store().await;
    let ledger = Ledger::new(&store).await;
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let mut runner = ProjectionRunner::new(ledger.clone(), store.clone()).with_options(options());
    let live = tokio::spawn(async move { runner.run(async { stopped.await.unwrap_or(()) }).await });

    let mut writers = Vec::new();
    for writer in 0..WRITERS {
        let store = store.clone();
        writers.push(tokio::spawn(async move {
            let mut seed = writer + 1;
            let mut written = 0i64;
            let stream = StreamId::new("ledger", writer);
            while written < PER_WRITER {
                let size = (next(&mut seed) % 25 + 1).min((PER_WRITER - written) as u64) as i64;
                let batch: Vec<_> = (0..size)
                    .map(|i| posted(writer as i64 * 1_000_000 + written + i))
                    .collect();
                if next(&mut seed).is_multiple_of(4) {
                    // Hold the transaction open after drawing positions, while others commit.
                    let mut tx = store.pool().begin().await.unwrap();
                    store
                        .append_in(&mut tx, &stream, ExpectedVersion::Any, batch)
                        .await
                        .unwrap();
                    tokio::time::sleep(Duration::from_millis(next(&mut seed) % 40)).await;
                    tx.commit().await.unwrap();
                } else {
                    store
                        .append(&stream, ExpectedVersion::Any, batch)
                        .await
                        .unwrap();
                    tokio::time::sleep(Duration::from_millis(next(&mut seed) % 3)).await;
                }
                written += size;
            }
        }));
    }
    for writer in writers {
        writer.await.unwrap();
    }
    let expected = store_totals(&store).await;
    assert_eq!(expected.0, (WRITERS as i64) * PER_WRITER);
    wait_until("the live projection to apply every event", || async {
        ledger.totals(&store).await.0 >= expected.0
    })
    .await;
    stop.send(()).unwrap();
    live.await.unwrap().unwrap();
    assert_eq!(
        ledger.totals(&store).await,
        expected,
        "count, amount sum and position sum"
    );
    let checkpoint = store.load_checkpoint(Ledger::NAME).await.unwrap().unwrap();
    let last = store
        .read_all(Checkpoint::START, 100_000, &LogFilter::all())
        .await
        .unwrap();
    assert_eq!(Some(checkpoint), last.last().map(|e| e.checkpoint));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_runner_killed_mid_batch_resumes_to_the_same_read_model_as_a_rebuild() {
    let store = fresh_pg_store().await;
    let mut ledger = Ledger::new(&store).await;
    for chunk in 0..6 {
        let batch: Vec<_> = (0..50).map(|i| posted(chunk * 50 + i)).collect();
        store
            .append(
                &StreamId::new("ledger", chunk % 2),
                ExpectedVersion::Any,
                batch,
            )
            .await
            .unwrap();
    }
    // A slow handler, aborted while a batch is in flight (its transaction is dropped).
    ledger.delay = Duration::from_millis(2);
    let mut slow =
        ProjectionRunner::new(ledger.clone(), store.clone()).with_options(RunnerOptions {
            batch_size: 40,
            ..options()
        });
    let task = tokio::spawn(async move { slow.catch_up().await });
    wait_until("the first batches to commit", || async {
        ledger.totals(&store).await.0 >= 80
    })
    .await;
    task.abort();
    assert!(task.await.unwrap_err().is_cancelled());
    let partial = ledger.totals(&store).await.0;
    assert!(partial < 300, "aborted before the end ({partial} applied)");
    assert_eq!(partial % 40, 0, "only whole batches are visible");

    ledger.delay = Duration::ZERO;
    let mut runner = ProjectionRunner::new(ledger.clone(), store.clone()).with_options(options());
    let resumed = runner.catch_up().await.unwrap();
    assert_eq!(resumed.applied as i64, 300 - partial);
    let incremental = ledger.rows(&store).await;
    assert_eq!(incremental.len(), 300);
    let mut progress = Vec::new();
    let rebuilt = runner.rebuild(|p| progress.push(p)).await.unwrap();
    assert_eq!(rebuilt.applied, 300);
    assert_eq!(
        ledger.rows(&store).await,
        incremental,
        "rebuild equals the incremental run"
    );
    let last = progress.last().unwrap();
    assert_eq!((last.done, last.total), (300, 300));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_poison_event_stops_the_runner_just_before_it() {
    let store = fresh_pg_store().await;
    let ledger = Ledger::new(&store).await;
    let amounts: Vec<i64> = (1..=30).collect();
    store
        .append(
            &StreamId::new("ledger", "p"),
            ExpectedVersion::NoStream,
            amounts.iter().map(|&a| posted(a)).collect(),
        )
        .await
        .unwrap();
    *ledger.poison.lock().unwrap() = Some(17);
    let mut runner =
        ProjectionRunner::new(ledger.clone(), store.clone()).with_options(RunnerOptions {
            batch_size: 10,
            ..options()
        });
    let error = runner.catch_up().await.unwrap_err();
    match &error {
        ProjectionError::Failed {
            projection,
            name,
            stream,
            version,
            attempts,
            source,
            ..
        } => {
            assert_eq!(
                (*projection, name.as_str(), stream.as_str()),
                ("ledger", "ledger.posted", "ledger-p")
            );
            assert_eq!((*version, *attempts), (Version(17), 3));
            assert!(
                matches!(source, HandlerError::Handler(LedgerError::Refused(17))),
                "{source:?}"
            );
        }
        other => panic!("expected Failed, got {other:?}"),
    }
    assert!(error.to_string().contains("version 17"), "{error}");
    let events = store
        .read_stream(&StreamId::new("ledger", "p"), Version(16), 1)
        .await
        .unwrap();
    let checkpoint = store.load_checkpoint(Ledger::NAME).await.unwrap();
    assert_eq!(
        checkpoint,
        Some(events[0].checkpoint),
        "checkpoint at the event before the poison"
    );
    assert_eq!(ledger.totals(&store).await.0, 16);

    *ledger.poison.lock().unwrap() = None;
    let done = runner.catch_up().await.unwrap();
    assert_eq!(done.applied, 14);
    assert_eq!(ledger.totals(&store).await, store_totals(&store).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_runners_of_one_projection_never_apply_an_event_twice() {
    let store = fresh_pg_store().await;
    let ledger = Ledger::new(&store).await;
    for chunk in 0..10 {
        let batch: Vec<_> = (0..100).map(|i| posted(chunk * 100 + i)).collect();
        store
            .append(&StreamId::new("ledger", chunk), ExpectedVersion::Any, batch)
            .await
            .unwrap();
    }
    let mut tasks = Vec::new();
    for _ in 0..2 {
        let mut runner =
            ProjectionRunner::new(ledger.clone(), store.clone()).with_options(RunnerOptions {
                batch_size: 50,
                ..options()
            });
        tasks.push(tokio::spawn(async move { runner.catch_up().await }));
    }
    let mut applied = 0;
    for task in tasks {
        applied += task.await.unwrap().unwrap().applied;
    }
    assert_eq!(
        applied, 1_000,
        "the second runner waited and found nothing left"
    );
    assert_eq!(ledger.totals(&store).await, store_totals(&store).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_reports_lag() {
    let store = fresh_pg_store().await;
    let ledger = Ledger::new(&store).await;
    store
        .append(
            &StreamId::new("ledger", "s"),
            ExpectedVersion::Any,
            (0..5).map(posted).collect(),
        )
        .await
        .unwrap();
    let mut runner = ProjectionRunner::new(ledger, store.clone()).with_options(options());
    let before = runner.status().await.unwrap();
    assert_eq!((before.checkpoint, before.lag), (None, 5));
    runner.catch_up().await.unwrap();
    let after = runner.status().await.unwrap();
    assert_eq!(after.lag, 0);
    assert_eq!(after.head, store.head_position().await.unwrap());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_live_runner_is_woken_by_notifications_not_by_polling() {
    let store = fresh_pg_store().await.with_horizon_wait(Duration::ZERO);
    let ledger = Ledger::new(&store).await;
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    // Polling every 10 minutes: only a notification can bring the runner up in time.
    let mut runner =
        ProjectionRunner::new(ledger.clone(), store.clone()).with_options(RunnerOptions {
            poll_interval: Duration::from_secs(600),
            ..options()
        });
    let live = tokio::spawn(async move { runner.run(async { stopped.await.unwrap_or(()) }).await });
    for round in 1..=3i64 {
        // Let the runner reach its wait, then append and expect it to apply within seconds.
        tokio::time::sleep(Duration::from_millis(300)).await;
        store
            .append(
                &StreamId::new("ledger", "live"),
                ExpectedVersion::Any,
                vec![posted(round)],
            )
            .await
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(15);
        while ledger.totals(&store).await.0 < round {
            assert!(
                Instant::now() < deadline,
                "round {round}: no wake-up within 15 s"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    stop.send(()).unwrap();
    live.await.unwrap().unwrap();
    assert_eq!(ledger.totals(&store).await, store_totals(&store).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_parking_runner_parks_the_poison_event_in_the_batch_transaction_and_goes_on() {
    let store = fresh_pg_store().await;
    let ledger = Ledger::new(&store).await;
    store
        .append(
            &StreamId::new("ledger", "p"),
            ExpectedVersion::NoStream,
            (1..=30).map(posted).collect(),
        )
        .await
        .unwrap();
    *ledger.poison.lock().unwrap() = Some(17);
    let mut runner = ProjectionRunner::new(ledger.clone(), store.clone())
        .with_options(RunnerOptions {
            batch_size: 10,
            failure_policy: eventsource::FailurePolicy::Park,
            ..options()
        })
        .rebuild_on_reset();
    let done = runner.catch_up().await.unwrap();
    assert_eq!(done.applied, 30);
    assert_eq!(ledger.totals(&store).await.0, 29, "all but the poison");
    assert_eq!(runner.status().await.unwrap().lag, 0);
    let parked = store.parked(None).await.unwrap();
    assert_eq!(parked.len(), 1);
    assert_eq!(parked[0].projection, "ledger");
    assert_eq!(parked[0].record.version, Version(17));
    assert_eq!(parked[0].attempts, 3);
    assert!(
        parked[0].error.contains("refusing amount 17"),
        "{}",
        parked[0].error
    );
    let at = eventsource::ParkedSelection::At(parked[0].record.position);

    // Fixed and retried: applied exactly once (the ledger's key would refuse a second time).
    *ledger.poison.lock().unwrap() = None;
    assert_eq!(store.retry_parked("ledger", at).await.unwrap(), 1);
    assert!(store.parked(None).await.unwrap()[0].retry_requested);
    assert_eq!(runner.catch_up().await.unwrap().applied, 0);
    assert!(store.parked(None).await.unwrap().is_empty());
    assert_eq!(ledger.totals(&store).await, store_totals(&store).await);

    // A rebuild applies everything again and forgets parked events.
    *ledger.poison.lock().unwrap() = Some(5);
    store
        .append(
            &StreamId::new("ledger", "p"),
            ExpectedVersion::Any,
            vec![posted(5_000)],
        )
        .await
        .unwrap();
    *ledger.poison.lock().unwrap() = Some(5_000);
    runner.catch_up().await.unwrap();
    assert_eq!(store.parked(Some("ledger")).await.unwrap().len(), 1);
    *ledger.poison.lock().unwrap() = None;
    runner.rebuild(|_| {}).await.unwrap();
    assert!(store.parked(None).await.unwrap().is_empty());
    assert_eq!(ledger.totals(&store).await, store_totals(&store).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reset_request_rebuilds_instead_of_doubling_the_read_model() {
    let store = fresh_pg_store().await;
    let ledger = Ledger::new(&store).await;
    store
        .append(
            &StreamId::new("ledger", "r"),
            ExpectedVersion::NoStream,
            (1..=12).map(posted).collect(),
        )
        .await
        .unwrap();
    let mut plain = ProjectionRunner::new(ledger.clone(), store.clone()).with_options(options());
    plain.catch_up().await.unwrap();
    let before = ledger.totals(&store).await;
    assert_eq!(before, store_totals(&store).await);

    // What `eventsource projection reset ledger --yes` does.
    let was = store.admin().request_reset("ledger").await.unwrap();
    assert!(was.is_some());
    let refused = plain.catch_up().await.unwrap_err();
    assert!(
        matches!(
            refused,
            ProjectionError::ResetRequested {
                projection: "ledger"
            }
        ),
        "{refused}"
    );
    assert_eq!(
        ledger.totals(&store).await,
        before,
        "nothing replayed on top"
    );
    assert_eq!(plain.status().await.unwrap().lag, 12);

    let mut rebuilding = ProjectionRunner::new(ledger.clone(), store.clone())
        .with_options(options())
        .rebuild_on_reset();
    assert_eq!(rebuilding.catch_up().await.unwrap().applied, 12);
    assert_eq!(ledger.totals(&store).await, before, "rebuilt, not doubled");
    let status = rebuilding.status().await.unwrap();
    assert!(!status.reset_requested);
    assert_eq!(status.lag, 0);

    // Asked for while a runner is live: its next commit is refused, then it rebuilds.
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let live =
        tokio::spawn(async move { rebuilding.run(async { stopped.await.unwrap_or(()) }).await });
    tokio::time::sleep(Duration::from_millis(300)).await;
    store.admin().request_reset("ledger").await.unwrap();
    store
        .append(
            &StreamId::new("ledger", "r"),
            ExpectedVersion::Any,
            vec![posted(100)],
        )
        .await
        .unwrap();
    wait_until(
        "the live runner to rebuild and apply the new event",
        || async {
            ledger.totals(&store).await.0 == 13 && !store.reset_requested("ledger").await.unwrap()
        },
    )
    .await;
    stop.send(()).unwrap();
    live.await.unwrap().unwrap();
    assert_eq!(ledger.totals(&store).await, store_totals(&store).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_lease_is_found_before_a_batch_starts() {
    let store = fresh_pg_store().await;
    let filter = LogFilter::all().name("ledger.posted");
    let lease = store.acquire_lease("ledger", &filter).await.unwrap();
    let tx = store.begin(&lease).await.unwrap();
    store.rollback(tx).await;

    // The lease session ended by an administrator.
    let ended: bool = sqlx::query_scalar("SELECT pg_terminate_backend($1)")
        .bind(lease.backend_pid())
        .fetch_one(store.pool())
        .await
        .unwrap();
    assert!(ended);
    // The lock goes when the session's process exits, a moment after it is told to.
    wait_until("the lease session to end", || async {
        sqlx::query_scalar::<_, bool>(
            "SELECT NOT EXISTS (SELECT 1 FROM pg_catalog.pg_stat_activity WHERE pid = $1)",
        )
        .bind(lease.backend_pid())
        .fetch_one(store.pool())
        .await
        .unwrap()
    })
    .await;
    let lost = store.begin(&lease).await.unwrap_err();
    assert!(
        matches!(&lost, StoreError::LeaseLost { projection, reason }
            if projection == "ledger" && reason.contains("no longer holds")),
        "{lost}"
    );
    assert!(!lost.is_transient());
    drop(lease);

    // Its checkpoint row deleted by hand.
    let lease = store.acquire_lease("ledger", &filter).await.unwrap();
    sqlx::query(AssertSqlSafe(format!(
        "DELETE FROM \"{}\".checkpoints",
        store.schema().as_str()
    )))
    .execute(store.pool())
    .await
    .unwrap();
    let gone = store.begin(&lease).await.unwrap_err();
    assert!(
        matches!(&gone, StoreError::LeaseLost { reason, .. } if reason.contains("deleted")),
        "{gone}"
    );
    // The pool's connections are healthy afterwards (no transaction left aborted).
    for _ in 0..12 {
        store.head_position().await.unwrap();
    }
}

/// Whether another session can lock the projection's checkpoint row right now.
async fn checkpoint_row_is_free(store: &PostgresStore, projection: &str) -> bool {
    use eventsource::postgres::sqlx::Connection as _;
    let mut other = sqlx::PgConnection::connect(&support::database_url())
        .await
        .unwrap();
    let mut tx = other.begin().await.unwrap();
    let sql = format!(
        "SELECT 1 FROM \"{}\".checkpoints WHERE projection = $1 FOR UPDATE NOWAIT",
        store.schema().as_str()
    );
    let locked = sqlx::query(AssertSqlSafe(sql))
        .bind(projection)
        .fetch_optional(&mut *tx)
        .await;
    let _ = tx.rollback().await;
    match locked {
        Ok(row) => row.is_some(),
        // 55P03: lock_not_available.
        Err(error)
            if error.as_database_error().and_then(|e| e.code()).as_deref() == Some("55P03") =>
        {
            false
        }
        Err(error) => panic!("probing the checkpoint row: {error}"),
    }
}

/// The runner begins the next batch's transaction while the current one commits
/// (`ProjectionStore::begin_ahead`). That transaction holds the checkpoint row once its fence
/// passes, and a pool connection: it must not outlive the catch-up (a live runner waiting for
/// events would block `projection reset` and the next lease holder), and it must not starve
/// the read of the next page when other sessions hold the pool's other connections while they
/// wait for that row (here, two operators' statements on the checkpoint row in a loop, on a
/// pool of three connections).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_transaction_begun_ahead_never_outlives_the_catch_up_nor_starves_the_pool() {
    const EVENTS: i64 = 2_050;
    let store = fresh_pg_store_with_pool(3).await;
    let ledger = Ledger::new(&store).await;
    let append = |from: i64| {
        let store = store.clone();
        async move {
            for chunk in (from..from + EVENTS).collect::<Vec<_>>().chunks(500) {
                store
                    .append(
                        &StreamId::new("ledger", "ahead"),
                        ExpectedVersion::Any,
                        chunk.iter().map(|&n| posted(n)).collect(),
                    )
                    .await
                    .unwrap();
            }
        }
    };
    append(1).await;
    let mut runner = ProjectionRunner::new(ledger.clone(), store.clone()).with_options(options());
    assert_eq!(runner.catch_up().await.unwrap().applied, EVENTS as u64);
    assert_eq!(ledger.totals(&store).await, store_totals(&store).await);
    // Ten full batches, each beginning the next one's transaction; the one begun after the
    // last full batch found nothing to apply and was rolled back before the catch-up
    // returned.
    assert!(
        checkpoint_row_is_free(&store, "ledger").await,
        "the checkpoint row is free when the catch-up returns"
    );

    // The pool's connections taken by a session that waits for the checkpoint row.
    append(EVENTS + 1).await;
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let operator = || {
        tokio::spawn({
            let (store, stop) = (store.clone(), Arc::clone(&stop));
            async move {
                let sql = format!(
                    "UPDATE \"{}\".checkpoints SET event_names = event_names WHERE projection = 'ledger'",
                    store.schema().as_str()
                );
                let mut updates = 0u64;
                while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                    sqlx::query(AssertSqlSafe(sql.clone()))
                        .execute(store.pool())
                        .await
                        .unwrap();
                    updates += 1;
                }
                updates
            }
        })
    };
    // Two of them: with the batch's connection, the pool is full while both wait.
    let operators = [operator(), operator()];
    let caught_up = tokio::time::timeout(Duration::from_secs(60), runner.catch_up())
        .await
        .expect("the catch-up finishes beside a session waiting for the checkpoint row")
        .unwrap();
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    for operator in operators {
        assert!(operator.await.unwrap() > 0);
    }
    assert_eq!(caught_up.applied, EVENTS as u64);
    assert_eq!(ledger.totals(&store).await, store_totals(&store).await);
    assert!(checkpoint_row_is_free(&store, "ledger").await);
}

/// Collects the records its handler sees; `LEAN` picks [`Envelope::Lean`].
#[derive(Clone, Default)]
struct Seen<const LEAN: bool> {
    records: Arc<Mutex<Vec<RecordedEvent>>>,
}

impl<const LEAN: bool> Projection for Seen<LEAN> {
    const NAME: &'static str = if LEAN { "seen_lean" } else { "seen_full" };
    type Handles = (Posted,);
    type Error = LedgerError;
    const ENVELOPE: Envelope = if LEAN { Envelope::Lean } else { Envelope::Full };
}

impl<const LEAN: bool> Project<Posted, PostgresTx> for Seen<LEAN> {
    async fn project(
        &mut self,
        _: Posted,
        at: &RecordedEvent,
        _: &mut PostgresTx,
    ) -> Result<(), LedgerError> {
        self.records.lock().unwrap().push(at.clone());
        Ok(())
    }
}

/// A projection declaring `Envelope::Lean` reads the same events in the same order as one
/// reading the full envelope, with the same stream, version, position, checkpoint, name,
/// schema version and payload, and only `event_id`, `metadata` and `recorded_at` at their lean
/// values: over several full batches, with the read-ahead, unfiltered and filtered (the
/// filter's own statement and the dense window), beside events it does not handle.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_lean_projection_sees_every_event_as_a_full_one_does_less_the_lean_fields() {
    let store = fresh_pg_store().await;
    let traced = |amount: i64| {
        let mut custom = serde_json::Map::new();
        custom.insert("tenant".to_owned(), json!(format!("t{amount}")));
        posted(amount).with_metadata(eventsource::Metadata {
            correlation_id: Some(uuid::Uuid::now_v7()),
            causation_id: Some(uuid::Uuid::now_v7()),
            custom,
            ..eventsource::Metadata::default()
        })
    };
    for chunk in 0..6_i64 {
        let events: Vec<NewEvent> = (0..100).map(|n| traced(chunk * 100 + n)).collect();
        store
            .append(
                &StreamId::new("ledger", format!("lean{}", chunk % 3)),
                ExpectedVersion::Any,
                events,
            )
            .await
            .unwrap();
        // Events no handler reads, between them.
        store
            .append(
                &StreamId::new("other", "x"),
                ExpectedVersion::Any,
                vec![NewEvent::new("other.noted", 1, json!({ "n": chunk }))],
            )
            .await
            .unwrap();
    }
    let full = Seen::<false>::default();
    let lean = Seen::<true>::default();
    let options = RunnerOptions {
        batch_size: 64,
        ..options()
    };
    let mut full_runner =
        ProjectionRunner::new(full.clone(), store.clone()).with_options(options.clone());
    let mut lean_runner =
        ProjectionRunner::new(lean.clone(), store.clone()).with_options(options.clone());
    assert_eq!(full_runner.catch_up().await.unwrap().applied, 600);
    assert_eq!(lean_runner.catch_up().await.unwrap().applied, 600);
    let full = full.records.lock().unwrap().clone();
    let lean = lean.records.lock().unwrap().clone();
    assert_eq!(full.len(), 600);
    assert!(full.iter().all(|e| e.metadata.correlation_id.is_some()
        && !e.metadata.custom.is_empty()
        && !e.event_id.is_nil()));
    let expected: Vec<RecordedEvent> = full
        .iter()
        .cloned()
        .map(|e| e.within(Envelope::Lean))
        .collect();
    assert_eq!(lean, expected);
    assert!(lean.iter().all(|e| e.event_id.is_nil()
        && e.metadata == eventsource::Metadata::default()
        && e.recorded_at == chrono::DateTime::UNIX_EPOCH));

    // The store's reads themselves, filtered (a page per name, then the dense window) and not.
    for filter in [
        LogFilter::all(),
        LogFilter::all().name("ledger.posted"),
        LogFilter::all().category("ledger"),
    ] {
        let mut after = Checkpoint::START;
        loop {
            let full = store.read_all(after, 50, &filter).await.unwrap();
            let lean = store
                .read_all_within(after, 50, &filter, Envelope::Lean)
                .await
                .unwrap();
            let expected: Vec<RecordedEvent> = full
                .iter()
                .cloned()
                .map(|e| e.within(Envelope::Lean))
                .collect();
            assert_eq!(lean, expected, "{filter:?} after {after}");
            let Some(last) = full.last() else { break };
            after = last.checkpoint;
        }
    }
}

/// Refuses the amount 2; reads the lean envelope.
struct LeanRefusing;

impl Projection for LeanRefusing {
    const NAME: &'static str = "lean_refusing";
    type Handles = (Posted,);
    type Error = LedgerError;
    const ENVELOPE: Envelope = Envelope::Lean;
}

impl Project<Posted, PostgresTx> for LeanRefusing {
    async fn project(
        &mut self,
        event: Posted,
        _: &RecordedEvent,
        _: &mut PostgresTx,
    ) -> Result<(), LedgerError> {
        if event.amount == 2 {
            return Err(LedgerError::Refused(2));
        }
        Ok(())
    }
}

/// A lean runner has the failing event without its id in hand; the event it parks is the
/// stored one, id included (in `parked_events` and as the store lists it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lean_runner_parks_the_event_with_its_stored_id() {
    let store = fresh_pg_store().await;
    let s = StreamId::new("ledger", "lean-park");
    store
        .append(&s, ExpectedVersion::NoStream, (1..=3).map(posted).collect())
        .await
        .unwrap();
    let poison = store
        .read_stream(&s, eventsource::Version(2), 1)
        .await
        .unwrap();
    let mut runner =
        ProjectionRunner::new(LeanRefusing, store.clone()).with_options(RunnerOptions {
            max_retries: 0,
            failure_policy: eventsource::FailurePolicy::Park,
            ..options()
        });
    assert_eq!(runner.catch_up().await.unwrap().applied, 3);
    let stored: uuid::Uuid = sqlx::query_scalar(AssertSqlSafe(format!(
        "SELECT event_id FROM \"{}\".parked_events",
        store.schema().as_str()
    )))
    .fetch_one(store.pool())
    .await
    .unwrap();
    assert_eq!(stored, poison[0].event_id);
    let parked = store.parked(Some("lean_refusing")).await.unwrap();
    assert_eq!(parked.len(), 1);
    assert_eq!(parked[0].record, poison[0]);
}
