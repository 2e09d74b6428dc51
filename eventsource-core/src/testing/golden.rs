//! Golden payloads: stored samples of every event version, kept in the repository, that must
//! keep decoding into the current types.
//!
//! The layout is one JSON file per (event name, schema version):
//!
//! ```text
//! tests/golden/
//!   account.opened/v1.json      {"owner":"Ada"}
//!   account.opened/v2.json      {"owner":"Ada","overdraft_limit":0}
//!   account.deposited/v1.json   {"amount":100}
//! ```
//!
//! [`check_golden`] decodes every file through the event's upcaster chain, from the parsed
//! value ([`EventEnum::decode`]) and from the text ([`EventEnum::decode_json`], as loads from
//! PostgreSQL do), and fails, naming the file, on any that no longer decodes or that decodes
//! to different events the two ways. It is
//! given an example value of each current event: a missing sample of a current version is a
//! failure too, and with `EVENTSOURCE_GOLDEN=record` the missing ones are written from the
//! examples instead (existing files are never rewritten: a sample is history).
//!
//! ```ignore
//! #[test]
//! fn golden_payloads() {
//!     eventsource::testing::check_golden("tests/golden", [AccountEvent::from(Deposited { amount: 100 })]);
//! }
//! ```

use std::collections::BTreeSet;
use std::fmt;
use std::path::{Path, PathBuf};

use crate::event::{DecodeFailure, EventEnum};

/// The environment variable that turns on recording: `EVENTSOURCE_GOLDEN=record`.
pub const RECORD_VARIABLE: &str = "EVENTSOURCE_GOLDEN";

/// Whether missing samples are written, or only checked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GoldenMode {
    /// Every sample must exist and decode.
    Check,
    /// Missing samples of the examples' versions are written first, then everything is checked.
    Record,
}

impl GoldenMode {
    /// `Record` if `EVENTSOURCE_GOLDEN=record`, else `Check`.
    pub fn from_env() -> GoldenMode {
        match std::env::var(RECORD_VARIABLE) {
            Ok(value) if value.trim() == "record" => GoldenMode::Record,
            _ => GoldenMode::Check,
        }
    }
}

/// What was checked: the sample files that decoded, and the ones written (in `Record` mode).
#[derive(Debug, Default, PartialEq, Eq)]
pub struct GoldenReport {
    /// Every sample that decoded, sorted.
    pub decoded: Vec<PathBuf>,
    /// The samples written from examples.
    pub recorded: Vec<PathBuf>,
}

/// One reason the golden payloads are not in order.
#[derive(Debug, thiserror::Error)]
pub enum GoldenProblem {
    /// A file or directory could not be read or written.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// A file is not at `<name>/v<version>.json`.
    #[error("{}: not a sample: samples are `<event name>/v<version>.json`", path.display())]
    Misplaced {
        /// The file.
        path: PathBuf,
    },
    /// A sample is not JSON.
    #[error("{}: not JSON: {source}", path.display())]
    NotJson {
        /// The file.
        path: PathBuf,
        /// The parser's message.
        #[source]
        source: serde_json::Error,
    },
    /// A sample no longer decodes (or upcasts) into the current type.
    #[error("{}: `{name}` v{version} no longer decodes: {source}", path.display())]
    Undecodable {
        /// The file.
        path: PathBuf,
        /// The event name (its directory).
        name: String,
        /// The schema version (its file name).
        version: u32,
        /// Why it does not decode.
        #[source]
        source: DecodeFailure,
    },
    /// A sample decodes to another event from its JSON text ([`EventEnum::decode_json`]) than
    /// from its parsed value ([`EventEnum::decode`]), compared by what they encode to (or one
    /// of them does not encode).
    #[error(
        "{}: `{name}` v{version} decodes to another event from its JSON text than from its parsed value (`decode_json` against `decode`)",
        path.display()
    )]
    Diverging {
        /// The file.
        path: PathBuf,
        /// The event name (its directory).
        name: String,
        /// The schema version (its file name).
        version: u32,
    },
    /// An example's current version has no sample.
    #[error(
        "{}: missing sample of `{name}` v{version}: record it with `{RECORD_VARIABLE}=record cargo test` and commit it",
        path.display()
    )]
    Missing {
        /// Where the sample belongs.
        path: PathBuf,
        /// The event name.
        name: &'static str,
        /// The current version.
        version: u32,
    },
    /// An event of the set has neither a sample nor an example.
    #[error("`{name}` has no sample and no example: give `check_golden` an example of it")]
    Uncovered {
        /// The event name.
        name: &'static str,
    },
    /// An example did not encode.
    #[error("the example of `{name}` does not encode: {source}")]
    Encode {
        /// The event name.
        name: &'static str,
        /// The serializer's message.
        #[source]
        source: serde_json::Error,
    },
}

