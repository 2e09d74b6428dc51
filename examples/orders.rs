//! Orders, payments and shipments, tied together by reactions: a policy marks an order paid
//! when its payment arrives, and a process manager (saga) requests the payment, ships a paid
//! order, and cancels an order whose payment does not arrive in time (a deadline).
//!
//! Run with `cargo run --example orders` (in memory, no setup, a 300 ms payment timeout).
//!
//! Every command a reaction sends carries an idempotency key derived from the event (or the
//! deadline) that caused it, so a reaction that runs again after a crash changes nothing twice.

use std::time::Duration;

use eventsource::prelude::*;
use eventsource::{DeadlineRunner, PolicyProjection, ProcessProjection};

// The order.

/// An order was placed.
#[derive(Event, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[event(name = "order.placed")]
struct OrderPlaced {
    order: String,
    total: u64,
}

/// The order was paid.
#[derive(Event, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[event(name = "order.paid")]
struct OrderPaid {
    order: String,
}

/// The order was cancelled.
#[derive(Event, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[event(name = "order.cancelled")]
struct OrderCancelled {
    order: String,
    reason: String,
}

#[derive(Clone, Debug, PartialEq)]
struct PlaceOrder {
    order: String,
    total: u64,
}

#[derive(Clone, Debug, PartialEq)]
struct MarkPaid;

#[derive(Clone, Debug, PartialEq)]
struct CancelOrder {
    reason: String,
}

#[derive(Debug, PartialEq, thiserror::Error)]
enum OrderError {
    #[error("the order was placed already")]
    AlreadyPlaced,
    #[error("the order is not open (it is {0})")]
    NotOpen(&'static str),
}

#[derive(Shape, Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
enum OrderStatus {
    #[default]
    New,
    Placed,
    Paid,
    Cancelled,
}

impl OrderStatus {
    fn name(self) -> &'static str {
        match self {
            OrderStatus::New => "new",
            OrderStatus::Placed => "placed",
            OrderStatus::Paid => "paid",
            OrderStatus::Cancelled => "cancelled",
        }
    }
}

#[derive(Aggregate, Default, Serialize, Deserialize, Clone, Debug)]
#[aggregate(
    name = "order",
    error = OrderError,
    events(OrderPlaced, OrderPaid, OrderCancelled),
    commands(PlaceOrder, MarkPaid, CancelOrder)
)]
struct Order {
    id: String,
    status: OrderStatus,
}

impl Apply<OrderPlaced> for Order {
    fn apply(&mut self, event: &OrderPlaced) {
        self.id = event.order.clone();
        self.status = OrderStatus::Placed;
    }
}

impl Apply<OrderPaid> for Order {
    fn apply(&mut self, _: &OrderPaid) {
        self.status = OrderStatus::Paid;
    }
}

impl Apply<OrderCancelled> for Order {
    fn apply(&mut self, _: &OrderCancelled) {
        self.status = OrderStatus::Cancelled;
    }
}

impl Order {
    fn open(&self) -> Result<(), OrderError> {
        match self.status {
            OrderStatus::Placed => Ok(()),
            other => Err(OrderError::NotOpen(other.name())),
        }
    }
}

impl Handle<PlaceOrder> for Order {
    fn handle(&self, command: PlaceOrder) -> Result<Events<Self>, OrderError> {
        if self.status != OrderStatus::New {
            return Err(OrderError::AlreadyPlaced);
        }
        Ok(Events::one(OrderPlaced {
            order: command.order,
            total: command.total,
        }))
    }
}

impl Handle<MarkPaid> for Order {
    fn handle(&self, _: MarkPaid) -> Result<Events<Self>, OrderError> {
        self.open()?;
        Ok(Events::one(OrderPaid {
            order: self.id.clone(),
        }))
    }
}

impl Handle<CancelOrder> for Order {
    fn handle(&self, command: CancelOrder) -> Result<Events<Self>, OrderError> {
        self.open()?;
        Ok(Events::one(OrderCancelled {
            order: self.id.clone(),
            reason: command.reason,
        }))
    }
}

// The payment.

/// A payment was requested.
#[derive(Event, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[event(name = "payment.requested")]
struct PaymentRequested {
    order: String,
    amount: u64,
}

