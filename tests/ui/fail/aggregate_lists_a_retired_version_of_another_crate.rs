use eventsource::prelude::*;
use eventsource_upstream_events::OpenedV2;

// Version 3 here upcasts from version 2 of another crate...
#[derive(Event, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[event(name = "ledger.opened", version = 3, previous = OpenedV2)]
struct Opened {
    owner: String,
    overdraft_limit: u64,
}

impl From<OpenedV2> for Opened {
    fn from(old: OpenedV2) -> Self {
        Opened { owner: old.owner, overdraft_limit: old.overdraft_limit }
    }
}

// ...which the aggregate lists.
#[derive(Aggregate, Default, Serialize, Deserialize)]
#[aggregate(name = "ledger", events(OpenedV2))]
struct Ledger {}

impl Apply<OpenedV2> for Ledger {
    fn apply(&mut self, _: &OpenedV2) {}
}

fn main() {}
