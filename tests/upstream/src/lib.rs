//! Events of an upstream crate, for the workspace's tests: an upcaster chain whose older
//! versions live here while a newer version, and the aggregate, live in the crate under test
//! (`previous = eventsource_upstream_events::OpenedV2`).

use eventsource::prelude::*;

/// `ledger.opened` v2, the newest version this crate knows.
#[derive(Event, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[event(name = "ledger.opened", version = 2, previous = OpenedV1)]
pub struct OpenedV2 {
    /// Who keeps the ledger.
    pub owner: String,
    /// In cents.
    pub overdraft_limit: u64,
}

/// `ledger.opened` v1.
#[derive(Event, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[event(name = "ledger.opened")]
pub struct OpenedV1 {
    /// Who keeps the ledger.
    pub owner: String,
}

impl From<OpenedV1> for OpenedV2 {
    fn from(old: OpenedV1) -> Self {
        OpenedV2 {
            owner: old.owner,
            overdraft_limit: 0,
        }
    }
}
