use eventsource::prelude::*;

#[derive(Event, Deserialize)]
#[event(name = cart.opened)]
struct Opened {}

fn main() {}
