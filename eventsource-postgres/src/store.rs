//! The PostgreSQL event and snapshot store.

use std::collections::HashSet;
use std::fmt;
use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use eventsource_core::{
    Appended, Checkpoint, EventStore, ExpectedVersion, Limits, LogFilter, NewEvent, Position,
    RecordedEvent, Snapshot, SnapshotStore, StoreError, StreamId, Version,
};
use serde_json::value::RawValue;
use sqlx::postgres::{PgConnectOptions, PgDatabaseError, PgListener, PgPoolOptions, PgRow};
use sqlx::{AssertSqlSafe, PgConnection, PgExecutor, PgPool, Row};
use uuid::Uuid;

use crate::error::PostgresError;
use crate::migrate;
use crate::row::{decode_event, decode_snapshot};
use crate::schema::SchemaName;
use crate::sql::{HORIZON_LAG, NOTIFY, Statements};

/// How long a notification waits for more appends to cover: sending one per append cost a
/// single writer about a sixth of its throughput (BENCHMARKS.md); a listener is woken this much
/// later at most.
const NOTIFY_COALESCE: Duration = Duration::from_millis(2);

/// The default of [`PostgresStore::with_horizon_wait`].
const DEFAULT_HORIZON_WAIT: Duration = Duration::from_secs(1);

/// An [`EventStore`] and [`SnapshotStore`] in a PostgreSQL schema.
///
/// Cloning is cheap and shares the connection pool. An append is one statement: it checks the
/// expected version, moves the stream head and inserts the batch atomically, and listeners are
/// notified once it has committed; conflicts, retries of stored ids and duplicates are then
/// told apart by the schema's `append()` function. Global reads are gap-safe: they return only events of
/// transactions older than the oldest one still running, in (transaction, position) order, so
/// a reader resuming from a [`Checkpoint`] never skips an event that committed late.
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
    schema: Arc<StoreSchema>,
    horizon_wait: Duration,
    limits: Limits,
}

struct StoreSchema {
    name: SchemaName,
    channel: String,
    sql: Statements,
    notifier: Notifier,
    wakeups: crate::projection::Wakeups,
}

impl StoreSchema {
    fn new(name: SchemaName) -> Arc<Self> {
        Arc::new(StoreSchema {
            channel: name.channel(),
            sql: Statements::new(&name),
            notifier: Notifier::default(),
            wakeups: crate::projection::Wakeups::default(),
            name,
        })
    }
}

/// Sends the NOTIFY of committed appends from a task of its own, so that an append waits for
/// neither a second round trip nor the database-wide lock a notifying transaction holds through
/// its commit. The task waits [`NOTIFY_COALESCE`] first, and appends that commit meanwhile (or
/// while a notification is in flight) are covered by one notification carrying the newest
/// position: under load, a few hundred notifications a second instead of one per append.
#[derive(Default)]
struct Notifier {
    /// The newest committed position this store has appended.
    newest: AtomicU64,
    /// Whether a task is sending (and will look at `newest` again before it stops).
    sending: AtomicBool,
}

impl fmt::Debug for PostgresStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PostgresStore")
            .field("schema", &self.schema.name.as_str())
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
}

impl Default for PostgresStoreBuilder {
    fn default() -> Self {
        PostgresStoreBuilder {
            schema: SchemaName::DEFAULT.to_owned(),
            max_connections: 10,
            acquire_timeout: Duration::from_secs(10),
            horizon_wait: DEFAULT_HORIZON_WAIT,
        }
    }
}

impl PostgresStoreBuilder {
    /// The schema the store's tables live in (default `eventsource`); validated as a
    /// [`SchemaName`] when the store is built.
    #[must_use]
    pub fn schema(mut self, name: impl Into<String>) -> Self {
        self.schema = name.into();
        self
    }

    /// The most connections the pool opens (default 10).
    #[must_use]
    pub fn max_connections(mut self, max: u32) -> Self {
        self.max_connections = max;
        self
    }

    /// How long to wait for a connection, also when first connecting (default 10 s).
    #[must_use]
    pub fn acquire_timeout(mut self, timeout: Duration) -> Self {
        self.acquire_timeout = timeout;
        self
    }

    /// How long [`read_all`](EventStore::read_all) waits for older transactions to end when
    /// newer committed events are held back behind them (default 1 s); see
    /// [`PostgresStore::with_horizon_wait`].
    #[must_use]
    pub fn horizon_wait(mut self, wait: Duration) -> Self {
        self.horizon_wait = wait;
        self
    }

