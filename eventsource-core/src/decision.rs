//! Decision models: aggregates without a stream. The state is the fold of the events a
//! command's query selects across streams (its consistency boundary), and the command's events
//! are appended on the condition that nothing in the boundary changed meanwhile.
//!
//! A decision model is an ordinary [`Aggregate`] (`#[derive(Aggregate)]` with its events,
//! commands, `Apply` and `Handle` impls, and the given/when/then harness), plus the boundary
//! of each command: `#[aggregate(..., decision)]` implements [`Decision`] from one
//! [`ConsistencyBoundary`] impl per command. [`Decisions`] runs them on a [`DecisionStore`].

use std::fmt;
use std::marker::PhantomData;

use crate::aggregate::Aggregate;
use crate::command::CommandMetadata;
use crate::envelope::{ExpectedVersion, StreamId};
use crate::error::{DecodeError, EncodeError, StoreError};
use crate::event::EventEnum;
use crate::repository::decode_event;
use crate::store::{Appended, DecisionStore, Query, QueryItem, ReadPosition, StreamAppend};

/// Where a command's decision looks and writes: the query of the facts it depends on, and
/// the stream its events are appended to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Boundary {
    /// The facts the decision depends on. Items that name no events select the decision
    /// model's own events (its `Event::NAMES`).
    pub query: Query,
    /// The stream the command's events go to (appended at any version: the query's condition
    /// is what keeps the decision consistent).
    pub stream: StreamId,
}

impl Boundary {
    /// The boundary `query`, writing to `stream`.
    pub fn new(stream: StreamId, query: Query) -> Self {
        Boundary { query, stream }
    }
}

/// A decision model: an [`Aggregate`] loaded from a query across streams instead of one
/// stream. `#[aggregate(..., decision)]` implements it from the commands'
/// [`ConsistencyBoundary`] impls.
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not a decision model",
    label = "`{Self}` does not implement `Decision`",
    note = "add the `decision` flag to its aggregate attribute, `#[aggregate(..., decision)]`, and implement `ConsistencyBoundary<C>` for each of its commands"
)]
pub trait Decision: Aggregate {
    /// The boundary of `command`.
    fn command_boundary(command: &Self::Command) -> Boundary;
}

/// The consistency boundary of one command type of a decision model: what
/// `#[aggregate(..., decision)]` dispatches each listed command to.
#[diagnostic::on_unimplemented(
    message = "`{Self}` does not say the boundary of the command `{C}`",
    label = "`{C}` is a command of the decision model `{Self}`, which has no `ConsistencyBoundary<{C}>` impl",
    note = "name the facts it depends on and where its events go: `impl ConsistencyBoundary<{C}> for {Self} {{ fn boundary(command: &{C}) -> Boundary {{ Boundary::new(stream, Query::new().item(QueryItem::tagged([Tag::new(\"key\", &command.id)]))) }} }}`"
)]
pub trait ConsistencyBoundary<C>: Aggregate {
    /// The boundary of `command`.
    fn boundary(command: &C) -> Boundary;
}

/// What an executed decision did.
#[derive(Clone, Debug)]
pub struct Decided<D: Aggregate> {
    /// Where the events went.
    pub stream_id: StreamId,
    /// The events the command produced, in order (empty if it changed nothing).
    pub events: Vec<D::Event>,
    /// What the append wrote (`None` when the command produced no events).
    pub appended: Option<Appended>,
    /// The state after the command: the boundary's facts and the new events.
    pub state: D,
    /// How many times the command was decided (more than 1 after the boundary changed).
    pub attempts: u32,
}

/// Why a decision failed.
#[derive(Debug, thiserror::Error)]
pub enum DecideError<E: std::error::Error + 'static> {
    /// The decision model rejected the command.
    #[error("command rejected by the decision `{decision}` (events to `{stream}`): {source}")]
    Rejected {
        /// The decision model's name.
        decision: &'static str,
        /// The stream the events would have gone to.
        stream: StreamId,
        /// The decision model's error.
        #[source]
        source: E,
    },
    /// Other writers kept changing the boundary; the attempts allowed were used up.
    #[error(
        "the boundary of the decision `{decision}` (events to `{stream}`) changed under the command {attempts} time(s) in a row; gave up (allow more with `Decisions::attempts`)"
    )]
    Conflict {
        /// The decision model's name.
        decision: &'static str,
        /// The stream the events would have gone to.
        stream: StreamId,
        /// How many times the command was decided.
        attempts: u32,
    },
    /// A fact of the boundary could not be decoded.
    #[error(transparent)]
    Decode(#[from] DecodeError),
    /// An event could not be encoded.
    #[error(transparent)]
    Encode(#[from] EncodeError),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The default of [`Decisions::attempts`].
const DEFAULT_ATTEMPTS: u32 = 10;

/// Runs the commands of decision model `D` on store `S`: read the boundary, fold, decide,
/// append on the condition that the boundary did not change, and decide again if it did.
///
/// ```ignore
/// let enrolments = Decisions::<Enrolment, _>::new(store);
/// enrolments.execute(Enrol { student: "ada".into(), course: "c1".into() }).await?;
/// ```
pub struct Decisions<D: Aggregate, S> {
    store: S,
    services: D::Services,
    attempts: u32,
    _decision: PhantomData<fn() -> D>,
}

impl<D: Aggregate, S: fmt::Debug> fmt::Debug for Decisions<D, S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Decisions")
            .field("decision", &D::NAME)
            .field("store", &self.store)
            .field("attempts", &self.attempts)
            .finish()
    }
}

