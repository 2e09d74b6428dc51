//! Why a command failed. Every variant prints as one line that says what to do about it.

use eventsource_core::StoreError;
use eventsource_postgres::PostgresError;
use eventsource_postgres::sqlx;

/// A command that could not do its job (as opposed to `verify` finding problems, which is a
/// result). Exits with status 2.
#[derive(Debug, thiserror::Error)]
pub(crate) enum CliError {
    /// Neither `--database-url` nor `DATABASE_URL` was given.
    #[error(
        "no database given: pass --database-url postgres://USER@HOST:PORT/DATABASE or set DATABASE_URL"
    )]
    NoDatabaseUrl,
    /// The connection URL does not parse.
    #[error(
        "invalid PostgreSQL connection URL (expected postgres://USER@HOST:PORT/DATABASE): {source}"
    )]
    InvalidUrl {
        /// The driver's parse error.
        #[source]
        source: sqlx::Error,
    },
    /// The server refused or could not be reached.
    #[error("cannot connect to PostgreSQL at {host}:{port}: {source}")]
    Connect {
        /// The host (or socket directory) tried.
        host: String,
        /// The port tried.
        port: u16,
        /// The driver's error.
        #[source]
        source: sqlx::Error,
    },
    /// The server did not answer in time.
    #[error(
        "cannot connect to PostgreSQL at {host}:{port}: no answer within {seconds} s (see --connect-timeout)"
    )]
    ConnectTimeout {
        /// The host (or socket directory) tried.
        host: String,
        /// The port tried.
        port: u16,
        /// How long the CLI waited.
        seconds: u64,
    },
    /// Connecting, migrating or a bad URL, as the store reports it.
    #[error(transparent)]
    Postgres(#[from] PostgresError),
    /// The schema does not exist.
    #[error(
        "schema `{schema}` does not exist: run `eventsource migrate --schema {schema}` to create the event store, or pass the --schema the application uses"
    )]
    NoSchema {
        /// The schema looked for.
        schema: String,
    },
    /// The schema has no event store tables.
    #[error(
        "schema `{schema}` holds no event store (no `{missing}` table): run `eventsource migrate --schema {schema}` first, or pass the --schema the application uses"
    )]
    NotMigrated {
        /// The schema looked into.
        schema: String,
        /// The first table that is missing.
        missing: &'static str,
    },
    /// The schema lacks migrations this CLI expects.
    #[error(
        "schema `{schema}` is at schema version {found}, this eventsource expects {expected}: run `eventsource migrate --schema {schema}`"
    )]
    Outdated {
        /// The schema looked into.
        schema: String,
        /// The newest migration recorded.
        found: i64,
        /// The schema version this CLI was built for.
        expected: i64,
    },
    /// The schema was migrated by a newer release than this CLI.
    #[error(
        "schema `{schema}` is at schema version {found}, written by a newer eventsource; this CLI knows schema versions up to {supported}: install a newer `eventsource` CLI"
    )]
    SchemaTooNew {
        /// The schema looked into.
        schema: String,
        /// The newest migration recorded.
        found: i64,
        /// The newest schema version this CLI knows.
        supported: i64,
    },
    /// `stream <id>` named a stream without events.
    #[error("stream `{stream}` does not exist in schema `{schema}` (no events, no stream head)")]
    UnknownStream {
        /// The stream asked for.
        stream: String,
        /// The schema looked into.
        schema: String,
    },
    /// `projection reset` named a projection without a checkpoint.
    #[error("projection `{name}` has no checkpoint in schema `{schema}` ({known})")]
    UnknownProjection {
        /// The projection asked for.
        name: String,
        /// The schema looked into.
        schema: String,
        /// The projections that have one, as a phrase.
        known: String,
    },
    /// `projection reset` without `--yes` and without a terminal to ask on.
    #[error(
        "refusing to reset projection `{name}` without confirmation: pass --yes (no terminal to ask on)"
    )]
    NotConfirmed {
        /// The projection.
        name: String,
    },
    /// The operator answered no.
    #[error("projection `{name}` was not reset")]
    Declined {
        /// The projection.
        name: String,
    },
    /// A read of the store failed; the store's error names the stream, version and position.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A query of the CLI's own failed.
    #[error("{context}: {source}")]
    Database {
        /// What the CLI was doing.
        context: String,
        /// The database's error.
        #[source]
        source: sqlx::Error,
    },
    /// A stored value the CLI cannot show.
    #[error("{0}")]
    Corrupt(String),
    /// Writing the output failed (other than a closed pipe, which ends quietly).
    #[error("writing the output: {0}")]
    Output(#[from] std::io::Error),
}

impl CliError {
    /// A failure of the CLI's own query `context`, for `map_err`.
    pub(crate) fn database(context: impl Into<String>) -> impl FnOnce(sqlx::Error) -> CliError {
        let context = context.into();
        move |source| CliError::Database { context, source }
    }
}