/// The payment arrived.
#[derive(Event, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[event(name = "payment.received")]
struct PaymentReceived {
    order: String,
}

#[derive(Clone, Debug, PartialEq)]
struct RequestPayment {
    order: String,
    amount: u64,
}

#[derive(Clone, Debug, PartialEq)]
struct ConfirmPayment;

#[derive(Debug, PartialEq, thiserror::Error)]
enum PaymentError {
    #[error("no payment was requested")]
    NotRequested,
    #[error("the payment was requested already")]
    AlreadyRequested,
}

#[derive(Aggregate, Default, Serialize, Deserialize, Clone, Debug)]
#[aggregate(
    name = "payment",
    error = PaymentError,
    events(PaymentRequested, PaymentReceived),
    commands(RequestPayment, ConfirmPayment)
)]
struct Payment {
    order: Option<String>,
    received: bool,
}

impl Apply<PaymentRequested> for Payment {
    fn apply(&mut self, event: &PaymentRequested) {
        self.order = Some(event.order.clone());
    }
}

impl Apply<PaymentReceived> for Payment {
    fn apply(&mut self, _: &PaymentReceived) {
        self.received = true;
    }
}

impl Handle<RequestPayment> for Payment {
    fn handle(&self, command: RequestPayment) -> Result<Events<Self>, PaymentError> {
        if self.order.is_some() {
            return Err(PaymentError::AlreadyRequested);
        }
        Ok(Events::one(PaymentRequested {
            order: command.order,
            amount: command.amount,
        }))
    }
}

impl Handle<ConfirmPayment> for Payment {
    fn handle(&self, _: ConfirmPayment) -> Result<Events<Self>, PaymentError> {
        match &self.order {
            None => Err(PaymentError::NotRequested),
            Some(_) if self.received => Ok(Events::none()),
            Some(order) => Ok(Events::one(PaymentReceived {
                order: order.clone(),
            })),
        }
    }
}

// The shipment.

/// The goods left the warehouse.
#[derive(Event, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[event(name = "shipment.dispatched")]
struct ShipmentDispatched {
    order: String,
}

#[derive(Clone, Debug, PartialEq)]
struct Ship {
    order: String,
}

#[derive(Debug, PartialEq, thiserror::Error)]
enum ShipmentError {
    #[error("shipped already")]
    AlreadyShipped,
}

#[derive(Aggregate, Default, Serialize, Deserialize, Clone, Debug)]
#[aggregate(
    name = "shipment",
    error = ShipmentError,
    events(ShipmentDispatched),
    commands(Ship)
)]
struct Shipment {
    shipped: bool,
}

impl Apply<ShipmentDispatched> for Shipment {
    fn apply(&mut self, _: &ShipmentDispatched) {
        self.shipped = true;
    }
}

impl Handle<Ship> for Shipment {
    fn handle(&self, command: Ship) -> Result<Events<Self>, ShipmentError> {
        if self.shipped {
            return Err(ShipmentError::AlreadyShipped);
        }
        Ok(Events::one(ShipmentDispatched {
            order: command.order,
        }))
    }
}

// A policy: stateless, one event in, commands out.

/// When a payment arrives, the order is paid.
struct MarkOrderPaid;

impl Policy for MarkOrderPaid {
    const NAME: &'static str = "mark-order-paid";
    type Handles = (PaymentReceived,);
}

impl React<PaymentReceived> for MarkOrderPaid {
    fn react(&self, event: &PaymentReceived, _: &RecordedEvent) -> Vec<Dispatch> {
        vec![Dispatch::to::<Order>(&event.order, MarkPaid)]
    }
}

// A process manager: state per order, and a deadline.

/// Requests the payment of a placed order, ships it once paid, and cancels it if the payment
/// does not arrive within `payment_timeout`.
struct Fulfilment {
    payment_timeout: Duration,
}

/// Where one order's fulfilment stands.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
struct FulfilmentState {
    order: Option<String>,
    paid: bool,
}

/// What the fulfilment waits for.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
enum FulfilmentDeadline {
    PaymentTimeout,
}

