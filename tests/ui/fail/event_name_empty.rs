use eventsource::prelude::*;

#[derive(Event, Deserialize)]
#[event(name = "")]
struct Opened {}

fn main() {}
