//! Idempotency keys on a real PostgreSQL server: 8 tasks per round race with shared and own
//! keys, withdrawals are accepted or rejected, and every caller's answer is checked against
//! a refold of the stream (see `support/account.rs`).
#![allow(clippy::unwrap_used, clippy::expect_used)] // a test fails by panicking

#[path = "support/account.rs"]
mod account;
#[path = "support/postgres.rs"]
mod support;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_keyed_commands_run_once() {
    let store = support::fresh_pg_store().await;
    account::concurrent_account_rounds(store, 60).await;
}
