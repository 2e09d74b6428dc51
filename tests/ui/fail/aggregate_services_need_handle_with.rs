use eventsource::prelude::*;

#[derive(Event, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[event(name = "cart.opened")]
struct Opened {}

#[derive(Clone, Debug)]
struct Open {}

struct Pricing;

// With `services`, handlers implement `HandleWith`; a `Handle` impl is not used.
#[derive(Aggregate, Default, Serialize, Deserialize)]
#[aggregate(name = "cart", events(Opened), commands(Open), services = Pricing)]
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
