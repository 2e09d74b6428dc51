//! An aggregate listing the newest version another crate declares: nothing here upcasts from
//! it, so it is not retired (what only a crate that declares a newer version knows).
use eventsource::prelude::*;
use eventsource_upstream_events::OpenedV2;

#[derive(Aggregate, Default, Serialize, Deserialize)]
#[aggregate(name = "ledger", events(OpenedV2))]
struct Ledger {}

impl Apply<OpenedV2> for Ledger {
    fn apply(&mut self, _: &OpenedV2) {}
}

fn main() {
    assert_eq!(<LedgerEvent as EventEnum>::event_schemas().len(), 2);
}
