//! The operator's view of a store: schema diagnostics, counts, checkpoints, held-back events.
//! The integrity checks are in `verify.rs`. The `eventsource` command-line tool is built on
//! this API and holds no SQL of its own.

use std::time::Duration;

use chrono::{DateTime, Utc};
use eventsource_core::{
    Checkpoint, EventStore, LogFilter, ParkedEvent, ParkedSelection, Position, ProjectionStore,
};
use sqlx::postgres::PgRow;

use crate::clock::{Rebased, TransactionClock};
use crate::error::PostgresError;
use crate::migrate::SCHEMA_VERSION;
use crate::row::{Timestamp, count, decode_checkpoint, transaction_id, value};
use crate::sql::{PgQuery, SCHEMA_EXISTS, SCHEMA_TABLES, Statements, bigint};
use crate::store::PostgresStore;

/// Up to this many events (and streams, and events behind a projection) are counted exactly by
/// [`PostgresAdmin::counts`] and [`PostgresAdmin::checkpoints`]; beyond, they report the
/// planner's estimate (or this limit as a lower bound), so that `eventsource status` costs the
/// same at 100 million events as at 10 thousand (issue 22).
pub const EXACT_COUNT_LIMIT: u64 = 10_000;

/// The tables of an event store, in the order they are reported missing.
const TABLES: [&str; 5] = [
    "schema_migrations",
    "events",
    "streams",
    "checkpoints",
    "snapshots",
];

impl PostgresStore {
    /// The administration of this store: schema diagnostics, counts, checkpoints, integrity
    /// checks (what the `eventsource` command-line tool shows). See [`PostgresAdmin`].
    pub fn admin(&self) -> PostgresAdmin {
        PostgresAdmin {
            store: self.clone(),
        }
    }
}

/// Administration of a [`PostgresStore`], from [`PostgresStore::admin`]: what an operator (or
/// a health check, a dashboard, a deployment script) asks of a live store.
///
/// Cloning is cheap: it shares the store's pool. Every method reads, except
/// [`migrate`](Self::migrate), [`request_reset`](Self::request_reset),
/// [`retry_parked`](Self::retry_parked) and [`discard_parked`](Self::discard_parked).
///
/// ```no_run
/// # use eventsource_postgres::PostgresStore;
/// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
/// let store = PostgresStore::connect("postgres://app@localhost/app").await?;
/// let admin = store.admin();
/// admin.require_current_schema().await?;
/// let status = admin.status().await?;
/// println!("{} events in {} streams", status.counts.events, status.counts.streams);
/// for projection in &status.checkpoints {
///     println!("{} is {} events behind", projection.projection, projection.behind);
/// }
/// let report = admin.verify().await?;
/// assert!(report.is_ok(), "{:?}", report.findings);
/// # Ok(()) }
/// ```
#[derive(Clone, Debug)]
pub struct PostgresAdmin {
    store: PostgresStore,
}

/// What a schema holds, from [`PostgresAdmin::schema_status`]; nothing is assumed about it.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct SchemaStatus {
    /// Whether the schema exists at all.
    pub exists: bool,
    /// The first table of the event store that is missing (`schema_migrations`, `events`,
    /// `streams`, `checkpoints`, `snapshots`, in that order).
    pub missing_table: Option<&'static str>,
    /// The newest migration recorded, if the `schema_migrations` table exists (0 when it is
    /// empty).
    pub version: Option<i64>,
}

impl SchemaStatus {
    /// Fails unless the schema and every table of the event store exist:
    /// [`PostgresError::SchemaMissing`] or [`PostgresError::NotMigrated`].
    pub(crate) fn require_tables(&self, schema: &str) -> Result<(), PostgresError> {
        let schema = schema.to_owned();
        if !self.exists {
            return Err(PostgresError::SchemaMissing { schema });
        }
        match self.missing_table {
            Some(missing_table) => Err(PostgresError::NotMigrated {
                schema,
                missing_table,
            }),
            None => Ok(()),
        }
    }
}

/// What [`PostgresAdmin::migrate`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Migrated {
    /// The schema version before (0: a new store).
    pub from_version: i64,
    /// The schema version now.
    pub to_version: i64,
    /// Set when the store had been restored or moved from another PostgreSQL cluster and its
    /// global order was re-based onto this one.
    pub rebased: Option<Rebased>,
    /// Whether the store's tables held events but no planner statistics (a restore brings
    /// none) and were analyzed.
    pub analyzed: bool,
}

