use eventsource::prelude::*;

#[derive(Event, Deserialize)]
#[event(name = "cart.item_added")]
struct ItemAddedV1 {
    sku: String,
}

#[derive(EventEnum, Serialize, Deserialize, Clone)]
#[event(prefix = "cart.")]
enum CartEvent {
    #[event(version = 0)]
    Opened,
    #[event(version = 2)]
    Closed,
    #[event(version = 1, previous = ItemAddedV1)]
    ItemAdded { sku: String },
}

fn main() {}
