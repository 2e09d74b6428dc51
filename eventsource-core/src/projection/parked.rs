//! Dead letters: events a projection could not apply, parked so that it goes on with the rest.

use chrono::{DateTime, Utc};

use crate::envelope::RecordedEvent;

/// What a runner does with an event that still fails after [`max_retries`] retries.
///
/// [`max_retries`]: crate::RunnerOptions::max_retries
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum FailurePolicy {
    /// Stop with [`ProjectionError::Failed`](crate::ProjectionError::Failed), the checkpoint
    /// just before the event (the default): nothing after it is applied until it is fixed.
    #[default]
    Stop,
    /// Park the event with its error ([`ProjectionStore::park`](crate::ProjectionStore::park))
    /// in the same unit of work that moves the checkpoint past it, and go on with the next
    /// one. The read model then lacks that event until an operator retries it (`eventsource
    /// projection retry`, [`ProjectionStore::retry_parked`](crate::ProjectionStore::retry_parked)):
    /// the runner applies events marked for retry when it next catches up (live runners wake
    /// at least every poll interval), after the events that followed them, and parks them
    /// again if they still fail. For read models that tolerate an event applied late or not
    /// at all (counters, search indexes), never for ones that depend on order.
    Park,
}

/// An event a projection parked, from [`ProjectionStore::parked`](crate::ProjectionStore::parked).
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct ParkedEvent {
    /// The projection that parked it.
    pub projection: String,
    /// The event.
    pub record: RecordedEvent,
    /// Why it failed the last time (bounded: at most [`ParkedEvent::MAX_ERROR_LEN`] bytes).
    pub error: String,
    /// How many times it was tried, over all runs.
    pub attempts: u32,
    /// When it was parked (the last time).
    pub parked_at: DateTime<Utc>,
    /// Whether an operator asked for it to be applied again.
    pub retry_requested: bool,
}

impl ParkedEvent {
    /// The longest error text stored with a parked event, in bytes.
    pub const MAX_ERROR_LEN: usize = 2_000;

    /// `record`, parked by `projection` just now with `error` (bounded), not yet retried: for
    /// stores, which set the other fields from what they hold.
    pub fn new(projection: impl Into<String>, record: RecordedEvent, error: &str) -> Self {
        ParkedEvent {
            projection: projection.into(),
            record,
            error: Self::bounded_error(error),
            attempts: 0,
            parked_at: Utc::now(),
            retry_requested: false,
        }
    }

    /// `error` cut to at most [`MAX_ERROR_LEN`](Self::MAX_ERROR_LEN) bytes on a character
    /// boundary, marked when cut.
    pub fn bounded_error(error: &str) -> String {
        if error.len() <= Self::MAX_ERROR_LEN {
            return error.to_owned();
        }
        let mut end = Self::MAX_ERROR_LEN;
        while !error.is_char_boundary(end) {
            end -= 1;
        }
        format!("{}… ({} bytes in all)", &error[..end], error.len())
    }
}

/// Which parked events an operation applies to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ParkedSelection {
    /// Every parked event of the projection.
    All,
    /// The one at this global position.
    At(crate::Position),
}

#[cfg(test)]
mod tests {
    use super::ParkedEvent;

    #[test]
    fn errors_are_cut_on_a_character_boundary() {
        let short = "x".repeat(ParkedEvent::MAX_ERROR_LEN);
        assert_eq!(ParkedEvent::bounded_error(&short), short);
        let long = "é".repeat(ParkedEvent::MAX_ERROR_LEN);
        let cut = ParkedEvent::bounded_error(&long);
        assert!(cut.len() < ParkedEvent::MAX_ERROR_LEN + 40, "{}", cut.len());
        assert!(
            cut.ends_with(&format!("({} bytes in all)", long.len())),
            "{cut}"
        );
    }
}
