//! Instrumentation: `tracing` spans and `metrics` figures on the paths an operator watches.
//!
//! Nothing is recorded unless the application installs a tracing subscriber or a metrics
//! recorder; without them each instrumented call costs a few atomic loads.
//!
//! | metric | kind | unit | labels | meaning |
//! |---|---|---|---|---|
//! | `eventsource_append_seconds` | histogram | seconds | `store`, `outcome` | latency of one append (`outcome`: `ok`, `replayed`, `conflict`, `error`) |
//! | `eventsource_events_appended_total` | counter | events | `store` | events written (replays not counted) |
//! | `eventsource_append_conflicts_total` | counter | appends | `store` | appends refused by the expected-version check |
//! | `eventsource_command_retries_total` | counter | retries | `aggregate` | commands decided again after a conflict |
//! | `eventsource_cache_stale_total` | counter | commands | `aggregate` | cached aggregates found stale by a conflicting append, then reloaded |
//! | `eventsource_snapshot_hits_total` | counter | loads | `aggregate` | loads that started from a snapshot |
//! | `eventsource_snapshot_misses_total` | counter | loads | `aggregate` | loads of snapshotting aggregates that found no usable snapshot |
//! | `eventsource_snapshots_ignored_total` | counter | snapshots | `aggregate`, `reason` | stored snapshots a load did not trust (`reason`: `fingerprint`, the state's shape changed; `undecodable`; `ahead`, past the stream's head) |
//! | `eventsource_projection_events_total` | counter | events | `projection` | events applied by a projection |
//! | `eventsource_projection_lag_events` | gauge | events | `projection` | events the projection handles that it has still to apply (0 when caught up) |
//! | `eventsource_projection_horizon_lag_seconds` | gauge | seconds | `projection` | age of the oldest open write transaction (events not yet visible) |
//! | `eventsource_projection_failures_total` | counter | failures | `projection` | times a projection stopped on a failing event |
//! | `eventsource_projection_store_retries_total` | counter | failures | `projection` | transient store failures a running projection rode out (retried after backoff) |
//! | `eventsource_projection_leases_lost_total` | counter | losses | `projection` | times a runner found its lease gone and went back to waiting for it |
//! | `eventsource_projection_parked_total` | counter | events | `projection` | failing events parked (dead-lettered) under `FailurePolicy::Park` |
//! | `eventsource_projection_rebuilds_total` | counter | rebuilds | `projection` | read models cleared and rebuilt from the start (`rebuild()`, or a pending reset) |
//!
//! | span | level | fields |
//! |---|---|---|
//! | `eventsource.execute` | info | `aggregate`, `stream`, `command`, `version`, `retries`, `outcome` |
//! | `eventsource.append` | debug | `store`, `stream`, `batch_size`, `expected`, `outcome`, `version` |
//! | `eventsource.load` | debug | `aggregate`, `stream`, `events_folded`, `snapshot`, `version` |
//! | `eventsource.projection.batch` | debug | `projection`, `from`, `to`, `count` |

use std::future::Future;
use std::time::Instant;

use tracing::Instrument;
use tracing::field::Empty;

use crate::envelope::{ExpectedVersion, StreamId};
use crate::error::StoreError;
use crate::store::Appended;

/// Metric names, as documented in the table above.
pub mod names {
    /// Histogram of append latency, seconds.
    pub const APPEND_SECONDS: &str = "eventsource_append_seconds";
    /// Counter of events written.
    pub const EVENTS_APPENDED: &str = "eventsource_events_appended_total";
    /// Counter of appends refused by the expected-version check.
    pub const APPEND_CONFLICTS: &str = "eventsource_append_conflicts_total";
    /// Counter of command retries after conflicts.
    pub const COMMAND_RETRIES: &str = "eventsource_command_retries_total";
    /// Counter of cached aggregates found stale by a conflicting append (then reloaded).
    pub const CACHE_STALE: &str = "eventsource_cache_stale_total";
    /// Counter of loads that used a snapshot.
    pub const SNAPSHOT_HITS: &str = "eventsource_snapshot_hits_total";
    /// Counter of loads that found no usable snapshot.
    pub const SNAPSHOT_MISSES: &str = "eventsource_snapshot_misses_total";
    /// Counter of stored snapshots a load ignored, by reason.
    pub const SNAPSHOTS_IGNORED: &str = "eventsource_snapshots_ignored_total";
    /// Counter of events applied by projections.
    pub const PROJECTION_EVENTS: &str = "eventsource_projection_events_total";
    /// Gauge of a projection's lag, events.
    pub const PROJECTION_LAG: &str = "eventsource_projection_lag_events";
    /// Gauge of the store's horizon lag seen by a projection, seconds.
    pub const PROJECTION_HORIZON_LAG: &str = "eventsource_projection_horizon_lag_seconds";
    /// Counter of projection stops on failing events.
    pub const PROJECTION_FAILURES: &str = "eventsource_projection_failures_total";
    /// Counter of transient store failures a running projection retried.
    pub const PROJECTION_STORE_RETRIES: &str = "eventsource_projection_store_retries_total";
    /// Counter of leases a projection runner found lost.
    pub const PROJECTION_LEASES_LOST: &str = "eventsource_projection_leases_lost_total";
    /// Counter of events parked by projections (`FailurePolicy::Park`).
    pub const PROJECTION_PARKED: &str = "eventsource_projection_parked_total";
    /// Counter of projection rebuilds (read model cleared, log applied from the start).
    pub const PROJECTION_REBUILDS: &str = "eventsource_projection_rebuilds_total";
}

/// Runs a store's `append` body inside the `eventsource.append` span and records the append
/// metrics. For store adapters, so that every store reports the same figures.
pub async fn observe_append<F>(
    store: &'static str,
    stream: &StreamId,
    expected: ExpectedVersion,
    batch_size: usize,
    append: F,
) -> Result<Appended, StoreError>
where
    F: Future<Output = Result<Appended, StoreError>>,
{
    let span = tracing::debug_span!(
        "eventsource.append",
        store,
        stream = %stream,
        batch_size,
        expected = %expected,
        outcome = Empty,
        version = Empty,
    );
    let started = Instant::now();
    let result = append.instrument(span.clone()).await;
    let outcome = match &result {
        Ok(written) if written.replayed => "replayed",
        Ok(_) => "ok",
        Err(StoreError::Conflict { .. }) => "conflict",
        Err(_) => "error",
    };
    span.record("outcome", outcome);
    if let Ok(written) = &result {
        span.record("version", written.last_version.0);
    }
    metrics::histogram!(names::APPEND_SECONDS, "store" => store, "outcome" => outcome)
        .record(started.elapsed().as_secs_f64());
    match &result {
        Ok(written) if !written.replayed => {
            metrics::counter!(names::EVENTS_APPENDED, "store" => store)
                .increment(batch_size as u64);
        }
        Err(StoreError::Conflict { .. }) => {
            metrics::counter!(names::APPEND_CONFLICTS, "store" => store).increment(1);
        }
        _ => {}
    }
    result
}

/// The last path segment of a type's name: `bank::Deposit` -> `Deposit`.
pub(crate) fn short_type_name<T: ?Sized>() -> &'static str {
    let full = std::any::type_name::<T>();
    let base = full.split('<').next().unwrap_or(full);
    base.rsplit("::").next().unwrap_or(base)
}
