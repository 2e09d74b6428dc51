use eventsource::prelude::*;

// A `serde` attribute on a nested type changes the wire form of the events that hold it.
#[derive(Shape, Serialize, Deserialize)]
#[shape(lock = "nested_serde_changed.lock")]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
struct Money {
    cents: u64,
}

#[derive(Event, Serialize, Deserialize)]
#[event(name = "invoice.paid", lock = "nested_serde_changed.lock")]
struct Paid {
    amount: Option<Vec<Money>>,
}

fn main() {}