/// Every problem found, one per line.
#[derive(Debug)]
pub struct GoldenProblems(pub Vec<GoldenProblem>);

impl fmt::Display for GoldenProblems {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "{} golden payload problem(s):", self.0.len())?;
        for problem in &self.0 {
            writeln!(f, "  {problem}")?;
        }
        Ok(())
    }
}

impl std::error::Error for GoldenProblems {}

/// Checks the golden payloads in `dir` against the event set `E` (see the [module](self)
/// docs), recording missing samples when `EVENTSOURCE_GOLDEN=record`. A one-line test:
///
/// ```ignore
/// #[test]
/// fn golden_payloads() {
///     eventsource::testing::check_golden("tests/golden", examples());
/// }
/// ```
///
/// # Panics
/// With every problem listed, each naming its file, if any sample is missing, misplaced or no
/// longer decodes (this is a test helper: panicking fails the test).
#[track_caller]
pub fn check_golden<E: EventEnum>(dir: impl AsRef<Path>, examples: impl IntoIterator<Item = E>) {
    if let Err(problems) = verify_golden(dir.as_ref(), examples, GoldenMode::from_env()) {
        panic!("{problems}");
    }
}

/// [`check_golden`] without the panic, and with the mode given.
pub fn verify_golden<E: EventEnum>(
    dir: &Path,
    examples: impl IntoIterator<Item = E>,
    mode: GoldenMode,
) -> Result<GoldenReport, GoldenProblems> {
    let mut problems = Vec::new();
    let mut report = GoldenReport::default();
    let mut covered = BTreeSet::new();

    for example in examples {
        let (name, version) = (example.name(), example.schema_version());
        covered.insert(name);
        let path = sample_path(dir, name, version);
        if path.exists() {
            continue;
        }
        if mode == GoldenMode::Check {
            problems.push(GoldenProblem::Missing {
                path,
                name,
                version,
            });
            continue;
        }
        match record(&path, &example) {
            Ok(()) => report.recorded.push(path),
            Err(problem) => problems.push(problem),
        }
    }

    for (path, name, version) in samples(dir, &mut problems) {
        covered.extend(E::NAMES.iter().filter(|n| **n == name));
        let text = match std::fs::read_to_string(&path) {
            Ok(text) => text,
            Err(source) => {
                problems.push(GoldenProblem::Io { path, source });
                continue;
            }
        };
        let payload = match serde_json::from_str(&text) {
            Ok(payload) => payload,
            Err(source) => {
                problems.push(GoldenProblem::NotJson { path, source });
                continue;
            }
        };
        // Both forms a store hands over (a parsed value; JSON text, as PostgreSQL's loads
        // read): each must decode, and to the same event.
        let decoded = E::decode(&name, version, &payload)
            .and_then(|event| Ok((event, E::decode_json(&name, version, &text)?)));
        match decoded {
            Ok((from_value, from_text)) => {
                let encoded = |event: &E| event.encode().ok();
                if encoded(&from_value).is_some() && encoded(&from_value) == encoded(&from_text) {
                    report.decoded.push(path);
                } else {
                    problems.push(GoldenProblem::Diverging {
                        path,
                        name,
                        version,
                    });
                }
            }
            Err(source) => problems.push(GoldenProblem::Undecodable {
                path,
                name,
                version,
                source,
            }),
        }
    }

    for name in E::NAMES {
        if !covered.contains(name) {
            problems.push(GoldenProblem::Uncovered { name });
        }
    }
    if problems.is_empty() {
        Ok(report)
    } else {
        Err(GoldenProblems(problems))
    }
}

/// `<dir>/<name>/v<version>.json`.
pub fn sample_path(dir: &Path, name: &str, version: u32) -> PathBuf {
    dir.join(name).join(format!("v{version}.json"))
}

fn record<E: EventEnum>(path: &Path, example: &E) -> Result<(), GoldenProblem> {
    let payload = example.encode().map_err(|source| GoldenProblem::Encode {
        name: example.name(),
        source,
    })?;
    let mut text =
        serde_json::to_string_pretty(&payload).map_err(|source| GoldenProblem::Encode {
            name: example.name(),
            source,
        })?;
    text.push('\n');
    let io = |source| GoldenProblem::Io {
        path: path.to_owned(),
        source,
    };
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(io)?;
    }
    std::fs::write(path, text).map_err(io)
}

