//! Deadlines in PostgreSQL: the `deadlines` table (migration 8). A claim is a transaction that
//! holds the claimed rows locked (`FOR UPDATE SKIP LOCKED`): concurrent runners take disjoint
//! rows, the fired marks commit with the claim, and a runner that dies releases its rows
//! unmarked (the server rolls its transaction back), so they are claimed again.

use eventsource_core::{Deadline, DeadlineState, DeadlineStore, StoreError, Version};
use serde_json::Value;
use sqlx::Row;
use sqlx::postgres::PgRow;
use uuid::Uuid;

use crate::checkpoint::PostgresTx;
use crate::error::excerpt;
use crate::row::Timestamp;
use crate::sql::bigint;
use crate::store::PostgresStore;

/// Deadlines claimed from a [`PostgresStore`]: the transaction holding their rows locked.
/// Dropping it rolls back (releases them unmarked).
pub struct PostgresClaim {
    tx: PostgresTx,
    ids: Vec<Uuid>,
}

impl std::fmt::Debug for PostgresClaim {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresClaim")
            .field("ids", &self.ids)
            .finish()
    }
}

impl DeadlineStore for PostgresStore {
    type Claim = PostgresClaim;

    async fn schedule(&self, deadlines: &[Deadline]) -> Result<(), StoreError> {
        if deadlines.is_empty() {
            return Ok(());
        }
        let mut ids = Vec::with_capacity(deadlines.len());
        let mut processes = Vec::with_capacity(deadlines.len());
        let mut instances = Vec::with_capacity(deadlines.len());
        let mut due = Vec::with_capacity(deadlines.len());
        let mut payloads = Vec::with_capacity(deadlines.len());
        let mut correlations = Vec::with_capacity(deadlines.len());
        let mut causations = Vec::with_capacity(deadlines.len());
        let mut versions = Vec::with_capacity(deadlines.len());
        for deadline in deadlines {
            ids.push(deadline.id);
            processes.push(deadline.process.as_str());
            instances.push(deadline.instance.as_str());
            due.push(deadline.due_at);
            payloads.push(sqlx::types::Json(&deadline.payload));
            correlations.push(deadline.correlation_id);
            causations.push(deadline.causation_id);
            versions.push(bigint(deadline.scheduled_by.0));
        }
        self.sql()
            .deadlines
            .schedule
            .query()
            .bind(ids)
            .bind(processes)
            .bind(instances)
            .bind(due)
            .bind(payloads)
            .bind(correlations)
            .bind(causations)
            .bind(versions)
            .execute(self.pool())
            .await
            .map_err(self.failed(format!(
                "scheduling {} deadline(s) of process `{}`",
                deadlines.len(),
                excerpt(&deadlines[0].process)
            )))?;
        Ok(())
    }

    async fn cancel_deadlines(
        &self,
        process: &str,
        instance: &str,
        before: Version,
    ) -> Result<u64, StoreError> {
        let done = self
            .sql()
            .deadlines
            .cancel
            .query()
            .bind(process)
            .bind(instance)
            .bind(bigint(before.0))
            .execute(self.pool())
            .await
            .map_err(self.failed(format!(
                "cancelling the deadlines of process `{}`, instance `{}`",
                excerpt(process),
                excerpt(instance)
            )))?;
        Ok(done.rows_affected())
    }

    async fn claim_due(
        &self,
        process: &str,
        max: usize,
    ) -> Result<(PostgresClaim, Vec<Deadline>), StoreError> {
        let what = || {
            format!(
                "claiming the due deadlines of process `{}`",
                excerpt(process)
            )
        };
        let mut tx = crate::begin::begin(self.pool())
            .await
            .map_err(self.failed(what()))?;
        let rows = self
            .sql()
            .deadlines
            .claim_due
            .query()
            .bind(process)
            .bind(bigint(max))
            .fetch_all(&mut *tx)
            .await
            .map_err(self.failed(what()))?;
        let mut due = Vec::with_capacity(rows.len());
        for row in &rows {
            due.push(decode(row)?.0);
        }
        let ids = due.iter().map(|deadline| deadline.id).collect();
        Ok((PostgresClaim { tx, ids }, due))
    }

