use eventsource::prelude::*;

// Each variant version is one line of the lock, like the equivalent struct's.
#[derive(EventEnum, Serialize, Deserialize, Clone)]
#[event(prefix = "cart.", lock = "event_enum_untouched.lock")]
enum CartEvent {
    Opened { owner: String },
    #[event(version = 2, previous = ItemAddedV1)]
    ItemAdded {
        sku: String,
        #[serde(default)]
        qty: u32,
    },
    CheckedOut,
}

#[derive(Event, Deserialize)]
#[event(name = "cart.item_added", lock = "event_enum_untouched.lock")]
struct ItemAddedV1 {
    sku: String,
}

impl From<ItemAddedV1> for CartEvent {
    fn from(v1: ItemAddedV1) -> Self {
        CartEvent::ItemAdded { sku: v1.sku, qty: 1 }
    }
}

fn main() {}
