use eventsource::prelude::*;

#[derive(Serialize, Deserialize, Clone)]
struct Address {
    city: String,
}

#[derive(EventEnum, Serialize, Deserialize, Clone)]
#[event(prefix = "shop.")]
enum ShopEvent {
    Moved { to: Address },
}

fn main() {}
