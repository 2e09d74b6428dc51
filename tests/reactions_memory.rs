//! Reactions on the in-memory store: policies and process managers as projections, their
//! commands' metadata and idempotency, deadlines, and the reaction scenarios.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "support/reactions.rs"]
mod reactions;

use std::time::Duration;

use eventsource::harness::{PolicyScenario, ProcessScenario};
use eventsource::prelude::*;
use eventsource::{
    DeadlineRunner, DeadlineState, DeadlineStore, Dispatch, PolicyProjection, ProcessProjection,
    ProjectionError, ProjectionStore, ReactionError, Reactions, process_stream,
};
use reactions::*;

async fn place(store: &MemoryStore, order: &str) -> RecordedEvent {
    let done = Repository::<Order, _>::new(store.clone())
        .execute(
            order,
            PlaceOrder {
                order: order.into(),
            },
        )
        .await
        .unwrap();
    let stream = StreamId::new("order", order);
    store
        .read_stream(&stream, done.version, 1)
        .await
        .unwrap()
        .remove(0)
}

fn policy_runner(
    store: &MemoryStore,
) -> ProjectionRunner<PolicyProjection<CountPlaced>, MemoryStore> {
    ProjectionRunner::new(
        PolicyProjection::new(
            CountPlaced {
                delay: Duration::ZERO,
            },
            dispatcher(store),
        ),
        store.clone(),
    )
}

fn expiry(after: Duration) -> Expiry {
    Expiry {
        after,
        deadline_delay: Duration::ZERO,
    }
}

#[tokio::test]
async fn a_policy_sends_each_command_once_with_the_events_correlation_and_causation() {
    let store = MemoryStore::new();
    let placed = place(&store, "o-1").await;
    let mut runner = policy_runner(&store);
    runner.catch_up().await.unwrap();

    let tally = store
        .read_stream(&StreamId::new("tally", "o-1"), Version(1), 10)
        .await
        .unwrap();
    assert_eq!(tally.len(), 2, "two commands, two events");
    for (index, record) in tally.iter().enumerate() {
        assert_eq!(
            record.metadata.correlation_id, placed.metadata.correlation_id,
            "the correlation id is copied"
        );
        assert_eq!(record.metadata.causation_id, Some(placed.event_id));
        assert_eq!(
            record.metadata.idempotency_key.as_deref(),
            Some(format!("count-placed:{}:{index}", placed.event_id).as_str())
        );
    }

    // The whole log again (a rebuild): every event is delivered again, nothing runs twice.
    store.request_reset("count-placed").await.unwrap();
    let mut runner = policy_runner(&store).rebuild_on_reset();
    let again = runner.catch_up().await.unwrap();
    assert_eq!(again.applied, 1);
    assert_eq!(
        counts(&store, "o-1").await,
        [("a".to_owned(), 1), ("b".to_owned(), 1)].into()
    );
}

#[tokio::test]
async fn an_event_applied_twice_before_its_checkpoint_moved_runs_its_commands_once() {
    let store = MemoryStore::new();
    let placed = place(&store, "o-1").await;
    let mut projection = PolicyProjection::new(
        CountPlaced {
            delay: Duration::ZERO,
        },
        dispatcher(&store),
    );
    let lease = store
        .acquire_lease("count-placed", &eventsource::LogFilter::all())
        .await
        .unwrap();
    let events = std::slice::from_ref(&placed);
    eventsource::apply_and_commit(&mut projection, &store, &lease, events, None)
        .await
        .unwrap()
        .unwrap();
    // The same event once more, as after a crash before the commit: the handler runs, the
    // commit is refused (the checkpoint moved), and the commands were replays.
    let second = eventsource::apply_and_commit(&mut projection, &store, &lease, events, None).await;
    assert!(matches!(
        second,
        Err(eventsource::StoreError::CheckpointMoved { .. })
    ));
    assert_eq!(all_counts(&store).await, 2);
}

