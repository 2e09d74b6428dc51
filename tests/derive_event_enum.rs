//! `#[derive(EventEnum)]`: an enum whose variants are events, each stored under its own name and
//! version as the equivalent struct would be, decoded through its own upcaster chain, folded by
//! an aggregate that names the enum (`events = CartEvent`) and tested with given/when/then.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a test fails by panicking

use std::collections::BTreeMap;

use eventsource::prelude::*;
use eventsource::{DecodeFailure, LoadError, NewEvent};
use serde_json::json;

/// The cart's events: one enum, one event per variant.
#[derive(EventEnum, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[event(prefix = "cart.")]
enum CartEvent {
    /// `cart.opened` v1.
    Opened { owner: String },
    /// `cart.item_added` v3: v1 had no quantity, v2 named it `count` and allowed 0.
    #[event(version = 3, previous = ItemAddedV2)]
    ItemAdded { sku: String, qty: u32 },
    /// `cart.item_removed` v1, a tuple variant.
    ItemRemoved(String),
    /// A name kept from before the variant was renamed.
    #[event(name = "cart.checked_out")]
    Closed,
    /// `cart.currency_set` v2, whose step from v1 can fail.
    #[event(version = 2, previous = CurrencySetV1)]
    CurrencySet { code: String },
}

/// `cart.item_added` v2: a retired shape, kept so that stored rows still load.
#[derive(Event, Deserialize, Debug)]
#[event(name = "cart.item_added", version = 2, previous = ItemAddedV1)]
struct ItemAddedV2 {
    sku: String,
    count: u32,
}

/// `cart.item_added` v1.
#[derive(Event, Deserialize, Debug)]
#[event(name = "cart.item_added")]
struct ItemAddedV1 {
    sku: String,
}

impl From<ItemAddedV1> for ItemAddedV2 {
    fn from(v1: ItemAddedV1) -> Self {
        ItemAddedV2 {
            sku: v1.sku,
            count: 1,
        }
    }
}

// The last step goes to the enum: it builds the variant.
impl TryFrom<ItemAddedV2> for CartEvent {
    type Error = String;
    fn try_from(v2: ItemAddedV2) -> Result<Self, String> {
        match v2.count {
            0 => Err(format!("`{}` was added zero times", v2.sku)),
            qty => Ok(CartEvent::ItemAdded { sku: v2.sku, qty }),
        }
    }
}

/// `cart.currency_set` v1: free text.
#[derive(Event, Deserialize, Debug)]
#[event(name = "cart.currency_set")]
struct CurrencySetV1 {
    name: String,
}

// A step that (wrongly) makes another variant for some input: the decode refuses its result.
impl From<CurrencySetV1> for CartEvent {
    fn from(v1: CurrencySetV1) -> Self {
        match v1.name.as_str() {
            "euro" => CartEvent::CurrencySet { code: "EUR".into() },
            _ => CartEvent::Closed,
        }
    }
}

#[test]
fn each_variant_has_its_own_name_and_version() {
    assert_eq!(
        CartEvent::NAMES,
        [
            "cart.opened",
            "cart.item_added",
            "cart.item_removed",
            "cart.checked_out",
            "cart.currency_set"
        ]
    );
    let added = CartEvent::ItemAdded {
        sku: "A1".into(),
        qty: 2,
    };
    assert_eq!(
        (added.name(), added.schema_version()),
        ("cart.item_added", 3)
    );
    let removed = CartEvent::ItemRemoved("A1".into());
    assert_eq!(
        (removed.name(), removed.schema_version()),
        ("cart.item_removed", 1)
    );
    assert_eq!(CartEvent::Closed.name(), "cart.checked_out");
}

#[test]
fn names_default_to_the_variant_in_snake_case() {
    #[derive(EventEnum, Serialize, Deserialize, Clone)]
    enum Plain {
        ItemAdded,
        Http2Upgraded,
    }
    assert_eq!(Plain::NAMES, ["item_added", "http2_upgraded"]);
}

