//! Errors of the PostgreSQL adapter that are not store operations: configuration, connecting,
//! migrating, administration.

use std::fmt;
use std::time::Duration;

use eventsource_core::StoreError;

/// Why the PostgreSQL store could not be configured, connected, migrated or administered.
///
/// Store operations (append, reads, snapshots) report [`StoreError`]; a `PostgresError` converts
/// into [`StoreError::Backend`] where one code path needs both, and the
/// [admin API](crate::PostgresAdmin) wraps the store errors of the reads it makes in
/// [`PostgresError::Store`].
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PostgresError {
    /// The schema name is not a plain lowercase identifier (see [`SchemaName`](crate::SchemaName)).
    #[error("invalid schema name `{name}`: {reason}")]
    InvalidSchemaName {
        /// The rejected name.
        name: String,
        /// The rule it breaks.
        reason: &'static str,
    },
    /// The connection URL does not parse.
    #[error("invalid PostgreSQL connection URL: {source}")]
    InvalidUrl {
        /// The driver's parse error.
        #[source]
        source: sqlx::Error,
    },
    /// No connection could be opened (server down, wrong port, authentication refused...).
    #[error("cannot connect to PostgreSQL at {host}:{port}: {source}")]
    Connect {
        /// The host (or Unix socket directory) tried.
        host: String,
        /// The port tried.
        port: u16,
        /// The driver's error.
        #[source]
        source: sqlx::Error,
    },
    /// The server did not answer within the acquire timeout (a firewall dropping packets, a
    /// server that accepts connections and hangs...).
    #[error("cannot connect to PostgreSQL at {host}:{port}: no answer within {}", Seconds(*.waited))]
    ConnectTimeout {
        /// The host (or Unix socket directory) tried.
        host: String,
        /// The port tried.
        port: u16,
        /// How long the store waited.
        waited: Duration,
    },
    /// The store's schema does not exist: nothing was migrated into it.
    #[error("schema `{schema}` does not exist")]
    SchemaMissing {
        /// The store's schema.
        schema: String,
    },
    /// The schema exists but lacks a table of the event store.
    #[error("schema `{schema}` holds no event store (no `{missing_table}` table)")]
    NotMigrated {
        /// The store's schema.
        schema: String,
        /// The first missing table, in the order `schema_migrations`, `events`, `streams`,
        /// `checkpoints`, `snapshots`.
        missing_table: &'static str,
    },
    /// The schema lacks migrations that this version of the library applies.
    #[error(
        "schema `{schema}` is at schema version {found}, this eventsource-postgres expects {expected}"
    )]
    SchemaOutdated {
        /// The store's schema.
        schema: String,
        /// The newest migration recorded in the database.
        found: i64,
        /// The newest migration this library ships.
        expected: i64,
    },
    /// The schema was migrated by a newer version of this library than the running one.
    #[error(
        "schema `{schema}` is at schema version {found}, written by a newer eventsource-postgres; this version knows schema versions up to {supported}: upgrade eventsource-postgres (never run an older release against a newer schema)"
    )]
    SchemaTooNew {
        /// The store's schema.
        schema: String,
        /// The newest migration recorded in the database.
        found: i64,
        /// The newest migration this library ships.
        supported: i64,
    },
    /// Applying a migration failed; the schema is left at the version before it.
    #[error("migrating schema `{schema}` to schema version {version} failed: {source}")]
    Migration {
        /// The store's schema.
        schema: String,
        /// The migration that failed.
        version: i64,
        /// The database's error.
        #[source]
        source: sqlx::Error,
    },
    /// A value does not fit the column it is stored in.
    #[error("{what} {value} does not fit in a PostgreSQL bigint")]
    OutOfRange {
        /// What the value is.
        what: &'static str,
        /// The value.
        value: u64,
    },
    /// A stored value that does not fit what the store writes (found by the admin API).
    #[error("{what}: {problem}")]
    Corrupt {
        /// What was read.
        what: String,
        /// What is wrong with it.
        problem: String,
    },
    /// A read of the store failed (it names the stream, version or position concerned).
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Any other database failure.
    #[error("{context}: {source}")]
    Database {
        /// What the store was doing.
        context: String,
        /// The database's error.
        #[source]
        source: sqlx::Error,
    },
}

impl PostgresError {
    pub(crate) fn database(context: impl Into<String>, source: sqlx::Error) -> Self {
        PostgresError::Database {
            context: context.into(),
            source,
        }
    }
}

