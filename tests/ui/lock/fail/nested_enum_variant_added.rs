use eventsource::prelude::*;

// A nested enum gains a variant: old readers of the events that hold it cannot read it.
#[derive(Shape, Serialize, Deserialize)]
#[shape(lock = "nested_enum_variant_added.lock")]
enum Method {
    Card { last4: String },
    Cash,
    Voucher(String),
}

fn main() {}
