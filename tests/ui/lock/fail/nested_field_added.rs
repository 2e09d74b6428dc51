use eventsource::prelude::*;

// `Money` is locked as `{cents:u64}`: it is part of the wire shape of `invoice.paid` v1, whose
// own text (`{amount:Money}`) did not change.
#[derive(Shape, Serialize, Deserialize)]
#[shape(lock = "nested_field_added.lock")]
struct Money {
    cents: u64,
    currency: String,
}

#[derive(Event, Serialize, Deserialize)]
#[event(name = "invoice.paid", lock = "nested_field_added.lock")]
struct Paid {
    amount: Money,
}

fn main() {}
