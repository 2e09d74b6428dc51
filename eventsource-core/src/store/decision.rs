//! Decisions across streams: atomic appends to several streams, and appends conditional on a
//! query of tagged events (Dynamic Consistency Boundaries).

use std::collections::BTreeSet;
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::envelope::{ExpectedVersion, NewEvent, RecordedEvent, StreamId, Tag, Version};

/// One stream's part of an atomic multi-stream append: its own expectation and batch.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StreamAppend {
    /// The stream appended to.
    pub stream: StreamId,
    /// What the writer believes its version to be.
    pub expected: ExpectedVersion,
    /// The events, in order (at least one).
    pub events: Vec<NewEvent>,
}

impl StreamAppend {
    /// `events` appended to `stream` if it matches `expected`.
    pub fn new(stream: StreamId, expected: ExpectedVersion, events: Vec<NewEvent>) -> Self {
        StreamAppend {
            stream,
            expected,
            events,
        }
    }
}

/// A stream whose expectation did not hold in a multi-stream append.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StreamConflict {
    /// The stream.
    pub stream: StreamId,
    /// What the writer expected.
    pub expected: ExpectedVersion,
    /// The stream's version when the append was checked.
    pub actual: Version,
}

impl fmt::Display for StreamConflict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "`{}` expected {}, but it is at version {}",
            crate::limits::excerpt(self.stream.as_str()),
            self.expected,
            self.actual
        )
    }
}

/// One alternative of a [`Query`]: events named one of `names` (any name when empty) that
/// carry every one of `tags` (at least one).
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct QueryItem {
    names: Vec<String>,
    tags: Vec<Tag>,
}

impl QueryItem {
    /// Events carrying every one of `tags`, whatever their name.
    pub fn tagged(tags: impl IntoIterator<Item = Tag>) -> Self {
        QueryItem::default().and_tags(tags)
    }

    /// Only events named one of `names` (adds to the names already given).
    #[must_use]
    pub fn named<S: Into<String>>(mut self, names: impl IntoIterator<Item = S>) -> Self {
        let mut all: BTreeSet<String> = self.names.into_iter().collect();
        all.extend(names.into_iter().map(Into::into));
        self.names = all.into_iter().collect();
        self
    }

    /// Also requires `tags`.
    #[must_use]
    pub fn and_tags(mut self, tags: impl IntoIterator<Item = Tag>) -> Self {
        let mut all: BTreeSet<Tag> = self.tags.into_iter().collect();
        all.extend(tags);
        self.tags = all.into_iter().collect();
        self
    }

    /// The event names (sorted, distinct); empty means any name.
    pub fn names(&self) -> &[String] {
        &self.names
    }

    /// The tags (sorted, distinct) an event must all carry.
    pub fn tags(&self) -> &[Tag] {
        &self.tags
    }

    /// Whether an event named `name` with `tags` matches.
    pub fn matches(&self, name: &str, tags: &[Tag]) -> bool {
        (self.names.is_empty() || self.names.iter().any(|n| n == name))
            && self.tags.iter().all(|t| tags.contains(t))
    }
}

/// Which events a decision depends on, across streams: the events matching any of its items.
///
/// ```
/// # use eventsource_core::{Query, QueryItem, Tag};
/// // The enrolments in course 7, and every event about student ada.
/// let query = Query::new()
///     .item(QueryItem::tagged([Tag::new("course", 7)]).named(["student.enrolled"]))
///     .item(QueryItem::tagged([Tag::new("student", "ada")]));
/// assert_eq!(query.items().len(), 2);
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Query {
    items: Vec<QueryItem>,
}

impl Query {
    /// A query with no items: it matches no event.
    pub fn new() -> Self {
        Query::default()
    }

    /// Adds an alternative.
    #[must_use]
    pub fn item(mut self, item: QueryItem) -> Self {
        if !self.items.contains(&item) {
            self.items.push(item);
        }
        self
    }

    /// The alternatives.
    pub fn items(&self) -> &[QueryItem] {
        &self.items
    }

    /// Whether an event named `name` with `tags` matches some item.
    pub fn matches(&self, name: &str, tags: &[Tag]) -> bool {
        self.items.iter().any(|item| item.matches(name, tags))
    }
}

/// How far a [`DecisionStore::read_query`](crate::DecisionStore::read_query) saw the log:
/// an opaque token that an [`AppendCondition`] compares later writes with.
///
/// It lists what the read could not see: every transaction from `below` on, and the ones
/// that were `in_flight` below it. An event written by any of those is "after" the read. On
/// a store that commits in position order (`MemoryStore`) nothing is in flight; on
/// PostgreSQL this is the read's snapshot, so a transaction that drew an earlier position but
/// committed after the read still counts as after it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ReadPosition {
    below: u64,
    in_flight: Vec<u64>,
}

