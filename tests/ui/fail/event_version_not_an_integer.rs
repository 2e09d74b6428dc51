use eventsource::prelude::*;

#[derive(Event, Deserialize)]
#[event(name = "cart.opened", version = "2")]
struct Opened {}

fn main() {}
