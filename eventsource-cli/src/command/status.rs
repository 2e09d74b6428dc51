//! `status`: how big the store is, where its head is, and where each projection is.

use std::io::Write;

use chrono::{DateTime, Utc};
use eventsource_core::EventStore;
use eventsource_postgres::PostgresStore;
use eventsource_postgres::sqlx::{self, AssertSqlSafe, Row};
use serde_json::json;

use crate::Outcome;
use crate::command::projection;
use crate::database::{self, quoted};
use crate::error::CliError;
use crate::output;

/// Prints the counts, head position, horizon lag and the projections' checkpoints.
pub(crate) async fn run(
    store: &PostgresStore,
    json: bool,
    out: &mut dyn Write,
) -> Result<Outcome, CliError> {
    let schema_version = database::require_current(store).await?;
    let s = quoted(store.schema());
    let row = sqlx::query(AssertSqlSafe(format!(
        "SELECT (SELECT count(*) FROM {s}.events) AS events, \
                (SELECT count(*) FROM {s}.streams) AS streams, \
                (SELECT max(recorded_at) FROM {s}.events) AS last_recorded_at"
    )))
    .fetch_one(store.pool())
    .await
    .map_err(CliError::database("counting events and streams"))?;
    let read = |e: sqlx::Error| CliError::Corrupt(format!("the counts of the store: {e}"));
    let events: i64 = row.try_get("events").map_err(read)?;
    let streams: i64 = row.try_get("streams").map_err(read)?;
    let last: Option<DateTime<Utc>> = row.try_get("last_recorded_at").map_err(read)?;
    let head = store.head_position().await?;
    let lag = store.horizon_lag().await?;
    let projections = projection::checkpoints(store).await?;

    if json {
        output::json(
            out,
            &json!({
                "schema": store.schema().as_str(),
                "schema_version": schema_version,
                "events": events,
                "streams": streams,
                "head_position": head.0,
                "last_recorded_at": last.map(output::time),
                "horizon_lag_seconds": lag.as_secs_f64(),
                "projections": projections,
            }),
        )?;
        return Ok(Outcome::Success);
    }
    let rows = [
        (
            "schema",
            format!("{} (schema version {schema_version})", store.schema()),
        ),
        ("events", events.to_string()),
        ("streams", streams.to_string()),
        ("head position", head.0.to_string()),
        (
            "last event at",
            last.map_or_else(|| "-".to_owned(), output::time),
        ),
        ("horizon lag", format!("{:.3} s", lag.as_secs_f64())),
    ];
    for (label, value) in rows {
        writeln!(out, "{label:<15}{value}")?;
    }
    writeln!(out)?;
    projection::print_table(out, &projections)?;
    Ok(Outcome::Success)
}
