//! JSON Schema export (`Shape::json_schema`): every version of the bank example's events has a
//! schema, and each golden payload (`tests/golden/bank/<name>/v<N>.json`) validates against its
//! version's schema. The validator is hand-rolled for the subset the derive emits (documented on
//! `Shape::json_schema`), which keeps a JSON Schema crate out of the build.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a test fails by panicking

use std::collections::BTreeMap;

use eventsource::prelude::*;
use serde_json::{Value, json};

/// The bank example's events, declared as in `examples/bank.rs`; that they still match is
/// checked against the shapes the example locked in `events.lock` (`[bank]`).
mod bank {
    use eventsource::prelude::*;

    #[derive(Event, Serialize, Deserialize)]
    #[event(name = "account.opened", version = 2, previous = OpenedV1)]
    pub(super) struct Opened {
        owner: String,
        overdraft_limit: u64,
    }

    #[derive(Event, Deserialize)]
    #[event(name = "account.opened", version = 1)]
    pub(super) struct OpenedV1 {
        owner: String,
    }

    impl From<OpenedV1> for Opened {
        fn from(old: OpenedV1) -> Self {
            Opened {
                owner: old.owner,
                overdraft_limit: 0,
            }
        }
    }

    #[derive(Event, Serialize, Deserialize)]
    #[event(name = "account.deposited")]
    pub(super) struct Deposited {
        amount: u64,
    }

    #[derive(Event, Serialize, Deserialize)]
    #[event(name = "account.withdrawn")]
    pub(super) struct Withdrawn {
        amount: u64,
    }
}

/// (name, version, shape, schema) of each version.
fn bank_versions() -> Vec<(&'static str, u32, &'static str, Value)> {
    fn of<E: Event + Shape>() -> (&'static str, u32, &'static str, Value) {
        (E::NAME, E::VERSION, E::SHAPE, E::json_schema())
    }
    vec![
        of::<bank::Opened>(),
        of::<bank::OpenedV1>(),
        of::<bank::Deposited>(),
        of::<bank::Withdrawn>(),
    ]
}

#[test]
fn the_declarations_here_are_the_examples_locked_shapes() {
    let lock =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/events.lock")).unwrap();
    let section: Vec<&str> = lock
        .lines()
        .skip_while(|line| *line != "[bank]")
        .skip(1)
        .take_while(|line| !line.starts_with('['))
        .filter(|line| !line.is_empty())
        .collect();
    for (name, version, shape, _) in bank_versions() {
        let prefix = format!("{name} v{version} ");
        let line = section
            .iter()
            .find(|line| line.starts_with(&prefix))
            .unwrap_or_else(|| panic!("{name} v{version} is not in events.lock"));
        assert!(line.ends_with(&format!(" {shape}")), "{line} vs {shape}");
    }
}

#[test]
fn every_golden_payload_validates_against_its_versions_schema() {
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/golden/bank");
    let schemas: BTreeMap<(String, u32), Value> = bank_versions()
        .into_iter()
        .map(|(name, version, _, schema)| ((name.to_owned(), version), schema))
        .collect();
    let mut checked = 0;
    for entry in std::fs::read_dir(root).unwrap() {
        let dir = entry.unwrap().path();
        let name = dir.file_name().unwrap().to_string_lossy().into_owned();
        for file in std::fs::read_dir(&dir).unwrap() {
            let file = file.unwrap().path();
            let stem = file.file_stem().unwrap().to_string_lossy().into_owned();
            let version: u32 = stem.strip_prefix('v').unwrap().parse().unwrap();
            let payload: Value =
                serde_json::from_str(&std::fs::read_to_string(&file).unwrap()).unwrap();
            let schema = schemas
                .get(&(name.clone(), version))
                .unwrap_or_else(|| panic!("no schema for {name} v{version}"));
            if let Err(error) = validate(schema, &payload) {
                panic!("{name} v{version}: {error}\nschema: {schema}\npayload: {payload}");
            }
            checked += 1;
        }
    }
    assert_eq!(checked, 4, "one golden payload per version");
}

#[test]
fn the_schema_rejects_what_the_type_would_not_read() {
    let schema = <bank::Opened as Shape>::json_schema();
    assert!(validate(&schema, &json!({"owner": "Ada", "overdraft_limit": 5})).is_ok());
    assert!(
        validate(&schema, &json!({"owner": "Ada"})).is_err(),
        "a field is missing"
    );
    assert!(validate(&schema, &json!({"owner": 1, "overdraft_limit": 5})).is_err());
    assert!(validate(&schema, &json!({"owner": "Ada", "overdraft_limit": -1})).is_err());
    // serde ignores unknown fields unless told otherwise; so does the schema.
    assert!(
        validate(
            &schema,
            &json!({"owner": "A", "overdraft_limit": 5, "x": 1})
        )
        .is_ok()
    );
}

// Nested types, serde attributes and enums.

