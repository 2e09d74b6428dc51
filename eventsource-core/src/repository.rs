//! The repository: loads aggregates (snapshot + tail), executes commands, travels in time.

use std::fmt;
use std::future::Future;
use std::marker::PhantomData;
use std::num::NonZeroUsize;

use chrono::{DateTime, Utc};
use tracing::Instrument;
use tracing::field::Empty;

use crate::aggregate::{Aggregate, SnapshotPolicy};
use crate::cache::AggregateCache;
use crate::command::CommandMetadata;
use crate::envelope::{ExpectedVersion, NewEvent, RecordedEvent, StreamId, Version};
use crate::error::{
    AppendError, DecodeError, EncodeError, ExecuteError, LoadError, SnapshotError, StoreError,
};
use crate::event::EventEnum;
use crate::observe::names;
use crate::store::{Appended, EventStore, Snapshot, SnapshotStore};

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
    snapshot: SnapshotPolicy,
    cache: Option<AggregateCache<A>>,
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
    /// How many times the command was decided (more than 1 after conflicts).
    pub attempts: u32,
    /// True when the idempotency key had been executed before and nothing new was written.
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
            snapshot: A::SNAPSHOT,
            cache: None,
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
    /// snapshot is written or read: every load folds the whole stream.
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
        self.snapshot = policy;
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

impl<A: Aggregate, S: EventStore + SnapshotStore> Repository<A, S> {
    /// The aggregate's current state: its newest usable snapshot plus the events after it.
    pub async fn load(&self, id: impl fmt::Display) -> Result<Loaded<A>, LoadError> {
        self.load_stream(self.stream_id(id), None).await
    }

    /// The state as it was at `version` (time travel); later events are ignored.
    pub async fn load_at(
        &self,
        id: impl fmt::Display,
        version: Version,
    ) -> Result<Loaded<A>, LoadError> {
        self.load_stream(self.stream_id(id), Some(version)).await
    }

    /// The state as it was at time `at`: only events recorded at or before it are folded.
    pub async fn load_as_of(
        &self,
        id: impl fmt::Display,
        at: DateTime<Utc>,
    ) -> Result<Loaded<A>, LoadError> {
        let mut loaded = Loaded::new(self.stream_id(id));
        self.fold_tail(&mut loaded, None, Some(at)).await?;
        Ok(loaded)
    }

    /// Every event of the aggregate's stream, decoded, with its envelope: the audit trail.
    pub async fn history(
        &self,
        id: impl fmt::Display,
    ) -> Result<Vec<DecodedEvent<A::Event>>, LoadError> {
        let stream_id = self.stream_id(id);
        let mut pages = self.store.read_stream_pages(&stream_id, Version(1));
        let mut history = Vec::new();
        while let Some(page) = pages.next_page().await? {
            for record in page {
                let event = decode_event::<A>(&record)?;
                history.push(DecodedEvent { record, event });
            }
        }
        Ok(history)
    }

    /// Folds the stream's events after `loaded.version` into `loaded`: up to version `until`,
    /// and only events recorded at or before `recorded_by` (the first later one ends the fold).
    async fn fold_tail(
        &self,
        loaded: &mut Loaded<A>,
        until: Option<Version>,
        recorded_by: Option<DateTime<Utc>>,
    ) -> Result<(), LoadError> {
        let mut pages = self
            .store
            .read_stream_pages(&loaded.stream_id, loaded.version.next())
            .until(until.unwrap_or(Version(u64::MAX)));
        while let Some(page) = pages.next_page().await? {
            for record in &page {
                if recorded_by.is_some_and(|at| record.recorded_at > at) {
                    return Ok(());
                }
                loaded.fold(record)?;
            }
        }
        Ok(())
    }

    async fn load_stream(
        &self,
        stream_id: StreamId,
        until: Option<Version>,
    ) -> Result<Loaded<A>, LoadError> {
        let span = tracing::debug_span!(
            "eventsource.load",
            aggregate = A::NAME,
            stream = %stream_id,
            events_folded = Empty,
            snapshot = Empty,
            version = Empty,
        );
        let loaded = self
            .load_stream_in_span(stream_id, until)
            .instrument(span.clone())
            .await?;
        span.record("events_folded", loaded.events_folded);
        span.record("snapshot", loaded.snapshot_version.is_some());
        span.record("version", loaded.version.0);
        if self.snapshot != SnapshotPolicy::Never {
            let name = if loaded.snapshot_version.is_some() {
                names::SNAPSHOT_HITS
            } else {
                names::SNAPSHOT_MISSES
            };
            metrics::counter!(name, "aggregate" => A::NAME).increment(1);
        }
        Ok(loaded)
    }

