use eventsource::prelude::*;

// Locked as `cart.item_added` v1 (recorded by this type); renamed since.
#[derive(Event, Serialize, Deserialize)]
#[event(name = "cart.item_put", lock = "event_renamed.lock")]
struct ItemAdded {
    sku: String,
}

fn main() {}
