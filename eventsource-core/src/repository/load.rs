//! Loading: snapshot + tail, time travel, the audit trail.

use std::fmt;

use chrono::{DateTime, Utc};
use tracing::Instrument;
use tracing::field::Empty;

use crate::aggregate::{Aggregate, SnapshotPolicy};
use crate::envelope::{StreamId, Version};
use crate::error::{LoadError, StoreError};
use crate::observe::names;
use crate::store::{EventStore, SnapshotStore};

use super::{DecodedEvent, Loaded, Repository, decode_event};

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

    pub(super) async fn load_stream(
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
}
