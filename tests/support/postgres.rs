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

/// [`fresh_pg_store_with_pool`] whose group commit has up to `transactions` in flight (the
/// default is one): for the tests that hold several transaction slots at once.
///
/// # Panics
/// If the server cannot be reached or the migration fails.
pub async fn fresh_pg_store_with_group_transactions(
    max_connections: u32,
    transactions: usize,
) -> PostgresStore {
    let store = PostgresStore::builder()
        .schema(unique_schema())
        .max_connections(max_connections)
        .group_commit_transactions(transactions)
        .acquire_timeout(Duration::from_secs(20))
        .connect(&database_url())
        .await
        .unwrap_or_else(|e| panic!("the PostgreSQL tests need a reachable server: {e}"));
    store
        .migrate()
        .await
        .unwrap_or_else(|e| panic!("cannot migrate the test schema: {e}"));
    store
}

/// [`fresh_pg_store`] on a pool of at most `max_connections` connections.
///
/// # Panics
/// If the server cannot be reached or the migration fails.
pub async fn fresh_pg_store_with_pool(max_connections: u32) -> PostgresStore {
    // One shared transaction in flight: the store's default.
    fresh_pg_store_with_group_transactions(max_connections, 1).await
}

/// A variable `scripts/test.sh` exports for the tests that restart its cluster.
///
/// # Panics
/// If it is not set.
pub fn cluster_env(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| {
        panic!(
            "{name} is not set: this test restarts the test cluster. Run `scripts/test.sh`, \
             which starts one and exports PG_BIN, PG_DIR and PG_DATA"
        )
    })
}

/// `pg_ctl restart -m MODE` of the test cluster, as its owner (`immediate` is a crash: no
/// checkpoint, every session ended at once, crash recovery on start); waits until the server
/// accepts connections again.
///
/// # Panics
/// If the cluster's variables are not set or `pg_ctl` fails.
pub fn restart_server(mode: &str) {
    use std::process::{Command, Stdio};
    let pg_ctl = format!("{}/pg_ctl", cluster_env("PG_BIN"));
    let (data, log) = (
        cluster_env("PG_DATA"),
        format!("{}/server.log", cluster_env("PG_DIR")),
    );
    let root = Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|out| out.stdout.starts_with(b"0\n"));
    let mut command = if root {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--", &pg_ctl]);
        c
    } else {
        Command::new(&pg_ctl)
    };
    // The server's output goes to its log: a pipe held by the postmaster would never close.
    let out = command
        .args(["-D", &data, "-l", &log, "-m", mode, "-w", "restart"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "pg_ctl restart failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Holds the head rows of `streams` locked in an open transaction on a connection of its own,
/// so that appends to them wait (and keep the store's transaction slots busy).
///
/// # Panics
/// If a stream does not exist or the server cannot be reached.
pub async fn lock_heads<'a>(
    store: &PostgresStore,
    streams: impl IntoIterator<Item = &'a eventsource::StreamId>,
) -> eventsource::postgres::sqlx::PgConnection {
    use eventsource::postgres::sqlx::{self, AssertSqlSafe, Connection, PgConnection};
    let mut conn = PgConnection::connect(&database_url()).await.unwrap();
    sqlx::raw_sql(AssertSqlSafe("BEGIN".to_owned()))
        .execute(&mut conn)
        .await
        .unwrap();
    for s in streams {
        let found = sqlx::query(AssertSqlSafe(format!(
            "SELECT version FROM \"{}\".streams WHERE stream_id = $1 FOR UPDATE",
            store.schema().as_str()
        )))
        .bind(s.as_str())
        .fetch_optional(&mut conn)
        .await
        .unwrap();
        assert!(found.is_some(), "stream {s} must exist to be locked");
    }
    conn
}

/// Waits until `count` statements on the store's schema wait for a lock.
///
/// # Panics
/// If they do not within `within` (a hang detector).
pub async fn wait_for_lock_waiters(store: &PostgresStore, count: i64, within: Duration) {
    let deadline = std::time::Instant::now() + within;
    loop {
        let waiting: i64 = eventsource::postgres::sqlx::query_scalar(
            "SELECT count(*) FROM pg_stat_activity \
             WHERE wait_event_type = 'Lock' AND datname = current_database() \
               AND strpos(query, $1) > 0",
        )
        .bind(format!("\"{}\"", store.schema().as_str()))
        .fetch_one(store.pool())
        .await
        .unwrap();
        if waiting >= count {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{waiting} of {count} appends wait for the lock"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// The (logical) transaction id each stored event of `s` was written in, by version.
///
/// # Panics
/// If the stream cannot be read.
pub async fn transactions(store: &PostgresStore, s: &eventsource::StreamId) -> Vec<u64> {
    use eventsource::EventStore;
    store
        .read_stream(s, eventsource::Version(1), 1_000)
        .await
        .unwrap()
        .iter()
        .map(|e| e.checkpoint.transaction())
        .collect()
}

/// Polls `future` until it has returned `Pending` `pendings` times, then drops it: a caller
/// that stops waiting after so many wake-ups (an aborted task, a timeout), at each await
/// point in turn when called with 1, 2, 3...
pub async fn drop_after<F: std::future::Future>(future: F, pendings: usize) {
    let mut future = std::pin::pin!(future);
    let mut seen = 0;
    std::future::poll_fn(|cx| match future.as_mut().poll(cx) {
        std::task::Poll::Ready(_) => std::task::Poll::Ready(()),
        std::task::Poll::Pending => {
            seen += 1;
            if seen >= pendings {
                std::task::Poll::Ready(())
            } else {
                std::task::Poll::Pending
            }
        }
    })
    .await;
}
