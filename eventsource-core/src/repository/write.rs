//! Writing without a command: typed appends and snapshots.

use std::fmt;
use std::future::Future;

use chrono::Utc;

use crate::aggregate::Aggregate;
use crate::command::CommandMetadata;
use crate::envelope::{ExpectedVersion, NewEvent, StreamId, Version};
use crate::error::{AppendError, EncodeError, SnapshotError};
use crate::event::EventEnum;
use crate::fingerprint::CommandFingerprint;
use crate::store::{Appended, EventStore, Snapshot, SnapshotStore};

use super::Repository;

impl<A: Aggregate, S: EventStore + SnapshotStore> Repository<A, S> {
    pub(super) async fn snapshot_if_due(
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
    /// the cache. A repository whose policy is [`Never`](crate::SnapshotPolicy::Never) does not
    /// read snapshots, so its own loads still fold the whole stream; repositories of the same
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
        let batch = encode_batch::<A>(
            &stream_id,
            &events,
            &metadata,
            metadata.command_fingerprint.as_ref(),
            self.store.seals_personal_data(),
        );
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

/// The batch a command or a typed append writes: each event encoded, with the ids and
/// metadata that `metadata` gives it (and, with an idempotency key, the command's
/// `fingerprint`).
pub(crate) fn encode_batch<A: Aggregate>(
    stream_id: &StreamId,
    events: &[A::Event],
    metadata: &CommandMetadata,
    fingerprint: Option<&CommandFingerprint>,
    seals_personal_data: bool,
) -> Result<Vec<NewEvent>, EncodeError> {
    let event_metadata = metadata.event_metadata(fingerprint);
    events
        .iter()
        .enumerate()
        .map(|(index, event)| {
            let failed = |source| EncodeError {
                stream: stream_id.clone(),
                name: event.name(),
                source,
            };
            let payload = crate::personal::encode_marked(event).map_err(failed)?;
            // Personal values go to a store only sealed: never in plain text.
            if !seals_personal_data && crate::personal::contains_personal(&payload) {
                return Err(failed(serde::ser::Error::custom(
                    "the event holds personal values, and the store does not seal them: wrap it in `Shredding` with a key store",
                )));
            }
            Ok(NewEvent {
                event_id: metadata.event_id(stream_id, index),
                name: event.name().to_owned(),
                schema_version: event.schema_version(),
                payload,
                metadata: event_metadata.clone(),
                tags: event.event_tags(),
            })
        })
        .collect()
}
