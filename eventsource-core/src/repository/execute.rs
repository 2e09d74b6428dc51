//! Executing commands: load (or the cache), decide, append, retry on conflict, idempotency.

use std::fmt;
use std::time::Duration;

use tracing::Instrument;
use tracing::field::Empty;

use crate::aggregate::Aggregate;
use crate::command::CommandMetadata;
use crate::envelope::{ExpectedVersion, NewEvent, StreamId, Version};
use crate::error::{ExecuteError, LoadError, StoreError};
use crate::observe::names;
use crate::store::{Appended, EventStore, SnapshotStore};

use super::idempotency::Keyed;
use super::write::encode_batch;
use super::{Executed, Loaded, Repository};

/// The first wait before retrying a transiently failed load or append; doubled each time, up
/// to [`TRANSIENT_BACKOFF_CAP`].
const TRANSIENT_BACKOFF: Duration = Duration::from_millis(50);

/// The longest wait between two retries of a transiently failed load or append: doubling
/// without a cap waited 7 hours before the 20th retry, and overflowed `Duration` (a panic)
/// after 68.
const TRANSIENT_BACKOFF_CAP: Duration = Duration::from_secs(5);

/// The wait before the retry after one that waited `delay`.
fn next_transient_backoff(delay: Duration) -> Duration {
    delay.saturating_mul(2).min(TRANSIENT_BACKOFF_CAP)
}

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
    ///
    /// # Idempotency keys
    ///
    /// A command sent with [`CommandMetadata::idempotency_key`] any number of times —
    /// concurrently, after a timeout or a transient store error, after a conflict — is decided
    /// and written once. Every caller gets the outcome of that one execution: its events (read
    /// back from the stored rows), the version of its last event and the state as of that
    /// version (not the stream's head); `replayed` is `false` only for the caller that wrote.
    ///
    /// - **Scope**: the stream. The key and the stream give the events' ids (UUID v5), so the
    ///   same key on another aggregate is another command.
    /// - **Lifetime**: as long as the events: the key and the command's fingerprint are stored
    ///   in their metadata ([`Metadata::idempotency_key`](crate::Metadata::idempotency_key),
    ///   [`Metadata::command`](crate::Metadata::command)), visible in `history`, the global
    ///   log and to projections. A repeat years later still replays.
    /// - **Lookup**: one query by the first event's derived id, on the store's unique event-id
    ///   index, before deciding; again whenever the stream moved under an attempt (a conflict),
    ///   the store recognised the ids, or the decision was a rejection or changed nothing
    ///   (it may have been taken on a state that already held the first execution).
    /// - **A different command under a used key** (another name, or other content where the
    ///   content can be digested; see [`CommandFingerprint`](crate::CommandFingerprint)) is
    ///   [`ExecuteError::IdempotencyKeyReused`]; nothing is written.
    /// - **Not remembered**: a rejection, and a command that produced no events, store nothing.
    ///   A repeat decides again on the state it finds then (and may succeed), unless an
    ///   execution of the key was stored meanwhile, which it then reports.
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
            Err(ExecuteError::IdempotencyKeyReused { .. }) => {
                span.record("outcome", "key_reused");
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
        // Commands on this stream through this repository take turns (see `queue_writers`).
        let turn = self.queue.as_ref().map(|queue| queue.join(&stream_id));
        let _held = match &turn {
            Some(turn) => Some(turn.wait().await),
            None => None,
        };
        let key = Keyed::new::<A>(&metadata, &command);
        // A repeat that arrives after the first execution is stored: one indexed lookup.
        if let Some(done) = self.earlier_execution(&stream_id, key.as_ref(), 0).await? {
            return Ok(done);
        }
        let fingerprint = key.as_ref().and_then(|key| key.fingerprint.as_ref());
        let mut attempts = 0;
        let mut stale_cache_hits = 0;
        loop {
            attempts += 1;
            let decisions = attempts - stale_cache_hits;
            // A warm aggregate skips the load; a stale one fails the append below and is
            // reloaded, which does not count against the conflict retries.
            let cached = self.cache.as_ref().and_then(|cache| cache.take(&stream_id));
            let from_cache = cached.is_some();
            let (state, version) = match cached {
                Some(entry) => entry,
                None => {
                    let loaded = self.load_retrying(&stream_id).await?;
                    (loaded.state, loaded.version)
                }
            };
            let decided = state.decide(command.clone(), &self.services);
            let events = match decided {
                Ok(events) => events.into_vec(),
                Err(source) => {
                    self.cache_put(&stream_id, &state, version);
                    // A concurrent caller with the same key may have stored the first
                    // execution after the lookup above, and this decision seen it: report that
                    // execution rather than a rejection it caused.
                    if let Some(done) = self
                        .earlier_execution(&stream_id, key.as_ref(), decisions)
                        .await?
                    {
                        return Ok(done);
                    }
                    return Err(ExecuteError::Rejected {
                        stream: stream_id.clone(),
                        version,
                        source,
                    });
                }
            };
            if events.is_empty() {
                self.cache_put(&stream_id, &state, version);
                // Nothing is stored for a command without events, so a repeat decides again;
                // but it may be deciding on a state that already holds its first execution.
                if let Some(done) = self
                    .earlier_execution(&stream_id, key.as_ref(), decisions)
                    .await?
                {
                    return Ok(done);
                }
                return Ok(Executed {
                    stream_id,
                    events,
                    version,
                    state,
                    attempts: decisions,
                    replayed: false,
                });
            }
            let batch = encode_batch::<A>(
                &stream_id,
                &events,
                &metadata,
                fingerprint,
                self.store.seals_personal_data(),
            )?;
            let expected = ExpectedVersion::Exact(version);
            let (appended, retried) = self.append_retrying(&stream_id, expected, batch).await;
            match appended {
                // Written; or, for an unkeyed command, its first attempt committed but the reply
                // was lost, and the retry of the same ids found them stored: this command wrote
                // them either way.
                Ok(written) if !written.replayed || (retried && key.is_none()) => {
                    let mut state = state;
                    for event in &events {
                        state.evolve(event);
                    }
                    self.cache_put(&stream_id, &state, written.last_version);
                    self.snapshot_if_due(&stream_id, version, written.last_version, &state)
                        .await;
                    return Ok(Executed {
                        stream_id,
                        events,
                        version: written.last_version,
                        state,
                        attempts: decisions,
                        replayed: false,
                    });
                }
                // The store recognised the derived ids: this key ran before. What this attempt
                // decided (on a state that may hold that run) is not the answer; the stored run is.
                Ok(written) => {
                    let reported = StoreError::CorruptRow {
                        stream: stream_id.clone(),
                        version: written.first_version,
                        message: "the store reported the batch as a retry of stored events that \
                                  are not found by their ids"
                            .to_owned(),
                    };
                    return self
                        .stored_execution(&stream_id, key.as_ref(), decisions, reported)
                        .await;
                }
                Err(duplicate @ StoreError::DuplicateEventId { event_id, .. })
                    if key
                        .as_ref()
                        .is_some_and(|key| key.derives(&stream_id, event_id, events.len())) =>
                {
                    // Another caller stored this key's ids first (a batch of another length).
                    return self
                        .stored_execution(&stream_id, key.as_ref(), decisions, duplicate)
                        .await;
                }
                Err(StoreError::Conflict { actual, .. }) => {
                    // The stream moved: perhaps by this key's own first execution. Look before
                    // deciding again (or giving up).
                    if let Some(done) = self
                        .earlier_execution(&stream_id, key.as_ref(), decisions)
                        .await?
                    {
                        return Ok(done);
                    }
                    if from_cache {
                        metrics::counter!(names::CACHE_STALE, "aggregate" => A::NAME).increment(1);
                        stale_cache_hits += 1;
                        continue;
                    }
                    if decisions <= self.conflict_retries {
                        metrics::counter!(names::COMMAND_RETRIES, "aggregate" => A::NAME)
                            .increment(1);
                        continue;
                    }
                    return Err(ExecuteError::Conflict {
                        stream: stream_id,
                        attempts: decisions,
                        expected: version,
                        actual,
                    });
                }
                Err(other) => return Err(ExecuteError::Store(other)),
            }
        }
    }

    /// Appends `batch`, retrying it unchanged (the same event ids) on transient store errors;
    /// also says whether a retry happened.
    async fn append_retrying(
        &self,
        stream_id: &StreamId,
        expected: ExpectedVersion,
        batch: Vec<NewEvent>,
    ) -> (Result<Appended, StoreError>, bool) {
        let mut delay = TRANSIENT_BACKOFF;
        let mut retried = false;
        for _ in 0..self.transient_retries {
            match self.store.append(stream_id, expected, batch.clone()).await {
                Err(error) if error.is_transient() => {
                    tracing::warn!(stream = %stream_id, %error, "append failed transiently; retrying");
                    tokio::time::sleep(delay).await;
                    delay = next_transient_backoff(delay);
                    retried = true;
                }
                other => return (other, retried),
            }
        }
        (self.store.append(stream_id, expected, batch).await, retried)
    }

    /// Loads the stream, retrying on transient store errors.
    async fn load_retrying(&self, stream_id: &StreamId) -> Result<Loaded<A>, LoadError> {
        let mut delay = TRANSIENT_BACKOFF;
        for _ in 0..self.transient_retries {
            match self.load_stream(stream_id.clone(), None).await {
                Err(LoadError::Store(error)) if error.is_transient() => {
                    tracing::warn!(stream = %stream_id, %error, "load failed transiently; retrying");
                    tokio::time::sleep(delay).await;
                    delay = next_transient_backoff(delay);
                }
                other => return other,
            }
        }
        self.load_stream(stream_id.clone(), None).await
    }

    fn cache_put(&self, stream_id: &StreamId, state: &A, version: Version) {
        if let Some(cache) = &self.cache {
            cache.put(stream_id, state, version);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::{TRANSIENT_BACKOFF, next_transient_backoff};

    /// `retry_transient(n)` takes any `u32`: the waits double from 50 ms up to 5 s and stay
    /// there, without the `Duration` overflow (a panic) that plain doubling reached after 68
    /// retries.
    #[test]
    fn transient_backoff_doubles_up_to_its_cap_for_any_number_of_retries() {
        let waits: Vec<Duration> = std::iter::successors(Some(TRANSIENT_BACKOFF), |&delay| {
            Some(next_transient_backoff(delay))
        })
        .take(200)
        .collect();
        let ms = |n: u64| Duration::from_millis(n);
        assert_eq!(
            waits[..8],
            [
                ms(50),
                ms(100),
                ms(200),
                ms(400),
                ms(800),
                ms(1_600),
                ms(3_200),
                ms(5_000)
            ]
        );
        assert!(waits[8..].iter().all(|&wait| wait == ms(5_000)));
        // Twenty retries wait under a minute and a half in all (uncapped: over 14 hours).
        assert!(waits[..20].iter().sum::<Duration>() < Duration::from_secs(90));
    }
}
