//! `migrate`: create the schema or apply the migrations it lacks.

use std::io::Write;

use eventsource_postgres::PostgresAdmin;
use serde_json::json;

use crate::Outcome;
use crate::error::CliError;
use crate::output::{self, Output};

/// Migrates and says from which schema version to which.
pub(crate) async fn run(admin: &PostgresAdmin, out: &mut Output<'_>) -> Result<Outcome, CliError> {
    let migrated = admin.migrate().await?;
    let (before, after) = (migrated.from_version, migrated.to_version);
    let schema = admin.store().schema().as_str();
    if out.json {
        let mut document = json!({
            "schema": schema,
            "from_version": before,
            "schema_version": after,
            "applied": after - before,
        });
        // Only when they happened (a restored store): the usual document stays as it was.
        if let Some(r) = migrated.rebased {
            document["rebased"] = json!({
                "newest_event": r.newest_event,
                "from_offset": r.from_offset,
                "to_offset": r.to_offset,
            });
        }
        if migrated.analyzed {
            document["analyzed"] = json!(true);
        }
        output::json(out, &document)?;
        return Ok(Outcome::Success);
    }
    if before == after {
        writeln!(
            out,
            "schema `{schema}` is up to date (schema version {after})"
        )?;
    } else {
        writeln!(
            out,
            "migrated schema `{schema}` from schema version {before} to {after}"
        )?;
    }
    if let Some(rebased) = migrated.rebased {
        writeln!(
            out,
            "the store was restored or moved from another cluster: re-based its transaction order (offset {} -> {}; new events sort after transaction {}, checkpoints unchanged)",
            rebased.from_offset, rebased.to_offset, rebased.newest_event
        )?;
    }
    if migrated.analyzed {
        writeln!(
            out,
            "the tables had no planner statistics (a restored store?): analyzed them"
        )?;
    }
    Ok(Outcome::Success)
}
