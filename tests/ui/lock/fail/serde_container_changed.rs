use eventsource::prelude::*;

// Locked as `{sku:String;qty:u32}`: `rename_all` changes every key on the wire.
#[derive(Event, Serialize, Deserialize)]
#[event(name = "cart.item_added", lock = "serde_container_changed.lock")]
#[serde(rename_all = "UPPERCASE")]
struct ItemAdded {
    sku: String,
    qty: u32,
}

fn main() {}
