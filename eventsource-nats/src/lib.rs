//! NATS JetStream for [eventsource](https://docs.rs/eventsource): a relay that publishes a
//! store's global log to a JetStream stream exactly once, and a projection source that applies
//! those events in another service, exactly once into its own read model.
//!
//! ```text
//!  writer service                       NATS JetStream                 reader service
//!  Repository ─► PostgreSQL ─► Relay ─► stream EVENTS  ─► durable ─► JetStreamSource ─► its PostgreSQL
//!                (events,      (checkpoint  subjects        pull         (Projection/Project, read model
//!                 checkpoints)  + lease in   <prefix>.>      consumer     + checkpoint in one transaction)
//!                               the store)
//! ```
//!
//! # The relay
//!
//! [`Relay`] is a projection whose side effect is a publish. It reads the global log through
//! the store contract ([`EventStore::read_all`](eventsource_core::EventStore::read_all), gap-safe)
//! from its checkpoint, publishes each event to `<prefix>.<category>.<event name>` (tokens
//! escaped by [`escape_token`]: `cart.item_added` → `cart%2Eitem_added`), with the envelope
//! in headers ([`message`]) and `Nats-Msg-Id` = event id, waits for JetStream's
//! acknowledgements, then moves its checkpoint (in the store, under the relay's name). One
//! relay per name runs at a time (the store's lease).
//!
//! **Handoff guarantee**: no event is lost (the checkpoint passes an event only after
//! JetStream acknowledged storing it). After a crash at most one batch is published again,
//! and JetStream drops the repeats by `Nats-Msg-Id` when they arrive within the stream's
//! `duplicate_window` of the first copy ([`stream_config`] sets it; JetStream's default is two
//! minutes). A relay down for longer than the window, mid-batch, can leave duplicates in the
//! stream; the [`JetStreamSource`] skips them anyway (it skips everything at or before its
//! checkpoint), so read models stay exactly once either way.
//!
//! # The consuming side
//!
//! [`JetStreamSource`] runs a [`Projection`](eventsource_core::Projection) (the same
//! `Project` impls as with the `ProjectionRunner`) on a durable pull consumer with explicit
//! acknowledgement, committing each batch with its checkpoint in the read model's store and
//! acknowledging only after the commit.
//!
//! # Server versions
//!
//! Everything here works on nats-server 2.9 (Debian's package): durable pull consumers created
//! through `CONSUMER.CREATE`, one filter subject, `Nats-Msg-Id` deduplication and
//! `Nats-Expected-Last-Sequence`. async-nats is built without its `server_2_10`+ flags.
//!
//! # Scale-out
//!
//! See the README section "NATS JetStream" for a three-node cluster configuration, the order
//! JetStream guarantees, and how many relays and consumers to run.

mod error;
pub mod message;
mod relay;
mod setup;
mod source;
mod store;
mod subject;

pub use error::{DecodeMessageError, InvalidPrefix, MessageProblem, RelayError, SourceError};
pub use relay::{Relay, RelayOptions, RelayStatus, metric_names as relay_metrics};
pub use setup::stream_config;
pub use source::{JetStreamSource, SourceOptions, metric_names as source_metrics};
pub use subject::{SubjectPrefix, escape_token};

/// The async-nats version this crate is built on, for connecting and configuring streams.
pub use async_nats;
