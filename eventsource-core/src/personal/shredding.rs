//! The store wrapper that seals personal fields on append and opens them on read.

use std::collections::HashMap;
use std::fmt;
use std::num::NonZeroUsize;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use lru::LruCache;
use serde_json::{Map, Value};
use uuid::Uuid;

use super::SEALED_PATHS;
use super::cipher::{self, MAX_SUBJECT_LEN};
use super::keys::{KeyStore, SubjectKey};
use super::value::{FORGOTTEN, KNOWN, SUBJECT, is_personal};
use crate::envelope::{Checkpoint, ExpectedVersion, NewEvent, Position, RecordedEvent, StreamId};
use crate::error::StoreError;
use crate::projection::{ParkedEvent, ParkedSelection, ProjectionStore};
use crate::store::retire::{SnapshotMaintenance, SnapshotScope, StreamRetirement, StreamStatus};
use crate::store::{Appended, EventStore, LogFilter, Snapshot, SnapshotStore};

/// The default capacity of the key cache (keys, and streams recorded per subject).
const DEFAULT_CACHE: NonZeroUsize = NonZeroUsize::new(10_000).unwrap();
/// How long a cached key is trusted: a `forget` in another process shows here after this.
/// Short, so that a `forget` anywhere reaches every reader within a second; the cache still
/// spares the key store a query per value within a page or a burst of commands.
const DEFAULT_TTL: Duration = Duration::from_secs(1);

/// A store whose events' personal fields are sealed with their subjects' keys: appends seal
/// them, every read (stream reads, the global log, `find_event`, parked events) opens them,
/// and [`forget`](Self::forget) makes them [`Personal::Forgotten`](crate::Personal) for good.
///
/// Wrap the store once and use the wrapper everywhere (repositories, projection runners):
///
/// ```
/// # use eventsource_core::*;
/// let store = Shredding::new(MemoryStore::new(), MemoryKeyStore::new());
/// # let _ = store;
/// ```
///
/// Keys are cached (bounded, least recently used out first, trusted for 1 s by default): a
/// `forget` through this wrapper drops the subject's keys from its cache at once; one in
/// another process shows here when the cached entry expires ([`with_cache`](Self::with_cache)).
/// A relay or tool that must not see personal data reads the inner store
/// ([`inner`](Self::inner)): its events carry only sealed strings.
pub struct Shredding<S, K> {
    store: S,
    keys: Arc<K>,
    cache: Arc<KeyCache>,
}

impl<S: Clone, K> Clone for Shredding<S, K> {
    fn clone(&self) -> Self {
        Shredding {
            store: self.store.clone(),
            keys: Arc::clone(&self.keys),
            cache: Arc::clone(&self.cache),
        }
    }
}

impl<S: fmt::Debug, K> fmt::Debug for Shredding<S, K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Shredding")
            .field("store", &self.store)
            .finish_non_exhaustive()
    }
}

/// What [`Shredding::forget`] did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Forgotten {
    /// The streams recorded as holding the subject's data.
    pub streams: Vec<StreamId>,
    /// How many of their snapshots were deleted.
    pub snapshots_deleted: u64,
}

impl<S, K: KeyStore> Shredding<S, K> {
    /// `store`, with personal fields sealed by keys from `keys`.
    pub fn new(store: S, keys: K) -> Self {
        Shredding {
            store,
            keys: Arc::new(keys),
            cache: Arc::new(KeyCache::new(DEFAULT_CACHE, DEFAULT_TTL)),
        }
    }

    /// The same wrapper with a key cache of `capacity` keys, each trusted for `ttl` (a
    /// `forget` in another process shows here after at most `ttl`; zero disables caching).
    #[must_use]
    pub fn with_cache(mut self, capacity: NonZeroUsize, ttl: Duration) -> Self {
        self.cache = Arc::new(KeyCache::new(capacity, ttl));
        self
    }

    /// The wrapped store: reads through it return sealed strings.
    pub fn inner(&self) -> &S {
        &self.store
    }

    /// The key store.
    pub fn key_store(&self) -> &K {
        &self.keys
    }

