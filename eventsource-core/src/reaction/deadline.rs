//! Deadlines: a process manager's messages to its future self, stored until due and fired
//! once by a [`DeadlineRunner`].

use std::future::Future;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use uuid::Uuid;

use crate::envelope::Version;
use crate::error::StoreError;
use crate::limits::bounded;
use crate::store::EventStore;

use super::dispatch::Dispatcher;
use super::process::{ProcessManager, Step, StepOutcome};
use super::{ReactionError, Trigger};

/// A scheduled deadline: `payload` (the manager's [`ProcessManager::Deadline`] as JSON) comes
/// back to the instance at `due_at`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Deadline {
    /// Derived from the process, the instance, the scheduling trigger and the deadline's
    /// index, so scheduling it again is a no-op; also the trigger id of the step that handles
    /// it (its commands' idempotency keys derive from it).
    pub id: Uuid,
    /// The process manager's name.
    pub process: String,
    /// The instance.
    pub instance: String,
    /// When it is due.
    pub due_at: DateTime<Utc>,
    /// What it carries.
    pub payload: Value,
    /// The conversation it belongs to.
    pub correlation_id: Option<Uuid>,
    /// The trigger (event or deadline) whose step scheduled it.
    pub causation_id: Uuid,
    /// The version of that step in the instance's stream: cancelling from a later step
    /// cancels only deadlines scheduled before it.
    pub scheduled_by: Version,
}

/// Where a stored deadline stands.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DeadlineState {
    /// Not yet fired.
    Pending,
    /// Fired (handled by the manager) at this time, with what came of it.
    Fired {
        /// When it was marked fired.
        at: DateTime<Utc>,
        /// `"stepped"`, `"repeated"`, `"instance completed"`, or `"failed: …"`.
        outcome: String,
    },
    /// Cancelled before it fired.
    Cancelled {
        /// When.
        at: DateTime<Utc>,
    },
}

/// Where deadlines are kept: a table in PostgreSQL, a map in the [`MemoryStore`](crate::MemoryStore).
///
/// Every deadline fires once: [`claim_due`](Self::claim_due) takes due deadlines that no other
/// claim holds, the runner handles each (idempotently), marks it fired within the claim, and
/// [`finish`](Self::finish) commits the marks and releases the claim. A claim dropped without
/// `finish` (a crash) releases its deadlines unmarked, and they are claimed again.
pub trait DeadlineStore: Send + Sync + 'static {
    /// Holds claimed deadlines (a transaction with row locks in PostgreSQL).
    type Claim: Send;

    /// Stores `deadlines`; one whose id is stored already is left as it is (pending, fired
    /// or cancelled), so scheduling again is a no-op.
    fn schedule(
        &self,
        deadlines: &[Deadline],
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Cancels the pending deadlines of `instance` of `process` scheduled by a step before
    /// version `before`, except those a claim holds (they are being fired: the runner marks
    /// them, or leaves them pending after a transient failure, and a later firing finds the
    /// instance's state); returns how many. Never waits for a claim.
    fn cancel_deadlines(
        &self,
        process: &str,
        instance: &str,
        before: Version,
    ) -> impl Future<Output = Result<u64, StoreError>> + Send;

    /// Claims up to `max` pending deadlines of `process` that are due (by the store's clock)
    /// and not held by another claim, earliest first.
    fn claim_due(
        &self,
        process: &str,
        max: usize,
    ) -> impl Future<Output = Result<(Self::Claim, Vec<Deadline>), StoreError>> + Send;

    /// Marks the claimed deadline `id` fired with `outcome` (kept when the claim finishes).
    fn mark_fired(
        &self,
        claim: &mut Self::Claim,
        id: Uuid,
        outcome: &str,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Commits the claim's marks and releases its deadlines.
    fn finish(&self, claim: Self::Claim) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Every deadline of `process` with its state, by due time (for operators and tests).
    fn deadlines(
        &self,
        process: &str,
    ) -> impl Future<Output = Result<Vec<(Deadline, DeadlineState)>, StoreError>> + Send;
}

/// What one pass of [`DeadlineRunner::fire_due`] did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Fired {
    /// Deadlines claimed.
    pub claimed: usize,
    /// Handled and marked fired.
    pub fired: usize,
    /// Failed for good: marked fired with the error (logged).
    pub failed: usize,
    /// Failed transiently: left pending for the next pass.
    pub retry: usize,
}

/// Fires the due deadlines of one [`ProcessManager`]: each goes to
/// [`ProcessManager::on_deadline`] on the instance's current state, as one step of the
/// instance (stored, then its commands sent with keys derived from the deadline's id).
///
/// Any number of runners (threads, processes) may run for one manager: each deadline is
/// claimed by one at a time, and a deadline claimed again after a crash repeats its step
/// without repeating its effects. A deadline that came due while no runner ran fires on the
/// next pass.
///
/// On PostgreSQL a pass holds one connection for its claim and takes another for each step:
/// give each runner's pool at least two.
pub struct DeadlineRunner<P, S> {
    process: P,
    store: S,
    dispatcher: Dispatcher,
    batch_size: usize,
    poll_interval: Duration,
}

