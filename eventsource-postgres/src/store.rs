//! The PostgreSQL store: its type, its builder, and what its clones share.

use std::fmt;
use std::str::FromStr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use eventsource_core::{Limits, StoreError};
use sqlx::postgres::{PgConnectOptions, PgListener, PgPoolOptions, PgRow};
use sqlx::{Connection, PgConnection, PgPool, Postgres, Row};

use crate::append::{DEFAULT_GROUPS_IN_FLIGHT, GroupCommit, MAX_GROUPS_IN_FLIGHT};
use crate::clock::{self, TransactionClock};
use crate::error::PostgresError;
use crate::kept::KeptConnections;
use crate::migrate;
use crate::notify::Notifications;
use crate::read::DenseReads;
use crate::schema::SchemaName;
use crate::sql::{PgQuery, PgQueryOf, Statements};

/// The default of [`PostgresStore::with_horizon_wait`].
const DEFAULT_HORIZON_WAIT: Duration = Duration::from_secs(1);

/// An [`EventStore`](eventsource_core::EventStore), [`SnapshotStore`](eventsource_core::SnapshotStore)
/// and [`ProjectionStore`](eventsource_core::ProjectionStore) in a PostgreSQL schema.
///
/// Cloning is cheap and shares the connection pool. An append is one statement: it checks the
/// expected version, moves the stream head and inserts the batch atomically, and listeners are
/// notified once it has committed; conflicts, retries of stored ids and duplicates are then
/// told apart by the schema's `append()` function.
///
/// **Group commit.** An append of up to 16 events that finds no transaction of the store's
/// appends in flight is written at once, on the caller's task; appends that arrive while one
/// is in flight wait, and are written together in the next transaction once it ends (one in
/// flight by default: [`PostgresStoreBuilder::group_commit_transactions`]). The first append
/// of each stream goes into one statement (one
/// transaction) that moves the heads whose expectation holds and inserts their events; the
/// others (a conflict, a replay, a duplicate, a later append of a stream already in the
/// group) are then written alone, in arrival order, so each append gets the outcome it would
/// have got alone. Should the shared statement fail as a whole (one of its ids is already
/// stored, a deadlock, a lost connection), each of its appends is written alone. Larger
/// batches, batches that repeat an id, and [`append_in`](Self::append_in) always go alone.
///
/// **Kept connections.** sqlx pings a pooled connection when it hands it out and again when
/// it is given back: two round trips around a one-statement append or stream read. A store
/// made by [`PostgresStoreBuilder::connect`] (with `max_connections` of 4 or more, unless
/// [`keep_connections(false)`](PostgresStoreBuilder::keep_connections)) keeps 4 connections
/// of its own beside the pool for its hottest statements: two for appends (the group commit's
/// transaction, and a batch too large to share one), two for loading streams (their events and snapshots), each used when free and
/// opened when first needed. A kept
/// connection idle for half a second is pinged before its next use; one that the server ended
/// (a restart, an administrator's `pg_terminate_backend`) or whose statement was cancelled
/// mid-way is closed, and a statement that failed with its connection is sent once more on
/// the pool (reads change nothing; appends are idempotent by event id: if the lost one
/// committed, the second reports it as replayed). A store made from a pool
/// ([`PostgresStore::from_pool`], [`PostgresStoreBuilder::build`]) sends everything through
/// that pool.
///
/// Global reads are gap-safe: they return only
/// events of transactions older than the oldest one still running, in (transaction, position)
/// order, so a reader resuming from a [`Checkpoint`](eventsource_core::Checkpoint) never skips
/// an event that committed late.
///
/// ```no_run
/// # use eventsource_postgres::PostgresStore;
/// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
/// let store = PostgresStore::connect("postgres://app@localhost/app").await?;
/// store.migrate().await?;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct PostgresStore {
    pool: PgPool,
    shared: Arc<Shared>,
    horizon_wait: Duration,
    limits: Limits,
}

/// What every clone of a store shares: its schema, the statements written for it, and its
/// notifications.
struct Shared {
    schema: SchemaName,
    sql: Statements,
    notifications: Arc<Notifications>,
    /// Set once the store's events were found to fit the cluster (see `clock.rs`).
    fits: AtomicBool,
    /// The group commit of appends (`append.rs`): transactions in flight, appends queued.
    group: Mutex<GroupCommit>,
    /// Filtered global reads that may go on in plain checkpoint order (`read.rs`).
    dense_reads: DenseReads,
    /// Connections of the store's own for the group commit's slots (`kept.rs`).
    writers: KeptConnections,
    /// Connections of the store's own for loading a stream (`kept.rs`).
    readers: KeptConnections,
}