    /// Forgets `subject`: deletes its keys (so every value sealed for it reads back as
    /// `Forgotten`, in every reader, from now on), drops them from this wrapper's cache, and
    /// deletes the snapshots of the streams that hold its data.
    ///
    /// Projections' read models are the application's: rebuild them, or let their handlers
    /// overwrite forgotten values (an event appended for the purpose, say). Repositories with an
    /// aggregate cache ([`Repository::with_cache`](crate::Repository::with_cache)) keep cached
    /// states until they are evicted: create them afresh after a `forget`.
    pub async fn forget(&self, subject: &str) -> Result<Forgotten, StoreError>
    where
        S: SnapshotMaintenance,
    {
        let streams = self.keys.forget(subject).await?;
        self.cache.forget(subject);
        let mut snapshots_deleted = 0;
        for stream in &streams {
            snapshots_deleted += self
                .store
                .delete_snapshots(&SnapshotScope::Stream(stream.clone()))
                .await?;
        }
        tracing::info!(
            streams = streams.len(),
            snapshots_deleted,
            "eventsource: a data subject was forgotten"
        );
        Ok(Forgotten {
            streams,
            snapshots_deleted,
        })
    }

    async fn current_key(&self, subject: &str) -> Result<SubjectKey, StoreError> {
        if let Some(key) = self.cache.current(subject) {
            return Ok(key);
        }
        let key = self.keys.current_key(subject).await?;
        self.cache.put_current(subject, &key);
        Ok(key)
    }

    async fn key(&self, subject: &str, version: u32) -> Result<Option<SubjectKey>, StoreError> {
        if let Some(key) = self.cache.key(subject, version) {
            return Ok(key);
        }
        let key = self.keys.key(subject, version).await?;
        self.cache.put_key(subject, version, key.clone());
        Ok(key)
    }

    async fn record_stream(&self, subject: &str, stream: &StreamId) -> Result<(), StoreError> {
        if self.cache.recorded(subject, stream) {
            return Ok(());
        }
        self.keys.record_stream(subject, stream).await?;
        self.cache.put_recorded(subject, stream);
        Ok(())
    }

    /// Seals the personal values of `event` (marked with their subjects by the repository).
    async fn seal(&self, stream: &StreamId, event: &mut NewEvent) -> Result<(), StoreError> {
        // Only the wrapper lists sealed paths: a list from elsewhere (metadata a user could
        // set) would have strings of the user's opened as sealed values.
        event.metadata.custom.remove(SEALED_PATHS);
        let mut found = Vec::new();
        collect_personal(&event.payload, &mut String::new(), &mut found);
        if found.is_empty() {
            return Ok(());
        }
        let problem = |problem: String| StoreError::PersonalData {
            stream: stream.clone(),
            name: event.name.clone(),
            problem,
        };
        let mut keys: HashMap<String, SubjectKey> = HashMap::new();
        let mut paths = Vec::with_capacity(found.len());
        for (path, subject) in found {
            let subject = subject.ok_or_else(|| {
                problem(format!(
                    "the personal value at `{}` has no subject: declare its field with `#[personal(subject = ..)]`",
                    crate::limits::bounded(&path)
                ))
            })?;
            if subject.contains('\0') {
                return Err(problem(format!(
                    "the subject of `{}` contains a NUL character",
                    crate::limits::bounded(&path)
                )));
            }
            if subject.is_empty() || subject.len() > MAX_SUBJECT_LEN {
                return Err(problem(format!(
                    "the subject of `{}` must be 1 to {MAX_SUBJECT_LEN} bytes long, not {}",
                    crate::limits::bounded(&path),
                    subject.len()
                )));
            }
            if !keys.contains_key(&subject) {
                let key = self.current_key(&subject).await?;
                self.record_stream(&subject, stream).await?;
                keys.insert(subject.clone(), key);
            }
            paths.push((path, subject));
        }
        let event_id = event.event_id;
        let mut sealed_paths = Vec::with_capacity(paths.len());
        for (path, subject) in paths {
            let Some(slot) = event.payload.pointer_mut(&path) else {
                continue;
            };
            let plaintext = match slot {
                Value::Object(object) => object.remove(KNOWN).unwrap_or(Value::Null),
                _ => continue,
            };
            let Some(key) = keys.get(&subject) else {
                continue;
            };
            let text = cipher::seal(key, &subject, event_id, &path, &plaintext).map_err(|_| {
                problem(format!(
                    "sealing `{}` failed",
                    crate::limits::bounded(&path)
                ))
            })?;
            *slot = Value::String(text);
            sealed_paths.push(Value::String(path));
        }
        event
            .metadata
            .custom
            .insert(SEALED_PATHS.to_owned(), Value::Array(sealed_paths));
        Ok(())
    }

