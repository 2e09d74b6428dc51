use eventsource::prelude::*;

#[derive(Event, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[event(name = "shelf.stocked")]
struct Stocked {}

#[derive(Aggregate, Default, Serialize, Deserialize)]
#[aggregate(name = "shelf", events(Stocked))]
struct Shelf {}

impl Apply<Stocked> for Shelf {
    fn apply(&mut self, _: &Stocked) {}
}

mod other {
    use super::Stocked;
    use eventsource::prelude::*;

    // Another aggregate over the same streams (`shelf-<id>`).
    #[derive(Aggregate, Default, Serialize, Deserialize)]
    #[aggregate(name = "shelf", events(Stocked))]
    struct Ledger {}

    impl Apply<Stocked> for Ledger {
        fn apply(&mut self, _: &Stocked) {}
    }
}

fn main() {}
