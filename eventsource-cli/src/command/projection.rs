//! `projection list` and `projection reset`: the checkpoints projections keep in the store.

use std::io::{self, BufRead, IsTerminal, Write};

use eventsource_postgres::{PostgresAdmin, ProjectionCheckpoint};
use serde::Serialize;
use serde_json::json;

use crate::Outcome;
use crate::cli::ResetArgs;
use crate::error::CliError;
use crate::output::{self, Output};

/// A projection's checkpoint and how far it is behind, as the output shows it.
#[derive(Debug, Serialize)]
pub(crate) struct CheckpointView {
    /// The projection's name.
    pub(crate) name: String,
    /// The resume token `transaction:position`.
    pub(crate) checkpoint: String,
    /// The global position of the last event it applied.
    pub(crate) position: u64,
    /// Events in the log after its checkpoint (committed, in log order).
    pub(crate) behind: u64,
    /// When the checkpoint last moved.
    pub(crate) updated_at: String,
}

impl CheckpointView {
    /// The view of `checkpoint`.
    pub(crate) fn new(checkpoint: &ProjectionCheckpoint) -> Self {
        CheckpointView {
            name: checkpoint.projection.clone(),
            checkpoint: checkpoint.checkpoint.to_string(),
            position: checkpoint.checkpoint.position().0,
            behind: checkpoint.behind,
            updated_at: output::time(checkpoint.updated_at),
        }
    }
}

/// Every checkpoint, by name.
async fn checkpoints(admin: &PostgresAdmin) -> Result<Vec<CheckpointView>, CliError> {
    let checkpoints = admin.checkpoints().await?;
    Ok(checkpoints.iter().map(CheckpointView::new).collect())
}

/// Prints the checkpoints as a table (or a line saying there are none).
pub(crate) fn print_table(out: &mut dyn Write, rows: &[CheckpointView]) -> io::Result<()> {
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
pub(crate) async fn list(admin: &PostgresAdmin, out: &mut Output<'_>) -> Result<Outcome, CliError> {
    let rows = checkpoints(admin).await?;
    if out.json {
        output::json(out, &json!({ "projections": rows }))?;
    } else {
        print_table(out, &rows)?;
    }
    Ok(Outcome::Success)
}

/// `projection reset NAME`: deletes the checkpoint after confirmation.
pub(crate) async fn reset(
    admin: &PostgresAdmin,
    args: &ResetArgs,
    out: &mut Output<'_>,
) -> Result<Outcome, CliError> {
    let rows = checkpoints(admin).await?;
    let schema = admin.store().schema().to_string();
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
    let deleted = admin.reset_checkpoint(&args.name).await?;
    if out.json {
        output::json(
            out,
            &json!({
                "projection": args.name,
                "reset": deleted.is_some(),
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
fn confirm(name: &str, checkpoint: &str, position: u64) -> Result<(), CliError> {
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