    /// Opens the sealed values of `record` in place: known ones become `{"$personal": ..}`,
    /// those whose key is gone `{"$forgotten": true}`; one that does not authenticate stays
    /// sealed (and fails to decode as a personal value, naming the event).
    async fn open(&self, record: &mut RecordedEvent) -> Result<(), StoreError> {
        let Some(Value::Array(paths)) = record.metadata.custom.get(SEALED_PATHS) else {
            return Ok(());
        };
        let paths: Vec<String> = paths
            .iter()
            .filter_map(|p| p.as_str().map(str::to_owned))
            .collect();
        for path in paths {
            let Some(Value::String(text)) = record.payload.pointer(&path) else {
                continue;
            };
            let Some(sealed) = cipher::parse(text) else {
                continue;
            };
            let opened = match self.key(&sealed.subject, sealed.key_version).await? {
                Some(key) => match cipher::open(&key, &sealed, record.event_id, &path) {
                    Some(value) => object(KNOWN, value),
                    None => continue,
                },
                None => object(FORGOTTEN, Value::Bool(true)),
            };
            if let Some(slot) = record.payload.pointer_mut(&path) {
                *slot = opened;
            }
        }
        Ok(())
    }

    async fn open_all(&self, records: &mut [RecordedEvent]) -> Result<(), StoreError> {
        for record in records {
            self.open(record).await?;
        }
        Ok(())
    }
}

/// Replaces the opened values of `record` with the forgotten form.
fn forget_opened(record: &mut RecordedEvent) {
    let Some(Value::Array(paths)) = record.metadata.custom.get(SEALED_PATHS) else {
        return;
    };
    let paths: Vec<String> = paths
        .iter()
        .filter_map(|p| p.as_str().map(str::to_owned))
        .collect();
    for path in paths {
        if let Some(slot) = record.payload.pointer_mut(&path) {
            *slot = object(FORGOTTEN, Value::Bool(true));
        }
    }
}

fn object(key: &str, value: Value) -> Value {
    let mut map = Map::with_capacity(1);
    map.insert(key.to_owned(), value);
    Value::Object(map)
}

/// The JSON pointers (and subjects, where marked) of every plain personal value in `value`.
fn collect_personal(value: &Value, path: &mut String, out: &mut Vec<(String, Option<String>)>) {
    match value {
        Value::Object(object) if is_personal(object) => {
            let subject = object
                .get(SUBJECT)
                .and_then(Value::as_str)
                .map(str::to_owned);
            out.push((path.clone(), subject));
        }
        Value::Object(object) => {
            for (key, item) in object {
                let len = path.len();
                path.push('/');
                path.push_str(&key.replace('~', "~0").replace('/', "~1"));
                collect_personal(item, path, out);
                path.truncate(len);
            }
        }
        Value::Array(items) => {
            for (index, item) in items.iter().enumerate() {
                let len = path.len();
                path.push('/');
                path.push_str(&index.to_string());
                collect_personal(item, path, out);
                path.truncate(len);
            }
        }
        _ => {}
    }
}

impl<S: EventStore, K: KeyStore> EventStore for Shredding<S, K> {
    fn seals_personal_data(&self) -> bool {
        true
    }

    async fn append(
        &self,
        stream: &StreamId,
        expected: ExpectedVersion,
        mut events: Vec<NewEvent>,
    ) -> Result<Appended, StoreError> {
        for event in &mut events {
            self.seal(stream, event).await?;
        }
        self.store.append(stream, expected, events).await
    }

    async fn read_stream(
        &self,
        stream: &StreamId,
        from: crate::Version,
        max_count: usize,
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        let mut records = self.store.read_stream(stream, from, max_count).await?;
        self.open_all(&mut records).await?;
        Ok(records)
    }

    async fn read_all(
        &self,
        after: Checkpoint,
        max_count: usize,
        filter: &LogFilter,
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        let mut records = self.store.read_all(after, max_count, filter).await?;
        self.open_all(&mut records).await?;
        Ok(records)
    }

