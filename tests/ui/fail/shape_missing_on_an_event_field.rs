use eventsource::prelude::*;

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
struct Money {
    cents: u64,
}

#[derive(Event, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[event(name = "invoice.paid")]
struct Paid {
    amount: Money,
}

fn main() {}
