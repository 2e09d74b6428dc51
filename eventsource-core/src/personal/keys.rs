//! Subject keys and where they are kept.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;
use std::future::Future;
use std::sync::{Arc, Mutex, MutexGuard};

use chacha20poly1305::aead::Generate;
use zeroize::Zeroizing;

use crate::envelope::StreamId;
use crate::error::StoreError;

/// The length of a subject key in bytes (a 256-bit XChaCha20-Poly1305 key).
pub(crate) const KEY_LEN: usize = 32;

/// One key of one data subject: a version number and 256 bits of key material, zeroized when
/// the last copy is dropped. `Debug` shows the version only.
#[derive(Clone)]
pub struct SubjectKey {
    version: u32,
    material: Arc<Zeroizing<[u8; KEY_LEN]>>,
}

impl SubjectKey {
    /// A fresh random key (from the operating system's generator) with this version.
    pub fn generate(version: u32) -> Result<Self, StoreError> {
        let material =
            Zeroizing::new(<[u8; KEY_LEN]>::try_generate().map_err(|error| {
                StoreError::backend("generating a subject key", error.to_string())
            })?);
        Ok(SubjectKey {
            version,
            material: Arc::new(material),
        })
    }

    /// A key read back from storage; `None` when `bytes` is not 32 bytes long.
    pub fn from_bytes(version: u32, bytes: &[u8]) -> Option<Self> {
        let material: [u8; KEY_LEN] = bytes.try_into().ok()?;
        Some(SubjectKey {
            version,
            material: Arc::new(Zeroizing::new(material)),
        })
    }

    /// The key's version: 1 for a subject's first key, one more for each key created after
    /// a `forget`.
    pub fn version(&self) -> u32 {
        self.version
    }

    /// The key material, for a [`KeyStore`] to store. Never log or print it.
    pub fn material(&self) -> &[u8; KEY_LEN] {
        &self.material
    }
}

impl fmt::Debug for SubjectKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SubjectKey")
            .field("version", &self.version)
            .field("material", &"<redacted>")
            .finish()
    }
}

/// Where the data subjects' keys live.
///
/// A subject has at most one live key, its *current* one; `forget` deletes every key of the
/// subject for good. A subject written to again after a `forget` gets a new key with a higher
/// version, so data sealed before the `forget` stays unreadable.
pub trait KeyStore: Send + Sync + 'static {
    /// The subject's current key, created (with the next version) if it has none.
    fn current_key(
        &self,
        subject: &str,
    ) -> impl Future<Output = Result<SubjectKey, StoreError>> + Send;

    /// The subject's key of this version; `None` when it was forgotten (or never existed).
    fn key(
        &self,
        subject: &str,
        version: u32,
    ) -> impl Future<Output = Result<Option<SubjectKey>, StoreError>> + Send;

    /// Records that `stream` holds values sealed for `subject`, so that `forget` can name the
    /// streams whose snapshots hold the subject's data.
    fn record_stream(
        &self,
        subject: &str,
        stream: &StreamId,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Deletes every key of `subject` and returns the streams recorded for it.
    fn forget(
        &self,
        subject: &str,
    ) -> impl Future<Output = Result<Vec<StreamId>, StoreError>> + Send;
}

/// Keys held in memory: for tests and for the in-memory store. Cloning shares the keys.
#[derive(Clone, Default)]
pub struct MemoryKeyStore {
    subjects: Arc<Mutex<HashMap<String, Subject>>>,
}

#[derive(Default)]
struct Subject {
    /// By version; `None` once forgotten.
    keys: BTreeMap<u32, Option<SubjectKey>>,
    streams: BTreeSet<StreamId>,
}

impl fmt::Debug for MemoryKeyStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemoryKeyStore")
            .field("subjects", &self.lock().len())
            .finish()
    }
}

impl MemoryKeyStore {
    /// An empty key store.
    pub fn new() -> Self {
        MemoryKeyStore::default()
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<String, Subject>> {
        self.subjects
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl KeyStore for MemoryKeyStore {
    async fn current_key(&self, subject: &str) -> Result<SubjectKey, StoreError> {
        let mut subjects = self.lock();
        let entry = subjects.entry(subject.to_owned()).or_default();
        if let Some((_, Some(key))) = entry.keys.last_key_value() {
            return Ok(key.clone());
        }
        let version = entry.keys.last_key_value().map_or(1, |(v, _)| v + 1);
        let key = SubjectKey::generate(version)?;
        entry.keys.insert(version, Some(key.clone()));
        Ok(key)
    }

    async fn key(&self, subject: &str, version: u32) -> Result<Option<SubjectKey>, StoreError> {
        Ok(self
            .lock()
            .get(subject)
            .and_then(|s| s.keys.get(&version).cloned().flatten()))
    }

    async fn record_stream(&self, subject: &str, stream: &StreamId) -> Result<(), StoreError> {
        self.lock()
            .entry(subject.to_owned())
            .or_default()
            .streams
            .insert(stream.clone());
        Ok(())
    }

    async fn forget(&self, subject: &str) -> Result<Vec<StreamId>, StoreError> {
        let mut subjects = self.lock();
        let Some(entry) = subjects.get_mut(subject) else {
            return Ok(Vec::new());
        };
        for key in entry.keys.values_mut() {
            *key = None;
        }
        Ok(std::mem::take(&mut entry.streams).into_iter().collect())
    }
}
