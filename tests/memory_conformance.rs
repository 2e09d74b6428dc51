//! The store conformance suite, run against the in-memory store.

async fn fresh_store() -> eventsource::MemoryStore {
    eventsource::MemoryStore::new()
}

eventsource::conformance_tests!(fresh_store);

eventsource::lifecycle_conformance_tests!(fresh_store);

/// The whole suite again through the crypto-shredding wrapper: it keeps every guarantee.
mod through_shredding {
    async fn fresh_store()
    -> eventsource::Shredding<eventsource::MemoryStore, eventsource::MemoryKeyStore> {
        eventsource::Shredding::new(
            eventsource::MemoryStore::new(),
            eventsource::MemoryKeyStore::new(),
        )
    }

    eventsource::conformance_tests!(fresh_store);
}
eventsource::decision_conformance_tests!(fresh_store);