    async fn stream_version(&self, stream: &StreamId) -> Result<crate::Version, StoreError> {
        self.store.stream_version(stream).await
    }

    async fn head_position(&self) -> Result<Position, StoreError> {
        self.store.head_position().await
    }

    async fn find_event(&self, event_id: Uuid) -> Result<Option<RecordedEvent>, StoreError> {
        let mut record = self.store.find_event(event_id).await?;
        if let Some(record) = &mut record {
            self.open(record).await?;
        }
        Ok(record)
    }
}

impl<S: SnapshotStore, K: KeyStore> SnapshotStore for Shredding<S, K> {
    async fn save_snapshot(&self, snapshot: Snapshot) -> Result<(), StoreError> {
        self.store.save_snapshot(snapshot).await
    }

    async fn load_snapshot(&self, stream: &StreamId) -> Result<Option<Snapshot>, StoreError> {
        self.store.load_snapshot(stream).await
    }
}

impl<S: SnapshotMaintenance, K: KeyStore> SnapshotMaintenance for Shredding<S, K> {
    async fn delete_snapshots(&self, scope: &SnapshotScope) -> Result<u64, StoreError> {
        self.store.delete_snapshots(scope).await
    }
}

impl<S: StreamRetirement, K: KeyStore> StreamRetirement for Shredding<S, K> {
    async fn archive_stream(&self, stream: &StreamId) -> Result<Option<StreamStatus>, StoreError> {
        self.store.archive_stream(stream).await
    }

    async fn delete_stream(&self, stream: &StreamId) -> Result<u64, StoreError> {
        self.store.delete_stream(stream).await
    }

    async fn stream_status(&self, stream: &StreamId) -> Result<Option<StreamStatus>, StoreError> {
        self.store.stream_status(stream).await
    }
}

impl<S: ProjectionStore, K: KeyStore> ProjectionStore for Shredding<S, K> {
    type Tx = S::Tx;
    type Lease = S::Lease;
    const TRANSACTIONAL: bool = S::TRANSACTIONAL;

    async fn acquire_lease(
        &self,
        projection: &str,
        filter: &LogFilter,
    ) -> Result<S::Lease, StoreError> {
        self.store.acquire_lease(projection, filter).await
    }

    async fn load_checkpoint(&self, projection: &str) -> Result<Option<Checkpoint>, StoreError> {
        self.store.load_checkpoint(projection).await
    }

    fn begin(
        &self,
        lease: &S::Lease,
    ) -> impl std::future::Future<Output = Result<S::Tx, StoreError>> + Send {
        self.store.begin(lease)
    }

    async fn commit(
        &self,
        tx: S::Tx,
        projection: &str,
        expected: Option<Checkpoint>,
        to: Checkpoint,
    ) -> Result<(), StoreError> {
        self.store.commit(tx, projection, expected, to).await
    }

    async fn rollback(&self, tx: S::Tx) {
        self.store.rollback(tx).await;
    }

    async fn request_reset(&self, projection: &str) -> Result<bool, StoreError> {
        self.store.request_reset(projection).await
    }

    async fn reset_requested(&self, projection: &str) -> Result<bool, StoreError> {
        self.store.reset_requested(projection).await
    }

    async fn park(
        &self,
        tx: &mut S::Tx,
        projection: &str,
        record: &RecordedEvent,
        error: &str,
        attempts: u32,
    ) -> Result<(), StoreError> {
        // Park the sealed row, never the opened payload; a row deleted meanwhile is parked
        // with its personal values forgotten.
        let record = match self.store.find_event(record.event_id).await? {
            Some(sealed) => sealed,
            None => {
                let mut stripped = record.clone();
                forget_opened(&mut stripped);
                stripped
            }
        };
        self.store
            .park(tx, projection, &record, error, attempts)
            .await
    }

    async fn unpark(
        &self,
        tx: &mut S::Tx,
        projection: &str,
        position: Position,
    ) -> Result<(), StoreError> {
        self.store.unpark(tx, projection, position).await
    }

    async fn parked(&self, projection: Option<&str>) -> Result<Vec<ParkedEvent>, StoreError> {
        let mut parked = self.store.parked(projection).await?;
        for event in &mut parked {
            self.open(&mut event.record).await?;
        }
        Ok(parked)
    }

