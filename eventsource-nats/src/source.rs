//! The consuming side: a projection fed from a durable JetStream pull consumer.

use std::future::Future;
use std::time::Duration;

use async_nats::jetstream::consumer::pull::{Config as PullConfig, Stream as PullStream};
use async_nats::jetstream::consumer::{AckPolicy, DeliverPolicy, PullConsumer};
use async_nats::jetstream::{Context, Message};
use eventsource_core::{
    BoxError, Checkpoint, HandledEvents, HandlerError, Projection, ProjectionStore, RecordedEvent,
    StoreError, apply_and_commit,
};
use futures_util::{FutureExt, StreamExt};

use crate::error::SourceError;
use crate::message::decode;
use crate::setup::jetstream_duration;
use crate::store::{Owned, own};
use crate::subject::escape_token;

/// The longest wait between two retries, of a failing message or of JetStream.
const RETRY_BACKOFF_CAP: Duration = Duration::from_secs(5);
/// The shortest wait between JetStream reconnection attempts: a zero backoff would retry a
/// server that is down in a busy loop.
const SHORTEST_WAIT: Duration = Duration::from_millis(10);

/// Metric names of the source (labelled `projection`).
pub mod metric_names {
    /// Counter: events applied to the read model.
    pub const APPLIED: &str = "eventsource_nats_source_events_total";
    /// Counter: messages skipped because their event was applied already (a redelivery, or a
    /// duplicate published after the stream's duplicate window).
    pub const SKIPPED: &str = "eventsource_nats_source_skipped_total";
    /// Gauge: messages the consumer has not delivered yet (JetStream's count).
    pub const PENDING: &str = "eventsource_nats_source_pending_messages";
    /// Counter: JetStream failures (each followed by a resynchronisation of the consumer).
    pub const FAILURES: &str = "eventsource_nats_source_failures_total";
}

/// How a source pulls, applies and retries.
#[derive(Clone, Debug)]
pub struct SourceOptions {
    /// Messages applied and committed per batch at most (default 500).
    pub batch_size: usize,
    /// Retries of a failing event before the source stops (default 3).
    pub max_retries: u32,
    /// Delay before the first retry; doubled per further one up to 5 s (default 100 ms), also
    /// between JetStream reconnection attempts (there at least 10 ms).
    pub backoff: Duration,
    /// How long JetStream waits for an acknowledgement before it redelivers (default 30 s).
    pub ack_wait: Duration,
    /// Consecutive JetStream failures (consumer setup, pulls) after which the source stops;
    /// `None` (the default) retries for ever, riding out server restarts.
    pub max_jetstream_failures: Option<u32>,
}

impl Default for SourceOptions {
    fn default() -> Self {
        SourceOptions {
            batch_size: 500,
            max_retries: 3,
            backoff: Duration::from_millis(100),
            ack_wait: Duration::from_secs(30),
            max_jetstream_failures: None,
        }
    }
}

/// Runs a [`Projection`] on the events of a JetStream stream that a [`Relay`](crate::Relay)
/// fills, writing into a read model in `store` (e.g. the consuming service's own PostgreSQL
/// database, migrated with the eventsource schema for its checkpoint table).
///
/// **Exactly once into the read model.** Each batch is applied in one unit of work of the
/// store together with the projection's checkpoint (the origin store's checkpoint of the last
/// event, carried in the `Eventsource-Checkpoint` header), and messages are acknowledged only
/// after the commit. A message whose event is at or before the checkpoint was applied already
/// (a redelivery after a lost acknowledgement, or a duplicate the relay published after the
/// stream's duplicate window) and is acknowledged without being applied.
///
/// **Order.** The consumer is durable, pulls, and acknowledges explicitly. When it starts
/// with messages delivered but unacknowledged (a crash), which JetStream would redeliver after
/// newer ones, it is recreated to start just after its acknowledgement floor, so events always
/// reach the projection in stream order. One source per projection name is active at a time
/// (the store's lease).
pub struct JetStreamSource<P, S> {
    projection: P,
    store: S,
    jetstream: Context,
    stream: String,
    consumer: String,
    filter_subject: String,
    options: SourceOptions,
}

impl<P: Projection, S> std::fmt::Debug for JetStreamSource<P, S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JetStreamSource")
            .field("projection", &P::NAME)
            .field("stream", &self.stream)
            .field("consumer", &self.consumer)
            .field("filter_subject", &self.filter_subject)
            .field("options", &self.options)
            .finish()
    }
}