#[tokio::test]
async fn a_rejected_command_is_logged_and_the_policy_goes_on() {
    struct CancelTwice;
    impl Policy for CancelTwice {
        const NAME: &'static str = "cancel-twice";
        type Handles = (OrderPlaced,);
    }
    impl React<OrderPlaced> for CancelTwice {
        fn react(&self, event: &OrderPlaced, _: &RecordedEvent) -> Vec<Dispatch> {
            vec![
                Dispatch::to::<Order>(&event.order, CancelOrder),
                // Rejected: the order is cancelled by the first.
                Dispatch::to::<Order>(&event.order, CancelOrder),
                Dispatch::to::<Tally>(&event.order, Count { by: "c".into() }),
            ]
        }
    }
    let store = MemoryStore::new();
    place(&store, "o-1").await;
    let mut runner = ProjectionRunner::new(
        PolicyProjection::new(CancelTwice, dispatcher(&store)),
        store.clone(),
    );
    assert_eq!(runner.catch_up().await.unwrap().applied, 1);
    assert_eq!(counts(&store, "o-1").await, [("c".to_owned(), 1)].into());
    let order = Repository::<Order, _>::new(store.clone())
        .load("o-1")
        .await
        .unwrap();
    assert_eq!(order.version, Version(2));
}

#[tokio::test]
async fn a_command_without_a_route_stops_the_policy_naming_the_aggregate_and_the_event() {
    let store = MemoryStore::new();
    let placed = place(&store, "o-1").await;
    let only_orders =
        eventsource::Dispatcher::new().route(Repository::<Order, _>::new(store.clone()));
    let mut runner = ProjectionRunner::new(
        PolicyProjection::new(
            CountPlaced {
                delay: Duration::ZERO,
            },
            only_orders,
        ),
        store.clone(),
    )
    .with_options(eventsource::RunnerOptions {
        max_retries: 0,
        ..Default::default()
    });
    let error = runner.catch_up().await.unwrap_err();
    let ProjectionError::Failed { source, .. } = &error else {
        panic!("expected a failed event, got {error}");
    };
    let eventsource::HandlerError::Handler(ReactionError::Dispatch { source, index, .. }) = source
    else {
        panic!("expected a dispatch failure, got {source}");
    };
    assert!(is_no_route(source));
    assert_eq!(*index, 0);
    let message = error.to_string();
    assert!(message.contains("`tally`"), "{message}");
    assert!(message.contains(&placed.event_id.to_string()), "{message}");
    assert!(message.contains("Dispatcher::route"), "{message}");
    assert_eq!(runner.status().await.unwrap().checkpoint, None);
}

#[tokio::test]
async fn a_process_step_stored_before_its_commands_failed_sends_them_once_when_delivered_again() {
    let store = MemoryStore::new();
    place(&store, "o-1").await;
    // First delivery: the step is stored, then the tally command has no route.
    let orders_only =
        eventsource::Dispatcher::new().route(Repository::<Order, _>::new(store.clone()));
    let mut broken = ProjectionRunner::new(
        ProcessProjection::new(
            expiry(Duration::from_secs(3600)),
            store.clone(),
            orders_only,
        ),
        store.clone(),
    )
    .with_options(eventsource::RunnerOptions {
        max_retries: 1,
        backoff: Duration::from_millis(1),
        ..Default::default()
    });
    broken.catch_up().await.unwrap_err();
    let steps = store
        .read_stream(&process_stream("expiry", "o-1"), Version(1), 10)
        .await
        .unwrap();
    assert_eq!(steps.len(), 1, "the step was stored once, retries found it");
    assert_eq!(store.deadlines("expiry").await.unwrap().len(), 1);
    assert!(counts(&store, "pm-o-1").await.is_empty());

    // Delivered again with every route: the stored step's command is sent, once.
    let mut runner = ProjectionRunner::new(
        ProcessProjection::new(
            expiry(Duration::from_secs(3600)),
            store.clone(),
            dispatcher(&store),
        ),
        store.clone(),
    );
    runner.catch_up().await.unwrap();
    runner.catch_up().await.unwrap();
    assert_eq!(
        counts(&store, "pm-o-1").await,
        [("placed".to_owned(), 1)].into()
    );
    let steps = store
        .read_stream(&process_stream("expiry", "o-1"), Version(1), 10)
        .await
        .unwrap();
    assert_eq!(steps.len(), 1);
    assert_eq!(steps[0].payload["state"]["order"], "o-1");
    let deadlines = store.deadlines("expiry").await.unwrap();
    assert_eq!(deadlines.len(), 1, "scheduling again is a no-op");
    assert_eq!(deadlines[0].1, DeadlineState::Pending);
}

