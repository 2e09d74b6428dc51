//! Publishing a batch in order: one at a time after a failure, then pipelined, each publish
//! expecting the sequence of the one before it (`Nats-Expected-Last-Sequence`).

use async_nats::jetstream::context::{PublishAckFuture, PublishError, PublishErrorKind};
use async_nats::jetstream::message::PublishMessage;
use eventsource_core::{BoxError, ProjectionStore};

use super::Relay;

/// One event ready to go.
pub(super) struct Prepared {
    pub(super) subject: String,
    pub(super) message: PublishMessage,
}

/// How far a publish attempt got.
pub(super) struct Attempt {
    /// Events acknowledged, from the start of the batch.
    pub(super) acknowledged: usize,
    /// Of which duplicates.
    pub(super) duplicates: u64,
    /// The failure that stopped it, at index `acknowledged`.
    pub(super) failure: Option<BoxError>,
}

impl<S: ProjectionStore> Relay<S> {
    /// Publishes `events` in order. After a failure (and at start) it goes one event at a
    /// time until JetStream stores one that it did not have (earlier ones may be duplicates of
    /// publishes whose acknowledgement was lost); from there the rest are in flight together,
    /// each expecting the previous one's sequence.
    pub(super) async fn publish(&mut self, events: &[Prepared]) -> Attempt {
        let mut attempt = Attempt {
            acknowledged: 0,
            duplicates: 0,
            failure: None,
        };
        if let Err(error) = self.publish_in_order(events, &mut attempt).await {
            self.careful = true;
            self.last_sequence = None;
            attempt.failure = Some(error);
        }
        attempt
    }

    async fn publish_in_order(
        &mut self,
        events: &[Prepared],
        attempt: &mut Attempt,
    ) -> Result<(), BoxError> {
        let mut last = match self.last_sequence {
            Some(last) => last,
            None => {
                let stream = self.jetstream.get_stream(&self.stream).await?;
                stream.cached_info().state.last_sequence
            }
        };
        let mut next = 0;
        while self.careful && next < events.len() {
            let ack = self.send(&events[next], last).await?.await?;
            next += 1;
            attempt.acknowledged = next;
            if ack.duplicate {
                attempt.duplicates += 1;
            } else {
                last = ack.sequence;
                self.last_sequence = Some(last);
                self.careful = false;
            }
        }
        let mut pending: Vec<PublishAckFuture> = Vec::with_capacity(events.len() - next);
        let mut send_failure = None;
        // Each publish expects the sequence the one before it will get.
        for (expected, event) in (last..).zip(&events[next..]) {
            match self.send(event, expected).await {
                Ok(ack) => pending.push(ack),
                Err(error) => {
                    send_failure = Some(error);
                    break;
                }
            }
        }
        for ack in pending {
            let ack = ack.await?;
            attempt.acknowledged += 1;
            if ack.duplicate {
                // Not expected in order; the publishes after it expect a sequence that is
                // one too high and fail, and the retry goes carefully.
                attempt.duplicates += 1;
            } else {
                self.last_sequence = Some(ack.sequence);
            }
        }
        match send_failure {
            Some(error) => Err(error.into()),
            None => Ok(()),
        }
    }

    async fn send(
        &self,
        event: &Prepared,
        expected_last: u64,
    ) -> Result<PublishAckFuture, async_nats::jetstream::context::PublishError> {
        let mut message = event.message.clone().expected_stream(&self.stream);
        // The server ignores 0 ("no expectation"): the first message of an empty stream.
        if expected_last > 0 {
            message = message.expected_last_sequence(expected_last);
        }
        self.jetstream
            .send_publish(event.subject.clone(), message)
            .await
    }
}

/// Whether a publish failed because the message exceeds the server's `max_payload`, which no
/// retry can fix.
pub(super) fn too_large(error: &(dyn std::error::Error + Send + Sync + 'static)) -> bool {
    error
        .downcast_ref::<PublishError>()
        .is_some_and(|e| e.kind() == PublishErrorKind::MaxPayloadExceeded)
}
