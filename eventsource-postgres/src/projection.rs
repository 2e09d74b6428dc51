//! Projections on PostgreSQL: checkpoints committed in the read model's transaction, an
//! advisory-lock lease per projection, and LISTEN/NOTIFY wake-ups.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokio::sync::watch;

use eventsource_core::{Checkpoint, LogFilter, Position, ProjectionStore, StoreError};
use sqlx::{AssertSqlSafe, PgConnection, Postgres, Row};

use crate::store::PostgresStore;

/// The unit of work a projection handler writes its read model through: a transaction that
/// commits together with the projection's checkpoint, so each event is applied exactly once.
///
/// ```ignore
/// impl Project<Deposited, PostgresTx> for Balances {
///     async fn project(&mut self, e: Deposited, at: &RecordedEvent, tx: &mut PostgresTx)
///         -> Result<(), sqlx::Error>
///     {
///         sqlx::query("UPDATE balances SET amount = amount + $2 WHERE account = $1")
///             .bind(at.stream_id.as_str()).bind(e.amount)
///             .execute(&mut **tx).await?;
///         Ok(())
///     }
/// }
/// ```
pub type PostgresTx = sqlx::Transaction<'static, Postgres>;

/// Ownership of one projection: a session-level advisory lock on a connection of its own.
/// Dropping the lease closes that connection, which releases the lock.
#[derive(Debug)]
pub struct PostgresLease {
    _connection: PgConnection,
}

fn moved(projection: &str, expected: Option<Checkpoint>, actual: Option<Checkpoint>) -> StoreError {
    StoreError::CheckpointMoved {
        projection: projection.to_owned(),
        expected,
        actual,
    }
}

/// Checkpoint components as stored (`bigint` columns); values beyond `i64::MAX` cannot occur
/// for transaction ids or positions, and clamping keeps the comparison exact for all others.
fn parts(checkpoint: Checkpoint) -> (i64, i64) {
    let clamp = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
    (
        clamp(checkpoint.transaction()),
        clamp(checkpoint.position().0),
    )
}

impl PostgresStore {
    fn checkpoints_table(&self) -> String {
        format!("{}.checkpoints", self.schema().quoted())
    }

    async fn read_checkpoint(
        &self,
        executor: impl sqlx::PgExecutor<'_>,
        projection: &str,
    ) -> Result<Option<Checkpoint>, StoreError> {
        let sql = format!(
            "SELECT transaction_id, position FROM {} WHERE projection = $1",
            self.checkpoints_table()
        );
        let row = sqlx::query(AssertSqlSafe(sql))
            .bind(projection)
            .fetch_optional(executor)
            .await
            .map_err(|e| {
                StoreError::backend(format!("reading the checkpoint of `{projection}`"), e)
            })?;
        let Some(row) = row else { return Ok(None) };
        let (transaction, position): (i64, i64) = (
            row.try_get("transaction_id")
                .map_err(|e| StoreError::backend("decoding a checkpoint", e))?,
            row.try_get("position")
                .map_err(|e| StoreError::backend("decoding a checkpoint", e))?,
        );
        let to_u64 = |v: i64, what: &str| {
            u64::try_from(v).map_err(|_| {
                StoreError::backend(
                    format!("decoding the checkpoint of `{projection}`"),
                    format!("negative {what} {v}"),
                )
            })
        };
        Ok(Some(Checkpoint::from_parts(
            to_u64(transaction, "transaction id")?,
            to_u64(position, "position")?,
        )))
    }

