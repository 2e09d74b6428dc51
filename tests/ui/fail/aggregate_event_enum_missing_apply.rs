use eventsource::prelude::*;

#[derive(EventEnum, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[event(prefix = "cart.")]
enum CartEvent {
    Opened { owner: String },
}

#[derive(Aggregate, Default, Serialize, Deserialize)]
#[aggregate(name = "cart", events = CartEvent)]
struct Cart {
    owner: String,
}

fn main() {}
