//! `projection list`, `reset`, `parked`, `retry` and `discard`: the checkpoints projections
//! keep in the store, and the events they parked.

use std::io::{self, BufRead, IsTerminal, Write};

use eventsource_core::{ParkedEvent, ParkedSelection, Position};
use eventsource_postgres::{PostgresAdmin, ProjectionCheckpoint};
use serde::Serialize;
use serde_json::json;

use crate::Outcome;
use crate::cli::{DiscardArgs, ParkedActionArgs, ParkedArgs, ResetArgs};
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
    /// Events it reads (its registered names and categories) committed after its
    /// checkpoint; all of them while a reset is pending. Exact up to
    /// `eventsource_postgres::EXACT_COUNT_LIMIT`, that limit beyond.
    pub(crate) behind: u64,
    /// Whether `behind` is only a lower bound (a backlog beyond the exact-count limit).
    pub(crate) behind_is_lower_bound: bool,
    /// When a reset was requested, while it is pending (the projection not rebuilt yet).
    pub(crate) reset_requested_at: Option<String>,
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
            behind_is_lower_bound: checkpoint.behind_is_lower_bound,
            reset_requested_at: checkpoint.reset_requested_at.map(output::time),
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
                if row.behind_is_lower_bound {
                    format!("{}+", row.behind)
                } else {
                    row.behind.to_string()
                },
                row.updated_at.clone(),
                match &row.reset_requested_at {
                    Some(at) => format!("pending since {at}"),
                    None => "-".to_owned(),
                },
            ]
        })
        .collect();
    output::table(
        out,
        &[
            "PROJECTION",
            "CHECKPOINT",
            "POSITION",
            "BEHIND",
            "UPDATED",
            "RESET",
        ],
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

/// `projection reset NAME`: after confirmation, asks for the projection to be rebuilt.
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
    let requested = admin.request_reset(&args.name).await?;
    if out.json {
        output::json(
            out,
            &json!({
                "projection": args.name,
                "reset": requested.is_some(),
                "previous_checkpoint": row.checkpoint,
            }),
        )?;
    } else {
        writeln!(
            out,
            "reset requested for projection `{}` (at checkpoint {}, position {}): its next runner \
             start rebuilds it from the start of the log, clearing the read model with the \
             projection's reset hook in the same transaction as the checkpoint, or refuses to \
             run until it is rebuilt; events are never applied again on top of the old rows",
            args.name, row.checkpoint, row.position
        )?;
    }
    Ok(Outcome::Success)
}

/// A parked event as the output shows it.
#[derive(Debug, Serialize)]
struct ParkedView {
    projection: String,
    position: u64,
    stream: String,
    version: u64,
    name: String,
    event_id: String,
    attempts: u32,
    parked_at: String,
    retry_requested: bool,
    error: String,
}

impl ParkedView {
    fn new(parked: &ParkedEvent) -> Self {
        ParkedView {
            projection: parked.projection.clone(),
            position: parked.record.position.0,
            stream: parked.record.stream_id.to_string(),
            version: parked.record.version.0,
            name: parked.record.name.clone(),
            event_id: parked.record.event_id.to_string(),
            attempts: parked.attempts,
            parked_at: output::time(parked.parked_at),
            retry_requested: parked.retry_requested,
            error: parked.error.clone(),
        }
    }
}

/// At most `max` characters of `text` on one line, for a table cell.
fn cell(text: &str, max: usize) -> String {
    let line = text.split_whitespace().collect::<Vec<_>>().join(" ");
    match line.char_indices().nth(max) {
        Some((end, _)) => format!("{}…", &line[..end]),
        None => line,
    }
}

/// `projection parked [NAME]`.
pub(crate) async fn parked(
    admin: &PostgresAdmin,
    args: &ParkedArgs,
    out: &mut Output<'_>,
) -> Result<Outcome, CliError> {
    let parked = admin.parked(args.name.as_deref()).await?;
    let rows: Vec<ParkedView> = parked.iter().map(ParkedView::new).collect();
    if out.json {
        output::json(out, &json!({ "parked": rows }))?;
        return Ok(Outcome::Success);
    }
    if rows.is_empty() {
        writeln!(out, "no parked events")?;
        return Ok(Outcome::Success);
    }
    let cells: Vec<Vec<String>> = rows
        .iter()
        .map(|row| {
            vec![
                row.projection.clone(),
                row.position.to_string(),
                format!("{} v{}", row.stream, row.version),
                row.name.clone(),
                row.attempts.to_string(),
                row.parked_at.clone(),
                if row.retry_requested {
                    "requested"
                } else {
                    "-"
                }
                .to_owned(),
                cell(&row.error, 100),
            ]
        })
        .collect();
    output::table(
        out,
        &[
            "PROJECTION",
            "POSITION",
            "EVENT",
            "NAME",
            "ATTEMPTS",
            "PARKED",
            "RETRY",
            "ERROR",
        ],
        &cells,
    )?;
    Ok(Outcome::Success)
}