impl ProcessManager for Fulfilment {
    const NAME: &'static str = "order-fulfilment";
    type Handles = (OrderPlaced, PaymentReceived, ShipmentDispatched);
    type State = FulfilmentState;
    type Deadline = FulfilmentDeadline;

    fn on_deadline(
        &self,
        state: &mut FulfilmentState,
        deadline: FulfilmentDeadline,
    ) -> Reactions<FulfilmentDeadline> {
        match (deadline, &state.order) {
            (FulfilmentDeadline::PaymentTimeout, Some(order)) if !state.paid => Reactions::none()
                .dispatch(Dispatch::to::<Order>(
                    order,
                    CancelOrder {
                        reason: "payment timed out".into(),
                    },
                ))
                .complete(),
            _ => Reactions::none(),
        }
    }
}

// The payment is confirmed from outside the order's conversation (a payment provider's
// callback), so instances are keyed by the order id rather than the correlation id.

impl Advance<OrderPlaced> for Fulfilment {
    fn instance(&self, event: &OrderPlaced, _: &RecordedEvent) -> Option<String> {
        Some(event.order.clone())
    }

    fn advance(
        &self,
        state: &mut FulfilmentState,
        event: &OrderPlaced,
        _: &RecordedEvent,
    ) -> Reactions<FulfilmentDeadline> {
        state.order = Some(event.order.clone());
        let request = RequestPayment {
            order: event.order.clone(),
            amount: event.total,
        };
        Reactions::none()
            .dispatch(Dispatch::to::<Payment>(&event.order, request))
            .schedule(FulfilmentDeadline::PaymentTimeout, self.payment_timeout)
    }
}

impl Advance<PaymentReceived> for Fulfilment {
    fn instance(&self, event: &PaymentReceived, _: &RecordedEvent) -> Option<String> {
        Some(event.order.clone())
    }

    fn advance(
        &self,
        state: &mut FulfilmentState,
        event: &PaymentReceived,
        _: &RecordedEvent,
    ) -> Reactions<FulfilmentDeadline> {
        state.paid = true;
        let ship = Ship {
            order: event.order.clone(),
        };
        Reactions::none()
            .dispatch(Dispatch::to::<Shipment>(&event.order, ship))
            .cancel_deadlines()
    }
}

impl Advance<ShipmentDispatched> for Fulfilment {
    fn instance(&self, event: &ShipmentDispatched, _: &RecordedEvent) -> Option<String> {
        Some(event.order.clone())
    }

    fn advance(
        &self,
        _: &mut FulfilmentState,
        _: &ShipmentDispatched,
        _: &RecordedEvent,
    ) -> Reactions<FulfilmentDeadline> {
        Reactions::none().complete()
    }
}

/// Places order `id` (a new conversation: its correlation id is the command's id).
async fn place_order(
    store: &MemoryStore,
    id: &str,
    total: u64,
) -> Result<(), Box<dyn std::error::Error>> {
    let place = PlaceOrder {
        order: id.to_owned(),
        total,
    };
    Repository::<Order, _>::new(store.clone())
        .execute(id, place)
        .await?;
    Ok(())
}

