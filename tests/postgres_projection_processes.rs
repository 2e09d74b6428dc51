//! The projection runner on PostgreSQL across OS processes: the active runner killed with
//! SIGKILL, its lease connection ended by `pg_terminate_backend`. Runner processes are this
//! test binary started again on its `child_runner_process` entry point.
//!
//! Every runner's handler writes the read model (exactly once: a primary key per event) and
//! also appends a line to a file outside the database, the kind of side effect a transaction
//! cannot undo; the lines show which process applied which event, and in what order.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "support/postgres.rs"]
mod support;

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use eventsource::postgres::sqlx::{self, AssertSqlSafe, Row};
use eventsource::postgres::{PostgresStore, PostgresTx};
use eventsource::prelude::*;
use eventsource::{NewEvent, Project, Projection, ProjectionRunner, RecordedEvent, RunnerOptions};
use serde_json::json;
use support::{database_url, fresh_pg_store};

const EVENTS: i64 = 1_200;

#[derive(Event, Serialize, Deserialize, Clone, Debug)]
#[event(name = "ledger.posted")]
struct Posted {
    amount: i64,
}

/// The child's projection: a row per event in `<schema>.ledger`, and a line per applied event
/// in the side-effect file (`<process id> <event id>`).
struct Worker {
    table: String,
    effects: PathBuf,
    delay: Duration,
}

impl Projection for Worker {
    const NAME: &'static str = "ledger";
    type Handles = (Posted,);
    type Error = sqlx::Error;
}

impl Project<Posted, PostgresTx> for Worker {
    async fn project(
        &mut self,
        event: Posted,
        at: &RecordedEvent,
        tx: &mut PostgresTx,
    ) -> Result<(), sqlx::Error> {
        tokio::time::sleep(self.delay).await;
        let sql = format!(
            "INSERT INTO {} (event_id, position, amount) VALUES ($1, $2, $3)",
            self.table
        );
        sqlx::query(AssertSqlSafe(sql))
            .bind(at.event_id)
            .bind(at.position.0 as i64)
            .bind(event.amount)
            .execute(&mut **tx)
            .await?;
        // One short write with O_APPEND: lines of several processes never mix.
        let line = format!("{} {}\n", std::process::id(), at.event_id);
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.effects)
            .map_err(sqlx::Error::Io)?;
        file.write_all(line.as_bytes()).map_err(sqlx::Error::Io)?;
        Ok(())
    }
}