fn selection(args: &ParkedActionArgs) -> ParkedSelection {
    match args.position {
        Some(position) if !args.all => ParkedSelection::At(Position(position)),
        _ => ParkedSelection::All,
    }
}

/// Fails when a position was named and nothing was done to it.
fn require_parked(
    admin: &PostgresAdmin,
    args: &ParkedActionArgs,
    count: u64,
) -> Result<(), CliError> {
    match args.position {
        Some(position) if count == 0 && !args.all => Err(CliError::NotParked {
            name: args.name.clone(),
            position,
            schema: admin.store().schema().to_string(),
        }),
        _ => Ok(()),
    }
}

/// `projection retry NAME (--position N | --all)`.
pub(crate) async fn retry(
    admin: &PostgresAdmin,
    args: &ParkedActionArgs,
    out: &mut Output<'_>,
) -> Result<Outcome, CliError> {
    let marked = admin.retry_parked(&args.name, selection(args)).await?;
    require_parked(admin, args, marked)?;
    if out.json {
        output::json(out, &json!({ "projection": args.name, "marked": marked }))?;
    } else {
        writeln!(
            out,
            "marked {marked} parked event(s) of projection `{}` for retry: its runner applies them at its next catch-up and parks again any that still fail",
            args.name
        )?;
    }
    Ok(Outcome::Success)
}

/// `projection discard NAME (--position N | --all)`: after confirmation.
pub(crate) async fn discard(
    admin: &PostgresAdmin,
    args: &DiscardArgs,
    out: &mut Output<'_>,
) -> Result<Outcome, CliError> {
    let which = &args.which;
    if !args.yes {
        let what = match which.position {
            Some(position) if !which.all => format!("the parked event at position {position}"),
            _ => "every parked event".to_owned(),
        };
        ask(
            &format!(
                "Discard {what} of projection `{}`? It will never be applied. [y/N] ",
                which.name
            ),
            || CliError::DiscardNotConfirmed {
                name: which.name.clone(),
            },
            || CliError::DiscardDeclined {
                name: which.name.clone(),
            },
        )?;
    }
    let deleted = admin.discard_parked(&which.name, selection(which)).await?;
    require_parked(admin, which, deleted)?;
    if out.json {
        output::json(
            out,
            &json!({ "projection": which.name, "discarded": deleted }),
        )?;
    } else {
        writeln!(
            out,
            "discarded {deleted} parked event(s) of projection `{}`",
            which.name
        )?;
    }
    Ok(Outcome::Success)
}

/// Asks `question` on the terminal: `no_terminal` when there is none, `declined` for no.
pub(crate) fn ask(
    question: &str,
    no_terminal: impl FnOnce() -> CliError,
    declined: impl FnOnce() -> CliError,
) -> Result<(), CliError> {
    if !io::stdin().is_terminal() {
        return Err(no_terminal());
    }
    let mut stderr = io::stderr();
    write!(stderr, "{question}")?;
    stderr.flush()?;
    let mut answer = String::new();
    io::stdin().lock().read_line(&mut answer)?;
    match answer.trim().to_ascii_lowercase().as_str() {
        "y" | "yes" => Ok(()),
        _ => Err(declined()),
    }
}

/// Asks on the terminal whether to reset; refuses when there is none.
fn confirm(name: &str, checkpoint: &str, position: u64) -> Result<(), CliError> {
    ask(
        &format!(
            "Reset projection `{name}` (at checkpoint {checkpoint}, position {position})? \
             Its runner will clear the read model and re-apply every event to it. [y/N] "
        ),
        || CliError::NotConfirmed {
            name: name.to_owned(),
        },
        || CliError::Declined {
            name: name.to_owned(),
        },
    )
}
