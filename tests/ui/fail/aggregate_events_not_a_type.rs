use eventsource::prelude::*;

#[derive(Aggregate, Default, Serialize, Deserialize)]
#[aggregate(name = "cart", events = "CartEvent")]
struct Cart {}

fn main() {}
