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

/// A `forget` through one wrapper (another process, say) reaches a reader with its own key
/// cache once the cache's default lifetime (1 s) is over: that reader never opens the value
/// again.
#[tokio::test]
async fn a_forget_elsewhere_reaches_another_cache_within_its_lifetime() {
    use eventsource::prelude::*;
    use eventsource::{Personal, Shredding};

    let store = MemoryStore::new();
    let keys = MemoryKeyStore::new();
    let writer = Shredding::new(store.clone(), keys.clone());
    let reader = Shredding::new(store.clone(), keys.clone());
    let customers = Repository::<customer::Customer, _>::new(writer.clone());
    customers
        .execute("c-1", customer::register("c-1", "ada@example.com"))
        .await
        .unwrap();
    let readers = Repository::<customer::Customer, _>::new(reader.clone());
    assert_eq!(
        readers.load("c-1").await.unwrap().state.email,
        Some(Personal::Known("ada@example.com".to_owned()))
    );

    writer.forget("c-1").await.unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(1_200)).await;
    assert_eq!(
        readers.load("c-1").await.unwrap().state.email,
        Some(Personal::Forgotten)
    );
}

/// A key cache as large as `NonZeroUsize::MAX`, trusted for as long as `Duration::MAX`, is
/// allocated as it fills (sizing it up front panicked with a capacity overflow) and reads
/// keys as usual.
#[tokio::test]
async fn a_key_cache_of_any_size_and_lifetime_works() {
    use eventsource::prelude::*;
    use eventsource::{Personal, Shredding};

    let shredding = Shredding::new(MemoryStore::new(), MemoryKeyStore::new())
        .with_cache(std::num::NonZeroUsize::MAX, std::time::Duration::MAX);
    let customers = Repository::<customer::Customer, _>::new(shredding.clone());
    customers
        .execute("c-1", customer::register("c-1", "ada@example.com"))
        .await
        .unwrap();
    assert_eq!(
        customers.load("c-1").await.unwrap().state.email,
        Some(Personal::Known("ada@example.com".to_owned()))
    );
}
