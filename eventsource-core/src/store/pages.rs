//! Reading a stream page by page: the one loop behind loads, time travel and audit trails.

use crate::envelope::{RecordedEvent, StreamId, Version};
use crate::error::StoreError;
use crate::store::EventStore;

/// The events of one stream in version order, read a page at a time, from a version up to an
/// optional last version. Made by [`EventStore::read_stream_pages`].
///
/// ```
/// # use eventsource_core::*;
/// # async fn demo(store: MemoryStore) -> Result<(), StoreError> {
/// let stream = StreamId::new("account", "ada");
/// let mut pages = store.read_stream_pages(&stream, Version(1)).until(Version(2_500));
/// while let Some(page) = pages.next_page().await? {
///     for event in &page {
///         println!("{} v{}: {}", event.stream_id, event.version, event.name);
///     }
/// }
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct StreamPages<'s, S: ?Sized> {
    store: &'s S,
    stream: StreamId,
    next: Version,
    until: Version,
    page_size: usize,
    done: bool,
}

impl<'s, S: EventStore + ?Sized> StreamPages<'s, S> {
    /// Events asked for per read unless [`page_size`](Self::page_size) says otherwise.
    pub const DEFAULT_PAGE_SIZE: usize = 1_000;

    pub(crate) fn new(store: &'s S, stream: StreamId, from: Version) -> Self {
        StreamPages {
            store,
            stream,
            // Version 0 is "no events": the first event is version 1.
            next: from.max(Version(1)),
            until: Version(u64::MAX),
            page_size: Self::DEFAULT_PAGE_SIZE,
            done: false,
        }
    }

    /// Stops after version `last` (inclusive): no read asks for events past it.
    #[must_use]
    pub fn until(mut self, last: Version) -> Self {
        self.until = last;
        self
    }

    /// Asks for up to `size` events per read (at least 1).
    #[must_use]
    pub fn page_size(mut self, size: usize) -> Self {
        self.page_size = size.max(1);
        self
    }

    /// The stream being read.
    pub fn stream(&self) -> &StreamId {
        &self.stream
    }

    /// The next page (never empty), or `None` once the stream or the range is exhausted.
    pub async fn next_page(&mut self) -> Result<Option<Vec<RecordedEvent>>, StoreError> {
        if self.done || self.next > self.until {
            return Ok(None);
        }
        // `until - next + 1` events are left in the range; a range wider than memory is
        // simply "a full page".
        let wanted = usize::try_from(self.until.0 - self.next.0).map_or(self.page_size, |rest| {
            rest.saturating_add(1).min(self.page_size)
        });
        let page = self
            .store
            .read_stream(&self.stream, self.next, wanted)
            .await?;
        let Some(last) = page.last() else {
            self.done = true;
            return Ok(None);
        };
        // A short page is the stream's end. A store that returns nothing past `next` (or the
        // last possible version) ends the read too, rather than asking again forever.
        if page.len() < wanted || last.version < self.next || last.version.0 == u64::MAX {
            self.done = true;
        }
        self.next = last.version.next();
        Ok(Some(page))
    }
}
