use eventsource::prelude::*;

#[derive(Event, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[event(name = "cart.opened")]
struct Opened {}

// `events = T` names an enum deriving `EventEnum`; a struct event is listed: `events(Opened)`.
#[derive(Aggregate, Default, Serialize, Deserialize)]
#[aggregate(name = "cart", events = Opened)]
struct Cart {}

impl Apply<Opened> for Cart {
    fn apply(&mut self, _: &Opened) {}
}

fn main() {}
