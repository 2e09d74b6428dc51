//! Connecting to the store and checking that its schema is one this CLI can read.

use std::time::Duration;

use eventsource_postgres::sqlx::{self, AssertSqlSafe};
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
    let store = PostgresStore::builder()
        .schema(cli.schema.as_str())
        .max_connections(3)
        .acquire_timeout(Duration::from_secs(cli.connect_timeout.max(1)))
        .connect(url)
        .await?;
    Ok(store)
}

/// What the schema holds.
#[derive(Debug)]
pub(crate) struct SchemaState {
    /// The first expected table that is missing.
    pub(crate) missing_table: Option<&'static str>,
    /// The newest migration recorded, if the bookkeeping table exists (0 if it is empty).
    pub(crate) version: Option<i64>,
}

/// Looks at the schema without assuming anything about it.
pub(crate) async fn probe(store: &PostgresStore) -> Result<SchemaState, CliError> {
    let schema = store.schema();
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
        missing_table,
        version,
    })
}

/// Fails unless the schema is migrated to exactly the version this CLI knows.
pub(crate) async fn require_current(store: &PostgresStore) -> Result<i64, CliError> {
    let state = probe(store).await?;
    let schema = store.schema().to_string();
    if let Some(missing) = state.missing_table {
        return Err(CliError::NotMigrated { schema, missing });
    }
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
