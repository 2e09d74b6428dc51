//! `verify`: integrity checks of a store, each finding located by stream, version, position.
//!
//! Checks: the schema version is one this CLI knows; the immutability triggers exist and are
//! enabled; each stream's versions run 1, 2, 3... without gaps or repeats and its head row in
//! `streams` equals its last version; every head has events; positions and event ids are
//! unique; metadata is an object the store can decode; names and schema versions are sane;
//! no checkpoint is past the head of the log. A payload that is not a JSON object is a warning:
//! unit and newtype events serialize to `null` or a scalar, anything else is suspicious.

use std::fmt;
use std::io::Write;

use eventsource_core::Metadata;
use eventsource_postgres::sqlx::{self, AssertSqlSafe, Row};
use eventsource_postgres::{PostgresStore, SCHEMA_VERSION};
use serde::Serialize;
use serde_json::Value;

use crate::Outcome;
use crate::cli::VerifyArgs;
use crate::database::{self, quoted};
use crate::error::CliError;
use crate::output;
use crate::progress::Progress;

/// Rows scanned per query.
const PAGE: i64 = 2_000;
/// Findings kept for the report; the rest are counted.
const MAX_FINDINGS: usize = 1_000;
/// The triggers that keep events immutable.
const TRIGGERS: [&str; 2] = ["events_immutable", "events_no_truncate"];

/// How bad a finding is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
enum Severity {
    /// The store breaks an invariant: exit status 1.
    Problem,
    /// Legal but suspicious; a problem with `--strict`.
    Warning,
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Severity::Problem => "problem",
            Severity::Warning => "warning",
        })
    }
}

/// One thing found wrong, and where.
#[derive(Debug, Serialize)]
struct Finding {
    severity: Severity,
    check: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    stream: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    version: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    position: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    projection: Option<String>,
    message: String,
}

impl Finding {
    fn new(severity: Severity, check: &'static str, message: impl Into<String>) -> Self {
        Finding {
            severity,
            check,
            stream: None,
            version: None,
            position: None,
            projection: None,
            message: message.into(),
        }
    }

    fn problem(check: &'static str, message: impl Into<String>) -> Self {
        Finding::new(Severity::Problem, check, message)
    }

    fn at(mut self, stream: &str, version: Option<i64>, position: Option<i64>) -> Self {
        self.stream = Some(stream.to_owned());
        self.version = version;
        self.position = position;
        self
    }
}

/// The findings, capped, with counts.
#[derive(Default)]
struct Report {
    findings: Vec<Finding>,
    problems: u64,
    warnings: u64,
    strict: bool,
}

impl Report {
    fn add(&mut self, mut finding: Finding) {
        if self.strict {
            finding.severity = Severity::Problem;
        }
        match finding.severity {
            Severity::Problem => self.problems += 1,
            Severity::Warning => self.warnings += 1,
        }
        if self.findings.len() < MAX_FINDINGS {
            self.findings.push(finding);
        }
    }
}