async fn order_status(store: &MemoryStore, id: &str) -> Result<OrderStatus, LoadError> {
    Ok(Repository::<Order, _>::new(store.clone())
        .load(id)
        .await?
        .state
        .status)
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let store = MemoryStore::new();
    let dispatcher = Dispatcher::new()
        .route(Repository::<Order, _>::new(store.clone()).retry_on_conflict(3))
        .route(Repository::<Payment, _>::new(store.clone()).retry_on_conflict(3))
        .route(Repository::<Shipment, _>::new(store.clone()).retry_on_conflict(3));
    let payment_timeout = Duration::from_millis(300);
    let options = eventsource::RunnerOptions {
        poll_interval: Duration::from_millis(20),
        ..Default::default()
    };

    // The reactions run beside the application until it shuts them down.
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let shutdown = move || {
        let mut stopped = stopped.clone();
        async move {
            let _ = stopped.wait_for(|stop| *stop).await;
        }
    };
    let mut policy = ProjectionRunner::new(
        PolicyProjection::new(MarkOrderPaid, dispatcher.clone()),
        store.clone(),
    )
    .with_options(options.clone());
    let mut fulfilment = ProjectionRunner::new(
        ProcessProjection::new(
            Fulfilment { payment_timeout },
            store.clone(),
            dispatcher.clone(),
        ),
        store.clone(),
    )
    .with_options(options);
    let deadlines = DeadlineRunner::new(
        Fulfilment { payment_timeout },
        store.clone(),
        dispatcher.clone(),
    )
    .poll_interval(Duration::from_millis(20));
    let tasks = [
        tokio::spawn({
            let shutdown = shutdown();
            async move { policy.run(shutdown).await.map_err(|e| e.to_string()) }
        }),
        tokio::spawn({
            let shutdown = shutdown();
            async move { fulfilment.run(shutdown).await.map_err(|e| e.to_string()) }
        }),
        tokio::spawn({
            let shutdown = shutdown();
            async move { deadlines.run(shutdown).await.map_err(|e| e.to_string()) }
        }),
    ];

    // Two orders; only the first one is paid.
    place_order(&store, "o-1", 30).await?;
    place_order(&store, "o-2", 45).await?;
    let payments = Repository::<Payment, _>::new(store.clone());
    // The payment request is the saga's doing: wait for it, then pay.
    loop {
        match payments.execute("o-1", ConfirmPayment).await {
            Ok(_) => break,
            Err(ExecuteError::Rejected { .. }) => {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            Err(error) => return Err(error.into()),
        }
    }

    // o-1 is paid and shipped; o-2 is cancelled when its payment times out.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let (first, second) = loop {
        let first = order_status(&store, "o-1").await?;
        let second = order_status(&store, "o-2").await?;
        let shipped = Repository::<Shipment, _>::new(store.clone())
            .load("o-1")
            .await?
            .state
            .shipped;
        if (first, second, shipped) == (OrderStatus::Paid, OrderStatus::Cancelled, true) {
            break (first, second);
        }
        if tokio::time::Instant::now() > deadline {
            return Err(format!("the orders did not settle: o-1 {first:?}, o-2 {second:?}").into());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    println!("order o-1: {} and shipped", first.name());
    println!("order o-2: {} (payment timed out)", second.name());

    stop.send(true)?;
    for task in tasks {
        task.await??;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use eventsource::harness::{PolicyScenario, ProcessScenario};

    #[test]
    fn a_received_payment_marks_the_order_paid() {
        PolicyScenario::new(MarkOrderPaid)
            .when(PaymentReceived {
                order: "o-1".into(),
            })
            .then_dispatches([Dispatch::to::<Order>("o-1", MarkPaid)]);
    }

    #[test]
    fn a_placed_order_requests_its_payment_and_waits_for_it() {
        let timeout = Duration::from_secs(60);
        ProcessScenario::new(Fulfilment {
            payment_timeout: timeout,
        })
        .when(OrderPlaced {
            order: "o-1".into(),
            total: 30,
        })
        .then_dispatches([Dispatch::to::<Payment>(
            "o-1",
            RequestPayment {
                order: "o-1".into(),
                amount: 30,
            },
        )])
        .then_schedules([(FulfilmentDeadline::PaymentTimeout, timeout)]);
    }

    #[test]
    fn a_payment_timeout_cancels_an_unpaid_order() {
        ProcessScenario::new(Fulfilment {
            payment_timeout: Duration::from_secs(60),
        })
        .given(OrderPlaced {
            order: "o-2".into(),
            total: 45,
        })
        .when_deadline(FulfilmentDeadline::PaymentTimeout)
        .then_dispatches([Dispatch::to::<Order>(
            "o-2",
            CancelOrder {
                reason: "payment timed out".into(),
            },
        )])
        .then_completed();
    }

    #[test]
    fn a_payment_timeout_after_the_payment_does_nothing() {
        ProcessScenario::new(Fulfilment {
            payment_timeout: Duration::from_secs(60),
        })
        .given_state(FulfilmentState {
            order: Some("o-1".into()),
            paid: true,
        })
        .when_deadline(FulfilmentDeadline::PaymentTimeout)
        .then_dispatches([]);
    }
}