impl ReadPosition {
    /// Before every event: a condition with it fails on any matching event (a uniqueness
    /// check: "no user named ada, ever").
    pub const START: ReadPosition = ReadPosition {
        below: 0,
        in_flight: Vec::new(),
    };

    /// A store's read position: transactions from `below` on, and those `in_flight`, were not
    /// visible. For store adapters.
    pub fn from_parts(below: u64, mut in_flight: Vec<u64>) -> Self {
        in_flight.retain(|&t| t < below);
        in_flight.sort_unstable();
        in_flight.dedup();
        ReadPosition { below, in_flight }
    }

    /// The first transaction the read did not see at all. For store adapters.
    pub fn below(&self) -> u64 {
        self.below
    }

    /// The transactions below [`below`](Self::below) that were still running. For store
    /// adapters.
    pub fn in_flight(&self) -> &[u64] {
        &self.in_flight
    }

    /// The lowest transaction the read did not see.
    pub fn lowest_unseen(&self) -> u64 {
        self.in_flight.first().copied().unwrap_or(self.below)
    }

    /// Whether transaction `transaction` was not visible to the read.
    pub fn unseen(&self, transaction: u64) -> bool {
        transaction >= self.below || self.in_flight.binary_search(&transaction).is_ok()
    }
}

/// The facts of a decision: the events matching a query, in the global log's order, and the
/// position the read saw the log up to.
#[derive(Clone, Debug, PartialEq)]
pub struct QueryRead {
    /// The matching events, in checkpoint order.
    pub events: Vec<RecordedEvent>,
    /// What the read saw: the `after` of an [`AppendCondition`] on the same query.
    pub position: ReadPosition,
}

impl QueryRead {
    /// The condition "nothing matching `query` was written since this read".
    pub fn condition(&self, query: Query) -> AppendCondition {
        AppendCondition {
            query,
            after: self.position.clone(),
        }
    }
}

/// The condition of a conditional append: fail if any event matching `query` was written
/// after `after` (the DCB specification's `failIfEventsMatch` and `after`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AppendCondition {
    /// The decision's query.
    pub query: Query,
    /// What the decision saw ([`ReadPosition::START`]: fail on any match).
    pub after: ReadPosition,
}

impl AppendCondition {
    /// Fails if any event matching `query` exists at all.
    pub fn none_match(query: Query) -> Self {
        AppendCondition {
            query,
            after: ReadPosition::START,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn items_match_any_name_and_every_tag() {
        let item = QueryItem::tagged([Tag::new("course", 1), Tag::new("student", "a")])
            .named(["enrolled"]);
        let both = [Tag::new("student", "a"), Tag::new("course", 1)];
        assert!(item.matches("enrolled", &both));
        assert!(!item.matches("left", &both));
        assert!(!item.matches("enrolled", &both[..1]));
        let any_name = QueryItem::tagged([Tag::new("course", 1)]);
        assert!(any_name.matches("whatever", &both));
        assert!(
            !Query::new().matches("enrolled", &both),
            "no items, no match"
        );
    }

    #[test]
    fn conflict_messages_name_the_streams_bounded() {
        let conflicts: Vec<StreamConflict> = (0..12)
            .map(|i| StreamConflict {
                stream: StreamId::new("s", i),
                expected: ExpectedVersion::Exact(Version(1)),
                actual: Version(2),
            })
            .collect();
        let text = crate::StoreError::Conflicts { conflicts }.to_string();
        assert!(
            text.starts_with("concurrency conflict on 12 stream(s)"),
            "{text}"
        );
        assert!(text.contains("`s-0` expected version 1, but it is at version 2"));
        assert!(
            text.contains("and 2 more") && !text.contains("s-11"),
            "{text}"
        );

        let failed = crate::StoreError::ConditionFailed {
            stream: StreamId::new("student", 1),
            position: crate::Position(7),
            name: "x".repeat(10_000),
        }
        .to_string();
        assert!(failed.len() < 400, "bounded: {} bytes", failed.len());
        assert!(failed.contains("position 7 in stream `student-1`"));
    }

    #[test]
    fn read_positions_list_what_was_unseen() {
        let read = ReadPosition::from_parts(10, vec![7, 3, 7, 12]);
        assert_eq!(read.in_flight(), &[3, 7]);
        assert_eq!(read.lowest_unseen(), 3);
        assert!(read.unseen(3) && read.unseen(7) && read.unseen(10) && read.unseen(11));
        assert!(!read.unseen(4) && !read.unseen(9));
        assert!(ReadPosition::START.unseen(0));
    }
}
