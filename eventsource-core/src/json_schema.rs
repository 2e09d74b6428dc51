//! A schema registry for other services: the JSON Schema (draft 2020-12) of every event
//! version, written as files, and a validator for stored payloads.
//!
//! The schemas come from the derives ([`Shape::json_schema`](crate::Shape::json_schema) of each
//! version); an aggregate's event enum lists every version of every chain it decodes
//! ([`EventEnum::event_schemas`](crate::EventEnum::event_schemas)). The application, which
//! links its event types, writes them with [`write_json_schemas`]; the `eventsource` CLI,
//! which does not, reads them back ([`read_json_schemas`]) and checks payloads with
//! [`validate`]:
//!
//! ```text
//! <dir>/account.opened/v1.schema.json
//! <dir>/account.opened/v2.schema.json
//! <dir>/account.deposited/v1.schema.json
//! ```
//!
//! [`validate`] knows the keywords the derive emits (`type`, `properties`, `required`,
//! `additionalProperties`, `items`, `prefixItems`, `minItems`, `maxItems`, `minimum`,
//! `maximum`, `minLength`, `maxLength`, `const`, `enum`, `not`, `anyOf`, `oneOf`, and the
//! annotations `$schema`, `$id`, `title`, `description`, `format`); a schema with another
//! keyword is refused with [`SchemaViolation::UnsupportedKeyword`], never passed unchecked.

use std::cmp::Ordering;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io;
use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::limits::excerpt;

/// The JSON Schema of one event version.
#[derive(Clone, Debug, PartialEq)]
pub struct EventSchema {
    /// The event's stored name, e.g. `account.opened`.
    pub name: String,
    /// The schema version.
    pub version: u32,
    /// The schema of the payload stored at that version.
    pub schema: Value,
}

impl EventSchema {
    /// The schema of `name` at `version`.
    pub fn new(name: &str, version: u32, schema: Value) -> Self {
        EventSchema {
            name: name.to_owned(),
            version,
            schema,
        }
    }

    /// Where the schema lives under a registry directory: `<name>/v<version>.schema.json`.
    pub fn relative_path(&self) -> PathBuf {
        Path::new(&self.name).join(format!("v{}.schema.json", self.version))
    }

    /// The schema as written to its file: with `$schema` (draft 2020-12) and a `title` naming
    /// the event and version.
    pub fn document(&self) -> Value {
        let mut document = serde_json::Map::new();
        document.insert(
            "$schema".to_owned(),
            Value::from("https://json-schema.org/draft/2020-12/schema"),
        );
        document.insert(
            "title".to_owned(),
            Value::from(format!("{} v{}", self.name, self.version)),
        );
        match &self.schema {
            Value::Object(schema) => {
                for (key, value) in schema {
                    document.insert(key.clone(), value.clone());
                }
            }
            // `true`/`false` schemas: wrapped so that the annotations fit.
            other => {
                document.insert("allOf".to_owned(), Value::Array(vec![other.clone()]));
            }
        }
        Value::Object(document)
    }
}

/// Why the schema files could not be written or read; names the file.
#[derive(Debug, thiserror::Error)]
pub enum SchemaFileError {
    /// Reading or writing failed.
    #[error("schema file `{}`: {source}", path.display())]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The error.
        source: io::Error,
    },
    /// A schema file is not JSON.
    #[error("schema file `{}` is not JSON: {source}", path.display())]
    Json {
        /// The file.
        path: PathBuf,
        /// The error.
        source: serde_json::Error,
    },
    /// A file under the directory is not `<name>/v<N>.schema.json`.
    #[error("`{}` is not a schema file (expected `<event name>/v<N>.schema.json`)", path.display())]
    UnexpectedFile {
        /// The file.
        path: PathBuf,
    },
    /// An event name that is not one plain path component (empty, `.`, `..`, or with a path
    /// separator) cannot name a directory under the registry.
    #[error(
        "event name `{name}` cannot name a schema directory (one plain path component is needed)"
    )]
    InvalidName {
        /// The name, as an excerpt.
        name: String,
    },
    /// Two schemas for one (name, version) with different content were to be written.
    #[error("two different schemas for `{name}` v{version}")]
    Conflict {
        /// The event name.
        name: String,
        /// The version.
        version: u32,
    },
}