impl fmt::Debug for PostgresStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PostgresStore")
            .field("schema", &self.shared.schema.as_str())
            .field("connections", &self.pool.size())
            .finish()
    }
}

/// Configures and connects a [`PostgresStore`]; from [`PostgresStore::builder`].
///
/// ```no_run
/// # use std::time::{Duration, Instant};
/// # use eventsource_postgres::PostgresStore;
/// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
/// let store = PostgresStore::builder()
///     .schema("billing")
///     .max_connections(20)
///     .acquire_timeout(Duration::from_secs(5))
///     .connect("postgres://app@localhost/app")
///     .await?;
/// store.migrate().await?;
/// # Ok(()) }
/// ```
#[derive(Clone, Debug)]
pub struct PostgresStoreBuilder {
    schema: String,
    max_connections: u32,
    acquire_timeout: Duration,
    horizon_wait: Duration,
    ping_idle_after: Option<Duration>,
    keep_connections: bool,
    group_commit_transactions: usize,
}

impl Default for PostgresStoreBuilder {
    fn default() -> Self {
        PostgresStoreBuilder {
            schema: SchemaName::DEFAULT.to_owned(),
            max_connections: 10,
            acquire_timeout: Duration::from_secs(10),
            horizon_wait: DEFAULT_HORIZON_WAIT,
            ping_idle_after: None,
            keep_connections: true,
            group_commit_transactions: DEFAULT_GROUPS_IN_FLIGHT,
        }
    }
}

/// Connections a store keeps for appends (`kept.rs`): the group commit's transaction, and a
/// batch too large to share one.
const KEPT_WRITERS: usize = 2;
/// Connections a store keeps for stream loads (`kept.rs`).
const KEPT_READERS: usize = 2;

/// The longest [`PostgresStoreBuilder::acquire_timeout`]: "wait for ever" in practice.
const LONGEST_ACQUIRE_TIMEOUT: Duration = Duration::from_secs(365 * 24 * 60 * 60);

impl PostgresStoreBuilder {
    /// The schema the store's tables live in (default `eventsource`); validated as a
    /// [`SchemaName`] when the store is built.
    #[must_use]
    pub fn schema(mut self, name: impl Into<String>) -> Self {
        self.schema = name.into();
        self
    }

    /// The most connections the pool opens (default 10; 0 counts as 1: a pool of none
    /// waited out its acquire timeout on the first statement). From 4 on, the store also
    /// keeps up to 4 connections of its own beside the pool, for appends and stream loads (see
    /// "Kept connections" on [`PostgresStore`] and [`Self::keep_connections`]).
    #[must_use]
    pub fn max_connections(mut self, max: u32) -> Self {
        self.max_connections = max.max(1);
        self
    }

    /// How long to wait for a connection, also when first connecting (default 10 s; at most
    /// a year: sqlx adds the timeout to the current `Instant`, which panicked for
    /// `Duration::MAX`).
    #[must_use]
    pub fn acquire_timeout(mut self, timeout: Duration) -> Self {
        self.acquire_timeout = timeout.min(LONGEST_ACQUIRE_TIMEOUT);
        self
    }

    /// How long [`read_all`](eventsource_core::EventStore::read_all) waits for older transactions to end when
    /// newer committed events are held back behind them (default 1 s); see
    /// [`PostgresStore::with_horizon_wait`].
    #[must_use]
    pub fn horizon_wait(mut self, wait: Duration) -> Self {
        self.horizon_wait = wait;
        self
    }

