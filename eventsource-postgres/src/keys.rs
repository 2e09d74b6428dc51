//! The subjects' keys in the store's schema (table `subject_keys` of migration 7): the
//! PostgreSQL [`KeyStore`] for crypto-shredding.

use eventsource_core::{KeyStore, StoreError, StreamId, SubjectKey};
use sqlx::Row;

use crate::row::Timestamp;
use crate::store::PostgresStore;

/// How many times creating a key is tried when other processes create the subject's key at
/// the same moment (each lost race reads the winner's key next).
const CREATE_ATTEMPTS: u32 = 3;

/// Subject keys in table `subject_keys` of the store's schema, sharing the store's pool.
/// Get one with [`PostgresStore::key_store`]; wrap the store with it:
///
/// ```no_run
/// # async fn demo(store: eventsource_postgres::PostgresStore) {
/// use eventsource_core::Shredding;
/// let keys = store.key_store();
/// let store = Shredding::new(store, keys);
/// # }
/// ```
///
/// A forget deletes the key material and keeps the row (with `forgotten_at`), so that the
/// forgotten subjects can be listed ([`forgotten_subjects`](Self::forgotten_subjects)) and
/// forgotten again after a restore from a backup taken before the forget. Keys live next to
/// the events they protect: a backup holds both; keep backups under the same retention rules.
#[derive(Clone, Debug)]
pub struct PostgresKeyStore {
    store: PostgresStore,
}

impl PostgresStore {
    /// The key store of this store's schema, for [`Shredding`](eventsource_core::Shredding).
    pub fn key_store(&self) -> PostgresKeyStore {
        PostgresKeyStore {
            store: self.clone(),
        }
    }
}

impl PostgresKeyStore {
    /// Whether key `version` of `subject` still exists (is not forgotten), without reading it.
    pub async fn is_live(&self, subject: &str, version: u32) -> Result<bool, StoreError> {
        let Ok(version) = i32::try_from(version) else {
            return Ok(false);
        };
        let query = self
            .store
            .sql()
            .lifecycle
            .key_live
            .query()
            .bind(subject.to_owned())
            .bind(version);
        self.store
            .scalar(
                query,
                format!(
                    "checking a key of subject `{}`",
                    crate::error::excerpt(subject)
                ),
            )
            .await
    }

    /// The subjects whose keys are all forgotten (up to `limit`), with when, by subject.
    pub async fn forgotten_subjects(
        &self,
        limit: u32,
    ) -> Result<Vec<(String, chrono::DateTime<chrono::Utc>)>, StoreError> {
        let query = self
            .store
            .sql()
            .lifecycle
            .forgotten_subjects
            .query()
            .bind(i64::from(limit));
        let rows = self
            .store
            .rows(query, "listing the forgotten subjects".to_owned())
            .await?;
        rows.iter()
            .map(|row| {
                Ok((
                    row.try_get("subject").map_err(corrupt)?,
                    row.try_get::<Timestamp, _>("forgotten_at")
                        .map_err(corrupt)?
                        .get(),
                ))
            })
            .collect()
    }
}

fn corrupt(error: sqlx::Error) -> StoreError {
    StoreError::backend("reading the subject keys", error)
}

fn key_from(subject: &str, version: i32, bytes: &[u8]) -> Result<SubjectKey, StoreError> {
    let version = u32::try_from(version).ok();
    version
        .and_then(|version| SubjectKey::from_bytes(version, bytes))
        .ok_or_else(|| {
            StoreError::backend(
                format!(
                    "reading a key of subject `{}`",
                    crate::error::excerpt(subject)
                ),
                "the stored key has the wrong version or length",
            )
        })
}

impl KeyStore for PostgresKeyStore {
    async fn current_key(&self, subject: &str) -> Result<SubjectKey, StoreError> {
        let lifecycle = &self.store.sql().lifecycle;
        let what = || {
            format!(
                "reading the key of subject `{}`",
                crate::error::excerpt(subject)
            )
        };
        for _ in 0..CREATE_ATTEMPTS {
            let query = lifecycle.current_key.query().bind(subject.to_owned());
            if let Some(row) = self.store.optional_row(query, what()).await? {
                let version: i32 = row.try_get("key_version").map_err(corrupt)?;
                let bytes: Vec<u8> = row.try_get("key").map_err(corrupt)?;
                return key_from(subject, version, &zeroize::Zeroizing::new(bytes));
            }
            let fresh = SubjectKey::generate(1)?;
            let query = lifecycle
                .create_key
                .query()
                .bind(subject.to_owned())
                .bind(fresh.material().to_vec());
            let created = self
                .store
                .optional_row(
                    query,
                    format!(
                        "creating a key for subject `{}`",
                        crate::error::excerpt(subject)
                    ),
                )
                .await?;
            if let Some(row) = created {
                let version: i32 = row.try_get("key_version").map_err(corrupt)?;
                return key_from(subject, version, fresh.material());
            }
        }
        Err(StoreError::transient(
            format!(
                "creating a key for subject `{}`",
                crate::error::excerpt(subject)
            ),
            "other processes kept creating keys for the subject at the same time",
        ))
    }

    async fn key(&self, subject: &str, version: u32) -> Result<Option<SubjectKey>, StoreError> {
        let Ok(stored_version) = i32::try_from(version) else {
            return Ok(None);
        };
        let query = self
            .store
            .sql()
            .lifecycle
            .key
            .query()
            .bind(subject.to_owned())
            .bind(stored_version);
        let row = self
            .store
            .optional_row(
                query,
                format!(
                    "reading key {version} of subject `{}`",
                    crate::error::excerpt(subject)
                ),
            )
            .await?;
        let Some(row) = row else {
            return Ok(None);
        };
        let bytes: Option<Vec<u8>> = row.try_get("key").map_err(corrupt)?;
        bytes
            .map(|bytes| key_from(subject, stored_version, &zeroize::Zeroizing::new(bytes)))
            .transpose()
    }

    async fn record_stream(&self, subject: &str, stream: &StreamId) -> Result<(), StoreError> {
        let query = self
            .store
            .sql()
            .lifecycle
            .record_stream
            .query()
            .bind(subject.to_owned())
            .bind(stream.as_str().to_owned());
        query
            .execute(self.store.pool())
            .await
            .map_err(self.store.failed(format!(
                "recording that stream `{stream}` holds personal data"
            )))?;
        Ok(())
    }

    async fn forget(&self, subject: &str) -> Result<Vec<StreamId>, StoreError> {
        let lifecycle = &self.store.sql().lifecycle;
        let what = format!("forgetting subject `{}`", crate::error::excerpt(subject));
        lifecycle
            .forget_keys
            .query()
            .bind(subject.to_owned())
            .execute(self.store.pool())
            .await
            .map_err(self.store.failed(what.clone()))?;
        let rows = self
            .store
            .rows(
                lifecycle.subject_streams.query().bind(subject.to_owned()),
                what,
            )
            .await?;
        rows.iter()
            .map(|row| {
                row.try_get::<String, _>("stream_id")
                    .map(StreamId::from_raw)
                    .map_err(corrupt)
            })
            .collect()
    }
}
