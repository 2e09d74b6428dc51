//! Deep shapes: `#[derive(Shape)]` on nested types, the fingerprints of events and states that
//! cover their whole type tree, and snapshots that a change deep in the state invalidates.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a test fails by panicking

use std::collections::{BTreeMap, HashMap};

use eventsource::prelude::*;

#[derive(Event, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[event(name = "shelf.stocked")]
struct Stocked {
    n: u64,
}

#[derive(Clone, Debug)]
struct Stock {
    n: u64,
}

/// The state as the old release stored it. Its `Aggregate` impl is written by hand (one crate
/// derives one aggregate per name, and this one stands for the previous release), with the
/// fingerprint the derive gives: its deep `Shape` as hex.
mod before {
    use super::{Stock, Stocked};
    use eventsource::prelude::*;
    use eventsource::shape::{hex_str, shape_hex};

    #[derive(Shape, Serialize, Deserialize, Default, Debug)]
    pub(super) struct Tally {
        pub(super) count: u64,
    }

    #[derive(Shape, Default, Serialize, Deserialize, Debug)]
    pub(super) struct Shelf {
        pub(super) tally: Tally,
    }

    const HEX: [u8; 16] = shape_hex(<Shelf as Shape>::SHAPE_FINGERPRINT);

    impl Aggregate for Shelf {
        const NAME: &'static str = "shelf";
        const SNAPSHOT: SnapshotPolicy = SnapshotPolicy::Every(2);
        const STATE_FINGERPRINT: &'static str = hex_str(&HEX);
        type Event = super::after::ShelfEvent;
        type Command = Stock;
        type Error = std::convert::Infallible;
        type Services = ();

        fn evolve(&mut self, _: &Self::Event) {
            self.tally.count += 1;
        }

        fn decide(&self, command: Stock, _: &()) -> Result<Events<Self>, Self::Error> {
            Ok(Events::one(Stocked { n: command.n }))
        }
    }
}

/// The next release: the nested `Tally` gains a `#[serde(default)]` field. The state's own
/// fields (`tally: Tally`) did not change; only the type tree did.
mod after {
    use super::Stocked;
    use eventsource::prelude::*;

    #[derive(Shape, Serialize, Deserialize, Default, Debug)]
    pub(super) struct Tally {
        pub(super) count: u64,
        #[serde(default)]
        pub(super) sum: u64,
    }

    #[derive(Aggregate, Default, Serialize, Deserialize, Debug)]
    #[aggregate(name = "shelf", events(Stocked), snapshot(every = 2))]
    pub(super) struct Shelf {
        pub(super) tally: Tally,
    }

    impl Apply<Stocked> for Shelf {
        fn apply(&mut self, event: &Stocked) {
            self.tally.count += 1;
            self.tally.sum += event.n;
        }
    }

    /// A state whose fingerprint is pinned by hand: its author promises that snapshots of one
    /// `version` fit, and bumps it when they no longer do.
    #[derive(Aggregate, Default, Serialize, Deserialize, Debug)]
    #[aggregate(
        name = "pinned_shelf",
        events(Stocked),
        snapshot(every = 2, version = 3)
    )]
    pub(super) struct Pinned {
        pub(super) tally: Tally,
    }

    impl Apply<Stocked> for Pinned {
        fn apply(&mut self, event: &Stocked) {
            self.tally.count += 1;
            self.tally.sum += event.n;
        }
    }
}

#[tokio::test]
async fn a_field_added_deep_in_the_state_invalidates_old_snapshots() {
    let store = MemoryStore::new();
    let old = Repository::<before::Shelf, _>::new(store.clone());
    for n in [4, 4, 1] {
        old.execute(7, Stock { n }).await.unwrap();
    }
    assert_eq!(
        old.load(7).await.unwrap().snapshot_version,
        Some(Version(2))
    );
    assert_eq!(old.load(7).await.unwrap().state.tally.count, 3);

    assert_ne!(
        before::Shelf::STATE_FINGERPRINT,
        after::Shelf::STATE_FINGERPRINT,
        "the nested field changes the state's fingerprint"
    );
    let new = Repository::<after::Shelf, _>::new(store.clone());
    let loaded = new.load(7).await.unwrap();
    let mut refolded = after::Shelf::default();
    for n in [4, 4, 1] {
        <after::Shelf as Apply<Stocked>>::apply(&mut refolded, &Stocked { n });
    }
    assert_eq!(refolded.tally.sum, 9);
    assert_eq!(loaded.snapshot_version, None, "the old snapshot is ignored");
    assert_eq!(loaded.state.tally.sum, 9);
    assert_eq!(loaded.state.tally.count, 3);
}