/// Writes each schema to `dir/<name>/v<version>.schema.json` (creating the directories, and
/// replacing files of the same versions), and returns the files written, in order. Schemas
/// listed twice with the same content are written once; with different content, nothing is
/// written and [`SchemaFileError::Conflict`] says which.
pub fn write_json_schemas(
    dir: &Path,
    schemas: &[EventSchema],
) -> Result<Vec<PathBuf>, SchemaFileError> {
    let mut unique: BTreeMap<(&str, u32), &EventSchema> = BTreeMap::new();
    for schema in schemas {
        let plain = matches!(
            Path::new(&schema.name)
                .components()
                .collect::<Vec<_>>()
                .as_slice(),
            [std::path::Component::Normal(_)]
        ) && !schema.name.contains(['/', '\\']);
        if !plain {
            return Err(SchemaFileError::InvalidName {
                name: excerpt(&schema.name).into_owned(),
            });
        }
        match unique.insert((&schema.name, schema.version), schema) {
            Some(earlier) if earlier.schema != schema.schema => {
                return Err(SchemaFileError::Conflict {
                    name: schema.name.clone(),
                    version: schema.version,
                });
            }
            _ => {}
        }
    }
    let mut written = Vec::with_capacity(unique.len());
    for schema in unique.values() {
        let path = dir.join(schema.relative_path());
        let io_error = |source| SchemaFileError::Io {
            path: path.clone(),
            source,
        };
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(io_error)?;
        }
        let mut text = serde_json::to_string_pretty(&schema.document()).map_err(|source| {
            SchemaFileError::Json {
                path: path.clone(),
                source,
            }
        })?;
        text.push('\n');
        std::fs::write(&path, text).map_err(io_error)?;
        written.push(path);
    }
    Ok(written)
}

/// Reads every `<name>/v<N>.schema.json` under `dir`, keyed by (name, version). Other files
/// are refused ([`SchemaFileError::UnexpectedFile`]), so that a misplaced schema is noticed
/// rather than ignored.
pub fn read_json_schemas(dir: &Path) -> Result<BTreeMap<(String, u32), Value>, SchemaFileError> {
    let io_error = |path: &Path| {
        let path = path.to_owned();
        move |source| SchemaFileError::Io { path, source }
    };
    let mut schemas = BTreeMap::new();
    for entry in std::fs::read_dir(dir).map_err(io_error(dir))? {
        let entry = entry.map_err(io_error(dir))?;
        let event_dir = entry.path();
        let name = entry.file_name().to_string_lossy().into_owned();
        if !event_dir.is_dir() {
            return Err(SchemaFileError::UnexpectedFile { path: event_dir });
        }
        for file in std::fs::read_dir(&event_dir).map_err(io_error(&event_dir))? {
            let path = file.map_err(io_error(&event_dir))?.path();
            let version = path
                .file_name()
                .and_then(|file| file.to_str())
                .and_then(|file| file.strip_prefix('v'))
                .and_then(|file| file.strip_suffix(".schema.json"))
                .and_then(|version| version.parse::<u32>().ok());
            let Some(version) = version else {
                return Err(SchemaFileError::UnexpectedFile { path });
            };
            let text = std::fs::read_to_string(&path).map_err(io_error(&path))?;
            let schema = serde_json::from_str(&text).map_err(|source| SchemaFileError::Json {
                path: path.clone(),
                source,
            })?;
            schemas.insert((name.clone(), version), schema);
        }
    }
    Ok(schemas)
}

