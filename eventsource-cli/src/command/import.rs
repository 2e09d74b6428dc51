//! `import FILE|-`: a bulk import of JSON lines (one event per line) through
//! `PostgresStore::begin_import`: one transaction, all or nothing.
//!
//! A line is an object with `stream`, `version`, `name` and `payload`, and optionally
//! `event_id` (a UUID; a new v7 id when absent), `schema_version` (1 when absent) and
//! `metadata` (an object as `log --json` prints it; empty when absent). Other fields (the
//! `position`, `checkpoint` and `recorded_at` of `log --json`) are ignored. Blank lines are
//! skipped. The first bad line stops the import, which then writes nothing.

use std::fs::File;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::time::Instant;

use eventsource_core::{Metadata, NewEvent, StreamId, Version};
use eventsource_postgres::{ImportError, ImportEvent, Imported, PostgresStore};
use serde::Deserialize;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::Outcome;
use crate::cli::ImportArgs;
use crate::error::CliError;
use crate::output::{self, Output};
use crate::progress::Progress;

/// Room on a line beside the payload and metadata the store's limits allow.
const LINE_SLACK: usize = 64 << 10;

/// One input line.
#[derive(Debug, Deserialize)]
struct Line {
    stream: String,
    version: u64,
    name: String,
    payload: Value,
    #[serde(default)]
    event_id: Option<Uuid>,
    #[serde(default)]
    schema_version: Option<u32>,
    #[serde(default)]
    metadata: Option<Metadata>,
}

/// Where the lines come from, and how far into it the reader is.
struct Input {
    reader: Box<dyn BufRead>,
    /// The source as messages name it.
    name: String,
    /// Its size when it is a file.
    size: Option<u64>,
    bytes_read: u64,
    /// The number of the last line read (1-based).
    line: u64,
    buffer: Vec<u8>,
}

impl Input {
    fn open(path: &str) -> Result<Self, CliError> {
        let (reader, name, size): (Box<dyn BufRead>, String, Option<u64>) = if path == "-" {
            (
                Box::new(BufReader::with_capacity(1 << 20, io::stdin())),
                "standard input".to_owned(),
                None,
            )
        } else {
            let file = File::open(path).map_err(|source| CliError::ImportInput {
                input: path.to_owned(),
                source,
            })?;
            let size = file.metadata().ok().map(|m| m.len());
            (
                Box::new(BufReader::with_capacity(1 << 20, file)),
                format!("`{path}`"),
                size,
            )
        };
        Ok(Input {
            reader,
            name,
            size,
            bytes_read: 0,
            line: 0,
            buffer: Vec::with_capacity(4096),
        })
    }

    /// The next line without its line break, `None` at the end; a line longer than
    /// `max_bytes` is an error (read no further than that).
    fn next_line(&mut self, max_bytes: usize) -> Result<Option<&[u8]>, CliError> {
        self.buffer.clear();
        let limit = u64::try_from(max_bytes)
            .unwrap_or(u64::MAX)
            .saturating_add(1);
        let read = (&mut self.reader)
            .take(limit)
            .read_until(b'\n', &mut self.buffer)
            .map_err(|source| CliError::ImportInput {
                input: self.name.clone(),
                source,
            })?;
        if read == 0 {
            return Ok(None);
        }
        self.line += 1;
        self.bytes_read += read as u64;
        let mut line = self.buffer.as_slice();
        if let Some(rest) = line.strip_suffix(b"\n") {
            line = rest.strip_suffix(b"\r").unwrap_or(rest);
        } else if self.buffer.len() > max_bytes {
            return Err(self.bad(format!(
                "the line is longer than {max_bytes} bytes (the store's event size limit and some room)"
            )));
        }
        Ok(Some(line))
    }

    /// An error about the line last read.
    fn bad(&self, problem: String) -> CliError {
        CliError::BadLine {
            input: self.name.clone(),
            line: self.line,
            problem,
        }
    }
}

/// The event of one line.
fn parse(line: &[u8]) -> Result<ImportEvent, String> {
    let text = std::str::from_utf8(line)
        .map_err(|e| format!("not UTF-8 (invalid byte at column {})", e.valid_up_to() + 1))?;
    let line: Line = serde_json::from_str(text).map_err(|e| {
        // The input is one line: its column says where, not serde's "at line 1 column N".
        let message = e.to_string();
        let message = message
            .rfind(" at line ")
            .map_or(message.as_str(), |at| &message[..at]);
        format!("{} (column {})", bounded(message), e.column())
    })?;
    let mut event = NewEvent::new(line.name, line.schema_version.unwrap_or(1), line.payload);
    if let Some(id) = line.event_id {
        event.event_id = id;
    }
    if let Some(metadata) = line.metadata {
        event.metadata = metadata;
    }
    Ok(ImportEvent {
        stream: StreamId::from_raw(line.stream),
        version: Version(line.version),
        event,
    })
}

/// At most 200 characters of a message that may quote the input.
fn bounded(message: &str) -> String {
    match message.char_indices().nth(200) {
        Some((end, _)) => format!("{}...", &message[..end]),
        None => message.to_owned(),
    }
}

