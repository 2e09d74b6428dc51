use eventsource::prelude::*;

#[derive(Event, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[event(name = "user.released")]
struct Released(#[tag] String);

fn main() {}