/// Runs every check and reports; `Outcome::Problems` if any problem was found.
pub(crate) async fn run(
    store: &PostgresStore,
    args: &VerifyArgs,
    json: bool,
    out: &mut dyn Write,
) -> Result<Outcome, CliError> {
    let schema = store.schema().to_string();
    let state = database::probe(store).await?;
    state.require_tables(&schema)?;
    let mut report = Report {
        strict: args.strict,
        ..Report::default()
    };
    let schema_version = state.version.unwrap_or(0);
    if schema_version > SCHEMA_VERSION {
        report.add(Finding::problem(
            "schema-version",
            format!(
                "schema version {schema_version} is newer than this CLI knows ({SCHEMA_VERSION}): install a newer `eventsource`"
            ),
        ));
    } else if schema_version < SCHEMA_VERSION {
        report.add(Finding::problem(
            "schema-version",
            format!(
                "schema version {schema_version} is older than {SCHEMA_VERSION}: run `eventsource migrate`"
            ),
        ));
    }
    check_triggers(store, &mut report).await?;
    let (events, streams) = scan_streams(store, &mut report).await?;
    check_heads_without_events(store, &mut report).await?;
    check_unique(store, &mut report).await?;
    let checkpoints = check_checkpoints(store, &mut report).await?;

    let outcome = if report.problems > 0 {
        Outcome::Problems
    } else {
        Outcome::Success
    };
    if json {
        output::json(
            out,
            &serde_json::json!({
                "schema": schema,
                "schema_version": schema_version,
                "events": events,
                "streams": streams,
                "checkpoints": checkpoints,
                "ok": report.problems == 0,
                "problems": report.problems,
                "warnings": report.warnings,
                "findings": report.findings,
                "findings_truncated": report.findings.len() as u64 != report.problems + report.warnings,
            }),
        )?;
        return Ok(outcome);
    }
    writeln!(
        out,
        "verified schema `{schema}` (schema version {schema_version}): {events} events in {streams} streams, {checkpoints} projection {}",
        plural(checkpoints.unsigned_abs(), "checkpoint")
    )?;
    if report.problems == 0 && report.warnings == 0 {
        writeln!(out, "no problems found")?;
        return Ok(outcome);
    }
    writeln!(
        out,
        "{} {}, {} {}",
        report.problems,
        plural(report.problems, "problem"),
        report.warnings,
        plural(report.warnings, "warning")
    )?;
    writeln!(out)?;
    let cell = |v: &Option<i64>| v.map_or_else(|| "-".to_owned(), |v| v.to_string());
    let rows: Vec<Vec<String>> = report
        .findings
        .iter()
        .map(|f| {
            let place = match (&f.stream, &f.projection) {
                (Some(stream), _) => stream.clone(),
                (None, Some(projection)) => format!("projection {projection}"),
                (None, None) => "-".to_owned(),
            };
            vec![
                f.severity.to_string(),
                f.check.to_owned(),
                place,
                cell(&f.version),
                cell(&f.position),
                f.message.clone(),
            ]
        })
        .collect();
    output::table(
        out,
        &[
            "SEVERITY", "CHECK", "STREAM", "VERSION", "POSITION", "MESSAGE",
        ],
        &rows,
    )?;
    let shown = report.findings.len() as u64;
    if shown < report.problems + report.warnings {
        writeln!(
            out,
            "... and {} more (use --json for the first {MAX_FINDINGS})",
            report.problems + report.warnings - shown
        )?;
    }
    Ok(outcome)
}

fn plural(n: u64, word: &str) -> String {
    if n == 1 {
        word.to_owned()
    } else {
        format!("{word}s")
    }
}

fn query_failed(what: &str) -> impl FnOnce(sqlx::Error) -> CliError {
    CliError::database(format!("verify: {what}"))
}

fn column(what: &str) -> impl Fn(sqlx::Error) -> CliError {
    let what = what.to_owned();
    move |e| CliError::Corrupt(format!("verify: reading {what}: {e}"))
}

/// The immutability triggers exist and fire (enabled `O`rigin or `A`lways).
async fn check_triggers(store: &PostgresStore, report: &mut Report) -> Result<(), CliError> {
    let rows = sqlx::query(
        "SELECT t.tgname::text AS name, t.tgenabled::text AS enabled \
           FROM pg_catalog.pg_trigger t \
           JOIN pg_catalog.pg_class c ON c.oid = t.tgrelid \
           JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace \
          WHERE n.nspname = $1 AND c.relname = 'events' AND NOT t.tgisinternal",
    )
    .bind(store.schema().as_str())
    .fetch_all(store.pool())
    .await
    .map_err(query_failed("listing the triggers of `events`"))?;
    let read = column("a trigger");
    let mut found = Vec::new();
    for row in &rows {
        let name: String = row.try_get("name").map_err(&read)?;
        let enabled: String = row.try_get("enabled").map_err(&read)?;
        found.push((name, enabled));
    }
    for trigger in TRIGGERS {
        match found.iter().find(|(name, _)| name == trigger) {
            None => report.add(Finding::problem(
                "immutability",
                format!(
                    "trigger `{trigger}` on `events` is missing: events can be changed or removed"
                ),
            )),
            Some((_, enabled)) if enabled != "O" && enabled != "A" => {
                let state = if enabled == "D" {
                    "disabled"
                } else {
                    "enabled for replicas only"
                };
                report.add(Finding::problem(
                    "immutability",
                    format!(
                        "trigger `{trigger}` on `events` is {state}: run `ALTER TABLE {}.events ENABLE TRIGGER {trigger}`",
                        store.schema()
                    ),
                ));
            }
            Some(_) => {}
        }
    }
    Ok(())
}

