use eventsource::prelude::*;

#[derive(Event, Deserialize)]
#[event(name = "cart.created", version = 1)]
struct CreatedV1 {}

#[derive(Event, Deserialize)]
#[event(name = "cart.opened", version = 2, previous = CreatedV1)]
struct Opened {}

impl From<CreatedV1> for Opened {
    fn from(_: CreatedV1) -> Self {
        Opened {}
    }
}

fn main() {}
