//! Executing commands: load (or the cache), decide, append, retry on conflict, idempotency.

use std::fmt;

use tracing::Instrument;
use tracing::field::Empty;

use crate::aggregate::Aggregate;
use crate::command::CommandMetadata;
use crate::envelope::{ExpectedVersion, StreamId, Version};
use crate::error::{ExecuteError, LoadError, StoreError};
use crate::observe::names;
use crate::store::{EventStore, SnapshotStore};

use super::write::encode_batch;
use super::{Executed, Repository, decode_event};

impl<A: Aggregate, S: EventStore + SnapshotStore> Repository<A, S> {
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
}