/// Why a payload does not validate against a schema. `at` is the JSON pointer of the
/// offending value (`""` for the payload itself); values are shown as bounded excerpts.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SchemaViolation {
    /// The value breaks the schema.
    #[error("at `{at}`: {message}")]
    Invalid {
        /// JSON pointer of the value.
        at: String,
        /// What is wrong, e.g. ``1 is not of type "string"``.
        message: String,
    },
    /// The schema uses a keyword [`validate`] does not know (or a known one malformed), so
    /// the payload could not be checked.
    #[error("at `{at}`: the schema's `{keyword}` is not supported by this validator")]
    UnsupportedKeyword {
        /// JSON pointer of the value being checked.
        at: String,
        /// The keyword.
        keyword: String,
    },
}

/// Validates `payload` against `schema`, for the keywords listed in the [module
/// docs](self).
pub fn validate(schema: &Value, payload: &Value) -> Result<(), SchemaViolation> {
    check(schema, payload, "")
}

fn shown(value: &Value) -> String {
    excerpt(&value.to_string()).into_owned()
}

fn invalid(at: &str, message: String) -> SchemaViolation {
    SchemaViolation::Invalid {
        at: at.to_owned(),
        message,
    }
}

fn unsupported(at: &str, keyword: &str) -> SchemaViolation {
    SchemaViolation::UnsupportedKeyword {
        at: at.to_owned(),
        keyword: keyword.to_owned(),
    }
}

/// `at` + `/key`, escaped as a JSON pointer.
fn child(at: &str, key: &str) -> String {
    let mut out = String::with_capacity(at.len() + key.len() + 1);
    out.push_str(at);
    out.push('/');
    // The key is user data: bounded.
    out.push_str(&excerpt(key).replace('~', "~0").replace('/', "~1"));
    out
}

fn index(at: &str, i: usize) -> String {
    let mut out = at.to_owned();
    let _ = write!(out, "/{i}");
    out
}

fn has_type(value: &Value, ty: &str) -> Option<bool> {
    Some(match ty {
        "object" => value.is_object(),
        "array" => value.is_array(),
        "string" => value.is_string(),
        "integer" => value.is_i64() || value.is_u64(),
        "number" => value.is_number(),
        "boolean" => value.is_boolean(),
        "null" => value.is_null(),
        _ => return None,
    })
}