    /// Opens a pool to `url` (`postgres://user:password@host:port/database`) and checks that a
    /// connection can be made. Does not migrate: call [`PostgresStore::migrate`].
    pub async fn connect(self, url: &str) -> Result<PostgresStore, PostgresError> {
        let schema = SchemaName::new(self.schema)?;
        let options = PgConnectOptions::from_str(url)
            .map_err(|source| PostgresError::InvalidUrl { source })?;
        let (host, port) = (options.get_host().to_owned(), options.get_port());
        let pool = PgPoolOptions::new()
            .max_connections(self.max_connections)
            .acquire_timeout(self.acquire_timeout)
            .connect_with(options)
            .await
            .map_err(|source| PostgresError::Connect { host, port, source })?;
        Ok(PostgresStore::with_pool(pool, schema).with_horizon_wait(self.horizon_wait))
    }

    /// A store on an existing pool (the pool settings of this builder are not used).
    pub fn build(self, pool: PgPool) -> Result<PostgresStore, PostgresError> {
        Ok(
            PostgresStore::with_pool(pool, SchemaName::new(self.schema)?)
                .with_horizon_wait(self.horizon_wait),
        )
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
        PostgresStore::with_pool(pool, SchemaName::default_schema())
    }

    fn with_pool(pool: PgPool, schema: SchemaName) -> Self {
        PostgresStore {
            pool,
            schema: StoreSchema::new(schema),
            horizon_wait: DEFAULT_HORIZON_WAIT,
            limits: Limits::default(),
        }
    }

    /// Sets the [`Limits`] every append is checked against before anything is written (the
    /// default is `Limits::default()`, the same as `MemoryStore`'s): stream id length, nesting
    /// depth, size, no NUL characters. See [`eventsource_core::limits`].
    #[must_use]
    pub fn with_limits(mut self, limits: Limits) -> Self {
        self.limits = limits;
        self
    }

    /// Sets how long [`read_all`](EventStore::read_all) waits, at most, when committed events
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

    /// The same pool, in another schema.
    pub fn with_schema(self, name: impl Into<String>) -> Result<Self, PostgresError> {
        Ok(PostgresStore::with_pool(self.pool, SchemaName::new(name)?)
            .with_horizon_wait(self.horizon_wait)
            .with_limits(self.limits))
    }

    /// Creates the schema and its tables if needed and applies the migrations it lacks; safe to
    /// call on every start, also from several processes at once.
    ///
    /// Fails with [`PostgresError::SchemaTooNew`] if a newer version of this library migrated
    /// the schema further than this version knows.
    pub async fn migrate(&self) -> Result<(), PostgresError> {
        migrate::migrate(&self.pool, &self.schema.name).await
    }

    /// The connection pool, e.g. to write read models in the same database.
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// The schema the store lives in.
    pub fn schema(&self) -> &SchemaName {
        &self.schema.name
    }

    /// The wake-ups of live readers of this store (one shared LISTEN connection).
    pub(crate) fn wakeups(&self) -> &crate::projection::Wakeups {
        &self.schema.wakeups
    }

    /// The channel every append NOTIFYs (once committed) with the batch's last position as payload:
    /// `<schema>_events`. A wake-up hint for live readers; poll as well, notifications are not
    /// delivered to a listener that was disconnected.
    pub fn notify_channel(&self) -> &str {
        &self.schema.channel
    }

    /// A listener already subscribed to [`notify_channel`](Self::notify_channel).
    pub async fn listen(&self) -> Result<PgListener, PostgresError> {
        let context = || format!("listening on channel `{}`", self.schema.channel);
        let mut listener = PgListener::connect_with(&self.pool)
            .await
            .map_err(|e| PostgresError::database(context(), e))?;
        listener
            .listen(&self.schema.channel)
            .await
            .map_err(|e| PostgresError::database(context(), e))?;
        Ok(listener)
    }