    /// Hand out a pooled connection without sqlx's ping when it was given back less than
    /// `idle` ago (opt-in; by default, as in sqlx, every connection is pinged before use).
    /// This is about the pool only: the connections the store keeps beside it (see
    /// [`Self::keep_connections`]) follow their own rule, a ping after 500 ms idle.
    ///
    /// sqlx pings a connection when it hands it out and again, always, when it is given back:
    /// the first ping is a round trip before every statement. A connection given back less
    /// than `idle` ago passed the second ping just then; skipping the first took 10-15% off a
    /// one-event append and a command on one client (BENCHMARKS.md, session 28). The price:
    /// a connection the server ended within `idle` of its return (an administrator's
    /// `pg_terminate_backend`, a restart quicker than `idle`) is used once more, and that
    /// statement fails with a transient error ([`StoreError::is_transient`](eventsource_core::StoreError::is_transient)) instead of the pool
    /// replacing the connection first. `Repository` and the projection runner retry such
    /// errors. Keep `idle` well below how long a server restart takes (about 200 ms for a
    /// small cluster here); 50-100 ms skips the ping on a busy store.
    #[must_use]
    pub fn ping_idle_after(mut self, idle: Duration) -> Self {
        self.ping_idle_after = Some(idle);
        self
    }

    /// Whether the store keeps connections of its own beside the pool (default `true`; only
    /// with `max_connections` of 4 or more): two for appends, two for stream loads, opened
    /// when first needed. They skip sqlx's two pings per statement, which took a quarter off
    /// a one-event append (BENCHMARKS.md, session 29). `false` sends every statement through
    /// the pool, for a server whose connection limit has no room for 4 more per store.
    #[must_use]
    pub fn keep_connections(mut self, keep: bool) -> Self {
        self.keep_connections = keep;
        self
    }

    /// How many shared transactions of appends may be in flight at once (default 1; 1 to 16).
    ///
    /// An append that finds fewer in flight is written at once; appends that arrive while
    /// they are all in flight wait, and are written together in the next one. With one, every
    /// append that arrives during a commit shares the next: 8 clients appending one event each
    /// took 0.60-0.63 of the time of one raw INSERT transaction each, against 0.74-0.78 with
    /// two (BENCHMARKS.md, session 29), with no loss at 2 and 4 clients. More may suit
    /// appends that wait for locks (an `append_in` transaction holding stream heads) or a
    /// server whose commits do not share flushes.
    #[must_use]
    pub fn group_commit_transactions(mut self, transactions: usize) -> Self {
        self.group_commit_transactions = transactions.clamp(1, MAX_GROUPS_IN_FLIGHT);
        self
    }

    /// Opens a pool to `url` (`postgres://user:password@host:port/database`) and checks that a
    /// connection can be made. Does not migrate: call [`PostgresStore::migrate`].
    ///
    /// A first connection is opened on its own, so that a failure says why (connection
    /// refused, unknown database, authentication failed: [`PostgresError::Connect`]) or that
    /// the server did not answer within the acquire timeout
    /// ([`PostgresError::ConnectTimeout`]), where a pool would only report a timeout.
    pub async fn connect(self, url: &str) -> Result<PostgresStore, PostgresError> {
        let schema = SchemaName::new(self.schema)?;
        let options = PgConnectOptions::from_str(url)
            .map_err(|source| PostgresError::InvalidUrl { source })?;
        let (host, port) = (options.get_host().to_owned(), options.get_port());
        match tokio::time::timeout(self.acquire_timeout, PgConnection::connect_with(&options)).await
        {
            // Closing politely is a courtesy; the server copes with a dropped socket.
            Ok(Ok(connection)) => {
                let _ = connection.close().await;
            }
            Ok(Err(source)) => return Err(PostgresError::Connect { host, port, source }),
            Err(_) => {
                return Err(PostgresError::ConnectTimeout {
                    host,
                    port,
                    waited: self.acquire_timeout,
                });
            }
        }
        let mut pool = PgPoolOptions::new().acquire_timeout(self.acquire_timeout);
        if let Some(idle) = self.ping_idle_after {
            pool = pool
                .test_before_acquire(false)
                .before_acquire(move |connection, meta| {
                    Box::pin(async move {
                        if meta.idle_for >= idle {
                            connection.ping().await?;
                        }
                        Ok(true)
                    })
                });
        }
        // Beside the pool, not out of it: a smaller pool could starve a caller that holds
        // connections of it while it asks for another (a projection runner holds its lease and
        // its batch's transaction, and reads pages).
        let keep = self.keep_connections && self.max_connections >= 4;
        let (writers, readers) = if keep {
            (KEPT_WRITERS, KEPT_READERS)
        } else {
            (0, 0)
        };
        let pool = pool
            .max_connections(self.max_connections)
            .connect_with(options.clone())
            .await
            .map_err(|source| PostgresError::Connect { host, port, source })?;
        let kept = |n: usize| KeptConnections::new(options.clone(), n, self.acquire_timeout);
        let (writers, readers) = (kept(writers), kept(readers));
        Ok(PostgresStore::with_pool(pool, schema, writers, readers)
            .with_group_commit_transactions(self.group_commit_transactions)
            .with_horizon_wait(self.horizon_wait))
    }