fn check(schema: &Value, value: &Value, at: &str) -> Result<(), SchemaViolation> {
    let schema = match schema {
        Value::Object(schema) => schema,
        Value::Bool(true) => return Ok(()),
        Value::Bool(false) => {
            return Err(invalid(at, format!("{} is not allowed here", shown(value))));
        }
        _ => return Err(unsupported(at, "<schema>")),
    };
    for (keyword, expected) in schema {
        let keyword = keyword.as_str();
        match keyword {
            "$schema" | "$id" | "title" | "description" | "format" | "$comment" => {}
            "type" => {
                let types: Vec<&str> = match expected {
                    Value::String(ty) => vec![ty.as_str()],
                    Value::Array(types) => types.iter().filter_map(Value::as_str).collect(),
                    _ => return Err(unsupported(at, keyword)),
                };
                let mut ok = false;
                for ty in &types {
                    ok |= has_type(value, ty).ok_or_else(|| unsupported(at, keyword))?;
                }
                if !ok {
                    return Err(invalid(
                        at,
                        format!("{} is not of type {}", shown(value), expected),
                    ));
                }
            }
            "properties" => {
                let properties = expected
                    .as_object()
                    .ok_or_else(|| unsupported(at, keyword))?;
                for (key, sub) in properties {
                    if let Some(field) = value.get(key) {
                        check(sub, field, &child(at, key))?;
                    }
                }
            }
            "required" => {
                let required = expected
                    .as_array()
                    .ok_or_else(|| unsupported(at, keyword))?;
                if let Some(object) = value.as_object() {
                    for key in required {
                        let key = key.as_str().ok_or_else(|| unsupported(at, keyword))?;
                        if !object.contains_key(key) {
                            return Err(invalid(
                                at,
                                format!("the required property `{}` is missing", excerpt(key)),
                            ));
                        }
                    }
                }
            }
            "additionalProperties" => {
                let known = schema.get("properties").and_then(Value::as_object);
                for (key, field) in value.as_object().into_iter().flatten() {
                    if known.is_none_or(|known| !known.contains_key(key)) {
                        check(expected, field, &child(at, key))?;
                    }
                }
            }
            "items" => {
                let skip = schema
                    .get("prefixItems")
                    .and_then(Value::as_array)
                    .map_or(0, Vec::len);
                for (i, item) in value
                    .as_array()
                    .into_iter()
                    .flatten()
                    .enumerate()
                    .skip(skip)
                {
                    check(expected, item, &index(at, i))?;
                }
            }
            "prefixItems" => {
                let prefix = expected
                    .as_array()
                    .ok_or_else(|| unsupported(at, keyword))?;
                for (i, (sub, item)) in prefix
                    .iter()
                    .zip(value.as_array().into_iter().flatten())
                    .enumerate()
                {
                    check(sub, item, &index(at, i))?;
                }
            }
            "minItems" | "maxItems" | "minLength" | "maxLength" => {
                let bound = expected.as_u64().ok_or_else(|| unsupported(at, keyword))?;
                let len = match keyword {
                    "minItems" | "maxItems" => value.as_array().map(Vec::len),
                    _ => value.as_str().map(|text| text.chars().count()),
                };
                if let Some(len) = len {
                    let len = len as u64;
                    let too_short = keyword.starts_with("min") && len < bound;
                    let too_long = keyword.starts_with("max") && len > bound;
                    if too_short || too_long {
                        return Err(invalid(
                            at,
                            format!("length {len} breaks `{keyword}: {bound}`"),
                        ));
                    }
                }
            }
            "minimum" | "maximum" => {
                let order = compare(value, expected).ok_or_else(|| unsupported(at, keyword))?;
                let out = match keyword {
                    "minimum" => order == Some(Ordering::Less),
                    _ => order == Some(Ordering::Greater),
                };
                if out {
                    return Err(invalid(
                        at,
                        format!("{} breaks `{keyword}: {expected}`", shown(value)),
                    ));
                }
            }
            "const" => {
                if value != expected {
                    return Err(invalid(
                        at,
                        format!("{} is not {}", shown(value), shown(expected)),
                    ));
                }
            }
            "enum" => {
                let options = expected
                    .as_array()
                    .ok_or_else(|| unsupported(at, keyword))?;
                if !options.contains(value) {
                    return Err(invalid(at, format!("{} is none of `enum`", shown(value))));
                }
            }
            "not" => {
                if check(expected, value, at).is_ok() {
                    return Err(invalid(at, format!("{} matches a `not`", shown(value))));
                }
            }
            "anyOf" | "oneOf" | "allOf" => {
                let subs = expected
                    .as_array()
                    .ok_or_else(|| unsupported(at, keyword))?;
                let mut matches = 0;
                for sub in subs {
                    match check(sub, value, at) {
                        Ok(()) => matches += 1,
                        Err(unsupported @ SchemaViolation::UnsupportedKeyword { .. }) => {
                            return Err(unsupported);
                        }
                        Err(SchemaViolation::Invalid { .. }) => {}
                    }
                }
                let ok = match keyword {
                    "anyOf" => matches > 0,
                    "oneOf" => matches == 1,
                    _ => matches == subs.len(),
                };
                if !ok {
                    return Err(invalid(
                        at,
                        format!(
                            "{} matches {matches} of the {} schemas of `{keyword}`",
                            shown(value),
                            subs.len()
                        ),
                    ));
                }
            }
            other => return Err(unsupported(at, other)),
        }
    }
    Ok(())
}

