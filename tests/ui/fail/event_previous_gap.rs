use eventsource::prelude::*;

#[derive(Event, Deserialize)]
#[event(name = "cart.opened", version = 1)]
struct OpenedV1 {}

// Version 2 is missing: the chain jumps from 1 to 3.
#[derive(Event, Deserialize)]
#[event(name = "cart.opened", version = 3, previous = OpenedV1)]
struct Opened {}

impl From<OpenedV1> for Opened {
    fn from(_: OpenedV1) -> Self {
        Opened {}
    }
}

fn main() {}
