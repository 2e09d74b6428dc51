//! The JetStream stream a relay publishes to, configured for server 2.9 and later.

use std::time::Duration;

use async_nats::jetstream::stream::{Config, DiscardPolicy, RetentionPolicy, StorageType};

use crate::subject::SubjectPrefix;

/// `duration` as JetStream can take it: async-nats sends it as an `i64` of nanoseconds
/// (`as_nanos() as i64`), which wraps for anything beyond 292 years (`Duration::MAX` became a
/// negative duration); such a duration is sent as the longest one that fits.
pub(crate) fn jetstream_duration(duration: Duration) -> Duration {
    const LONGEST: Duration = Duration::from_nanos(i64::MAX as u64);
    duration.min(LONGEST)
}

/// The configuration of a stream that takes every event under `prefix`: file storage, limits
/// retention (events stay for every consumer), `duplicate_window` for the relay's
/// deduplication (JetStream's default is 2 minutes; the relay drops repeats only within it,
/// so make it longer than the longest relay outage you expect) and `replicas` copies (1 on a
/// single server, 3 on a three-node cluster).
///
/// Uses no field newer than server 2.9. Create it with
/// `jetstream.get_or_create_stream(stream_config(..))`; change limits (`max_age`, `max_bytes`)
/// on the returned value first if events should not be kept for ever.
pub fn stream_config(
    name: &str,
    prefix: &SubjectPrefix,
    duplicate_window: Duration,
    replicas: usize,
) -> Config {
    Config {
        name: name.to_owned(),
        subjects: vec![prefix.all()],
        storage: StorageType::File,
        retention: RetentionPolicy::Limits,
        discard: DiscardPolicy::Old,
        duplicate_window: jetstream_duration(duplicate_window),
        num_replicas: replicas.max(1),
        ..Config::default()
    }
}
