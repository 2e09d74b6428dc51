use eventsource::prelude::*;

#[derive(Event, Deserialize)]
#[event(name = "cart.opened", version = 1)]
struct OpenedV0 {}

#[derive(Event, Deserialize)]
#[event(name = "cart.opened", version = 1, previous = OpenedV0)]
struct Opened {}

fn main() {}
