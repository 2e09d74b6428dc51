use eventsource::prelude::*;

// The variant was locked as `cart.item_added` v1; its name (from the prefix) changed since.
#[derive(EventEnum, Serialize, Deserialize, Clone)]
#[event(prefix = "basket.", lock = "event_enum_variant_renamed.lock")]
enum CartEvent {
    ItemAdded { sku: String },
}

fn main() {}
