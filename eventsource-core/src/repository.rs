//! The repository: loads aggregates (snapshot + tail), executes commands, travels in time.

use std::fmt;
use std::marker::PhantomData;
use std::num::NonZeroUsize;

use chrono::{DateTime, Utc};
use tracing::Instrument;
use tracing::field::Empty;

use crate::aggregate::Aggregate;
use crate::cache::AggregateCache;
use crate::command::CommandMetadata;
use crate::envelope::{ExpectedVersion, NewEvent, RecordedEvent, StreamId, Version};
use crate::error::{DecodeError, ExecuteError, LoadError, StoreError};
use crate::event::EventEnum;
use crate::observe::names;
use crate::store::{EventStore, Snapshot, SnapshotStore};

/// How many events one read of a stream asks for.
const PAGE: usize = 1_000;

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
    cache: Option<AggregateCache<A>>,
    _aggregate: PhantomData<fn() -> A>,
}

impl<A: Aggregate, S: fmt::Debug> fmt::Debug for Repository<A, S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Repository")
            .field("aggregate", &A::NAME)
            .field("store", &self.store)
            .field("conflict_retries", &self.conflict_retries)
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
        let stream_id = self.stream_id(id);
        let mut loaded = Loaded::new(stream_id);
        'pages: loop {
            let page = self
                .store
                .read_stream(&loaded.stream_id, loaded.version.next(), PAGE)
                .await?;
            let full = page.len() == PAGE;
            for record in &page {
                if record.recorded_at > at {
                    break 'pages;
                }
                loaded.fold(record)?;
            }
            if !full {
                break;
            }
        }
        Ok(loaded)
    }

    /// Every event of the aggregate's stream, decoded, with its envelope: the audit trail.
    pub async fn history(
        &self,
        id: impl fmt::Display,
    ) -> Result<Vec<DecodedEvent<A::Event>>, LoadError> {
        let stream_id = self.stream_id(id);
        let mut history = Vec::new();
        loop {
            let from = Version(history.len() as u64 + 1);
            let page = self.store.read_stream(&stream_id, from, PAGE).await?;
            let full = page.len() == PAGE;
            for record in page {
                let event = decode_event::<A>(&record)?;
                history.push(DecodedEvent { record, event });
            }
            if !full {
                return Ok(history);
            }
        }
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
        if A::SNAPSHOT != crate::SnapshotPolicy::Never {
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
        loop {
            let remaining = until.map_or(PAGE, |until| {
                (until.0.saturating_sub(loaded.version.0) as usize).min(PAGE)
            });
            if remaining == 0 {
                break;
            }
            let page = self
                .store
                .read_stream(&loaded.stream_id, loaded.version.next(), remaining)
                .await?;
            let full = page.len() == remaining;
            for record in &page {
                loaded.fold(record)?;
            }
            if !full {
                break;
            }
        }
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
        if A::SNAPSHOT == crate::SnapshotPolicy::Never {
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
        let tail = self
            .store
            .read_stream(stream_id, first.version, PAGE)
            .await
            .map_err(ExecuteError::Store)?;
        let mut events = Vec::new();
        for (index, record) in tail.iter().enumerate() {
            if record.event_id != metadata.event_id(stream_id, index) {
                break;
            }
            events.push(decode_event::<A>(record).map_err(LoadError::from)?);
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
        if !A::SNAPSHOT.due(before.0, after.0) {
            return;
        }
        // A snapshot is only a cache: failing to write one loses nothing, so the command,
        // whose events are already stored, still succeeds.
        if let Ok(state) = serde_json::to_value(state) {
            let _ = self
                .store
                .save_snapshot(Snapshot {
                    stream_id: stream_id.clone(),
                    version: after,
                    state_fingerprint: A::STATE_FINGERPRINT.to_owned(),
                    state,
                    taken_at: Utc::now(),
                })
                .await;
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

fn encode_batch<A: Aggregate>(
    stream_id: &StreamId,
    events: &[A::Event],
    metadata: &CommandMetadata,
) -> Result<Vec<NewEvent>, ExecuteError<A::Error>> {
    let event_metadata = metadata.event_metadata();
    events
        .iter()
        .enumerate()
        .map(|(index, event)| {
            let payload = event.encode().map_err(|source| ExecuteError::Encode {
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
