//! An in-memory store: the embedded default, and the reference for the store semantics.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use chrono::Utc;
use tokio::sync::watch;
use uuid::Uuid;

use crate::envelope::{
    Checkpoint, ExpectedVersion, NewEvent, Position, RecordedEvent, StreamId, Tag, Version,
};
use crate::error::StoreError;
use crate::limits::Limits;
use crate::projection::{ParkedEvent, ParkedSelection, ProjectionStore};
use crate::store::retire::{SnapshotMaintenance, SnapshotScope, StreamRetirement, StreamStatus};
use crate::store::{
    AppendCondition, Appended, DecisionStore, EventStore, LogFilter, Query, QueryRead,
    ReadPosition, Snapshot, SnapshotStore, StreamAppend, StreamConflict,
};

/// An event and snapshot store held in memory, safe to share between tasks.
///
/// Cloning is cheap and shares the data. Each append is one "transaction": it is checked and
/// written under one lock, so readers never see half a batch.
///
/// ```
/// # use eventsource_core::{MemoryStore, EventStore, StreamId, ExpectedVersion, NewEvent, Version};
/// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
/// let store = MemoryStore::new();
/// let stream = StreamId::new("account", 1);
/// let event = NewEvent::new("account.opened", 1, serde_json::json!({ "owner": "ada" }));
/// let written = store.append(&stream, ExpectedVersion::NoStream, vec![event]).await?;
/// assert_eq!(written.last_version, Version(1));
/// # Ok::<_, eventsource_core::StoreError>(()) }).unwrap();
/// ```
#[derive(Clone)]
pub struct MemoryStore {
    inner: Arc<Mutex<Inner>>,
    head: Arc<watch::Sender<Position>>,
    limits: Limits,
    /// Scheduled deadlines (`store/memory_deadlines.rs`).
    pub(super) deadlines: super::memory_deadlines::DeadlineTable,
}

#[derive(Default)]
struct Inner {
    log: Vec<RecordedEvent>,
    /// The tags of each event of `log`, at the same index.
    tags: Vec<Vec<Tag>>,
    /// Indexes into `log`, in version order.
    streams: HashMap<StreamId, Vec<usize>>,
    ids: HashMap<Uuid, usize>,
    snapshots: HashMap<StreamId, Snapshot>,
    checkpoints: HashMap<String, Checkpoint>,
    leases: HashMap<String, Arc<tokio::sync::Mutex<()>>>,
    /// Projections that ran here (took a lease), and whether a reset of each is pending.
    resets: HashMap<String, bool>,
    /// Parked events by projection, by position.
    parked: HashMap<String, BTreeMap<Position, ParkedEvent>>,
    transactions: u64,
    /// Archived (and deleted) streams.
    retired: HashMap<StreamId, Retired>,
    /// Log indexes of deleted events: skipped by every read, their positions never reused.
    deleted: std::collections::HashSet<usize>,
}

#[derive(Clone, Copy)]
struct Retired {
    /// The head when the stream was archived (kept after a delete).
    version: Version,
    archived_at: chrono::DateTime<Utc>,
    deleted_at: Option<chrono::DateTime<Utc>>,
}

impl Default for MemoryStore {
    fn default() -> Self {
        MemoryStore::new()
    }
}