    /// How far global reads lag behind the newest commits: the age of the oldest open
    /// transaction of the cluster that holds a transaction id (events of later transactions
    /// stay invisible to [`read_all`](EventStore::read_all) until it ends). Zero when none is
    /// open. Seeing other roles' transactions needs the `pg_read_all_stats` role (or superuser);
    /// without it the figure covers only the store's own role.
    pub async fn horizon_lag(&self) -> Result<Duration, StoreError> {
        let seconds: f64 = sqlx::query_scalar(HORIZON_LAG)
            .fetch_one(&self.pool)
            .await
            .map_err(|e| StoreError::backend("measuring the horizon lag", e))?;
        Ok(Duration::try_from_secs_f64(seconds.max(0.0)).unwrap_or(Duration::ZERO))
    }

    /// Appends like [`EventStore::append`], but inside the caller's transaction on `conn`: the
    /// events become visible, and listeners are notified, when that transaction commits; a
    /// rollback writes nothing. Use it to append together with other writes.
    ///
    /// Unlike [`EventStore::append`] it does not retry when a concurrent transaction stores one
    /// of the batch's ids first: that is reported as a backend error (a unique violation), and
    /// the caller's transaction is aborted.
    pub async fn append_in(
        &self,
        conn: &mut PgConnection,
        stream: &StreamId,
        expected: ExpectedVersion,
        events: Vec<NewEvent>,
    ) -> Result<Appended, StoreError> {
        self.limits.check_append(stream, &events)?;
        let batch = Batch::encode(stream, events)?;
        self.call_append(conn, stream, expected, &batch)
            .await
            .map_err(AppendFailure::into_store_error)
    }

    /// The common case of [`EventStore::append`], as one statement (see `sql::append_fast`):
    /// `None` when the expectation does not hold or an id of the batch is already stored, which
    /// the `append()` function then sorts out.
    async fn append_fast(
        &self,
        stream: &StreamId,
        expected: ExpectedVersion,
        batch: &Batch,
    ) -> Result<Option<Appended>, StoreError> {
        let fast = &self.schema.sql.append_fast;
        let (statement, expected_param) = match expected {
            ExpectedVersion::Any => (&fast.any, None),
            ExpectedVersion::StreamExists => (&fast.stream_exists, Some(-1)),
            ExpectedVersion::NoStream | ExpectedVersion::Exact(Version(0)) => {
                (&fast.no_stream, Some(0))
            }
            // No stream reaches a version beyond i64::MAX: such an expectation just conflicts.
            ExpectedVersion::Exact(Version(v)) => {
                (&fast.exact, Some(i64::try_from(v).unwrap_or(i64::MAX)))
            }
        };
        let result = sqlx::query(AssertSqlSafe(statement.clone()))
            .bind(stream.as_str())
            .bind(expected_param)
            .bind(batch.ids.as_slice())
            .bind(batch.names.as_slice())
            .bind(batch.schema_versions.as_slice())
            .bind(batch.payloads.as_slice())
            .bind(batch.metadata.as_slice())
            .fetch_optional(&self.pool)
            .await;
        let row = match result {
            Ok(Some(row)) => row,
            Ok(None) => return Ok(None),
            Err(error) if is_stored_id(&error) => return Ok(None),
            Err(error) => {
                return Err(StoreError::backend(
                    format!("appending to stream `{stream}`"),
                    error,
                ));
            }
        };
        let get = |column: &str| -> Result<u64, StoreError> {
            let value: Option<i64> = row.try_get(column).map_err(|e| {
                StoreError::backend(format!("reading the append result of stream `{stream}`"), e)
            })?;
            non_negative(value, column, stream)
        };
        Ok(Some(Appended {
            stream_id: stream.clone(),
            first_version: Version(get("first_version")?),
            last_version: Version(get("last_version")?),
            first_position: Position(get("first_position")?),
            last_position: Position(get("last_position")?),
            replayed: false,
        }))
    }

    /// Wakes listeners after a committed append, without waiting (see [`Notifier`]). Outside
    /// the append's transaction on purpose: a transaction that NOTIFYs holds a database-wide
    /// lock from before its commit record is flushed until it ends, which serializes the
    /// commits of concurrent appends (no group commit); a transaction that only notifies writes
    /// no WAL and holds it for microseconds. A notification is a wake-up hint (listeners poll
    /// too), so failing to send one does not fail the append, whose events are committed.
    fn notify(&self, last_position: Position) {
        let notifier = &self.schema.notifier;
        notifier.newest.fetch_max(last_position.0, Ordering::SeqCst);
        if notifier.sending.swap(true, Ordering::SeqCst) {
            return;
        }
        let store = self.clone();
        tokio::spawn(async move {
            let notifier = &store.schema.notifier;
            loop {
                tokio::time::sleep(NOTIFY_COALESCE).await;
                let newest = notifier.newest.load(Ordering::SeqCst);
                let _ = sqlx::query(NOTIFY)
                    .bind(&store.schema.channel)
                    .bind(newest.to_string())
                    .execute(&store.pool)
                    .await;
                notifier.sending.store(false, Ordering::SeqCst);
                // An append that committed meanwhile saw `sending` and left its position to us,
                // unless it started a task of its own after the line above.
                if notifier.newest.load(Ordering::SeqCst) == newest
                    || notifier.sending.swap(true, Ordering::SeqCst)
                {
                    break;
                }
            }
        });
    }

