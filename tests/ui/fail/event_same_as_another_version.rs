use eventsource::prelude::*;

#[derive(Event, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[event(name = "shelf.stocked")]
struct Stocked {
    qty: u32,
}

// `same_as` names an event of another version.
#[derive(Event, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[event(name = "shelf.stocked", version = 2, previous = Stocked, same_as = Stocked)]
struct StockedAgain {
    qty: u32,
}

impl From<Stocked> for StockedAgain {
    fn from(old: Stocked) -> Self {
        StockedAgain { qty: old.qty }
    }
}

fn main() {}