/// How big a store is, from [`PostgresAdmin::counts`]: exact up to [`EXACT_COUNT_LIMIT`],
/// estimated beyond (see [`estimated`](Self::estimated)).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Counts {
    /// Events stored.
    pub events: u64,
    /// Streams with a head.
    pub streams: u64,
    /// When the newest event was recorded (the newest time among the 100 highest positions:
    /// an event of a long transaction may carry an older time than one appended after it);
    /// `None` for an empty store.
    pub last_recorded_at: Option<DateTime<Utc>>,
    /// Whether `events` or `streams` is an estimate: more than [`EXACT_COUNT_LIMIT`] rows, so
    /// the figure is the planner's estimate of the table (its density at the last `ANALYZE`
    /// times its size now), never below the limit. Before the first `ANALYZE`, events are
    /// estimated by the head position (positions only have gaps where appends rolled back) and
    /// streams by the limit itself.
    pub estimated: bool,
}

/// A projection's checkpoint and how far it is behind, from [`PostgresAdmin::checkpoints`].
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct ProjectionCheckpoint {
    /// The projection's name.
    pub projection: String,
    /// Where it resumes ([`Checkpoint::START`] for a projection whose runner registered it but
    /// has not committed yet, or just rebuilt it).
    pub checkpoint: Checkpoint,
    /// Committed events the projection reads (the event names and categories its runner
    /// registered; every event for a projection registered before schema version 2) after its
    /// checkpoint, including those still behind the read horizon: 0 when it is caught up.
    /// When a reset is pending, every such event of the log. Exact up to
    /// [`EXACT_COUNT_LIMIT`]; beyond, the limit (see
    /// [`behind_is_lower_bound`](Self::behind_is_lower_bound)).
    pub behind: u64,
    /// Whether the projection is more than [`EXACT_COUNT_LIMIT`] events behind: `behind` then
    /// says "at least this many" (counting further would cost what the backlog holds).
    pub behind_is_lower_bound: bool,
    /// When a reset was requested ([`PostgresAdmin::request_reset`]) and the projection has
    /// not been rebuilt since.
    pub reset_requested_at: Option<DateTime<Utc>>,
    /// The event names its runner reads (empty: all).
    pub event_names: Vec<String>,
    /// The stream categories its runner reads (empty: all).
    pub categories: Vec<String>,
    /// When the checkpoint last moved.
    pub updated_at: DateTime<Utc>,
}

/// Everything `eventsource status` shows, from [`PostgresAdmin::status`].
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct StoreStatus {
    /// The schema version (the store is at [`SCHEMA_VERSION`]: older or newer is an error).
    pub schema_version: i64,
    /// Events, streams, the newest event's time.
    pub counts: Counts,
    /// The newest position of the log.
    pub head_position: Position,
    /// See [`PostgresStore::horizon_lag`].
    pub horizon_lag: Duration,
    /// Every projection's checkpoint, by name.
    pub checkpoints: Vec<ProjectionCheckpoint>,
}

impl PostgresAdmin {
    /// The store administered.
    pub fn store(&self) -> &PostgresStore {
        &self.store
    }

    /// The store's statements.
    pub(crate) fn sql(&self) -> &Statements {
        self.store.sql()
    }

    /// A failure of one of the admin API's statements, for `map_err`.
    pub(crate) fn failed(&self, what: &str) -> impl FnOnce(sqlx::Error) -> PostgresError {
        let context = format!("{what} (schema `{}`)", self.store.schema());
        move |source| PostgresError::database(context, source)
    }

    /// The one row `query` returns; `what` it was doing if that fails.
    pub(crate) async fn row(&self, query: PgQuery, what: &str) -> Result<PgRow, PostgresError> {
        query
            .fetch_one(self.store.pool())
            .await
            .map_err(self.failed(what))
    }

    /// The rows `query` returns; `what` it was doing if that fails.
    pub(crate) async fn rows(
        &self,
        query: PgQuery,
        what: &str,
    ) -> Result<Vec<PgRow>, PostgresError> {
        query
            .fetch_all(self.store.pool())
            .await
            .map_err(self.failed(what))
    }

