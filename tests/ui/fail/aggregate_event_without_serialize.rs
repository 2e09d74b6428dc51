use eventsource::prelude::*;

// A listed event without `Serialize`.
#[derive(Event, Deserialize, Clone, Debug, PartialEq)]
#[event(name = "shelf.stocked")]
struct Stocked {}

#[derive(Aggregate, Default, Serialize, Deserialize)]
#[aggregate(name = "shelf", events(Stocked))]
struct Shelf {}

impl Apply<Stocked> for Shelf {
    fn apply(&mut self, _: &Stocked) {}
}

fn main() {}
