//! The store conformance suite, run against PostgreSQL; each case in a schema of its own.

#[path = "support/postgres.rs"]
mod support;

use support::fresh_pg_store;

eventsource::conformance_tests!(fresh_pg_store);

eventsource::lifecycle_conformance_tests!(fresh_pg_store);
eventsource::decision_conformance_tests!(fresh_pg_store);
