use eventsource::prelude::*;

#[derive(Event, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[event(name = "cart.opened")]
struct Opened {}

#[derive(Clone, Debug)]
struct Open {}

#[derive(Aggregate, Serialize, Deserialize)]
#[aggregate(name = "cart", events(Opened))]
enum Cart {
    Empty,
}

fn main() {}
