use eventsource::prelude::*;

#[derive(Event, Deserialize)]
#[event(name = "cart.opened", version = 0)]
struct Opened {}

fn main() {}
