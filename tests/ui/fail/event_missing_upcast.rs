use eventsource::prelude::*;

#[derive(Event, Deserialize)]
#[event(name = "cart.opened", version = 1)]
struct OpenedV1 {}

// No `From<OpenedV1> for Opened`: stored version 1 payloads could not be decoded.
#[derive(Event, Deserialize)]
#[event(name = "cart.opened", version = 2, previous = OpenedV1)]
struct Opened {}

fn main() {}
