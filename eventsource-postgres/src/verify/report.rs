//! What [`PostgresAdmin::verify`](crate::PostgresAdmin::verify) reports.

use std::fmt;

/// How bad a [`Finding`] is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Severity {
    /// The store breaks an invariant.
    Problem,
    /// Legal but suspicious (e.g. a payload that is not a JSON object).
    Warning,
}

impl Severity {
    /// `problem` or `warning`.
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Problem => "problem",
            Severity::Warning => "warning",
        }
    }
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Which check of [`PostgresAdmin::verify`](crate::PostgresAdmin::verify) found something.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Check {
    /// A schema version out of range: the store's (not the one this library knows) or an
    /// event's (outside `1..=u32::MAX`).
    SchemaVersion,
    /// The triggers that keep events immutable are missing or disabled.
    Immutability,
    /// A stream's versions do not run 1, 2, 3... (a gap or a repeat).
    StreamVersions,
    /// A stream's head in `streams` is missing, differs from its last event, or has no events.
    StreamHead,
    /// An event name is empty.
    EventName,
    /// A payload is not a JSON object (a warning: unit and newtype events serialize to `null`
    /// or a scalar).
    Payload,
    /// Metadata is not an object the store can decode.
    Metadata,
    /// A position is held by several events.
    Positions,
    /// An event id is stored several times.
    EventIds,
    /// A checkpoint is past the head of the log.
    Checkpoints,
    /// A snapshot's version is past its stream's head: loads ignore it, but it shows that the
    /// stream once had events it no longer has (snapshots restored from a newer backup than
    /// the events).
    Snapshots,
    /// Transaction ids above the cluster's: the store was restored or moved from another
    /// cluster and not migrated since (`PostgresStore::migrate` re-bases it; until then the
    /// store refuses to read or append), or a checkpoint is beyond every event and the
    /// cluster; or the offset row of the global order is missing.
    TransactionIds,
    /// A big table of the store was never analysed: the planner has no statistics on it (a
    /// warning).
    Statistics,
}

impl Check {
    /// The check's name in reports: `schema-version`, `immutability`, `stream-versions`,
    /// `stream-head`, `event-name`, `payload`, `metadata`, `positions`, `event-ids`,
    /// `checkpoints`, `snapshots`, `transaction-ids`, `statistics`.
    pub fn as_str(self) -> &'static str {
        match self {
            Check::SchemaVersion => "schema-version",
            Check::Immutability => "immutability",
            Check::StreamVersions => "stream-versions",
            Check::StreamHead => "stream-head",
            Check::EventName => "event-name",
            Check::Payload => "payload",
            Check::Metadata => "metadata",
            Check::Positions => "positions",
            Check::EventIds => "event-ids",
            Check::Checkpoints => "checkpoints",
            Check::Snapshots => "snapshots",
            Check::TransactionIds => "transaction-ids",
            Check::Statistics => "statistics",
        }
    }
}

impl fmt::Display for Check {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One thing [`PostgresAdmin::verify`](crate::PostgresAdmin::verify) found wrong, and where. Versions and positions are the
/// stored values, whatever they are.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Finding {
    /// How bad it is.
    pub severity: Severity,
    /// The check that found it.
    pub check: Check,
    /// The stream concerned.
    pub stream: Option<String>,
    /// The stream version concerned.
    pub version: Option<i64>,
    /// The global position concerned.
    pub position: Option<i64>,
    /// The projection concerned.
    pub projection: Option<String>,
    /// What is wrong, for a person.
    pub message: String,
}

impl Finding {
    pub(super) fn new(severity: Severity, check: Check, message: impl Into<String>) -> Self {
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

    pub(super) fn problem(check: Check, message: impl Into<String>) -> Self {
        Finding::new(Severity::Problem, check, message)
    }

    pub(super) fn at(mut self, stream: &str, version: Option<i64>, position: Option<i64>) -> Self {
        self.stream = Some(stream.to_owned());
        self.version = version;
        self.position = position;
        self
    }
}

/// What [`PostgresAdmin::verify`](crate::PostgresAdmin::verify) found: the first [`MAX_FINDINGS`](Self::MAX_FINDINGS)
/// findings and the counts of all.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct VerifyReport {
    /// The schema version recorded.
    pub schema_version: i64,
    /// Events scanned.
    pub events: u64,
    /// Streams scanned.
    pub streams: u64,
    /// Projection checkpoints checked.
    pub checkpoints: u64,
    /// Findings of severity [`Severity::Problem`].
    pub problems: u64,
    /// Findings of severity [`Severity::Warning`].
    pub warnings: u64,
    /// The first findings, in the order the checks ran.
    pub findings: Vec<Finding>,
}

impl VerifyReport {
    /// The most findings a report keeps; the rest are counted.
    pub const MAX_FINDINGS: usize = 1_000;

    /// Whether no problem was found (warnings allowed).
    pub fn is_ok(&self) -> bool {
        self.problems == 0
    }

    /// Whether some findings were counted but not kept.
    pub fn findings_truncated(&self) -> bool {
        (self.findings.len() as u64) < self.problems + self.warnings
    }

    /// Counts `problems` found but not listed.
    pub(super) fn left_out(&mut self, problems: u64) {
        self.problems += problems;
    }

    pub(super) fn add(&mut self, finding: Finding) {
        match finding.severity {
            Severity::Problem => self.problems += 1,
            Severity::Warning => self.warnings += 1,
        }
        if self.findings.len() < Self::MAX_FINDINGS {
            self.findings.push(finding);
        }
    }
}

/// How far [`PostgresAdmin::verify_with_progress`](crate::PostgresAdmin::verify_with_progress) has scanned the events.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct ScanProgress {
    /// Events scanned so far.
    pub scanned: u64,
    /// Events stored when the scan started.
    pub total: u64,
}

#[cfg(test)]
mod tests {
    use super::{Check, Finding, Severity, VerifyReport};

    #[test]
    fn a_report_keeps_the_first_findings_and_counts_all() {
        let mut report = VerifyReport::default();
        for _ in 0..VerifyReport::MAX_FINDINGS + 5 {
            report.add(Finding::problem(Check::Positions, "x"));
        }
        report.add(Finding::new(Severity::Warning, Check::Payload, "y"));
        assert_eq!(report.findings.len(), VerifyReport::MAX_FINDINGS);
        assert_eq!(report.problems, VerifyReport::MAX_FINDINGS as u64 + 5);
        assert_eq!(report.warnings, 1);
        assert!(report.findings_truncated());
        assert!(!report.is_ok());
    }
}
