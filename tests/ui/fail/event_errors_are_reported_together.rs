use eventsource::prelude::*;

#[derive(Event, Deserialize)]
#[event(name = "cart opened", version = 0, colour = "blue")]
#[event(name = "cart.opened")]
struct Opened {}

fn main() {}
