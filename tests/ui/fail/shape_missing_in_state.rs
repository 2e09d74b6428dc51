use eventsource::prelude::*;

#[derive(Event, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[event(name = "shelf.stocked")]
struct Stocked {}

#[derive(Serialize, Deserialize, Default)]
struct Tally {
    count: u64,
}

// The state's fingerprint covers `Tally`, which has no shape.
#[derive(Aggregate, Default, Serialize, Deserialize)]
#[aggregate(name = "shelf", events(Stocked))]
struct Shelf {
    tally: Tally,
}

impl Apply<Stocked> for Shelf {
    fn apply(&mut self, _: &Stocked) {}
}

fn main() {}