    async fn call_append<'c>(
        &self,
        executor: impl PgExecutor<'c>,
        stream: &StreamId,
        expected: ExpectedVersion,
        batch: &Batch,
    ) -> Result<Appended, AppendFailure> {
        let expected_param: Option<i64> = match expected {
            ExpectedVersion::Any => None,
            ExpectedVersion::StreamExists => Some(-1),
            ExpectedVersion::NoStream => Some(0),
            // No stream reaches a version beyond i64::MAX: such an expectation just conflicts.
            ExpectedVersion::Exact(Version(v)) => Some(i64::try_from(v).unwrap_or(i64::MAX)),
        };
        let row = sqlx::query(AssertSqlSafe(self.schema.sql.append.clone()))
            .bind(stream.as_str())
            .bind(expected_param)
            .bind(batch.ids.as_slice())
            .bind(batch.names.as_slice())
            .bind(batch.schema_versions.as_slice())
            .bind(batch.payloads.as_slice())
            .bind(batch.metadata.as_slice())
            .fetch_one(executor)
            .await
            .map_err(|error| AppendFailure::from_sqlx(error, stream, batch))?;
        decode_append(&row, stream, expected).map_err(AppendFailure::Store)
    }

    fn read_error(&self, what: String) -> impl FnOnce(sqlx::Error) -> StoreError {
        let context = format!("{what} (schema `{}`)", self.schema.name);
        move |e| StoreError::backend(context, e)
    }
}

/// `value` as JSON text that `jsonb` stores without changing what it reads back as.
///
/// `jsonb` keeps numbers as `numeric`: a float written in exponent form that happens to be
/// an integer (`-2.754074151680626e17`) would come back as the integer
/// `-275407415168062600`, a different JSON value. Such floats are written out in full with a
/// `.0`, which `numeric` keeps, so they read back as the same float.
fn jsonb_text<T: serde::Serialize + ?Sized>(value: &T) -> Result<Box<RawValue>, serde_json::Error> {
    struct PlainIntegralFloats;
    impl serde_json::ser::Formatter for PlainIntegralFloats {
        fn write_f64<W: ?Sized + std::io::Write>(
            &mut self,
            writer: &mut W,
            value: f64,
        ) -> std::io::Result<()> {
            // Below 1e15 the shortest form has no exponent; from 2e19 on the integer is
            // beyond u64 and reads back as a float anyway.
            if value.fract() == 0.0 && (1e15..2e19).contains(&value.abs()) {
                write!(writer, "{value:.1}")
            } else {
                serde_json::ser::CompactFormatter.write_f64(writer, value)
            }
        }
    }
    let mut text = Vec::with_capacity(128);
    value.serialize(&mut serde_json::Serializer::with_formatter(
        &mut text,
        PlainIntegralFloats,
    ))?;
    // The serializer wrote valid UTF-8 JSON.
    let text = String::from_utf8(text)
        .map_err(|e| <serde_json::Error as serde::ser::Error>::custom(format!("not UTF-8: {e}")))?;
    RawValue::from_string(text)
}

/// A batch in the column-array form the `append()` function takes.
struct Batch {
    ids: Vec<Uuid>,
    names: Vec<String>,
    schema_versions: Vec<i64>,
    payloads: Vec<sqlx::types::Json<Box<RawValue>>>,
    metadata: Vec<sqlx::types::Json<Box<RawValue>>>,
}

