use eventsource::prelude::*;

#[derive(Event, Deserialize)]
#[event(name = "cart.opened")]
struct OpenedV1 {}

#[derive(EventEnum, Serialize, Deserialize, Clone)]
#[event(prefix = "cart.")]
enum CartEvent {
    // Version 2 is missing from the chain.
    #[event(version = 3, previous = OpenedV1)]
    Opened {},
}

impl From<OpenedV1> for CartEvent {
    fn from(_: OpenedV1) -> Self {
        CartEvent::Opened {}
    }
}

fn main() {}