impl<D: Decision<Services = ()>, S: DecisionStore> Decisions<D, S> {
    /// Decisions of `D` on `store`.
    pub fn new(store: S) -> Self {
        Decisions::with_services(store, ())
    }
}

impl<D: Decision, S: DecisionStore> Decisions<D, S> {
    /// Decisions of `D` on `store`, whose handlers receive `services`.
    pub fn with_services(store: S, services: D::Services) -> Self {
        Decisions {
            store,
            services,
            attempts: DEFAULT_ATTEMPTS,
            _decision: PhantomData,
        }
    }

    /// Decides a command at most `attempts` times (at least 1; default 10) when its boundary
    /// keeps changing.
    #[must_use]
    pub fn attempts(mut self, attempts: u32) -> Self {
        self.attempts = attempts.max(1);
        self
    }

    /// The store.
    pub fn store(&self) -> &S {
        &self.store
    }

    /// The state folded from the facts `query` selects (items naming no events select `D`'s),
    /// and the position the read saw.
    pub async fn load(&self, query: &Query) -> Result<(D, ReadPosition), DecideError<D::Error>> {
        let read = self.store.read_query(&own_events::<D>(query)).await?;
        let mut state = D::default();
        for record in &read.events {
            state.evolve(&decode_event::<D>(record)?);
        }
        Ok((state, read.position))
    }

    /// Executes `command`.
    pub async fn execute(
        &self,
        command: impl Into<D::Command>,
    ) -> Result<Decided<D>, DecideError<D::Error>>
    where
        D::Command: Clone,
    {
        self.execute_with(command, CommandMetadata::new()).await
    }

    /// Executes `command` with metadata (correlation and causation ids onto its events).
    ///
    /// An idempotency key gives the events ids derived from the key and the stream, so an
    /// append retried after a lost acknowledgement is recognised by the store; but unlike
    /// [`Repository::execute_with`](crate::Repository::execute_with), a repeat that arrives
    /// after the first execution is decided again on the state that includes it.
    pub async fn execute_with(
        &self,
        command: impl Into<D::Command>,
        metadata: CommandMetadata,
    ) -> Result<Decided<D>, DecideError<D::Error>>
    where
        D::Command: Clone,
    {
        let command = command.into();
        let boundary = D::command_boundary(&command);
        let query = own_events::<D>(&boundary.query);
        let fingerprint = D::command_fingerprint(&command);
        let mut attempts = 0;
        loop {
            attempts += 1;
            let read = self.store.read_query(&query).await?;
            let mut state = D::default();
            for record in &read.events {
                state.evolve(&decode_event::<D>(record)?);
            }
            let events = state
                .decide(command.clone(), &self.services)
                .map_err(|source| DecideError::Rejected {
                    decision: D::NAME,
                    stream: boundary.stream.clone(),
                    source,
                })?
                .into_vec();
            if events.is_empty() {
                return Ok(Decided {
                    stream_id: boundary.stream,
                    events,
                    appended: None,
                    state,
                    attempts,
                });
            }
            let batch = crate::repository::encode_batch::<D>(
                &boundary.stream,
                &events,
                &metadata,
                fingerprint.as_ref(),
                self.store.seals_personal_data(),
            )?;
            let append = StreamAppend::new(boundary.stream.clone(), ExpectedVersion::Any, batch);
            match self
                .store
                .append_streams(vec![append], Some(read.condition(query.clone())))
                .await
            {
                Ok(mut written) => {
                    for event in &events {
                        state.evolve(event);
                    }
                    return Ok(Decided {
                        stream_id: boundary.stream,
                        events,
                        appended: written.pop(),
                        state,
                        attempts,
                    });
                }
                Err(StoreError::ConditionFailed { .. }) if attempts < self.attempts => {}
                Err(StoreError::ConditionFailed { .. }) => {
                    return Err(DecideError::Conflict {
                        decision: D::NAME,
                        stream: boundary.stream,
                        attempts,
                    });
                }
                Err(other) => return Err(other.into()),
            }
        }
    }
}

/// `query` with every item that names no events restricted to `D`'s: the facts a decision
/// model can fold.
fn own_events<D: Aggregate>(query: &Query) -> Query {
    query.items().iter().fold(Query::new(), |restricted, item| {
        let item = if item.names().is_empty() {
            QueryItem::tagged(item.tags().iter().cloned()).named(D::Event::NAMES.iter().copied())
        } else {
            item.clone()
        };
        restricted.item(item)
    })
}