    async fn retry_parked(
        &self,
        projection: &str,
        which: ParkedSelection,
    ) -> Result<u64, StoreError> {
        self.store.retry_parked(projection, which).await
    }

    async fn discard_parked(
        &self,
        projection: &str,
        which: ParkedSelection,
    ) -> Result<u64, StoreError> {
        self.store.discard_parked(projection, which).await
    }

    async fn due_for_retry(
        &self,
        projection: &str,
        max: usize,
    ) -> Result<Vec<ParkedEvent>, StoreError> {
        let mut due = self.store.due_for_retry(projection, max).await?;
        for event in &mut due {
            self.open(&mut event.record).await?;
        }
        Ok(due)
    }

    async fn count_after(&self, after: Checkpoint, filter: &LogFilter) -> Result<u64, StoreError> {
        self.store.count_after(after, filter).await
    }

    async fn wait_for_append(
        &self,
        checkpoint: Checkpoint,
        head: Position,
        filter: &LogFilter,
        timeout: Duration,
    ) {
        self.store
            .wait_for_append(checkpoint, head, filter, timeout)
            .await;
    }

    async fn horizon_lag(&self) -> Result<Duration, StoreError> {
        self.store.horizon_lag().await
    }
}

/// A cached answer of [`KeyStore::key`], with when it was fetched.
type CachedKey = (Instant, Option<SubjectKey>);

/// The bounded key cache of one [`Shredding`] (shared by its clones).
struct KeyCache {
    ttl: Duration,
    keys: Mutex<LruCache<(String, u32), CachedKey>>,
    current: Mutex<LruCache<String, (Instant, SubjectKey)>>,
    recorded: Mutex<LruCache<(String, StreamId), ()>>,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl KeyCache {
    fn new(capacity: NonZeroUsize, ttl: Duration) -> Self {
        KeyCache {
            ttl,
            keys: Mutex::new(LruCache::sparse(capacity)),
            current: Mutex::new(LruCache::sparse(capacity)),
            recorded: Mutex::new(LruCache::sparse(capacity)),
        }
    }

    fn fresh(&self, at: Instant) -> bool {
        at.elapsed() < self.ttl
    }

    fn key(&self, subject: &str, version: u32) -> Option<Option<SubjectKey>> {
        let mut keys = lock(&self.keys);
        let (at, key) = keys.get(&(subject.to_owned(), version))?;
        self.fresh(*at).then(|| key.clone())
    }

    fn put_key(&self, subject: &str, version: u32, key: Option<SubjectKey>) {
        if self.ttl.is_zero() {
            return;
        }
        lock(&self.keys).put((subject.to_owned(), version), (Instant::now(), key));
    }

    fn current(&self, subject: &str) -> Option<SubjectKey> {
        let mut current = lock(&self.current);
        let (at, key) = current.get(subject)?;
        self.fresh(*at).then(|| key.clone())
    }

    fn put_current(&self, subject: &str, key: &SubjectKey) {
        if self.ttl.is_zero() {
            return;
        }
        lock(&self.current).put(subject.to_owned(), (Instant::now(), key.clone()));
        self.put_key(subject, key.version(), Some(key.clone()));
    }

    fn recorded(&self, subject: &str, stream: &StreamId) -> bool {
        lock(&self.recorded).contains(&(subject.to_owned(), stream.clone()))
    }

    fn put_recorded(&self, subject: &str, stream: &StreamId) {
        lock(&self.recorded).put((subject.to_owned(), stream.clone()), ());
    }

    /// Drops every entry of `subject` (dropping the last copy of a key zeroizes it).
    fn forget(&self, subject: &str) {
        lock(&self.current).pop(subject);
        {
            let mut keys = lock(&self.keys);
            let stale: Vec<_> = keys
                .iter()
                .filter(|((s, _), _)| s == subject)
                .map(|(k, _)| k.clone())
                .collect();
            for key in stale {
                keys.pop(&key);
            }
        }
        let mut recorded = lock(&self.recorded);
        let stale: Vec<_> = recorded
            .iter()
            .filter(|((s, _), _)| s == subject)
            .map(|(k, _)| k.clone())
            .collect();
        for key in stale {
            recorded.pop(&key);
        }
    }
}
