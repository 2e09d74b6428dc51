use eventsource::prelude::*;

#[derive(Event, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[event(name = "shelf.stocked")]
struct StockedV1 {}

impl From<StockedV1> for ShelfEvents {
    fn from(_: StockedV1) -> Self {
        ShelfEvents::Stocked { qty: 1 }
    }
}

#[derive(EventEnum, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[event(prefix = "shelf.")]
enum ShelfEvents {
    // Version 2 of `shelf.stocked`, upcast from `StockedV1`.
    #[event(version = 2, previous = StockedV1)]
    Stocked { qty: u32 },
}

// The retired struct listed by another aggregate.
#[derive(Aggregate, Default, Serialize, Deserialize)]
#[aggregate(name = "shelf", events(StockedV1))]
struct Shelf {}

impl Apply<StockedV1> for Shelf {
    fn apply(&mut self, _: &StockedV1) {}
}

fn main() {}
