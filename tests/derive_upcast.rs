//! `#[derive(Event)]`: stored payloads of every version of a chain decode as the newest one.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a test fails by panicking

use eventsource::prelude::*;
use eventsource::{DecodeFailure, NewEvent};
use serde_json::json;

/// Version 3, the current shape.
#[derive(Event, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[event(name = "account.opened", version = 3, previous = OpenedV2)]
struct Opened {
    owner: String,
    currency: String,
}

/// Version 2: the currency was free text.
#[derive(Event, Deserialize, Debug)]
#[event(name = "account.opened", version = 2, previous = OpenedV1)]
struct OpenedV2 {
    owner: String,
    currency_name: String,
}

/// Version 1: no currency at all.
#[derive(Event, Deserialize, Debug)]
#[event(name = "account.opened", version = 1)]
struct OpenedV1 {
    owner: String,
}

impl From<OpenedV1> for OpenedV2 {
    fn from(v1: OpenedV1) -> Self {
        OpenedV2 {
            owner: v1.owner,
            currency_name: "euro".into(),
        }
    }
}

impl TryFrom<OpenedV2> for Opened {
    type Error = String;
    fn try_from(v2: OpenedV2) -> Result<Self, String> {
        let currency = match v2.currency_name.as_str() {
            "euro" => "EUR",
            "dollar" => "USD",
            other => return Err(format!("unknown currency `{other}`")),
        };
        Ok(Opened {
            owner: v2.owner,
            currency: currency.into(),
        })
    }
}

#[test]
fn constants_come_from_the_attribute() {
    assert_eq!(<Opened as Event>::NAME, "account.opened");
    assert_eq!(<Opened as Event>::VERSION, 3);
    assert_eq!(<OpenedV1 as Event>::VERSION, 1);
}

#[test]
fn name_and_version_default_to_the_type_name_and_1() {
    #[derive(Event, Deserialize)]
    struct Closed {}
    assert_eq!(<Closed as Event>::NAME, "Closed");
    assert_eq!(<Closed as Event>::VERSION, 1);
}

#[test]
fn every_version_decodes_as_the_newest() {
    let ada = |currency: &str| Opened {
        owner: "ada".into(),
        currency: currency.into(),
    };
    let v1 = Opened::decode_version(1, &json!({ "owner": "ada" })).unwrap();
    assert_eq!(v1, ada("EUR"));
    let v2 = Opened::decode_version(2, &json!({ "owner": "ada", "currency_name": "dollar" }));
    assert_eq!(v2.unwrap(), ada("USD"));
    let v3 = Opened::decode_version(3, &json!({ "owner": "ada", "currency": "CHF" }));
    assert_eq!(v3.unwrap(), ada("CHF"));
}

#[test]
fn a_failing_try_from_step_is_a_typed_upcast_error() {
    let failure =
        Opened::decode_version(2, &json!({ "owner": "ada", "currency_name": "doubloon" }))
            .unwrap_err();
    match &failure {
        DecodeFailure::Upcast {
            event,
            from,
            to,
            message,
        } => {
            assert_eq!(*event, "account.opened");
            assert_eq!((*from, *to), (2, 3));
            assert_eq!(message, "unknown currency `doubloon`");
        }
        other => panic!("expected an upcast failure, got {other:?}"),
    }
    assert_eq!(
        failure.to_string(),
        "upcast of `account.opened` from schema version 2 to 3 failed: unknown currency `doubloon`"
    );
}

#[test]
fn versions_outside_the_chain_are_typed_errors() {
    let payload = json!({ "owner": "ada" });
    assert!(matches!(
        Opened::decode_version(4, &payload),
        Err(DecodeFailure::VersionTooNew {
            found: 4,
            latest: 3
        })
    ));
    assert!(matches!(
        Opened::decode_version(0, &payload),
        Err(DecodeFailure::UnknownVersion {
            found: 0,
            latest: 3
        })
    ));
}

#[test]
fn a_payload_of_the_wrong_shape_names_its_version() {
    let failure = Opened::decode_version(1, &json!({ "name": "ada" })).unwrap_err();
    assert!(
        matches!(failure, DecodeFailure::Payload { version: 1, .. }),
        "{failure:?}"
    );
}

/// What a failure is, without the deserializer's message (parsing text adds a line and
/// column to it).
fn kind(failure: &DecodeFailure) -> String {
    match failure {
        DecodeFailure::Payload { version, .. } => format!("payload of v{version}"),
        other => other.to_string(),
    }
}

/// Each `(version, payload)` decodes from its JSON text (`decode_version_json`, what a load
/// from PostgreSQL calls) exactly as from its value (`decode_version`).
fn decodes_alike<E: Event + PartialEq + std::fmt::Debug>(cases: &[(u32, serde_json::Value)]) {
    for (version, payload) in cases {
        let text = payload.to_string();
        let from_value = E::decode_version(*version, payload);
        let from_text = E::decode_version_json(*version, &text);
        match (&from_value, &from_text) {
            (Ok(a), Ok(b)) => assert_eq!(a, b, "v{version} {text}"),
            (Err(a), Err(b)) => assert_eq!(kind(a), kind(b), "v{version} {text}"),
            _ => panic!(
                "v{version} {text}: {from_value:?} from the value, {from_text:?} from the text"
            ),
        }
    }
}

#[test]
fn json_text_decodes_as_its_value_at_every_version() {
    decodes_alike::<Opened>(&[
        (1, json!({ "owner": "ada" })),
        (2, json!({ "owner": "ada", "currency_name": "dollar" })),
        (3, json!({ "owner": "ada", "currency": "CHF" })),
        (
            3,
            json!({ "owner": "a\u{e9}\"\n\u{0}", "currency": "€", "extra": [1, {}] }),
        ),
        // Failures of every kind, at every step.
        (2, json!({ "owner": "ada", "currency_name": "doubloon" })),
        (1, json!({ "name": "ada" })),
        (2, json!(null)),
        (3, json!({ "owner": 7, "currency": "CHF" })),
        (3, json!([])),
        (4, json!({ "owner": "ada" })),
        (0, json!({ "owner": "ada" })),
    ]);
}

