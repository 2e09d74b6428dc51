//! Test support: the store conformance suite and the fixture aggregate it uses, and the golden
//! payload check ([`check_golden`]).
//!
//! Every store adapter runs the suite against itself:
//!
//! ```ignore
//! async fn fresh_store() -> MyStore { /* a new, empty, isolated store */ }
//! eventsource_core::conformance_tests!(fresh_store);
//! ```
//!
//! The macro expands to one `#[test]` per case, each on its own store, so a failure names the
//! broken guarantee.

pub mod conformance;
pub mod decision;
pub mod fixture;
pub mod golden;
mod idempotency;
pub mod json_schemas;
pub mod lifecycle;

pub use golden::{check_golden, verify_golden};
pub use json_schemas::check_json_schemas;

use std::future::Future;

/// Runs `future` to completion on a fresh multi-threaded runtime, as each conformance test does.
///
/// # Panics
/// If the runtime cannot be built (this is test support: panicking fails the test).
#[allow(clippy::expect_used)]
pub fn run<F: Future>(future: F) -> F::Output {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(4)
        .enable_all()
        .build()
        .expect("cannot build a tokio runtime for the test")
        .block_on(future)
}

/// Expands to one `#[test]` per conformance case, each given a fresh store by `$factory`, an
/// `async fn() -> S` (or a path to one) where `S: EventStore + SnapshotStore + ProjectionStore
/// + Clone`.
#[macro_export]
macro_rules! conformance_tests {
    ($factory:path) => {
        $crate::conformance_tests!(@cases $factory;
            expected_no_stream_on_new_stream_appends,
            expected_no_stream_on_existing_stream_conflicts,
            expected_exact_appends_at_that_version,
            expected_exact_mismatch_conflicts_and_writes_nothing,
            expected_stream_exists_on_missing_stream_conflicts,
            expected_any_appends_anywhere,
            batch_gets_consecutive_versions_and_positions,
            failed_batch_writes_nothing,
            empty_batch_is_rejected,
            concurrent_writers_on_one_stream_lose_nothing,
            reappending_a_batch_is_idempotent,
            reusing_an_event_id_elsewhere_is_rejected,
            read_stream_from_a_version,
            global_read_is_in_append_order,
            global_read_resumes_from_a_checkpoint,
            global_read_filters_by_category_and_name,
            filtered_global_read_merges_names_in_order,
            head_position_and_stream_version,
            metadata_round_trips,
            find_event_by_id,
            snapshot_round_trip_moves_only_forward,
            repository_loads_snapshot_plus_tail,
            stale_or_corrupt_snapshot_is_ignored,
            snapshot_ahead_of_the_stream_is_ignored,
            runtime_snapshot_policy_overrides_the_aggregates,
            snapshot_now_stores_the_current_state,
            typed_append_encodes_and_checks_the_expected_version,
            reading_a_stream_page_by_page,
            reading_a_stream_for_folding,
            writers_of_one_stream_take_turns_in_a_repository,
            corrupt_payload_is_a_typed_error,
            unknown_event_name_is_a_typed_error,
            time_travel_by_version_and_timestamp,
            execute_carries_correlation_and_causation,
            idempotency_key_executes_once,
            idempotency_key_is_kept_in_the_metadata,
            idempotent_repeat_reports_the_state_as_of_its_append,
            reused_idempotency_key_is_refused,
            idempotent_repeat_is_not_rejected_by_its_own_execution,
            idempotent_repeat_without_events_reports_the_execution,
            idempotent_repeat_on_a_warm_cache_applies_nothing_twice,
            concurrent_idempotent_callers_share_one_outcome,
            idempotent_retry_after_a_lost_reply_reports_the_first_run,
            transient_append_failures_are_retried_without_writing_twice,
            conflict_retries_are_bounded,
            projection_checkpoints_resets_and_parked_events,
        );
    };
    (@cases $factory:path; $($case:ident),* $(,)?) => {
        $(
            #[test]
            fn $case() {
                $crate::testing::run(async {
                    let store = $factory().await;
                    $crate::testing::conformance::$case(store).await;
                });
            }
        )*
    };
}

/// Expands to one `#[test]` per lifecycle case (archive, delete, snapshot maintenance,
/// crypto-shredding), each given a fresh store by `$factory`, an `async fn() -> S` where
/// `S: EventStore + SnapshotStore + ProjectionStore + StreamRetirement + SnapshotMaintenance + Clone`.
///
/// ```ignore
/// eventsource_core::lifecycle_conformance_tests!(fresh_store);
/// ```
#[macro_export]
macro_rules! lifecycle_conformance_tests {
    ($factory:path) => {
        $crate::lifecycle_conformance_tests!(@cases $factory;
            archived_stream_refuses_appends_and_stays_readable,
            deleting_a_stream_removes_only_its_events,
            snapshots_are_deleted_by_stream_and_by_category,
            personal_values_are_sealed_and_forgotten,
            personal_values_without_a_subject_are_refused,
            repository_deletes_snapshots_and_archives,
        );
    };
    (@cases $factory:path; $($case:ident),* $(,)?) => {
        $(
            #[test]
            fn $case() {
                $crate::testing::run(async {
                    let store = $factory().await;
                    $crate::testing::lifecycle::$case(store).await;
                });
            }
        )*
    };
}

/// Expands to one `#[test]` per [`DecisionStore`](crate::DecisionStore) conformance case
/// ([`decision`]), each given a fresh store by `$factory`, as [`conformance_tests!`] does.
#[macro_export]
macro_rules! decision_conformance_tests {
    ($factory:path) => {
        $crate::decision_conformance_tests!(@cases $factory;
            multi_stream_append_is_all_or_nothing,
            multi_stream_retry_is_replayed,
            multi_stream_append_is_validated,
            query_reads_tagged_events_across_streams,
            condition_fails_on_a_matching_write_after_the_read,
            concurrent_decisions_keep_the_boundary,
            concurrent_registrations_take_a_name_once,
        );
    };
    (@cases $factory:path; $($case:ident),* $(,)?) => {
        $(
            #[test]
            fn $case() {
                $crate::testing::run(async {
                    let store = $factory().await;
                    $crate::testing::decision::$case(store).await;
                });
            }
        )*
    };
}
