#![doc = include_str!("../README.md")]
#![doc(html_root_url = "https://docs.rs/eventsource")]

// The re-exports are listed one by one (no glob): what this crate offers is written here, and
// an item added to `eventsource-core` is public only once it is added below.

// Events and aggregates.
pub use eventsource_core::{
    Aggregate, Apply, DecodeFailure, Event, EventEnum, EventOf, Events, Handle, HandleWith, Shape,
    SnapshotPolicy,
};

#[cfg(feature = "derive")]
#[doc = include_str!("docs/derive_shape.md")]
pub use eventsource_derive::Shape;

#[cfg(feature = "derive")]
#[doc = include_str!("docs/derive_event.md")]
pub use eventsource_derive::Event;

#[cfg(feature = "derive")]
#[doc = include_str!("docs/derive_event_enum.md")]
pub use eventsource_derive::EventEnum;

#[cfg(feature = "derive")]
#[doc = include_str!("docs/derive_aggregate.md")]
pub use eventsource_derive::Aggregate;

// The envelope: what is stored around an event.
pub use eventsource_core::{
    Checkpoint, Envelope, ExpectedVersion, Metadata, NewEvent, Position, RecordedEvent, StreamId,
    Tag, Version,
};

// The repository: loading aggregates and executing commands.
pub use eventsource_core::{
    CommandFingerprint, CommandMetadata, DecodedEvent, Executed, Loaded, Repository, decode_event,
};

// The store contract and the in-memory store.
pub use eventsource_core::{
    Appended, EventStore, FoldEvent, FoldPage, FoldPayload, InvalidAppend, Limits, LogFilter,
    MemoryStore, Snapshot, SnapshotMaintenance, SnapshotScope, SnapshotStore, StreamPages,
    StreamRetirement, StreamStatus,
};

// Crypto-shredding: personal fields sealed per data subject, and forgetting a subject.
pub use eventsource_core::{
    Forgotten, KeyStore, MemoryKeyStore, Personal, PersonalField, SEALED_PATHS, SealedValue,
    Shredding, SubjectKey, sealed_values,
};

// Decisions across streams: multi-stream and conditional appends, decision models.
pub use eventsource_core::{
    AppendCondition, Boundary, ConsistencyBoundary, DecideError, Decided, Decision, DecisionStore,
    Decisions, Query, QueryItem, QueryRead, ReadPosition, StreamAppend, StreamConflict,
};

// Projections: read models fed from the global log.
pub use eventsource_core::{
    Batched, BegunAhead, CaughtUp, FailurePolicy, Flush, HandledEvents, HandlerError, ParkedEvent,
    ParkedSelection, Progress, Project, Projection, ProjectionError, ProjectionRunner,
    ProjectionStatus, ProjectionStore, Reset, RunnerOptions, apply_and_commit,
};

// Reactions: policies and process managers that turn events into commands, exactly once.
pub use eventsource_core::{
    Advance, Deadline, DeadlineRunner, DeadlineState, DeadlineStore, Dispatch, DispatchError,
    Dispatched, Dispatcher, Fired, MemoryClaim, Policy, PolicyProjection, ProcessManager,
    ProcessProjection, React, ReactionError, Reactions, process_stream, reaction,
};

// Errors.
pub use eventsource_core::{
    AppendError, BoxError, DecodeError, EncodeError, ExecuteError, LoadError, SnapshotError,
    StoreError,
};

// Given/when/then tests.
pub use eventsource_core::{GivenWhenThen, harness};

pub use eventsource_core::{json_schema, limits, observe, shape, upcast};

#[cfg(feature = "testing")]
pub use eventsource_core::{
    conformance_tests, decision_conformance_tests, lifecycle_conformance_tests, testing,
};

/// The PostgreSQL adapter (feature `postgres`): `PostgresStore` goes wherever a
/// [`MemoryStore`] goes.
#[cfg(feature = "postgres")]
pub use eventsource_postgres as postgres;

/// NATS JetStream (feature `nats`): the relay that publishes the global log exactly once,
/// and the projection source that consumes it in another service.
#[cfg(feature = "nats")]
pub use eventsource_nats as nats;

/// Items the derive macros' generated code uses. Not a public API: may change in any release.
#[doc(hidden)]
pub use eventsource_core::__private;

/// Guides: walkthroughs of one topic each, with compiled examples.
pub mod guide {
    #[doc = include_str!("docs/evolving_events.md")]
    pub mod evolving_events {}
}

/// The items most applications need, for a glob import: `use eventsource::prelude::*;`.
///
/// Aggregates and events (the traits and, with the default `derive` feature, their derives),
/// the repository and the in-memory store, projections, reactions (policies and process
/// managers), and the given/when/then harness.
///
/// `Serialize` and `Deserialize` are serde's derives, re-exported for convenience. The code
/// they generate names the `serde` crate, so **the crate that uses them must depend on
/// `serde` itself** (`serde = { version = "1", features = ["derive"] }`); without it every
/// derive fails with E0463 "can't find crate for `serde`".
pub mod prelude {
    pub use eventsource_core::{
        Advance, Aggregate, Apply, CommandMetadata, Dispatch, Dispatcher, Envelope, Event,
        EventEnum, EventStore, Events, ExecuteError, ExpectedVersion, GivenWhenThen, Handle,
        HandleWith, LoadError, MemoryKeyStore, MemoryStore, Personal, Policy, ProcessManager,
        Project, Projection, ProjectionRunner, React, Reactions, RecordedEvent, Repository, Reset,
        Shape, Shredding, SnapshotPolicy, SnapshotStore, StreamId, Version,
    };
    pub use eventsource_core::{
        Boundary, ConsistencyBoundary, Decision, DecisionStore, Decisions, Query, QueryItem, Tag,
    };

    pub use eventsource_core::__private::serde::{Deserialize, Serialize};
    #[cfg(feature = "derive")]
    pub use eventsource_derive::{Aggregate, Event, EventEnum, Shape};
}
