//! Idempotency keys: finding a key's earlier execution and reporting it as it was.
//!
//! A keyed command's events get ids derived from (stream, key, index), so the first event's id
//! names the execution: one lookup on the store's unique event-id index finds it. The answer
//! to every repeat is built from the stored rows of that append (its events and last version)
//! and the state folded up to that version, never from a decision taken again.

use uuid::Uuid;

use crate::aggregate::Aggregate;
use crate::command::{CommandMetadata, derived_event_id};
use crate::envelope::{RecordedEvent, StreamId};
use crate::error::{ExecuteError, LoadError, StoreError};
use crate::fingerprint::CommandFingerprint;
use crate::store::{EventStore, SnapshotStore};

use super::{Executed, Repository, decode_event};

/// Events read per page while collecting a stored execution's events (most commands write one
/// or a few; the run ends at the first event with another id).
const REPLAY_PAGE: usize = 32;

/// A command's idempotency key with what identifies the command.
pub(super) struct Keyed {
    key: String,
    /// What a repeat of the key must match (`None`: not compared).
    pub(super) fingerprint: Option<CommandFingerprint>,
}

impl Keyed {
    /// The key of `metadata`, if it has one, and the command's fingerprint: the one set on the
    /// metadata, else the aggregate's.
    pub(super) fn new<A: Aggregate>(
        metadata: &CommandMetadata,
        command: &A::Command,
    ) -> Option<Keyed> {
        let key = metadata.idempotency_key.clone()?;
        let fingerprint = metadata
            .command_fingerprint
            .clone()
            .or_else(|| A::command_fingerprint(command));
        Some(Keyed { key, fingerprint })
    }

    fn event_id(&self, stream: &StreamId, index: usize) -> Uuid {
        derived_event_id(stream, &self.key, index)
    }

    /// Whether `event_id` is one of the ids of a batch of `count` events with this key.
    pub(super) fn derives(&self, stream: &StreamId, event_id: Uuid, count: usize) -> bool {
        (0..count).any(|index| self.event_id(stream, index) == event_id)
    }
}

impl<A: Aggregate, S: EventStore + SnapshotStore> Repository<A, S> {
    /// If the keyed command already ran on the stream, what that run did (`replayed`), after
    /// `attempts` decisions in this call. A different command under the same key is
    /// [`ExecuteError::IdempotencyKeyReused`].
    pub(super) async fn earlier_execution(
        &self,
        stream: &StreamId,
        key: Option<&Keyed>,
        attempts: u32,
    ) -> Result<Option<Executed<A>>, ExecuteError<A::Error>> {
        let Some(key) = key else {
            return Ok(None);
        };
        let first = self
            .store
            .find_event(key.event_id(stream, 0))
            .await
            .map_err(ExecuteError::Store)?;
        match first {
            // The stream is part of the derived id: another stream can only hold it by a
            // SHA-1 collision, which is no execution of this key here.
            Some(first) if first.stream_id == *stream => {
                self.replay(stream, key, first, attempts).await.map(Some)
            }
            _ => Ok(None),
        }
    }

    /// The stored run of the keyed command, which the store has just reported (an exact
    /// retry, or a duplicate id); `reported` is returned if the run cannot be found.
    pub(super) async fn stored_execution(
        &self,
        stream: &StreamId,
        key: Option<&Keyed>,
        attempts: u32,
        reported: StoreError,
    ) -> Result<Executed<A>, ExecuteError<A::Error>> {
        match self.earlier_execution(stream, key, attempts).await? {
            Some(done) => Ok(done),
            None => Err(ExecuteError::Store(reported)),
        }
    }

    async fn replay(
        &self,
        stream: &StreamId,
        key: &Keyed,
        first: RecordedEvent,
        attempts: u32,
    ) -> Result<Executed<A>, ExecuteError<A::Error>> {
        // Rows written before fingerprints were stored (or by a typed append) have none: they
        // are not compared.
        if let (Some(stored), Some(given)) = (&first.metadata.command, &key.fingerprint)
            && !stored.matches(given)
        {
            return Err(ExecuteError::IdempotencyKeyReused {
                stream: stream.clone(),
                key: key.key.clone(),
                version: first.version,
                stored: stored.clone(),
                given: given.clone(),
            });
        }
        // The execution's events: the run of derived ids from the first one on.
        let mut events = Vec::new();
        let mut last = first.version;
        let mut pages = self
            .store
            .read_stream_pages(stream, first.version)
            .page_size(REPLAY_PAGE);
        'pages: while let Some(page) = pages.next_page().await.map_err(ExecuteError::Store)? {
            for record in &page {
                if record.event_id != key.event_id(stream, events.len()) {
                    break 'pages;
                }
                events.push(decode_event::<A>(record).map_err(LoadError::from)?);
                last = record.version;
            }
        }
        if events.is_empty() {
            // The row was found by id a moment ago and rows are never removed.
            return Err(ExecuteError::Store(StoreError::CorruptRow {
                stream: stream.clone(),
                version: first.version,
                message: format!(
                    "event {} was found by its id but not when reading the stream",
                    first.event_id
                ),
            }));
        }
        // The state as of that append, not the stream's head: later events are not its outcome.
        let loaded = self.load_stream(stream.clone(), Some(last)).await?;
        Ok(Executed {
            stream_id: stream.clone(),
            events,
            version: last,
            state: loaded.state,
            attempts,
            replayed: true,
        })
    }
}
