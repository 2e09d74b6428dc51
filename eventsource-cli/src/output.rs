//! Shared output: times, tables, JSON documents and the JSON shape of an event.

use std::io::{self, Write};

use chrono::{DateTime, SecondsFormat, Utc};
use eventsource_core::RecordedEvent;
use serde::Serialize;
use serde_json::Value;

use crate::error::CliError;

/// Where a command writes, and whether as JSON (`--json`).
pub(crate) struct Output<'o> {
    writer: &'o mut dyn Write,
    /// Print JSON for scripts.
    pub(crate) json: bool,
}

impl<'o> Output<'o> {
    /// Writes to `writer`, as JSON if `json`.
    pub(crate) fn new(writer: &'o mut dyn Write, json: bool) -> Self {
        Output { writer, json }
    }
}

impl Write for Output<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.writer.write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.writer.flush()
    }
}

/// An instant as people and scripts read it: RFC 3339, UTC, microseconds (as PostgreSQL stores them, so a time shown can be passed back exactly).
pub(crate) fn time(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Micros, true)
}

/// A left-aligned table with a header row, columns two spaces apart.
pub(crate) fn table(out: &mut dyn Write, headers: &[&str], rows: &[Vec<String>]) -> io::Result<()> {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let line = |out: &mut dyn Write, cells: &mut dyn Iterator<Item = &str>| -> io::Result<()> {
        let mut text = String::new();
        for (i, (cell, width)) in cells.zip(&widths).enumerate() {
            if i > 0 {
                text.push_str("  ");
            }
            text.push_str(cell);
            text.extend(std::iter::repeat_n(
                ' ',
                width.saturating_sub(cell.chars().count()),
            ));
        }
        writeln!(out, "{}", text.trim_end())
    };
    line(out, &mut headers.iter().copied())?;
    for row in rows {
        line(out, &mut row.iter().map(String::as_str))?;
    }
    Ok(())
}

/// One pretty-printed JSON document.
pub(crate) fn json(out: &mut dyn Write, value: &impl Serialize) -> Result<(), CliError> {
    serde_json::to_writer_pretty(&mut *out, value).map_err(json_error)?;
    writeln!(out)?;
    Ok(())
}

/// A serialization failure: an I/O error stays one (a closed pipe ends quietly).
pub(crate) fn json_error(error: serde_json::Error) -> CliError {
    match error.io_error_kind() {
        Some(kind) => CliError::Output(io::Error::new(kind, error)),
        None => CliError::Json(error),
    }
}

/// An event as the JSON output shows it.
#[derive(Debug, Serialize)]
pub(crate) struct EventView<'a> {
    position: u64,
    /// The resume token: `transaction:position`.
    checkpoint: String,
    stream: &'a str,
    version: u64,
    event_id: String,
    name: &'a str,
    schema_version: u32,
    recorded_at: String,
    metadata: Value,
    payload: &'a Value,
}

impl<'a> EventView<'a> {
    /// The view of `event`.
    pub(crate) fn new(event: &'a RecordedEvent) -> Self {
        EventView {
            position: event.position.0,
            checkpoint: event.checkpoint.to_string(),
            stream: event.stream_id.as_str(),
            version: event.version.0,
            event_id: event.event_id.to_string(),
            name: &event.name,
            schema_version: event.schema_version,
            recorded_at: time(event.recorded_at),
            metadata: metadata(event),
            payload: &event.payload,
        }
    }
}

/// The event's metadata as stored (an object; `{}` when empty).
pub(crate) fn metadata(event: &RecordedEvent) -> Value {
    serde_json::to_value(&event.metadata).unwrap_or(Value::Null)
}

/// The idempotency key of the command that wrote `event`, for text output: `  key <key>`
/// (an excerpt, control characters escaped), or nothing.
pub(crate) fn idempotency_key(event: &RecordedEvent) -> String {
    match &event.metadata.idempotency_key {
        Some(key) => format!("  key {}", eventsource_core::limits::excerpt(key)),
        None => String::new(),
    }
}

/// `value` on one line.
pub(crate) fn compact(value: &Value) -> String {
    value.to_string()
}

/// `value` pretty-printed, every line indented by `indent` spaces.
pub(crate) fn pretty(value: &Value, indent: usize) -> String {
    let text = serde_json::to_string_pretty(value).unwrap_or_else(|_| value.to_string());
    let pad = " ".repeat(indent);
    text.lines()
        .map(|line| format!("{pad}{line}"))
        .collect::<Vec<_>>()
        .join("\n")
}

#[cfg(test)]
mod tests {
    use super::{pretty, table};
    use serde_json::json;

    #[test]
    fn tables_align_columns() {
        let mut out = Vec::new();
        table(
            &mut out,
            &["A", "LONGER"],
            &[
                vec!["wide cell".into(), "x".into()],
                vec!["y".into(), "z".into()],
            ],
        )
        .unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "A          LONGER\nwide cell  x\ny          z\n"
        );
    }

    #[test]
    fn pretty_indents_every_line() {
        assert_eq!(pretty(&json!({"a": 1}), 2), "  {\n    \"a\": 1\n  }");
    }
}
