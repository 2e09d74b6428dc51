use eventsource::prelude::*;

#[derive(Event, Serialize, Deserialize)]
#[event(name = "customer.registered")]
struct Registered {
    #[tag(key = "customer")]
    customer_id: String,
    #[personal(subject = customer_id)]
    #[tag]
    email: Personal<String>,
}

fn main() {}
