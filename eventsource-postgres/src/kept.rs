//! Connections of the store's own, outside sqlx's pool, for its hottest statements.
//!
//! sqlx 0.9's pool pings a connection when it hands it out (unless told not to) and again,
//! unconditionally, when it is given back: two round trips around every one-statement append
//! or read (BENCHMARKS.md, session 28: 315 µs per one-row INSERT through a default pool, 241
//! µs on a connection of its own). A store built by [`PostgresStoreBuilder`] keeps a few
//! connections of its own beside its pool (not out of it: a smaller pool could starve a caller
//! that holds pooled connections while it asks for another):
//! - **writers**, for appends: the group commit's transactions in flight, and batches too
//!   large to share one, each taking one when it is free;
//! - **readers**, for the reads of one stream an aggregate is loaded with (its events and its
//!   snapshot), taken when one is free; other reads wait for nothing and use the pool.
//!
//! What the pool's pings were for is done here differently:
//! - a connection idle for [`PING_IDLE`] or longer is pinged before it is used (the rule of
//!   HikariCP, whose default window is 500 ms too), and replaced if that fails;
//! - a connection whose statement failed other than with an error from the server (the
//!   connection was lost, a protocol error) or with which the server ended the session is
//!   closed, and the append or read is sent once more on the pool. Reads change nothing;
//!   appends are idempotent by event id: if the lost statement had committed, the second
//!   attempt reports the batch as replayed;
//! - a connection whose statement was cancelled mid-way is closed, never reused;
//! - a connection older than [`MAX_LIFETIME`] (sqlx's default too) is replaced.
//!
//! [`PostgresStoreBuilder`]: crate::PostgresStoreBuilder

use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use sqlx::postgres::{PgConnectOptions, PgDatabaseError, PgSeverity};
use sqlx::{ConnectOptions, Connection, PgConnection, PgPool};

/// A connection idle this long is pinged before it is used.
const PING_IDLE: Duration = Duration::from_millis(500);
/// After opening a connection failed, none is opened for this long.
const OPENING_PAUSE: Duration = Duration::from_secs(1);
/// A connection this old is closed and replaced (sqlx's default `max_lifetime`).
const MAX_LIFETIME: Duration = Duration::from_secs(30 * 60);

/// Connections a store keeps for one use (appends or stream reads).
pub(crate) struct KeptConnections {
    /// How to open one; `None` when the store keeps none (it was given a pool).
    options: Option<PgConnectOptions>,
    /// The most open at once.
    capacity: usize,
    /// How long opening one may take before the pool is used instead.
    connect_timeout: Duration,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    /// Connections not in use, the most recently used last.
    idle: Vec<Idle>,
    /// Connections open or being opened, in use or not.
    open: usize,
    /// The store was closed: no connection is opened or kept any more.
    closed: bool,
    /// Opening one failed: none is opened before then (the pool is used meanwhile, and
    /// reports why it cannot connect), so that an unreachable server is not waited for twice
    /// by every statement.
    no_opening_until: Option<Instant>,
}

struct Idle {
    connection: PgConnection,
    opened: Instant,
    since: Instant,
}

/// A connection taken from [`KeptConnections`] for one append or read. Given back with
/// [`KeptConnection::give_back`]; dropped otherwise (its statement cancelled mid-way), it is
/// closed.
pub(crate) struct KeptConnection<'w> {
    kept: &'w KeptConnections,
    connection: Option<PgConnection>,
    opened: Instant,
    /// A statement failed other than with an error from the server: the connection is closed
    /// when it is given back, and no further statement is sent on it.
    broken: bool,
    /// Given back: counted among the idle connections, not by this one any more.
    returned: bool,
}

impl KeptConnections {
    /// No connections of the store's own: every statement goes through the pool.
    pub(crate) fn none() -> Self {
        KeptConnections {
            options: None,
            capacity: 0,
            connect_timeout: Duration::ZERO,
            state: Mutex::default(),
        }
    }

    /// At most `capacity` connections opened with `options`.
    pub(crate) fn new(
        options: PgConnectOptions,
        capacity: usize,
        connect_timeout: Duration,
    ) -> Self {
        KeptConnections {
            options: (capacity > 0).then_some(options),
            capacity,
            connect_timeout,
            state: Mutex::default(),
        }
    }

