use eventsource::prelude::*;

#[derive(EventEnum, Serialize, Deserialize, Clone)]
struct Opened {
    owner: String,
}

fn main() {}
