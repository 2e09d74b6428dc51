use eventsource::prelude::*;

#[derive(Event, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[event(name = "shelf.stocked")]
struct Stocked {}

#[derive(Event, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[event(name = "shelf.emptied")]
struct Emptied {}

#[derive(Clone, Debug)]
struct Empty {}

// `Emptied` is an event, but not one of `Shelf`'s.
#[derive(Aggregate, Default, Serialize, Deserialize)]
#[aggregate(name = "shelf", events(Stocked), commands(Empty))]
struct Shelf {}

impl Apply<Stocked> for Shelf {
    fn apply(&mut self, _: &Stocked) {}
}

impl Handle<Empty> for Shelf {
    fn handle(&self, _: Empty) -> Result<Events<Self>, Self::Error> {
        Ok(Events::one(Emptied {}))
    }
}

fn main() {}
