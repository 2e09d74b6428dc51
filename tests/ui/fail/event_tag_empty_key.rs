use eventsource::prelude::*;

#[derive(Event, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[event(name = "user.registered")]
struct Registered {
    #[tag(key = "")]
    login: String,
    #[tag]
    #[tag]
    id: u64,
}

fn main() {}
