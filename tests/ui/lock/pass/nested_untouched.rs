use eventsource::prelude::*;

// Nested types whose shapes match their entries.
#[derive(Shape, Serialize, Deserialize)]
#[shape(lock = "nested_untouched.lock")]
struct Money {
    cents: u64,
}

#[derive(Shape, Serialize, Deserialize)]
#[shape(lock = "nested_untouched.lock")]
enum Method {
    Card { last4: String },
    Cash,
}

#[derive(Event, Serialize, Deserialize)]
#[event(name = "invoice.paid", lock = "nested_untouched.lock")]
struct Paid {
    amount: Money,
    method: Method,
}

fn main() {
    assert_ne!(<Paid as Shape>::SHAPE_FINGERPRINT, 0);
}