impl std::fmt::Debug for MemoryStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let inner = self.lock();
        f.debug_struct("MemoryStore")
            .field("events", &inner.log.len())
            .field("streams", &inner.streams.len())
            .finish()
    }
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        MemoryStore {
            inner: Arc::default(),
            head: Arc::new(watch::Sender::new(Position(0))),
            limits: Limits::default(),
            deadlines: super::memory_deadlines::DeadlineTable::default(),
        }
    }

    /// The same store with other [`Limits`] on appends (the default is `Limits::default()`,
    /// the same as the PostgreSQL store's).
    #[must_use]
    pub fn with_limits(mut self, limits: Limits) -> Self {
        self.limits = limits;
        self
    }

    /// A receiver that changes whenever events are appended; its value is the head position.
    /// Live readers wait on it instead of polling.
    pub fn subscribe(&self) -> watch::Receiver<Position> {
        self.head.subscribe()
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic while holding the lock cannot leave a half-written batch (appends validate
        // before they mutate), so the data behind a poisoned lock is still consistent.
        self.inner
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl Inner {
    fn version(&self, stream: &StreamId) -> Version {
        if let Some(retired) = self.retired.get(stream) {
            return retired.version;
        }
        Version(
            self.streams
                .get(stream)
                .map_or(0, |events| events.len() as u64),
        )
    }

    /// If the batch repeats an earlier append exactly, that append's result.
    fn replay(
        &self,
        stream: &StreamId,
        events: &[NewEvent],
    ) -> Result<Option<Appended>, StoreError> {
        let mut stored = Vec::with_capacity(events.len());
        for event in events {
            if let Some(&index) = self.ids.get(&event.event_id) {
                stored.push(&self.log[index]);
            }
        }
        let Some(first) = stored.first() else {
            return Ok(None);
        };
        let exact = stored.len() == events.len()
            && stored
                .iter()
                .enumerate()
                .all(|(i, e)| e.stream_id == *stream && e.version.0 == first.version.0 + i as u64);
        if !exact {
            let clash = stored
                .iter()
                .find(|e| e.stream_id != *stream)
                .unwrap_or(first);
            return Err(StoreError::DuplicateEventId {
                stream: stream.clone(),
                event_id: clash.event_id,
                existing_stream: clash.stream_id.clone(),
                existing_version: clash.version,
            });
        }
        let last = stored[stored.len() - 1];
        Ok(Some(Appended {
            stream_id: stream.clone(),
            first_version: first.version,
            last_version: last.version,
            first_position: first.position,
            last_position: last.position,
            replayed: true,
        }))
    }
}

impl MemoryStore {
    fn append_locked(
        &self,
        stream: &StreamId,
        expected: ExpectedVersion,
        events: Vec<NewEvent>,
    ) -> Result<Appended, StoreError> {
        if events.is_empty() {
            return Err(StoreError::EmptyBatch {
                stream: stream.clone(),
            });
        }
        self.limits.check_append(stream, &events)?;
        let head = {
            let mut inner = self.lock();
            if let Some(original) = inner.replay(stream, &events)? {
                return Ok(original);
            }
            let actual = inner.version(stream);
            if !expected.matches(actual) {
                return Err(StoreError::Conflict {
                    stream: stream.clone(),
                    expected,
                    actual,
                });
            }
            if inner.retired.contains_key(stream) {
                return Err(StoreError::StreamArchived {
                    stream: stream.clone(),
                });
            }
            // A batch may not repeat an id within itself either.
            let mut seen = std::collections::HashSet::with_capacity(events.len());
            if let Some(dup) = events.iter().find(|e| !seen.insert(e.event_id)) {
                return Err(StoreError::DuplicateEventId {
                    stream: stream.clone(),
                    event_id: dup.event_id,
                    existing_stream: stream.clone(),
                    existing_version: actual,
                });
            }

            inner.transactions += 1;
            let transaction = inner.transactions;
            let recorded_at = Utc::now();
            let first_position = Position(inner.log.len() as u64 + 1);
            let count = events.len() as u64;
            for (i, event) in events.into_iter().enumerate() {
                let index = inner.log.len();
                let position = index as u64 + 1;
                inner.ids.insert(event.event_id, index);
                inner.streams.entry(stream.clone()).or_default().push(index);
                inner.tags.push(event.tags);
                inner.log.push(RecordedEvent {
                    event_id: event.event_id,
                    stream_id: stream.clone(),
                    version: Version(actual.0 + 1 + i as u64),
                    position: Position(position),
                    checkpoint: Checkpoint::from_parts(transaction, position),
                    name: event.name,
                    schema_version: event.schema_version,
                    payload: event.payload,
                    metadata: event.metadata,
                    recorded_at,
                });
            }
            Appended {
                stream_id: stream.clone(),
                first_version: actual.next(),
                last_version: Version(actual.0 + count),
                first_position,
                last_position: Position(first_position.0 + count - 1),
                replayed: false,
            }
        };
        self.head.send_replace(head.last_position);
        Ok(head)
    }
}

impl MemoryStore {
    /// [`DecisionStore::append_streams`]: every check under the one lock, then every write.
    fn append_streams_locked(
        &self,
        appends: Vec<StreamAppend>,
        condition: Option<AppendCondition>,
    ) -> Result<Vec<Appended>, StoreError> {
        self.limits.check_streams(&appends, condition.as_ref())?;
        let written = {
            let mut inner = self.lock();
            // A retry of a whole earlier call: every stream's batch stored as given.
            let mut replays = Vec::with_capacity(appends.len());
            for append in &appends {
                replays.push(inner.replay(&append.stream, &append.events)?);
            }
            if replays.iter().all(Option::is_some) {
                return Ok(replays.into_iter().flatten().collect());
            }
            if let Some(stored) = appends
                .iter()
                .flat_map(|a| a.events.iter().map(move |e| (&a.stream, e.event_id)))
                .find_map(|(stream, id)| inner.ids.get(&id).map(|&i| (stream, i)))
            {
                let (stream, index) = stored;
                let clash = &inner.log[index];
                return Err(StoreError::DuplicateEventId {
                    stream: stream.clone(),
                    event_id: clash.event_id,
                    existing_stream: clash.stream_id.clone(),
                    existing_version: clash.version,
                });
            }
            if let Some(condition) = &condition
                && let Some(index) = inner.first_match(&condition.query, &condition.after)
            {
                let event = &inner.log[index];
                return Err(StoreError::ConditionFailed {
                    stream: event.stream_id.clone(),
                    position: event.position,
                    name: event.name.clone(),
                });
            }
            let conflicts: Vec<StreamConflict> = appends
                .iter()
                .filter_map(|append| {
                    let actual = inner.version(&append.stream);
                    (!append.expected.matches(actual)).then(|| StreamConflict {
                        stream: append.stream.clone(),
                        expected: append.expected,
                        actual,
                    })
                })
                .collect();
            if !conflicts.is_empty() {
                return Err(StoreError::Conflicts { conflicts });
            }

            inner.transactions += 1;
            let transaction = inner.transactions;
            let recorded_at = Utc::now();
            let mut written = Vec::with_capacity(appends.len());
            for append in appends {
                let actual = inner.version(&append.stream);
                let first_position = Position(inner.log.len() as u64 + 1);
                let count = append.events.len() as u64;
                for (i, event) in append.events.into_iter().enumerate() {
                    let index = inner.log.len();
                    let position = index as u64 + 1;
                    inner.ids.insert(event.event_id, index);
                    inner
                        .streams
                        .entry(append.stream.clone())
                        .or_default()
                        .push(index);
                    inner.tags.push(event.tags);
                    inner.log.push(RecordedEvent {
                        event_id: event.event_id,
                        stream_id: append.stream.clone(),
                        version: Version(actual.0 + 1 + i as u64),
                        position: Position(position),
                        checkpoint: Checkpoint::from_parts(transaction, position),
                        name: event.name,
                        schema_version: event.schema_version,
                        payload: event.payload,
                        metadata: event.metadata,
                        recorded_at,
                    });
                }
                written.push(Appended {
                    stream_id: append.stream,
                    first_version: actual.next(),
                    last_version: Version(actual.0 + count),
                    first_position,
                    last_position: Position(first_position.0 + count - 1),
                    replayed: false,
                });
            }
            written
        };
        if let Some(last) = written.last() {
            self.head.send_replace(last.last_position);
        }
        Ok(written)
    }
}

impl Inner {
    /// The index of the first event matching `query` that a read at `after` did not see.
    fn first_match(&self, query: &Query, after: &ReadPosition) -> Option<usize> {
        // Transactions increase with the log index: start at the first unseen one.
        let start = self
            .log
            .partition_point(|e| e.checkpoint.transaction() < after.lowest_unseen());
        (start..self.log.len()).find(|&i| {
            let event = &self.log[i];
            after.unseen(event.checkpoint.transaction())
                && query.matches(&event.name, &self.tags[i])
        })
    }
}

impl DecisionStore for MemoryStore {
    async fn append_streams(
        &self,
        appends: Vec<StreamAppend>,
        condition: Option<AppendCondition>,
    ) -> Result<Vec<Appended>, StoreError> {
        self.append_streams_locked(appends, condition)
    }

    async fn read_query(&self, query: &Query) -> Result<QueryRead, StoreError> {
        self.limits.check_query(query)?;
        let inner = self.lock();
        let events = if query.items().is_empty() {
            Vec::new()
        } else {
            inner
                .log
                .iter()
                .zip(&inner.tags)
                .filter(|(event, tags)| query.matches(&event.name, tags))
                .map(|(event, _)| event.clone())
                .collect()
        };
        Ok(QueryRead {
            events,
            // Every transaction so far was seen; the next one was not.
            position: ReadPosition::from_parts(inner.transactions + 1, Vec::new()),
        })
    }
}

impl EventStore for MemoryStore {
    async fn append(
        &self,
        stream: &StreamId,
        expected: ExpectedVersion,
        events: Vec<NewEvent>,
    ) -> Result<Appended, StoreError> {
        let batch_size = events.len();
        let append = async { self.append_locked(stream, expected, events) };
        crate::observe::observe_append("memory", stream, expected, batch_size, append).await
    }

    async fn read_stream(
        &self,
        stream: &StreamId,
        from: Version,
        max_count: usize,
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        let inner = self.lock();
        let Some(indexes) = inner.streams.get(stream) else {
            return Ok(Vec::new());
        };
        if inner
            .retired
            .get(stream)
            .is_some_and(|r| r.deleted_at.is_some())
        {
            return Ok(Vec::new());
        }
        let skip = from.0.saturating_sub(1) as usize;
        Ok(indexes
            .iter()
            .skip(skip)
            .take(max_count)
            .map(|&i| inner.log[i].clone())
            .collect())
    }

    async fn read_all(
        &self,
        after: Checkpoint,
        max_count: usize,
        filter: &LogFilter,
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        let inner = self.lock();
        // Checkpoints increase with the log index, so binary search for the first one after.
        let start = inner.log.partition_point(|e| e.checkpoint <= after);
        Ok(inner.log[start..]
            .iter()
            .enumerate()
            .filter(|(i, _)| !inner.deleted.contains(&(start + i)))
            .map(|(_, e)| e)
            .filter(|e| filter.matches(e))
            .take(max_count)
            .cloned()
            .collect())
    }

    async fn stream_version(&self, stream: &StreamId) -> Result<Version, StoreError> {
        Ok(self.lock().version(stream))
    }

    async fn head_position(&self) -> Result<Position, StoreError> {
        Ok(Position(self.lock().log.len() as u64))
    }

    async fn find_event(&self, event_id: Uuid) -> Result<Option<RecordedEvent>, StoreError> {
        let inner = self.lock();
        Ok(inner
            .ids
            .get(&event_id)
            .filter(|i| !inner.deleted.contains(i))
            .map(|&i| inner.log[i].clone()))
    }
}

impl StreamRetirement for MemoryStore {
    async fn archive_stream(&self, stream: &StreamId) -> Result<Option<StreamStatus>, StoreError> {
        let mut inner = self.lock();
        let version = inner.version(stream);
        if version == Version::NONE && !inner.retired.contains_key(stream) {
            return Ok(None);
        }
        inner.retired.entry(stream.clone()).or_insert(Retired {
            version,
            archived_at: Utc::now(),
            deleted_at: None,
        });
        Ok(inner.status(stream))
    }

    async fn delete_stream(&self, stream: &StreamId) -> Result<u64, StoreError> {
        let mut inner = self.lock();
        let version = inner.version(stream);
        if version == Version::NONE {
            return Ok(0);
        }
        let now = Utc::now();
        let retired = inner.retired.entry(stream.clone()).or_insert(Retired {
            version,
            archived_at: now,
            deleted_at: None,
        });
        if retired.deleted_at.is_some() {
            return Ok(0);
        }
        retired.deleted_at = Some(now);
        let indexes = inner.streams.get(stream).cloned().unwrap_or_default();
        for &index in &indexes {
            let id = inner.log[index].event_id;
            inner.ids.remove(&id);
            inner.deleted.insert(index);
            // The payload goes at once, not only out of sight.
            inner.log[index].payload = serde_json::Value::Null;
            inner.log[index].metadata = crate::Metadata::default();
        }
        inner.snapshots.remove(stream);
        for parked in inner.parked.values_mut() {
            parked.retain(|_, event| event.record.stream_id != *stream);
        }
        Ok(indexes.len() as u64)
    }

    async fn stream_status(&self, stream: &StreamId) -> Result<Option<StreamStatus>, StoreError> {
        let inner = self.lock();
        if inner.version(stream) == Version::NONE && !inner.retired.contains_key(stream) {
            return Ok(None);
        }
        Ok(inner.status(stream))
    }
}

impl Inner {
    fn status(&self, stream: &StreamId) -> Option<StreamStatus> {
        let retired = self.retired.get(stream);
        Some(StreamStatus {
            stream_id: stream.clone(),
            version: self.version(stream),
            archived_at: retired.map(|r| r.archived_at),
            deleted_at: retired.and_then(|r| r.deleted_at),
        })
    }
}

impl SnapshotMaintenance for MemoryStore {
    async fn delete_snapshots(&self, scope: &SnapshotScope) -> Result<u64, StoreError> {
        let mut inner = self.lock();
        let before = inner.snapshots.len();
        inner.snapshots.retain(|stream, _| !scope.contains(stream));
        Ok((before - inner.snapshots.len()) as u64)
    }
}

impl SnapshotStore for MemoryStore {
    async fn save_snapshot(&self, snapshot: Snapshot) -> Result<(), StoreError> {
        let mut inner = self.lock();
        let newer_stored = inner
            .snapshots
            .get(&snapshot.stream_id)
            .is_some_and(|stored| stored.version > snapshot.version);
        if !newer_stored {
            inner.snapshots.insert(snapshot.stream_id.clone(), snapshot);
        }
        Ok(())
    }

    async fn load_snapshot(&self, stream: &StreamId) -> Result<Option<Snapshot>, StoreError> {
        Ok(self.lock().snapshots.get(stream).cloned())
    }
}

impl ProjectionStore for MemoryStore {
    type Tx = ();
    type Lease = tokio::sync::OwnedMutexGuard<()>;
    const TRANSACTIONAL: bool = false;

    async fn acquire_lease(
        &self,
        projection: &str,
        _: &LogFilter,
    ) -> Result<Self::Lease, StoreError> {
        let lease = Arc::clone(self.lock().leases.entry(projection.to_owned()).or_default());
        let lease = lease.lock_owned().await;
        self.lock().resets.entry(projection.to_owned()).or_default();
        Ok(lease)
    }

    async fn load_checkpoint(&self, projection: &str) -> Result<Option<Checkpoint>, StoreError> {
        Ok(self.lock().checkpoints.get(projection).copied())
    }

    async fn begin(&self, _: &Self::Lease) -> Result<(), StoreError> {
        // A lease held in this process cannot be lost.
        Ok(())
    }

    async fn commit(
        &self,
        (): (),
        projection: &str,
        expected: Option<Checkpoint>,
        to: Checkpoint,
    ) -> Result<(), StoreError> {
        let mut inner = self.lock();
        let actual = inner.checkpoints.get(projection).copied();
        if to != Checkpoint::START && inner.resets.get(projection).copied().unwrap_or(false) {
            return Err(StoreError::ResetRequested {
                projection: projection.to_owned(),
            });
        }
        if actual != expected {
            return Err(StoreError::CheckpointMoved {
                projection: projection.to_owned(),
                expected,
                actual,
            });
        }
        if to == Checkpoint::START {
            inner.checkpoints.remove(projection);
            inner.resets.insert(projection.to_owned(), false);
            inner.parked.remove(projection);
        } else {
            inner.checkpoints.insert(projection.to_owned(), to);
        }
        Ok(())
    }

    async fn rollback(&self, (): ()) {}

    async fn request_reset(&self, projection: &str) -> Result<bool, StoreError> {
        let mut inner = self.lock();
        let known =
            inner.checkpoints.contains_key(projection) || inner.resets.contains_key(projection);
        if known {
            inner.resets.insert(projection.to_owned(), true);
        }
        Ok(known)
    }

    async fn reset_requested(&self, projection: &str) -> Result<bool, StoreError> {
        Ok(self.lock().resets.get(projection).copied().unwrap_or(false))
    }

    async fn park(
        &self,
        (): &mut (),
        projection: &str,
        record: &RecordedEvent,
        error: &str,
        attempts: u32,
    ) -> Result<(), StoreError> {
        let mut inner = self.lock();
        // The stored event, whole: a runner reading `Envelope::Lean` hands over a record
        // without its id, metadata and time.
        let stored = usize::try_from(record.position.0)
            .ok()
            .and_then(|position| position.checked_sub(1))
            .and_then(|index| inner.log.get(index))
            .filter(|stored| stored.position == record.position)
            .cloned()
            .unwrap_or_else(|| record.clone());
        let parked = inner.parked.entry(projection.to_owned()).or_default();
        let earlier = parked.get(&record.position).map_or(0, |p| p.attempts);
        parked.insert(
            record.position,
            ParkedEvent {
                projection: projection.to_owned(),
                record: stored,
                error: ParkedEvent::bounded_error(error),
                attempts: earlier.saturating_add(attempts),
                parked_at: Utc::now(),
                retry_requested: false,
            },
        );
        Ok(())
    }

    async fn unpark(
        &self,
        (): &mut (),
        projection: &str,
        position: Position,
    ) -> Result<(), StoreError> {
        if let Some(parked) = self.lock().parked.get_mut(projection) {
            parked.remove(&position);
        }
        Ok(())
    }

    async fn parked(&self, projection: Option<&str>) -> Result<Vec<ParkedEvent>, StoreError> {
        let inner = self.lock();
        let mut names: Vec<&String> = inner
            .parked
            .keys()
            .filter(|name| projection.is_none_or(|p| p == name.as_str()))
            .collect();
        names.sort();
        Ok(names
            .into_iter()
            .flat_map(|name| inner.parked[name].values().cloned())
            .collect())
    }

    async fn retry_parked(
        &self,
        projection: &str,
        which: ParkedSelection,
    ) -> Result<u64, StoreError> {
        let mut inner = self.lock();
        let parked = inner
            .parked
            .get_mut(projection)
            .into_iter()
            .flat_map(|p| p.values_mut());
        let mut marked = 0;
        for event in parked.filter(|event| selected(which, event.record.position)) {
            event.retry_requested = true;
            marked += 1;
        }
        Ok(marked)
    }

    async fn discard_parked(
        &self,
        projection: &str,
        which: ParkedSelection,
    ) -> Result<u64, StoreError> {
        let mut inner = self.lock();
        let Some(parked) = inner.parked.get_mut(projection) else {
            return Ok(0);
        };
        let before = parked.len();
        parked.retain(|&position, _| !selected(which, position));
        Ok((before - parked.len()) as u64)
    }

    async fn due_for_retry(
        &self,
        projection: &str,
        max: usize,
    ) -> Result<Vec<ParkedEvent>, StoreError> {
        let inner = self.lock();
        Ok(inner
            .parked
            .get(projection)
            .into_iter()
            .flat_map(|parked| parked.values())
            .filter(|p| p.retry_requested)
            .take(max)
            .cloned()
            .collect())
    }

    async fn count_after(&self, after: Checkpoint, filter: &LogFilter) -> Result<u64, StoreError> {
        let inner = self.lock();
        let count = inner
            .log
            .iter()
            .enumerate()
            .filter(|(i, e)| {
                !inner.deleted.contains(i) && e.checkpoint > after && filter.matches(e)
            })
            .count();
        Ok(count as u64)
    }

    async fn wait_for_append(
        &self,
        _: Checkpoint,
        head: Position,
        _: &LogFilter,
        timeout: Duration,
    ) {
        // No read horizon here: every appended event is readable at once.
        let mut newest = self.head.subscribe();
        let _ = tokio::time::timeout(timeout, newest.wait_for(|&p| p > head)).await;
    }
}

/// Whether `which` selects the parked event at `position`.
fn selected(which: ParkedSelection, position: Position) -> bool {
    match which {
        ParkedSelection::All => true,
        ParkedSelection::At(at) => at == position,
    }
}
