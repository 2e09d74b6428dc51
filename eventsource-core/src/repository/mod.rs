//! The repository: loads aggregates (snapshot + tail), executes commands, travels in time,
//! appends typed events and takes snapshots.

mod execute;
mod idempotency;
mod load;
mod maintain;
mod queue;
mod write;

pub(crate) use write::encode_batch;

use std::fmt;
use std::marker::PhantomData;
use std::num::NonZeroUsize;

use crate::aggregate::{Aggregate, SnapshotPolicy};
use crate::cache::AggregateCache;
use crate::envelope::{RecordedEvent, StreamId, Version};
use crate::error::DecodeError;
use crate::event::EventEnum;
use crate::store::FoldEvent;

/// The default of [`Repository::retry_transient`].
const DEFAULT_TRANSIENT_RETRIES: u32 = 3;

/// Loads and changes aggregates of type `A` kept in store `S`.
///
/// ```
/// # use eventsource_core::*;
/// # fn demo<A: Aggregate<Services = ()>>(store: MemoryStore) {
/// let accounts = Repository::<A, _>::new(store).retry_on_conflict(3);
/// # }
/// ```
pub struct Repository<A: Aggregate, S> {
    store: S,
    services: A::Services,
    conflict_retries: u32,
    transient_retries: u32,
    snapshot: SnapshotPolicy,
    cache: Option<AggregateCache<A>>,
    /// Writers of one stream take turns (`None`: they race, as writers in other processes do).
    queue: Option<queue::StreamQueue>,
    _aggregate: PhantomData<fn() -> A>,
}

impl<A: Aggregate, S: fmt::Debug> fmt::Debug for Repository<A, S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Repository")
            .field("aggregate", &A::NAME)
            .field("store", &self.store)
            .field("conflict_retries", &self.conflict_retries)
            .field("snapshot", &self.snapshot)
            .field("cached", &self.cached())
            .field("queue_writers", &self.queue.is_some())
            .finish()
    }
}

/// An aggregate's state at a version.
#[derive(Clone, Debug)]
pub struct Loaded<A> {
    /// The aggregate's stream.
    pub stream_id: StreamId,
    /// The folded state.
    pub state: A,
    /// The stream version the state includes (`Version::NONE` for a new aggregate).
    pub version: Version,
    /// The version of the snapshot the load started from, if one was used.
    pub snapshot_version: Option<Version>,
    /// How many events were folded on top of the snapshot (or from the start).
    pub events_folded: u64,
}

/// What an executed command did.
#[derive(Clone, Debug)]
pub struct Executed<A: Aggregate> {
    /// The aggregate's stream.
    pub stream_id: StreamId,
    /// The events the command produced, in order (empty if it changed nothing).
    pub events: Vec<A::Event>,
    /// The stream's version after the command.
    pub version: Version,
    /// The state after the command.
    pub state: A,
    /// How many times the command was decided in this call (more than 1 after conflicts; 0
    /// when a repeat of an idempotency key was answered by the lookup, without deciding).
    pub attempts: u32,
    /// True when the idempotency key had been executed before and nothing new was written:
    /// `events`, `version` and `state` are then those of that execution, read back from the
    /// store (the state as of its last event, not the stream's head).
    pub replayed: bool,
}

/// A stored event together with its decoded form: one line of an audit trail.
#[derive(Clone, Debug)]
pub struct DecodedEvent<E> {
    /// The stored envelope (ids, version, position, metadata, time, raw payload).
    pub record: RecordedEvent,
    /// The decoded event.
    pub event: E,
}

impl<A: Aggregate<Services = ()>, S> Repository<A, S> {
    /// A repository over `store` for an aggregate without services.
    pub fn new(store: S) -> Self {
        Repository::with_services(store, ())
    }
}

impl<A: Aggregate, S> Repository<A, S> {
    /// A repository whose handlers receive `services`.
    pub fn with_services(store: S, services: A::Services) -> Self {
        Repository {
            store,
            services,
            conflict_retries: 0,
            transient_retries: DEFAULT_TRANSIENT_RETRIES,
            snapshot: effective(A::SNAPSHOT),
            cache: None,
            queue: Some(queue::StreamQueue::default()),
            _aggregate: PhantomData,
        }
    }

    /// On a concurrency conflict, reload and decide again up to `retries` more times
    /// (default 0: report the conflict).
    #[must_use]
    pub fn retry_on_conflict(mut self, retries: u32) -> Self {
        self.conflict_retries = retries;
        self
    }

    /// When the store fails in a way a retry can cure ([`StoreError::is_transient`](crate::StoreError::is_transient): a lost
    /// connection, a pool timeout, a server shutting down), retry the load or the append up to
    /// `retries` times, waiting 50 ms, then twice as long each time up to 5 s between two
    /// tries (default 3; 0 reports the error at once).
    ///
    /// Retrying an append is safe: the retry sends the same events with the same ids, so if the
    /// failed attempt did commit (the reply was lost), the store recognises them and nothing is
    /// written twice; the command reports that append.
    #[must_use]
    pub fn retry_transient(mut self, retries: u32) -> Self {
        self.transient_retries = retries;
        self
    }