type SourceResult<T, P> = Result<T, SourceError<<P as Projection>::Error>>;

impl<P, S> JetStreamSource<P, S>
where
    P: Projection,
    S: ProjectionStore,
    P::Handles: HandledEvents<P, S::Tx>,
{
    /// A source for `projection` writing into `store`, reading the JetStream stream `stream`
    /// through a durable consumer named after the projection, filtered by `filter_subject`
    /// (e.g. [`SubjectPrefix::all`](crate::SubjectPrefix::all) or
    /// [`SubjectPrefix::category`](crate::SubjectPrefix::category)).
    pub fn new(
        projection: P,
        store: S,
        jetstream: Context,
        stream: impl Into<String>,
        filter_subject: impl Into<String>,
    ) -> Self {
        JetStreamSource {
            projection,
            store,
            jetstream,
            stream: stream.into(),
            consumer: escape_token(P::NAME),
            filter_subject: filter_subject.into(),
            options: SourceOptions::default(),
        }
    }

    /// Replaces the options.
    #[must_use]
    pub fn with_options(mut self, options: SourceOptions) -> Self {
        self.options = options;
        self
    }

    /// Names the durable consumer (default: the projection's name, escaped as a subject
    /// token).
    #[must_use]
    pub fn with_consumer_name(mut self, name: impl Into<String>) -> Self {
        self.consumer = name.into();
        self
    }

    /// The projection (for read models held in memory).
    pub fn projection(&self) -> &P {
        &self.projection
    }

    /// Applies what the consumer delivers until `shutdown` completes. The batch being applied
    /// when shutdown is asked for is committed and acknowledged first.
    pub async fn run(&mut self, shutdown: impl Future<Output = ()> + Send) -> SourceResult<(), P> {
        self.run_until(shutdown, None).await.map(|_| ())
    }

    /// Applies messages until the consumer has delivered everything it had (its pending
    /// count reached zero) or `shutdown` completes; returns the events applied.
    pub async fn catch_up(
        &mut self,
        shutdown: impl Future<Output = ()> + Send,
    ) -> SourceResult<u64, P> {
        self.run_until(shutdown, Some(())).await
    }

    async fn run_until(
        &mut self,
        shutdown: impl Future<Output = ()> + Send,
        until_drained: Option<()>,
    ) -> SourceResult<u64, P> {
        let owned = own(&self.store, P::NAME, &eventsource_core::LogFilter::all())
            .await
            .map_err(Self::store_error)?;
        let mut shutdown = std::pin::pin!(shutdown);
        let mut failures = 0u32;
        let mut delay = self.options.backoff.max(SHORTEST_WAIT);
        let mut applied = 0u64;
        loop {
            let failure = match self.open().await {
                Err(error) => ("consumer setup", error),
                Ok((mut messages, pending)) => {
                    if until_drained.is_some() && pending == 0 {
                        return Ok(applied);
                    }
                    loop {
                        let (batch, error) =
                            match self.next_batch(&mut messages, &mut shutdown).await {
                                None => return Ok(applied),
                                Some(next) => next,
                            };
                        let mut drained = false;
                        if let Some(last) = batch.last() {
                            drained = last.info().map(|info| info.pending == 0).unwrap_or(false);
                            applied += self.apply(&owned, batch).await?;
                            failures = 0;
                            delay = self.options.backoff.max(SHORTEST_WAIT);
                        }
                        if let Some(error) = error {
                            break ("pull", error);
                        }
                        if drained && until_drained.is_some() {
                            return Ok(applied);
                        }
                    }
                }
            };
            let (action, error) = failure;
            failures += 1;
            metrics::counter!(metric_names::FAILURES, "projection" => P::NAME).increment(1);
            if self
                .options
                .max_jetstream_failures
                .is_some_and(|max| failures > max)
            {
                return Err(SourceError::JetStream {
                    projection: P::NAME.to_owned(),
                    action,
                    attempts: failures,
                    source: error,
                });
            }
            tracing::warn!(
                projection = P::NAME,
                attempt = failures,
                "JetStream {action} failed, resynchronising in {delay:?}: {error}"
            );
            tokio::select! {
                () = &mut shutdown => return Ok(applied),
                () = tokio::time::sleep(delay) => {}
            }
            delay = delay.saturating_mul(2).min(RETRY_BACKOFF_CAP);
        }
    }

    /// Sets up the durable consumer so that it delivers in stream order from the first
    /// unacknowledged message, and opens a pull on it. Returns the pull and the consumer's
    /// pending count.
    async fn open(&mut self) -> Result<(PullStream, u64), BoxError> {
        let stream = self.jetstream.get_stream(&self.stream).await?;
        let mut start = DeliverPolicy::All;
        match stream.consumer_info(&self.consumer).await {
            Ok(info)
                if info.num_ack_pending == 0
                    && info.config.filter_subject == self.filter_subject =>
            {
                let consumer: PullConsumer = stream.get_consumer(&self.consumer).await?;
                let messages = self.pull(&consumer).await?;
                return Ok((messages, info.num_pending));
            }
            Ok(info) => {
                // Unacknowledged deliveries would come back after newer messages: restart
                // just after the acknowledgement floor instead (everything up to it was
                // committed; anything after it that was committed is skipped by checkpoint).
                start = DeliverPolicy::ByStartSequence {
                    start_sequence: info.ack_floor.stream_sequence + 1,
                };
                stream.delete_consumer(&self.consumer).await?;
            }
            Err(error) if is_not_found(&error) => {}
            Err(error) => return Err(error.into()),
        }
        let consumer: PullConsumer = stream
            .create_consumer(PullConfig {
                durable_name: Some(self.consumer.clone()),
                ack_policy: AckPolicy::Explicit,
                ack_wait: jetstream_duration(self.options.ack_wait),
                deliver_policy: start,
                filter_subject: self.filter_subject.clone(),
                ..PullConfig::default()
            })
            .await?;
        let pending = stream
            .consumer_info(&self.consumer)
            .await
            .map(|info| info.num_pending)
            .unwrap_or(u64::MAX);
        Ok((self.pull(&consumer).await?, pending))
    }

    async fn pull(&self, consumer: &PullConsumer) -> Result<PullStream, BoxError> {
        Ok(consumer
            .stream()
            .max_messages_per_batch(self.options.batch_size.max(1))
            .heartbeat(Duration::from_secs(5))
            .expires(Duration::from_secs(30))
            .messages()
            .await?)
    }

    /// Waits for one message, then takes what else is ready, up to a batch. `None` on
    /// shutdown; an error ends the batch early and is returned beside it.
    async fn next_batch(
        &self,
        messages: &mut PullStream,
        shutdown: &mut std::pin::Pin<&mut (impl Future<Output = ()> + Send)>,
    ) -> Option<(Vec<Message>, Option<BoxError>)> {
        let first = tokio::select! {
            () = shutdown.as_mut() => return None,
            next = messages.next() => next,
        };
        let mut batch = Vec::new();
        match first {
            Some(Ok(message)) => batch.push(message),
            Some(Err(error)) => return Some((batch, Some(error.into()))),
            None => return Some((batch, Some("the pull ended".into()))),
        }
        while batch.len() < self.options.batch_size.max(1) {
            match messages.next().now_or_never() {
                Some(Some(Ok(message))) => batch.push(message),
                Some(Some(Err(error))) => return Some((batch, Some(error.into()))),
                Some(None) => return Some((batch, Some("the pull ended".into()))),
                None => break,
            }
        }
        Some((batch, None))
    }

    /// Decodes, applies and commits `batch`, then acknowledges it. Returns the events applied.
    async fn apply(&mut self, owned: &Owned<S>, batch: Vec<Message>) -> SourceResult<u64, P> {
        let mut checkpoint = self
            .store
            .load_checkpoint(P::NAME)
            .await
            .map_err(Self::store_error)?;
        let mut fresh = Vec::with_capacity(batch.len());
        for message in &batch {
            let sequence = message.info().map(|info| info.stream_sequence).unwrap_or(0);
            let event = decode(
                message.subject.as_str(),
                sequence,
                message.headers.as_ref(),
                &message.payload,
            )
            .map_err(|source| SourceError::Message {
                projection: P::NAME.to_owned(),
                source,
            })?;
            if checkpoint.is_none_or(|c| event.checkpoint > c) {
                fresh.push(event);
            }
        }
        let skipped = (batch.len() - fresh.len()) as u64;
        metrics::counter!(metric_names::SKIPPED, "projection" => P::NAME).increment(skipped);
        // The batch holds events in stream order, which the relay makes checkpoint order;
        // a stray older one (should the stream hold one) is skipped like a repeat.
        fresh.dedup_by(|later, earlier| later.checkpoint <= earlier.checkpoint);
        let applied = self.apply_events(owned, &fresh, &mut checkpoint).await?;
        metrics::counter!(metric_names::APPLIED, "projection" => P::NAME).increment(applied);
        if let Some(info) = batch.last().and_then(|m| m.info().ok()) {
            metrics::gauge!(metric_names::PENDING, "projection" => P::NAME)
                .set(info.pending as f64);
        }
        for message in &batch {
            // A lost acknowledgement only brings the message back, to be skipped.
            if let Err(error) = message.ack().await {
                tracing::debug!(projection = P::NAME, "acknowledgement not sent: {error}");
            }
        }
        Ok(applied)
    }

    /// Applies `events` after `checkpoint` and moves it past them: in one unit of work on a
    /// transactional store; event by event, with retries, otherwise or after a failure (the
    /// projection runner's scheme).
    async fn apply_events(
        &mut self,
        owned: &Owned<S>,
        events: &[RecordedEvent],
        checkpoint: &mut Option<Checkpoint>,
    ) -> SourceResult<u64, P> {
        if S::TRANSACTIONAL {
            match self.try_commit(owned, events, *checkpoint).await? {
                Ok(()) => {
                    if let Some(last) = events.last() {
                        *checkpoint = Some(last.checkpoint);
                    }
                    return Ok(events.len() as u64);
                }
                Err((failed_at, _)) if failed_at > 0 => {
                    let prefix = &events[..failed_at];
                    if self.try_commit(owned, prefix, *checkpoint).await?.is_ok() {
                        *checkpoint = prefix.last().map(|e| e.checkpoint);
                    }
                }
                Err(_) => {}
            }
        }
        for event in events {
            if checkpoint.is_some_and(|c| c >= event.checkpoint) {
                continue;
            }
            let mut attempts = 0;
            let mut delay = self.options.backoff;
            loop {
                attempts += 1;
                match self
                    .try_commit(owned, std::slice::from_ref(event), *checkpoint)
                    .await?
                {
                    Ok(()) => {
                        *checkpoint = Some(event.checkpoint);
                        break;
                    }
                    Err((_, source)) if attempts > self.options.max_retries => {
                        return Err(SourceError::Failed {
                            projection: P::NAME.to_owned(),
                            name: event.name.clone(),
                            stream: event.stream_id.clone(),
                            version: event.version,
                            position: event.position,
                            attempts,
                            source,
                        });
                    }
                    Err(_) => {
                        tokio::time::sleep(delay).await;
                        delay = delay
                            .saturating_mul(2)
                            .min(RETRY_BACKOFF_CAP.max(self.options.backoff));
                    }
                }
            }
        }
        Ok(events.len() as u64)
    }

    /// Applies `events` in one unit of work committed with the checkpoint of the last. The
    /// outer error is the store's; the inner one names the index of the failing event.
    async fn try_commit(
        &mut self,
        owned: &Owned<S>,
        events: &[RecordedEvent],
        expected: Option<Checkpoint>,
    ) -> SourceResult<Result<(), (usize, HandlerError<P::Error>)>, P> {
        // The runner's unit of work, end-of-batch hook included.
        apply_and_commit(
            &mut self.projection,
            &self.store,
            &owned.lease,
            events,
            expected,
        )
        .await
        .map_err(Self::store_error)
    }

    fn store_error(source: StoreError) -> SourceError<P::Error> {
        SourceError::Store {
            projection: P::NAME.to_owned(),
            source,
        }
    }
}

/// Whether a consumer lookup failed because the consumer does not exist.
fn is_not_found(error: &async_nats::jetstream::context::ConsumerInfoError) -> bool {
    use async_nats::jetstream::context::ConsumerInfoErrorKind;
    matches!(error.kind(), ConsumerInfoErrorKind::NotFound)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use crate::setup::jetstream_duration;

    #[test]
    fn durations_beyond_an_i64_of_nanoseconds_are_sent_as_the_longest_that_fits() {
        let longest = jetstream_duration(Duration::MAX);
        assert_eq!(longest.as_nanos() as i64, i64::MAX);
        let thirty = Duration::from_secs(30);
        assert_eq!(jetstream_duration(thirty), thirty);
    }
}
