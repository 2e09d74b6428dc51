use eventsource::prelude::*;

#[derive(Event, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[event(name = "shelf.stocked")]
struct Stocked {}

mod other {
    use eventsource::prelude::*;

    // The same (name, version) as `Stocked`, elsewhere in the crate.
    #[derive(Event, Serialize, Deserialize, Clone, Debug, PartialEq)]
    #[event(name = "shelf.stocked")]
    pub struct Restocked {
        qty: u32,
    }
}

fn main() {}
