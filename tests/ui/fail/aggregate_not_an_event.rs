use eventsource::prelude::*;

#[derive(Event, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[event(name = "cart.opened")]
struct Opened {}

#[derive(Clone, Debug)]
struct Open {}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
struct Closed {}

#[derive(Aggregate, Default, Serialize, Deserialize)]
#[aggregate(name = "cart", events(Opened, Closed))]
struct Cart {}

impl Apply<Opened> for Cart {
    fn apply(&mut self, _: &Opened) {}
}

impl Apply<Closed> for Cart {
    fn apply(&mut self, _: &Closed) {}
}

fn main() {}