    /// What the schema holds: whether it exists, which table is missing, its schema version.
    /// Assumes nothing, so it works on any schema, also one of a newer release.
    pub async fn schema_status(&self) -> Result<SchemaStatus, PostgresError> {
        let schema = self.store.schema().as_str();
        let found = self
            .row(
                sqlx::query(SCHEMA_EXISTS).bind(schema),
                "looking for the schema",
            )
            .await?;
        let exists: bool = value(&found, 0, "whether the schema exists")?;
        if !exists {
            return Ok(SchemaStatus {
                exists,
                missing_table: Some(TABLES[0]),
                version: None,
            });
        }
        let mut present = Vec::new();
        let what = "the tables of the schema";
        for row in self
            .rows(sqlx::query(SCHEMA_TABLES).bind(schema), what)
            .await?
        {
            present.push(value::<String>(&row, 0, what)?);
        }
        let missing_table = TABLES
            .into_iter()
            .find(|table| !present.iter().any(|p| p == table));
        let version = if present.iter().any(|p| p == TABLES[0]) {
            let what = "the schema version";
            let row = self
                .row(self.store.sql().schema_version.query(), what)
                .await?;
            Some(value::<Option<i64>>(&row, 0, what)?.unwrap_or(0))
        } else {
            None
        };
        Ok(SchemaStatus {
            exists,
            missing_table,
            version,
        })
    }

    /// Fails unless the schema holds an event store at exactly [`SCHEMA_VERSION`]:
    /// [`PostgresError::SchemaMissing`], [`PostgresError::NotMigrated`],
    /// [`PostgresError::SchemaOutdated`] or [`PostgresError::SchemaTooNew`]. Returns the
    /// schema version. A readiness check for an application that does not migrate itself.
    pub async fn require_current_schema(&self) -> Result<i64, PostgresError> {
        let status = self.schema_status().await?;
        let schema = self.store.schema().to_string();
        status.require_tables(&schema)?;
        match status.version {
            Some(found) if found > SCHEMA_VERSION => Err(PostgresError::SchemaTooNew {
                schema,
                found,
                supported: SCHEMA_VERSION,
            }),
            Some(found) if found < SCHEMA_VERSION => Err(PostgresError::SchemaOutdated {
                schema,
                found,
                expected: SCHEMA_VERSION,
            }),
            Some(found) => Ok(found),
            None => Err(PostgresError::NotMigrated {
                schema,
                missing_table: TABLES[0],
            }),
        }
    }

    /// [`PostgresStore::migrate`], saying from which schema version to which.
    pub async fn migrate(&self) -> Result<Migrated, PostgresError> {
        let from_version = self.schema_status().await?.version.unwrap_or(0);
        let outcome = self.store.migrate_reporting().await?;
        let to_version = self.schema_status().await?.version.unwrap_or(0);
        Ok(Migrated {
            from_version,
            to_version,
            rebased: outcome.rebased,
            analyzed: outcome.analyzed,
        })
    }

    /// Where the store's logical transaction ids stand against the cluster: its offset, the
    /// newest stored id, the read horizon and the cluster's next id. A store that does not
    /// [fit](TransactionClock::fits) was restored or moved from another cluster and needs
    /// [`migrate`](Self::migrate).
    pub async fn clock(&self) -> Result<TransactionClock, PostgresError> {
        self.store.read_clock().await
    }

    /// How many events and streams the store holds, and when the newest event was recorded.
    /// Exact up to [`EXACT_COUNT_LIMIT`] rows each, estimated beyond: the cost does not grow
    /// with the store.
    pub async fn counts(&self) -> Result<Counts, PostgresError> {
        let what = "the counts of the store";
        let limit = bigint(EXACT_COUNT_LIMIT.saturating_add(1));
        let row = self
            .row(self.sql().counts.query().bind(limit), what)
            .await?;
        let events = count(&row, "events", what)?;
        let streams = count(&row, "streams", what)?;
        let estimate = |exact: u64, column: &str| -> Result<(u64, bool), PostgresError> {
            if exact <= EXACT_COUNT_LIMIT {
                return Ok((exact, false));
            }
            let estimate: Option<i64> = value(&row, column, what)?;
            let estimate = estimate.and_then(|e| u64::try_from(e).ok()).unwrap_or(0);
            Ok((estimate.max(EXACT_COUNT_LIMIT), true))
        };
        let (events, events_estimated) = estimate(events, "events_estimate")?;
        let (streams, streams_estimated) = estimate(streams, "streams_estimate")?;
        Ok(Counts {
            events,
            streams,
            last_recorded_at: value::<Option<Timestamp>>(&row, "last_recorded_at", what)?
                .map(Timestamp::get),
            estimated: events_estimated || streams_estimated,
        })
    }

