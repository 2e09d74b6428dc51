use eventsource::prelude::*;

#[derive(EventEnum, Serialize, Deserialize, Clone)]
enum CartEvent {}

fn main() {}
