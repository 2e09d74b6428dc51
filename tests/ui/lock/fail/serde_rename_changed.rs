use eventsource::prelude::*;

// Locked as `{#[serde(rename="id")]sku:String;qty:u32}`.
#[derive(Event, Serialize, Deserialize)]
#[event(name = "cart.item_added", lock = "serde_rename_changed.lock")]
struct ItemAdded {
    #[serde(rename = "sku_id")]
    sku: String,
    qty: u32,
}

fn main() {}