    /// Closes the idle connections, and those in use when they are given back; opens none
    /// any more.
    pub(crate) async fn close(&self) {
        let idle = {
            let mut state = self.state();
            state.closed = true;
            let idle = std::mem::take(&mut state.idle);
            state.open = state.open.saturating_sub(idle.len());
            idle
        };
        for idle in idle {
            let _ = idle.connection.close().await;
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A connection for an append or a read, or `None`: the store keeps none, the pool was
    /// closed, all are in use, or a new one could not be opened (the pool then reports why).
    pub(crate) async fn take(&self, pool: &PgPool) -> Option<KeptConnection<'_>> {
        let options = self.options.as_ref()?;
        if pool.is_closed() {
            // Closing the pool closes these too (when next asked for one).
            self.close().await;
            return None;
        }
        let idle = {
            let mut state = self.state();
            if state.closed {
                return None;
            }
            let opening_paused = state
                .no_opening_until
                .is_some_and(|until| Instant::now() < until);
            match state.idle.pop() {
                Some(idle) => Some(idle),
                None if state.open < self.capacity && !opening_paused => {
                    state.open += 1;
                    None
                }
                None => return None,
            }
        };
        // From here the count includes this connection: the taker gives it back or drops it
        // (also if this function is cancelled).
        let mut taken = KeptConnection {
            kept: self,
            connection: None,
            opened: Instant::now(),
            broken: false,
            returned: false,
        };
        if let Some(idle) = idle {
            let now = Instant::now();
            if now.duration_since(idle.opened) < MAX_LIFETIME {
                let mut connection = idle.connection;
                if now.duration_since(idle.since) < PING_IDLE || connection.ping().await.is_ok() {
                    taken.connection = Some(connection);
                    taken.opened = idle.opened;
                    return Some(taken);
                }
            } else {
                let _ = idle.connection.close().await;
            }
        }
        match tokio::time::timeout(self.connect_timeout, options.connect()).await {
            Ok(Ok(connection)) => {
                taken.connection = Some(connection);
                taken.opened = Instant::now();
                Some(taken)
            }
            failed => {
                if let Ok(Err(error)) = failed {
                    tracing::debug!(%error, "opening a kept connection failed; using the pool");
                }
                self.state().no_opening_until = Some(Instant::now() + OPENING_PAUSE);
                None
            }
        }
    }
}

impl KeptConnection<'_> {
    /// The connection, unless a statement on it failed with the connection.
    pub(crate) fn connection(&mut self) -> Option<&mut PgConnection> {
        if self.broken {
            return None;
        }
        self.connection.as_mut()
    }

    /// Notes the outcome of a statement sent on [`Self::connection`]: an error that did not
    /// come from the server, or with which the server ended the session, leaves the
    /// connection unusable.
    pub(crate) fn observe<T>(&mut self, outcome: &Result<T, sqlx::Error>) {
        if let Err(error) = outcome
            && ends_connection(error)
        {
            self.broken = true;
        }
    }

    /// Whether a statement failed with the connection (the caller writes again on the pool).
    pub(crate) fn is_broken(&self) -> bool {
        self.broken
    }

    /// Ends the use: a healthy connection goes back for the next taker, a broken one is
    /// closed.
    pub(crate) fn give_back(mut self) {
        if self.broken {
            return; // Drop closes it.
        }
        let mut state = self.kept.state();
        if state.closed {
            drop(state);
            return; // Drop closes it.
        }
        if let Some(connection) = self.connection.take() {
            state.idle.push(Idle {
                connection,
                opened: self.opened,
                since: Instant::now(),
            });
            self.returned = true;
        }
    }
}

impl Drop for KeptConnection<'_> {
    fn drop(&mut self) {
        if !self.returned {
            let mut state = self.kept.state();
            state.open = state.open.saturating_sub(1);
        }
        // A connection still held is dropped here: its socket is closed (the server ends the
        // session; a statement cut off mid-way was either committed or not, as with any
        // connection lost).
    }
}

/// Whether the connection `error` came on is unusable: it did not come from the server (the
/// connection was lost, a protocol error; not a missing row or an argument that did not
/// encode), or the server ended the session with it (`FATAL`,
/// as when it shuts down: `57P01 terminating connection due to administrator command`; class
/// `08`, connection exceptions).
fn ends_connection(error: &sqlx::Error) -> bool {
    let error = match error {
        sqlx::Error::Database(error) => error,
        // After a complete exchange (no row where one was expected), or before any (an
        // argument that did not encode): the connection is as good as before.
        sqlx::Error::RowNotFound | sqlx::Error::Encode(_) => return false,
        // Anything else may have left the exchange half-way: close, and open another.
        _ => return true,
    };
    let fatal = error
        .try_downcast_ref::<PgDatabaseError>()
        .is_some_and(|error| matches!(error.severity(), PgSeverity::Fatal | PgSeverity::Panic));
    fatal
        || error
            .code()
            .is_some_and(|code| code.starts_with("08") || code.starts_with("57P"))
}

#[cfg(test)]
mod tests {
    use super::ends_connection;

    #[test]
    fn a_lost_connection_ends_it_a_missing_row_does_not() {
        let reset = std::io::Error::new(std::io::ErrorKind::ConnectionReset, "reset by peer");
        assert!(ends_connection(&sqlx::Error::Io(reset)));
        assert!(ends_connection(&sqlx::Error::Protocol(
            "unexpected message".into()
        )));
        assert!(ends_connection(&sqlx::Error::WorkerCrashed));
        assert!(!ends_connection(&sqlx::Error::RowNotFound));
        assert!(!ends_connection(&sqlx::Error::Encode(
            "not encodable".into()
        )));
    }
}
