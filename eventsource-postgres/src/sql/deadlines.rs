//! The statements of the `deadlines` table (migration 8), used by `deadline.rs`.

use super::Statement;

/// The columns `deadline::decode` reads.
const COLUMNS: &str = "id, process, instance, due_at, payload, correlation_id, causation_id, \
     scheduled_by, fired_at, outcome, cancelled_at";

/// The deadline statements of one store.
#[derive(Debug)]
pub(crate) struct DeadlineStatements {
    /// Inserts the deadlines of the arrays `$1` ids, `$2` processes, `$3` instances, `$4` due
    /// times, `$5` payloads, `$6` correlation ids, `$7` causation ids, `$8` scheduling
    /// versions; an id stored already is left as it is.
    pub(crate) schedule: Statement,
    /// Cancels the pending deadlines of process `$1`, instance `$2`, scheduled before version
    /// `$3`, except those a runner holds (it is firing them).
    pub(crate) cancel: Statement,
    /// Locks up to `$2` due pending deadlines of `$1` that no other transaction holds.
    pub(crate) claim_due: Statement,
    /// Marks `$1` fired with outcome `$2`.
    pub(crate) mark_fired: Statement,
    /// Every deadline of `$1`, by due time.
    pub(crate) list: Statement,
}

impl DeadlineStatements {
    pub(crate) fn new(s: &str) -> Self {
        let table = format!("{s}.deadlines");
        let pending = "fired_at IS NULL AND cancelled_at IS NULL";
        DeadlineStatements {
            schedule: format!(
                "INSERT INTO {table} (id, process, instance, due_at, payload, correlation_id, \
                                      causation_id, scheduled_by) \
                 SELECT * FROM UNNEST($1::uuid[], $2::text[], $3::text[], $4::timestamptz[], \
                                      $5::jsonb[], $6::uuid[], $7::uuid[], $8::bigint[]) \
                 ON CONFLICT (id) DO NOTHING"
            )
            .into(),
            // SKIP LOCKED: a deadline a runner holds is being fired; waiting for its lock
            // would deadlock when the firing step itself completes the instance.
            cancel: format!(
                "UPDATE {table} SET cancelled_at = now() \
                  WHERE id IN (SELECT id FROM {table} \
                                WHERE process = $1 AND instance = $2 AND scheduled_by < $3 \
                                  AND {pending} FOR UPDATE SKIP LOCKED)"
            )
            .into(),
            claim_due: format!(
                "SELECT {COLUMNS} FROM {table} \
                  WHERE process = $1 AND {pending} AND due_at <= now() \
                  ORDER BY due_at, id LIMIT $2 FOR UPDATE SKIP LOCKED"
            )
            .into(),
            mark_fired: format!(
                "UPDATE {table} SET fired_at = now(), outcome = $2 WHERE id = $1 AND {pending}"
            )
            .into(),
            list: format!("SELECT {COLUMNS} FROM {table} WHERE process = $1 ORDER BY due_at, id")
                .into(),
        }
    }
}
