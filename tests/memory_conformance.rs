//! The store conformance suite, run against the in-memory store.

async fn fresh_store() -> eventsource::MemoryStore {
    eventsource::MemoryStore::new()
}

eventsource::conformance_tests!(fresh_store);
eventsource::decision_conformance_tests!(fresh_store);
