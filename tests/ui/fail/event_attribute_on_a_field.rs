use eventsource::prelude::*;

#[derive(Event, Deserialize)]
struct Opened {
    #[event(name = "cart.opened")]
    owner: String,
}

#[derive(EventEnum, Serialize, Deserialize, Clone)]
enum CartEvent {
    ItemAdded {
        #[event(version = 2)]
        sku: String,
    },
}

fn main() {}
