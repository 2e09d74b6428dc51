use eventsource::prelude::*;

#[derive(Event, Deserialize)]
#[event(name = "cart.opened", version = 1)]
struct OpenedV1 {}

#[derive(Event, Deserialize)]
#[event(name = "cart.opened", version = 2, previous = OpenedV1)]
struct OpenedV2 {}

// Version 4 names version 2 as its previous version.
#[derive(Event, Deserialize)]
#[event(name = "cart.opened", version = 4, previous = OpenedV2)]
struct Opened {}

impl From<OpenedV1> for OpenedV2 {
    fn from(_: OpenedV1) -> Self {
        OpenedV2 {}
    }
}

impl From<OpenedV2> for Opened {
    fn from(_: OpenedV2) -> Self {
        Opened {}
    }
}

fn main() {}