    async fn load_stream_in_span(
        &self,
        stream_id: StreamId,
        until: Option<Version>,
    ) -> Result<Loaded<A>, LoadError> {
        let mut loaded = match self.usable_snapshot(&stream_id, until).await? {
            Some((state, version)) => Loaded {
                stream_id,
                state,
                version,
                snapshot_version: Some(version),
                events_folded: 0,
            },
            None => Loaded::new(stream_id),
        };
        self.fold_tail(&mut loaded, until, None).await?;
        Ok(loaded)
    }

    /// The stored snapshot if it is usable: written for this state shape, decodable, and not
    /// past `until`. Anything else is ignored so that the stream is refolded: a snapshot is a
    /// cache, never a source of truth.
    async fn usable_snapshot(
        &self,
        stream_id: &StreamId,
        until: Option<Version>,
    ) -> Result<Option<(A, Version)>, StoreError> {
        if self.snapshot == SnapshotPolicy::Never {
            return Ok(None);
        }
        let Some(snapshot) = self.store.load_snapshot(stream_id).await? else {
            return Ok(None);
        };
        if snapshot.state_fingerprint != A::STATE_FINGERPRINT
            || until.is_some_and(|until| snapshot.version > until)
        {
            return Ok(None);
        }
        Ok(A::deserialize(&snapshot.state)
            .ok()
            .map(|state| (state, snapshot.version)))
    }

    /// Executes `command` on the aggregate `id`: load, decide, append at the loaded version.
    pub async fn execute(
        &self,
        id: impl fmt::Display,
        command: impl Into<A::Command>,
    ) -> Result<Executed<A>, ExecuteError<A::Error>>
    where
        A::Command: Clone,
    {
        self.execute_with(id, command, CommandMetadata::new()).await
    }

    /// Executes `command` with metadata: its correlation and causation ids go onto the events,
    /// and an idempotency key makes a repeat a no-op that reports the first execution.
    pub async fn execute_with<C: Into<A::Command>>(
        &self,
        id: impl fmt::Display,
        command: C,
        metadata: CommandMetadata,
    ) -> Result<Executed<A>, ExecuteError<A::Error>>
    where
        A::Command: Clone,
    {
        let stream_id = self.stream_id(id);
        let span = tracing::info_span!(
            "eventsource.execute",
            aggregate = A::NAME,
            stream = %stream_id,
            command = crate::observe::short_type_name::<C>(),
            version = Empty,
            retries = Empty,
            outcome = Empty,
        );
        let result = self
            .execute_in_span(stream_id, command.into(), metadata)
            .instrument(span.clone())
            .await;
        match &result {
            Ok(done) => {
                span.record("version", done.version.0);
                span.record("retries", done.attempts.saturating_sub(1));
                span.record("outcome", if done.replayed { "replayed" } else { "ok" });
            }
            Err(ExecuteError::Rejected { .. }) => {
                span.record("outcome", "rejected");
            }
            Err(ExecuteError::Conflict { attempts, .. }) => {
                span.record("retries", attempts.saturating_sub(1));
                span.record("outcome", "conflict");
            }
            Err(_) => {
                span.record("outcome", "error");
            }
        }
        result
    }

