//! `log`: the global log in commit order, filtered, and `--follow` to tail it.
//!
//! Reads go through the store's gap-safe `read_all` from a checkpoint, never `position > n`:
//! an event whose transaction commits late (with a lower position than events already shown)
//! is still shown, once.

use std::io::{IsTerminal, Write};
use std::time::Duration;

use eventsource_core::{Checkpoint, EventStore, LogFilter, RecordedEvent};
use eventsource_postgres::PostgresStore;
use eventsource_postgres::sqlx::{self, AssertSqlSafe};

use crate::Outcome;
use crate::cli::LogArgs;
use crate::database::{self, quoted};
use crate::error::CliError;
use crate::output::{self, EventView};
use crate::progress::Progress;

/// Events read per query.
const PAGE: usize = 1_000;
/// How soon `--follow` looks again while events are held back behind an open transaction.
const HELD_BACK_POLL: Duration = Duration::from_millis(250);

/// Prints the log.
pub(crate) async fn run(
    store: &PostgresStore,
    args: &LogArgs,
    json: bool,
    out: &mut dyn Write,
) -> Result<Outcome, CliError> {
    database::require_current(store).await?;
    let mut filter = LogFilter::all();
    for category in &args.category {
        filter = filter.category(category.clone());
    }
    for name in &args.name {
        filter = filter.name(name.clone());
    }
    // Listen before catching up, so that nothing appended in between waits for a poll.
    let mut listener = if args.follow {
        store.listen().await.ok()
    } else {
        None
    };
    let mut checkpoint = start(store, args.from_position).await?;
    let mut printer = Printer::new(json && !args.follow, json, out)?;
    let mut remaining = args.limit.unwrap_or(u64::MAX);

    // Catch up, with a progress bar when the output goes to a file or pipe.
    let head = store.head_position().await?;
    let progress = Progress::new(head.0, "reading the log", !std::io::stdout().is_terminal());
    loop {
        let page = store.read_all(checkpoint, PAGE, &filter).await?;
        let full = page.len() == PAGE;
        for event in &page {
            checkpoint = event.checkpoint;
            if wanted(args, event) {
                printer.event(event)?;
                remaining -= 1;
                if remaining == 0 {
                    progress.finish();
                    printer.end()?;
                    return Ok(Outcome::Success);
                }
            }
        }
        progress.set(checkpoint.position().0.min(head.0));
        if !full {
            break;
        }
    }
    progress.finish();
    if !args.follow {
        printer.end()?;
        let waiting = held_back(store, checkpoint, &filter).await?;
        if waiting > 0 {
            let lag = store.horizon_lag().await?;
            let _ = writeln!(
                std::io::stderr(),
                "eventsource: note: {waiting} more committed events are not shown yet: a transaction open for {:.1} s holds the log's horizon back; they appear when it ends (run again, or use --follow)",
                lag.as_secs_f64()
            );
        }
        return Ok(Outcome::Success);
    }

    // Live: wake on NOTIFY, poll as a fallback (a listener that drops loses notifications).
    let poll = Duration::from_millis(args.poll_interval);
    loop {
        printer.flush()?;
        // Events held back behind an open transaction were notified already: look again soon.
        let pause = if held_back(store, checkpoint, &filter).await? > 0 {
            poll.min(HELD_BACK_POLL)
        } else {
            poll
        };
        match listener.as_mut() {
            Some(l) => {
                tokio::select! {
                    received = l.recv() => if received.is_err() { listener = None },
                    () = tokio::time::sleep(pause) => {}
                }
            }
            None => tokio::time::sleep(pause).await,
        }
        loop {
            let page = store.read_all(checkpoint, PAGE, &filter).await?;
            let full = page.len() == PAGE;
            for event in &page {
                checkpoint = event.checkpoint;
                if wanted(args, event) {
                    printer.event(event)?;
                    remaining -= 1;
                    if remaining == 0 {
                        printer.end()?;
                        return Ok(Outcome::Success);
                    }
                }
            }
            if !full {
                break;
            }
        }
    }
}

