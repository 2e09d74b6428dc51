use eventsource::prelude::*;

#[derive(EventEnum, Serialize, Deserialize, Clone)]
enum CartEvent<T> {
    Opened { owner: T },
}

fn main() {}
