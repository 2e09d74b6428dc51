use eventsource::prelude::*;

#[derive(Event, Deserialize)]
#[event(name = "cart.opened")]
struct OpenedV1 {}

#[derive(Event, Deserialize)]
#[event(name = "cart.opened", version = 2, previous = "OpenedV1")]
struct Opened {}

fn main() {}
