//! The domain of the reaction tests: orders, a tally that accepts every count (so that a
//! command run twice shows as two events), a policy and a process manager with a deadline.
#![allow(dead_code, unreachable_pub, clippy::expect_used, clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::time::Duration;

use eventsource::prelude::*;
use eventsource::{Dispatch, DispatchError, Reactions};

/// An order was placed.
#[derive(Event, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[event(name = "order.placed")]
pub struct OrderPlaced {
    pub order: String,
}

/// An order was cancelled.
#[derive(Event, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[event(name = "order.cancelled")]
pub struct OrderCancelled {
    pub order: String,
}

#[derive(Clone, Debug, PartialEq)]
pub struct PlaceOrder {
    pub order: String,
}

#[derive(Clone, Debug, PartialEq)]
pub struct CancelOrder;

#[derive(Debug, PartialEq, thiserror::Error)]
pub enum OrderError {
    #[error("the order exists")]
    Exists,
    #[error("the order is not open")]
    NotOpen,
}

#[derive(Aggregate, Default, Serialize, Deserialize, Clone, Debug)]
#[aggregate(
    name = "order",
    error = OrderError,
    events(OrderPlaced, OrderCancelled),
    commands(PlaceOrder, CancelOrder)
)]
pub struct Order {
    pub id: Option<String>,
    pub cancelled: bool,
}

impl Apply<OrderPlaced> for Order {
    fn apply(&mut self, event: &OrderPlaced) {
        self.id = Some(event.order.clone());
    }
}

impl Apply<OrderCancelled> for Order {
    fn apply(&mut self, _: &OrderCancelled) {
        self.cancelled = true;
    }
}

impl Handle<PlaceOrder> for Order {
    fn handle(&self, command: PlaceOrder) -> Result<Events<Self>, OrderError> {
        if self.id.is_some() {
            return Err(OrderError::Exists);
        }
        Ok(Events::one(OrderPlaced {
            order: command.order,
        }))
    }
}

impl Handle<CancelOrder> for Order {
    fn handle(&self, _: CancelOrder) -> Result<Events<Self>, OrderError> {
        match &self.id {
            Some(order) if !self.cancelled => Ok(Events::one(OrderCancelled {
                order: order.clone(),
            })),
            _ => Err(OrderError::NotOpen),
        }
    }
}