/// The line numbers of pushed events: events are numbered in push order, blank lines are not.
#[derive(Default)]
struct LineNumbers {
    /// For each blank line, how many events came before it.
    blanks: Vec<u64>,
}

impl LineNumbers {
    /// The line of the event pushed `index`th (0-based).
    fn of(&self, index: u64) -> u64 {
        let blanks_before = self.blanks.partition_point(|&events| events <= index) as u64;
        index + 1 + blanks_before
    }
}

/// Reads the input and imports it; prints what was written.
pub(crate) async fn run(
    store: &PostgresStore,
    args: &ImportArgs,
    out: &mut Output<'_>,
) -> Result<Outcome, CliError> {
    let started = Instant::now();
    let mut input = Input::open(&args.file)?;
    let max_line = store.limits().max_event_bytes().saturating_add(LINE_SLACK);
    let progress = match input.size {
        Some(size) => Progress::bytes(size, "importing", !out.json),
        None => Progress::counter("importing events", !out.json),
    };
    let mut lines = LineNumbers::default();
    let failed = |lines: &LineNumbers, input: &Input, error: ImportError| CliError::Import {
        input: input.name.clone(),
        line: line_of(&error).map(|index| lines.of(index)),
        source: Box::new(error),
    };
    let mut import = store
        .begin_import()
        .await
        .map_err(|e| failed(&lines, &input, e))?
        .batch_size(args.batch_size);
    loop {
        let Some(line) = input.next_line(max_line)? else {
            break;
        };
        if line.iter().all(u8::is_ascii_whitespace) {
            lines.blanks.push(import.pushed());
            continue;
        }
        let event = parse(line).map_err(|problem| input.bad(problem))?;
        import
            .push(event)
            .await
            .map_err(|e| failed(&lines, &input, e))?;
        if import.pushed() % 1024 == 0 {
            match input.size {
                Some(_) => progress.set(input.bytes_read),
                None => progress.set(import.pushed()),
            }
        }
    }
    let imported = import
        .finish()
        .await
        .map_err(|e| failed(&lines, &input, e))?;
    drop(progress);
    report(out, &imported, started.elapsed().as_secs_f64())?;
    Ok(Outcome::Success)
}

/// The place in the import of the event an error is about.
fn line_of(error: &ImportError) -> Option<u64> {
    match error {
        ImportError::Invalid { index, .. }
        | ImportError::Version { index, .. }
        | ImportError::Conflict { index, .. }
        | ImportError::DuplicateEventId { index, .. } => Some(*index),
        _ => None,
    }
}

fn report(out: &mut Output<'_>, imported: &Imported, seconds: f64) -> Result<(), CliError> {
    let (first, last) = imported
        .positions
        .map_or((None, None), |(f, l)| (Some(f.0), Some(l.0)));
    if out.json {
        return output::json(
            out,
            &json!({
                "events": imported.events,
                "streams": imported.streams,
                "first_position": first,
                "last_position": last,
                "seconds": seconds,
            }),
        );
    }
    let rate = if seconds > 0.0 {
        format!(", {:.0} events/s", imported.events as f64 / seconds)
    } else {
        String::new()
    };
    match (first, last) {
        (Some(first), Some(last)) => writeln!(
            out,
            "imported {} {} into {} {} (positions {first} to {last}) in {seconds:.1} s{rate}",
            imported.events,
            plural(imported.events, "event"),
            imported.streams,
            plural(imported.streams, "stream")
        )?,
        _ => writeln!(out, "nothing to import")?,
    }
    Ok(())
}

fn plural(n: u64, word: &str) -> String {
    if n == 1 {
        word.to_owned()
    } else {
        format!("{word}s")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_parse_with_defaults_and_bad_ones_say_why() {
        let event = parse(
            br#"{"stream":"account-a","version":2,"name":"n","payload":{"x":1},"position":9}"#,
        )
        .unwrap();
        assert_eq!(event.stream.as_str(), "account-a");
        assert_eq!(event.version, Version(2));
        assert_eq!(event.event.schema_version, 1);
        assert!(parse(b"\xff\xfe").unwrap_err().contains("UTF-8"));
        assert!(
            parse(br#"{"stream":1,"version":1,"name":"n","payload":{}}"#)
                .unwrap_err()
                .contains("invalid type")
        );
        assert!(parse(br#"{"stream":"a","version":-1,"name":"n","payload":{}}"#).is_err());
        assert!(parse(b"[").is_err());
        let long = format!(r#"{{"stream":{}}}"#, "1".repeat(10_000));
        assert!(parse(long.as_bytes()).unwrap_err().len() < 300);
    }

    #[test]
    fn line_numbers_count_blank_lines() {
        let lines = LineNumbers {
            blanks: vec![0, 2, 2],
        };
        // blank, e0, e1, blank, blank, e2
        assert_eq!(lines.of(0), 2);
        assert_eq!(lines.of(1), 3);
        assert_eq!(lines.of(2), 6);
    }
}
