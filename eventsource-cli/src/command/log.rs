//! `log`: the global log in commit order, filtered, and `--follow` to tail it.
//!
//! Reads go through the store's gap-safe `read_all` from a checkpoint, never `position > n`:
//! an event whose transaction commits late (with a lower position than events already shown)
//! is still shown, once.

use std::io::{IsTerminal, Write};
use std::time::Duration;

use eventsource_core::{Checkpoint, EventStore, LogFilter, Position, RecordedEvent};
use eventsource_postgres::PostgresAdmin;

use crate::Outcome;
use crate::cli::LogArgs;
use crate::error::CliError;
use crate::output::{self, EventView, Output};
use crate::progress::Progress;

/// Events read per query.
const PAGE: usize = 1_000;
/// How soon `--follow` looks again while events are held back behind an open transaction.
const HELD_BACK_POLL: Duration = Duration::from_millis(250);

/// Prints the log.
pub(crate) async fn run(
    admin: &PostgresAdmin,
    args: &LogArgs,
    out: &mut Output<'_>,
) -> Result<Outcome, CliError> {
    let store = admin.store();
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
    // In log order, events of later transactions may have lower positions: `wanted` drops
    // those.
    let from = Position(args.from_position.unwrap_or(0));
    let mut reader = Reader {
        checkpoint: admin.checkpoint_from_position(from).await?,
        filter,
        remaining: args.limit.unwrap_or(u64::MAX),
        printer: Printer::new(out.json && !args.follow, out.json, out)?,
    };

    // Catch up, with a progress bar when the output goes to a file or pipe.
    let head = store.head_position().await?;
    let progress = Progress::new(head.0, "reading the log", !std::io::stdout().is_terminal());
    let done = reader.read(admin, args, &progress, head).await?;
    progress.finish();
    if done {
        reader.printer.end()?;
        return Ok(Outcome::Success);
    }
    if !args.follow {
        reader.printer.end()?;
        let waiting = admin.count_after(reader.checkpoint, &reader.filter).await?;
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
    let no_progress = Progress::new(0, "", false);
    loop {
        reader.printer.flush()?;
        // Events held back behind an open transaction were notified already: look again soon.
        let pause = if admin.count_after(reader.checkpoint, &reader.filter).await? > 0 {
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
        if reader.read(admin, args, &no_progress, head).await? {
            reader.printer.end()?;
            return Ok(Outcome::Success);
        }
    }
}

/// Where the log is read from, and what is printed.
struct Reader<'o> {
    checkpoint: Checkpoint,
    filter: LogFilter,
    /// Events still to print before `--limit` is reached.
    remaining: u64,
    printer: Printer<'o>,
}

impl Reader<'_> {
    /// Prints the events readable now, page by page; `true` once `--limit` is reached.
    async fn read(
        &mut self,
        admin: &PostgresAdmin,
        args: &LogArgs,
        progress: &Progress,
        head: Position,
    ) -> Result<bool, CliError> {
        loop {
            let mut page = admin
                .store()
                .read_all(self.checkpoint, PAGE, &self.filter)
                .await?;
            crate::personal::mark_sealed(admin.store(), &mut page).await?;
            for event in &page {
                self.checkpoint = event.checkpoint;
                if wanted(args, event) {
                    self.printer.event(event)?;
                    self.remaining -= 1;
                    if self.remaining == 0 {
                        return Ok(true);
                    }
                }
            }
            progress.set(self.checkpoint.position().0.min(head.0));
            if page.len() < PAGE {
                return Ok(false);
            }
        }
    }
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
                "{:>6}  {}  {}  v{}  {} (schema v{})  {}{}",
                event.position.0,
                output::time(event.recorded_at),
                event.stream_id,
                event.version,
                event.name,
                event.schema_version,
                output::compact(&event.payload),
                output::idempotency_key(event)
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