    /// Moves the checkpoint inside `tx`; `Ok(false)` when it was not at `expected`.
    async fn move_checkpoint(
        &self,
        tx: &mut PgConnection,
        projection: &str,
        expected: Option<Checkpoint>,
        to: Checkpoint,
    ) -> Result<bool, sqlx::Error> {
        let table = self.checkpoints_table();
        let (to_tx, to_pos) = parts(to);
        let rows = match (expected, to == Checkpoint::START) {
            (None, true) => {
                let sql = format!("DELETE FROM {table} WHERE projection = $1");
                let deleted = sqlx::query(AssertSqlSafe(sql))
                    .bind(projection)
                    .execute(&mut *tx)
                    .await?;
                // Nothing may have been there.
                u64::from(deleted.rows_affected() == 0)
            }
            (Some(expected), true) => {
                let (tx_id, pos) = parts(expected);
                let sql = format!(
                    "DELETE FROM {table} WHERE projection = $1 AND transaction_id = $2 AND position = $3"
                );
                sqlx::query(AssertSqlSafe(sql))
                    .bind(projection)
                    .bind(tx_id)
                    .bind(pos)
                    .execute(&mut *tx)
                    .await?
                    .rows_affected()
            }
            (None, false) => {
                let sql = format!(
                    "INSERT INTO {table} (projection, transaction_id, position) VALUES ($1, $2, $3) \
                     ON CONFLICT (projection) DO NOTHING"
                );
                sqlx::query(AssertSqlSafe(sql))
                    .bind(projection)
                    .bind(to_tx)
                    .bind(to_pos)
                    .execute(&mut *tx)
                    .await?
                    .rows_affected()
            }
            (Some(expected), false) => {
                let (tx_id, pos) = parts(expected);
                let sql = format!(
                    "UPDATE {table} SET transaction_id = $2, position = $3, updated_at = now() \
                     WHERE projection = $1 AND transaction_id = $4 AND position = $5"
                );
                sqlx::query(AssertSqlSafe(sql))
                    .bind(projection)
                    .bind(to_tx)
                    .bind(to_pos)
                    .bind(tx_id)
                    .bind(pos)
                    .execute(&mut *tx)
                    .await?
                    .rows_affected()
            }
        };
        Ok(rows == 1)
    }
}

impl PostgresStore {
    /// Whether committed events passing `filter` exist after `checkpoint`, readable or still
    /// behind the read horizon. Served by the checkpoint-order indexes (all, by category, by
    /// name); stops at the first row.
    async fn unread(&self, checkpoint: Checkpoint, filter: &LogFilter) -> Result<bool, StoreError> {
        let mut sql = format!(
            "SELECT EXISTS (SELECT 1 FROM {}.events e \
              WHERE (e.transaction_id, e.position) > ($1::text::xid8, $2)",
            self.schema().quoted()
        );
        if !filter.categories.is_empty() {
            sql.push_str(" AND e.category = ANY($3)");
        }
        if !filter.names.is_empty() {
            sql.push_str(if filter.categories.is_empty() {
                " AND e.name = ANY($3)"
            } else {
                " AND e.name = ANY($4)"
            });
        }
        sql.push(')');
        let (_, position) = parts(checkpoint);
        let mut query = sqlx::query_scalar(AssertSqlSafe(sql))
            .bind(checkpoint.transaction().to_string())
            .bind(position);
        if !filter.categories.is_empty() {
            query = query.bind(filter.categories.as_slice());
        }
        if !filter.names.is_empty() {
            query = query.bind(filter.names.as_slice());
        }
        query
            .fetch_one(self.pool())
            .await
            .map_err(|e| StoreError::backend("looking for unread events", e))
    }
}

impl ProjectionStore for PostgresStore {
    type Tx = PostgresTx;
    type Lease = PostgresLease;
    const TRANSACTIONAL: bool = true;

    async fn acquire_lease(&self, projection: &str) -> Result<PostgresLease, StoreError> {
        let context = || format!("taking the lease of projection `{projection}`");
        let mut connection = self
            .pool()
            .acquire()
            .await
            .map_err(|e| StoreError::backend(context(), e))?
            .detach();
        // One key per (schema, projection); a second runner blocks here until the first ends.
        sqlx::query("SELECT pg_advisory_lock(hashtextextended($1, 0))")
            .bind(format!(
                "eventsource.projection:{}:{projection}",
                self.schema()
            ))
            .execute(&mut connection)
            .await
            .map_err(|e| StoreError::backend(context(), e))?;
        Ok(PostgresLease {
            _connection: connection,
        })
    }

    async fn load_checkpoint(&self, projection: &str) -> Result<Option<Checkpoint>, StoreError> {
        self.read_checkpoint(self.pool(), projection).await
    }

    async fn begin(&self) -> Result<PostgresTx, StoreError> {
        self.pool()
            .begin()
            .await
            .map_err(|e| StoreError::backend("starting a projection transaction", e))
    }

