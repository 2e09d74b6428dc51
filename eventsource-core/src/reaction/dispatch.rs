//! Commands a reaction sends to aggregates: [`Dispatch`] (one command, type-erased so that
//! one reaction can address several aggregates) and the [`Dispatcher`] that routes it to the
//! aggregate's [`Repository`].

use std::any::Any;
use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use crate::aggregate::Aggregate;
use crate::command::CommandMetadata;
use crate::envelope::{StreamId, Version};
use crate::error::{BoxError, ExecuteError, StoreError};
use crate::limits::excerpt;
use crate::repository::Repository;
use crate::store::{EventStore, SnapshotStore};

/// One command for one aggregate, as a reaction emits it: `Dispatch::to::<Payment>(id, command)`.
///
/// Two dispatches are equal when they address the same aggregate and id with commands whose
/// `Debug` text is the same, which is what the reaction harness compares.
pub struct Dispatch {
    aggregate: &'static str,
    id: String,
    command: Box<dyn Any + Send>,
    text: String,
}

impl Dispatch {
    /// The command `command` for the aggregate `A` with id `id` (its stream is
    /// `<A::NAME>-<id>`).
    pub fn to<A>(id: impl fmt::Display, command: impl Into<A::Command>) -> Dispatch
    where
        A: Aggregate,
        A::Command: fmt::Debug,
    {
        let command: A::Command = command.into();
        Dispatch {
            aggregate: A::NAME,
            id: id.to_string(),
            text: format!("{command:?}"),
            command: Box::new(command),
        }
    }

    /// The addressed aggregate's name.
    pub fn aggregate(&self) -> &'static str {
        self.aggregate
    }

    /// The addressed aggregate's id.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The addressed stream: `<aggregate>-<id>`.
    pub fn stream_id(&self) -> StreamId {
        StreamId::new(self.aggregate, &self.id)
    }

    /// The command, if it is a command of `A`.
    pub fn command<A: Aggregate>(&self) -> Option<&A::Command> {
        if self.aggregate != A::NAME {
            return None;
        }
        self.command.downcast_ref()
    }

    /// The command's `Debug` text.
    pub fn command_text(&self) -> &str {
        &self.text
    }
}

impl fmt::Debug for Dispatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{} <- {}", self.aggregate, self.id, self.text)
    }
}

impl PartialEq for Dispatch {
    fn eq(&self, other: &Self) -> bool {
        self.aggregate == other.aggregate && self.id == other.id && self.text == other.text
    }
}

/// What a dispatched command did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Dispatched {
    /// The stream the command ran on.
    pub stream: StreamId,
    /// The stream's version after it.
    pub version: Version,
    /// True when its idempotency key had run before (a redelivery): nothing was written.
    pub replayed: bool,
}

/// Why a dispatched command was not executed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DispatchError {
    /// No repository of the addressed aggregate was given to the [`Dispatcher`].
    #[error(
        "no route for command {} to stream `{stream}`: add a repository of aggregate `{aggregate}` with `Dispatcher::route`",
        excerpt(command)
    )]
    NoRoute {
        /// The addressed aggregate.
        aggregate: &'static str,
        /// The addressed stream.
        stream: StreamId,
        /// The command's `Debug` text.
        command: String,
    },
    /// The aggregate rejected the command (a domain outcome: a reaction logs it and goes on).
    #[error("command {} rejected by `{stream}`: {source}", excerpt(command))]
    Rejected {
        /// The addressed stream.
        stream: StreamId,
        /// The command's `Debug` text.
        command: String,
        /// The aggregate's error.
        #[source]
        source: BoxError,
    },
    /// The command failed otherwise: the store, a conflict, a reused idempotency key, a load.
    #[error("command {} on `{stream}` failed: {source}", excerpt(command))]
    Failed {
        /// The addressed stream.
        stream: StreamId,
        /// The command's `Debug` text.
        command: String,
        /// Whether a retry may succeed (the store failed transiently).
        transient: bool,
        /// The repository's error.
        #[source]
        source: BoxError,
    },
}

impl DispatchError {
    /// Whether a retry may succeed: a transient store failure.
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            DispatchError::Failed {
                transient: true,
                ..
            }
        )
    }
}

type DispatchFuture<'a> =
    Pin<Box<dyn Future<Output = Result<Dispatched, DispatchError>> + Send + 'a>>;

