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
//! `checkpoints` (for projections), `transaction_offset` (one row, see "Global order"), and
//! the functions `append()`, `logical_xact_id()`, `logical_xmin()` and `logical_xmax()`.
//!
//! An event's tracing ids (its metadata's `correlation_id` and `causation_id`) are stored in
//! `events.correlation_id` and `events.causation_id` (`uuid`), the rest of its metadata in
//! `events.metadata` (`jsonb`, usually `{}`). Rows written before migration 10 keep the ids
//! inside `metadata`; reads take them from the columns where set, else from `metadata`. To
//! find what one request caused in SQL, look in both:
//! `WHERE correlation_id = $1 OR metadata->>'correlation_id' = $1::text`.
//!
//! # Global order
//!
//! The global log is ordered by `(transaction_id, position)`, the two parts of a
//! [`Checkpoint`](eventsource_core::Checkpoint). `transaction_id` is a **logical transaction
//! id**, a `bigint`:
//!
//! ```text
//! transaction_id = pg_current_xact_id() + offset      (of the appending transaction)
//! read barrier   = pg_snapshot_xmin(pg_current_snapshot()) + offset
//! ```
//!
//! `offset` is a per-store value (the one row of `transaction_offset`, 0 until a repair raises
//! it; it is never lowered). A global read returns only events below the barrier: every
//! transaction with a lower id has ended, so nothing can commit later below a reader's
//! checkpoint (gap safety). Within one cluster, `xid + offset` is monotone in the xid: the
//! offset only rises, and only under `LOCK TABLE events IN SHARE ROW EXCLUSIVE MODE`, taken
//! when no append is in flight, with the new offset computed from the cluster's oldest running
//! transaction, so even a transaction that started before the raise gets an id above every
//! stored one. So the barrier keeps the guarantee of the plain xid it replaces, at no extra
//! round trip per append.
//!
//! **Why it survives a move.** A physical backup, point-in-time recovery, a streaming replica
//! and `pg_upgrade` keep the cluster's transaction counter: the stored ids stay valid as they
//! are. `pg_dump`/`pg_restore`, logical replication, or a dump into a managed database copy the
//! stored ids but not the counter; when the new cluster's counter is behind the newest stored
//! id, new transactions would sort before restored events and the barrier would hide those.
//! The store detects that (the newest stored id, read through the index, is at or beyond
//! `pg_snapshot_xmax + offset`): before its first read or append, each store instance checks
//! it once and refuses with [`PostgresError::ClusterMoved`], which names the repair;
//! [`PostgresAdmin::verify`] reports it and [`PostgresAdmin::status`] refuses. The repair is
//! [`PostgresStore::migrate`] (the CLI: `eventsource migrate`): it raises the offset to
//! `newest stored id - oldest running xid + 1`, so that every new transaction sorts after every
//! restored event and the restored events are below the barrier again. The stored ids and the
//! checkpoints need no translation: they stay valid in the logical order, so a projection
//! resumes exactly where it was. A repair writes one row, is idempotent, is logged through
//! `tracing`, and lets readers go on. When the new cluster's counter is ahead of the source's,
//! the store fits as restored and nothing changes. `migrate` also runs `ANALYZE` when the
//! tables hold events but no planner statistics, as after a restore. See the README, "Backup
//! and restore".
//!
//! Not covered: a distributed PostgreSQL whose nodes each keep a transaction counter (Citus
//! with events spread over nodes) has no single `xmin` to read below; the order above assumes
//! one cluster writes the store at a time.
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
//! behind open transactions ([`PostgresAdmin::count_after`]), whether the store fits its
//! cluster ([`PostgresAdmin::clock`], see "Global order") and integrity checks
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
mod begin;
mod clock;
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
mod deadline;
mod decision;
mod import;
mod kept;
mod keys;
mod lease;
mod read;
mod retire;
mod snapshot;
mod verify;

pub use admin::{
    Counts, EXACT_COUNT_LIMIT, Migrated, PostgresAdmin, ProjectionCheckpoint, SchemaStatus,
    StoreStatus,
};
pub use verify::{Check, Finding, ScanProgress, Severity, VerifyReport};

pub use checkpoint::PostgresTx;
pub use clock::{Rebased, TransactionClock};
pub use deadline::PostgresClaim;
pub use error::{PostgresError, is_transient};
pub use import::{DEFAULT_IMPORT_BATCH, Import, ImportError, ImportEvent, Imported};
pub use keys::PostgresKeyStore;
pub use lease::PostgresLease;
pub use migrate::SCHEMA_VERSION;
pub use schema::{MAX_SCHEMA_NAME_LEN, SchemaName};
pub use store::{PostgresStore, PostgresStoreBuilder};

/// The driver, re-exported so that applications name the same version of its types
/// (`sqlx::PgPool`, `sqlx::postgres::PgListener`).
pub use sqlx;