/// The checkpoint to read after: the start of the log, or just before the oldest transaction
/// that wrote, or may still write, an event at or after `from_position`. In log order, events
/// of later transactions may have lower positions: `wanted` drops those.
async fn start(store: &PostgresStore, from_position: Option<u64>) -> Result<Checkpoint, CliError> {
    let Some(from) = from_position.filter(|p| *p > 1) else {
        return Ok(Checkpoint::START);
    };
    let from = i64::try_from(from).unwrap_or(i64::MAX);
    // One statement, one snapshot: the oldest transaction with a visible event at or after
    // `from`, and the snapshot's horizon: every older transaction has ended, so its events are
    // visible; a younger one may still commit an event at or after `from`.
    let (oldest, horizon): (Option<String>, String) = sqlx::query_as(AssertSqlSafe(format!(
        "SELECT (SELECT transaction_id::text FROM {}.events WHERE position >= $1 \
                  ORDER BY transaction_id LIMIT 1), \
                pg_snapshot_xmin(pg_current_snapshot())::text",
        quoted(store.schema())
    )))
    .bind(from)
    .fetch_one(store.pool())
    .await
    .map_err(CliError::database(format!(
        "finding the events at or after position {from}"
    )))?;
    let parse = |tx: &str| {
        tx.parse::<u64>()
            .map_err(|_| CliError::Corrupt(format!("transaction id `{tx}` is not a number")))
    };
    let mut transaction = parse(&horizon)?;
    if let Some(oldest) = oldest {
        transaction = transaction.min(parse(&oldest)?);
    }
    // Positions start at 1: (transaction, 0) is before every event of that transaction.
    Ok(Checkpoint::from_parts(transaction, 0))
}

/// How many committed events matching `filter` lie after `checkpoint` but were not returned
/// by `read_all`: held back behind an older transaction that is still open.
async fn held_back(
    store: &PostgresStore,
    checkpoint: Checkpoint,
    filter: &LogFilter,
) -> Result<i64, CliError> {
    sqlx::query_scalar(AssertSqlSafe(format!(
        "SELECT count(*) FROM {}.events \
          WHERE (transaction_id, position) > ($1::text::xid8, $2) \
            AND (cardinality($3::text[]) = 0 OR category = ANY($3)) \
            AND (cardinality($4::text[]) = 0 OR name = ANY($4))",
        quoted(store.schema())
    )))
    .bind(checkpoint.transaction().to_string())
    .bind(i64::try_from(checkpoint.position().0).unwrap_or(i64::MAX))
    .bind(filter.categories.as_slice())
    .bind(filter.names.as_slice())
    .fetch_one(store.pool())
    .await
    .map_err(CliError::database(
        "counting the events after the last one shown",
    ))
}

/// The filters `read_all` does not apply itself.
fn wanted(args: &LogArgs, event: &RecordedEvent) -> bool {
    args.from_position.is_none_or(|p| event.position.0 >= p)
        && args.since.is_none_or(|t| event.recorded_at >= t)
        && args.until.is_none_or(|t| event.recorded_at <= t)
}

/// Writes events as lines, one JSON document, or JSON lines.
struct Printer<'o> {
    out: &'o mut dyn Write,
    /// One JSON document (`{"events": [...]}`), written as the events come.
    document: bool,
    /// JSON lines.
    lines: bool,
    printed: u64,
}

impl<'o> Printer<'o> {
    fn new(document: bool, json: bool, out: &'o mut dyn Write) -> Result<Self, CliError> {
        if document {
            write!(out, "{{\"events\": [")?;
        }
        Ok(Printer {
            out,
            document,
            lines: json && !document,
            printed: 0,
        })
    }

    fn event(&mut self, event: &RecordedEvent) -> Result<(), CliError> {
        if self.document {
            if self.printed > 0 {
                write!(self.out, ",")?;
            }
            writeln!(self.out)?;
            serde_json::to_writer(&mut *self.out, &EventView::new(event))
                .map_err(output::json_error)?;
        } else if self.lines {
            serde_json::to_writer(&mut *self.out, &EventView::new(event))
                .map_err(output::json_error)?;
            writeln!(self.out)?;
            self.out.flush()?;
        } else {
            writeln!(
                self.out,
                "{:>6}  {}  {}  v{}  {} (schema v{})  {}",
                event.position.0,
                output::time(event.recorded_at),
                event.stream_id,
                event.version,
                event.name,
                event.schema_version,
                output::compact(&event.payload)
            )?;
        }
        self.printed += 1;
        Ok(())
    }

    fn flush(&mut self) -> Result<(), CliError> {
        self.out.flush()?;
        Ok(())
    }

    fn end(&mut self) -> Result<(), CliError> {
        if self.document {
            if self.printed > 0 {
                writeln!(self.out)?;
            }
            writeln!(self.out, "], \"count\": {}}}", self.printed)?;
        }
        self.flush()
    }
}
