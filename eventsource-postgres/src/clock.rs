//! The store's logical transaction clock: whether the stored order fits the cluster the store
//! runs on (checked once per store before it is used), and the repair that re-bases it after
//! the store moved to another cluster (run by `migrate`). The definition of the order is in
//! the crate docs, "Global order".

use sqlx::postgres::PgRow;
use sqlx::{PgExecutor, Row};

use crate::error::PostgresError;
use crate::schema::SchemaName;
use crate::sql::Statements;

/// The highest offset a repair sets: ids stay far from the end of `bigint` (2⁶² leaves more
/// transactions than a cluster can run). A stored id beyond it is damage, not a move.
const MAX_OFFSET: i64 = i64::MAX / 2;

/// Where a store's logical transaction ids stand against the cluster it runs on, from
/// [`PostgresAdmin::clock`](crate::PostgresAdmin::clock). Every id here is logical: the
/// cluster's transaction id plus [`offset`](Self::offset).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct TransactionClock {
    /// The store's offset: 0 until a move to another cluster was repaired.
    pub offset: u64,
    /// The newest transaction id stored in `events` (`None`: no events).
    pub newest_event: Option<u64>,
    /// The read horizon: every transaction below it has ended.
    pub horizon: u64,
    /// The id of the cluster's next transaction: every stored id must be below it.
    pub next: u64,
}

impl TransactionClock {
    /// Whether the stored events fit the cluster: each was written by a transaction the
    /// cluster has already started. False after a restore into a cluster whose counter is
    /// behind the source's: [`PostgresStore::migrate`](crate::PostgresStore::migrate) repairs it.
    pub fn fits(&self) -> bool {
        self.newest_event.is_none_or(|newest| newest < self.next)
    }

    /// `Ok` if the store fits, else [`PostgresError::ClusterMoved`].
    pub(crate) fn require_fit(&self, schema: &SchemaName) -> Result<(), PostgresError> {
        match self.newest_event {
            Some(newest) if !self.fits() => Err(PostgresError::ClusterMoved {
                schema: schema.to_string(),
                newest,
                next: self.next,
            }),
            _ => Ok(()),
        }
    }
}

/// The raw reading of the `clock` statement, in one snapshot.
struct Reading {
    /// `None`: the offset row is missing.
    offset: Option<i64>,
    newest: Option<i64>,
    xmin: i64,
    xmax: i64,
}

impl Reading {
    async fn take(
        executor: impl PgExecutor<'_>,
        statements: &Statements,
        schema: &SchemaName,
    ) -> Result<Self, PostgresError> {
        let failed = |source| {
            PostgresError::database(
                format!("reading the transaction clock of schema `{schema}`"),
                source,
            )
        };
        let row: PgRow = statements
            .clock
            .query()
            .fetch_one(executor)
            .await
            .map_err(failed)?;
        Ok(Reading {
            offset: row.try_get("offset_value").map_err(failed)?,
            newest: row.try_get("newest").map_err(failed)?,
            xmin: row.try_get("xmin").map_err(failed)?,
            xmax: row.try_get("xmax").map_err(failed)?,
        })
    }

    /// The clock in logical ids; fails on a missing offset row or values out of range.
    fn clock(&self, schema: &SchemaName) -> Result<TransactionClock, PostgresError> {
        let what = || format!("the transaction clock of schema `{schema}`");
        let Some(offset) = self.offset else {
            return Err(PostgresError::Corrupt {
                what: what(),
                problem: format!(
                    "the row of table `transaction_offset` is missing: run `eventsource migrate --schema {schema}` (or `PostgresStore::migrate`) to put it back"
                ),
            });
        };
        let non_negative = |name: &str, value: i64| {
            u64::try_from(value).map_err(|_| PostgresError::Corrupt {
                what: what(),
                problem: format!("{name} is negative ({value})"),
            })
        };
        let logical = |name: &str, raw: i64| {
            non_negative(name, raw)?
                .checked_add(non_negative("the offset", offset)?)
                .ok_or_else(|| PostgresError::Corrupt {
                    what: what(),
                    problem: format!("{name} {raw} plus the offset {offset} overflows"),
                })
        };
        Ok(TransactionClock {
            offset: non_negative("the offset", offset)?,
            newest_event: self
                .newest
                .map(|n| non_negative("the newest transaction id", n))
                .transpose()?,
            horizon: logical("the cluster's xmin", self.xmin)?,
            next: logical("the cluster's xmax", self.xmax)?,
        })
    }
}

/// How [`PostgresStore::migrate`](crate::PostgresStore::migrate) re-based the global order of
/// a store restored or moved from another cluster, from
/// [`Migrated::rebased`](crate::Migrated::rebased).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Rebased {
    /// The offset before the repair.
    pub from_offset: u64,
    /// The offset after it.
    pub to_offset: u64,
    /// The newest transaction id stored in `events`, now below every new transaction's.
    pub newest_event: u64,
}