#[test]
fn a_variant_is_stored_as_the_equivalent_struct_event() {
    // The struct a user may have had before moving to an enum (under other names: one crate
    // declares each event version once).
    #[derive(Event, Serialize, Deserialize, Debug, PartialEq)]
    #[event(name = "cart.opened_as_struct")]
    struct Opened {
        owner: String,
    }
    #[derive(Event, Serialize, Deserialize, Debug, PartialEq)]
    #[event(name = "cart.checked_out_as_struct")]
    struct CheckedOut;

    let opened = CartEvent::Opened {
        owner: "ada".into(),
    };
    let payload = opened.encode().unwrap();
    assert_eq!(
        payload,
        json!({ "owner": "ada" }),
        "no enum tag: the name is stored apart"
    );
    let as_struct = serde_json::to_value(Opened {
        owner: "ada".into(),
    })
    .unwrap();
    assert_eq!(payload, as_struct);
    assert_eq!(
        Opened::decode_version(1, &payload).unwrap(),
        Opened {
            owner: "ada".into()
        }
    );
    assert_eq!(
        CartEvent::Closed.encode().unwrap(),
        serde_json::to_value(CheckedOut).unwrap()
    );
    assert_eq!(
        CartEvent::ItemRemoved("A1".into()).encode().unwrap(),
        json!("A1")
    );
    // And what the struct wrote decodes as the variant.
    let decoded = CartEvent::decode("cart.opened", 1, &as_struct).unwrap();
    assert_eq!(decoded, opened);
    assert_eq!(
        CartEvent::decode("cart.checked_out", 1, &json!(null)).unwrap(),
        CartEvent::Closed
    );
}

#[test]
fn every_stored_version_decodes_as_the_current_variant() {
    let added = |qty| CartEvent::ItemAdded {
        sku: "A1".into(),
        qty,
    };
    let v1 = CartEvent::decode("cart.item_added", 1, &json!({ "sku": "A1" }));
    assert_eq!(v1.unwrap(), added(1));
    let v2 = CartEvent::decode("cart.item_added", 2, &json!({ "sku": "A1", "count": 4 }));
    assert_eq!(v2.unwrap(), added(4));
    let v3 = CartEvent::decode("cart.item_added", 3, &json!({ "sku": "A1", "qty": 7 }));
    assert_eq!(v3.unwrap(), added(7));
}

#[test]
fn decoding_failures_are_typed() {
    let failure =
        CartEvent::decode("cart.item_added", 2, &json!({ "sku": "A1", "count": 0 })).unwrap_err();
    assert_eq!(
        failure.to_string(),
        "upcast of `cart.item_added` from schema version 2 to 3 failed: `A1` was added zero times"
    );
    let failure =
        CartEvent::decode("cart.currency_set", 1, &json!({ "name": "ducat" })).unwrap_err();
    assert!(
        matches!(
            &failure,
            DecodeFailure::Upcast { event: "cart.currency_set", from: 1, to: 2, message }
                if message.contains("`cart.checked_out`")
        ),
        "a step must make its own variant: {failure}"
    );
    assert!(matches!(
        CartEvent::decode("cart.item_added", 4, &json!({})),
        Err(DecodeFailure::VersionTooNew {
            found: 4,
            latest: 3
        })
    ));
    assert!(matches!(
        CartEvent::decode("cart.opened", 0, &json!({})),
        Err(DecodeFailure::UnknownVersion {
            found: 0,
            latest: 1
        })
    ));
    assert!(matches!(
        CartEvent::decode("cart.item_added", 0, &json!({})),
        Err(DecodeFailure::UnknownVersion {
            found: 0,
            latest: 3
        })
    ));
    assert!(matches!(
        CartEvent::decode("cart.lost", 1, &json!({})),
        Err(DecodeFailure::UnknownEvent)
    ));
    // Another variant's name never decodes a payload as this one.
    assert!(matches!(
        CartEvent::decode("cart.opened", 1, &json!({ "sku": "A1", "qty": 1 })),
        Err(DecodeFailure::Payload { version: 1, .. })
    ));
    assert!(matches!(
        CartEvent::decode("cart.checked_out", 1, &json!({ "owner": "ada" })),
        Err(DecodeFailure::Payload { version: 1, .. })
    ));
}