#[test]
fn json_text_that_does_not_fit_is_a_typed_payload_failure() {
    for (version, text) in [
        (3, r#"{"owner": "ada", "currency": "CHF"} trailing"#),
        (3, "{"),
        (3, ""),
        (1, r#"{"owner": "\ud800"}"#),
        (2, r#"{"owner": "ada", "currency_name": 1e400}"#),
    ] {
        match Opened::decode_version_json(version, text) {
            Err(DecodeFailure::Payload { version: v, .. }) => assert_eq!(v, version, "{text}"),
            other => panic!("{text}: expected a payload failure, got {other:?}"),
        }
    }
    // The version is checked before the text is read.
    assert!(matches!(
        Opened::decode_version_json(9, "not json"),
        Err(DecodeFailure::VersionTooNew {
            found: 9,
            latest: 3
        })
    ));
}

#[test]
fn the_generated_event_enum_decodes_json_text_as_values() {
    for (version, payload) in [
        (1, json!({ "owner": "ada" })),
        (3, json!({ "owner": "ada", "currency": "CHF" })),
        (3, json!({ "owner": 1 })),
        (7, json!({})),
    ] {
        let from_value = AccountEvent::decode("account.opened", version, &payload);
        let from_text = AccountEvent::decode_json("account.opened", version, &payload.to_string());
        match (from_value, from_text) {
            (Ok(a), Ok(b)) => assert_eq!(a, b),
            (Err(a), Err(b)) => assert_eq!(kind(&a), kind(&b)),
            (a, b) => panic!("{a:?} from the value, {b:?} from the text"),
        }
    }
    assert!(matches!(
        AccountEvent::decode_json("account.closed", 1, "{}"),
        Err(DecodeFailure::UnknownEvent)
    ));
}

// The chain end to end: rows written by old code load through the repository.

#[derive(Aggregate, Default, Serialize, Deserialize, Debug)]
#[aggregate(name = "account", events(Opened))]
struct Account {
    owner: String,
    currency: String,
}

impl Apply<Opened> for Account {
    fn apply(&mut self, event: &Opened) {
        self.owner = event.owner.clone();
        self.currency = event.currency.clone();
    }
}

#[tokio::test]
async fn old_rows_load_through_the_repository() {
    let store = MemoryStore::new();
    let repo = Repository::<Account, _>::new(store.clone());
    for (id, version, payload) in [
        (1, 1, json!({ "owner": "ada" })),
        (2, 2, json!({ "owner": "bob", "currency_name": "dollar" })),
        (3, 3, json!({ "owner": "cy", "currency": "CHF" })),
    ] {
        let event = NewEvent::new("account.opened", version, payload);
        store
            .append(&repo.stream_id(id), ExpectedVersion::NoStream, vec![event])
            .await
            .unwrap();
    }
    let currencies = [
        repo.load(1).await.unwrap().state.currency,
        repo.load(2).await.unwrap().state.currency,
        repo.load(3).await.unwrap().state.currency,
    ];
    assert_eq!(currencies, ["EUR", "USD", "CHF"]);
}

/// A chain across crates: versions 1 and 2 of `ledger.opened` are declared in another crate
/// (`eventsource-upstream-events`), version 3 and the aggregate here. The derive marks a
/// `previous` from another crate as retired (`SupersededBy` is generic over the newer
/// version, which the orphan rule allows), and the aggregate lists the newest version.
mod cross_crate {
    use eventsource::prelude::*;
    use eventsource_upstream_events::{OpenedV1, OpenedV2};
    use serde_json::json;

    #[derive(Event, Serialize, Deserialize, Clone, Debug, PartialEq)]
    #[event(name = "ledger.opened", version = 3, previous = OpenedV2)]
    pub(super) struct Opened {
        owner: String,
        overdraft_limit: u64,
        #[serde(default)]
        currency: String,
    }

    impl From<OpenedV2> for Opened {
        fn from(old: OpenedV2) -> Self {
            Opened {
                owner: old.owner,
                overdraft_limit: old.overdraft_limit,
                currency: "EUR".into(),
            }
        }
    }

    #[derive(Aggregate, Default, Serialize, Deserialize)]
    #[aggregate(name = "ledger", events(Opened))]
    pub(super) struct Ledger {
        owner: String,
    }

    impl Apply<Opened> for Ledger {
        fn apply(&mut self, event: &Opened) {
            self.owner.clone_from(&event.owner);
        }
    }

    #[test]
    fn a_chain_whose_older_versions_are_in_another_crate_decodes_and_lists_its_schemas() {
        let v1 = <Opened as Event>::decode_version(1, &json!({"owner": "Ada"})).unwrap();
        assert_eq!(v1.overdraft_limit, 0);
        assert_eq!(v1.currency, "EUR");
        let versions: Vec<(String, u32)> = <LedgerEvent as EventEnum>::event_schemas()
            .into_iter()
            .map(|schema| (schema.name, schema.version))
            .collect();
        let expected = [3, 2, 1].map(|version| ("ledger.opened".to_owned(), version));
        assert_eq!(versions, expected);
        // The older versions are marked retired (what an aggregate listing them is refused by).
        fn retired<T: eventsource::upcast::SupersededBy<S>, S>() {}
        retired::<OpenedV1, OpenedV2>();
        retired::<OpenedV2, Opened>();
    }
}
