//! # eventsource
//!
//! Declarative event sourcing for Rust. See the README for a tour.
#![doc(html_root_url = "https://docs.rs/eventsource")]

pub use eventsource_core::*;

#[cfg(feature = "postgres")]
pub use eventsource_postgres as postgres;

#[cfg(feature = "derive")]
#[doc = include_str!("docs/derive_event.md")]
pub use eventsource_derive::Event;

#[cfg(feature = "derive")]
#[doc = include_str!("docs/derive_event_enum.md")]
pub use eventsource_derive::EventEnum;

#[cfg(feature = "derive")]
#[doc = include_str!("docs/derive_aggregate.md")]
pub use eventsource_derive::Aggregate;

/// Guides: walkthroughs of one topic each, with compiled examples.
pub mod guide {
    #[doc = include_str!("docs/evolving_events.md")]
    pub mod evolving_events {}
}

/// The items most applications need, for a glob import.
pub mod prelude {
    pub use eventsource_core::{
        Aggregate, Apply, CommandMetadata, Event, EventEnum, EventStore, Events, ExecuteError,
        ExpectedVersion, Handle, HandleWith, MemoryStore, Repository, SnapshotPolicy,
        SnapshotStore, StreamId, Version,
    };

    pub use eventsource_core::__private::serde::{Deserialize, Serialize};
    pub use eventsource_core::GivenWhenThen;
    #[cfg(feature = "derive")]
    pub use eventsource_derive::{Aggregate, Event, EventEnum};
}