/// What a failure is, without the deserializer's message (parsing text adds a line and
/// column to it).
fn kind(failure: &DecodeFailure) -> String {
    match failure {
        DecodeFailure::Payload { version, .. } => format!("payload of v{version}"),
        other => other.to_string(),
    }
}

#[test]
fn json_text_decodes_as_its_value_for_every_variant_shape() {
    for (name, version, payload) in [
        ("cart.opened", 1, json!({ "owner": "ada" })),
        ("cart.item_added", 1, json!({ "sku": "A1" })),
        ("cart.item_added", 2, json!({ "sku": "A1", "count": 4 })),
        ("cart.item_added", 3, json!({ "sku": "A1", "qty": 7 })),
        ("cart.item_removed", 1, json!("A1")),
        ("cart.checked_out", 1, json!(null)),
        ("cart.currency_set", 1, json!({ "name": "euro" })),
        ("cart.currency_set", 2, json!({ "code": "CHF" })),
        // Failures: each kind, each variant shape.
        ("cart.item_added", 2, json!({ "sku": "A1", "count": 0 })),
        ("cart.currency_set", 1, json!({ "name": "ducat" })),
        ("cart.item_added", 4, json!({})),
        ("cart.opened", 0, json!({})),
        ("cart.lost", 1, json!({})),
        ("cart.opened", 1, json!({ "sku": "A1", "qty": 1 })),
        ("cart.checked_out", 1, json!({ "owner": "ada" })),
        ("cart.item_removed", 1, json!(["A1"])),
        ("cart.item_added", 3, json!({ "sku": "A1", "qty": -1 })),
    ] {
        let text = payload.to_string();
        let from_value = CartEvent::decode(name, version, &payload);
        let from_text = CartEvent::decode_json(name, version, &text);
        match (&from_value, &from_text) {
            (Ok(a), Ok(b)) => assert_eq!(a, b, "{name} v{version} {text}"),
            (Err(a), Err(b)) => assert_eq!(kind(a), kind(b), "{name} v{version} {text}"),
            _ => panic!("{name} v{version} {text}: {from_value:?} against {from_text:?}"),
        }
    }
    // Text after the value, or none at all, is a payload failure of the stored version.
    for (name, text) in [
        ("cart.opened", r#"{"owner": "ada"} {}"#),
        ("cart.checked_out", "null x"),
        ("cart.item_removed", r#""A1"#),
        ("cart.opened", ""),
    ] {
        assert!(
            matches!(
                CartEvent::decode_json(name, 1, text),
                Err(DecodeFailure::Payload { version: 1, .. })
            ),
            "{name}: {text}"
        );
    }
}

// The aggregate folds the user's enum with one `Apply<CartEvent>`; its commands are listed
// structs, as before.

#[derive(Clone, Debug)]
struct Open {
    owner: String,
}

#[derive(Clone, Debug)]
struct Add {
    sku: String,
    qty: u32,
}

#[derive(Clone, Debug)]
struct Remove {
    sku: String,
}

#[derive(Debug, PartialEq, thiserror::Error)]
enum CartError {
    #[error("`{0}` is not in the cart")]
    NotInCart(String),
}

#[derive(Aggregate, Default, Serialize, Deserialize, Debug)]
#[aggregate(
    name = "cart",
    error = CartError,
    events = CartEvent,
    commands(Open, Add, Remove),
    snapshot(every = 3)
)]
struct Cart {
    owner: String,
    items: BTreeMap<String, u32>,
    closed: bool,
}

