//! The statements of the admin API (`admin.rs`, `verify.rs`).

use super::{ByFilter, Statement, offset};

/// Whether schema `$1` exists.
pub(crate) const SCHEMA_EXISTS: &str =
    "SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_namespace WHERE nspname = $1)";

/// The tables of schema `$1`.
pub(crate) const SCHEMA_TABLES: &str =
    "SELECT tablename::text FROM pg_catalog.pg_tables WHERE schemaname = $1";

/// The user triggers on table `events` of schema `$1` and whether they fire (`O`rigin or
/// `A`lways; `D`isabled, `R`eplica only).
pub(crate) const EVENT_TRIGGERS: &str = "SELECT t.tgname::text AS name, t.tgenabled::text AS enabled \
       FROM pg_catalog.pg_trigger t \
       JOIN pg_catalog.pg_class c ON c.oid = t.tgrelid \
       JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace \
      WHERE n.nspname = $1 AND c.relname = 'events' AND NOT t.tgisinternal";

/// The statements of the admin API and its integrity checks.
#[derive(Debug)]
pub(crate) struct AdminStatements {
    /// `events`, `streams`, `last_recorded_at`.
    pub(crate) counts: Statement,
    /// Every checkpoint with how many events follow it, by projection name.
    pub(crate) checkpoints: Statement,
    /// How many events passing the filter follow (`$1` transaction, `$2` position).
    pub(crate) count_after: ByFilter,
    /// The oldest transaction with an event at or after position `$1`, and the horizon.
    pub(crate) first_transaction_from: Statement,
    /// A page of events in (stream, version) order after (`$1` stream, `$2` version), `$3`
    /// rows, with what the checks look at.
    pub(crate) scan_page: Statement,
    /// Stream heads without events.
    pub(crate) heads_without_events: Statement,
    /// Positions held by several events, with (a few of) their holders.
    pub(crate) repeated_positions: Statement,
    /// Event ids stored several times, with (a few of) their holders.
    pub(crate) repeated_event_ids: Statement,
    /// Every checkpoint with the head of the log.
    pub(crate) checkpoints_and_head: Statement,
    /// The newest logical transaction id in the events and checkpoints, and the next one the
    /// cluster would give (NULL when the offset row is missing).
    pub(crate) transaction_ids: Statement,
}

impl AdminStatements {
    pub(super) fn new(s: &str) -> Self {
        // At most this many holders are named in a finding about a repeated position or id.
        let holders = "array_to_string((array_agg(stream_id || ' v' || version \
                        ORDER BY stream_id, version))[1:5], ', ')";
        AdminStatements {
            counts: format!(
                "SELECT (SELECT count(*) FROM {s}.events) AS events, \
                        (SELECT count(*) FROM {s}.streams) AS streams, \
                        (SELECT max(recorded_at) FROM {s}.events) AS last_recorded_at"
            )
            .into(),
            checkpoints: format!(
                "SELECT c.projection, c.transaction_id, c.position, c.updated_at, \
                        (SELECT count(*) FROM {s}.events e \
                          WHERE (e.transaction_id, e.position) \
                              > (c.transaction_id, c.position)) AS behind \
                   FROM {s}.checkpoints c ORDER BY c.projection"
            )
            .into(),
            count_after: ByFilter::new(2, |filter, _| {
                format!(
                    "SELECT count(*) FROM {s}.events e \
                      WHERE (e.transaction_id, e.position) > ($1::bigint, $2){}",
                    filter.replace("{t}", "e")
                )
            }),
            // One statement, one snapshot: every transaction older than the snapshot's horizon
            // has ended, so its events are visible; a younger one may still commit an event at
            // or after `$1`.
            first_transaction_from: format!(
                "SELECT (SELECT transaction_id FROM {s}.events WHERE position >= $1 \
                          ORDER BY transaction_id LIMIT 1) AS oldest, \
                        pg_snapshot_xmin(pg_current_snapshot())::text::bigint + {offset} \
                            AS horizon",
                offset = offset(s)
            )
            .into(),
            scan_page: format!(
                "SELECT e.stream_id, e.version, e.position, e.name, e.schema_version, \
                        jsonb_typeof(e.payload) AS payload_type, e.metadata, h.version AS head \
                   FROM {s}.events e LEFT JOIN {s}.streams h ON h.stream_id = e.stream_id \
                  WHERE (e.stream_id, e.version) > ($1, $2) \
                  ORDER BY e.stream_id, e.version LIMIT $3"
            )
            .into(),
            heads_without_events: format!(
                "SELECT h.stream_id, h.version FROM {s}.streams h \
                  WHERE NOT EXISTS (SELECT 1 FROM {s}.events e WHERE e.stream_id = h.stream_id) \
                  ORDER BY h.stream_id"
            )
            .into(),
            repeated_positions: format!(
                "SELECT position, count(*), {holders} FROM {s}.events \
                  GROUP BY position HAVING count(*) > 1 ORDER BY position"
            )
            .into(),
            repeated_event_ids: format!(
                "SELECT event_id::text, count(*), {holders} FROM {s}.events \
                  GROUP BY event_id HAVING count(*) > 1 ORDER BY event_id"
            )
            .into(),
            checkpoints_and_head: format!(
                "SELECT c.projection, c.transaction_id, c.position, \
                        (SELECT coalesce(max(position), 0) FROM {s}.events) AS head \
                   FROM {s}.checkpoints c ORDER BY c.projection"
            )
            .into(),
            transaction_ids: format!(
                "SELECT (SELECT max(transaction_id) FROM {s}.events) AS events, \
                        (SELECT max(transaction_id) FROM {s}.checkpoints) AS checkpoints, \
                        pg_snapshot_xmax(pg_current_snapshot())::text::bigint + {offset} AS next",
                offset = offset(s)
            )
            .into(),
        }
    }
}
