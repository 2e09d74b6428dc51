// A crate that renames the dependency points the derives at it with `crate = "..."`.
extern crate eventsource as es;

use es::prelude::{Apply, Deserialize, Serialize};

#[derive(es::Event, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[event(name = "counter.ticked", crate = "es")]
struct Ticked;

#[derive(es::Aggregate, Default, Serialize, Deserialize)]
#[aggregate(name = "counter", events(Ticked), crate = "es")]
struct Counter {
    ticks: u64,
}

impl Apply<Ticked> for Counter {
    fn apply(&mut self, _: &Ticked) {
        self.ticks += 1;
    }
}

fn main() {
    assert_eq!(<Counter as es::Aggregate>::NAME, "counter");
}
