//! The relay: the global log of a store, published to a JetStream stream in checkpoint order.

use std::future::Future;
use std::time::Duration;

use async_nats::jetstream::Context;
use eventsource_core::{
    Checkpoint, LogFilter, Position, ProjectionStore, RecordedEvent, StoreError,
};
use futures_util::FutureExt;

use crate::error::RelayError;
use crate::message::encode;
use crate::store::{Owned, advance, own};

use crate::subject::SubjectPrefix;

mod publish;

use publish::{Prepared, too_large};

/// Metric names of the relay (labelled `relay`).
pub mod metric_names {
    /// Counter: events JetStream stored.
    pub const PUBLISHED: &str = "eventsource_nats_relay_published_total";
    /// Counter: events JetStream acknowledged as duplicates (already stored, not stored again).
    pub const DUPLICATES: &str = "eventsource_nats_relay_duplicates_total";
    /// Counter: failed publish attempts (each is retried).
    pub const FAILURES: &str = "eventsource_nats_relay_publish_failures_total";
    /// Gauge: events in the log after the relay's checkpoint (by position, every name).
    pub const LAG_EVENTS: &str = "eventsource_nats_relay_lag_events";
    /// Gauge: age in seconds of the newest relayed event when its batch was acknowledged.
    pub const LAG_SECONDS: &str = "eventsource_nats_relay_lag_seconds";
}

/// How a relay reads, publishes and retries.
#[derive(Clone, Debug)]
pub struct RelayOptions {
    /// Events read, published and checkpointed per batch (default 500). The publishes of a
    /// batch are in flight together; the checkpoint moves once they are all acknowledged.
    pub batch_size: usize,
    /// Longest wait for new events when live, even without a wake-up (default 1 s; at least
    /// 10 ms: zero would read the store in a busy loop).
    pub poll_interval: Duration,
    /// Delay before retrying a failed publish; doubled per consecutive failure (default
    /// 100 ms; at least 10 ms: zero would publish in a busy loop to a server that is down) up
    /// to [`max_backoff`](Self::max_backoff).
    pub backoff: Duration,
    /// Cap of the retry delay (default 5 s).
    pub max_backoff: Duration,
    /// Consecutive failed attempts after which the relay stops with
    /// [`RelayError::Publish`]; `None` (the default) retries for ever, so that the relay
    /// rides out a NATS restart or a leader election however long it takes. An event larger
    /// than the server's `max_payload` (1 MiB by default; the store accepts up to 4 MiB) stops
    /// the relay at once: retrying cannot help, raise `max_payload` on the server.
    pub max_retries: Option<u32>,
}

/// The shortest live poll and retry delay of a relay.
const SHORTEST_WAIT: Duration = Duration::from_millis(10);

impl Default for RelayOptions {
    fn default() -> Self {
        RelayOptions {
            batch_size: 500,
            poll_interval: Duration::from_secs(1),
            backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(5),
            max_retries: None,
        }
    }
}

/// Where a relay stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RelayStatus {
    /// The checkpoint of the last event JetStream acknowledged (`None` before the first).
    pub checkpoint: Option<Checkpoint>,
    /// The log's head position.
    pub head: Position,
    /// Events after the checkpoint (by position; counts events of every name).
    pub lag: u64,
}

/// Publishes the global log of a store to a JetStream stream, exactly once per event.
///
/// The relay is a projection whose side effect is a publish: it reads the log from its
/// checkpoint (kept in the store under the relay's name, gap-safe like every projection),
/// publishes each event to `<prefix>.<category>.<event name>` with the envelope in headers
/// (see [`message`](crate::message)) and `Nats-Msg-Id` = event id, waits for JetStream's
/// acknowledgements and only then moves its checkpoint. One relay per name is active at a
/// time (the store's lease); a second one waits.
///
/// **Handoff guarantee.** Nothing is lost: an event's checkpoint moves only after JetStream
/// acknowledged storing it. After a crash the relay publishes again the events after its
/// checkpoint (at most one batch was published without being checkpointed); JetStream drops
/// those repeats by `Nats-Msg-Id` as long as they arrive within the stream's
/// `duplicate_window` of the first publish (default 2 minutes; [`stream_config`](crate::stream_config)
/// sets it) — so keep restarts faster than the window, or widen it.
///
/// **Order.** The relay must be the only publisher of its stream. Each publish carries
/// `Nats-Expected-Last-Sequence`, so the stream holds the events in checkpoint order even when
/// a connection drops with publishes in flight (a publish that would land after a lost one is
/// refused and sent again in order), and a second relay that somehow runs beside the first
/// is refused instead of interleaving.
pub struct Relay<S> {
    store: S,
    jetstream: Context,
    name: String,
    stream: String,
    prefix: SubjectPrefix,
    filter: LogFilter,
    options: RelayOptions,
    /// The stream's last sequence as this relay knows it; `None` after a failure.
    last_sequence: Option<u64>,
    /// Whether the next publishes go one at a time (after a failure: some of them may be
    /// stored already, and their duplicates do not move the stream's last sequence).
    careful: bool,
}

