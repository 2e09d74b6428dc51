//! The exported JSON Schemas of an event set, kept in the repository and checked by a test:
//! other services read the files (and `eventsource json-schema check` validates stored
//! payloads against them), so a change of a version's schema must show in review.
//!
//! ```ignore
//! #[test]
//! fn json_schemas() {
//!     eventsource::testing::check_json_schemas::<AccountEvent>("schemas");
//! }
//! ```
//!
//! `EVENTSOURCE_SCHEMAS=write cargo test` writes them (every version of every event of the
//! set, `<dir>/<name>/v<N>.schema.json`); without it, the test fails if a file is missing or
//! differs from what the code exports.

use std::path::Path;

use crate::EventEnum;
use crate::json_schema::{read_json_schemas, write_json_schemas};

/// Checks (or with `EVENTSOURCE_SCHEMAS=write`, writes) the schema files of `E` in `dir`; see
/// the [module](self) docs.
///
/// # Panics
/// If a file is missing, unreadable or differs, listing each (this is a test helper:
/// panicking fails the test).
#[track_caller]
pub fn check_json_schemas<E: EventEnum>(dir: impl AsRef<Path>) {
    let dir = dir.as_ref();
    let schemas = E::event_schemas();
    if std::env::var("EVENTSOURCE_SCHEMAS").as_deref() == Ok("write") {
        if let Err(error) = write_json_schemas(dir, &schemas) {
            panic!("writing the JSON Schemas: {error}");
        }
        return;
    }
    let on_disk = if dir.exists() {
        match read_json_schemas(dir) {
            Ok(on_disk) => on_disk,
            Err(error) => panic!("reading the JSON Schemas: {error}"),
        }
    } else {
        Default::default()
    };
    let mut problems = Vec::new();
    for schema in &schemas {
        let path = dir.join(schema.relative_path());
        match on_disk.get(&(schema.name.clone(), schema.version)) {
            None => problems.push(format!("  {} is missing", path.display())),
            Some(file) if *file != schema.document() => problems.push(format!(
                "  {} differs from the schema of `{}` v{} the code exports",
                path.display(),
                schema.name,
                schema.version
            )),
            Some(_) => {}
        }
    }
    if !problems.is_empty() {
        panic!(
            "{} JSON Schema problem(s) (write them with `EVENTSOURCE_SCHEMAS=write cargo test`, then review the diff):\n{}",
            problems.len(),
            problems.join("\n")
        );
    }
}
