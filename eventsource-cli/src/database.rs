//! Connecting to the store.

use std::time::Duration;

use eventsource_postgres::PostgresStore;

use crate::cli::Cli;
use crate::error::CliError;

/// Connects with a small pool: the CLI runs one query at a time (plus a listener). The adapter
/// says why a connection fails, or that the server did not answer in time.
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
