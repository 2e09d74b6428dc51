//! Projections on PostgreSQL: checkpoints committed in the read model's transaction, and the
//! [`ProjectionStore`] implementation (its lease is in `lease.rs`).

use std::time::Duration;

use eventsource_core::{
    BegunAhead, Checkpoint, LogFilter, ParkedEvent, ParkedSelection, Position, ProjectionStore,
    RecordedEvent, StoreError,
};
use sqlx::{PgConnection, Postgres, Row};

use crate::error::store_error;
use crate::lease::PostgresLease;
use crate::row::{decode_checkpoint, decode_parked};
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

/// Checkpoint components as stored (`bigint` columns).
fn parts(checkpoint: Checkpoint) -> (i64, i64) {
    (
        bigint(checkpoint.transaction()),
        bigint(checkpoint.position().0),
    )
}

impl PostgresStore {
    /// The checkpoint of `projection`, if it has one (a registered projection that has not
    /// committed, or was just rebuilt, is at (0, 0): none).
    pub(crate) async fn read_checkpoint(
        &self,
        projection: &str,
    ) -> Result<Option<Checkpoint>, StoreError> {
        let query = self.sql().load_checkpoint.query().bind(projection);
        let what = format!("reading the checkpoint of `{projection}`");
        let row = self.optional_row(query, what).await?;
        let checkpoint = row
            .map(|row| decode_checkpoint(projection, &row))
            .transpose()?;
        Ok(checkpoint.filter(|&c| c != Checkpoint::START))
    }

    /// Moves the checkpoint inside `tx`; `Ok(false)` when it was not at `expected`, or a reset
    /// is pending and `to` is not the start.
    async fn move_checkpoint(
        &self,
        tx: &mut PgConnection,
        projection: &str,
        expected: Option<Checkpoint>,
        to: Checkpoint,
    ) -> Result<bool, sqlx::Error> {
        let sql = self.sql();
        let (to_tx, to_pos) = parts(to);
        let rows = match expected.filter(|&c| c != Checkpoint::START) {
            None => {
                sql.start_checkpoint
                    .query()
                    .bind(projection)
                    .bind(to_tx)
                    .bind(to_pos)
                    .execute(&mut *tx)
                    .await?
            }
            Some(expected) => {
                let (tx_id, pos) = parts(expected);
                sql.move_checkpoint
                    .query()
                    .bind(projection)
                    .bind(to_tx)
                    .bind(to_pos)
                    .bind(tx_id)
                    .bind(pos)
                    .execute(&mut *tx)
                    .await?
            }
        };
        Ok(rows.rows_affected() == 1)
    }

    /// Whether a reset of `projection` is pending.
    pub(crate) async fn read_reset_requested(&self, projection: &str) -> Result<bool, StoreError> {
        let query = self.sql().reset_requested.query().bind(projection);
        let what = format!("reading the reset state of `{projection}`");
        match self.optional_row(query, what.clone()).await? {
            Some(row) => row.try_get::<bool, _>(0).map_err(self.failed(what)),
            None => Ok(false),
        }
    }

    /// Runs `query` (a change of parked events taking the projection and a position, or NULL
    /// for all) and returns how many rows it changed.
    async fn change_parked(
        &self,
        query: PgQuery,
        projection: &str,
        which: ParkedSelection,
        what: String,
    ) -> Result<u64, StoreError> {
        let done = query
            .bind(projection)
            .bind(selected_position(which))
            .execute(self.pool())
            .await
            .map_err(self.failed(what))?;
        Ok(done.rows_affected())
    }
}

/// The position `which` selects, as the `$2` of the parked-event statements (NULL: all).
fn selected_position(which: ParkedSelection) -> Option<i64> {
    match which {
        ParkedSelection::All => None,
        ParkedSelection::At(position) => Some(bigint(position.0)),
    }
}

impl ProjectionStore for PostgresStore {
    type Tx = PostgresTx;
    type Lease = PostgresLease;
    const TRANSACTIONAL: bool = true;

    async fn acquire_lease(
        &self,
        projection: &str,
        filter: &LogFilter,
    ) -> Result<PostgresLease, StoreError> {
        self.take_lease(projection, filter).await
    }

    async fn load_checkpoint(&self, projection: &str) -> Result<Option<Checkpoint>, StoreError> {
        // A checkpoint is a place in the global order: meaningless in a store that does not
        // fit its cluster.
        self.ensure_fits_store().await?;
        self.read_checkpoint(projection).await
    }

    async fn begin(&self, lease: &PostgresLease) -> Result<PostgresTx, StoreError> {
        self.begin_fenced(lease.fence()).await
    }

    /// The next batch's transaction, begun and fenced on a task while the current batch
    /// commits: `lease_fence()` waits for the checkpoint row, which the committing batch
    /// holds, so the lease is checked after that commit, as `begin` would check it then. It
    /// saves the next batch the `BEGIN` and fence round trips.
    /// Not with fewer than three connections in the pool: the batch's, the read-ahead's and
    /// this one.
    fn begin_ahead(&self, lease: &PostgresLease) -> Option<BegunAhead<PostgresTx>> {
        if self.pool().options().get_max_connections() < 3 {
            return None;
        }
        let (store, fence) = (self.clone(), lease.fence().clone());
        BegunAhead::spawn(async move { store.begin_fenced(&fence).await })
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
            .map_err(|e| store_error(context(), e))?;
        if moved && to == Checkpoint::START {
            // A rebuild applies the parked events again.
            self.sql()
                .unpark_all
                .query()
                .bind(projection)
                .execute(&mut *tx)
                .await
                .map_err(|e| store_error(context(), e))?;
        }
        if !moved {
            let _ = tx.rollback().await;
            if to != Checkpoint::START && self.read_reset_requested(projection).await? {
                return Err(StoreError::ResetRequested {
                    projection: projection.to_owned(),
                });
            }
            let actual = self.load_checkpoint(projection).await?;
            return Err(StoreError::CheckpointMoved {
                projection: projection.to_owned(),
                expected,
                actual,
            });
        }
        tx.commit().await.map_err(|e| store_error(context(), e))
    }

