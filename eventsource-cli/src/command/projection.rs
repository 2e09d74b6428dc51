//! `projection list` and `projection reset`: the checkpoints projections keep in the store.

use std::io::{self, BufRead, IsTerminal, Write};

use chrono::{DateTime, Utc};
use eventsource_postgres::PostgresStore;
use eventsource_postgres::sqlx::{self, AssertSqlSafe, Row};
use serde::Serialize;
use serde_json::json;

use crate::Outcome;
use crate::cli::ResetArgs;
use crate::database::{self, quoted};
use crate::error::CliError;
use crate::output;

/// A projection's checkpoint and how far it is behind.
#[derive(Debug, Serialize)]
pub(crate) struct CheckpointRow {
    /// The projection's name.
    pub(crate) name: String,
    /// The resume token `transaction:position`.
    pub(crate) checkpoint: String,
    /// The global position of the last event it applied.
    pub(crate) position: i64,
    /// Events in the log after its checkpoint (committed, in log order).
    pub(crate) behind: i64,
    /// When the checkpoint last moved.
    pub(crate) updated_at: String,
}

/// Every checkpoint, by name.
pub(crate) async fn checkpoints(store: &PostgresStore) -> Result<Vec<CheckpointRow>, CliError> {
    let s = quoted(store.schema());
    let rows = sqlx::query(AssertSqlSafe(format!(
        "SELECT c.projection, c.transaction_id, c.position, c.updated_at, \
                (SELECT count(*) FROM {s}.events e \
                  WHERE (e.transaction_id, e.position) > (c.transaction_id::text::xid8, c.position)) AS behind \
           FROM {s}.checkpoints c ORDER BY c.projection"
    )))
    .fetch_all(store.pool())
    .await
    .map_err(CliError::database("reading the projection checkpoints"))?;
    rows.iter()
        .map(|row| {
            let get = |e: sqlx::Error| CliError::Corrupt(format!("a checkpoint row: {e}"));
            let transaction: i64 = row.try_get("transaction_id").map_err(get)?;
            let position: i64 = row.try_get("position").map_err(get)?;
            let updated_at: DateTime<Utc> = row.try_get("updated_at").map_err(get)?;
            Ok(CheckpointRow {
                name: row.try_get("projection").map_err(get)?,
                checkpoint: format!("{transaction}:{position}"),
                position,
                behind: row.try_get("behind").map_err(get)?,
                updated_at: output::time(updated_at),
            })
        })
        .collect()
}

/// Prints the checkpoints as a table (or a line saying there are none).
pub(crate) fn print_table(out: &mut dyn Write, rows: &[CheckpointRow]) -> io::Result<()> {
    if rows.is_empty() {
        return writeln!(out, "no projection checkpoints");
    }
    let cells: Vec<Vec<String>> = rows
        .iter()
        .map(|row| {
            vec![
                row.name.clone(),
                row.checkpoint.clone(),
                row.position.to_string(),
                row.behind.to_string(),
                row.updated_at.clone(),
            ]
        })
        .collect();
    output::table(
        out,
        &["PROJECTION", "CHECKPOINT", "POSITION", "BEHIND", "UPDATED"],
        &cells,
    )
}

/// `projection list`.
pub(crate) async fn list(
    store: &PostgresStore,
    json: bool,
    out: &mut dyn Write,
) -> Result<Outcome, CliError> {
    database::require_current(store).await?;
    let rows = checkpoints(store).await?;
    if json {
        output::json(out, &json!({ "projections": rows }))?;
    } else {
        print_table(out, &rows)?;
    }
    Ok(Outcome::Success)
}

/// `projection reset NAME`: deletes the checkpoint after confirmation.
pub(crate) async fn reset(
    store: &PostgresStore,
    args: &ResetArgs,
    json: bool,
    out: &mut dyn Write,
) -> Result<Outcome, CliError> {
    database::require_current(store).await?;
    let rows = checkpoints(store).await?;
    let schema = store.schema().to_string();
    let Some(row) = rows.iter().find(|row| row.name == args.name) else {
        let known = if rows.is_empty() {
            "no projection has one".to_owned()
        } else {
            let names: Vec<String> = rows.iter().map(|r| format!("`{}`", r.name)).collect();
            format!("known: {}", names.join(", "))
        };
        return Err(CliError::UnknownProjection {
            name: args.name.clone(),
            schema,
            known,
        });
    };
    if !args.yes {
        confirm(&row.name, &row.checkpoint, row.position)?;
    }
    let deleted = sqlx::query(AssertSqlSafe(format!(
        "DELETE FROM {}.checkpoints WHERE projection = $1",
        quoted(store.schema())
    )))
    .bind(&args.name)
    .execute(store.pool())
    .await
    .map_err(CliError::database(format!(
        "deleting the checkpoint of projection `{}`",
        args.name
    )))?
    .rows_affected();
    if json {
        output::json(
            out,
            &json!({
                "projection": args.name,
                "reset": deleted > 0,
                "previous_checkpoint": row.checkpoint,
            }),
        )?;
    } else {
        writeln!(
            out,
            "reset projection `{}` (was at checkpoint {}, position {}): the application rebuilds it from the start of the log",
            args.name, row.checkpoint, row.position
        )?;
    }
    Ok(Outcome::Success)
}

/// Asks on the terminal; refuses when there is none.
fn confirm(name: &str, checkpoint: &str, position: i64) -> Result<(), CliError> {
    if !io::stdin().is_terminal() {
        return Err(CliError::NotConfirmed {
            name: name.to_owned(),
        });
    }
    let mut stderr = io::stderr();
    write!(
        stderr,
        "Reset projection `{name}` (at checkpoint {checkpoint}, position {position})? \
         The application will re-apply every event to it. [y/N] "
    )?;
    stderr.flush()?;
    let mut answer = String::new();
    io::stdin().lock().read_line(&mut answer)?;
    match answer.trim().to_ascii_lowercase().as_str() {
        "y" | "yes" => Ok(()),
        _ => Err(CliError::Declined {
            name: name.to_owned(),
        }),
    }
}