impl Apply<CartEvent> for Cart {
    fn apply(&mut self, event: &CartEvent) {
        match event {
            CartEvent::Opened { owner } => self.owner.clone_from(owner),
            CartEvent::ItemAdded { sku, qty } => *self.items.entry(sku.clone()).or_default() += qty,
            CartEvent::ItemRemoved(sku) => {
                self.items.remove(sku);
            }
            CartEvent::Closed => self.closed = true,
            CartEvent::CurrencySet { .. } => {}
        }
    }
}

impl Handle<Open> for Cart {
    fn handle(&self, command: Open) -> Result<Events<Self>, CartError> {
        Ok(Events::one(CartEvent::Opened {
            owner: command.owner,
        }))
    }
}

impl Handle<Add> for Cart {
    fn handle(&self, command: Add) -> Result<Events<Self>, CartError> {
        Ok(Events::one(CartEvent::ItemAdded {
            sku: command.sku,
            qty: command.qty,
        }))
    }
}

impl Handle<Remove> for Cart {
    fn handle(&self, command: Remove) -> Result<Events<Self>, CartError> {
        if !self.items.contains_key(&command.sku) {
            return Err(CartError::NotInCart(command.sku));
        }
        Ok(Events::one(CartEvent::ItemRemoved(command.sku)).and(CartEvent::Closed))
    }
}

#[test]
fn given_when_then_speaks_the_enum() {
    Cart::given([
        CartEvent::Opened {
            owner: "ada".into(),
        },
        CartEvent::ItemAdded {
            sku: "A1".into(),
            qty: 2,
        },
    ])
    .when(Remove { sku: "A1".into() })
    .then([CartEvent::ItemRemoved("A1".into()), CartEvent::Closed])
    .then_state(|cart| assert!(cart.items.is_empty() && cart.closed));

    Cart::given_nothing()
        .when(Remove { sku: "B2".into() })
        .then_error(CartError::NotInCart("B2".into()));

    let failure = Cart::given_nothing()
        .when(Add {
            sku: "A1".into(),
            qty: 1,
        })
        .check([CartEvent::ItemAdded {
            sku: "A1".into(),
            qty: 2,
        }])
        .unwrap_err();
    let text = failure.to_string();
    assert!(text.contains("qty: 1") && text.contains("qty: 2"), "{text}");
}

#[tokio::test]
async fn enum_events_round_trip_through_the_store_and_the_repository() {
    let store = MemoryStore::new();
    let carts = Repository::<Cart, _>::new(store.clone());
    carts
        .execute(
            "c1",
            Open {
                owner: "ada".into(),
            },
        )
        .await
        .unwrap();
    for qty in [1, 2] {
        let add = Add {
            sku: "A1".into(),
            qty,
        };
        carts.execute("c1", add).await.unwrap();
    }
    carts
        .execute("c1", Remove { sku: "A1".into() })
        .await
        .unwrap();

    // Stored one row per event, under the variant's name and version, without an enum tag.
    let rows = store
        .read_stream(&carts.stream_id("c1"), Version(1), 100)
        .await
        .unwrap();
    let stored: Vec<_> = rows
        .iter()
        .map(|r| (r.name.as_str(), r.schema_version, r.payload.clone()))
        .collect();
    assert_eq!(
        stored,
        [
            ("cart.opened", 1, json!({ "owner": "ada" })),
            ("cart.item_added", 3, json!({ "sku": "A1", "qty": 1 })),
            ("cart.item_added", 3, json!({ "sku": "A1", "qty": 2 })),
            ("cart.item_removed", 1, json!("A1")),
            ("cart.checked_out", 1, json!(null)),
        ]
    );

    // Loaded from the snapshot taken at 3 events plus the tail, and from scratch in the past.
    let loaded = carts.load("c1").await.unwrap();
    assert!(loaded.state.closed && loaded.state.items.is_empty());
    assert_eq!(loaded.snapshot_version, Some(Version(3)));
    let past = carts.load_at("c1", Version(3)).await.unwrap();
    assert_eq!(past.state.items.get("A1"), Some(&3));
    let history = carts.history("c1").await.unwrap();
    assert_eq!(history.len(), 5);
    assert_eq!(history[3].event, CartEvent::ItemRemoved("A1".into()));
}

