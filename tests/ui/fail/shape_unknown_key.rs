use eventsource::prelude::*;

#[derive(Shape, Serialize, Deserialize)]
#[shape(lok = "events.lock")]
struct Money {
    cents: u64,
}

fn main() {}