impl Batch {
    fn encode(stream: &StreamId, events: Vec<NewEvent>) -> Result<Self, StoreError> {
        if events.is_empty() {
            return Err(StoreError::EmptyBatch {
                stream: stream.clone(),
            });
        }
        let mut batch = Batch {
            ids: Vec::with_capacity(events.len()),
            names: Vec::with_capacity(events.len()),
            schema_versions: Vec::with_capacity(events.len()),
            payloads: Vec::with_capacity(events.len()),
            metadata: Vec::with_capacity(events.len()),
        };
        for event in events {
            let encoding_error = |what: &str, e: serde_json::Error| {
                StoreError::backend(
                    format!(
                        "encoding the {what} of event `{}` for stream `{stream}`",
                        event.name
                    ),
                    e,
                )
            };
            let payload = jsonb_text(&event.payload).map_err(|e| encoding_error("payload", e))?;
            let metadata =
                jsonb_text(&event.metadata).map_err(|e| encoding_error("metadata", e))?;
            batch.ids.push(event.event_id);
            batch.names.push(event.name);
            batch.schema_versions.push(i64::from(event.schema_version));
            batch.payloads.push(sqlx::types::Json(payload));
            batch.metadata.push(sqlx::types::Json(metadata));
        }
        Ok(batch)
    }

    /// The first id the batch repeats within itself.
    fn repeated_id(&self) -> Option<Uuid> {
        let mut seen = HashSet::with_capacity(self.ids.len());
        self.ids.iter().copied().find(|id| !seen.insert(*id))
    }
}

enum AppendFailure {
    Store(StoreError),
    /// A concurrent transaction stored one of the ids between the function's retry check and
    /// its insert: calling again reports the retry or the duplicate properly.
    IdRace(sqlx::Error),
}

impl AppendFailure {
    fn from_sqlx(error: sqlx::Error, stream: &StreamId, batch: &Batch) -> Self {
        let backend = |error| {
            AppendFailure::Store(StoreError::backend(
                format!("appending to stream `{stream}`"),
                error,
            ))
        };
        let Some(db) = error
            .as_database_error()
            .and_then(|db| db.try_downcast_ref::<PgDatabaseError>())
        else {
            return backend(error);
        };
        match db.code() {
            // The batch repeats an id within itself; the detail is the stream's version.
            "ES004" => {
                let version = db.detail().and_then(|d| d.parse::<u64>().ok());
                match (batch.repeated_id(), version) {
                    (Some(event_id), Some(version)) => {
                        AppendFailure::Store(StoreError::DuplicateEventId {
                            stream: stream.clone(),
                            event_id,
                            existing_stream: stream.clone(),
                            existing_version: Version(version),
                        })
                    }
                    _ => backend(error),
                }
            }
            "23505" if db.constraint() == Some("events_event_id_unique") => {
                AppendFailure::IdRace(error)
            }
            _ => backend(error),
        }
    }

    fn into_store_error(self) -> StoreError {
        match self {
            AppendFailure::Store(error) => error,
            AppendFailure::IdRace(error) => StoreError::backend(
                "appending: a concurrent transaction stored one of the batch's event ids",
                error,
            ),
        }
    }
}

/// Whether `error` is the unique index on event ids refusing a row: an id of the batch is stored.
fn is_stored_id(error: &sqlx::Error) -> bool {
    error
        .as_database_error()
        .and_then(|db| db.try_downcast_ref::<PgDatabaseError>())
        .is_some_and(|db| db.code() == "23505" && db.constraint() == Some("events_event_id_unique"))
}

fn non_negative(value: Option<i64>, what: &str, stream: &StreamId) -> Result<u64, StoreError> {
    value.and_then(|v| u64::try_from(v).ok()).ok_or_else(|| {
        StoreError::backend(
            format!("appending to stream `{stream}`"),
            format!("the append function returned {what} = {value:?}"),
        )
    })
}

