//! Fixtures and the timing harness shared by the eventsource benchmarks.
//!
//! Run the whole suite with `scripts/bench.sh` (see `BENCHMARKS.md`): it starts a throwaway,
//! durable PostgreSQL and runs the `fold`, `decode` and `postgres` benches, each printing the
//! framework beside a raw baseline measured in the same run.

pub mod fixture;
pub mod hand;
pub mod measure;
