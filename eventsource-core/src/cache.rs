//! The aggregate cache: recently used aggregates kept in memory, so that a command on a warm
//! aggregate skips the load query.

use std::num::NonZeroUsize;
use std::sync::{Mutex, MutexGuard};

use lru::LruCache;

use crate::envelope::{StreamId, Version};

/// A bounded, least-recently-used map from stream to (state, version).
///
/// An entry is *taken* out while a command decides on it, so two tasks never work on one
/// copy; the second one simply misses and loads from the store.
pub(crate) struct AggregateCache<A> {
    entries: Mutex<LruCache<StreamId, (A, Version)>>,
    clone: fn(&A) -> A,
}

impl<A> AggregateCache<A> {
    pub(crate) fn new(capacity: NonZeroUsize, clone: fn(&A) -> A) -> Self {
        AggregateCache {
            entries: Mutex::new(LruCache::sparse(capacity)),
            clone,
        }
    }

    fn lock(&self) -> MutexGuard<'_, LruCache<StreamId, (A, Version)>> {
        // The map holds whole entries only; a panic elsewhere cannot leave one half-written.
        self.entries
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Removes and returns the stream's entry.
    pub(crate) fn take(&self, stream: &StreamId) -> Option<(A, Version)> {
        self.lock().pop(stream)
    }

    /// Stores a copy of `state` at `version`, evicting the least recently used entry if full.
    pub(crate) fn put(&self, stream: &StreamId, state: &A, version: Version) {
        let copy = (self.clone)(state);
        self.lock().put(stream.clone(), (copy, version));
    }

    /// How many aggregates are cached.
    pub(crate) fn len(&self) -> usize {
        self.lock().len()
    }
}
