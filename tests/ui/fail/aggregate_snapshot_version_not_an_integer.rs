use eventsource::prelude::*;

#[derive(Event, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[event(name = "shelf.stocked")]
struct Stocked {}

#[derive(Aggregate, Default, Serialize, Deserialize)]
#[aggregate(name = "shelf", events(Stocked), snapshot(every = 10, version = "2"))]
struct Shelf {}

impl Apply<Stocked> for Shelf {
    fn apply(&mut self, _: &Stocked) {}
}

fn main() {}