#[tokio::test]
async fn rows_written_by_old_code_load_through_the_chain() {
    let store = MemoryStore::new();
    let carts = Repository::<Cart, _>::new(store.clone());
    let rows = vec![
        NewEvent::new("cart.opened", 1, json!({ "owner": "bob" })),
        NewEvent::new("cart.item_added", 1, json!({ "sku": "A1" })),
        NewEvent::new("cart.item_added", 2, json!({ "sku": "B2", "count": 5 })),
    ];
    store
        .append(&carts.stream_id("old"), ExpectedVersion::NoStream, rows)
        .await
        .unwrap();
    let cart = carts.load("old").await.unwrap().state;
    assert_eq!(cart.owner, "bob");
    assert_eq!(
        cart.items,
        BTreeMap::from([("A1".to_owned(), 1), ("B2".to_owned(), 5)])
    );

    // A step that rejects a stored row fails the load with the row named, and no panic.
    let bad = NewEvent::new("cart.item_added", 2, json!({ "sku": "C3", "count": 0 }));
    store
        .append(
            &carts.stream_id("old"),
            ExpectedVersion::Exact(Version(3)),
            vec![bad],
        )
        .await
        .unwrap();
    match carts.load("old").await {
        Err(LoadError::Decode(error)) => {
            assert_eq!((error.version, error.schema_version), (Version(4), 2));
            assert_eq!(error.name, "cart.item_added");
            assert!(
                matches!(error.source, DecodeFailure::Upcast { .. }),
                "{error}"
            );
        }
        other => panic!("expected a decode error, got {other:?}"),
    }
}

// An aggregate can name its own command enum too: one `Handle<CartCommand>`.

#[derive(Clone, Debug)]
enum CounterCommand {
    Bump,
    Reset,
}

#[derive(EventEnum, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[event(prefix = "counter.")]
enum CounterEvent {
    Bumped { by: u32 },
    Reset,
}

#[derive(Aggregate, Default, Serialize, Deserialize)]
#[aggregate(events = CounterEvent, commands = CounterCommand)]
struct Counter {
    value: u32,
}

impl Apply<CounterEvent> for Counter {
    fn apply(&mut self, event: &CounterEvent) {
        match event {
            CounterEvent::Bumped { by } => self.value += by,
            CounterEvent::Reset => self.value = 0,
        }
    }
}

impl Handle<CounterCommand> for Counter {
    fn handle(&self, command: CounterCommand) -> Result<Events<Self>, std::convert::Infallible> {
        Ok(match command {
            CounterCommand::Bump => Events::one(CounterEvent::Bumped { by: 1 }),
            CounterCommand::Reset => Events::one(CounterEvent::Reset),
        })
    }
}

#[tokio::test]
async fn an_aggregate_can_name_its_own_command_enum() {
    Counter::given([CounterEvent::Bumped { by: 2 }])
        .when(CounterCommand::Bump)
        .then([CounterEvent::Bumped { by: 1 }])
        .then_state(|counter| assert_eq!(counter.value, 3));
    let counters = Repository::<Counter, _>::new(MemoryStore::new());
    counters.execute(1, CounterCommand::Bump).await.unwrap();
    counters.execute(1, CounterCommand::Bump).await.unwrap();
    assert_eq!(counters.load(1).await.unwrap().state.value, 2);
    counters.execute(1, CounterCommand::Reset).await.unwrap();
    assert_eq!(counters.load(1).await.unwrap().state.value, 0);
    // Its idempotency fingerprint is the enum's name; without `Serialize` its variants are
    // not told apart (tests/idempotency.rs has one that is serializable).
    assert_eq!(
        <Counter as eventsource::Aggregate>::command_fingerprint(&CounterCommand::Bump),
        Some(eventsource::CommandFingerprint::named("CounterCommand"))
    );
}

