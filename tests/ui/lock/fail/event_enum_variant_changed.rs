use eventsource::prelude::*;

// Locked: `cart.opened` v1 `{owner:String}`, `cart.item_added` v1 `{sku:String;qty:u32}`,
// `cart.checked_out` v1 `unit`. Every changed variant is reported, at its own tokens.
#[derive(EventEnum, Serialize, Deserialize, Clone)]
#[event(prefix = "cart.", lock = "event_enum_variant_changed.lock")]
enum CartEvent {
    Opened { owner: String },
    ItemAdded { sku: String, qty: u64 },
    CheckedOut { at: u64 },
}

fn main() {}
