//! Ownership of a projection: one runner at a time, by a session-level advisory lock.

use eventsource_core::StoreError;
use sqlx::PgConnection;

use crate::sql::LEASE_LOCK;
use crate::store::PostgresStore;

/// Ownership of one projection: a session-level advisory lock on a connection of its own.
/// Dropping the lease closes that connection, which releases the lock.
#[derive(Debug)]
pub struct PostgresLease {
    _connection: PgConnection,
}

impl PostgresStore {
    /// Takes the lease of `projection`, waiting while another runner (of any process) holds it.
    pub(crate) async fn take_lease(&self, projection: &str) -> Result<PostgresLease, StoreError> {
        let context = || format!("taking the lease of projection `{projection}`");
        let mut connection = self
            .pool()
            .acquire()
            .await
            .map_err(|e| StoreError::backend(context(), e))?
            .detach();
        // One key per (schema, projection).
        sqlx::query(LEASE_LOCK)
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
}