/// One count.
#[derive(Event, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[event(name = "tally.counted")]
pub struct Counted {
    pub by: String,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Count {
    pub by: String,
}

#[derive(Debug, PartialEq, thiserror::Error)]
#[error("never")]
pub struct Never;

/// Accepts every count: a command that ran twice is two events.
#[derive(Aggregate, Default, Serialize, Deserialize, Clone, Debug)]
#[aggregate(name = "tally", error = Never, events(Counted), commands(Count))]
pub struct Tally {
    pub counts: u64,
}

impl Apply<Counted> for Tally {
    fn apply(&mut self, _: &Counted) {
        self.counts += 1;
    }
}

impl Handle<Count> for Tally {
    fn handle(&self, command: Count) -> Result<Events<Self>, Never> {
        Ok(Events::one(Counted { by: command.by }))
    }
}

/// Two counts on the order's tally for every placed order (two commands of one event on one
/// stream: the index keeps their keys apart).
pub struct CountPlaced {
    /// Slows each reaction down (for the crash tests).
    pub delay: Duration,
}

impl Policy for CountPlaced {
    const NAME: &'static str = "count-placed";
    type Handles = (OrderPlaced,);
}

impl React<OrderPlaced> for CountPlaced {
    fn react(&self, event: &OrderPlaced, _: &RecordedEvent) -> Vec<Dispatch> {
        if !self.delay.is_zero() {
            std::thread::sleep(self.delay);
        }
        vec![
            Dispatch::to::<Tally>(&event.order, Count { by: "a".into() }),
            Dispatch::to::<Tally>(&event.order, Count { by: "b".into() }),
        ]
    }
}

/// Counts each placed order on `pm-<order>`, schedules its expiry `after` later; on expiry
/// counts again, cancels the order and completes. A cancelled order completes the instance
/// (cancelling the expiry).
pub struct Expiry {
    pub after: Duration,
    /// Slows each deadline down (for the crash tests).
    pub deadline_delay: Duration,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ExpiryState {
    pub order: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum ExpiryDeadline {
    Expire,
}

impl ProcessManager for Expiry {
    const NAME: &'static str = "expiry";
    type Handles = (OrderPlaced, OrderCancelled);
    type State = ExpiryState;
    type Deadline = ExpiryDeadline;

    fn on_deadline(&self, state: &mut ExpiryState, _: ExpiryDeadline) -> Reactions<ExpiryDeadline> {
        if !self.deadline_delay.is_zero() {
            std::thread::sleep(self.deadline_delay);
        }
        let Some(order) = state.order.clone() else {
            return Reactions::none();
        };
        Reactions::none()
            .dispatch(Dispatch::to::<Tally>(
                format!("pm-{order}"),
                Count {
                    by: "expired".into(),
                },
            ))
            .dispatch(Dispatch::to::<Order>(&order, CancelOrder))
            .complete()
    }
}

impl Advance<OrderPlaced> for Expiry {
    fn instance(&self, event: &OrderPlaced, _: &RecordedEvent) -> Option<String> {
        Some(event.order.clone())
    }

    fn advance(
        &self,
        state: &mut ExpiryState,
        event: &OrderPlaced,
        _: &RecordedEvent,
    ) -> Reactions<ExpiryDeadline> {
        state.order = Some(event.order.clone());
        Reactions::none()
            .dispatch(Dispatch::to::<Tally>(
                format!("pm-{}", event.order),
                Count {
                    by: "placed".into(),
                },
            ))
            .schedule(ExpiryDeadline::Expire, self.after)
    }
}

impl Advance<OrderCancelled> for Expiry {
    fn instance(&self, event: &OrderCancelled, _: &RecordedEvent) -> Option<String> {
        Some(event.order.clone())
    }

    fn advance(
        &self,
        _: &mut ExpiryState,
        _: &OrderCancelled,
        _: &RecordedEvent,
    ) -> Reactions<ExpiryDeadline> {
        Reactions::none().complete()
    }
}

/// The dispatcher of the tests: orders and tallies on `store`.
pub fn dispatcher<S>(store: &S) -> eventsource::Dispatcher
where
    S: EventStore + SnapshotStore + Clone,
{
    eventsource::Dispatcher::new()
        .route(Repository::<Order, _>::new(store.clone()).retry_on_conflict(5))
        .route(Repository::<Tally, _>::new(store.clone()).retry_on_conflict(5))
}

/// The counts on tally `id`, by `by`.
pub async fn counts<S: EventStore>(store: &S, id: &str) -> BTreeMap<String, usize> {
    let stream = StreamId::new("tally", id);
    let mut counts = BTreeMap::new();
    for record in store
        .read_stream(&stream, Version(1), 100_000)
        .await
        .unwrap()
    {
        let by = record.payload["by"].as_str().unwrap().to_owned();
        *counts.entry(by).or_insert(0) += 1;
    }
    counts
}

/// How many `Counted` events the log holds.
pub async fn all_counts<S: EventStore>(store: &S) -> usize {
    let filter = eventsource::LogFilter::all().name("tally.counted");
    let mut total = 0;
    let mut after = eventsource::Checkpoint::START;
    loop {
        let page = store.read_all(after, 1_000, &filter).await.unwrap();
        let Some(last) = page.last() else { break };
        after = last.checkpoint;
        total += page.len();
    }
    total
}

/// Whether `error` is the dispatcher's "no route".
pub fn is_no_route(error: &DispatchError) -> bool {
    matches!(error, DispatchError::NoRoute { .. })
}
