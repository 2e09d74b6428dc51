//! `status`: how big the store is, where its head is, and where each projection is.

use std::io::Write;

use eventsource_postgres::PostgresAdmin;
use serde_json::json;

use crate::Outcome;
use crate::command::projection::{self, CheckpointView};
use crate::error::CliError;
use crate::output::{self, Output};

/// Prints the counts, head position, horizon lag and the projections' checkpoints.
pub(crate) async fn run(admin: &PostgresAdmin, out: &mut Output<'_>) -> Result<Outcome, CliError> {
    let status = admin.status().await?;
    let schema = admin.store().schema();
    let (counts, head, lag) = (status.counts, status.head_position, status.horizon_lag);
    let projections: Vec<CheckpointView> =
        status.checkpoints.iter().map(CheckpointView::new).collect();

    if out.json {
        output::json(
            out,
            &json!({
                "schema": schema.as_str(),
                "schema_version": status.schema_version,
                "events": counts.events,
                "streams": counts.streams,
                "counts_estimated": counts.estimated,
                "head_position": head.0,
                "last_recorded_at": counts.last_recorded_at.map(output::time),
                "horizon_lag_seconds": lag.as_secs_f64(),
                "projections": projections,
            }),
        )?;
        return Ok(Outcome::Success);
    }
    let rows = [
        (
            "schema",
            format!("{schema} (schema version {})", status.schema_version),
        ),
        ("events", approximate(counts.events, counts.estimated)),
        ("streams", approximate(counts.streams, counts.estimated)),
        ("head position", head.0.to_string()),
        (
            "last event at",
            counts
                .last_recorded_at
                .map_or_else(|| "-".to_owned(), output::time),
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

/// A count as shown: `~n (estimate)` when it is the planner's estimate of a big table.
fn approximate(count: u64, estimated: bool) -> String {
    if estimated {
        format!("~{count} (estimate)")
    } else {
        count.to_string()
    }
}
