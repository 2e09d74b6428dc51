use eventsource::prelude::*;

#[derive(Event, Deserialize)]
#[event(name = "cart.opened", crate = "not a path")]
struct Opened {}

fn main() {}