/// Entry point of the runner processes the tests below start (a no-op unless
/// `EVENTSOURCE_TEST_CHILD_SCHEMA` is set): runs the `ledger` projection of that schema until
/// the file `EVENTSOURCE_TEST_CHILD_STOP` exists, and exits with status 1 if `run()` fails.
#[test]
#[ignore = "the runner process the tests below start (with --ignored); nothing to check on its own"]
fn child_runner_process() {
    let Ok(schema) = std::env::var("EVENTSOURCE_TEST_CHILD_SCHEMA") else {
        return;
    };
    let effects = PathBuf::from(std::env::var("EVENTSOURCE_TEST_CHILD_EFFECTS").unwrap());
    let stop = PathBuf::from(std::env::var("EVENTSOURCE_TEST_CHILD_STOP").unwrap());
    let url = std::env::var("EVENTSOURCE_TEST_CHILD_URL").unwrap();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let outcome = runtime.block_on(async move {
        let store = PostgresStore::builder()
            .schema(schema.clone())
            .max_connections(4)
            .connect(&url)
            .await
            .unwrap();
        let worker = Worker {
            table: format!("\"{schema}\".ledger"),
            effects,
            delay: Duration::from_millis(2),
        };
        let mut runner = ProjectionRunner::new(worker, store).with_options(RunnerOptions {
            batch_size: 25,
            backoff: Duration::from_millis(20),
            max_backoff: Duration::from_millis(200),
            poll_interval: Duration::from_millis(100),
            ..RunnerOptions::default()
        });
        runner
            .run(async move {
                while !stop.exists() {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            })
            .await
    });
    if let Err(error) = outcome {
        eprintln!("child runner failed: {error}");
        std::process::exit(1);
    }
}

/// A scratch directory, a store with `EVENTS` posted events and an empty ledger table.
struct Scene {
    store: PostgresStore,
    dir: PathBuf,
    children: Vec<(String, Child)>,
}

impl Scene {
    async fn new() -> Scene {
        let store = fresh_pg_store().await;
        let schema = store.schema().as_str().to_owned();
        sqlx::query(AssertSqlSafe(format!(
            "CREATE TABLE \"{schema}\".ledger (event_id uuid PRIMARY KEY, position bigint NOT NULL, amount bigint NOT NULL)"
        )))
        .execute(store.pool())
        .await
        .unwrap();
        for chunk in 0..(EVENTS / 100) {
            let batch: Vec<_> = (0..100)
                .map(|i| NewEvent::new("ledger.posted", 1, json!({ "amount": chunk * 100 + i })))
                .collect();
            store
                .append(&StreamId::new("ledger", chunk), ExpectedVersion::Any, batch)
                .await
                .unwrap();
        }
        let dir = std::env::temp_dir().join(format!("eventsource-{schema}"));
        std::fs::create_dir_all(&dir).unwrap();
        Scene {
            store,
            dir,
            children: Vec::new(),
        }
    }

    fn effects(&self) -> PathBuf {
        self.dir.join("effects")
    }

    fn stop_file(&self) -> PathBuf {
        self.dir.join("stop")
    }

    /// Starts a runner process whose connections carry `name` as their application name.
    fn spawn(&mut self, name: &str) {
        let url = database_url();
        let separator = if url.contains('?') { '&' } else { '?' };
        let stderr = std::fs::File::create(self.dir.join(format!("{name}.stderr"))).unwrap();
        let child = Command::new(std::env::current_exe().unwrap())
            .args([
                "--ignored",
                "--exact",
                "child_runner_process",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(
                "EVENTSOURCE_TEST_CHILD_SCHEMA",
                self.store.schema().as_str(),
            )
            .env("EVENTSOURCE_TEST_CHILD_EFFECTS", self.effects())
            .env("EVENTSOURCE_TEST_CHILD_STOP", self.stop_file())
            .env(
                "EVENTSOURCE_TEST_CHILD_URL",
                format!("{url}{separator}application_name={name}"),
            )
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .unwrap();
        self.children.push((name.to_owned(), child));
    }

    fn stderr_of(&self, name: &str) -> String {
        std::fs::read_to_string(self.dir.join(format!("{name}.stderr"))).unwrap_or_default()
    }

    async fn applied(&self) -> i64 {
        let sql = format!(
            "SELECT count(*) FROM \"{}\".ledger",
            self.store.schema().as_str()
        );
        sqlx::query_scalar(AssertSqlSafe(sql))
            .fetch_one(self.store.pool())
            .await
            .unwrap()
    }

    async fn wait_for_applied(&mut self, at_least: i64) {
        let deadline = Instant::now() + Duration::from_secs(90);
        loop {
            let applied = self.applied().await;
            if applied >= at_least {
                return;
            }
            for (name, child) in &mut self.children {
                if let Some(status) = child.try_wait().unwrap() {
                    let stderr = std::fs::read_to_string(self.dir.join(format!("{name}.stderr")))
                        .unwrap_or_default();
                    // A killed child is expected to be gone; any other exit is a failure.
                    assert!(
                        !status.success() && status.code().is_none(),
                        "runner {name} exited ({status}) with {applied} applied: {stderr}"
                    );
                }
            }
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {at_least} applied events ({applied} so far)"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// The server process holding the projection's lease, and its application name.
    async fn lease_holder(&self) -> (i32, String) {
        let key = format!("eventsource.projection:{}:ledger", self.store.schema());
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let row = sqlx::query(
                "SELECT l.pid, a.application_name FROM pg_catalog.pg_locks l \
                   JOIN pg_catalog.pg_stat_activity a ON a.pid = l.pid \
                  WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 1 \
                    AND l.classid::bigint = (hashtextextended($1, 0) >> 32) & 4294967295 \
                    AND l.objid::bigint = hashtextextended($1, 0) & 4294967295",
            )
            .bind(&key)
            .fetch_optional(self.store.pool())
            .await
            .unwrap();
            if let Some(row) = row {
                return (row.get(0), row.get(1));
            }
            assert!(Instant::now() < deadline, "nobody took the lease");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Stops every runner still alive and checks that each stopped cleanly.
    async fn stop(&mut self) {
        std::fs::write(self.stop_file(), b"stop").unwrap();
        let deadline = Instant::now() + Duration::from_secs(60);
        for index in 0..self.children.len() {
            loop {
                let (name, child) = &mut self.children[index];
                match child.try_wait().unwrap() {
                    Some(status) if status.code().is_none() => break, // killed by a test
                    Some(status) => {
                        let name = name.clone();
                        assert!(
                            status.success(),
                            "runner {name} failed: {}",
                            self.stderr_of(&name)
                        );
                        break;
                    }
                    None => {
                        assert!(Instant::now() < deadline, "runner {name} did not stop");
                        tokio::time::sleep(Duration::from_millis(20)).await;
                    }
                }
            }
        }
    }

    /// The read model equals applying every stored event once: the same event ids, positions
    /// and amounts (what a rebuild would write).
    async fn assert_read_model_is_exact(&self) {
        let schema = self.store.schema().as_str();
        let expected: Vec<(uuid::Uuid, i64, i64)> = sqlx::query(AssertSqlSafe(format!(
            "SELECT event_id, position, (payload->>'amount')::bigint FROM \"{schema}\".events ORDER BY position"
        )))
        .fetch_all(self.store.pool())
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect();
        let actual: Vec<(uuid::Uuid, i64, i64)> = sqlx::query(AssertSqlSafe(format!(
            "SELECT event_id, position, amount FROM \"{schema}\".ledger ORDER BY position"
        )))
        .fetch_all(self.store.pool())
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect();
        assert_eq!(actual.len(), EVENTS as usize);
        assert_eq!(actual, expected, "the read model equals a rebuild");
    }

    /// The side-effect lines: (process id, event id), in the order they were written.
    fn side_effects(&self) -> Vec<(u32, String)> {
        read_effects(&self.effects())
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

fn read_effects(path: &Path) -> Vec<(u32, String)> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(|line| {
            let (pid, event) = line.split_once(' ').unwrap();
            (pid.parse().unwrap(), event.to_owned())
        })
        .collect()
}

/// How many times the writing process changes along the lines.
fn handovers(effects: &[(u32, String)]) -> usize {
    effects.windows(2).filter(|w| w[0].0 != w[1].0).count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_terminated_lease_connection_hands_over_without_two_runners_at_once() {
    const TERMINATIONS: usize = 3;
    let mut scene = Scene::new().await;
    scene.spawn("runner-a");
    scene.wait_for_applied(50).await;
    scene.spawn("runner-b");
    // Let the second runner queue up for the lease.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut holders = Vec::new();
    for _ in 0..TERMINATIONS {
        let before = scene.applied().await;
        let (pid, holder) = scene.lease_holder().await;
        holders.push(holder);
        let ended: bool = sqlx::query_scalar("SELECT pg_terminate_backend($1)")
            .bind(pid)
            .fetch_one(scene.store.pool())
            .await
            .unwrap();
        assert!(ended);
        // The other runner takes over and gets on with it.
        scene.wait_for_applied((before + 150).min(EVENTS)).await;
    }
    scene.wait_for_applied(EVENTS).await;
    let (_, last_holder) = scene.lease_holder().await;
    holders.push(last_holder);
    scene.stop().await;

    scene.assert_read_model_is_exact().await;
    let effects = scene.side_effects();
    let mut once: HashMap<&str, usize> = HashMap::new();
    for (_, event) in &effects {
        *once.entry(event.as_str()).or_default() += 1;
    }
    assert_eq!(effects.len(), EVENTS as usize, "one side effect per event");
    assert!(
        once.values().all(|&n| n == 1),
        "no event's side effect twice"
    );
    // Runners took turns: each termination moved the work once to the other process, and the
    // lines never alternate as they would if both processed batches at once.
    assert!(
        handovers(&effects) <= TERMINATIONS,
        "{} handovers for {TERMINATIONS} terminations",
        handovers(&effects)
    );
    assert!(
        holders.windows(2).all(|w| w[0] != w[1]),
        "the lease went to the other runner each time: {holders:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_active_runner_killed_with_sigkill_leaves_a_read_model_equal_to_a_rebuild() {
    const KILLS: usize = 3;
    let mut scene = Scene::new().await;
    scene.spawn("runner-0");
    scene.spawn("runner-1");
    scene.wait_for_applied(50).await;
    for kill in 0..KILLS {
        let before = scene.applied().await;
        let (_, holder) = scene.lease_holder().await;
        let (_, child) = scene
            .children
            .iter_mut()
            .find(|(name, _)| *name == holder)
            .unwrap_or_else(|| panic!("no child named {holder}"));
        // SIGKILL, mid-batch: the handler is slow and batches follow each other.
        child.kill().unwrap();
        child.wait().unwrap();
        scene.spawn(&format!("runner-{}", kill + 2));
        scene.wait_for_applied((before + 100).min(EVENTS)).await;
    }
    scene.wait_for_applied(EVENTS).await;
    scene.stop().await;

    scene.assert_read_model_is_exact().await;
    // At least once outside the database: a killed batch's side effects happened, its rows
    // did not commit, and the next runner applied those events again.
    let effects = scene.side_effects();
    let mut seen: HashMap<&str, usize> = HashMap::new();
    for (_, event) in &effects {
        *seen.entry(event.as_str()).or_default() += 1;
    }
    assert_eq!(
        seen.len(),
        EVENTS as usize,
        "every event's side effect happened"
    );
}
