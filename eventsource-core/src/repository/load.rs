//! Loading: snapshot + tail, time travel, the audit trail.

use std::fmt;

use chrono::{DateTime, Utc};
use tracing::Instrument;
use tracing::field::Empty;

use crate::aggregate::{Aggregate, SnapshotPolicy};
use crate::envelope::{StreamId, Version};
use crate::error::{LoadError, StoreError};
use crate::observe::names;
use crate::store::{EventStore, FoldEvent, SnapshotStore};

use super::{DecodedEvent, Loaded, Repository, decode_event};

/// Events asked for per read when folding: a narrow row is small (version, position, name,
/// schema version, payload), so a page holds a few thousand, and most streams are one read.
const FOLD_PAGE_SIZE: usize = 5_000;

impl<A: Aggregate, S: EventStore + SnapshotStore> Repository<A, S> {
    /// The aggregate's current state: its newest usable snapshot plus the events after it.
    pub async fn load(&self, id: impl fmt::Display) -> Result<Loaded<A>, LoadError> {
        self.load_stream(self.stream_id(id), None).await
    }

    /// The state as it was at `version` (time travel); later events are ignored.
    ///
    /// A version the stream has not reached is [`LoadError::VersionNotFound`], not the
    /// current state.
    pub async fn load_at(
        &self,
        id: impl fmt::Display,
        version: Version,
    ) -> Result<Loaded<A>, LoadError> {
        let loaded = self.load_stream(self.stream_id(id), Some(version)).await?;
        if loaded.version < version {
            return Err(LoadError::VersionNotFound {
                requested: version,
                head: loaded.version,
                stream: loaded.stream_id,
            });
        }
        Ok(loaded)
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
        let until = until.unwrap_or(Version(u64::MAX));
        let Some(recorded_by) = recorded_by else {
            // No time bound: the narrow read of what a fold uses.
            let (stream, from) = (loaded.stream_id.clone(), loaded.version.next());
            return self
                .fold_pages(&stream, from, until, |event| {
                    loaded.fold_narrow(event)?;
                    Ok(true)
                })
                .await;
        };
        let mut pages = self
            .store
            .read_stream_pages(&loaded.stream_id, loaded.version.next())
            .until(until);
        while let Some(page) = pages.next_page().await? {
            for record in &page {
                if record.recorded_at > recorded_by {
                    return Ok(());
                }
                loaded.fold(record)?;
            }
        }
        Ok(())
    }

    /// Reads the events of `stream` from version `from` up to `until` (inclusive) with
    /// [`EventStore::read_stream_for_fold`], a page at a time, and hands each to `each` until
    /// it returns false. Stops without another read on a page the store marks as the last, on
    /// a short page, or on one that does not move forward.
    async fn fold_pages(
        &self,
        stream: &StreamId,
        from: Version,
        until: Version,
        mut each: impl FnMut(&FoldEvent) -> Result<bool, LoadError> + Send,
    ) -> Result<(), LoadError> {
        // Version 0 is "no events": the first event is version 1.
        let mut next = from.max(Version(1));
        let page_size = FOLD_PAGE_SIZE;
        while next <= until {
            // `until - next + 1` events are left in the range; a range wider than memory is
            // simply "a full page".
            let wanted = usize::try_from(until.0 - next.0)
                .map_or(page_size, |rest| rest.saturating_add(1).min(page_size));
            let page = self
                .store
                .read_stream_for_fold(stream, next, wanted)
                .await?;
            let Some(last) = page.events.last().map(|e| e.version) else {
                return Ok(());
            };
            for event in &page.events {
                if !each(event)? {
                    return Ok(());
                }
            }
            if page.last || page.events.len() < wanted || last < next || last.0 == u64::MAX {
                return Ok(());
            }
            next = last.next();
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
        mut stream_id: StreamId,
        until: Option<Version>,
    ) -> Result<Loaded<A>, LoadError> {
        if let Some((state, version)) = self.usable_snapshot(&stream_id, until).await? {
            let mut loaded = Loaded {
                stream_id,
                state,
                version,
                snapshot_version: Some(version),
                events_folded: 0,
            };
            if self.fold_after_snapshot(&mut loaded, until).await? {
                return Ok(loaded);
            }
            // The snapshot claims a version the stream does not have (written against another
            // store, or a stream that was restored from an older backup than its snapshots):
            // trusting it would report a version no append can match. Refold from the start.
            tracing::warn!(
                aggregate = A::NAME,
                stream = %loaded.stream_id,
                snapshot_version = version.0,
                "ignoring a snapshot past the stream's head; refolding the stream"
            );
            metrics::counter!(names::SNAPSHOTS_IGNORED, "aggregate" => A::NAME, "reason" => "ahead")
                .increment(1);
            stream_id = loaded.stream_id;
        }
        let mut loaded = Loaded::new(stream_id);
        self.fold_tail(&mut loaded, until, None).await?;
        Ok(loaded)
    }

    /// Folds the events after the snapshot in `loaded`, reading from the snapshot's own version
    /// so that the stream proves it has that event: false (and nothing folded) when it does not.
    /// The check costs one row more of the same read, not a query.
    async fn fold_after_snapshot(
        &self,
        loaded: &mut Loaded<A>,
        until: Option<Version>,
    ) -> Result<bool, LoadError> {
        let snapshot_version = loaded.version;
        let stream = loaded.stream_id.clone();
        let mut first = true;
        let mut proven = false;
        self.fold_pages(
            &stream,
            snapshot_version,
            until.unwrap_or(Version(u64::MAX)),
            |event| {
                if first {
                    first = false;
                    proven = event.version == snapshot_version;
                    return Ok(proven);
                }
                loaded.fold_narrow(event)?;
                Ok(true)
            },
        )
        .await?;
        Ok(proven)
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
        if until.is_some_and(|until| snapshot.version > until) {
            return Ok(None);
        }
        let ignored = |reason: &'static str| {
            metrics::counter!(names::SNAPSHOTS_IGNORED, "aggregate" => A::NAME, "reason" => reason)
                .increment(1);
            None
        };
        if snapshot.state_fingerprint != A::STATE_FINGERPRINT {
            return Ok(ignored("fingerprint"));
        }
        // A snapshot of version 0 is the empty state: nothing to start from.
        if snapshot.version == Version::NONE {
            return Ok(None);
        }
        Ok(match A::deserialize(&snapshot.state) {
            Ok(state) => Some((state, snapshot.version)),
            Err(_) => ignored("undecodable"),
        })
    }
}
