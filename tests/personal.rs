//! Crypto-shredding on the in-memory store: personal fields sealed per subject, `forget`,
//! and every reader after it (traces and error messages: `personal_traces.rs`).
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "support/customer.rs"]
mod customer;

use eventsource::{MemoryKeyStore, MemoryStore};

#[tokio::test]
async fn a_forgotten_customer_reads_back_forgotten_everywhere() {
    customer::forget_scenario(MemoryStore::new(), MemoryKeyStore::new()).await;
}

#[tokio::test]
async fn a_store_that_does_not_seal_is_refused() {
    customer::plain_store_refuses_personal_values(MemoryStore::new()).await;
}
