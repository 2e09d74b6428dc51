//! Generated code is warning-free in a crate that denies warnings and documents everything.
#![deny(warnings, missing_docs, unreachable_pub, unused_qualifications, unused_results)]
#![deny(clippy::all)]

use eventsource::prelude::*;

/// A cart was opened.
#[derive(Event, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[event(name = "cart.opened")]
pub struct Opened {
    /// Who opened it.
    pub owner: String,
}

/// An item was added (version 2: with a quantity).
#[derive(Event, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[event(name = "cart.item_added", version = 2, previous = ItemAddedV1)]
pub struct ItemAdded {
    /// The item.
    pub sku: String,
    /// How many.
    pub qty: u32,
}

/// An item was added (version 1).
#[derive(Event, Deserialize)]
#[event(name = "cart.item_added", version = 1)]
pub struct ItemAddedV1 {
    /// The item.
    pub sku: String,
}

impl From<ItemAddedV1> for ItemAdded {
    fn from(old: ItemAddedV1) -> Self {
        ItemAdded { sku: old.sku, qty: 1 }
    }
}

/// Open a cart.
#[derive(Clone, Debug)]
pub struct Open {
    /// Who opens it.
    pub owner: String,
}

/// Add an item (serializable: its content is part of its idempotency fingerprint).
#[derive(Clone, Debug, Serialize)]
pub struct AddItem {
    /// The item.
    pub sku: String,
}

/// Why a cart refuses a command.
#[derive(Debug, thiserror::Error)]
pub enum CartError {
    /// The cart is not open.
    #[error("the cart is not open")]
    NotOpen,
}

/// A shopping cart.
#[derive(Aggregate, Default, Serialize, Deserialize)]
#[aggregate(
    name = "cart",
    error = CartError,
    events(Opened, ItemAdded),
    commands(Open, AddItem),
    snapshot(every = 100)
)]
pub struct Cart {
    open: bool,
    items: Vec<String>,
}

impl Apply<Opened> for Cart {
    fn apply(&mut self, _: &Opened) {
        self.open = true;
    }
}

impl Apply<ItemAdded> for Cart {
    fn apply(&mut self, event: &ItemAdded) {
        self.items.push(event.sku.clone());
    }
}

impl Handle<Open> for Cart {
    fn handle(&self, command: Open) -> Result<Events<Self>, CartError> {
        Ok(Events::one(Opened {
            owner: command.owner,
        }))
    }
}

impl Handle<AddItem> for Cart {
    fn handle(&self, command: AddItem) -> Result<Events<Self>, CartError> {
        if !self.open {
            return Err(CartError::NotOpen);
        }
        Ok(Events::one(ItemAdded {
            sku: command.sku,
            qty: 1,
        }))
    }
}

fn main() {
    let _ = Cart::given([Opened { owner: "ada".into() }])
        .when(AddItem { sku: "A1".into() })
        .then([ItemAdded { sku: "A1".into(), qty: 1 }]);
}