    /// A store on an existing pool (the pool settings of this builder are not used).
    pub fn build(self, pool: PgPool) -> Result<PostgresStore, PostgresError> {
        Ok(PostgresStore::with_pool(
            pool,
            SchemaName::new(self.schema)?,
            KeptConnections::none(),
            KeptConnections::none(),
        )
        .with_group_commit_transactions(self.group_commit_transactions)
        .with_horizon_wait(self.horizon_wait))
    }
}

impl PostgresStore {
    /// Connects to `url` with the default settings and the schema `eventsource`.
    pub async fn connect(url: &str) -> Result<Self, PostgresError> {
        PostgresStore::builder().connect(url).await
    }

    /// A builder for the schema and pool settings.
    pub fn builder() -> PostgresStoreBuilder {
        PostgresStoreBuilder::default()
    }

    /// A store on an existing pool, in the schema `eventsource`.
    pub fn from_pool(pool: PgPool) -> Self {
        PostgresStore::with_pool(
            pool,
            SchemaName::default_schema(),
            KeptConnections::none(),
            KeptConnections::none(),
        )
    }

    fn with_pool(
        pool: PgPool,
        schema: SchemaName,
        writers: KeptConnections,
        readers: KeptConnections,
    ) -> Self {
        PostgresStore {
            pool,
            shared: Arc::new(Shared {
                sql: Statements::new(&schema),
                notifications: Notifications::new(schema.channel()),
                schema,
                fits: AtomicBool::new(false),
                group: Mutex::new(GroupCommit::new(DEFAULT_GROUPS_IN_FLIGHT)),
                dense_reads: DenseReads::default(),
                writers,
                readers,
            }),
            horizon_wait: DEFAULT_HORIZON_WAIT,
            limits: Limits::default(),
        }
    }

    /// A new store's group commit with at most `transactions` in flight.
    fn with_group_commit_transactions(self, transactions: usize) -> Self {
        *self.group_commit() = GroupCommit::new(transactions);
        self
    }

    /// Sets the [`Limits`] every append is checked against before anything is written (the
    /// default is `Limits::default()`, the same as `MemoryStore`'s): stream id length, nesting
    /// depth, size, no NUL characters. See [`eventsource_core::limits`].
    #[must_use]
    pub fn with_limits(mut self, limits: Limits) -> Self {
        self.limits = limits;
        self
    }

    /// The limits appends are checked against.
    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// Sets how long [`read_all`](eventsource_core::EventStore::read_all) waits, at most, when committed events
    /// after the checkpoint are held back behind an older transaction that is still open
    /// (default 1 s).
    ///
    /// Global reads never return an event while a transaction older than it is open (that
    /// transaction may still commit events that sort before it), and such transactions can be
    /// anywhere in the cluster. Waiting a little makes a read see what was committed before it
    /// started; after the wait it returns what is safe, possibly nothing, and a later read
    /// returns the rest. `Duration::ZERO` never waits.
    #[must_use]
    pub fn with_horizon_wait(mut self, wait: Duration) -> Self {
        self.horizon_wait = wait;
        self
    }

    /// The same pool, in another schema. The new store keeps no connections of its own:
    /// everything goes through the pool.
    pub fn with_schema(self, name: impl Into<String>) -> Result<Self, PostgresError> {
        let transactions = self.group_commit().slots();
        Ok(PostgresStore::with_pool(
            self.pool,
            SchemaName::new(name)?,
            KeptConnections::none(),
            KeptConnections::none(),
        )
        .with_group_commit_transactions(transactions)
        .with_horizon_wait(self.horizon_wait)
        .with_limits(self.limits))
    }

