//! Shared set-up of the PostgreSQL tests: each test gets its own, freshly migrated schema.
//!
//! The tests need a server: `DATABASE_URL` must point at one (`scripts/test.sh` starts a
//! throwaway cluster and sets it). Without it, or with the server down, they fail; they never
//! skip.
#![allow(dead_code, unreachable_pub, clippy::expect_used, clippy::unwrap_used)]

use std::time::Duration;

use eventsource::postgres::PostgresStore;

/// The test database's URL.
///
/// # Panics
/// If `DATABASE_URL` is not set.
pub fn database_url() -> String {
    match std::env::var("DATABASE_URL") {
        Ok(url) if !url.trim().is_empty() => url,
        _ => panic!(
            "DATABASE_URL is not set: the PostgreSQL tests need a server. Run `scripts/test.sh` \
             (it starts a throwaway PostgreSQL and sets DATABASE_URL), or export \
             DATABASE_URL=postgres://USER@HOST:PORT/DATABASE"
        ),
    }
}

/// A unique schema name for one test.
pub fn unique_schema() -> String {
    format!("t_{}", uuid::Uuid::now_v7().simple())
}

/// A store in a new schema of its own, migrated, on a small pool.
///
/// # Panics
/// If the server cannot be reached or the migration fails.
pub async fn fresh_pg_store() -> PostgresStore {
    fresh_pg_store_with_pool(10).await
}

/// [`fresh_pg_store`] on a pool of at most `max_connections` connections.
///
/// # Panics
/// If the server cannot be reached or the migration fails.
pub async fn fresh_pg_store_with_pool(max_connections: u32) -> PostgresStore {
    let url = database_url();
    let store = PostgresStore::builder()
        .schema(unique_schema())
        .max_connections(max_connections)
        .acquire_timeout(Duration::from_secs(20))
        .connect(&url)
        .await
        .unwrap_or_else(|e| panic!("the PostgreSQL tests need a reachable server: {e}"));
    store
        .migrate()
        .await
        .unwrap_or_else(|e| panic!("cannot migrate the test schema: {e}"));
    store
}
