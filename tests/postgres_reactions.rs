//! Reactions on PostgreSQL, across OS processes: a policy killed with SIGKILL between its
//! commands and its checkpoint, a rebuild that delivers every event again, a deadline that came
//! due while its runner was down, a deadline runner killed mid-batch, and concurrent deadline
//! runners. Every effect happens exactly once. Runner processes are this test binary started
//! again on its `child_reaction_process` entry point.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "support/postgres.rs"]
mod support;

#[path = "support/reactions.rs"]
mod reactions;

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use eventsource::postgres::PostgresStore;
use eventsource::prelude::*;
use eventsource::{
    DeadlineRunner, DeadlineState, DeadlineStore, PolicyProjection, ProcessProjection,
    ProjectionStore, RunnerOptions,
};
use reactions::*;
use support::{database_url, fresh_pg_store};

fn options() -> RunnerOptions {
    RunnerOptions {
        batch_size: 50,
        backoff: Duration::from_millis(20),
        max_backoff: Duration::from_millis(200),
        poll_interval: Duration::from_millis(50),
        ..RunnerOptions::default()
    }
}

fn env_millis(name: &str) -> Duration {
    Duration::from_millis(std::env::var(name).unwrap().parse().unwrap())
}

/// Entry point of the processes the tests start (a no-op unless `EVENTSOURCE_TEST_REACTION`
/// is set): `policy` runs the `count-placed` policy, `process` the `expiry` process manager's
/// events and deadlines, in the schema `EVENTSOURCE_TEST_REACTION_SCHEMA`, until the file
/// `EVENTSOURCE_TEST_REACTION_STOP` exists. Exits with status 1 when a runner fails.
#[test]
fn child_reaction_process() {
    let Ok(mode) = std::env::var("EVENTSOURCE_TEST_REACTION") else {
        return;
    };
    let schema = std::env::var("EVENTSOURCE_TEST_REACTION_SCHEMA").unwrap();
    let stop = PathBuf::from(std::env::var("EVENTSOURCE_TEST_REACTION_STOP").unwrap());
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let outcome: Result<(), String> = runtime.block_on(async move {
        let store = PostgresStore::builder()
            .schema(schema)
            .max_connections(6)
            .connect(&database_url())
            .await
            .unwrap();
        let stopped = move || {
            let stop = stop.clone();
            async move {
                while !stop.exists() {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }
        };
        match mode.as_str() {
            "policy" => {
                let policy = CountPlaced {
                    delay: env_millis("EVENTSOURCE_TEST_REACTION_DELAY"),
                };
                let mut runner = ProjectionRunner::new(
                    PolicyProjection::new(policy, dispatcher(&store)),
                    store.clone(),
                )
                .with_options(options());
                runner.run(stopped()).await.map_err(|e| e.to_string())
            }
            "process" => {
                let expiry = || Expiry {
                    after: env_millis("EVENTSOURCE_TEST_REACTION_AFTER"),
                    deadline_delay: env_millis("EVENTSOURCE_TEST_REACTION_DELAY"),
                };
                let mut events = ProjectionRunner::new(
                    ProcessProjection::new(expiry(), store.clone(), dispatcher(&store)),
                    store.clone(),
                )
                .with_options(options());
                let deadlines = DeadlineRunner::new(expiry(), store.clone(), dispatcher(&store))
                    .batch_size(10)
                    .poll_interval(Duration::from_millis(50));
                let (a, b) = tokio::join!(events.run(stopped()), deadlines.run(stopped()));
                a.map_err(|e| e.to_string())?;
                b.map_err(|e| e.to_string())
            }
            other => Err(format!("unknown mode {other}")),
        }
    });
    if let Err(error) = outcome {
        eprintln!("child reaction runner failed: {error}");
        std::process::exit(1);
    }
}

/// A store with `orders` placed orders, a scratch directory and the runner processes.
struct Scene {
    store: PostgresStore,
    dir: PathBuf,
    orders: usize,
    children: Vec<(String, Child)>,
}

impl Scene {
    async fn new(orders: usize) -> Scene {
        let store = fresh_pg_store().await;
        let repository = Repository::<Order, _>::new(store.clone());
        for n in 0..orders {
            repository
                .execute(
                    n,
                    PlaceOrder {
                        order: n.to_string(),
                    },
                )
                .await
                .unwrap();
        }
        let dir = std::env::temp_dir().join(format!("eventsource-{}", store.schema()));
        std::fs::create_dir_all(&dir).unwrap();
        Scene {
            store,
            dir,
            orders,
            children: Vec::new(),
        }
    }

    fn spawn(&mut self, name: &str, mode: &str, env: &[(&str, u64)]) {
        let stderr = std::fs::File::create(self.dir.join(format!("{name}.stderr"))).unwrap();
        let mut command = Command::new(std::env::current_exe().unwrap());
        command
            .args([
                "--exact",
                "child_reaction_process",
                "--nocapture",
                "--test-threads=1",
            ])
            .env("EVENTSOURCE_TEST_REACTION", mode)
            .env(
                "EVENTSOURCE_TEST_REACTION_SCHEMA",
                self.store.schema().as_str(),
            )
            .env("EVENTSOURCE_TEST_REACTION_STOP", self.dir.join("stop"))
            .stdout(Stdio::null())
            .stderr(stderr);
        for (key, value) in env {
            command.env(key, value.to_string());
        }
        self.children
            .push((name.to_owned(), command.spawn().unwrap()));
    }

    /// SIGKILLs the runner `name`.
    fn kill(&mut self, name: &str) {
        let (_, child) = self
            .children
            .iter_mut()
            .find(|(child, _)| child == name)
            .unwrap();
        child.kill().unwrap();
        child.wait().unwrap();
    }

    /// Polls `done` until it holds, failing if a runner exits on its own or after 90 s.
    async fn wait_until<F, Fut>(&mut self, what: &str, mut done: F)
    where
        F: FnMut(PostgresStore) -> Fut,
        Fut: std::future::Future<Output = bool>,
    {
        let deadline = Instant::now() + Duration::from_secs(90);
        loop {
            if done(self.store.clone()).await {
                return;
            }
            for (name, child) in &mut self.children {
                if let Some(status) = child.try_wait().unwrap() {
                    let stderr = std::fs::read_to_string(self.dir.join(format!("{name}.stderr")))
                        .unwrap_or_default();
                    // A killed child is expected to be gone; any other exit is a failure.
                    assert!(
                        status.code().is_none(),
                        "runner {name} exited ({status}): {stderr}"
                    );
                }
            }
            if Instant::now() > deadline {
                let mut logs = String::new();
                for (name, _) in &self.children {
                    let stderr = std::fs::read_to_string(self.dir.join(format!("{name}.stderr")))
                        .unwrap_or_default();
                    let tail: String = stderr
                        .chars()
                        .rev()
                        .take(2_000)
                        .collect::<Vec<_>>()
                        .into_iter()
                        .rev()
                        .collect();
                    logs.push_str(&format!("\n--- {name}:\n{tail}"));
                }
                panic!("timed out waiting for {what}{logs}");
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Stops the runners still alive and waits for them.
    fn stop(&mut self) {
        std::fs::write(self.dir.join("stop"), b"").unwrap();
        for (name, child) in &mut self.children {
            let status = child.wait().unwrap();
            assert!(
                status.success() || status.code().is_none(),
                "runner {name} failed: {}",
                std::fs::read_to_string(self.dir.join(format!("{name}.stderr")))
                    .unwrap_or_default()
            );
        }
    }

    /// Asserts that every order's tally `prefix<order>` holds exactly `expected`.
    async fn assert_counts(&self, prefix: &str, expected: &[&str]) {
        let expected: std::collections::BTreeMap<String, usize> =
            expected.iter().map(|by| ((*by).to_owned(), 1)).collect();
        for n in 0..self.orders {
            let counts = counts(&self.store, &format!("{prefix}{n}")).await;
            assert_eq!(counts, expected, "tally {prefix}{n}");
        }
    }

    async fn deadlines(&self) -> Vec<(eventsource::Deadline, DeadlineState)> {
        self.store.deadlines("expiry").await.unwrap()
    }
}

impl Drop for Scene {
    fn drop(&mut self) {
        for (_, child) in &mut self.children {
            let _ = child.kill();
            let _ = child.wait();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_policy_killed_between_its_commands_and_its_checkpoint_runs_each_command_once() {
    let mut scene = Scene::new(60).await;
    // 30 ms per event, 50 events per batch: the first checkpoint commits after 1.5 s.
    scene.spawn(
        "first",
        "policy",
        &[("EVENTSOURCE_TEST_REACTION_DELAY", 30)],
    );
    // Counted stream by stream: the global log hides them until the batch's transaction ends.
    scene
        .wait_until("commands of the first batch", |store| async move {
            stream_counts(&store, 60).await >= 20
        })
        .await;
    scene.kill("first");
    // The crash came between commands and checkpoint: commands ran, the checkpoint did not move.
    let ran = stream_counts(&scene.store, 60).await;
    let checkpoint = scene.store.load_checkpoint("count-placed").await.unwrap();
    assert!(
        (20..120).contains(&ran),
        "{ran} commands ran before the kill"
    );
    assert_eq!(checkpoint, None, "the first batch had not committed");

    scene.spawn(
        "second",
        "policy",
        &[("EVENTSOURCE_TEST_REACTION_DELAY", 0)],
    );
    scene
        .wait_until("every command", |store| async move {
            all_counts(&store).await >= 120
                && store
                    .load_checkpoint("count-placed")
                    .await
                    .unwrap()
                    .is_some()
        })
        .await;
    // Caught up: nothing more comes.
    tokio::time::sleep(Duration::from_millis(300)).await;
    scene.stop();
    scene.assert_counts("", &["a", "b"]).await;
    assert_eq!(all_counts(&scene.store).await, 120);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rebuild_delivers_every_event_again_and_nothing_happens_twice() {
    let scene = Scene::new(10).await;
    let store = scene.store.clone();
    let expiry = || Expiry {
        after: Duration::from_secs(3600),
        deadline_delay: Duration::ZERO,
    };
    let mut policy = ProjectionRunner::new(
        PolicyProjection::new(
            CountPlaced {
                delay: Duration::ZERO,
            },
            dispatcher(&store),
        ),
        store.clone(),
    )
    .rebuild_on_reset();
    let mut process = ProjectionRunner::new(
        ProcessProjection::new(expiry(), store.clone(), dispatcher(&store)),
        store.clone(),
    )
    .rebuild_on_reset();
    assert_eq!(policy.catch_up().await.unwrap().applied, 10);
    assert_eq!(process.catch_up().await.unwrap().applied, 10);
    assert_eq!(scene.deadlines().await.len(), 10);

    for name in ["count-placed", "expiry"] {
        assert!(store.request_reset(name).await.unwrap());
    }
    assert_eq!(policy.catch_up().await.unwrap().applied, 10);
    assert_eq!(process.catch_up().await.unwrap().applied, 10);

    scene.assert_counts("", &["a", "b"]).await;
    scene.assert_counts("pm-", &["placed"]).await;
    let deadlines = scene.deadlines().await;
    assert_eq!(deadlines.len(), 10);
    assert!(
        deadlines
            .iter()
            .all(|(_, state)| *state == DeadlineState::Pending)
    );
    for n in 0..10 {
        let steps = store
            .read_stream(
                &eventsource::process_stream("expiry", &n.to_string()),
                Version(1),
                10,
            )
            .await
            .unwrap();
        assert_eq!(steps.len(), 1, "one step for order {n}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deadline_due_while_its_runner_was_down_fires_once_after_the_restart() {
    let mut scene = Scene::new(5).await;
    let env = [
        ("EVENTSOURCE_TEST_REACTION_AFTER", 2_000),
        ("EVENTSOURCE_TEST_REACTION_DELAY", 0),
    ];
    scene.spawn("first", "process", &env);
    scene
        .wait_until("the deadlines scheduled", |store| async move {
            store.deadlines("expiry").await.unwrap().len() == 5
                && store.load_checkpoint("expiry").await.unwrap().is_some()
        })
        .await;
    scene.kill("first");
    let scheduled = scene.deadlines().await;
    assert!(
        scheduled
            .iter()
            .all(|(_, state)| *state == DeadlineState::Pending)
    );
    let latest = scheduled.iter().map(|(d, _)| d.due_at).max().unwrap();
    // Down until every deadline is due.
    loop {
        let now: chrono::DateTime<chrono::Utc> = sqlx_now(&scene.store).await;
        if now > latest {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        scene
            .deadlines()
            .await
            .iter()
            .all(|(_, state)| *state == DeadlineState::Pending),
        "nothing fired while the runner was down"
    );

    scene.spawn("second", "process", &env);
    scene
        .wait_until("every deadline fired", |store| async move {
            store
                .deadlines("expiry")
                .await
                .unwrap()
                .iter()
                .all(|(_, state)| matches!(state, DeadlineState::Fired { .. }))
        })
        .await;
    // The cancellations the deadlines caused reach the manager (and are ignored).
    tokio::time::sleep(Duration::from_millis(300)).await;
    scene.stop();
    scene.assert_counts("pm-", &["placed", "expired"]).await;
    for n in 0..5 {
        let order = Repository::<Order, _>::new(scene.store.clone())
            .load(n)
            .await
            .unwrap();
        assert_eq!(
            order.version,
            Version(2),
            "order {n}: placed, cancelled once"
        );
    }
    for (deadline, state) in scene.deadlines().await {
        let DeadlineState::Fired { outcome, .. } = state else {
            unreachable!()
        };
        assert_eq!(outcome, "stepped", "deadline {}", deadline.id);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deadline_runner_killed_mid_batch_fires_each_deadline_once() {
    let mut scene = Scene::new(30).await;
    // Due after 4 s, when all 30 are scheduled; 200 ms per deadline, 10 per claim: a claim's
    // marks commit 2 s after it, long after its first commands ran.
    scene.spawn(
        "first",
        "process",
        &[
            ("EVENTSOURCE_TEST_REACTION_AFTER", 4_000),
            ("EVENTSOURCE_TEST_REACTION_DELAY", 200),
        ],
    );
    // Kill while a claim's commands ran ahead of its marks (a claim of fewer deadlines, e.g.
    // under load, can commit its marks before the poll sees its commands: wait past it).
    scene
        .wait_until("commands ahead of their marks", |store| async move {
            let mut expired = 0;
            for n in 0..30 {
                expired += counts(&store, &format!("pm-{n}"))
                    .await
                    .get("expired")
                    .copied()
                    .unwrap_or(0);
            }
            let marks = store
                .deadlines("expiry")
                .await
                .unwrap()
                .iter()
                .filter(|(_, state)| matches!(state, DeadlineState::Fired { .. }))
                .count();
            expired >= 3 && expired > marks
        })
        .await;
    scene.kill("first");
    let fired_marks = scene
        .deadlines()
        .await
        .iter()
        .filter(|(_, state)| matches!(state, DeadlineState::Fired { .. }))
        .count();
    let mut expired = 0;
    for n in 0..30 {
        expired += counts(&scene.store, &format!("pm-{n}"))
            .await
            .get("expired")
            .copied()
            .unwrap_or(0);
    }
    assert!(
        expired > fired_marks,
        "the kill came between commands ({expired}) and their marks ({fired_marks})"
    );

    scene.spawn(
        "second",
        "process",
        &[
            ("EVENTSOURCE_TEST_REACTION_AFTER", 4_000),
            ("EVENTSOURCE_TEST_REACTION_DELAY", 0),
        ],
    );
    scene
        .wait_until("every deadline fired", |store| async move {
            let deadlines = store.deadlines("expiry").await.unwrap();
            deadlines.len() == 30
                && deadlines
                    .iter()
                    .all(|(_, state)| matches!(state, DeadlineState::Fired { .. }))
        })
        .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    scene.stop();
    scene.assert_counts("pm-", &["placed", "expired"]).await;
    let repeated = scene
        .deadlines()
        .await
        .into_iter()
        .filter(|(_, state)| matches!(state, DeadlineState::Fired { outcome, .. } if outcome == "repeated"))
        .count();
    assert!(
        repeated >= 1,
        "the claimed deadlines were repeated, not redone"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_deadline_runners_fire_each_deadline_once() {
    let scene = Scene::new(100).await;
    let store = scene.store.clone();
    let expiry = || Expiry {
        after: Duration::ZERO,
        deadline_delay: Duration::ZERO,
    };
    ProjectionRunner::new(
        ProcessProjection::new(expiry(), store.clone(), dispatcher(&store)),
        store.clone(),
    )
    .catch_up()
    .await
    .unwrap();
    let mut tasks = Vec::new();
    for _ in 0..8 {
        // A store (a pool) per runner, as in separate processes: a runner holds a connection
        // for its claim and takes another for each step.
        let own = PostgresStore::builder()
            .schema(store.schema().as_str())
            .max_connections(3)
            .connect(&database_url())
            .await
            .unwrap();
        let runner = DeadlineRunner::new(expiry(), own.clone(), dispatcher(&own)).batch_size(4);
        tasks.push(tokio::spawn(async move {
            let mut fired = 0;
            loop {
                let pass = runner.fire_due().await.unwrap();
                assert_eq!(pass.failed + pass.retry, 0, "{pass:?}");
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
    assert_eq!(fired, 100);
    scene.assert_counts("pm-", &["placed", "expired"]).await;
    assert!(
        scene
            .deadlines()
            .await
            .iter()
            .all(|(_, state)| matches!(state, DeadlineState::Fired { .. }))
    );
}

#[tokio::test]
async fn scheduling_again_and_cancelling_are_idempotent_and_bounded_by_version() {
    let store = fresh_pg_store().await;
    let at = chrono::DateTime::parse_from_rfc3339("2026-01-01T00:00:00Z")
        .unwrap()
        .with_timezone(&chrono::Utc);
    let deadline = |n: u128, version: u64| eventsource::Deadline {
        id: uuid::Uuid::from_u128(n),
        process: "p".into(),
        instance: "i".into(),
        due_at: at,
        payload: serde_json::json!({ "n": n as u64 }),
        correlation_id: None,
        causation_id: uuid::Uuid::from_u128(1000 + n),
        scheduled_by: Version(version),
    };
    store
        .schedule(&[deadline(1, 1), deadline(2, 3)])
        .await
        .unwrap();
    // Again, with another payload: the first write stays.
    let mut changed = deadline(1, 1);
    changed.payload = serde_json::json!("other");
    store.schedule(&[changed]).await.unwrap();
    let listed = store.deadlines("p").await.unwrap();
    assert_eq!(listed.len(), 2);
    assert_eq!(listed[0].0, deadline(1, 1));

    // A step at version 3 cancels what version 1 scheduled, not what version 3 did.
    assert_eq!(
        store.cancel_deadlines("p", "i", Version(3)).await.unwrap(),
        1
    );
    assert_eq!(
        store.cancel_deadlines("p", "i", Version(3)).await.unwrap(),
        0
    );
    let listed = store.deadlines("p").await.unwrap();
    assert!(matches!(listed[0].1, DeadlineState::Cancelled { .. }));
    assert_eq!(listed[1].1, DeadlineState::Pending);

    // A claim dropped without finishing releases its deadline unmarked.
    let (claim, due) = store.claim_due("p", 10).await.unwrap();
    assert_eq!(due, vec![deadline(2, 3)]);
    let (_, none) = store.claim_due("p", 10).await.unwrap();
    assert!(none.is_empty(), "held by the first claim");
    drop(claim);
    // The driver rolls a dropped transaction back in the background: soon, not at once.
    let started = Instant::now();
    let mut claim = loop {
        let (claim, due) = store.claim_due("p", 10).await.unwrap();
        if due.len() == 1 {
            break claim;
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "the dropped claim kept its row"
        );
        drop(claim);
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    store
        .mark_fired(&mut claim, uuid::Uuid::from_u128(1), "x")
        .await
        .unwrap_err();
    store
        .mark_fired(&mut claim, uuid::Uuid::from_u128(2), "stepped")
        .await
        .unwrap();
    store.finish(claim).await.unwrap();
    let listed = store.deadlines("p").await.unwrap();
    assert!(matches!(&listed[1].1, DeadlineState::Fired { outcome, .. } if outcome == "stepped"));
    assert!(store.claim_due("p", 10).await.unwrap().1.is_empty());
}

/// The counts on the tallies of orders `0..orders`, read stream by stream.
async fn stream_counts(store: &PostgresStore, orders: usize) -> usize {
    let mut total = 0;
    for n in 0..orders {
        total += counts(store, &n.to_string()).await.values().sum::<usize>();
    }
    total
}

async fn sqlx_now(store: &PostgresStore) -> chrono::DateTime<chrono::Utc> {
    eventsource::postgres::sqlx::query_scalar("SELECT now()")
        .fetch_one(store.pool())
        .await
        .unwrap()
}