/// Inside `migrate`'s transaction (READ COMMITTED, under the migration lock): puts back a
/// missing offset row, and if the stored events do not fit the cluster, raises the offset so
/// that every transaction still able to write sorts after every stored event. Idempotent; a
/// store that fits is not written to.
///
/// The raise happens under `LOCK TABLE events IN SHARE ROW EXCLUSIVE MODE`: appends wait (and
/// appends in flight are waited for), readers go on. The new offset is computed from the
/// cluster's `xmin` read after the lock, so even a transaction that took its id before the
/// repair and appends after it gets a logical id above the stored ones.
pub(crate) async fn rebase_if_moved(
    conn: &mut sqlx::PgConnection,
    statements: &Statements,
    schema: &SchemaName,
) -> Result<Option<Rebased>, PostgresError> {
    let failed = |what: &str| {
        let context = format!("re-basing the transaction order of schema `{schema}`: {what}");
        move |source| PostgresError::database(context, source)
    };
    let mut reading = Reading::take(&mut *conn, statements, schema).await?;
    if reading.offset.is_none() {
        statements
            .offset_row
            .query()
            .execute(&mut *conn)
            .await
            .map_err(failed("restoring the offset row"))?;
        tracing::warn!(
            schema = %schema,
            "the row of `transaction_offset` was missing; put back at offset 0"
        );
        reading = Reading::take(&mut *conn, statements, schema).await?;
    }
    if reading.clock(schema)?.fits() {
        return Ok(None);
    }
    statements
        .lock_events
        .query()
        .execute(&mut *conn)
        .await
        .map_err(failed("locking the events table"))?;
    // A fresh snapshot, after every append in flight has ended.
    let reading = Reading::take(&mut *conn, statements, schema).await?;
    let clock = reading.clock(schema)?;
    let Some(newest) = reading.newest.filter(|_| !clock.fits()) else {
        return Ok(None);
    };
    // Every transaction that can still write has an xid >= xmin: give it an id > newest.
    let wanted = i128::from(newest) + 1 - i128::from(reading.xmin);
    let wanted = i64::try_from(wanted)
        .ok()
        .filter(|w| *w <= MAX_OFFSET)
        .ok_or_else(|| PostgresError::Corrupt {
            what: format!("the events of schema `{schema}`"),
            problem: format!(
                "the newest transaction id {newest} is too large to re-base the order onto this cluster (it was not written by a PostgreSQL cluster)"
            ),
        })?;
    let to: i64 = statements
        .raise_offset
        .query()
        .bind(wanted)
        .fetch_one(&mut *conn)
        .await
        .and_then(|row| row.try_get(0))
        .map_err(failed("raising the offset"))?;
    let rebased = Rebased {
        from_offset: clock.offset,
        to_offset: u64::try_from(to).unwrap_or(0),
        newest_event: u64::try_from(newest).unwrap_or(0),
    };
    tracing::warn!(
        schema = %schema,
        newest_event = rebased.newest_event,
        cluster_next = clock.next,
        from_offset = rebased.from_offset,
        to_offset = rebased.to_offset,
        "the store was restored or moved from another PostgreSQL cluster: re-based its transaction order (new events now sort after every restored one; checkpoints stay valid)"
    );
    Ok(Some(rebased))
}

/// Runs `ANALYZE` on the store's tables when events exist but the planner has no statistics on
/// them (a restore brings none); `true` if it ran. Outside any transaction, after `migrate`.
pub(crate) async fn analyze_if_needed(
    pool: &sqlx::PgPool,
    statements: &Statements,
    schema: &SchemaName,
) -> Result<bool, PostgresError> {
    let failed = |what: &str| {
        let context = format!("{what} of schema `{schema}`");
        move |source| PostgresError::database(context, source)
    };
    let needed: bool = statements
        .needs_analyze
        .query()
        .bind(schema.as_str())
        .fetch_one(pool)
        .await
        .and_then(|row| row.try_get(0))
        .map_err(failed("looking for the planner statistics"))?;
    if !needed {
        return Ok(false);
    }
    sqlx::raw_sql(sqlx::AssertSqlSafe(statements.analyze.text()))
        .execute(pool)
        .await
        .map_err(failed("analyzing the tables"))?;
    tracing::info!(
        schema = %schema,
        "the events had no planner statistics (a restored store?): analyzed the store's tables"
    );
    Ok(true)
}

/// The store's transaction clock, read now.
pub(crate) async fn read(
    executor: impl PgExecutor<'_>,
    statements: &Statements,
    schema: &SchemaName,
) -> Result<TransactionClock, PostgresError> {
    Reading::take(executor, statements, schema)
        .await?
        .clock(schema)
}
