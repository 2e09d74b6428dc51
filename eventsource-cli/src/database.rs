//! Connecting to the store and checking that its schema is one this CLI can read.

use std::str::FromStr;
use std::time::Duration;

use eventsource_postgres::sqlx::postgres::{PgConnectOptions, PgConnection};
use eventsource_postgres::sqlx::{self, AssertSqlSafe, Connection};
use eventsource_postgres::{PostgresStore, SCHEMA_VERSION, SchemaName};

use crate::cli::Cli;
use crate::error::CliError;

/// The tables every command relies on, in the order they are reported missing.
const TABLES: [&str; 5] = [
    "schema_migrations",
    "events",
    "streams",
    "checkpoints",
    "snapshots",
];

/// Connects with a small pool: the CLI runs one query at a time (plus a listener).
pub(crate) async fn connect(cli: &Cli) -> Result<PostgresStore, CliError> {
    let url = cli
        .database_url
        .as_deref()
        .filter(|url| !url.trim().is_empty())
        .ok_or(CliError::NoDatabaseUrl)?;
    let options =
        PgConnectOptions::from_str(url).map_err(|source| CliError::InvalidUrl { source })?;
    let (host, port) = (options.get_host().to_owned(), options.get_port());
    let timeout = Duration::from_secs(cli.connect_timeout.max(1));
    // One plain connection first: a pool reports an unreachable server only as a timeout,
    // this says why (connection refused, unknown database, authentication failed...).
    match tokio::time::timeout(timeout, PgConnection::connect_with(&options)).await {
        Ok(Ok(connection)) => {
            // Closing politely is a courtesy; the server copes with a dropped socket.
            let _ = connection.close().await;
        }
        Ok(Err(source)) => return Err(CliError::Connect { host, port, source }),
        Err(_) => {
            return Err(CliError::ConnectTimeout {
                host,
                port,
                seconds: timeout.as_secs(),
            });
        }
    }
    let store = PostgresStore::builder()
        .schema(cli.schema.as_str())
        .max_connections(3)
        .acquire_timeout(timeout)
        .connect(url)
        .await?;
    Ok(store)
}

/// What the schema holds.
#[derive(Debug)]
pub(crate) struct SchemaState {
    /// Whether the schema exists at all.
    pub(crate) exists: bool,
    /// The first expected table that is missing.
    pub(crate) missing_table: Option<&'static str>,
    /// The newest migration recorded, if the bookkeeping table exists (0 if it is empty).
    pub(crate) version: Option<i64>,
}

impl SchemaState {
    /// Fails unless the schema and every table exist.
    pub(crate) fn require_tables(&self, schema: &str) -> Result<(), CliError> {
        let schema = schema.to_owned();
        if !self.exists {
            return Err(CliError::NoSchema { schema });
        }
        match self.missing_table {
            Some(missing) => Err(CliError::NotMigrated { schema, missing }),
            None => Ok(()),
        }
    }
}

/// Looks at the schema without assuming anything about it.
pub(crate) async fn probe(store: &PostgresStore) -> Result<SchemaState, CliError> {
    let schema = store.schema();
    let exists: bool = sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_namespace WHERE nspname = $1)",
    )
    .bind(schema.as_str())
    .fetch_one(store.pool())
    .await
    .map_err(CliError::database(format!("looking for schema `{schema}`")))?;
    if !exists {
        return Ok(SchemaState {
            exists,
            missing_table: Some(TABLES[0]),
            version: None,
        });
    }
    let present: Vec<String> = sqlx::query_scalar(
        "SELECT tablename::text FROM pg_catalog.pg_tables WHERE schemaname = $1",
    )
    .bind(schema.as_str())
    .fetch_all(store.pool())
    .await
    .map_err(CliError::database(format!(
        "listing the tables of schema `{schema}`"
    )))?;
    let missing_table = TABLES
        .into_iter()
        .find(|table| !present.iter().any(|p| p == table));
    let version = if present.iter().any(|p| p == "schema_migrations") {
        let version: Option<i64> = sqlx::query_scalar(AssertSqlSafe(format!(
            "SELECT max(version) FROM {}.schema_migrations",
            quoted(schema)
        )))
        .fetch_one(store.pool())
        .await
        .map_err(CliError::database(format!(
            "reading the schema version of `{schema}`"
        )))?;
        Some(version.unwrap_or(0))
    } else {
        None
    };
    Ok(SchemaState {
        exists,
        missing_table,
        version,
    })
}

/// Fails unless the schema is migrated to exactly the version this CLI knows.
pub(crate) async fn require_current(store: &PostgresStore) -> Result<i64, CliError> {
    let state = probe(store).await?;
    let schema = store.schema().to_string();
    state.require_tables(&schema)?;
    match state.version {
        Some(found) if found > SCHEMA_VERSION => Err(CliError::SchemaTooNew {
            schema,
            found,
            supported: SCHEMA_VERSION,
        }),
        Some(found) if found < SCHEMA_VERSION => Err(CliError::Outdated {
            schema,
            found,
            expected: SCHEMA_VERSION,
        }),
        Some(found) => Ok(found),
        None => Err(CliError::NotMigrated {
            schema,
            missing: "schema_migrations",
        }),
    }
}

/// The schema as a quoted SQL identifier. Safe: `SchemaName` admits only `[a-z0-9_]`.
pub(crate) fn quoted(schema: &SchemaName) -> String {
    format!("\"{}\"", schema.as_str())
}
