use eventsource::prelude::*;

#[derive(Event, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[event(name = "shelf.stocked")]
struct Stocked {
    qty: u32,
}

// Declared twice on purpose (`same_as`), but the twin's shape differs.
#[derive(EventEnum, Serialize, Deserialize, Clone)]
#[event(prefix = "shelf.")]
enum ShelfEvent {
    #[event(same_as = Stocked)]
    Stocked { qty: u64 },
}

fn main() {}
