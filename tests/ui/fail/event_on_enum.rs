use eventsource::prelude::*;

#[derive(Event, Deserialize)]
#[event(name = "cart.changed")]
enum Changed {
    Opened,
    Closed,
}

fn main() {}
