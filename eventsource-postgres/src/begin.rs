//! Transactions begun so that a cancelled caller cannot leave a pooled connection inside one.
//!
//! sqlx 0.9.0's `Pool::begin` is not cancel-safe on PostgreSQL (transact-rs/sqlx#4393, fixed
//! upstream after 0.9.0): a future dropped while the `BEGIN` round trip is in flight (an aborted
//! task, a `timeout`, a `select!`) leaves the session inside a transaction that nothing rolls
//! back, and the pool hands that connection to the next borrower. Its statements then run in
//! the stale transaction: an append is acknowledged but never committed (lost when the
//! connection closes), and the rows it touched stay locked (a projection runner waits for its
//! own checkpoint row forever). Every transaction of this crate therefore begins on a task of
//! its own: a cancelled caller stops waiting, the task finishes the `BEGIN`, and the
//! transaction, dropped there, is rolled back before its connection goes back to the pool.

use sqlx::{PgPool, Postgres, Transaction};

/// `pool.begin()`, completed on a task of its own when a tokio runtime is running (see the
/// module documentation).
pub(crate) async fn begin(pool: &PgPool) -> Result<Transaction<'static, Postgres>, sqlx::Error> {
    let Ok(runtime) = tokio::runtime::Handle::try_current() else {
        return pool.begin().await;
    };
    let pool = pool.clone();
    match runtime.spawn(async move { pool.begin().await }).await {
        Ok(begun) => begun,
        // The runtime is shutting down (or the task panicked): no transaction was handed out.
        Err(error) => Err(sqlx::Error::Io(std::io::Error::other(format!(
            "beginning a transaction: {error}"
        )))),
    }
}
