use eventsource::prelude::*;

#[derive(Event, Deserialize)]
#[event(name = "cart.created")]
struct CreatedV1 {}

#[derive(EventEnum, Serialize, Deserialize, Clone)]
#[event(prefix = "cart.")]
enum CartEvent {
    #[event(version = 2, previous = CreatedV1)]
    Opened {},
}

impl From<CreatedV1> for CartEvent {
    fn from(_: CreatedV1) -> Self {
        CartEvent::Opened {}
    }
}

fn main() {}