impl<S> std::fmt::Debug for Relay<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Relay")
            .field("name", &self.name)
            .field("stream", &self.stream)
            .field("prefix", &self.prefix)
            .field("filter", &self.filter)
            .field("options", &self.options)
            .finish()
    }
}

/// What a relay holding the lease knows: its checkpoint (it alone moves it) and the batch
/// read ahead while the previous one was being acknowledged.
struct Leased<S: ProjectionStore> {
    owned: Owned<S>,
    checkpoint: Option<Checkpoint>,
    ahead: Option<Vec<RecordedEvent>>,
}

impl<S: ProjectionStore> Relay<S> {
    /// A relay named `name` (its checkpoint and lease in `store`) publishing to the JetStream
    /// stream `stream` under `prefix`, with default options and every event.
    pub fn new(
        store: S,
        jetstream: Context,
        name: impl Into<String>,
        stream: impl Into<String>,
        prefix: SubjectPrefix,
    ) -> Self {
        Relay {
            store,
            jetstream,
            name: name.into(),
            stream: stream.into(),
            prefix,
            filter: LogFilter::all(),
            options: RelayOptions::default(),
            last_sequence: None,
            careful: true,
        }
    }

    /// Relays only the events passing `filter`.
    #[must_use]
    pub fn with_filter(mut self, filter: LogFilter) -> Self {
        self.filter = filter;
        self
    }

    /// Replaces the options.
    #[must_use]
    pub fn with_options(mut self, options: RelayOptions) -> Self {
        self.options = options;
        self
    }

    /// The relay's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Publishes every event up to the log's current end, then returns how many were
    /// acknowledged (duplicates included). Takes the lease for the call.
    pub async fn catch_up(&mut self) -> Result<u64, RelayError> {
        let mut leased = self.lease().await?;
        let mut relayed = 0;
        loop {
            let (count, full) = self.step(&mut leased, None).await?;
            relayed += count;
            if !full {
                return Ok(relayed);
            }
        }
    }

    /// Relays until `shutdown` completes: catch-up, then live. The batch in flight when
    /// shutdown is asked for is finished (acknowledged and checkpointed) first.
    pub async fn run(
        &mut self,
        shutdown: impl Future<Output = ()> + Send,
    ) -> Result<(), RelayError> {
        let mut leased = self.lease().await?;
        let mut shutdown = std::pin::pin!(shutdown);
        loop {
            if (&mut shutdown).now_or_never().is_some() {
                return Ok(());
            }
            // The head before reading: whatever is appended after it may be unread.
            let head = self
                .store
                .head_position()
                .await
                .map_err(|e| self.store_error(e))?;
            let (_, full) = self.step(&mut leased, Some(head)).await?;
            if full {
                continue;
            }
            let checkpoint = leased.checkpoint.unwrap_or(Checkpoint::START);
            let wait = self.store.wait_for_append(
                checkpoint,
                head,
                &self.filter,
                self.options.poll_interval.max(SHORTEST_WAIT),
            );
            tokio::select! {
                () = &mut shutdown => return Ok(()),
                () = wait => {}
            }
        }
    }

    /// The relay's checkpoint, the log's head and the lag between them.
    pub async fn status(&self) -> Result<RelayStatus, RelayError> {
        let checkpoint = self.checkpoint().await?;
        let head = self
            .store
            .head_position()
            .await
            .map_err(|e| self.store_error(e))?;
        let done = checkpoint.map_or(0, |c| c.position().0);
        Ok(RelayStatus {
            checkpoint,
            head,
            lag: head.0.saturating_sub(done),
        })
    }

    async fn lease(&self) -> Result<Leased<S>, RelayError> {
        let owned = own(&self.store, &self.name, &self.filter)
            .await
            .map_err(|e| self.store_error(e))?;
        Ok(Leased {
            owned,
            checkpoint: self.checkpoint().await?,
            ahead: None,
        })
    }

    async fn checkpoint(&self) -> Result<Option<Checkpoint>, RelayError> {
        self.store
            .load_checkpoint(&self.name)
            .await
            .map_err(|e| self.store_error(e))
    }

