use eventsource::prelude::*;

#[derive(Event, Deserialize)]
#[event(name = "cart.item_added")]
struct ItemAdded<T> {
    item: T,
}

fn main() {}
