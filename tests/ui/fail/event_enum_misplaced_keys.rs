use eventsource::prelude::*;

#[derive(EventEnum, Serialize, Deserialize, Clone)]
#[event(prefix = "cart.", version = 2)]
enum CartEvent {
    #[event(prefix = "basket.")]
    Opened,
    #[event(verison = 2)]
    Closed,
}

fn main() {}
