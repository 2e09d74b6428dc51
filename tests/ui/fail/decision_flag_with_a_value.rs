use eventsource::prelude::*;

#[derive(Aggregate, Default, Serialize, Deserialize)]
#[aggregate(name = "seats", events(), decision = true)]
struct Seats {}

fn main() {}