fn decode_append(
    row: &PgRow,
    stream: &StreamId,
    expected: ExpectedVersion,
) -> Result<Appended, StoreError> {
    let get = |column: &str| -> Result<Option<i64>, StoreError> {
        row.try_get(column).map_err(|e| {
            StoreError::backend(format!("reading the append result of stream `{stream}`"), e)
        })
    };
    let outcome: String = row.try_get("outcome").map_err(|e| {
        StoreError::backend(format!("reading the append result of stream `{stream}`"), e)
    })?;
    match outcome.as_str() {
        "appended" | "replayed" => Ok(Appended {
            stream_id: stream.clone(),
            first_version: Version(non_negative(
                get("first_version")?,
                "first_version",
                stream,
            )?),
            last_version: Version(non_negative(get("last_version")?, "last_version", stream)?),
            first_position: Position(non_negative(
                get("first_position")?,
                "first_position",
                stream,
            )?),
            last_position: Position(non_negative(
                get("last_position")?,
                "last_position",
                stream,
            )?),
            replayed: outcome == "replayed",
        }),
        "conflict" => Err(StoreError::Conflict {
            stream: stream.clone(),
            expected,
            actual: Version(non_negative(
                get("actual_version")?,
                "actual_version",
                stream,
            )?),
        }),
        "duplicate" => {
            let event_id: Option<Uuid> = row.try_get("event_id").map_err(|e| {
                StoreError::backend(format!("reading the append result of stream `{stream}`"), e)
            })?;
            let existing_stream: Option<String> = row.try_get("existing_stream").map_err(|e| {
                StoreError::backend(format!("reading the append result of stream `{stream}`"), e)
            })?;
            match (event_id, existing_stream) {
                (Some(event_id), Some(existing_stream)) => Err(StoreError::DuplicateEventId {
                    stream: stream.clone(),
                    event_id,
                    existing_stream: StreamId::from_raw(existing_stream),
                    existing_version: Version(non_negative(
                        get("existing_version")?,
                        "existing_version",
                        stream,
                    )?),
                }),
                _ => Err(StoreError::backend(
                    format!("appending to stream `{stream}`"),
                    "the append function reported a duplicate without naming it",
                )),
            }
        }
        other => Err(StoreError::backend(
            format!("appending to stream `{stream}`"),
            format!("the append function returned the unknown outcome `{other}`"),
        )),
    }
}