/// One aggregate's repository behind a type-erased door.
trait Route: Send + Sync {
    fn execute(&self, dispatch: Dispatch, metadata: CommandMetadata) -> DispatchFuture<'_>;
}

struct RepositoryRoute<A: Aggregate, S>(Repository<A, S>);

impl<A, S> Route for RepositoryRoute<A, S>
where
    A: Aggregate,
    A::Command: Clone,
    S: EventStore + SnapshotStore,
{
    fn execute(&self, dispatch: Dispatch, metadata: CommandMetadata) -> DispatchFuture<'_> {
        Box::pin(async move {
            let Dispatch {
                id, command, text, ..
            } = dispatch;
            let stream = self.0.stream_id(&id);
            let command = match command.downcast::<A::Command>() {
                Ok(command) => *command,
                // `Dispatch::to::<A>` boxes an `A::Command` under `A::NAME`: another type here
                // means two aggregates share a name.
                Err(_) => {
                    return Err(DispatchError::Failed {
                        stream,
                        command: text,
                        transient: false,
                        source: format!(
                            "the command is not a command of the routed aggregate `{}` (two aggregates named alike?)",
                            A::NAME
                        )
                        .into(),
                    });
                }
            };
            match self.0.execute_with(&id, command, metadata).await {
                Ok(done) => Ok(Dispatched {
                    stream: done.stream_id,
                    version: done.version,
                    replayed: done.replayed,
                }),
                Err(ExecuteError::Rejected { source, .. }) => Err(DispatchError::Rejected {
                    stream,
                    command: text,
                    source: Box::new(source),
                }),
                Err(error) => {
                    let transient =
                        matches!(&error, ExecuteError::Store(StoreError::Transient { .. }))
                            || matches!(&error, ExecuteError::Load(load) if load_transient(load));
                    Err(DispatchError::Failed {
                        stream,
                        command: text,
                        transient,
                        source: Box::new(error),
                    })
                }
            }
        })
    }
}

fn load_transient(error: &crate::error::LoadError) -> bool {
    matches!(
        error,
        crate::error::LoadError::Store(StoreError::Transient { .. })
    )
}

/// Routes each [`Dispatch`] to the repository of its aggregate.
///
/// ```
/// # use eventsource_core::*;
/// # fn demo<A: Aggregate<Services = ()>>(store: MemoryStore) where A::Command: Clone {
/// let dispatcher = Dispatcher::new().route(Repository::<A, _>::new(store).retry_on_conflict(3));
/// # }
/// ```
#[derive(Clone, Default)]
pub struct Dispatcher {
    routes: HashMap<&'static str, Arc<dyn Route>>,
}

impl fmt::Debug for Dispatcher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut names: Vec<_> = self.routes.keys().collect();
        names.sort();
        f.debug_struct("Dispatcher")
            .field("routes", &names)
            .finish()
    }
}

impl Dispatcher {
    /// A dispatcher without routes.
    pub fn new() -> Self {
        Dispatcher::default()
    }

    /// Sends the commands of aggregate `A` to `repository` (replacing an earlier route of `A`).
    /// Give the repository conflict retries (`retry_on_conflict`): a reaction's command races
    /// the aggregate's other writers.
    #[must_use]
    pub fn route<A, S>(mut self, repository: Repository<A, S>) -> Self
    where
        A: Aggregate,
        A::Command: Clone,
        S: EventStore + SnapshotStore,
    {
        self.routes
            .insert(A::NAME, Arc::new(RepositoryRoute(repository)));
        self
    }

    /// Whether commands of the aggregate named `aggregate` have a route.
    pub fn routes(&self, aggregate: &str) -> bool {
        self.routes.contains_key(aggregate)
    }

    /// Executes `dispatch` with `metadata` on its aggregate's repository.
    pub async fn execute(
        &self,
        dispatch: Dispatch,
        metadata: CommandMetadata,
    ) -> Result<Dispatched, DispatchError> {
        match self.routes.get(dispatch.aggregate) {
            Some(route) => route.execute(dispatch, metadata).await,
            None => Err(DispatchError::NoRoute {
                aggregate: dispatch.aggregate,
                stream: dispatch.stream_id(),
                command: dispatch.text,
            }),
        }
    }
}