// serde attributes the equivalent struct would honour are honoured by the variant too.

#[derive(Shape, Serialize, Deserialize, Clone, Debug, PartialEq)]
struct Address {
    city: String,
}

#[derive(EventEnum, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[event(prefix = "shop.")]
#[serde(
    deny_unknown_fields,
    rename_all = "kebab-case",
    rename_all_fields = "camelCase"
)]
enum ShopEvent {
    Moved {
        shop_id: u32,
        #[serde(default)]
        note: Option<String>,
    },
    #[serde(rename = "closed-for-good", alias = "gone")]
    Closed,
}

#[derive(EventEnum, Serialize, Deserialize, Clone, Debug, PartialEq)]
enum Flattened {
    Registered {
        name: String,
        #[serde(flatten)]
        address: Address,
    },
}

#[derive(EventEnum, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[event(prefix = "light.")]
enum Light {
    // Discriminants do not change which variant a name decodes as.
    Off = 7,
    On = 3,
}

#[test]
fn serde_attributes_apply_as_on_the_equivalent_struct() {
    let moved = ShopEvent::Moved {
        shop_id: 4,
        note: None,
    };
    assert_eq!(moved.name(), "shop.moved");
    assert_eq!(
        moved.encode().unwrap(),
        json!({ "shopId": 4, "note": null })
    );
    assert_eq!(
        ShopEvent::decode("shop.moved", 1, &json!({ "shopId": 4 })).unwrap(),
        moved
    );
    // `deny_unknown_fields` holds for each variant's payload.
    assert!(matches!(
        ShopEvent::decode("shop.moved", 1, &json!({ "shopId": 4, "extra": 1 })),
        Err(DecodeFailure::Payload { .. })
    ));
    // Variant renames do not matter: the stored name is the event's.
    assert_eq!(ShopEvent::Closed.name(), "shop.closed");
    assert_eq!(
        ShopEvent::decode("shop.closed", 1, &json!(null)).unwrap(),
        ShopEvent::Closed
    );

    let registered = Flattened::Registered {
        name: "ada".into(),
        address: Address {
            city: "Paris".into(),
        },
    };
    let payload = registered.encode().unwrap();
    assert_eq!(payload, json!({ "name": "ada", "city": "Paris" }));
    assert_eq!(
        Flattened::decode("registered", 1, &payload).unwrap(),
        registered
    );

    assert_eq!(Light::Off.encode().unwrap(), json!(null));
    assert_eq!(
        Light::decode("light.on", 1, &json!(null)).unwrap(),
        Light::On
    );
    assert_eq!(
        Light::decode("light.off", 1, &json!(null)).unwrap(),
        Light::Off
    );
}

#[test]
fn a_hand_written_serialize_that_is_not_a_variant_fails_to_encode_with_a_reason() {
    #[derive(EventEnum, Deserialize, Clone)]
    enum Odd {
        One,
    }
    impl Serialize for Odd {
        fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
            serializer.serialize_str("one")
        }
    }
    let error = Odd::One.encode().unwrap_err().to_string();
    assert!(
        error.contains("must serialize as one of its variants"),
        "{error}"
    );
}

// A projection handles the whole enum: `type Handles = CartEvent`, one `Project<CartEvent>`.

/// Items per cart, from the global log.
#[derive(Default)]
struct CartSizes {
    items: BTreeMap<String, u32>,
}

impl eventsource::Projection for CartSizes {
    const NAME: &'static str = "cart_sizes";
    type Handles = CartEvent;
    type Error = std::convert::Infallible;
}

impl eventsource::Project<CartEvent> for CartSizes {
    async fn project(
        &mut self,
        event: CartEvent,
        record: &eventsource::RecordedEvent,
        _: &mut (),
    ) -> Result<(), std::convert::Infallible> {
        let cart = record.stream_id.to_string();
        match event {
            CartEvent::ItemAdded { qty, .. } => *self.items.entry(cart).or_default() += qty,
            CartEvent::ItemRemoved(_) => {
                self.items.remove(&cart);
            }
            _ => {}
        }
        Ok(())
    }
}