#[derive(Shape, Serialize, Deserialize, Debug, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct Money {
    amount_cents: u64,
    #[serde(default)]
    currency_code: String,
    #[serde(rename = "memo")]
    note: Option<String>,
    #[serde(skip)]
    cache: u8,
}

#[derive(Shape, Serialize, Deserialize, Debug, PartialEq)]
enum Method {
    Cash,
    Card { last4: String },
    Voucher(String),
    Split(u8, u8),
}

#[derive(Event, Serialize, Deserialize, Debug, PartialEq)]
#[event(name = "invoice.settled")]
struct Settled {
    amounts: Vec<Money>,
    method: Method,
    tags: BTreeMap<String, (u8, bool)>,
}

#[test]
fn nested_types_serde_attributes_and_enums_are_described() {
    let schema = <Settled as Shape>::json_schema();
    let value = Settled {
        amounts: vec![Money {
            amount_cents: 5,
            currency_code: "EUR".into(),
            note: None,
            cache: 0,
        }],
        method: Method::Card {
            last4: "4242".into(),
        },
        tags: BTreeMap::from([("a".to_owned(), (1, true))]),
    };
    // What serde writes validates.
    for method in [
        Method::Cash,
        Method::Voucher("x".into()),
        Method::Split(1, 2),
        Method::Card { last4: "1".into() },
    ] {
        let payload = serde_json::to_value(Settled {
            method,
            ..clone(&value)
        })
        .unwrap();
        validate(&schema, &payload).unwrap();
    }
    let money = <Money as Shape>::json_schema();
    assert!(
        validate(&money, &json!({"amountCents": 1})).is_ok(),
        "defaults and options"
    );
    assert!(
        validate(&money, &json!({"amount_cents": 1})).is_err(),
        "renamed"
    );
    assert!(
        validate(&money, &json!({"amountCents": 1, "x": 0})).is_err(),
        "denied"
    );
    assert!(validate(&money, &json!({"amountCents": 1, "memo": null})).is_ok());
    let method = <Method as Shape>::json_schema();
    assert!(validate(&method, &json!("Cash")).is_ok());
    assert!(validate(&method, &json!("Cheque")).is_err());
    assert!(validate(&method, &json!({"Split": [1, 2, 3]})).is_err());
}

fn clone(settled: &Settled) -> Settled {
    serde_json::from_value(serde_json::to_value(settled).unwrap()).unwrap()
}

/// Validates `value` against `schema`, for the keywords the derive emits.
fn validate(schema: &Value, value: &Value) -> Result<(), String> {
    let Some(schema) = schema.as_object() else {
        return match schema {
            Value::Bool(true) => Ok(()),
            _ => Err(format!("{value} is not allowed here")),
        };
    };
    for (keyword, expected) in schema {
        match keyword.as_str() {
            "type" => {
                let ok = match expected.as_str().unwrap() {
                    "object" => value.is_object(),
                    "array" => value.is_array(),
                    "string" => value.is_string(),
                    "integer" => value.is_i64() || value.is_u64(),
                    "number" => value.is_number(),
                    "boolean" => value.is_boolean(),
                    "null" => value.is_null(),
                    other => return Err(format!("unknown type {other}")),
                };
                if !ok {
                    return Err(format!("{value} is not of type {expected}"));
                }
            }
            "properties" => {
                for (key, sub) in expected.as_object().unwrap() {
                    if let Some(field) = value.get(key) {
                        validate(sub, field).map_err(|e| format!("{key}: {e}"))?;
                    }
                }
            }
            "required" => {
                for key in expected.as_array().unwrap() {
                    if value.get(key.as_str().unwrap()).is_none() {
                        return Err(format!("missing {key}"));
                    }
                }
            }
            "additionalProperties" => {
                let known = schema.get("properties").and_then(Value::as_object);
                for (key, field) in value.as_object().into_iter().flatten() {
                    if known.is_none_or(|known| !known.contains_key(key)) {
                        validate(expected, field).map_err(|e| format!("{key}: {e}"))?;
                    }
                }
            }
            "items" => {
                let skip = schema
                    .get("prefixItems")
                    .and_then(Value::as_array)
                    .map_or(0, Vec::len);
                for item in value.as_array().into_iter().flatten().skip(skip) {
                    validate(expected, item)?;
                }
            }
            "prefixItems" => {
                for (sub, item) in expected
                    .as_array()
                    .unwrap()
                    .iter()
                    .zip(value.as_array().into_iter().flatten())
                {
                    validate(sub, item)?;
                }
            }
            "minItems" | "maxItems" => {
                let len = value.as_array().map_or(0, Vec::len) as u64;
                let bound = expected.as_u64().unwrap();
                if (keyword == "minItems" && len < bound) || (keyword == "maxItems" && len > bound)
                {
                    return Err(format!("{len} items, {keyword} {bound}"));
                }
            }
            "minimum" | "maximum" => {
                if let (Some(number), Some(bound)) = (value.as_f64(), expected.as_f64())
                    && ((keyword == "minimum" && number < bound)
                        || (keyword == "maximum" && number > bound))
                {
                    return Err(format!("{number} is out of range ({keyword} {bound})"));
                }
            }
            "minLength" | "maxLength" => {
                let len = value.as_str().map_or(0, |s| s.chars().count()) as u64;
                let bound = expected.as_u64().unwrap();
                if (keyword == "minLength" && len < bound)
                    || (keyword == "maxLength" && len > bound)
                {
                    return Err(format!("length {len}, {keyword} {bound}"));
                }
            }
            "const" => {
                if value != expected {
                    return Err(format!("{value} is not {expected}"));
                }
            }
            "not" => {
                if validate(expected, value).is_ok() {
                    return Err(format!("{value} matches a `not`"));
                }
            }
            "anyOf" => {
                if !expected
                    .as_array()
                    .unwrap()
                    .iter()
                    .any(|sub| validate(sub, value).is_ok())
                {
                    return Err(format!("{value} matches no `anyOf`"));
                }
            }
            "oneOf" => {
                let matches = expected
                    .as_array()
                    .unwrap()
                    .iter()
                    .filter(|sub| validate(sub, value).is_ok())
                    .count();
                if matches != 1 {
                    return Err(format!("{value} matches {matches} of `oneOf`"));
                }
            }
            "format" => {}
            other => return Err(format!("the validator does not know `{other}`")),
        }
    }
    Ok(())
}

