use eventsource::prelude::*;

// The lock's entry has no fingerprint.
#[derive(Event, Serialize, Deserialize)]
#[event(name = "cart.item_added", lock = "lock_malformed.lock")]
struct ItemAdded {
    sku: String,
}

fn main() {}
