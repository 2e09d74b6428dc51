//! `json-schema check`: stored payloads against the JSON Schemas an application exported.
//!
//! The CLI does not link the application's event types, so it cannot compute their schemas;
//! the application writes them (`eventsource::json_schema::write_json_schemas`, one file per
//! event version) and this command reads the files back and validates each payload against
//! the schema of its (name, schema version). Exit status 1 when a payload does not validate,
//! has no schema, or (with `--payloads`) a line is not an event.

use std::io::{BufRead, Read, Write};
use std::path::Path;

use eventsource_core::json_schema::{SchemaViolation, read_json_schemas, validate};
use eventsource_core::{Checkpoint, EventStore, LogFilter};
use eventsource_postgres::PostgresAdmin;
use serde::Serialize;
use serde_json::Value;

use crate::Outcome;
use crate::cli::SchemaCheckArgs;
use crate::error::CliError;
use crate::output::{self, Output};

/// Events read per query.
const PAGE: usize = 1_000;
/// Problems listed in the output; the count covers them all.
const SHOWN: usize = 1_000;

type Schemas = std::collections::BTreeMap<(String, u32), Value>;

/// Where a checked payload came from.
#[derive(Debug, Default, Serialize)]
struct Origin {
    #[serde(skip_serializing_if = "Option::is_none")]
    line: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    position: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    stream: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    version: Option<u64>,
}

impl Origin {
    fn describe(&self) -> String {
        let mut parts = Vec::new();
        if let Some(line) = self.line {
            parts.push(format!("line {line}"));
        }
        if let Some(position) = self.position {
            parts.push(format!("position {position}"));
        }
        if let Some(stream) = &self.stream {
            let stream = eventsource_core::limits::excerpt(stream);
            match self.version {
                Some(version) => parts.push(format!("{stream} v{version}")),
                None => parts.push(stream.into_owned()),
            }
        }
        parts.join(", ")
    }
}

/// A payload that failed.
#[derive(Debug, Serialize)]
struct Problem {
    #[serde(flatten)]
    origin: Origin,
    #[serde(skip_serializing_if = "Option::is_none")]
    name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    schema_version: Option<u32>,
    message: String,
}

/// The tally of one run.
#[derive(Default)]
struct Report {
    checked: u64,
    problems: Vec<Problem>,
    problem_count: u64,
}

impl Report {
    /// Checks one event's payload.
    fn check(
        &mut self,
        schemas: &Schemas,
        dir: &Path,
        origin: Origin,
        name: &str,
        version: u32,
        payload: &Value,
    ) {
        self.checked += 1;
        let message = match schemas.get(&(name.to_owned(), version)) {
            None => Some(format!(
                "no schema for `{}` v{version} (expected `{}`)",
                eventsource_core::limits::excerpt(name),
                dir.join(name)
                    .join(format!("v{version}.schema.json"))
                    .display()
            )),
            Some(schema) => match validate(schema, payload) {
                Ok(()) => None,
                Err(violation @ SchemaViolation::Invalid { .. }) => Some(violation.to_string()),
                Err(violation @ SchemaViolation::UnsupportedKeyword { .. }) => {
                    Some(format!("not checked: {violation}"))
                }
            },
        };
        if let Some(message) = message {
            self.problem(Problem {
                origin,
                name: Some(eventsource_core::limits::excerpt(name).into_owned()),
                schema_version: Some(version),
                message,
            });
        }
    }

    fn problem(&mut self, problem: Problem) {
        self.problem_count += 1;
        if self.problems.len() < SHOWN {
            self.problems.push(problem);
        }
    }

    fn print(
        self,
        schemas: &Schemas,
        dir: &Path,
        out: &mut Output<'_>,
    ) -> Result<Outcome, CliError> {
        let outcome = if self.problem_count > 0 {
            Outcome::Problems
        } else {
            Outcome::Success
        };
        if out.json {
            output::json(
                out,
                &serde_json::json!({
                    "dir": dir.display().to_string(),
                    "schemas": schemas.len(),
                    "checked": self.checked,
                    "problem_count": self.problem_count,
                    "problems": self.problems,
                }),
            )?;
            return Ok(outcome);
        }
        writeln!(
            out,
            "checked {} payloads against {} schemas in {}: {} problems",
            self.checked,
            schemas.len(),
            dir.display(),
            self.problem_count
        )?;
        for problem in &self.problems {
            let event = match (&problem.name, problem.schema_version) {
                (Some(name), Some(version)) => format!("{name} v{version}: "),
                _ => String::new(),
            };
            writeln!(
                out,
                "  {}: {event}{}",
                problem.origin.describe(),
                problem.message
            )?;
        }
        if self.problem_count > self.problems.len() as u64 {
            writeln!(
                out,
                "  ... and {} more",
                self.problem_count - self.problems.len() as u64
            )?;
        }
        Ok(outcome)
    }
}