fn quick() -> eventsource::RunnerOptions {
    eventsource::RunnerOptions {
        max_retries: 1,
        backoff: std::time::Duration::from_millis(1),
        ..eventsource::RunnerOptions::default()
    }
}

#[tokio::test]
async fn a_projection_handles_an_event_enum() {
    let store = MemoryStore::new();
    let carts = Repository::<Cart, _>::new(store.clone());
    let counters = Repository::<Counter, _>::new(store.clone());
    let add = |qty| Add {
        sku: "A1".into(),
        qty,
    };
    carts.execute("c1", add(2)).await.unwrap();
    counters.execute(1, CounterCommand::Bump).await.unwrap(); // another enum's event: skipped
    carts.execute("c2", add(5)).await.unwrap();
    // A row from old code: upcast on the way in.
    let old = NewEvent::new("cart.item_added", 1, json!({ "sku": "B2" }));
    store
        .append(&carts.stream_id("c1"), ExpectedVersion::Any, vec![old])
        .await
        .unwrap();
    carts
        .execute("c2", Remove { sku: "A1".into() })
        .await
        .unwrap();

    let mut runner = eventsource::ProjectionRunner::new(CartSizes::default(), store.clone())
        .with_options(quick());
    let done = runner.catch_up().await.unwrap();
    assert_eq!(
        done.applied, 5,
        "two adds, one old add, a removal and a close"
    );
    let sizes = &runner.projection().items;
    assert_eq!(sizes.get("cart-c1"), Some(&3));
    assert_eq!(sizes.get("cart-c2"), None);

    // An undecodable row stops the runner at that event, named.
    let bad = NewEvent::new("cart.item_added", 3, json!({ "sku": 1 }));
    store
        .append(&carts.stream_id("c3"), ExpectedVersion::Any, vec![bad])
        .await
        .unwrap();
    match runner.catch_up().await.unwrap_err() {
        eventsource::ProjectionError::Failed {
            name,
            source: eventsource::HandlerError::Decode(_),
            ..
        } => assert_eq!(name, "cart.item_added"),
        other => panic!("expected a decode failure, got {other:?}"),
    }
}

// Golden payloads work per variant version, as for struct events.

