//! Ownership of a projection: one runner at a time, by a session-level advisory lock, checked
//! at the start of every batch.

use eventsource_core::{LogFilter, StoreError};
use sqlx::{PgConnection, Row};

use crate::error::store_error;
use crate::sql::{LEASE_KEY, LEASE_LOCK};
use crate::store::PostgresStore;

/// Ownership of one projection: a session-level advisory lock on a connection of its own.
/// Dropping the lease closes that connection, which releases the lock.
///
/// The lock goes with its connection: when the connection dies (a network cut, an
/// administrator's `pg_terminate_backend`, `idle_session_timeout`, a server restart) another
/// runner can take the lease. Every batch therefore starts by locking the projection's
/// checkpoint row and then checking, from the batch's own transaction, that this lease's
/// session still holds the lock: a runner that lost its lease finds out before it applies
/// anything ([`StoreError::LeaseLost`]), and the next holder, which takes the same row lock
/// when it registers, waits until a batch already under way has committed or rolled back. So
/// two runners never process batches at once.
#[derive(Debug)]
pub struct PostgresLease {
    _connection: PgConnection,
    projection: String,
    key: i64,
    pid: i32,
}

impl PostgresLease {
    /// The projection this lease is for.
    pub fn projection(&self) -> &str {
        &self.projection
    }

    /// The server process id of the session holding the lock (what `pg_terminate_backend`
    /// would end).
    pub fn backend_pid(&self) -> i32 {
        self.pid
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
            projection: projection.to_owned(),
            key,
            pid,
        })
    }

    /// Locks the checkpoint row of the lease's projection in `tx`, then checks that the lease
    /// is still held.
    pub(crate) async fn fence(
        &self,
        tx: &mut PgConnection,
        lease: &PostgresLease,
    ) -> Result<(), StoreError> {
        let projection = lease.projection.as_str();
        let context = || format!("checking the lease of projection `{projection}`");
        // One round trip: the row lock first, then the lease test (see `sql::Statements::fence`).
        let leased: Option<bool> = self
            .sql()
            .fence
            .query()
            .bind(projection)
            .bind(lease.pid)
            .bind(lease.key)
            .fetch_optional(&mut *tx)
            .await
            .and_then(|row| row.map(|row| row.try_get(0)).transpose())
            .map_err(|e| store_error(context(), e))?;
        match leased {
            Some(true) => Ok(()),
            Some(false) => Err(StoreError::LeaseLost {
                projection: projection.to_owned(),
                reason: format!(
                    "the session holding it (server process {}) no longer holds the lock",
                    lease.pid
                ),
            }),
            None => Err(StoreError::LeaseLost {
                projection: projection.to_owned(),
                reason: "its checkpoint row was deleted".to_owned(),
            }),
        }
    }
}