#[test]
fn a_pinned_snapshot_version_is_the_fingerprint() {
    assert_eq!(after::Pinned::STATE_FINGERPRINT, "version-3");
    assert_eq!(after::Pinned::SNAPSHOT, SnapshotPolicy::Every(2));
}

// Fingerprints of nested shapes.

mod v1 {
    use eventsource::prelude::*;

    #[derive(Shape, Serialize, Deserialize)]
    pub(super) struct Money {
        pub(super) cents: u64,
    }
}

mod v2 {
    use eventsource::prelude::*;

    #[derive(Shape, Serialize, Deserialize)]
    pub(super) struct Money {
        pub(super) cents: u64,
        pub(super) currency: String,
    }
}

mod v3 {
    use eventsource::prelude::*;

    #[derive(Shape, Serialize, Deserialize)]
    #[serde(rename_all = "camelCase")]
    pub(super) struct Money {
        pub(super) cents: u64,
    }
}

mod paid_v1 {
    use super::v1::Money;
    use eventsource::prelude::*;

    #[derive(Event, Serialize, Deserialize)]
    #[event(name = "invoice.paid")]
    pub(super) struct Paid {
        pub(super) amount: Money,
    }
}

mod paid_v2 {
    use super::v2::Money;
    use eventsource::prelude::*;

    /// Another name: one crate declares each event version once.
    #[derive(Event, Serialize, Deserialize)]
    #[event(name = "invoice.paid_v2")]
    pub(super) struct Paid {
        pub(super) amount: Money,
    }
}

fn fingerprint<T: Shape + ?Sized>() -> u64 {
    T::SHAPE_FINGERPRINT
}

#[test]
fn a_change_in_a_nested_type_changes_the_events_deep_fingerprint() {
    // The event's own text is the same (`{amount:Money}`) ...
    assert_eq!(
        <paid_v1::Paid as Event>::SHAPE,
        <paid_v2::Paid as Event>::SHAPE
    );
    // ... its whole tree is not.
    assert_ne!(
        fingerprint::<paid_v1::Paid>(),
        fingerprint::<paid_v2::Paid>()
    );
    assert_ne!(fingerprint::<v1::Money>(), fingerprint::<v2::Money>());
    // A serde attribute on the nested type counts.
    assert_ne!(fingerprint::<v1::Money>(), fingerprint::<v3::Money>());
    // Through containers too.
    assert_ne!(
        fingerprint::<Option<Vec<v1::Money>>>(),
        fingerprint::<Option<Vec<v2::Money>>>()
    );
    assert_ne!(
        fingerprint::<BTreeMap<String, v1::Money>>(),
        fingerprint::<BTreeMap<String, v2::Money>>()
    );
    assert_ne!(
        fingerprint::<HashMap<String, (u8, v1::Money)>>(),
        fingerprint::<HashMap<String, (u8, v2::Money)>>()
    );
}

#[derive(Shape, Serialize, Deserialize)]
struct Wrapper<T> {
    inner: T,
    #[serde(skip)]
    _cache: Option<std::rc::Rc<()>>,
}

#[derive(Shape, Serialize, Deserialize)]
enum Payment {
    Card { last4: String },
    Cash(u64),
    Free,
}

#[derive(Shape, Serialize, Deserialize)]
enum PaymentMore {
    Card { last4: String },
    Cash(u64),
    Free,
    Barter,
}

#[test]
fn generics_and_enums_have_deep_fingerprints() {
    assert_ne!(
        fingerprint::<Wrapper<v1::Money>>(),
        fingerprint::<Wrapper<v2::Money>>()
    );
    assert_ne!(fingerprint::<Wrapper<u8>>(), fingerprint::<Wrapper<u16>>());
    assert_ne!(fingerprint::<Payment>(), fingerprint::<PaymentMore>());
}

#[test]
fn deep_state_fingerprints_are_hex() {
    let fingerprint = before::Shelf::STATE_FINGERPRINT;
    assert_eq!(fingerprint.len(), 16);
    assert!(fingerprint.bytes().all(|b| b.is_ascii_hexdigit()));
}
