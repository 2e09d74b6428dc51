use eventsource::prelude::*;

#[derive(Event, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[event(name = "cart.opened")]
struct Opened {}

#[derive(Clone, Debug)]
struct Open {}

#[derive(Aggregate, Default, Serialize, Deserialize)]
#[aggregate(name = "cart", events(Opened), snapshot(each = 10))]
struct Cart {}

impl Apply<Opened> for Cart {
    fn apply(&mut self, _: &Opened) {}
}

fn main() {}