    async fn execute_in_span(
        &self,
        stream_id: StreamId,
        command: A::Command,
        metadata: CommandMetadata,
    ) -> Result<Executed<A>, ExecuteError<A::Error>>
    where
        A::Command: Clone,
    {
        if let Some(done) = self.already_executed(&stream_id, &metadata).await? {
            return Ok(done);
        }
        let mut attempts = 0;
        let mut stale_cache_hits = 0;
        loop {
            attempts += 1;
            // A warm aggregate skips the load; a stale one fails the append below and is
            // reloaded, which does not count against the conflict retries.
            let cached = self.cache.as_ref().and_then(|cache| cache.take(&stream_id));
            let from_cache = cached.is_some();
            let (state, version) = match cached {
                Some(entry) => entry,
                None => {
                    let loaded = self.load_stream(stream_id.clone(), None).await?;
                    (loaded.state, loaded.version)
                }
            };
            let decided = state.decide(command.clone(), &self.services);
            let events = match decided {
                Ok(events) => events.into_vec(),
                Err(source) => {
                    self.cache_put(&stream_id, &state, version);
                    return Err(ExecuteError::Rejected {
                        stream: stream_id.clone(),
                        version,
                        source,
                    });
                }
            };
            if events.is_empty() {
                self.cache_put(&stream_id, &state, version);
                return Ok(Executed {
                    stream_id,
                    events,
                    version,
                    state,
                    attempts: attempts - stale_cache_hits,
                    replayed: false,
                });
            }
            let batch = encode_batch::<A>(&stream_id, &events, &metadata)?;
            let expected = ExpectedVersion::Exact(version);
            match self.store.append(&stream_id, expected, batch).await {
                Ok(written) => {
                    let mut state = state;
                    for event in &events {
                        state.evolve(event);
                    }
                    if !written.replayed {
                        self.cache_put(&stream_id, &state, written.last_version);
                    }
                    self.snapshot_if_due(&stream_id, version, written.last_version, &state)
                        .await;
                    return Ok(Executed {
                        stream_id,
                        events,
                        version: written.last_version,
                        state,
                        attempts: attempts - stale_cache_hits,
                        replayed: written.replayed,
                    });
                }
                Err(StoreError::Conflict { .. }) if from_cache => {
                    metrics::counter!(names::CACHE_STALE, "aggregate" => A::NAME).increment(1);
                    stale_cache_hits += 1;
                    continue;
                }
                Err(StoreError::Conflict { .. })
                    if attempts - stale_cache_hits <= self.conflict_retries =>
                {
                    metrics::counter!(names::COMMAND_RETRIES, "aggregate" => A::NAME).increment(1);
                    continue;
                }
                Err(StoreError::Conflict { actual, .. }) => {
                    return Err(ExecuteError::Conflict {
                        stream: stream_id,
                        attempts: attempts - stale_cache_hits,
                        expected: version,
                        actual,
                    });
                }
                Err(other) => return Err(ExecuteError::Store(other)),
            }
        }
    }

    fn cache_put(&self, stream_id: &StreamId, state: &A, version: Version) {
        if let Some(cache) = &self.cache {
            cache.put(stream_id, state, version);
        }
    }

