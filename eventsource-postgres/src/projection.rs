//! Projections on PostgreSQL: checkpoints committed in the read model's transaction, an
//! advisory-lock lease per projection, and LISTEN/NOTIFY wake-ups.

use std::time::Duration;

use eventsource_core::{Checkpoint, EventStore, Position, ProjectionStore, StoreError};
use sqlx::{AssertSqlSafe, PgConnection, Postgres, Row};

use crate::store::PostgresStore;

/// The unit of work a projection handler writes its read model through: a transaction that
/// commits together with the projection's checkpoint, so each event is applied exactly once.
///
/// ```ignore
/// impl Project<Deposited, PgTransaction> for Balances {
///     async fn project(&mut self, e: Deposited, at: &RecordedEvent, tx: &mut PgTransaction)
///         -> Result<(), sqlx::Error>
///     {
///         sqlx::query("UPDATE balances SET amount = amount + $2 WHERE account = $1")
///             .bind(at.stream_id.as_str()).bind(e.amount)
///             .execute(&mut **tx).await?;
///         Ok(())
///     }
/// }
/// ```
pub type PgTransaction = sqlx::Transaction<'static, Postgres>;

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

impl ProjectionStore for PostgresStore {
    type Tx = PgTransaction;
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

    async fn begin(&self) -> Result<PgTransaction, StoreError> {
        self.pool()
            .begin()
            .await
            .map_err(|e| StoreError::backend("starting a projection transaction", e))
    }

    async fn commit(
        &self,
        mut tx: PgTransaction,
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

    async fn rollback(&self, tx: PgTransaction) {
        // A failed rollback leaves nothing behind either: the server aborts the transaction
        // when the connection goes.
        let _ = tx.rollback().await;
    }

    async fn wait_for_append(&self, after: Position, timeout: Duration) {
        let wait = async {
            let Ok(mut listener) = self.listen().await else {
                // No listener: fall back to polling.
                tokio::time::sleep(timeout).await;
                return;
            };
            // Appends that committed before LISTEN took effect sent no notice we can see.
            if self.head_position().await.is_ok_and(|head| head > after) {
                return;
            }
            loop {
                match listener.recv().await {
                    Ok(notice) => {
                        let newer = notice
                            .payload()
                            .parse::<u64>()
                            .map_or(true, |position| position > after.0);
                        if newer {
                            return;
                        }
                    }
                    Err(_) => {
                        tokio::time::sleep(timeout).await;
                        return;
                    }
                }
            }
        };
        let _ = tokio::time::timeout(timeout, wait).await;
    }

    async fn horizon_lag(&self) -> Result<Duration, StoreError> {
        PostgresStore::horizon_lag(self).await
    }
}