/// The stream being scanned.
struct OpenStream {
    id: String,
    last_version: i64,
    last_position: i64,
    head: Option<i64>,
}

impl OpenStream {
    /// The head row must exist and equal the last version.
    fn close(self, report: &mut Report) {
        match self.head {
            None => report.add(
                Finding::problem(
                    "stream-head",
                    format!(
                        "no row in `streams` for this stream, whose last event is version {}",
                        self.last_version
                    ),
                )
                .at(&self.id, Some(self.last_version), Some(self.last_position)),
            ),
            Some(head) if head != self.last_version => report.add(
                Finding::problem(
                    "stream-head",
                    format!(
                        "`streams` says version {head}, but the last event is version {}",
                        self.last_version
                    ),
                )
                .at(&self.id, Some(self.last_version), Some(self.last_position)),
            ),
            Some(_) => {}
        }
    }
}

/// Every event in (stream, version) order: versions, heads, metadata, payloads, names.
/// Returns the counts of events and streams seen.
async fn scan_streams(store: &PostgresStore, report: &mut Report) -> Result<(i64, i64), CliError> {
    let s = quoted(store.schema());
    let total: i64 = sqlx::query_scalar(AssertSqlSafe(format!("SELECT count(*) FROM {s}.events")))
        .fetch_one(store.pool())
        .await
        .map_err(query_failed("counting events"))?;
    let progress = Progress::new(u64::try_from(total).unwrap_or(0), "verifying events", true);
    let page_sql = format!(
        "SELECT e.stream_id, e.version, e.position, e.name, e.schema_version, \
                jsonb_typeof(e.payload) AS payload_type, e.metadata, h.version AS head \
           FROM {s}.events e LEFT JOIN {s}.streams h ON h.stream_id = e.stream_id \
          WHERE (e.stream_id, e.version) > ($1, $2) \
          ORDER BY e.stream_id, e.version LIMIT $3"
    );
    let (mut events, mut streams) = (0i64, 0i64);
    let mut cursor = (String::new(), i64::MIN);
    let mut open: Option<OpenStream> = None;
    loop {
        let rows = sqlx::query(AssertSqlSafe(page_sql.clone()))
            .bind(&cursor.0)
            .bind(cursor.1)
            .bind(PAGE)
            .fetch_all(store.pool())
            .await
            .map_err(query_failed("scanning the events"))?;
        let read = column("an event row");
        for row in &rows {
            let stream: String = row.try_get("stream_id").map_err(&read)?;
            let version: i64 = row.try_get("version").map_err(&read)?;
            let position: i64 = row.try_get("position").map_err(&read)?;
            let name: String = row.try_get("name").map_err(&read)?;
            let schema_version: i64 = row.try_get("schema_version").map_err(&read)?;
            let payload_type: String = row.try_get("payload_type").map_err(&read)?;
            let metadata: Value = row.try_get("metadata").map_err(&read)?;
            let head: Option<i64> = row.try_get("head").map_err(&read)?;
            events += 1;
            let at = |finding: Finding| finding.at(&stream, Some(version), Some(position));

            let previous = match open.take() {
                Some(current) if current.id == stream => current.last_version,
                other => {
                    if let Some(done) = other {
                        done.close(report);
                    }
                    streams += 1;
                    0
                }
            };
            if version == previous {
                report.add(at(Finding::problem(
                    "stream-versions",
                    format!("version {version} is stored more than once"),
                )));
            } else if version != previous + 1 {
                let missing = if version == previous + 2 {
                    format!("version {} is missing", previous + 1)
                } else {
                    format!("versions {} to {} are missing", previous + 1, version - 1)
                };
                report.add(at(Finding::problem(
                    "stream-versions",
                    format!("{missing} (gap before version {version})"),
                )));
            }
            open = Some(OpenStream {
                id: stream.clone(),
                last_version: version,
                last_position: position,
                head,
            });

            if name.trim().is_empty() {
                report.add(at(Finding::problem(
                    "event-name",
                    "the event name is empty",
                )));
            }
            if schema_version < 1 || schema_version > i64::from(u32::MAX) {
                report.add(at(Finding::problem(
                    "schema-version",
                    format!(
                        "event `{name}` has schema version {schema_version}, outside 1..=4294967295"
                    ),
                )));
            }
            if payload_type != "object" {
                report.add(at(Finding::new(
                    Severity::Warning,
                    "payload",
                    format!("the payload of `{name}` is a JSON {payload_type}, not an object"),
                )));
            }
            if !metadata.is_object() {
                report.add(at(Finding::problem(
                    "metadata",
                    format!(
                        "the metadata of `{name}` is {}, not a JSON object",
                        kind(&metadata)
                    ),
                )));
            } else if let Err(e) = serde_json::from_value::<Metadata>(metadata) {
                report.add(at(Finding::problem(
                    "metadata",
                    format!("the metadata of `{name}` does not decode: {e}"),
                )));
            }
            cursor = (stream, version);
        }
        progress.advance(rows.len() as u64);
        if (rows.len() as i64) < PAGE {
            break;
        }
    }
    if let Some(done) = open {
        done.close(report);
    }
    progress.finish();
    Ok((events, streams))
}

fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// A head row in `streams` with no events behind it.
async fn check_heads_without_events(
    store: &PostgresStore,
    report: &mut Report,
) -> Result<(), CliError> {
    let s = quoted(store.schema());
    let rows: Vec<(String, i64)> = sqlx::query_as(AssertSqlSafe(format!(
        "SELECT h.stream_id, h.version FROM {s}.streams h \
          WHERE NOT EXISTS (SELECT 1 FROM {s}.events e WHERE e.stream_id = h.stream_id) \
          ORDER BY h.stream_id"
    )))
    .fetch_all(store.pool())
    .await
    .map_err(query_failed("looking for stream heads without events"))?;
    for (stream, version) in rows {
        report.add(
            Finding::problem(
                "stream-head",
                format!("`streams` says version {version}, but the stream has no events"),
            )
            .at(&stream, Some(version), None),
        );
    }
    Ok(())
}

/// Positions and event ids are unique (constraints guarantee it unless someone dropped them).
async fn check_unique(store: &PostgresStore, report: &mut Report) -> Result<(), CliError> {
    let s = quoted(store.schema());
    let positions: Vec<(i64, i64, String)> = sqlx::query_as(AssertSqlSafe(format!(
        "SELECT position, count(*), string_agg(stream_id || ' v' || version, ', ' ORDER BY stream_id, version) \
           FROM {s}.events GROUP BY position HAVING count(*) > 1 ORDER BY position"
    )))
    .fetch_all(store.pool())
    .await
    .map_err(query_failed("looking for repeated positions"))?;
    for (position, count, holders) in positions {
        let mut finding = Finding::problem(
            "positions",
            format!("position {position} is held by {count} events: {holders}"),
        );
        finding.position = Some(position);
        report.add(finding);
    }
    let ids: Vec<(String, i64, String)> = sqlx::query_as(AssertSqlSafe(format!(
        "SELECT event_id::text, count(*), string_agg(stream_id || ' v' || version, ', ' ORDER BY stream_id, version) \
           FROM {s}.events GROUP BY event_id HAVING count(*) > 1 ORDER BY event_id"
    )))
    .fetch_all(store.pool())
    .await
    .map_err(query_failed("looking for repeated event ids"))?;
    for (id, count, holders) in ids {
        report.add(Finding::problem(
            "event-ids",
            format!("event id {id} is stored {count} times: {holders}"),
        ));
    }
    Ok(())
}

/// No checkpoint points past the head of the log (e.g. after restoring an older backup).
async fn check_checkpoints(store: &PostgresStore, report: &mut Report) -> Result<i64, CliError> {
    let s = quoted(store.schema());
    let rows: Vec<(String, i64, i64)> = sqlx::query_as(AssertSqlSafe(format!(
        "SELECT c.projection, c.position, (SELECT coalesce(max(position), 0) FROM {s}.events) \
           FROM {s}.checkpoints c ORDER BY c.projection"
    )))
    .fetch_all(store.pool())
    .await
    .map_err(query_failed("reading the checkpoints"))?;
    let count = rows.len() as i64;
    for (projection, position, head) in rows {
        if position > head {
            let mut finding = Finding::problem(
                "checkpoints",
                format!(
                    "checkpoint at position {position} is past the head of the log ({head}): was the store restored from an older backup? `eventsource projection reset {projection}` rebuilds it"
                ),
            );
            finding.projection = Some(projection);
            finding.position = Some(position);
            report.add(finding);
        }
    }
    Ok(count)
}