    /// Reads one batch after the checkpoint (or takes the one read ahead) and publishes it,
    /// retrying until it is all acknowledged (or the retries run out); moves the checkpoint as
    /// acknowledgements come. While a full batch is acknowledged, the next one is read.
    /// Returns the events relayed and whether the batch was full.
    async fn step(
        &mut self,
        leased: &mut Leased<S>,
        head: Option<Position>,
    ) -> Result<(u64, bool), RelayError> {
        let size = self.options.batch_size.max(1);
        let batch = match leased.ahead.take() {
            Some(batch) => batch,
            None => self
                .store
                .read_all(
                    leased.checkpoint.unwrap_or(Checkpoint::START),
                    size,
                    &self.filter,
                )
                .await
                .map_err(|e| self.store_error(e))?,
        };
        let full = batch.len() >= size;
        let mut prepared = Vec::with_capacity(batch.len());
        for event in &batch {
            let message = encode(event).map_err(|source| RelayError::Encode {
                relay: self.name.clone(),
                name: event.name.clone(),
                stream: event.stream_id.clone(),
                version: event.version,
                source,
            })?;
            prepared.push(Prepared {
                subject: self.prefix.subject(event.stream_id.category(), &event.name),
                message,
            });
        }

        let mut done = 0;
        let mut failures = 0u32;
        let mut delay = self.options.backoff.max(SHORTEST_WAIT);
        while done < batch.len() {
            // Read the next batch while this one is acknowledged (it starts after this
            // batch's last event whatever happens to the publishes: a failure only repeats
            // them).
            let read_ahead = match (full && leased.ahead.is_none(), batch.last()) {
                (true, Some(last)) => {
                    let store = self.store.clone();
                    let filter = self.filter.clone();
                    let after = last.checkpoint;
                    Some(async move { store.read_all(after, size, &filter).await })
                }
                _ => None,
            };
            let (attempt, ahead) = match read_ahead {
                Some(read) => {
                    let (attempt, ahead) = tokio::join!(self.publish(&prepared[done..]), read);
                    (attempt, ahead.ok())
                }
                None => (self.publish(&prepared[done..]).await, None),
            };
            if ahead.is_some() {
                leased.ahead = ahead;
            }
            let relay = self.name.clone();
            metrics::counter!(metric_names::DUPLICATES, "relay" => relay.clone())
                .increment(attempt.duplicates);
            metrics::counter!(metric_names::PUBLISHED, "relay" => relay.clone())
                .increment(attempt.acknowledged as u64 - attempt.duplicates);
            if attempt.acknowledged > 0 {
                let last = &batch[done + attempt.acknowledged - 1];
                advance(
                    &self.store,
                    &leased.owned,
                    &self.name,
                    leased.checkpoint,
                    last.checkpoint,
                )
                .await
                .map_err(|e| self.store_error(e))?;
                leased.checkpoint = Some(last.checkpoint);
                done += attempt.acknowledged;
                failures = 0;
                delay = self.options.backoff.max(SHORTEST_WAIT);
                self.record_lag(last, head);
            }
            if let Some(error) = attempt.failure {
                metrics::counter!(metric_names::FAILURES, "relay" => relay).increment(1);
                failures += 1;
                let event = &batch[done];
                if too_large(&*error) || self.options.max_retries.is_some_and(|max| failures > max)
                {
                    return Err(RelayError::Publish {
                        relay: self.name.clone(),
                        name: event.name.clone(),
                        stream: event.stream_id.clone(),
                        version: event.version,
                        position: event.position,
                        subject: eventsource_core::limits::bounded(&prepared[done].subject)
                            .into_owned(),
                        attempts: failures,
                        source: error,
                    });
                }
                tracing::warn!(
                    relay = %self.name,
                    stream = %event.stream_id,
                    version = %event.version,
                    position = %event.position,
                    attempt = failures,
                    "publishing to JetStream failed, retrying in {delay:?}: {error}"
                );
                tokio::time::sleep(delay).await;
                delay = delay
                    .saturating_mul(2)
                    .min(self.options.max_backoff)
                    .max(SHORTEST_WAIT);
            }
        }
        if batch.is_empty() {
            metrics::gauge!(metric_names::LAG_EVENTS, "relay" => self.name.clone()).set(0.0);
        }
        Ok((batch.len() as u64, full))
    }

    /// Lag figures after `last` was acknowledged; `head` is the log's head read before the
    /// batch (when known: `run` reads it anyway, `catch_up` does not spend a query on it).
    fn record_lag(&self, last: &RecordedEvent, head: Option<Position>) {
        let age = (chrono::Utc::now() - last.recorded_at)
            .to_std()
            .unwrap_or(Duration::ZERO);
        metrics::gauge!(metric_names::LAG_SECONDS, "relay" => self.name.clone())
            .set(age.as_secs_f64());
        if let Some(head) = head {
            metrics::gauge!(metric_names::LAG_EVENTS, "relay" => self.name.clone())
                .set(head.0.saturating_sub(last.position.0) as f64);
        }
    }

    fn store_error(&self, source: StoreError) -> RelayError {
        RelayError::Store {
            relay: self.name.clone(),
            source,
        }
    }
}
