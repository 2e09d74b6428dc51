//! Projections on PostgreSQL: checkpoints committed in the read model's transaction, and the
//! [`ProjectionStore`] implementation (its lease is in `lease.rs`).

use std::time::Duration;

use eventsource_core::{Checkpoint, LogFilter, Position, ProjectionStore, StoreError};
use sqlx::{PgConnection, Postgres};

use crate::lease::PostgresLease;
use crate::row::decode_checkpoint;
use crate::sql::{PgQuery, bigint};
use crate::store::PostgresStore;

/// How soon a live reader looks again while events it has not read exist (e.g. behind an
/// open transaction).
const UNREAD_RETRY: Duration = Duration::from_millis(50);

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

/// Binds the components of `checkpoint` as stored (two `bigint` columns: transaction id,
/// position).
fn bind_parts(query: PgQuery, checkpoint: Checkpoint) -> PgQuery {
    query
        .bind(bigint(checkpoint.transaction()))
        .bind(bigint(checkpoint.position().0))
}

impl PostgresStore {
    /// The checkpoint of `projection`, if it has one.
    pub(crate) async fn read_checkpoint(
        &self,
        projection: &str,
    ) -> Result<Option<Checkpoint>, StoreError> {
        let query = self.sql().load_checkpoint.query().bind(projection);
        let what = format!("reading the checkpoint of `{projection}`");
        let row = self.optional_row(query, what).await?;
        row.map(|row| decode_checkpoint(projection, &row))
            .transpose()
    }

    /// Moves the checkpoint inside `tx`; `Ok(false)` when it was not at `expected`.
    async fn move_checkpoint(
        &self,
        tx: &mut PgConnection,
        projection: &str,
        expected: Option<Checkpoint>,
        to: Checkpoint,
    ) -> Result<bool, sqlx::Error> {
        let sql = self.sql();
        // Back to the start deletes the row; otherwise it is created or moved.
        let query = match (expected, to == Checkpoint::START) {
            (None, true) => sql.delete_checkpoint.query().bind(projection),
            (Some(expected), true) => {
                bind_parts(sql.delete_checkpoint_at.query().bind(projection), expected)
            }
            (None, false) => bind_parts(sql.insert_checkpoint.query().bind(projection), to),
            (Some(expected), false) => bind_parts(
                bind_parts(sql.update_checkpoint.query().bind(projection), to),
                expected,
            ),
        };
        let rows = query.execute(&mut *tx).await?.rows_affected();
        Ok(match (expected, to == Checkpoint::START) {
            // Nothing may have been there, and nothing must be.
            (None, true) => rows == 0,
            _ => rows == 1,
        })
    }
}

impl ProjectionStore for PostgresStore {
    type Tx = PostgresTx;
    type Lease = PostgresLease;
    const TRANSACTIONAL: bool = true;

    async fn acquire_lease(&self, projection: &str) -> Result<PostgresLease, StoreError> {
        self.take_lease(projection).await
    }

    async fn load_checkpoint(&self, projection: &str) -> Result<Option<Checkpoint>, StoreError> {
        // A checkpoint is a place in the global order: meaningless in a store that does not
        // fit its cluster.
        self.ensure_fits_store().await?;
        self.read_checkpoint(projection).await
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
        let moved = self
            .move_checkpoint(&mut tx, projection, expected, to)
            .await
            .map_err(|e| StoreError::backend(context(), e))?;
        if !moved {
            let _ = tx.rollback().await;
            let actual = self.load_checkpoint(projection).await?;
            return Err(StoreError::CheckpointMoved {
                projection: projection.to_owned(),
                expected,
                actual,
            });
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
        let mut newest = self.notifications().subscribe(self.pool());
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
