use eventsource::prelude::*;

#[derive(Event, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[event(name = "shelf.stocked")]
struct Stocked {}

#[derive(Clone, Debug)]
struct Stock {}

#[derive(Debug, thiserror::Error)]
#[error("full")]
struct Full;

// `handle` rejects with `Full`, but the aggregate declares no `error = ...`.
#[derive(Aggregate, Default, Serialize, Deserialize)]
#[aggregate(name = "shelf", events(Stocked), commands(Stock))]
struct Shelf {}

impl Apply<Stocked> for Shelf {
    fn apply(&mut self, _: &Stocked) {}
}

impl Handle<Stock> for Shelf {
    fn handle(&self, _: Stock) -> Result<Events<Self>, Full> {
        Err(Full)
    }
}

fn main() {}