    /// Every projection's checkpoint and how many events follow it, by name: exact up to
    /// [`EXACT_COUNT_LIMIT`], a lower bound beyond (one bounded, index-ordered count per
    /// projection).
    ///
    /// Fails with [`PostgresError::ClusterMoved`] when the store does not fit the cluster: the
    /// counts would be wrong (a projection missing events would show 0 behind).
    pub async fn checkpoints(&self) -> Result<Vec<ProjectionCheckpoint>, PostgresError> {
        self.store.ensure_fits().await?;
        let what = "the projection checkpoints";
        let rows = self.rows(self.sql().checkpoints.query(), what).await?;
        let mut checkpoints = Vec::with_capacity(rows.len());
        for row in &rows {
            let projection: String = value(row, "projection", what)?;
            let checkpoint = decode_checkpoint(&projection, row)?;
            let reset_requested_at =
                value::<Option<Timestamp>>(row, "reset_requested_at", what)?.map(Timestamp::get);
            let event_names: Vec<String> = value(row, "event_names", what)?;
            let categories: Vec<String> = value(row, "categories", what)?;
            // While a reset is pending the projection will read the log from the start.
            let from = if reset_requested_at.is_some() {
                Checkpoint::START
            } else {
                checkpoint
            };
            let mut filter = LogFilter::all();
            filter.names = event_names.clone();
            filter.categories = categories.clone();
            let limit = bigint(EXACT_COUNT_LIMIT.saturating_add(1));
            let query = self.sql().count_upto.after(from, &filter).bind(limit);
            let counted = self.row(query, what).await?;
            let behind = count(&counted, "count", what)?;
            checkpoints.push(ProjectionCheckpoint {
                checkpoint,
                behind: behind.min(EXACT_COUNT_LIMIT),
                behind_is_lower_bound: behind > EXACT_COUNT_LIMIT,
                reset_requested_at,
                event_names,
                categories,
                updated_at: value::<Timestamp>(row, "updated_at", what)?.get(),
                projection,
            });
        }
        Ok(checkpoints)
    }

    /// The checkpoint of `projection`, if it has one.
    pub async fn checkpoint(&self, projection: &str) -> Result<Option<Checkpoint>, PostgresError> {
        Ok(self.store.read_checkpoint(projection).await?)
    }

    /// Asks for `projection` to be rebuilt (what `eventsource projection reset` does), and
    /// returns its checkpoint at that moment; `None` when the store knows no such projection.
    ///
    /// Nothing is deleted: the checkpoint stays where it is, marked, and from now on it only
    /// moves back to the start, together with the projection's
    /// [`Reset`](eventsource_core::Reset) hook clearing the read model in the same
    /// transaction. So the next start of a runner built with
    /// [`rebuild_on_reset`](eventsource_core::ProjectionRunner::rebuild_on_reset) (or a call
    /// of [`rebuild`](eventsource_core::ProjectionRunner::rebuild)) rebuilds it; any other
    /// runner refuses to catch up with
    /// [`ProjectionError::ResetRequested`](eventsource_core::ProjectionError::ResetRequested).
    /// A runner that is running finds out at its next commit, which is refused. Events are
    /// never applied a second time on top of the old read model.
    pub async fn request_reset(
        &self,
        projection: &str,
    ) -> Result<Option<Checkpoint>, PostgresError> {
        let checkpoint = self.store.read_checkpoint(projection).await?;
        let known = self.store.request_reset(projection).await?;
        Ok(known.then(|| checkpoint.unwrap_or(Checkpoint::START)))
    }

    /// The parked events of `projection` (of every projection with `None`): events a runner
    /// with [`FailurePolicy::Park`](eventsource_core::FailurePolicy::Park) could not apply,
    /// with their errors.
    pub async fn parked(
        &self,
        projection: Option<&str>,
    ) -> Result<Vec<ParkedEvent>, PostgresError> {
        Ok(self.store.parked(projection).await?)
    }

    /// Asks the runner of `projection` to apply parked events again at its next catch-up
    /// (one that fails again is parked again); returns how many were marked.
    pub async fn retry_parked(
        &self,
        projection: &str,
        which: ParkedSelection,
    ) -> Result<u64, PostgresError> {
        Ok(self.store.retry_parked(projection, which).await?)
    }

    /// Deletes parked events of `projection` for good; returns how many.
    pub async fn discard_parked(
        &self,
        projection: &str,
        which: ParkedSelection,
    ) -> Result<u64, PostgresError> {
        Ok(self.store.discard_parked(projection, which).await?)
    }

    /// How many committed events passing `filter` follow `after` in log order. After a
    /// [`read_all`](EventStore::read_all) from `after` returned a short page, these are the
    /// events held back behind an older transaction that is still open (and any committed
    /// since).
    ///
    /// Exact up to [`EXACT_COUNT_LIMIT`]; beyond, an estimate (at least the limit), so that the
    /// cost does not grow with the store: without a filter the head position minus `after`'s
    /// (positions are dense but for rolled-back appends), with one the planner's estimate of
    /// the rows passing it after `after`. [`count_after_estimated`](Self::count_after_estimated)
    /// says which.
    pub async fn count_after(
        &self,
        after: Checkpoint,
        filter: &LogFilter,
    ) -> Result<u64, PostgresError> {
        Ok(self.count_after_estimated(after, filter).await?.0)
    }