/// Every `<name>/v<version>.json` under `dir`, sorted; anything else is a problem.
fn samples(dir: &Path, problems: &mut Vec<GoldenProblem>) -> Vec<(PathBuf, String, u32)> {
    let mut out = Vec::new();
    for event_dir in entries(dir, problems) {
        let Some(name) = file_name(&event_dir) else {
            continue;
        };
        if !event_dir.is_dir() {
            problems.push(GoldenProblem::Misplaced { path: event_dir });
            continue;
        }
        for path in entries(&event_dir, problems) {
            let version = file_name(&path)
                .and_then(|file| file.strip_suffix(".json")?.strip_prefix('v')?.parse().ok());
            match version {
                Some(version) if path.is_file() => out.push((path, name.clone(), version)),
                _ => problems.push(GoldenProblem::Misplaced { path }),
            }
        }
    }
    out
}

fn entries(dir: &Path, problems: &mut Vec<GoldenProblem>) -> Vec<PathBuf> {
    let read = std::fs::read_dir(dir).and_then(|entries| {
        entries
            .map(|entry| entry.map(|entry| entry.path()))
            .collect::<Result<Vec<_>, _>>()
    });
    match read {
        Ok(mut paths) => {
            paths.sort();
            paths
        }
        // No directory yet: nothing recorded (the examples report what is missing).
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(source) => {
            problems.push(GoldenProblem::Io {
                path: dir.to_owned(),
                source,
            });
            Vec::new()
        }
    }
}

fn file_name(path: &Path) -> Option<String> {
    Some(path.file_name()?.to_str()?.to_owned())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::path::PathBuf;

    use super::{GoldenMode, GoldenProblem, sample_path, verify_golden};
    use crate::testing::fixture::{ADDED, CLEARED, CounterEvent};

    /// A fresh directory under the system's temp dir.
    fn scratch(test: &str) -> PathBuf {
        let dir =
            std::env::temp_dir().join(format!("eventsource-golden-{test}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        dir
    }

    fn examples() -> [CounterEvent; 2] {
        [CounterEvent::Added { amount: 5 }, CounterEvent::Cleared]
    }

    #[test]
    fn record_writes_missing_samples_then_check_passes() {
        let dir = scratch("record");
        let problems = verify_golden(&dir, examples(), GoldenMode::Check).unwrap_err();
        assert!(
            problems
                .0
                .iter()
                .all(|p| matches!(p, GoldenProblem::Missing { .. })),
            "{problems}"
        );
        let report = verify_golden(&dir, examples(), GoldenMode::Record).unwrap();
        assert_eq!(report.recorded.len(), 2);
        let added = std::fs::read_to_string(sample_path(&dir, ADDED, 1)).unwrap();
        assert_eq!(added, "{\n  \"amount\": 5\n}\n");

        // A recorded sample is history: recording again does not rewrite it.
        std::fs::write(sample_path(&dir, ADDED, 1), "{\"amount\": 7}").unwrap();
        let report = verify_golden(&dir, examples(), GoldenMode::Record).unwrap();
        assert!(report.recorded.is_empty());
        assert_eq!(report.decoded.len(), 2);
        let added = std::fs::read_to_string(sample_path(&dir, ADDED, 1)).unwrap();
        assert_eq!(added, "{\"amount\": 7}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_sample_that_no_longer_decodes_is_named() {
        let dir = scratch("undecodable");
        verify_golden(&dir, examples(), GoldenMode::Record).unwrap();
        std::fs::write(sample_path(&dir, ADDED, 1), "{\"amount\": \"lots\"}").unwrap();
        std::fs::write(sample_path(&dir, CLEARED, 7), "{}").unwrap();
        std::fs::create_dir_all(dir.join("counter.renamed")).unwrap();
        std::fs::write(dir.join("counter.renamed/v1.json"), "{}").unwrap();
        std::fs::write(dir.join("counter.added/notes.txt"), "").unwrap();

        let problems = verify_golden(&dir, examples(), GoldenMode::Check).unwrap_err();
        let text = problems.to_string();
        assert_eq!(problems.0.len(), 4, "{text}");
        assert!(text.contains("counter.added/v1.json: `counter.added` v1 no longer decodes"));
        assert!(text.contains("counter.cleared/v7.json: `counter.cleared` v7 no longer decodes"));
        assert!(text.contains(
            "counter.renamed/v1.json: `counter.renamed` v1 no longer decodes: unknown event name"
        ));
        assert!(text.contains("counter.added/notes.txt: not a sample"));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn every_event_of_the_set_needs_a_sample() {
        let dir = scratch("uncovered");
        let only_added = [CounterEvent::Added { amount: 1 }];
        let problems = verify_golden(&dir, only_added, GoldenMode::Record).unwrap_err();
        assert!(matches!(
            problems.0[..],
            [GoldenProblem::Uncovered { name: CLEARED }]
        ));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