// The registry export: every version of every event of a set, and the validator the CLI uses.

/// An event enum whose `ItemAdded` variant is version 2 of a chain declared as a struct.
#[derive(EventEnum, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[event(prefix = "shop.")]
enum ShopEvent {
    Opened {
        owner: String,
    },
    #[event(version = 2, previous = ItemAddedV1)]
    ItemAdded {
        sku: String,
        qty: u32,
    },
    Closed,
    Renamed(String),
}

#[derive(Event, Serialize, Deserialize)]
#[event(name = "shop.item_added")]
struct ItemAddedV1 {
    sku: String,
}

impl From<ItemAddedV1> for ShopEvent {
    fn from(old: ItemAddedV1) -> Self {
        ShopEvent::ItemAdded {
            sku: old.sku,
            qty: 1,
        }
    }
}

#[test]
fn an_event_enum_exports_each_variant_and_the_retired_versions_of_its_chains() {
    let schemas = <ShopEvent as EventEnum>::event_schemas();
    let versions: Vec<(&str, u32)> = schemas
        .iter()
        .map(|s| (s.name.as_str(), s.version))
        .collect();
    assert_eq!(
        versions,
        [
            ("shop.opened", 1),
            ("shop.item_added", 2),
            ("shop.item_added", 1),
            ("shop.closed", 1),
            ("shop.renamed", 1),
        ]
    );
    // What each variant stores validates against its schema, with both validators; what the
    // variant would not read does not.
    let events = [
        ShopEvent::Opened {
            owner: "Ada".into(),
        },
        ShopEvent::ItemAdded {
            sku: "a".into(),
            qty: 2,
        },
        ShopEvent::Closed,
        ShopEvent::Renamed("B".into()),
    ];
    for event in events {
        let payload = event.encode().unwrap();
        let schema = schemas
            .iter()
            .find(|s| s.name == event.name() && s.version == event.schema_version())
            .unwrap();
        validate(&schema.schema, &payload).unwrap();
        eventsource::json_schema::validate(&schema.schema, &payload).unwrap();
        eventsource::json_schema::validate(&schema.document(), &payload).unwrap();
    }
    let item_added_v2 = &schemas[1].schema;
    assert!(eventsource::json_schema::validate(item_added_v2, &json!({"sku": "a"})).is_err());
    let item_added_v1 = &schemas[2].schema;
    assert!(eventsource::json_schema::validate(item_added_v1, &json!({"sku": "a"})).is_ok());
}

#[test]
fn the_committed_bank_schemas_are_what_the_code_exports_and_accept_the_golden_payloads() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/schemas/bank");
    let files = eventsource::json_schema::read_json_schemas(dir.as_ref()).unwrap();
    let versions = bank_versions();
    assert_eq!(files.len(), versions.len());
    for (name, version, _, schema) in versions {
        let file = &files[&(name.to_owned(), version)];
        let exported = eventsource::json_schema::EventSchema::new(name, version, schema);
        assert_eq!(*file, exported.document(), "{name} v{version}");
        let golden = format!(
            "{}/tests/golden/bank/{name}/v{version}.json",
            env!("CARGO_MANIFEST_DIR")
        );
        let payload: Value =
            serde_json::from_str(&std::fs::read_to_string(golden).unwrap()).unwrap();
        eventsource::json_schema::validate(file, &payload).unwrap();
        assert!(
            eventsource::json_schema::validate(file, &json!([])).is_err(),
            "{name} v{version} is an object"
        );
    }
}