    /// [`count_after`](Self::count_after), and whether the count is an estimate.
    pub async fn count_after_estimated(
        &self,
        after: Checkpoint,
        filter: &LogFilter,
    ) -> Result<(u64, bool), PostgresError> {
        self.store.ensure_fits().await?;
        Ok(self.store.count_after_bounded(after, filter).await?)
    }

    /// A checkpoint from which [`read_all`](EventStore::read_all) returns every event at or
    /// after global `position`, to follow the log from there: just before `position` in the
    /// oldest transaction that wrote such an event, or before every event of the oldest
    /// transaction still open (which may yet write one). The log is in transaction order, so
    /// reading from it returns some events of later transactions with lower positions too:
    /// drop those by position.
    pub async fn checkpoint_from_position(
        &self,
        position: Position,
    ) -> Result<Checkpoint, PostgresError> {
        if position.0 <= 1 {
            return Ok(Checkpoint::START);
        }
        self.store.ensure_fits().await?;
        let query = self
            .sql()
            .first_transaction_from
            .query()
            .bind(bigint(position.0));
        let what = format!("the transactions at or after position {position}");
        let row = self.row(query, &what).await?;
        let oldest: Option<i64> = value(&row, "oldest", &what)?;
        let horizon: Option<i64> = value(&row, "horizon", &what)?;
        let horizon = horizon.ok_or_else(|| PostgresError::Corrupt {
            what: what.clone(),
            problem: "the row of table `transaction_offset` is missing: run `eventsource migrate`"
                .to_owned(),
        })?;
        let horizon = transaction_id(horizon, &what)?;
        let oldest = oldest.map(|t| transaction_id(t, &what)).transpose()?;
        Ok(match oldest {
            // Every transaction older than the horizon has ended: none but `oldest` and later
            // ones hold an event at or after `position`, and within `oldest` events are in
            // position order (a bulk import of millions of events is one transaction).
            Some(oldest) if oldest < horizon => Checkpoint::from_parts(oldest, position.0 - 1),
            // Positions start at 1: (transaction, 0) is before every event of that transaction.
            _ => Checkpoint::from_parts(horizon, 0),
        })
    }

    /// What `eventsource status` shows: the schema version (which must be current), counts,
    /// the head of the log, the horizon lag and every checkpoint.
    ///
    /// Fails with [`PostgresError::ClusterMoved`] when the store was restored or moved from
    /// another cluster and not migrated since: its lags would be wrong.
    pub async fn status(&self) -> Result<StoreStatus, PostgresError> {
        let schema_version = self.require_current_schema().await?;
        self.store.ensure_fits().await?;
        Ok(StoreStatus {
            schema_version,
            counts: self.counts().await?,
            head_position: self.store.head_position().await?,
            horizon_lag: self.store.horizon_lag().await?,
            checkpoints: self.checkpoints().await?,
        })
    }
}

impl PostgresStore {
    /// The count of [`PostgresAdmin::count_after`] (also the projection store's), and whether
    /// it is estimated.
    pub(crate) async fn count_after_bounded(
        &self,
        after: Checkpoint,
        filter: &LogFilter,
    ) -> Result<(u64, bool), eventsource_core::StoreError> {
        let what = format!("counting the events after {after}");
        let limit = bigint(EXACT_COUNT_LIMIT.saturating_add(1));
        let query = self.sql().count_upto.after(after, filter).bind(limit);
        let counted: i64 = self.scalar(query, what.clone()).await?;
        let counted = u64::try_from(counted).unwrap_or(0);
        if counted <= EXACT_COUNT_LIMIT {
            return Ok((counted, false));
        }
        let estimate = if filter.names.is_empty() && filter.categories.is_empty() {
            let head: i64 = self.scalar(self.sql().head_position.query(), what).await?;
            u64::try_from(head)
                .unwrap_or(0)
                .saturating_sub(after.position().0)
        } else {
            let query = self.sql().count_estimate.after(after, filter);
            let plan: serde_json::Value = self.scalar(query, what).await?;
            // A row count the planner writes as a float; anything else is no estimate.
            plan[0]["Plan"]["Plan Rows"]
                .as_f64()
                .filter(|rows| rows.is_finite() && *rows >= 0.0)
                .map_or(0, |rows| rows.min(u64::MAX as f64) as u64)
        };
        Ok((estimate.max(counted), true))
    }
}
