use eventsource::prelude::*;

#[derive(EventEnum, Serialize, Deserialize, Clone)]
#[serde(tag = "type", rename_all = "snake_case")]
enum CartEvent {
    Opened { owner: String },
    #[serde(skip)]
    Closed,
}

fn main() {}
