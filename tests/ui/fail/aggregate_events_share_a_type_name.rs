use eventsource::prelude::*;

mod cart {
    use eventsource::prelude::*;

    #[derive(Event, Serialize, Deserialize, Clone, Debug, PartialEq)]
    #[event(name = "cart.opened")]
    pub struct Opened {}
}

mod order {
    use eventsource::prelude::*;

    #[derive(Event, Serialize, Deserialize, Clone, Debug, PartialEq)]
    #[event(name = "order.opened")]
    pub struct Opened {}
}

// Both would become the variant `CartEvent::Opened`.
#[derive(Aggregate, Default, Serialize, Deserialize)]
#[aggregate(name = "cart", events(cart::Opened, order::Opened))]
struct Cart {}

impl Apply<cart::Opened> for Cart {
    fn apply(&mut self, _: &cart::Opened) {}
}

impl Apply<order::Opened> for Cart {
    fn apply(&mut self, _: &order::Opened) {}
}

fn main() {}
