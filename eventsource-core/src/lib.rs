//! The runtime of [eventsource](https://docs.rs/eventsource): the store contract, the
//! repository, snapshots and the in-memory store.
//!
//! Applications use it through the `eventsource` facade crate, which adds the derive macros and
//! the store adapters. Store adapters implement [`EventStore`] and [`SnapshotStore`] and prove
//! their semantics with the conformance suite in `testing` (feature `testing`).

mod aggregate;
mod cache;
mod command;
mod decision;
mod envelope;
mod error;
mod event;
mod fingerprint;
pub mod harness;
pub mod json_schema;
pub mod limits;
pub mod observe;
mod payload;
mod personal;
mod projection;
pub mod reaction;
mod repository;
pub mod shape;
mod store;
#[cfg(feature = "testing")]
pub mod testing;
pub mod upcast;
mod variant;

pub use aggregate::{Aggregate, Apply, EventOf, Events, Handle, HandleWith, SnapshotPolicy};
pub use command::CommandMetadata;
pub use decision::{Boundary, ConsistencyBoundary, DecideError, Decided, Decision, Decisions};
pub use envelope::{
    Checkpoint, Envelope, ExpectedVersion, Metadata, NewEvent, Position, RecordedEvent, StreamId,
    Tag, Version,
};
pub use error::{
    AppendError, BoxError, DecodeError, EncodeError, ExecuteError, LoadError, SnapshotError,
    StoreError,
};
pub use event::{DecodeFailure, Event, EventEnum};
pub use fingerprint::CommandFingerprint;
pub use harness::GivenWhenThen;
pub use limits::{InvalidAppend, Limits};
pub use personal::{
    Forgotten, KeyStore, MemoryKeyStore, Personal, PersonalField, SEALED_PATHS, SealedValue,
    Shredding, SubjectKey, sealed_values,
};
pub use projection::{
    Batched, BegunAhead, CaughtUp, FailurePolicy, Flush, HandledEvents, HandlerError, ParkedEvent,
    ParkedSelection, Progress, Project, Projection, ProjectionError, ProjectionRunner,
    ProjectionStatus, ProjectionStore, Reset, RunnerOptions, apply_and_commit,
};
pub use reaction::{
    Advance, Deadline, DeadlineRunner, DeadlineState, DeadlineStore, Dispatch, DispatchError,
    Dispatched, Dispatcher, Fired, Policy, PolicyProjection, ProcessManager, ProcessProjection,
    React, ReactionError, Reactions, process_stream,
};
pub use repository::{DecodedEvent, Executed, Loaded, Repository, decode_event};
pub use shape::Shape;
pub use store::memory::MemoryStore;
pub use store::memory_deadlines::MemoryClaim;
pub use store::{
    AppendCondition, Appended, DecisionStore, EventStore, FoldEvent, FoldPage, FoldPayload,
    LogFilter, Query, QueryItem, QueryRead, ReadPosition, Snapshot, SnapshotMaintenance,
    SnapshotScope, SnapshotStore, StreamAppend, StreamConflict, StreamPages, StreamRetirement,
    StreamStatus,
};

/// Items the derive macros' generated code uses. Not a public API: may change in any release.
#[doc(hidden)]
pub mod __private {
    pub use serde;
    pub use serde_json;

    pub use crate::aggregate::{
        Aggregate, Apply, Events, Handle, HandleWith, ListedEvent, SnapshotPolicy,
    };
    pub use crate::decision::{Boundary, ConsistencyBoundary, Decision};
    pub use crate::envelope::Tag;
    pub use crate::event::{DecodeFailure, Event, EventEnum};
    pub use crate::fingerprint::{
        CommandFingerprint, FingerprintByName, FingerprintBySerialize, FingerprintProbe,
    };
    pub use crate::json_schema::EventSchema;
    pub use crate::personal::{PersonalField, mark_subjects};
    pub use crate::shape::{self, Shape, hex_str, shape_hash, shape_hex, shape_mix};
    pub use crate::upcast::{
        ListedAsNewest, Newest, NewestProbe, NotRetired, RetiredBy, SupersededBy, Upcast,
        assert_newest, decode_first, decode_upcast, first_repeated, str_eq,
    };
    pub use crate::variant::{StoredEnum, decode_variant, decode_variant_upcast, encode_variant};
}
