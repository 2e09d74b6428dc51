use eventsource::prelude::*;

// A listed event without `PartialEq`.
#[derive(Event, Serialize, Deserialize, Clone, Debug)]
#[event(name = "shelf.stocked")]
struct Stocked {}

#[derive(Aggregate, Default, Serialize, Deserialize)]
#[aggregate(name = "shelf", events(Stocked))]
struct Shelf {}

impl Apply<Stocked> for Shelf {
    fn apply(&mut self, _: &Stocked) {}
}

fn main() {}