#[test]
fn golden_payloads_are_kept_per_variant_version() {
    use eventsource_core::testing::golden::{GoldenMode, sample_path, verify_golden};

    let dir = std::env::temp_dir().join(format!("eventsource-enum-golden-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let examples = || {
        [
            CartEvent::Opened {
                owner: "ada".into(),
            },
            CartEvent::ItemAdded {
                sku: "A1".into(),
                qty: 2,
            },
            CartEvent::ItemRemoved("A1".into()),
            CartEvent::Closed,
            CartEvent::CurrencySet { code: "EUR".into() },
        ]
    };
    // Every variant needs an example: a missing one is reported by name.
    let problems = verify_golden(&dir, examples()[..2].to_vec(), GoldenMode::Record).unwrap_err();
    assert!(
        problems.to_string().contains("cart.checked_out"),
        "{problems}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
    let recorded = verify_golden(&dir, examples(), GoldenMode::Record).unwrap();
    assert_eq!(recorded.recorded.len(), 5);
    assert!(sample_path(&dir, "cart.item_added", 3).is_file());
    assert!(sample_path(&dir, "cart.checked_out", 1).is_file());
    // A sample of an old version decodes through the chain; a broken one is reported.
    let v1 = sample_path(&dir, "cart.item_added", 1);
    std::fs::write(&v1, r#"{"sku":"A1"}"#).unwrap();
    let report = verify_golden(&dir, examples(), GoldenMode::Check).unwrap();
    assert_eq!(report.decoded.len(), 6);
    std::fs::write(&v1, r#"{"sku":7}"#).unwrap();
    let problems = verify_golden(&dir, examples(), GoldenMode::Check).unwrap_err();
    assert!(problems.to_string().contains("v1.json"), "{problems}");
    std::fs::remove_dir_all(&dir).unwrap();
}

/// A hand-written event set whose text decoding disagrees with its value decoding: the golden
/// check reports the sample, naming it.
#[test]
fn golden_payloads_that_decode_differently_from_text_are_reported() {
    use eventsource_core::testing::golden::{
        GoldenMode, GoldenProblem, sample_path, verify_golden,
    };

    #[derive(Clone, Debug)]
    struct Skewed(u64);
    impl EventEnum for Skewed {
        const NAMES: &'static [&'static str] = &["skewed"];
        fn name(&self) -> &'static str {
            "skewed"
        }
        fn schema_version(&self) -> u32 {
            1
        }
        fn encode(&self) -> Result<serde_json::Value, serde_json::Error> {
            Ok(json!(self.0))
        }
        fn decode(
            _: &str,
            version: u32,
            payload: &serde_json::Value,
        ) -> Result<Self, DecodeFailure> {
            DecodeFailure::parse(version, payload).map(Skewed)
        }
        fn decode_json(_: &str, version: u32, json: &str) -> Result<Self, DecodeFailure> {
            let value = serde_json::from_str::<u64>(json)
                .map_err(|source| DecodeFailure::Payload { version, source })?;
            Ok(Skewed(value + 1))
        }
    }

    let dir =
        std::env::temp_dir().join(format!("eventsource-skewed-golden-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    verify_golden(&dir, [Skewed(4)], GoldenMode::Record).unwrap_err();
    assert!(sample_path(&dir, "skewed", 1).is_file());
    let problems = verify_golden(&dir, [Skewed(4)], GoldenMode::Check).unwrap_err();
    assert!(
        matches!(
            problems.0.as_slice(),
            [GoldenProblem::Diverging { name, version: 1, .. }] if name == "skewed"
        ),
        "{problems}"
    );
    assert!(problems.to_string().contains("v1.json"), "{problems}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn hostile_rows_decode_to_errors_never_panics() {
    let deep = (0..200).fold(json!(null), |inner, _| json!([inner]));
    let payloads = [
        json!(null),
        json!(true),
        json!(-1),
        json!(u64::MAX),
        json!(1.5e300),
        json!(""),
        json!("cart.opened"),
        json!([]),
        json!([1, "two", null]),
        json!({}),
        json!({ "sku": null, "qty": -3 }),
        json!({ "sku": "A1", "qty": 4_294_967_296_u64 }),
        json!({ "ItemAdded": { "sku": "A1", "qty": 1 } }),
        json!({ "owner": ["ada"] }),
        deep,
    ];
    let mut names: Vec<&str> = CartEvent::NAMES.to_vec();
    names.extend(["", "cart.", "CART.OPENED", "cart.opened\0"]);
    let mut decoded = Vec::new();
    for name in names {
        for version in [0, 1, 2, 3, 4, u32::MAX] {
            for payload in &payloads {
                if let Ok(event) = CartEvent::decode(name, version, payload) {
                    // A row decodes only as the variant its name says.
                    assert_eq!(event.name(), name);
                    decoded.push((name, version, payload.to_string()));
                }
            }
        }
    }
    // Only payloads that are a version's shape (v1 of `item_added` ignores unknown fields, as
    // its struct does); the externally tagged form is never a payload.
    assert_eq!(
        decoded,
        [
            (
                "cart.item_added",
                1,
                r#"{"qty":4294967296,"sku":"A1"}"#.to_owned()
            ),
            ("cart.item_removed", 1, r#""""#.to_owned()),
            ("cart.item_removed", 1, r#""cart.opened""#.to_owned()),
            ("cart.checked_out", 1, "null".to_owned()),
        ]
    );
}