    /// Creates the schema and its tables if needed and applies the migrations it lacks; safe to
    /// call on every start, also from several processes at once.
    ///
    /// It also repairs a store restored or moved from another PostgreSQL cluster: if the
    /// stored events carry transaction ids the cluster has not reached, it re-bases the global
    /// order onto this cluster (see the crate docs, "Global order"; appends wait meanwhile,
    /// reads go on; logged as a warning through `tracing`), and it runs `ANALYZE` when the
    /// tables hold events but no planner statistics. Both are no-ops on a store that needs
    /// neither. See [`PostgresAdmin::migrate`](crate::PostgresAdmin::migrate) for a report.
    ///
    /// Fails with [`PostgresError::SchemaTooNew`] if a newer version of this library migrated
    /// the schema further than this version knows.
    pub async fn migrate(&self) -> Result<(), PostgresError> {
        self.migrate_reporting().await.map(|_| ())
    }

    /// [`Self::migrate`], saying what it did besides applying migrations.
    pub(crate) async fn migrate_reporting(&self) -> Result<migrate::Outcome, PostgresError> {
        let outcome = migrate::migrate(&self.pool, &self.shared.schema, &self.shared.sql).await?;
        // Re-based if it had to: the store fits the cluster now.
        self.fits_flag().store(true, Ordering::Release);
        Ok(outcome)
    }

    /// Set once the store was found to fit the cluster (see `clock.rs`).
    fn fits_flag(&self) -> &AtomicBool {
        &self.shared.fits
    }

    /// The store's transaction clock, read now.
    pub(crate) async fn read_clock(&self) -> Result<TransactionClock, PostgresError> {
        clock::read(&self.pool, &self.shared.sql, &self.shared.schema).await
    }

    /// Fails with [`PostgresError::ClusterMoved`] if the store's events do not fit the cluster
    /// (it was restored or moved from another one and not migrated since). Asks the database
    /// until the store fits, once per store and its clones; from then on it is a flag: within
    /// one cluster, a store that fits keeps fitting. (A process whose connections are moved to
    /// another cluster under it must start again, or call [`Self::migrate`].)
    pub(crate) async fn ensure_fits(&self) -> Result<(), PostgresError> {
        if self.fits_flag().load(Ordering::Acquire) {
            return Ok(());
        }
        self.read_clock().await?.require_fit(&self.shared.schema)?;
        self.fits_flag().store(true, Ordering::Release);
        Ok(())
    }

    /// [`Self::ensure_fits`] for the store's own operations.
    pub(crate) async fn ensure_fits_store(&self) -> Result<(), StoreError> {
        self.ensure_fits().await.map_err(StoreError::from)
    }

    /// [`Self::ensure_fits_store`] on the caller's connection (`append_in`: the caller may
    /// hold the pool's last connection in its transaction).
    pub(crate) async fn ensure_fits_on(&self, conn: &mut PgConnection) -> Result<(), StoreError> {
        if self.fits_flag().load(Ordering::Acquire) {
            return Ok(());
        }
        clock::read(conn, &self.shared.sql, &self.shared.schema)
            .await?
            .require_fit(&self.shared.schema)?;
        self.fits_flag().store(true, Ordering::Release);
        Ok(())
    }

    /// The connection pool, e.g. to write read models in the same database.
    ///
    /// To open a transaction on it (e.g. for [`append_in`](Self::append_in)), prefer
    /// [`begin_transaction`](Self::begin_transaction) to `pool().begin()`: sqlx 0.9.0's
    /// `begin` is not cancel-safe on PostgreSQL.
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// Closes the store's connections, those of its pool and the ones it keeps (see
    /// [`PostgresStoreBuilder::max_connections`]), waiting for those in use to be given
    /// back. Every clone of the store is closed; their statements fail from then on
    /// ([`StoreError::Backend`], sqlx's `PoolClosed`).
    ///
    /// Dropping the last clone closes the connections too, without waiting.
    pub async fn close(&self) {
        self.shared.writers.close().await;
        self.shared.readers.close().await;
        self.pool.close().await;
    }

