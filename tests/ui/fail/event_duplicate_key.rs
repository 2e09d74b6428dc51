use eventsource::prelude::*;

#[derive(Event, Deserialize)]
#[event(name = "cart.opened", name = "cart.created")]
struct Opened {}

fn main() {}
