use eventsource::prelude::*;

#[derive(EventEnum, Serialize, Deserialize, Clone)]
#[event(prefix = "cart.")]
enum CartEvent {
    Opened { owner: String },
    #[event(name = "cart.opened")]
    Reopened { owner: String },
}

fn main() {}