impl<P: ProcessManager, S> std::fmt::Debug for DeadlineRunner<P, S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeadlineRunner")
            .field("process", &P::NAME)
            .field("batch_size", &self.batch_size)
            .field("poll_interval", &self.poll_interval)
            .finish()
    }
}

impl<P, S> DeadlineRunner<P, S>
where
    P: ProcessManager,
    S: EventStore + DeadlineStore,
{
    /// A runner of `process`'s deadlines kept in `store`, sending commands through
    /// `dispatcher`; it claims up to 100 deadlines per pass and looks for due ones every
    /// second.
    pub fn new(process: P, store: S, dispatcher: Dispatcher) -> Self {
        DeadlineRunner {
            process,
            store,
            dispatcher,
            batch_size: 100,
            poll_interval: Duration::from_secs(1),
        }
    }

    /// Deadlines claimed per pass (at least 1).
    #[must_use]
    pub fn batch_size(mut self, batch_size: usize) -> Self {
        self.batch_size = batch_size.max(1);
        self
    }

    /// How often [`run`](Self::run) looks for due deadlines (a deadline fires up to this late;
    /// default 1 s, at least 10 ms: zero would query the store in a busy loop).
    #[must_use]
    pub fn poll_interval(mut self, interval: Duration) -> Self {
        self.poll_interval = interval.max(Duration::from_millis(10));
        self
    }

    /// Claims the due deadlines once and fires them.
    ///
    /// A deadline whose step fails for good (its payload no longer decodes, a command has no
    /// route) is marked fired with the error, logged, and counted in [`Fired::failed`]; one
    /// that fails transiently stays pending. The error is the store's, claiming or marking.
    pub async fn fire_due(&self) -> Result<Fired, StoreError> {
        let (mut claim, due) = self.store.claim_due(P::NAME, self.batch_size).await?;
        let mut fired = Fired {
            claimed: due.len(),
            ..Fired::default()
        };
        for deadline in &due {
            let outcome = match self.fire(deadline).await {
                Ok(outcome) => {
                    fired.fired += 1;
                    match outcome {
                        StepOutcome::Stepped => "stepped".to_owned(),
                        StepOutcome::Repeated => "repeated".to_owned(),
                        StepOutcome::Completed => "instance completed".to_owned(),
                    }
                }
                Err(error) if error.is_transient() => {
                    tracing::warn!(
                        process = P::NAME,
                        deadline = %deadline.id,
                        error = %error,
                        "deadline failed transiently; it stays pending"
                    );
                    fired.retry += 1;
                    continue;
                }
                Err(error) => {
                    tracing::error!(
                        process = P::NAME,
                        deadline = %deadline.id,
                        error = %error,
                        "deadline failed; marked fired with its error"
                    );
                    fired.failed += 1;
                    format!("failed: {}", bounded(&error.to_string()))
                }
            };
            self.store
                .mark_fired(&mut claim, deadline.id, &outcome)
                .await?;
        }
        self.store.finish(claim).await?;
        Ok(fired)
    }

    /// Fires due deadlines until `shutdown` completes, looking every
    /// [`poll_interval`](Self::poll_interval) (at once again after a full batch). Transient
    /// store failures are retried after the poll interval; others end the run.
    pub async fn run(&self, shutdown: impl Future<Output = ()> + Send) -> Result<(), StoreError> {
        let mut shutdown = std::pin::pin!(shutdown);
        loop {
            let wait = match self.fire_due().await {
                Ok(fired) if fired.claimed >= self.batch_size && fired.retry == 0 => Duration::ZERO,
                Ok(_) => self.poll_interval,
                Err(error) if error.is_transient() => {
                    tracing::warn!(process = P::NAME, error = %error, "deadline runner: store unavailable; retrying");
                    self.poll_interval
                }
                Err(error) => return Err(error),
            };
            tokio::select! {
                () = shutdown.as_mut() => return Ok(()),
                () = tokio::time::sleep(wait) => {}
            }
        }
    }

    async fn fire(&self, deadline: &Deadline) -> Result<StepOutcome, ReactionError> {
        let trigger = Trigger::deadline(deadline);
        let step = Step {
            process: &self.process,
            store: &self.store,
            dispatcher: &self.dispatcher,
            instance: &deadline.instance,
            trigger: &trigger,
        };
        step.run(|process, state| {
            let payload = serde_json::from_value(deadline.payload.clone()).map_err(|source| {
                ReactionError::Serde {
                    process: P::NAME,
                    instance: deadline.instance.clone(),
                    what: format!("deadline {} does not decode", deadline.id),
                    source,
                }
            })?;
            Ok(process.on_deadline(state, payload))
        })
        .await
    }
}
