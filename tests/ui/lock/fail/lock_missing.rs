use eventsource::prelude::*;

// A lock named with `lock = "..."` must exist (outside `EVENTSOURCE_LOCK=update`).
#[derive(Event, Serialize, Deserialize)]
#[event(name = "cart.item_added", lock = "no_such_file.lock")]
struct ItemAdded {
    sku: String,
}

fn main() {}
