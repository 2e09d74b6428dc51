use eventsource::prelude::*;

#[derive(Event, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[event(name = "cart.opened")]
struct Opened {}

#[derive(Clone, Debug)]
struct Open {}

#[derive(Debug, thiserror::Error)]
#[error("cart error")]
struct CartError;

// One mistake (`snapshot(every = 0)`): the impls below still compile against the stub, so the
// user sees one error and not one per impl.
#[derive(Aggregate, Default, Serialize, Deserialize)]
#[aggregate(name = "cart", error = CartError, events(Opened), commands(Open), snapshot(every = 0))]
struct Cart {}

impl Apply<Opened> for Cart {
    fn apply(&mut self, _: &Opened) {}
}

impl Handle<Open> for Cart {
    fn handle(&self, _: Open) -> Result<Events<Self>, CartError> {
        Ok(Events::one(Opened {}))
    }
}

fn main() {
    let _ = Cart::given([Opened {}]).when(Open {});
}