#[tokio::test]
async fn a_due_deadline_fires_once_and_completing_cancels_the_rest() {
    let store = MemoryStore::new();
    place(&store, "due").await;
    place(&store, "late").await;
    let mut events = ProjectionRunner::new(
        ProcessProjection::new(expiry(Duration::ZERO), store.clone(), dispatcher(&store)),
        store.clone(),
    );
    events.catch_up().await.unwrap();
    let deadlines = DeadlineRunner::new(expiry(Duration::ZERO), store.clone(), dispatcher(&store));
    let fired = deadlines.fire_due().await.unwrap();
    assert_eq!((fired.claimed, fired.fired, fired.failed), (2, 2, 0));
    assert_eq!(deadlines.fire_due().await.unwrap().claimed, 0, "fired once");
    for order in ["due", "late"] {
        assert_eq!(
            counts(&store, &format!("pm-{order}")).await,
            [("placed".to_owned(), 1), ("expired".to_owned(), 1)].into()
        );
        let state = Repository::<Order, _>::new(store.clone())
            .load(order)
            .await
            .unwrap()
            .state;
        assert!(state.cancelled);
    }
    // The cancellations reach the manager: its instances are complete, the events ignored.
    events.catch_up().await.unwrap();
    let steps = store
        .read_stream(&process_stream("expiry", "due"), Version(1), 10)
        .await
        .unwrap();
    assert_eq!(steps.len(), 2, "placed, then the deadline");
    assert_eq!(steps[1].payload["completed"], true);

    // An order cancelled before its deadline: the deadline is cancelled and never fires.
    let store = MemoryStore::new();
    place(&store, "o-1").await;
    let mut events = ProjectionRunner::new(
        ProcessProjection::new(
            expiry(Duration::from_millis(50)),
            store.clone(),
            dispatcher(&store),
        ),
        store.clone(),
    );
    events.catch_up().await.unwrap();
    Repository::<Order, _>::new(store.clone())
        .execute("o-1", CancelOrder)
        .await
        .unwrap();
    events.catch_up().await.unwrap();
    let listed = store.deadlines("expiry").await.unwrap();
    assert!(matches!(listed[0].1, DeadlineState::Cancelled { .. }));
    tokio::time::sleep(Duration::from_millis(80)).await;
    let deadlines = DeadlineRunner::new(
        expiry(Duration::from_millis(50)),
        store.clone(),
        dispatcher(&store),
    );
    assert_eq!(deadlines.fire_due().await.unwrap().claimed, 0);
    assert_eq!(
        counts(&store, "pm-o-1").await,
        [("placed".to_owned(), 1)].into()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_deadline_runners_fire_each_deadline_once() {
    let store = MemoryStore::new();
    for n in 0..40 {
        place(&store, &format!("o-{n}")).await;
    }
    ProjectionRunner::new(
        ProcessProjection::new(expiry(Duration::ZERO), store.clone(), dispatcher(&store)),
        store.clone(),
    )
    .catch_up()
    .await
    .unwrap();
    let mut tasks = Vec::new();
    for _ in 0..6 {
        let runner = DeadlineRunner::new(expiry(Duration::ZERO), store.clone(), dispatcher(&store))
            .batch_size(3);
        tasks.push(tokio::spawn(async move {
            let mut fired = 0;
            loop {
                let pass = runner.fire_due().await.unwrap();
                fired += pass.fired;
                if pass.claimed == 0 {
                    return fired;
                }
            }
        }));
    }
    let mut fired = 0;
    for task in tasks {
        fired += task.await.unwrap();
    }
    assert_eq!(fired, 40);
    for n in 0..40 {
        assert_eq!(
            counts(&store, &format!("pm-o-{n}")).await,
            [("placed".to_owned(), 1), ("expired".to_owned(), 1)].into()
        );
    }
}

#[tokio::test]
async fn a_deadline_that_no_longer_decodes_is_marked_failed_not_a_panic() {
    let store = MemoryStore::new();
    let placed_at = place(&store, "o-1").await.recorded_at;
    store
        .schedule(&[eventsource::Deadline {
            id: uuid::Uuid::now_v7(),
            process: "expiry".into(),
            instance: "o-1".into(),
            due_at: placed_at,
            payload: serde_json::json!({ "Unknown": [1, 2] }),
            correlation_id: None,
            causation_id: uuid::Uuid::now_v7(),
            scheduled_by: Version(1),
        }])
        .await
        .unwrap();
    let deadlines = DeadlineRunner::new(expiry(Duration::ZERO), store.clone(), dispatcher(&store));
    let fired = deadlines.fire_due().await.unwrap();
    assert_eq!((fired.fired, fired.failed), (0, 1));
    let listed = store.deadlines("expiry").await.unwrap();
    let DeadlineState::Fired { outcome, .. } = &listed[0].1 else {
        panic!("expected the deadline marked fired");
    };
    assert!(outcome.starts_with("failed: "), "{outcome}");
    assert!(outcome.contains("does not decode"), "{outcome}");
}

#[tokio::test]
async fn a_stored_state_that_no_longer_decodes_is_a_typed_error() {
    let store = MemoryStore::new();
    store
        .append(
            &process_stream("expiry", "o-1"),
            ExpectedVersion::NoStream,
            vec![eventsource::NewEvent::new(
                eventsource::reaction::STEP_EVENT,
                1,
                serde_json::json!({ "state": { "order": 42 }, "completed": false }),
            )],
        )
        .await
        .unwrap();
    place(&store, "o-1").await;
    let mut runner = ProjectionRunner::new(
        ProcessProjection::new(expiry(Duration::ZERO), store.clone(), dispatcher(&store)),
        store.clone(),
    )
    .with_options(eventsource::RunnerOptions {
        max_retries: 0,
        ..Default::default()
    });
    let error = runner.catch_up().await.unwrap_err().to_string();
    assert!(error.contains("instance `o-1`"), "{error}");
    assert!(error.contains("version 1 does not decode"), "{error}");
}

#[test]
fn policy_scenarios_compare_commands() {
    PolicyScenario::new(CountPlaced {
        delay: Duration::ZERO,
    })
    .when(OrderPlaced {
        order: "o-1".into(),
    })
    .then_dispatches([
        Dispatch::to::<Tally>("o-1", Count { by: "a".into() }),
        Dispatch::to::<Tally>("o-1", Count { by: "b".into() }),
    ]);

    let failure = PolicyScenario::new(CountPlaced {
        delay: Duration::ZERO,
    })
    .when(OrderPlaced {
        order: "o-1".into(),
    })
    .check_dispatches([Dispatch::to::<Tally>("o-2", Count { by: "a".into() })])
    .unwrap_err();
    let message = failure.message();
    assert!(message.contains("`count-placed`"), "{message}");
    assert!(
        message.contains("OrderPlaced { order: \"o-1\" }"),
        "{message}"
    );
    assert!(
        message.contains("!  1 tally-o-2 <- Count { by: \"a\" }"),
        "{message}"
    );
    assert!(message.contains("!  2 -"), "{message}");
}

#[test]
fn process_scenarios_cover_events_deadlines_and_state() {
    ProcessScenario::new(expiry(Duration::from_secs(5)))
        .when(OrderPlaced {
            order: "o-1".into(),
        })
        .then_dispatches([Dispatch::to::<Tally>(
            "pm-o-1",
            Count {
                by: "placed".into(),
            },
        )])
        .then_schedules([(ExpiryDeadline::Expire, Duration::from_secs(5))]);

    ProcessScenario::new(expiry(Duration::from_secs(5)))
        .given(OrderPlaced {
            order: "o-1".into(),
        })
        .when_deadline(ExpiryDeadline::Expire)
        .then_dispatches([
            Dispatch::to::<Tally>(
                "pm-o-1",
                Count {
                    by: "expired".into(),
                },
            ),
            Dispatch::to::<Order>("o-1", CancelOrder),
        ])
        .then_completed()
        .then_state(|state| assert_eq!(state.order.as_deref(), Some("o-1")));

    // Given a state with no order, the deadline does nothing.
    let scenario = ProcessScenario::new(expiry(Duration::from_secs(5)))
        .given_state(ExpiryState::default())
        .when_deadline(ExpiryDeadline::Expire)
        .then_dispatches([]);
    assert_eq!(scenario.reactions(), &Reactions::none());
}

#[test]
#[should_panic(expected = "expected the trigger to complete the instance")]
fn a_process_scenario_that_does_not_complete_fails() {
    ProcessScenario::new(expiry(Duration::from_secs(5)))
        .when(OrderPlaced {
            order: "o-1".into(),
        })
        .then_completed();
}

/// A deadline runner told to look every 0 s looks every 10 ms: zero would claim in a busy loop.
#[test]
fn a_zero_deadline_poll_interval_is_floored_at_10_ms() {
    let store = MemoryStore::new();
    let zero = DeadlineRunner::new(expiry(Duration::ZERO), store.clone(), dispatcher(&store))
        .poll_interval(Duration::ZERO);
    assert!(
        format!("{zero:?}").contains("poll_interval: 10ms"),
        "{zero:?}"
    );
    let slow = DeadlineRunner::new(expiry(Duration::ZERO), store.clone(), dispatcher(&store))
        .poll_interval(Duration::from_secs(5));
    assert!(
        format!("{slow:?}").contains("poll_interval: 5s"),
        "{slow:?}"
    );
}
