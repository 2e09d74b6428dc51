use eventsource::prelude::*;

#[derive(Event, Deserialize)]
#[event(name = "cart item added!")]
struct ItemAdded {}

fn main() {}