    /// If a command with this idempotency key already ran on the stream, what it did.
    async fn already_executed(
        &self,
        stream_id: &StreamId,
        metadata: &CommandMetadata,
    ) -> Result<Option<Executed<A>>, ExecuteError<A::Error>> {
        if metadata.idempotency_key.is_none() {
            return Ok(None);
        }
        let first_id = metadata.event_id(stream_id, 0);
        let Some(first) = self
            .store
            .find_event(first_id)
            .await
            .map_err(ExecuteError::Store)?
        else {
            return Ok(None);
        };
        if first.stream_id != *stream_id {
            return Ok(None);
        }
        // The command's events are the run of derived ids from the first one on.
        let mut pages = self.store.read_stream_pages(stream_id, first.version);
        let mut events = Vec::new();
        'pages: while let Some(page) = pages.next_page().await.map_err(ExecuteError::Store)? {
            for record in &page {
                if record.event_id != metadata.event_id(stream_id, events.len()) {
                    break 'pages;
                }
                events.push(decode_event::<A>(record).map_err(LoadError::from)?);
            }
        }
        let loaded = self.load_stream(stream_id.clone(), None).await?;
        Ok(Some(Executed {
            stream_id: stream_id.clone(),
            events,
            version: loaded.version,
            state: loaded.state,
            attempts: 0,
            replayed: true,
        }))
    }

    async fn snapshot_if_due(
        &self,
        stream_id: &StreamId,
        before: Version,
        after: Version,
        state: &A,
    ) {
        if !self.snapshot.due(before.0, after.0) {
            return;
        }
        // A snapshot is only a cache: failing to write one loses nothing, so the command,
        // whose events are already stored, still succeeds.
        let _ = self.save_snapshot(stream_id, after, state).await;
    }

    async fn save_snapshot(
        &self,
        stream_id: &StreamId,
        version: Version,
        state: &A,
    ) -> Result<(), SnapshotError> {
        let state = serde_json::to_value(state).map_err(|source| SnapshotError::Encode {
            stream: stream_id.clone(),
            version,
            source,
        })?;
        let snapshot = Snapshot {
            stream_id: stream_id.clone(),
            version,
            state_fingerprint: A::STATE_FINGERPRINT.to_owned(),
            state,
            taken_at: Utc::now(),
        };
        self.store
            .save_snapshot(snapshot)
            .await
            .map_err(|source| SnapshotError::Store {
                stream: stream_id.clone(),
                version,
                source,
            })
    }

    /// Stores a snapshot of the aggregate at its current version, whatever the policy says
    /// (after an import, say, or before a burst of loads), and returns that version.
    ///
    /// The state is loaded from the store (snapshot + tail, or the whole stream), never from
    /// the cache. A repository whose policy is [`SnapshotPolicy::Never`] does not read
    /// snapshots, so its own loads still fold the whole stream; repositories of the same
    /// aggregate with an `Every` policy start from this one. A stream without events is
    /// [`SnapshotError::NoEvents`].
    pub async fn snapshot(&self, id: impl fmt::Display) -> Result<Version, SnapshotError> {
        let loaded = self.load_stream(self.stream_id(id), None).await?;
        if loaded.version == Version::NONE {
            return Err(SnapshotError::NoEvents {
                stream: loaded.stream_id,
            });
        }
        self.save_snapshot(&loaded.stream_id, loaded.version, &loaded.state)
            .await?;
        Ok(loaded.version)
    }

    /// Appends typed events of this aggregate to its stream if the stream matches `expected`,
    /// without deciding a command: for imports, migrations, tools and benchmarks. The batch is
    /// atomic; a mismatch is [`AppendError::Conflict`] and writes nothing.
    ///
    /// The events are encoded under their names and current schema versions, with fresh
    /// ids and empty metadata ([`append_with`](Self::append_with) sets them). Appending
    /// takes no snapshot (the state is not loaded): call [`snapshot`](Self::snapshot)
    /// afterwards where loads should start from one.
    ///
    /// ```
    /// # use eventsource_core::*;
    /// # async fn demo<A: Aggregate<Services = ()>>(store: MemoryStore, imported: Vec<A::Event>) -> Result<(), AppendError> {
    /// let accounts = Repository::<A, _>::new(store);
    /// let count = imported.len() as u64;
    /// let appended = accounts.append("ada", ExpectedVersion::NoStream, imported).await?;
    /// assert_eq!(appended.last_version, Version(count));
    /// accounts.snapshot("ada").await.ok(); // loads start from here
    /// # Ok(()) }
    /// ```
    pub fn append<E: Into<A::Event>>(
        &self,
        id: impl fmt::Display,
        expected: ExpectedVersion,
        events: impl IntoIterator<Item = E>,
    ) -> impl Future<Output = Result<Appended, AppendError>> + Send + '_ {
        self.append_with(id, expected, events, CommandMetadata::new())
    }

    /// Like [`append`](Self::append), with metadata: the events carry its correlation id,
    /// causation id and custom fields as a command's events do, and with an idempotency key
    /// their ids are derived from it, so appending the same batch again writes nothing and
    /// reports the first append (`replayed`).
    pub fn append_with<E: Into<A::Event>>(
        &self,
        id: impl fmt::Display,
        expected: ExpectedVersion,
        events: impl IntoIterator<Item = E>,
        metadata: CommandMetadata,
    ) -> impl Future<Output = Result<Appended, AppendError>> + Send + '_ {
        // Encoded before the future starts, so that it does not hold the caller's iterator.
        let stream_id = self.stream_id(id);
        let events: Vec<A::Event> = events.into_iter().map(Into::into).collect();
        let batch = encode_batch::<A>(&stream_id, &events, &metadata);
        async move {
            let appended = self.store.append(&stream_id, expected, batch?).await?;
            // A cached copy is behind now; the next command loads afresh.
            if let Some(cache) = &self.cache {
                cache.take(&stream_id);
            }
            Ok(appended)
        }
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
}

/// The batch a command or a typed append writes: each event encoded, with the ids and
/// metadata that `metadata` gives it.
fn encode_batch<A: Aggregate>(
    stream_id: &StreamId,
    events: &[A::Event],
    metadata: &CommandMetadata,
) -> Result<Vec<NewEvent>, EncodeError> {
    let event_metadata = metadata.event_metadata();
    events
        .iter()
        .enumerate()
        .map(|(index, event)| {
            let payload = event.encode().map_err(|source| EncodeError {
                stream: stream_id.clone(),
                name: event.name(),
                source,
            })?;
            Ok(NewEvent {
                event_id: metadata.event_id(stream_id, index),
                name: event.name().to_owned(),
                schema_version: event.schema_version(),
                payload,
                metadata: event_metadata.clone(),
            })
        })
        .collect()
}
