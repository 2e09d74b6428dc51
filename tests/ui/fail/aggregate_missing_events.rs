use eventsource::prelude::*;

#[derive(Event, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[event(name = "cart.opened")]
struct Opened {}

#[derive(Clone, Debug)]
struct Open {}

#[derive(Aggregate, Default, Serialize, Deserialize)]
#[aggregate(name = "cart", commands(Open))]
struct Cart {}

impl Handle<Open> for Cart {
    fn handle(&self, _: Open) -> Result<Events<Self>, Self::Error> {
        Ok(Events::none())
    }
}

fn main() {}