    async fn rollback(&self, tx: PostgresTx) {
        // A failed rollback leaves nothing behind either: the server aborts the transaction
        // when the connection goes.
        let _ = tx.rollback().await;
    }

    async fn request_reset(&self, projection: &str) -> Result<bool, StoreError> {
        let marked = self
            .sql()
            .request_reset
            .query()
            .bind(projection)
            .execute(self.pool())
            .await
            .map_err(self.failed(format!("requesting a reset of `{projection}`")))?;
        Ok(marked.rows_affected() > 0)
    }

    async fn reset_requested(&self, projection: &str) -> Result<bool, StoreError> {
        self.read_reset_requested(projection).await
    }

    async fn park(
        &self,
        tx: &mut PostgresTx,
        projection: &str,
        record: &RecordedEvent,
        error: &str,
        attempts: u32,
    ) -> Result<(), StoreError> {
        self.sql()
            .park
            .query()
            .bind(projection)
            .bind(bigint(record.position.0))
            .bind(record.event_id)
            .bind(record.stream_id.as_str())
            .bind(bigint(record.version.0))
            .bind(record.name.as_str())
            .bind(ParkedEvent::bounded_error(error))
            .bind(i32::try_from(attempts).unwrap_or(i32::MAX))
            .execute(&mut **tx)
            .await
            .map_err(self.failed(format!(
                "parking the event at position {} for projection `{projection}`",
                record.position
            )))?;
        Ok(())
    }

    async fn unpark(
        &self,
        tx: &mut PostgresTx,
        projection: &str,
        position: Position,
    ) -> Result<(), StoreError> {
        self.sql()
            .unpark
            .query()
            .bind(projection)
            .bind(bigint(position.0))
            .execute(&mut **tx)
            .await
            .map_err(self.failed(format!(
                "unparking the event at position {position} for projection `{projection}`"
            )))?;
        Ok(())
    }

    async fn parked(&self, projection: Option<&str>) -> Result<Vec<ParkedEvent>, StoreError> {
        let query = self.sql().parked.query().bind(projection);
        let rows = self
            .rows(query, "reading the parked events".to_owned())
            .await?;
        rows.iter().map(decode_parked).collect()
    }

    async fn retry_parked(
        &self,
        projection: &str,
        which: ParkedSelection,
    ) -> Result<u64, StoreError> {
        let what = format!("marking parked events of `{projection}` for retry");
        self.change_parked(self.sql().retry_parked.query(), projection, which, what)
            .await
    }

    async fn discard_parked(
        &self,
        projection: &str,
        which: ParkedSelection,
    ) -> Result<u64, StoreError> {
        let what = format!("discarding parked events of `{projection}`");
        self.change_parked(self.sql().discard_parked.query(), projection, which, what)
            .await
    }

    async fn due_for_retry(
        &self,
        projection: &str,
        max: usize,
    ) -> Result<Vec<ParkedEvent>, StoreError> {
        let query = self
            .sql()
            .due_for_retry
            .query()
            .bind(projection)
            .bind(bigint(max));
        let what = format!("reading the parked events of `{projection}` to retry");
        let rows = self.rows(query, what).await?;
        rows.iter().map(decode_parked).collect()
    }

    async fn count_after(&self, after: Checkpoint, filter: &LogFilter) -> Result<u64, StoreError> {
        // The admin API's count: every committed event, visible or held back; exact up to
        // `EXACT_COUNT_LIMIT`, estimated beyond (a lag or a progress total, not a balance).
        Ok(self.count_after_bounded(after, filter).await?.0)
    }

    async fn wait_for_append(
        &self,
        checkpoint: Checkpoint,
        head: Position,
        filter: &LogFilter,
        timeout: Duration,
    ) {
        let mut heard = self.notifications().subscribe(self.pool());
        let reconnects = heard.borrow().reconnects;
        // Matching events after the checkpoint that the reader has not seen: held behind an
        // older open transaction (whose end announces nothing) or committed since it read,
        // possibly before the listener could hear of them. Look again soon rather than wait
        // for a notice. (The probe makes a separate look at the head unnecessary.)
        if self.unread(checkpoint, filter).await.unwrap_or(false) {
            tokio::time::sleep(UNREAD_RETRY.min(timeout)).await;
            return;
        }
        // A reconnect of the listener wakes too: notifications sent meanwhile were lost.
        let woken = heard.wait_for(|a| a.newest > head.0 || a.reconnects != reconnects);
        let _ = tokio::time::timeout(timeout, woken).await;
    }

    async fn horizon_lag(&self) -> Result<Duration, StoreError> {
        PostgresStore::horizon_lag(self).await
    }
}
