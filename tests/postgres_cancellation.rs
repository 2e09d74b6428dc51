//! Cancelled transactions leave nothing behind: a caller that stops waiting while a
//! transaction of the store is being begun (an aborted task, a timeout) must not leave a
//! pooled connection inside an open transaction. sqlx 0.9.0's `Pool::begin` does
//! (transact-rs/sqlx#4393): the next borrower's writes then run in that transaction, are
//! acknowledged and never committed, and the rows they touch stay locked.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "support/postgres.rs"]
mod support;

use std::future::Future;
use std::time::Duration;

use eventsource::postgres::PostgresStore;
use eventsource::postgres::sqlx::{self, AssertSqlSafe, Connection, PgConnection};
use eventsource::testing::fixture::ADDED;
use eventsource::{EventStore, ExpectedVersion, LogFilter, NewEvent, ProjectionStore, StreamId};
use serde_json::json;
use support::{database_url, drop_after, fresh_pg_store_with_pool};

/// A migrated store whose pool has a single connection, so that every borrower after a
/// cancelled `BEGIN` gets the connection it was sent on.
async fn one_connection_store() -> PostgresStore {
    fresh_pg_store_with_pool(1).await
}

/// Appends one event to `stream` through the store's pool, then counts the stream's events
/// from a connection of its own: what the append acknowledged is committed, or not.
async fn acknowledged_and_committed(store: &PostgresStore, stream: &StreamId) -> i64 {
    store
        .append(
            stream,
            ExpectedVersion::NoStream,
            vec![NewEvent::new(ADDED, 1, json!({ "amount": 1 }))],
        )
        .await
        .unwrap();
    let mut other = PgConnection::connect(&database_url()).await.unwrap();
    let count: i64 = sqlx::query_scalar(AssertSqlSafe(format!(
        "SELECT count(*) FROM \"{}\".events WHERE stream_id = $1",
        store.schema().as_str()
    )))
    .bind(stream.as_str())
    .fetch_one(&mut other)
    .await
    .unwrap();
    other.close().await.unwrap();
    count
}

/// Cancels `begin` after 1 to 16 wake-ups, many times (some cancellations land while the
/// `BEGIN` is on the wire), and checks after each that the pool's connection is not inside a
/// transaction.
async fn cancel_many<F, Fut>(store: &PostgresStore, mut begin: F)
where
    F: FnMut() -> Fut,
    Fut: Future,
{
    for round in 0..64 {
        drop_after(begin(), round % 16 + 1).await;
        // Whatever the cancelled begin left to a task of its own finishes meanwhile.
        tokio::time::sleep(Duration::from_millis(20)).await;
        // SAVEPOINT fails outside a transaction block, and succeeds in a stale one.
        let in_transaction = sqlx::raw_sql("SAVEPOINT probe")
            .execute(store.pool())
            .await
            .is_ok();
        assert!(
            !in_transaction,
            "round {round}: a cancelled begin left the pooled connection in a transaction"
        );
    }
}

/// A projection runner's batches begin through `ProjectionStore::begin`: cancelled (a runner
/// aborted while starting a batch), they leave the pool clean.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancelled_batch_begins_leave_no_open_transaction_in_the_pool() {
    let store = one_connection_store().await;
    let lease = store
        .acquire_lease("cancelled-begins", &LogFilter::all())
        .await
        .unwrap();
    cancel_many(&store, || store.begin(&lease)).await;
    let stream = StreamId::new("counter", "after-batches");
    assert_eq!(
        acknowledged_and_committed(&store, &stream).await,
        1,
        "an acknowledged append is committed"
    );
    // And the runner's next batch is not stuck behind a row lock of a stale transaction.
    let tx = tokio::time::timeout(Duration::from_secs(10), store.begin(&lease))
        .await
        .expect("a batch begins")
        .unwrap();
    drop(tx);
}

/// The same for transactions begun for `append_in`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancelled_transaction_begins_leave_no_open_transaction_in_the_pool() {
    let store = one_connection_store().await;
    cancel_many(&store, || store.begin_transaction()).await;
    let stream = StreamId::new("counter", "after-transactions");
    assert_eq!(
        acknowledged_and_committed(&store, &stream).await,
        1,
        "an acknowledged append is committed"
    );
    let mut tx = store.begin_transaction().await.unwrap();
    store
        .append_in(
            &mut tx,
            &StreamId::new("counter", "in-transaction"),
            ExpectedVersion::NoStream,
            vec![NewEvent::new(ADDED, 1, json!({ "amount": 2 }))],
        )
        .await
        .unwrap();
    tx.commit().await.unwrap();
}