impl From<PostgresError> for StoreError {
    fn from(error: PostgresError) -> Self {
        match error {
            PostgresError::Database { context, source } => store_error(context, source),
            PostgresError::Store(error) => error,
            // Refused or timed out: the server may come back. Refused credentials do not.
            other @ PostgresError::ConnectTimeout { .. } => {
                StoreError::transient("connecting to PostgreSQL", other)
            }
            PostgresError::Connect { ref source, .. } if is_transient(source) => {
                StoreError::transient("connecting to PostgreSQL", error)
            }
            other => StoreError::backend("PostgreSQL store", other),
        }
    }
}

/// Whether a retry of what failed with `error` can succeed without anybody changing anything:
/// the basis of [`StoreError::is_transient`] for this store, public so that applications can
/// classify errors of their own queries (a projection handler's, say) the same way.
///
/// Transient: I/O errors (connection reset, refused, broken pipe, end of stream), a pool
/// timeout, a crashed connection worker, and server errors of SQLSTATE class 08 (connection
/// exception), `57P01` admin shutdown, `57P02` crash shutdown, `57P03` cannot connect now
/// (starting up, in recovery), `57P05` idle session timeout, `25P03` idle-in-transaction
/// timeout, `53300` too many connections, `40001` serialization failure and `40P01`
/// deadlock. Everything else is permanent: constraint violations, syntax, permissions,
/// undefined tables, decoding, a closed pool, configuration.
pub fn is_transient(error: &sqlx::Error) -> bool {
    match error {
        sqlx::Error::Io(_) | sqlx::Error::PoolTimedOut | sqlx::Error::WorkerCrashed => true,
        sqlx::Error::Database(db) => db.code().is_some_and(|code| {
            code.starts_with("08")
                || matches!(
                    code.as_ref(),
                    "57P01" | "57P02" | "57P03" | "57P05" | "25P03" | "53300" | "40001" | "40P01"
                )
        }),
        _ => false,
    }
}

/// A store error for `error` while doing `context`: [`StoreError::Transient`] when
/// [`is_transient`] says a retry can help, [`StoreError::Backend`] otherwise.
pub(crate) fn store_error(context: impl Into<String>, error: sqlx::Error) -> StoreError {
    if is_transient(&error) {
        StoreError::transient(context, error)
    } else {
        StoreError::backend(context, error)
    }
}

/// At most 64 characters of `text` (user data, a stored value), for messages.
pub(crate) fn excerpt(text: &str) -> String {
    match text.char_indices().nth(64) {
        Some((end, _)) => format!("{}...", &text[..end]),
        None => text.to_owned(),
    }
}

/// A duration as an operator reads it: `5 s`, `1.5 s`, `250 ms`.
struct Seconds(Duration);

impl fmt::Display for Seconds {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let millis = self.0.as_millis();
        if millis < 1_000 {
            write!(f, "{millis} ms")
        } else if millis.is_multiple_of(1_000) {
            write!(f, "{} s", millis / 1_000)
        } else {
            write!(f, "{} s", self.0.as_secs_f64())
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::{Seconds, is_transient, store_error};

    #[test]
    fn lost_connections_and_pool_timeouts_are_transient_the_rest_is_not() {
        let reset = || {
            sqlx::Error::Io(std::io::Error::new(
                std::io::ErrorKind::ConnectionReset,
                "connection reset by peer",
            ))
        };
        assert!(is_transient(&reset()));
        assert!(is_transient(&sqlx::Error::PoolTimedOut));
        assert!(!is_transient(&sqlx::Error::PoolClosed));
        assert!(!is_transient(&sqlx::Error::RowNotFound));
        assert!(!is_transient(&sqlx::Error::Protocol(
            "unexpected message".into()
        )));
        assert!(store_error("reading", reset()).is_transient());
        assert!(!store_error("reading", sqlx::Error::RowNotFound).is_transient());
    }

    #[test]
    fn durations_read_as_an_operator_writes_them() {
        for (duration, text) in [
            (Duration::from_secs(5), "5 s"),
            (Duration::from_millis(1_500), "1.5 s"),
            (Duration::from_millis(250), "250 ms"),
            (Duration::ZERO, "0 ms"),
        ] {
            assert_eq!(Seconds(duration).to_string(), text);
        }
    }
}