    async fn commit(
        &self,
        mut tx: PostgresTx,
        projection: &str,
        expected: Option<Checkpoint>,
        to: Checkpoint,
    ) -> Result<(), StoreError> {
        let context = || format!("committing projection `{projection}` at checkpoint {to}");
        let moved_ok = self
            .move_checkpoint(&mut tx, projection, expected, to)
            .await
            .map_err(|e| StoreError::backend(context(), e))?;
        if !moved_ok {
            let _ = tx.rollback().await;
            let actual = self.load_checkpoint(projection).await?;
            return Err(moved(projection, expected, actual));
        }
        tx.commit()
            .await
            .map_err(|e| StoreError::backend(context(), e))
    }

    async fn rollback(&self, tx: PostgresTx) {
        // A failed rollback leaves nothing behind either: the server aborts the transaction
        // when the connection goes.
        let _ = tx.rollback().await;
    }

    async fn wait_for_append(
        &self,
        checkpoint: Checkpoint,
        head: Position,
        filter: &LogFilter,
        timeout: Duration,
    ) {
        let mut newest = self.wakeups().subscribe(self);
        // Matching events after the checkpoint that the reader has not seen: held behind an
        // older open transaction (whose end announces nothing) or committed since it read,
        // possibly before the listener could hear of them. Look again soon rather than wait
        // for a notice. (The probe makes a separate look at the head unnecessary.)
        if self.unread(checkpoint, filter).await.unwrap_or(false) {
            tokio::time::sleep(UNREAD_RETRY.min(timeout)).await;
            return;
        }
        let _ = tokio::time::timeout(timeout, newest.wait_for(|&p| p > head.0)).await;
    }

    async fn horizon_lag(&self) -> Result<Duration, StoreError> {
        PostgresStore::horizon_lag(self).await
    }
}

/// How soon a live reader looks again while events it has not read exist (e.g. behind an
/// open transaction).
const UNREAD_RETRY: Duration = Duration::from_millis(50);

/// How long the shared listener stays connected with nobody waiting before it closes.
const IDLE_LISTENER: Duration = Duration::from_secs(30);

/// The newest position announced on the store's NOTIFY channel, fed by one LISTEN connection
/// per store that live readers share: started by the first waiter, closed when nobody has
/// waited for a while. A wake-up is a hint; readers also poll.
#[derive(Debug)]
pub(crate) struct Wakeups {
    newest: watch::Sender<u64>,
    listening: AtomicBool,
}

impl Default for Wakeups {
    fn default() -> Self {
        Wakeups {
            newest: watch::Sender::new(0),
            listening: AtomicBool::new(false),
        }
    }
}

impl Wakeups {
    /// A receiver of announced positions, starting the shared listener if it is not running.
    pub(crate) fn subscribe(&self, store: &PostgresStore) -> watch::Receiver<u64> {
        let receiver = self.newest.subscribe();
        if !self.listening.swap(true, Ordering::SeqCst) {
            tokio::spawn(listen(store.clone()));
        }
        receiver
    }
}

/// Feeds the store's [`Wakeups`] until nobody has waited for [`IDLE_LISTENER`].
async fn listen(store: PostgresStore) {
    let wakeups = store.wakeups();
    loop {
        let Ok(mut listener) = store.listen().await else {
            // The server is unreachable: readers poll meanwhile; try again later.
            tokio::time::sleep(Duration::from_secs(1)).await;
            if wakeups.newest.receiver_count() == 0 {
                break;
            }
            continue;
        };
        loop {
            match tokio::time::timeout(IDLE_LISTENER, listener.recv()).await {
                Ok(Ok(notice)) => {
                    // The payload is the newest committed position; a notice without one is
                    // left to the readers' polling.
                    if let Ok(position) = notice.payload().parse::<u64>() {
                        wakeups.newest.send_if_modified(|newest| {
                            let newer = position > *newest;
                            *newest = (*newest).max(position);
                            newer
                        });
                    }
                }
                Ok(Err(_)) => break, // connection lost: reconnect
                Err(_) if wakeups.newest.receiver_count() == 0 => {
                    wakeups.listening.store(false, Ordering::SeqCst);
                    return;
                }
                Err(_) => {}
            }
        }
    }
    wakeups.listening.store(false, Ordering::SeqCst);
}
