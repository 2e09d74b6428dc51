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
        output::json(
            out,
            &json!({
                "schema": schema,
                "from_version": before,
                "schema_version": after,
                "applied": after - before,
            }),
        )?;
    } else if before == after {
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
    Ok(Outcome::Success)
}
