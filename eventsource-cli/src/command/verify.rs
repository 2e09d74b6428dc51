//! `verify`: the adapter's integrity checks (`PostgresAdmin::verify`), rendered. Exit status 1
//! when a problem is found; `--strict` counts warnings as problems.

use std::io::Write;

use eventsource_postgres::{Finding, PostgresAdmin, Severity, VerifyReport};
use serde::Serialize;

use crate::Outcome;
use crate::cli::VerifyArgs;
use crate::error::CliError;
use crate::output::{self, Output};
use crate::progress::Progress;

/// A finding as the output shows it.
#[derive(Debug, Serialize)]
struct FindingView<'a> {
    severity: &'static str,
    check: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    stream: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    version: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    position: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    projection: Option<&'a str>,
    message: &'a str,
}

impl<'a> FindingView<'a> {
    /// The view of `finding`; with `strict`, every finding is a problem.
    fn new(finding: &'a Finding, strict: bool) -> Self {
        let severity = if strict {
            Severity::Problem
        } else {
            finding.severity
        };
        FindingView {
            severity: severity.as_str(),
            check: finding.check.as_str(),
            stream: finding.stream.as_deref(),
            version: finding.version,
            position: finding.position,
            projection: finding.projection.as_deref(),
            message: &finding.message,
        }
    }
}

/// Runs every check and reports; `Outcome::Problems` if any problem was found.
pub(crate) async fn run(
    admin: &PostgresAdmin,
    args: &VerifyArgs,
    out: &mut Output<'_>,
) -> Result<Outcome, CliError> {
    let mut progress: Option<Progress> = None;
    let report = admin
        .verify_with_progress(|at| {
            progress
                .get_or_insert_with(|| Progress::new(at.total, "verifying events", true))
                .set(at.scanned);
        })
        .await?;
    drop(progress);
    let (problems, warnings) = if args.strict {
        (report.problems + report.warnings, 0)
    } else {
        (report.problems, report.warnings)
    };
    let outcome = if problems > 0 {
        Outcome::Problems
    } else {
        Outcome::Success
    };
    let schema = admin.store().schema().as_str();
    let views: Vec<FindingView<'_>> = report
        .findings
        .iter()
        .map(|f| FindingView::new(f, args.strict))
        .collect();
    if out.json {
        output::json(
            out,
            &serde_json::json!({
                "schema": schema,
                "schema_version": report.schema_version,
                "events": report.events,
                "streams": report.streams,
                "checkpoints": report.checkpoints,
                "ok": problems == 0,
                "problems": problems,
                "warnings": warnings,
                "findings": views,
                "findings_truncated": report.findings_truncated(),
            }),
        )?;
        return Ok(outcome);
    }
    writeln!(
        out,
        "verified schema `{schema}` (schema version {}): {} events in {} streams, {} projection {}",
        report.schema_version,
        report.events,
        report.streams,
        report.checkpoints,
        plural(report.checkpoints, "checkpoint")
    )?;
    if problems == 0 && warnings == 0 {
        writeln!(out, "no problems found")?;
        return Ok(outcome);
    }
    writeln!(
        out,
        "{problems} {}, {warnings} {}",
        plural(problems, "problem"),
        plural(warnings, "warning")
    )?;
    writeln!(out)?;
    print_findings(out, &views)?;
    if report.findings_truncated() {
        writeln!(
            out,
            "... and {} more (use --json for the first {})",
            report.problems + report.warnings - report.findings.len() as u64,
            VerifyReport::MAX_FINDINGS
        )?;
    }
    Ok(outcome)
}

/// The findings as a table.
fn print_findings(out: &mut dyn Write, views: &[FindingView<'_>]) -> std::io::Result<()> {
    let cell = |v: Option<i64>| v.map_or_else(|| "-".to_owned(), |v| v.to_string());
    let rows: Vec<Vec<String>> = views
        .iter()
        .map(|f| {
            let place = match (f.stream, f.projection) {
                (Some(stream), _) => stream.to_owned(),
                (None, Some(projection)) => format!("projection {projection}"),
                (None, None) => "-".to_owned(),
            };
            vec![
                f.severity.to_owned(),
                f.check.to_owned(),
                place,
                cell(f.version),
                cell(f.position),
                f.message.to_owned(),
            ]
        })
        .collect();
    output::table(
        out,
        &[
            "SEVERITY", "CHECK", "STREAM", "VERSION", "POSITION", "MESSAGE",
        ],
        &rows,
    )
}

fn plural(n: u64, word: &str) -> String {
    if n == 1 {
        word.to_owned()
    } else {
        format!("{word}s")
    }
}
