//! An event enum and an aggregate that names it: warning-free in a crate that denies warnings
//! and documents everything, with every kind of variant, an upcaster chain, services and a
//! renamed crate.
#![deny(warnings, missing_docs, unreachable_pub, unused_qualifications, unused_results)]
#![deny(clippy::all)]

extern crate eventsource as es;

use es::prelude::{
    Aggregate, Apply, Deserialize, Event, EventEnum, Events, GivenWhenThen, HandleWith, Serialize,
};

/// The cart's events.
#[derive(EventEnum, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[event(prefix = "cart.", crate = "es")]
#[serde(rename_all_fields = "camelCase")]
pub enum CartEvent {
    /// Opened by someone.
    Opened {
        /// Who.
        owner_name: String,
    },
    /// An item was added (version 2: with a quantity).
    #[event(version = 2, previous = ItemAddedV1)]
    ItemAdded {
        /// The item.
        sku: String,
        /// How many.
        qty: u32,
    },
    /// An item was removed.
    ItemRemoved(String),
    /// The price was fixed: the item and the price in cents.
    Priced(String, u64),
    /// Checked out.
    #[event(name = "cart.checked_out")]
    CheckedOut,
}

/// An item was added (version 1).
#[derive(Event, Deserialize)]
#[event(name = "cart.item_added", crate = "es")]
pub struct ItemAddedV1 {
    /// The item.
    pub sku: String,
}

impl From<ItemAddedV1> for CartEvent {
    fn from(v1: ItemAddedV1) -> Self {
        CartEvent::ItemAdded { sku: v1.sku, qty: 1 }
    }
}

/// What the cart is asked to do.
#[derive(Clone, Debug)]
pub enum CartCommand {
    /// Add one of an item.
    Add(String),
}

/// Prices in cents.
pub struct Prices;

/// A cart.
#[derive(es::Aggregate, Default, Serialize, Deserialize)]
#[aggregate(name = "cart", events = CartEvent, commands = CartCommand, services = Prices, crate = "es")]
pub struct Cart {
    items: Vec<String>,
}

impl Apply<CartEvent> for Cart {
    fn apply(&mut self, event: &CartEvent) {
        if let CartEvent::ItemAdded { sku, .. } = event {
            self.items.push(sku.clone());
        }
    }
}

impl HandleWith<CartCommand> for Cart {
    fn handle(&self, command: CartCommand, _: &Prices) -> Result<Events<Self>, Self::Error> {
        let CartCommand::Add(sku) = command;
        Ok(Events::one(CartEvent::ItemAdded { sku: sku.clone(), qty: 1 })
            .and(CartEvent::Priced(sku, 250)))
    }
}

fn main() {
    let _: &[&str] = <Cart as Aggregate>::Event::NAMES;
    let _ = Cart::given([CartEvent::Opened { owner_name: "ada".into() }])
        .with_services(Prices)
        .when(CartCommand::Add("A1".into()))
        .then([
            CartEvent::ItemAdded { sku: "A1".into(), qty: 1 },
            CartEvent::Priced("A1".into(), 250),
        ])
        .then_state(|cart| assert_eq!(cart.items, ["A1"]));
    let payload = serde_json::json!({ "ownerName": "ada" });
    assert_eq!(
        CartEvent::decode("cart.opened", 1, &payload).ok(),
        Some(CartEvent::Opened { owner_name: "ada".into() })
    );
}
