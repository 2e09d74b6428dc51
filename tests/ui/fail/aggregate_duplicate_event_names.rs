use eventsource::prelude::*;

#[derive(Event, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[event(name = "cart.opened")]
struct Opened {}

#[derive(Clone, Debug)]
struct Open {}

#[derive(Event, Serialize, Deserialize, Clone, Debug, PartialEq)]
// A twin of `Opened` (`same_as`): one event version, declared twice on purpose.
#[event(name = "cart.opened", same_as = Opened)]
struct Reopened {}

#[derive(Aggregate, Default, Serialize, Deserialize)]
#[aggregate(name = "cart", events(Opened, Reopened))]
struct Cart {}

impl Apply<Opened> for Cart {
    fn apply(&mut self, _: &Opened) {}
}

impl Apply<Reopened> for Cart {
    fn apply(&mut self, _: &Reopened) {}
}

fn main() {}
