use eventsource::prelude::*;

#[derive(Event, Deserialize)]
#[event(name = "cart.opened")]
struct OpenedV1 {}

#[derive(EventEnum, Serialize, Deserialize, Clone)]
#[event(prefix = "cart.")]
enum CartEvent {
    #[event(version = 2, previous = OpenedV1)]
    Opened { owner: String },
}

fn main() {}