    /// Begins a transaction on a connection of the pool, for writes of your own beside
    /// [`append_in`](Self::append_in). Unlike `pool().begin()` it is cancel-safe: sqlx 0.9.0
    /// leaves a connection whose `BEGIN` was cancelled in flight (an aborted task, a timeout)
    /// inside a transaction nobody ends, and hands it to the next borrower of the pool, whose
    /// writes are then acknowledged but never committed (transact-rs/sqlx#4393). Here the
    /// `BEGIN` completes on a task of its own, and a transaction nobody waits for any more is
    /// rolled back before its connection is reused.
    pub async fn begin_transaction(
        &self,
    ) -> Result<sqlx::Transaction<'static, sqlx::Postgres>, StoreError> {
        crate::begin::begin(&self.pool)
            .await
            .map_err(|e| crate::error::store_error("beginning a transaction", e))
    }

    /// The schema the store lives in.
    pub fn schema(&self) -> &SchemaName {
        &self.shared.schema
    }

    /// The channel every append NOTIFYs (once committed) with the batch's last position as
    /// payload: `<schema>_events`. A wake-up hint for live readers; poll as well, notifications
    /// are not delivered to a listener that was disconnected.
    pub fn notify_channel(&self) -> &str {
        self.shared.notifications.channel()
    }

    /// A listener already subscribed to [`notify_channel`](Self::notify_channel).
    pub async fn listen(&self) -> Result<PgListener, PostgresError> {
        self.shared.notifications.listen(&self.pool).await
    }

    /// What filtered global reads learnt about the log (see `read::DenseReads`).
    pub(crate) fn dense_reads(&self) -> &DenseReads {
        &self.shared.dense_reads
    }

    /// The statements written for this store's schema.
    pub(crate) fn sql(&self) -> &Statements {
        &self.shared.sql
    }

    /// The group commit of this store's appends.
    pub(crate) fn group_commit(&self) -> std::sync::MutexGuard<'_, GroupCommit> {
        self.shared
            .group
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// The connections this store keeps for its group commit's slots.
    pub(crate) fn writers(&self) -> &KeptConnections {
        &self.shared.writers
    }

    /// The notifications of this store (sending and listening).
    pub(crate) fn notifications(&self) -> &Arc<Notifications> {
        &self.shared.notifications
    }

    /// How long global reads wait for held-back events (see [`Self::with_horizon_wait`]).
    pub(crate) fn horizon_wait(&self) -> Duration {
        self.horizon_wait
    }

    /// A store error for a failed statement, saying `what` the store was doing and in which
    /// schema; for `map_err`.
    pub(crate) fn failed(&self, what: String) -> impl FnOnce(sqlx::Error) -> StoreError {
        let context = format!("{what} (schema `{}`)", self.shared.schema);
        move |e| crate::error::store_error(context, e)
    }

    /// The rows `query` returns on the pool; `what` the store was doing if that fails.
    pub(crate) async fn rows(
        &self,
        query: PgQuery,
        what: String,
    ) -> Result<Vec<PgRow>, StoreError> {
        query.fetch_all(&self.pool).await.map_err(self.failed(what))
    }

    /// The rows of a read of one stream (`query` makes its statement) on a connection kept
    /// for such reads if one is free, else on the pool; `what` the store was doing if that
    /// fails. A read whose kept connection was lost is sent again on the pool.
    pub(crate) async fn stream_rows<'q>(
        &self,
        query: impl Fn() -> PgQueryOf<'q>,
        what: impl FnOnce() -> String,
    ) -> Result<Vec<PgRow>, StoreError> {
        if let Some(mut reader) = self.shared.readers.take(&self.pool).await
            && let Some(conn) = reader.connection()
        {
            let rows = query().fetch_all(conn).await;
            reader.observe(&rows);
            let lost = reader.is_broken();
            reader.give_back();
            match rows {
                Ok(rows) => return Ok(rows),
                Err(error) if !lost => return Err(self.failed(what())(error)),
                Err(error) => {
                    tracing::debug!(%error, "a kept read connection was lost; reading on the pool");
                }
            }
        }
        query()
            .fetch_all(&self.pool)
            .await
            .map_err(self.failed(what()))
    }

    /// The row `query` returns, if any.
    pub(crate) async fn optional_row(
        &self,
        query: PgQuery,
        what: String,
    ) -> Result<Option<PgRow>, StoreError> {
        query
            .fetch_optional(&self.pool)
            .await
            .map_err(self.failed(what))
    }

    /// The first column of the one row `query` returns.
    pub(crate) async fn scalar<T>(&self, query: PgQuery, what: String) -> Result<T, StoreError>
    where
        T: for<'r> sqlx::Decode<'r, Postgres> + sqlx::Type<Postgres>,
    {
        query
            .fetch_one(&self.pool)
            .await
            .and_then(|row| row.try_get(0))
            .map_err(self.failed(what))
    }
}
