//! Ownership of a projection: one runner at a time, by a session-level advisory lock, checked
//! at the start of every batch.

use eventsource_core::{LogFilter, StoreError};
use sqlx::PgConnection;

use crate::checkpoint::PostgresTx;
use crate::error::store_error;
use crate::sql::{CHECKPOINT_ROW_GONE, LEASE_KEY, LEASE_LOCK, LEASE_LOST};
use crate::store::PostgresStore;

/// Ownership of one projection: a session-level advisory lock on a connection of its own.
/// Dropping the lease closes that connection, which releases the lock.
///
/// The lock goes with its connection: when the connection dies (a network cut, an
/// administrator's `pg_terminate_backend`, `idle_session_timeout`, a server restart) another
/// runner can take the lease. Every batch therefore starts by locking the projection's checkpoint row and then checking, from the batch's own
/// transaction, that this lease's session still holds the lock: a runner that lost its lease
/// finds out before it applies anything ([`StoreError::LeaseLost`]), and the next holder,
/// which takes the same row lock when it registers, waits until a batch already under way has
/// committed or rolled back. So two runners never process batches at once.
#[derive(Debug)]
pub struct PostgresLease {
    _connection: PgConnection,
    fence: Fence,
}

/// What a batch's transaction checks the lease by (`lease_fence()`): the projection, the
/// session holding the lock and the lock's key.
#[derive(Clone, Debug)]
pub(crate) struct Fence {
    projection: String,
    pid: i32,
    key: i64,
}

impl PostgresLease {
    /// The projection this lease is for.
    pub fn projection(&self) -> &str {
        &self.fence.projection
    }

    /// The server process id of the session holding the lock (what `pg_terminate_backend`
    /// would end).
    pub fn backend_pid(&self) -> i32 {
        self.fence.pid
    }

    /// What a batch's transaction checks this lease by.
    pub(crate) fn fence(&self) -> &Fence {
        &self.fence
    }
}

impl PostgresStore {
    /// Takes the lease of `projection`, waiting while another runner (of any process) holds it,
    /// and registers the projection with the events it reads.
    pub(crate) async fn take_lease(
        &self,
        projection: &str,
        filter: &LogFilter,
    ) -> Result<PostgresLease, StoreError> {
        let context = || format!("taking the lease of projection `{projection}`");
        let mut connection = self
            .pool()
            .acquire()
            .await
            .map_err(|e| store_error(context(), e))?
            .detach();
        // One key per (schema, projection).
        let key: i64 = sqlx::query_scalar(LEASE_KEY)
            .bind(format!(
                "eventsource.projection:{}:{projection}",
                self.schema()
            ))
            .fetch_one(&mut connection)
            .await
            .map_err(|e| store_error(context(), e))?;
        let pid: i32 = sqlx::query_scalar(LEASE_LOCK)
            .bind(key)
            .fetch_one(&mut connection)
            .await
            .map_err(|e| store_error(context(), e))?;
        // Waits for the row lock of a batch the previous holder still has in flight.
        self.sql()
            .register_projection
            .query()
            .bind(projection)
            .bind(filter.names.as_slice())
            .bind(filter.categories.as_slice())
            .execute(&mut connection)
            .await
            .map_err(|e| store_error(context(), e))?;
        Ok(PostgresLease {
            _connection: connection,
            fence: Fence {
                projection: projection.to_owned(),
                pid,
                key,
            },
        })
    }

    /// Begins a batch's transaction for the holder of `lease`: the checkpoint row locked, then
    /// the lease checked (see `sql::Statements::lease_fence`), before any handler runs.
    pub(crate) async fn begin_fenced(&self, lease: &Fence) -> Result<PostgresTx, StoreError> {
        let projection = lease.projection.as_str();
        let context = || format!("starting a batch of projection `{projection}`");
        let mut tx = crate::begin::begin(self.pool())
            .await
            .map_err(|e| store_error(context(), e))?;
        let fenced = self
            .sql()
            .lease_fence
            .query()
            .bind(projection)
            .bind(lease.pid)
            .bind(lease.key)
            .execute(&mut *tx)
            .await;
        let Err(error) = fenced else { return Ok(tx) };
        let _ = tx.rollback().await;
        let lost = |reason: String| StoreError::LeaseLost {
            projection: projection.to_owned(),
            reason,
        };
        Err(match error.as_database_error().and_then(|db| db.code()) {
            Some(code) if code == LEASE_LOST => lost(format!(
                "the session holding it (server process {}) no longer holds the lock",
                lease.pid
            )),
            Some(code) if code == CHECKPOINT_ROW_GONE => {
                lost("its checkpoint row was deleted".to_owned())
            }
            _ => store_error(context(), error),
        })
    }
}
