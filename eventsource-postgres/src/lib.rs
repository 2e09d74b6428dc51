//! The PostgreSQL adapter of [eventsource](https://docs.rs/eventsource): a durable
//! [`EventStore`](eventsource_core::EventStore) and
//! [`SnapshotStore`](eventsource_core::SnapshotStore) on [`sqlx`].
//!
//! ```no_run
//! use eventsource_postgres::PostgresStore;
//!
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! let store = PostgresStore::connect(&std::env::var("DATABASE_URL")?).await?;
//! store.migrate().await?; // creates the schema `eventsource` and its tables
//! # Ok(()) }
//! ```
//!
//! # Schema
//!
//! [`PostgresStore::migrate`] applies embedded migrations to the store's schema (default
//! `eventsource`, see [`PostgresStoreBuilder::schema`]) and records them in its
//! `schema_migrations` table; a database migrated by a newer release is refused with
//! [`PostgresError::SchemaTooNew`]. Tables: `streams` (the head version of each stream),
//! `events` (immutable: a trigger rejects `UPDATE`, `DELETE` and `TRUNCATE`), `snapshots`,
//! `checkpoints` (for projections), and the function `append()`.
//!
//! # Guarantees
//!
//! - An append is one statement for any batch size (plus a notification once committed); it
//!   checks the expected version before drawing positions, so a losing writer leaves no gap in
//!   the log.
//! - Global reads are gap-safe: see [`PostgresStore`] and [`PostgresStore::horizon_lag`].
//!   Positions increase in append order within a stream and a batch, and are consecutive
//!   within a batch unless other streams are appended to at the same moment; a rolled-back
//!   transaction leaves a gap in positions (never in stream versions). Resume from the
//!   [`Checkpoint`](eventsource_core::Checkpoint), not from a position.
//! - Every append NOTIFYs [`PostgresStore::notify_channel`] once committed
//!   ([`PostgresStore::append_in`]: at the commit of the caller's transaction).
//!
//! # Administration
//!
//! [`PostgresStore::admin`] gives a [`PostgresAdmin`]: schema diagnostics
//! ([`PostgresAdmin::require_current_schema`]), counts and the head of the log
//! ([`PostgresAdmin::status`]), projection checkpoints (list, reset), the events held back
//! behind open transactions ([`PostgresAdmin::count_after`]) and integrity checks
//! ([`PostgresAdmin::verify`]). The `eventsource` command-line tool is built on it and holds no
//! SQL of its own; applications can call it too (health checks, dashboards, deploy scripts).
//!
//! ```no_run
//! # use eventsource_postgres::PostgresStore;
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! let store = PostgresStore::connect(&std::env::var("DATABASE_URL")?).await?;
//! let admin = store.admin();
//! admin.require_current_schema().await?; // a readiness check: migrated, and not too new
//! for projection in admin.checkpoints().await? {
//!     println!("{}: {} events behind", projection.projection, projection.behind);
//! }
//! # Ok(()) }
//! ```

// Leaves first: none of these imports a module below it.
mod error;
mod migrate;
mod notify;
mod row;
mod schema;
mod sql;
mod store;
// Each adds one concern to `PostgresStore`.
mod admin;
mod append;
mod checkpoint;
mod lease;
mod read;
mod snapshot;
mod verify;

pub use admin::{Counts, Migrated, PostgresAdmin, ProjectionCheckpoint, SchemaStatus, StoreStatus};
pub use verify::{Check, Finding, ScanProgress, Severity, VerifyReport};

pub use checkpoint::PostgresTx;
pub use error::{PostgresError, is_transient};
pub use lease::PostgresLease;
pub use migrate::SCHEMA_VERSION;
pub use schema::{MAX_SCHEMA_NAME_LEN, SchemaName};
pub use store::{PostgresStore, PostgresStoreBuilder};

/// The driver, re-exported so that applications name the same version of its types
/// (`sqlx::PgPool`, `sqlx::postgres::PgListener`).
pub use sqlx;
