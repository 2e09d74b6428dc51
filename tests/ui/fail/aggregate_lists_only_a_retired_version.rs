use eventsource::prelude::*;

#[derive(Event, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[event(name = "shelf.stocked")]
struct StockedV1 {}

#[derive(Event, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[event(name = "shelf.stocked", version = 2, previous = StockedV1)]
struct Stocked {
    #[serde(default)]
    qty: u32,
}

impl From<StockedV1> for Stocked {
    fn from(_: StockedV1) -> Self {
        Stocked { qty: 1 }
    }
}

// Only the retired version listed: `Stocked` upcasts from it.
#[derive(Aggregate, Default, Serialize, Deserialize)]
#[aggregate(name = "shelf", events(StockedV1))]
struct Shelf {}

impl Apply<StockedV1> for Shelf {
    fn apply(&mut self, _: &StockedV1) {}
}

fn main() {}
