use eventsource::prelude::*;

#[derive(EventEnum, Serialize, Deserialize, Clone)]
#[event(prefix = "my cart/")]
enum CartEvent {
    // Made from the prefix: reported once, at the prefix.
    Opened,
    #[event(name = "cart closed!")]
    Closed,
    #[event(name = "")]
    Emptied,
}

fn main() {}