/// How `value` compares with the number `bound`: exactly for integers (beyond `f64`'s
/// precision), as `f64` otherwise; `Some(None)` when `value` is not a number (the keyword does
/// not apply), `None` when `bound` is not one (a malformed schema).
fn compare(value: &Value, bound: &Value) -> Option<Option<Ordering>> {
    let integer = |v: &Value| {
        v.as_i64()
            .map(i128::from)
            .or_else(|| v.as_u64().map(i128::from))
    };
    if !bound.is_number() {
        return None;
    }
    if !value.is_number() {
        return Some(None);
    }
    Some(match (integer(value), integer(bound)) {
        (Some(v), Some(b)) => Some(v.cmp(&b)),
        _ => value.as_f64()?.partial_cmp(&bound.as_f64()?),
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use serde_json::json;

    use super::*;

    #[test]
    fn types_properties_and_required() {
        let schema = json!({
            "type": "object",
            "properties": {"owner": {"type": "string"}, "limit": {"type": "integer", "minimum": 0}},
            "required": ["owner"],
        });
        assert_eq!(validate(&schema, &json!({"owner": "Ada"})), Ok(()));
        assert_eq!(
            validate(&schema, &json!({"owner": 1})),
            Err(SchemaViolation::Invalid {
                at: "/owner".into(),
                message: "1 is not of type \"string\"".into()
            })
        );
        assert!(validate(&schema, &json!({})).is_err());
        assert!(validate(&schema, &json!({"owner": "A", "limit": -1})).is_err());
        assert!(validate(&schema, &json!({"owner": "A", "limit": u64::MAX})).is_ok());
        assert!(validate(&schema, &json!([])).is_err());
    }

    #[test]
    fn an_unknown_keyword_is_refused_not_ignored() {
        let schema = json!({"patternProperties": {}});
        assert!(matches!(
            validate(&schema, &json!({})),
            Err(SchemaViolation::UnsupportedKeyword { .. })
        ));
        let nested = json!({"anyOf": [{"pattern": "x"}, true]});
        assert!(matches!(
            validate(&nested, &json!("y")),
            Err(SchemaViolation::UnsupportedKeyword { .. })
        ));
    }

    #[test]
    fn pointers_escape_and_excerpts_are_bounded() {
        let schema = json!({"properties": {"a/b": {"type": "integer"}}});
        let long = "x".repeat(10_000);
        let Err(SchemaViolation::Invalid { at, message }) =
            validate(&schema, &json!({"a/b": long}))
        else {
            panic!("expected a violation");
        };
        assert_eq!(at, "/a~1b");
        assert!(message.len() < 1_000, "{}", message.len());
        let closed = json!({"additionalProperties": false});
        let Err(violation) = validate(&closed, &json!({ long.clone(): 1 })) else {
            panic!("expected a violation");
        };
        assert!(violation.to_string().len() < 1_000, "a long key is bounded");
    }

    #[test]
    fn schemas_round_trip_through_files() {
        let dir = std::env::temp_dir().join(format!("es-schemas-{}", std::process::id()));
        let schemas = vec![
            EventSchema::new("a.b", 2, json!({"type": "object"})),
            EventSchema::new("a.b", 1, json!(true)),
            EventSchema::new("a.b", 2, json!({"type": "object"})),
        ];
        let written = write_json_schemas(&dir, &schemas).unwrap();
        assert_eq!(written.len(), 2);
        let read = read_json_schemas(&dir).unwrap();
        assert_eq!(read.len(), 2);
        let v2 = &read[&("a.b".to_owned(), 2)];
        assert_eq!(v2["title"], "a.b v2");
        assert!(validate(v2, &json!({})).is_ok());
        assert!(validate(&read[&("a.b".to_owned(), 1)], &json!(5)).is_ok());
        let conflict = [
            EventSchema::new("a.b", 3, json!(true)),
            EventSchema::new("a.b", 3, json!(false)),
        ];
        assert!(matches!(
            write_json_schemas(&dir, &conflict),
            Err(SchemaFileError::Conflict { version: 3, .. })
        ));
        for name in ["", "..", "../x", "a/b", "a\\b", "."] {
            let hostile = [EventSchema::new(name, 1, json!(true))];
            assert!(
                matches!(
                    write_json_schemas(&dir, &hostile),
                    Err(SchemaFileError::InvalidName { .. })
                ),
                "{name:?}"
            );
        }
        std::fs::write(dir.join("stray.txt"), "x").unwrap();
        assert!(matches!(
            read_json_schemas(&dir),
            Err(SchemaFileError::UnexpectedFile { .. })
        ));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