    async fn mark_fired(
        &self,
        claim: &mut PostgresClaim,
        id: Uuid,
        outcome: &str,
    ) -> Result<(), StoreError> {
        if !claim.ids.contains(&id) {
            return Err(StoreError::backend(
                format!("marking deadline {id} fired"),
                "the deadline is not held by this claim",
            ));
        }
        self.sql()
            .deadlines
            .mark_fired
            .query()
            .bind(id)
            .bind(outcome)
            .execute(&mut *claim.tx)
            .await
            .map_err(self.failed(format!("marking deadline {id} fired")))?;
        Ok(())
    }

    async fn finish(&self, claim: PostgresClaim) -> Result<(), StoreError> {
        let count = claim.ids.len();
        claim
            .tx
            .commit()
            .await
            .map_err(self.failed(format!("committing a claim of {count} deadline(s)")))
    }

    async fn deadlines(&self, process: &str) -> Result<Vec<(Deadline, DeadlineState)>, StoreError> {
        let rows = self
            .sql()
            .deadlines
            .list
            .query()
            .bind(process)
            .fetch_all(self.pool())
            .await
            .map_err(self.failed(format!(
                "listing the deadlines of process `{}`",
                excerpt(process)
            )))?;
        rows.iter().map(decode).collect()
    }
}

/// A row selected with the deadline columns (`sql/deadlines.rs`).
fn decode(row: &PgRow) -> Result<(Deadline, DeadlineState), StoreError> {
    let id: Uuid = row
        .try_get("id")
        .map_err(|e| StoreError::backend("reading a deadline row: column `id`", e))?;
    let column_error = |column: &str, error: sqlx::Error| {
        StoreError::backend(format!("reading deadline {id}: column `{column}`"), error)
    };
    let process: String = row
        .try_get("process")
        .map_err(|e| column_error("process", e))?;
    let instance: String = row
        .try_get("instance")
        .map_err(|e| column_error("instance", e))?;
    let due_at = row
        .try_get::<Timestamp, _>("due_at")
        .map_err(|e| column_error("due_at", e))?
        .get();
    let payload: sqlx::types::Json<Value> = row
        .try_get("payload")
        .map_err(|e| column_error("payload", e))?;
    let correlation_id: Option<Uuid> = row
        .try_get("correlation_id")
        .map_err(|e| column_error("correlation_id", e))?;
    let causation_id: Uuid = row
        .try_get("causation_id")
        .map_err(|e| column_error("causation_id", e))?;
    let scheduled_by: i64 = row
        .try_get("scheduled_by")
        .map_err(|e| column_error("scheduled_by", e))?;
    let fired_at = row
        .try_get::<Option<Timestamp>, _>("fired_at")
        .map_err(|e| column_error("fired_at", e))?
        .map(Timestamp::get);
    let outcome: Option<String> = row
        .try_get("outcome")
        .map_err(|e| column_error("outcome", e))?;
    let cancelled_at = row
        .try_get::<Option<Timestamp>, _>("cancelled_at")
        .map_err(|e| column_error("cancelled_at", e))?
        .map(Timestamp::get);
    let state = match (fired_at, cancelled_at) {
        (Some(at), _) => DeadlineState::Fired {
            at,
            outcome: outcome.unwrap_or_default(),
        },
        (None, Some(at)) => DeadlineState::Cancelled { at },
        (None, None) => DeadlineState::Pending,
    };
    let deadline = Deadline {
        id,
        process,
        instance,
        due_at,
        payload: payload.0,
        correlation_id,
        causation_id,
        // The column's CHECK keeps it non-negative.
        scheduled_by: Version(u64::try_from(scheduled_by).unwrap_or(0)),
    };
    Ok((deadline, state))
}
