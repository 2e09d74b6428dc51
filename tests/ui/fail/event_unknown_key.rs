use eventsource::prelude::*;

#[derive(Event, Deserialize)]
#[event(name = "cart.opened", verison = 2)]
struct Opened {}

fn main() {}
