//! Writers of one stream take turns inside the process, so that concurrent commands on one
//! aggregate queue instead of losing to each other's appends.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use crate::envelope::StreamId;

/// One async lock per stream that has a command in flight; a stream's entry goes when its
/// last user leaves, so the map holds only streams being written.
#[derive(Debug, Default)]
pub(crate) struct StreamQueue {
    streams: Mutex<HashMap<StreamId, Arc<tokio::sync::Mutex<()>>>>,
}

/// A place in the queue of one stream; [`Turn::wait`] waits until it is this writer's turn.
/// Dropping it (also while waiting: a cancelled command) leaves the queue.
pub(crate) struct Turn<'q> {
    queue: &'q StreamQueue,
    stream: StreamId,
    lock: Arc<tokio::sync::Mutex<()>>,
}

impl StreamQueue {
    /// Joins the queue of `stream`.
    pub(crate) fn join(&self, stream: &StreamId) -> Turn<'_> {
        let mut streams = self.streams.lock().unwrap_or_else(PoisonError::into_inner);
        let lock = Arc::clone(streams.entry(stream.clone()).or_default());
        Turn {
            queue: self,
            stream: stream.clone(),
            lock,
        }
    }

    /// How many streams have writers queued or writing.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.streams
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }
}

impl Turn<'_> {
    /// Waits for the writers ahead (first come, first served) and holds the stream until the
    /// guard is dropped.
    pub(crate) async fn wait(&self) -> tokio::sync::MutexGuard<'_, ()> {
        self.lock.lock().await
    }
}

impl Drop for Turn<'_> {
    fn drop(&mut self) {
        let mut streams = self
            .queue
            .streams
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        // Clones are only made under this map lock: two references (the map's and this one)
        // mean nobody else is queued.
        if Arc::strong_count(&self.lock) == 2 {
            streams.remove(&self.stream);
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::time::Duration;

    use super::*;

    #[tokio::test]
    async fn writers_of_one_stream_take_turns_and_leave_nothing_behind() {
        let queue = Arc::new(StreamQueue::default());
        let (a, b) = (StreamId::new("t", "a"), StreamId::new("t", "b"));
        let first = queue.join(&a);
        let held = first.wait().await;
        // Another stream is not held up.
        let other = queue.join(&b);
        drop(other.wait().await);
        // The same stream waits.
        let second = queue.join(&a);
        assert!(
            tokio::time::timeout(Duration::from_millis(20), second.wait())
                .await
                .is_err()
        );
        drop(other);
        assert_eq!(queue.len(), 1);
        drop(held);
        drop(second.wait().await);
        drop(first);
        assert_eq!(queue.len(), 1, "the second writer is still queued");
        drop(second);
        assert_eq!(queue.len(), 0);
    }

    #[tokio::test]
    async fn a_cancelled_waiter_leaves_the_queue() {
        let queue = StreamQueue::default();
        let a = StreamId::new("t", "a");
        let first = queue.join(&a);
        let held = first.wait().await;
        {
            let waiting = queue.join(&a);
            let _ = tokio::time::timeout(Duration::from_millis(5), waiting.wait()).await;
        }
        drop(held);
        drop(first);
        assert_eq!(queue.len(), 0);
    }
}
