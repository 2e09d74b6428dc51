use eventsource::prelude::*;

#[derive(Event, Serialize, Deserialize)]
#[event(name = "customer.registered")]
struct Registered {
    customer_id: String,
    #[personal(subject = customer)]
    email: Personal<String>,
}

fn main() {}