/// Validates the payloads of a file (`-`: stdin).
pub(crate) fn check_file(
    args: &SchemaCheckArgs,
    file: &Path,
    out: &mut Output<'_>,
) -> Result<Outcome, CliError> {
    let schemas = read_json_schemas(&args.dir)?;
    let read_error = |source| CliError::Payloads {
        path: file.display().to_string(),
        source,
    };
    let mut text = String::new();
    if file == Path::new("-") {
        std::io::stdin()
            .lock()
            .read_to_string(&mut text)
            .map_err(read_error)?;
    } else {
        std::fs::File::open(file)
            .and_then(|mut f| f.read_to_string(&mut text))
            .map_err(read_error)?;
    }
    let mut report = Report::default();
    // One document with `events` (what `log --json` prints), or JSON lines.
    if let Ok(Value::Object(document)) = serde_json::from_str::<Value>(&text)
        && let Some(Value::Array(events)) = document.get("events")
    {
        for event in events {
            check_value(&mut report, &schemas, &args.dir, None, event);
        }
    } else {
        for (index, line) in text.as_bytes().lines().enumerate() {
            let line = line.map_err(read_error)?;
            let number = index as u64 + 1;
            if line.trim().is_empty() {
                continue;
            }
            match serde_json::from_str::<Value>(&line) {
                Ok(event) => check_value(&mut report, &schemas, &args.dir, Some(number), &event),
                Err(error) => report.problem(Problem {
                    origin: Origin {
                        line: Some(number),
                        ..Origin::default()
                    },
                    name: None,
                    schema_version: None,
                    message: format!("not JSON: {error}"),
                }),
            }
        }
    }
    report.print(&schemas, &args.dir, out)
}

/// Checks one event of a file: an object with `name`, `schema_version` and `payload`.
fn check_value(
    report: &mut Report,
    schemas: &Schemas,
    dir: &Path,
    line: Option<u64>,
    event: &Value,
) {
    let origin = Origin {
        line,
        position: event.get("position").and_then(Value::as_u64),
        stream: event
            .get("stream")
            .and_then(Value::as_str)
            .map(str::to_owned),
        version: event.get("version").and_then(Value::as_u64),
    };
    let name = event.get("name").and_then(Value::as_str);
    let version = event
        .get("schema_version")
        .and_then(Value::as_u64)
        .and_then(|v| u32::try_from(v).ok());
    let payload = event.get("payload");
    match (name, version, payload) {
        (Some(name), Some(version), Some(payload)) => {
            report.check(schemas, dir, origin, name, version, payload);
        }
        _ => {
            report.checked += 1;
            report.problem(Problem {
                origin,
                name: None,
                schema_version: None,
                message:
                    "not an event: expected an object with `name`, `schema_version` and `payload`"
                        .to_owned(),
            });
        }
    }
}

/// Validates the payloads of the store's global log (filtered), in log order.
pub(crate) async fn check_store(
    admin: &PostgresAdmin,
    args: &SchemaCheckArgs,
    out: &mut Output<'_>,
) -> Result<Outcome, CliError> {
    let schemas = read_json_schemas(&args.dir)?;
    let store = admin.store();
    let mut filter = LogFilter::all();
    for category in &args.category {
        filter = filter.category(category.clone());
    }
    for name in &args.name {
        filter = filter.name(name.clone());
    }
    let mut report = Report::default();
    let mut after = Checkpoint::START;
    loop {
        let page = store.read_all(after, PAGE, &filter).await?;
        let Some(last) = page.last() else { break };
        after = last.checkpoint;
        for event in &page {
            let origin = Origin {
                line: None,
                position: Some(event.position.0),
                stream: Some(event.stream_id.as_str().to_owned()),
                version: Some(event.version.0),
            };
            report.check(
                &schemas,
                &args.dir,
                origin,
                &event.name,
                event.schema_version,
                &event.payload,
            );
        }
    }
    report.print(&schemas, &args.dir, out)
}
