//! Deadlines in the in-memory store: a map under a lock; a claim marks its deadlines held
//! until it finishes or is dropped.

use std::collections::{BTreeMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard};

use chrono::Utc;
use uuid::Uuid;

use crate::envelope::Version;
use crate::error::StoreError;
use crate::reaction::{Deadline, DeadlineState, DeadlineStore};
use crate::store::memory::MemoryStore;

/// The deadlines of a [`MemoryStore`], shared by its clones.
#[derive(Clone, Default)]
pub(crate) struct DeadlineTable(Arc<Mutex<Rows>>);

#[derive(Default)]
struct Rows {
    by_id: BTreeMap<Uuid, (Deadline, DeadlineState)>,
    /// Ids held by a live claim.
    claimed: HashSet<Uuid>,
}

impl DeadlineTable {
    fn lock(&self) -> MutexGuard<'_, Rows> {
        // Every change below is one map operation: a poisoned lock holds consistent data.
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// Deadlines claimed from a [`MemoryStore`]; dropping it releases them.
pub struct MemoryClaim {
    table: DeadlineTable,
    ids: Vec<Uuid>,
}

impl std::fmt::Debug for MemoryClaim {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryClaim")
            .field("ids", &self.ids)
            .finish()
    }
}

impl Drop for MemoryClaim {
    fn drop(&mut self) {
        let mut rows = self.table.lock();
        for id in &self.ids {
            rows.claimed.remove(id);
        }
    }
}

impl DeadlineStore for MemoryStore {
    type Claim = MemoryClaim;

    async fn schedule(&self, deadlines: &[Deadline]) -> Result<(), StoreError> {
        let mut rows = self.deadlines.lock();
        for deadline in deadlines {
            rows.by_id
                .entry(deadline.id)
                .or_insert_with(|| (deadline.clone(), DeadlineState::Pending));
        }
        Ok(())
    }

    async fn cancel_deadlines(
        &self,
        process: &str,
        instance: &str,
        before: Version,
    ) -> Result<u64, StoreError> {
        let mut rows = self.deadlines.lock();
        let Rows { by_id, claimed } = &mut *rows;
        let now = Utc::now();
        let mut cancelled = 0;
        for (id, (deadline, state)) in by_id.iter_mut() {
            // A claimed deadline is being fired (as PostgreSQL's SKIP LOCKED skips it).
            if *state == DeadlineState::Pending
                && !claimed.contains(id)
                && deadline.process == process
                && deadline.instance == instance
                && deadline.scheduled_by < before
            {
                *state = DeadlineState::Cancelled { at: now };
                cancelled += 1;
            }
        }
        Ok(cancelled)
    }

    async fn claim_due(
        &self,
        process: &str,
        max: usize,
    ) -> Result<(MemoryClaim, Vec<Deadline>), StoreError> {
        let mut rows = self.deadlines.lock();
        let now = Utc::now();
        let mut due: Vec<Deadline> = rows
            .by_id
            .iter()
            .filter(|(id, (deadline, state))| {
                *state == DeadlineState::Pending
                    && deadline.process == process
                    && deadline.due_at <= now
                    && !rows.claimed.contains(id)
            })
            .map(|(_, (deadline, _))| deadline.clone())
            .collect();
        due.sort_by(|a, b| a.due_at.cmp(&b.due_at).then(a.id.cmp(&b.id)));
        due.truncate(max);
        let ids: Vec<Uuid> = due.iter().map(|deadline| deadline.id).collect();
        rows.claimed.extend(ids.iter().copied());
        drop(rows);
        let claim = MemoryClaim {
            table: self.deadlines.clone(),
            ids,
        };
        Ok((claim, due))
    }

    async fn mark_fired(
        &self,
        claim: &mut MemoryClaim,
        id: Uuid,
        outcome: &str,
    ) -> Result<(), StoreError> {
        if !claim.ids.contains(&id) {
            return Err(StoreError::backend(
                format!("marking deadline {id} fired"),
                "the deadline is not held by this claim",
            ));
        }
        let mut rows = self.deadlines.lock();
        if let Some((_, state)) = rows.by_id.get_mut(&id) {
            *state = DeadlineState::Fired {
                at: Utc::now(),
                outcome: outcome.to_owned(),
            };
        }
        Ok(())
    }

    async fn finish(&self, claim: MemoryClaim) -> Result<(), StoreError> {
        drop(claim);
        Ok(())
    }

    async fn deadlines(&self, process: &str) -> Result<Vec<(Deadline, DeadlineState)>, StoreError> {
        let rows = self.deadlines.lock();
        let mut all: Vec<(Deadline, DeadlineState)> = rows
            .by_id
            .values()
            .filter(|(deadline, _)| deadline.process == process)
            .cloned()
            .collect();
        all.sort_by(|a, b| a.0.due_at.cmp(&b.0.due_at).then(a.0.id.cmp(&b.0.id)));
        Ok(all)
    }
}
