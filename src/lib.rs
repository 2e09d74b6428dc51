//! # eventsource
//!
//! Declarative event sourcing for Rust. See the README for a tour.
#![doc(html_root_url = "https://docs.rs/eventsource")]

pub use eventsource_core::*;

#[cfg(feature = "postgres")]
pub use eventsource_postgres as postgres;

/// The items most applications need, for a glob import.
pub mod prelude {
    pub use eventsource_core::{
        Aggregate, Apply, CommandMetadata, Event, EventSet, EventStore, Events, ExecuteError,
        ExpectedVersion, Handle, HandleWith, MemoryStore, Repository, SnapshotPolicy,
        SnapshotStore, StreamId, Version,
    };
}