fn clamp(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

/// Whether no stream of this id can exist: PostgreSQL text cannot hold NUL (the limits refuse
/// such ids on append), and querying one fails with a raw encoding error, so reads of it
/// answer "no such stream" without a query.
fn unstorable(stream: &StreamId) -> bool {
    stream.as_str().contains('\0')
}

fn limit(max_count: usize) -> i64 {
    i64::try_from(max_count).unwrap_or(i64::MAX)
}

impl EventStore for PostgresStore {
    async fn append(
        &self,
        stream: &StreamId,
        expected: ExpectedVersion,
        events: Vec<NewEvent>,
    ) -> Result<Appended, StoreError> {
        let batch_size = events.len();
        let append = async {
            self.limits.check_append(stream, &events)?;
            let batch = Batch::encode(stream, events)?;
            // The common case in one statement; every other outcome (a conflict, a retry of
            // stored ids, a duplicate, a batch repeating an id) from the `append()` function.
            if batch.repeated_id().is_none()
                && let Some(written) = self.append_fast(stream, expected, &batch).await?
            {
                self.notify(written.last_position);
                return Ok(written);
            }
            match self.call_append(&self.pool, stream, expected, &batch).await {
                Err(AppendFailure::IdRace(_)) => self
                    .call_append(&self.pool, stream, expected, &batch)
                    .await
                    .map_err(AppendFailure::into_store_error),
                other => other.map_err(AppendFailure::into_store_error),
            }
        };
        eventsource_core::observe::observe_append("postgres", stream, expected, batch_size, append)
            .await
    }

    async fn read_stream(
        &self,
        stream: &StreamId,
        from: Version,
        max_count: usize,
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        if max_count == 0 || unstorable(stream) {
            return Ok(Vec::new());
        }
        let rows = sqlx::query(AssertSqlSafe(self.schema.sql.read_stream.clone()))
            .bind(stream.as_str())
            .bind(clamp(from.0))
            .bind(limit(max_count))
            .fetch_all(&self.pool)
            .await
            .map_err(self.read_error(format!("reading stream `{stream}` from version {from}")))?;
        rows.iter().map(decode_event).collect()
    }

    async fn read_all(
        &self,
        after: Checkpoint,
        max_count: usize,
        filter: &LogFilter,
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        if max_count == 0 {
            return Ok(Vec::new());
        }
        let sql = &self.schema.sql;
        let statement = match (filter.categories.is_empty(), filter.names.is_empty()) {
            (true, true) => &sql.read_all,
            (false, true) => &sql.read_all_by_category,
            (true, false) => &sql.read_all_by_name,
            (false, false) => &sql.read_all_by_category_and_name,
        };
        // Committed events may wait beyond the horizon for an older transaction to end; give it
        // `horizon_wait` to do so (most transactions are short), so that a reader sees what was
        // committed before it asked. Never read past the horizon: that could skip events.
        let deadline = Instant::now() + self.horizon_wait;
        let mut pause = Duration::from_millis(2);
        loop {
            let mut query = sqlx::query(AssertSqlSafe(statement.clone()))
                .bind(after.transaction().to_string())
                .bind(clamp(after.position().0));
            if !filter.categories.is_empty() {
                query = query.bind(filter.categories.as_slice());
            }
            if !filter.names.is_empty() {
                query = query.bind(filter.names.as_slice());
            }
            let rows = query
                .bind(limit(max_count))
                .fetch_all(&self.pool)
                .await
                .map_err(self.read_error(format!("reading the global log after {after}")))?;
            let held_back = match rows.first() {
                Some(row) => row
                    .try_get::<bool, _>("held_back")
                    .map_err(self.read_error(format!("reading the global log after {after}")))?,
                None => false,
            };
            let mut events = Vec::with_capacity(rows.len());
            for row in &rows {
                // An empty page is one row of NULLs beside the flag.
                let position: Option<i64> = row
                    .try_get("position")
                    .map_err(self.read_error(format!("reading the global log after {after}")))?;
                if position.is_some() {
                    events.push(decode_event(row)?);
                }
            }
            let now = Instant::now();
            if !held_back || events.len() >= max_count || now >= deadline {
                return Ok(events);
            }
            tokio::time::sleep(pause.min(deadline - now)).await;
            pause = (pause * 2).min(Duration::from_millis(50));
        }
    }

    async fn stream_version(&self, stream: &StreamId) -> Result<Version, StoreError> {
        if unstorable(stream) {
            return Ok(Version(0));
        }
        let version: i64 =
            sqlx::query_scalar(AssertSqlSafe(self.schema.sql.stream_version.clone()))
                .bind(stream.as_str())
                .fetch_one(&self.pool)
                .await
                .map_err(self.read_error(format!("reading the version of stream `{stream}`")))?;
        u64::try_from(version)
            .map(Version)
            .map_err(|_| StoreError::CorruptRow {
                stream: stream.clone(),
                version: Version::NONE,
                message: format!("the stream head is at the negative version {version}"),
            })
    }

    async fn head_position(&self) -> Result<Position, StoreError> {
        let position: i64 =
            sqlx::query_scalar(AssertSqlSafe(self.schema.sql.head_position.clone()))
                .fetch_one(&self.pool)
                .await
                .map_err(self.read_error("reading the head position".to_owned()))?;
        Ok(Position(u64::try_from(position).unwrap_or(0)))
    }

    async fn find_event(&self, event_id: Uuid) -> Result<Option<RecordedEvent>, StoreError> {
        let row = sqlx::query(AssertSqlSafe(self.schema.sql.find_event.clone()))
            .bind(event_id)
            .fetch_optional(&self.pool)
            .await
            .map_err(self.read_error(format!("finding event {event_id}")))?;
        row.as_ref().map(decode_event).transpose()
    }
}

impl SnapshotStore for PostgresStore {
    async fn save_snapshot(&self, snapshot: Snapshot) -> Result<(), StoreError> {
        let version = i64::try_from(snapshot.version.0).map_err(|_| PostgresError::OutOfRange {
            what: "snapshot version",
            value: snapshot.version.0,
        })?;
        sqlx::query(AssertSqlSafe(self.schema.sql.save_snapshot.clone()))
            .bind(snapshot.stream_id.as_str())
            .bind(version)
            .bind(&snapshot.state_fingerprint)
            .bind(&snapshot.state)
            .bind(snapshot.taken_at)
            .execute(&self.pool)
            .await
            .map_err(self.read_error(format!(
                "saving the snapshot of stream `{}` at version {}",
                snapshot.stream_id, snapshot.version
            )))?;
        Ok(())
    }

    async fn load_snapshot(&self, stream: &StreamId) -> Result<Option<Snapshot>, StoreError> {
        if unstorable(stream) {
            return Ok(None);
        }
        let row = sqlx::query(AssertSqlSafe(self.schema.sql.load_snapshot.clone()))
            .bind(stream.as_str())
            .fetch_optional(&self.pool)
            .await
            .map_err(self.read_error(format!("loading the snapshot of stream `{stream}`")))?;
        row.map(|row| decode_snapshot(stream, &row)).transpose()
    }
}
