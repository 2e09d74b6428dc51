//! Why a command failed. Every variant prints as one line that says what to do about it.

use eventsource_core::StoreError;
use eventsource_postgres::PostgresError;

/// A command that could not do its job (as opposed to `verify` finding problems, which is a
/// result). Exits with status 2.
#[derive(Debug, thiserror::Error)]
pub(crate) enum CliError {
    /// Neither `--database-url` nor `DATABASE_URL` was given.
    #[error(
        "no database given: pass --database-url postgres://USER@HOST:PORT/DATABASE or set DATABASE_URL"
    )]
    NoDatabaseUrl,
    /// The adapter's error (connecting, the schema, the admin API), with what the operator can
    /// do about it.
    #[error("{source}{}", advice(.source))]
    Postgres {
        /// The adapter's error.
        #[from]
        source: PostgresError,
    },
    /// A read of the store failed; the store's error names the stream, version and position.
    #[error(transparent)]
    Store(#[from] StoreError),
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
    /// `projection discard` without `--yes` and without a terminal to ask on.
    #[error(
        "refusing to discard parked events of projection `{name}` without confirmation: pass --yes (no terminal to ask on)"
    )]
    DiscardNotConfirmed {
        /// The projection.
        name: String,
    },
    /// The operator answered no to discarding.
    #[error("parked events of projection `{name}` were not discarded")]
    DiscardDeclined {
        /// The projection.
        name: String,
    },
    /// `projection retry` or `discard` named an event that is not parked.
    #[error("projection `{name}` has no parked event at position {position} in schema `{schema}`")]
    NotParked {
        /// The projection.
        name: String,
        /// The position asked for.
        position: u64,
        /// The schema looked into.
        schema: String,
    },
    /// The operator answered no.
    #[error("projection `{name}` was not reset")]
    Declined {
        /// The projection.
        name: String,
    },
    /// `stream archive` or `stream delete` without `--yes` and without a terminal to ask on.
    #[error(
        "refusing to {action} stream `{stream}` without confirmation: pass --yes (no terminal to ask on)"
    )]
    RetireNotConfirmed {
        /// `archive` or `delete`.
        action: &'static str,
        /// The stream.
        stream: String,
    },
    /// The operator answered no to archiving or deleting.
    #[error("stream `{stream}` was not {done}")]
    RetireDeclined {
        /// `archived` or `deleted`.
        done: &'static str,
        /// The stream.
        stream: String,
    },
    /// The schema directory of `json-schema check` could not be read.
    #[error("{0}")]
    SchemaFiles(#[from] eventsource_core::json_schema::SchemaFileError),
    /// The `--payloads` file of `json-schema check` could not be read.
    #[error("reading the payloads `{path}`: {source}")]
    Payloads {
        /// The file (`-` for stdin).
        path: String,
        /// The error.
        source: std::io::Error,
    },
    /// `import` could not read its input.
    #[error("reading {input}: {source}")]
    ImportInput {
        /// The file (or standard input).
        input: String,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// `import` found a line it cannot read as an event; nothing was imported.
    #[error("{input}, line {line}: {problem}; nothing was imported")]
    BadLine {
        /// The file (or standard input).
        input: String,
        /// The line (1-based).
        line: u64,
        /// What is wrong with it.
        problem: String,
    },
    /// The store refused the import; nothing was imported.
    #[error("{input}{}: {source}; nothing was imported", .line.map(|l| format!(", line {l}")).unwrap_or_default())]
    Import {
        /// The file (or standard input).
        input: String,
        /// The line of the event refused, when the error is about one.
        line: Option<u64>,
        /// The store's error, naming stream and version.
        #[source]
        source: Box<eventsource_postgres::ImportError>,
    },
    /// The output could not be encoded as JSON.
    #[error("encoding the output as JSON: {0}")]
    Json(#[source] serde_json::Error),
    /// Writing the output failed (other than a closed pipe, which ends quietly).
    #[error("writing the output: {0}")]
    Output(#[from] std::io::Error),
}

/// What the operator can do about `error`, as the rest of its line.
fn advice(error: &PostgresError) -> String {
    match error {
        PostgresError::InvalidUrl { .. } => " (expected postgres://USER@HOST:PORT/DATABASE)".into(),
        PostgresError::ConnectTimeout { .. } => " (see --connect-timeout)".into(),
        PostgresError::SchemaMissing { schema } => format!(
            ": run `eventsource migrate --schema {schema}` to create the event store, or pass the --schema the application uses"
        ),
        PostgresError::NotMigrated { schema, .. }
        | PostgresError::SchemaOutdated { schema, .. } => {
            format!(
                ": run `eventsource migrate --schema {schema}` first, or pass the --schema the application uses"
            )
        }
        PostgresError::SchemaTooNew { .. } => {
            "; for this CLI: install a newer `eventsource`".into()
        }
        _ => String::new(),
    }
}
