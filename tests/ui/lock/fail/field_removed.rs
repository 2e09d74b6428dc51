use eventsource::prelude::*;

// Locked as `{sku:String;qty:u32}`.
#[derive(Event, Serialize, Deserialize)]
#[event(name = "cart.item_added", lock = "field_removed.lock")]
struct ItemAdded {
    sku: String,
}

fn main() {}
