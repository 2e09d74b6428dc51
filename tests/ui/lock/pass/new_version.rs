// The locked version 1 is kept as it was; the new shape is version 2 with `previous`. The new
// version is not locked yet, which is not an error until `EVENTSOURCE_LOCK=strict`.
use eventsource::prelude::*;

#[derive(Event, Serialize, Deserialize)]
#[event(name = "cart.item_added", version = 2, previous = ItemAddedV1, lock = "new_version.lock")]
struct ItemAdded {
    sku: String,
    qty: u64,
}

#[derive(Event, Deserialize)]
#[event(name = "cart.item_added", lock = "new_version.lock")]
struct ItemAddedV1 {
    sku: String,
    qty: u32,
}

impl From<ItemAddedV1> for ItemAdded {
    fn from(old: ItemAddedV1) -> Self {
        ItemAdded { sku: old.sku, qty: old.qty.into() }
    }
}

fn main() {
    let payload = serde_json::json!({ "sku": "A1", "qty": 3 });
    let event = ItemAdded::decode_version(1, &payload).unwrap();
    assert_eq!(event.qty, 3);
}
