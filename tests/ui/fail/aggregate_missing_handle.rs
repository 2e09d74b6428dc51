use eventsource::prelude::*;

#[derive(Event, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[event(name = "cart.opened")]
struct Opened {}

#[derive(Clone, Debug)]
struct Open {}

#[derive(Clone, Debug)]
struct Close {}

#[derive(Aggregate, Default, Serialize, Deserialize)]
#[aggregate(name = "cart", events(Opened), commands(Open, Close))]
struct Cart {}

impl Apply<Opened> for Cart {
    fn apply(&mut self, _: &Opened) {}
}

impl Handle<Open> for Cart {
    fn handle(&self, _: Open) -> Result<Events<Self>, Self::Error> {
        Ok(Events::one(Opened {}))
    }
}

fn main() {}
