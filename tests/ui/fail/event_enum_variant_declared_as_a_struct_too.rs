use eventsource::prelude::*;

#[derive(Event, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[event(name = "shelf.stocked")]
struct Stocked {}

// The variant `Stocked` is also `shelf.stocked` v1.
#[derive(EventEnum, Serialize, Deserialize, Clone)]
#[event(prefix = "shelf.")]
enum ShelfEvent {
    Stocked,
    Emptied,
}

fn main() {}
