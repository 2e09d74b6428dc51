use eventsource::prelude::*;

#[derive(Event, Serialize, Deserialize)]
#[event(name = "customer.registered")]
struct Registered {
    customer_id: String,
    #[personal(subject = customer_id)]
    #[serde(rename = "mail")]
    email: Personal<String>,
}

fn main() {}