    /// Whether concurrent commands on one aggregate through this repository take turns (the
    /// default, `true`): the second waits for the first to finish, then loads (or takes from
    /// the cache) the state the first left, instead of deciding on the same version and losing
    /// the append to it. Writers elsewhere (other repositories, other processes) are not
    /// queued: the append's expected version still catches them, as a conflict.
    ///
    /// With `false`, commands on one aggregate race, and all but one of a simultaneous group
    /// conflict (and are retried up to [`retry_on_conflict`](Self::retry_on_conflict)).
    #[must_use]
    pub fn queue_writers(mut self, queue: bool) -> Self {
        self.queue = queue.then(queue::StreamQueue::default);
        self
    }

    /// Keeps up to `capacity` recently used aggregates in memory (least recently used out
    /// first). A command on a cached aggregate skips the load and appends at the cached
    /// version; if another writer moved the stream meanwhile, the append conflicts, the entry
    /// is dropped and the command runs again on a fresh load (not counted as a conflict
    /// retry). Off by default. `load`, `load_at` and `load_as_of` always read the store.
    #[must_use]
    pub fn with_cache(mut self, capacity: NonZeroUsize) -> Self
    where
        A: Clone,
    {
        self.cache = Some(AggregateCache::new(capacity, A::clone));
        self
    }

    /// Replaces the aggregate's compile-time snapshot policy ([`Aggregate::SNAPSHOT`], e.g.
    /// `#[aggregate(snapshot(every = 100))]`) for this repository.
    ///
    /// With [`SnapshotPolicy::Every`] a command whose events cross a multiple of `n` stores a
    /// snapshot, and loads start from the stored one. With [`SnapshotPolicy::Never`] no
    /// snapshot is written or read: every load folds the whole stream. `Every(0)` is `Never`.
    ///
    /// ```
    /// # use eventsource_core::*;
    /// # fn demo<A: Aggregate<Services = ()>>(store: MemoryStore) {
    /// let accounts = Repository::<A, _>::new(store).with_snapshot_policy(SnapshotPolicy::Every(50));
    /// assert_eq!(accounts.snapshot_policy(), SnapshotPolicy::Every(50));
    /// # }
    /// ```
    #[must_use]
    pub fn with_snapshot_policy(mut self, policy: SnapshotPolicy) -> Self {
        self.snapshot = effective(policy);
        self
    }

    /// The snapshot policy in force: the aggregate's own unless
    /// [`with_snapshot_policy`](Self::with_snapshot_policy) replaced it.
    pub fn snapshot_policy(&self) -> SnapshotPolicy {
        self.snapshot
    }

    /// How many aggregates the cache holds (0 without a cache).
    pub fn cached(&self) -> usize {
        self.cache.as_ref().map_or(0, AggregateCache::len)
    }

    /// The underlying store.
    pub fn store(&self) -> &S {
        &self.store
    }

    /// The stream of the aggregate with this id: `<aggregate name>-<id>`.
    pub fn stream_id(&self, id: impl fmt::Display) -> StreamId {
        StreamId::new(A::NAME, id)
    }
}

/// Decodes one stored event of aggregate `A`, naming the stream, version, position and name on
/// failure.
pub fn decode_event<A: Aggregate>(record: &RecordedEvent) -> Result<A::Event, DecodeError> {
    A::Event::decode(&record.name, record.schema_version, &record.payload).map_err(|source| {
        DecodeError {
            stream: record.stream_id.clone(),
            version: record.version,
            position: record.position,
            name: record.name.clone(),
            schema_version: record.schema_version,
            source,
        }
    })
}

/// The policy a repository follows: `Every(0)` would read snapshots but never write one, so it
/// means `Never`.
fn effective(policy: SnapshotPolicy) -> SnapshotPolicy {
    match policy {
        SnapshotPolicy::Every(0) => SnapshotPolicy::Never,
        other => other,
    }
}

impl<A: Aggregate> Loaded<A> {
    fn new(stream_id: StreamId) -> Self {
        Loaded {
            stream_id,
            state: A::default(),
            version: Version::NONE,
            snapshot_version: None,
            events_folded: 0,
        }
    }

    fn fold(&mut self, record: &RecordedEvent) -> Result<(), DecodeError> {
        let event = decode_event::<A>(record)?;
        self.state.evolve(&event);
        self.version = record.version;
        self.events_folded += 1;
        Ok(())
    }

    /// [`Self::fold`] of an event read for folding (see [`EventStore::read_stream_for_fold`]).
    ///
    /// [`EventStore::read_stream_for_fold`]: crate::EventStore::read_stream_for_fold
    fn fold_narrow(&mut self, event: &FoldEvent) -> Result<(), DecodeError> {
        let decoded = event
            .payload
            .decode::<A::Event>(&event.name, event.schema_version)
            .map_err(|source| DecodeError {
                stream: self.stream_id.clone(),
                version: event.version,
                position: event.position,
                name: event.name.clone(),
                schema_version: event.schema_version,
                source,
            })?;
        self.state.evolve(&decoded);
        self.version = event.version;
        self.events_folded += 1;
        Ok(())
    }
}
