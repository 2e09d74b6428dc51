use eventsource::prelude::*;

#[derive(Event, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[event(name = "user.registered")]
struct Registered {
    #[tag(name = "username")]
    login: String,
}

fn main() {}
