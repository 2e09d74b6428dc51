//! The `eventsource` binary against a real PostgreSQL server, on events written by the library.
//!
//! Every test works in a schema of its own. The tests need `DATABASE_URL` (`scripts/test.sh`
//! starts a throwaway cluster and sets it); without it they fail, they never skip.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead, BufReader};
use std::process::{Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use eventsource_core::{EventStore, ExpectedVersion, Metadata, NewEvent, StreamId};
use eventsource_postgres::sqlx::{self, AssertSqlSafe};
use eventsource_postgres::{PostgresStore, SCHEMA_VERSION};
use serde_json::{Value, json};
use uuid::Uuid;

fn database_url() -> String {
    match std::env::var("DATABASE_URL") {
        Ok(url) if !url.trim().is_empty() => url,
        _ => panic!(
            "DATABASE_URL is not set: the CLI tests need a PostgreSQL server. Run \
             `scripts/test.sh` (it starts a throwaway PostgreSQL and sets DATABASE_URL), or \
             export DATABASE_URL=postgres://USER@HOST:PORT/DATABASE"
        ),
    }
}

fn unique_schema() -> String {
    format!("t_{}", Uuid::now_v7().simple())
}

/// A store in a new, migrated schema.
async fn fresh_store() -> PostgresStore {
    let store = PostgresStore::builder()
        .schema(unique_schema())
        .max_connections(4)
        .acquire_timeout(Duration::from_secs(20))
        .connect(&database_url())
        .await
        .unwrap_or_else(|e| panic!("the CLI tests need a reachable PostgreSQL server: {e}"));
    store.migrate().await.unwrap();
    store
}

async fn sql(store: &PostgresStore, statement: &str) {
    let statement = statement.replace("{s}", &format!("\"{}\"", store.schema()));
    sqlx::raw_sql(AssertSqlSafe(statement))
        .execute(store.pool())
        .await
        .unwrap();
}

fn metadata(request: &str) -> Metadata {
    let mut metadata = Metadata {
        correlation_id: Some(Uuid::now_v7()),
        ..Metadata::default()
    };
    metadata.insert("request", &request).unwrap();
    metadata
}

fn event(name: &str, payload: Value) -> NewEvent {
    NewEvent::new(name, 1, payload).with_metadata(metadata(name))
}

async fn append(store: &PostgresStore, stream: &str, events: Vec<NewEvent>) {
    store
        .append(&StreamId::from_raw(stream), ExpectedVersion::Any, events)
        .await
        .unwrap();
}

/// The bank: `account-ada` (3 events), `account-bob` (2), `transfer-t1` (1); positions 1..=6.
async fn seed(store: &PostgresStore) {
    append(
        store,
        "account-ada",
        vec![
            NewEvent::new(
                "account.opened",
                2,
                json!({ "owner": "Ada", "overdraft_limit": 0 }),
            )
            .with_metadata(Metadata {
                idempotency_key: Some("open-ada".to_owned()),
                ..metadata("open")
            }),
        ],
    )
    .await;
    append(
        store,
        "account-ada",
        vec![event("account.deposited", json!({ "amount": 100 }))],
    )
    .await;
    append(
        store,
        "account-bob",
        vec![
            event("account.opened", json!({ "owner": "Bob" })),
            event("account.deposited", json!({ "amount": 25 })),
        ],
    )
    .await;
    append(
        store,
        "transfer-t1",
        vec![event(
            "transfer.requested",
            json!({ "from": "ada", "to": "bob" }),
        )],
    )
    .await;
    append(
        store,
        "account-ada",
        vec![event("account.withdrawn", json!({ "amount": 30 }))],
    )
    .await;
}

/// The binary, with the database and schema of `store` (unless `args` say otherwise).
fn cli(store: &PostgresStore) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_eventsource"));
    command
        .env("DATABASE_URL", database_url())
        .args(["--schema", store.schema().as_str()])
        .stdin(Stdio::null());
    command
}

fn bare_cli() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_eventsource"));
    command.env_remove("DATABASE_URL").stdin(Stdio::null());
    command
}

fn run(command: &mut Command, args: &[&str]) -> Output {
    command
        .args(args)
        .output()
        .expect("the eventsource binary runs")
}

fn stdout(output: &Output) -> String {
    String::from_utf8(output.stdout.clone()).unwrap()
}

fn stderr(output: &Output) -> String {
    String::from_utf8(output.stderr.clone()).unwrap()
}

/// Exit status 0; the stdout.
fn success(output: Output) -> String {
    assert_eq!(
        output.status.code(),
        Some(0),
        "stdout: {}\nstderr: {}",
        stdout(&output),
        stderr(&output)
    );
    stdout(&output)
}

/// Exit status 2 with a one-line message on stderr containing `needle`.
fn failure(output: Output, needle: &str) -> String {
    let message = stderr(&output);
    assert_eq!(
        output.status.code(),
        Some(2),
        "stdout: {}\nstderr: {message}",
        stdout(&output)
    );
    assert_eq!(message.trim_end().lines().count(), 1, "one line: {message}");
    assert!(message.starts_with("eventsource: error: "), "{message}");
    assert!(
        message.contains(needle),
        "{message:?} should contain {needle:?}"
    );
    message
}

/// Exit status 2 with clap's usage message containing `needle`.
fn usage_error(output: Output, needle: &str) {
    let message = stderr(&output);
    assert_eq!(output.status.code(), Some(2), "stderr: {message}");
    assert!(message.starts_with("error: "), "{message}");
    assert!(
        message.contains(needle),
        "{message:?} should contain {needle:?}"
    );
}

fn json_of(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
}

/// Runs `log --json` until it lists `count` events: an open transaction of another test holds
/// the log's horizon back for a moment, and gap-safe reads wait for it.
fn log_json(store: &PostgresStore, args: &[&str], count: usize) -> Vec<Value> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let mut all = vec!["--json", "log"];
        all.extend_from_slice(args);
        let document = json_of(&success(run(&mut cli(store), &all)));
        let events = document["events"].as_array().unwrap().clone();
        assert_eq!(document["count"], json!(events.len()));
        if events.len() >= count || Instant::now() > deadline {
            return events;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn positions(events: &[Value]) -> Vec<u64> {
    events
        .iter()
        .map(|e| e["position"].as_u64().unwrap())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migrate_creates_the_store_and_then_has_nothing_to_do() {
    let schema = unique_schema();
    let mut command = bare_cli();
    command.env("DATABASE_URL", database_url());
    let before = failure(
        run(&mut command, &["--schema", &schema, "status"]),
        &format!("schema `{schema}` does not exist"),
    );
    assert!(before.contains("run `eventsource migrate"), "{before}");

    let first = success(run(
        bare_cli().env("DATABASE_URL", database_url()),
        &["migrate", "--schema", &schema],
    ));
    assert_eq!(
        first.trim(),
        format!("migrated schema `{schema}` from schema version 0 to {SCHEMA_VERSION}")
    );
    let again = json_of(&success(run(
        bare_cli().env("DATABASE_URL", database_url()),
        &["--schema", &schema, "--json", "migrate"],
    )));
    assert_eq!(
        again,
        json!({ "schema": schema, "from_version": SCHEMA_VERSION, "schema_version": SCHEMA_VERSION, "applied": 0 })
    );
    let status = json_of(&success(run(
        bare_cli().env("DATABASE_URL", database_url()),
        &["--schema", &schema, "--json", "status"],
    )));
    assert_eq!(status["events"], json!(0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_shows_counts_head_lag_and_projection_checkpoints() {
    let store = fresh_store().await;
    seed(&store).await;
    // A read model that applied the first four events of the log.
    sql(
        &store,
        "INSERT INTO {s}.checkpoints (projection, transaction_id, position) \
         SELECT 'balances', transaction_id::text::bigint, position FROM {s}.events WHERE position = 4",
    )
    .await;

    let status = json_of(&success(run(&mut cli(&store), &["status", "--json"])));
    assert_eq!(status["schema"], json!(store.schema().as_str()));
    assert_eq!(status["schema_version"], json!(SCHEMA_VERSION));
    assert_eq!(status["events"], json!(6));
    assert_eq!(status["streams"], json!(3));
    assert_eq!(status["head_position"], json!(6));
    assert!(status["horizon_lag_seconds"].as_f64().unwrap() >= 0.0);
    assert!(status["last_recorded_at"].is_string());
    let projections = status["projections"].as_array().unwrap();
    assert_eq!(projections.len(), 1);
    assert_eq!(projections[0]["name"], json!("balances"));
    assert_eq!(projections[0]["position"], json!(4));
    assert_eq!(projections[0]["behind"], json!(2));

    let text = success(run(&mut cli(&store), &["status"]));
    assert!(text.contains("events         6"), "{text}");
    assert!(text.contains("streams        3"), "{text}");
    assert!(text.contains("head position  6"), "{text}");
    assert!(text.contains("horizon lag"), "{text}");
    let row = text
        .lines()
        .find(|line| line.starts_with("balances"))
        .unwrap_or_else(|| panic!("no projection row: {text}"));
    let cells: Vec<&str> = row.split_whitespace().collect();
    assert_eq!(cells[2..4], ["4", "2"], "{row}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stream_prints_the_audit_trail() {
    let store = fresh_store().await;
    seed(&store).await;
    let trail = json_of(&success(run(
        &mut cli(&store),
        &["--json", "stream", "account-ada"],
    )));
    assert_eq!(trail["stream"], json!("account-ada"));
    assert_eq!(trail["category"], json!("account"));
    assert_eq!(trail["head_version"], json!(3));
    assert_eq!(trail["version"], json!(3));
    let events = trail["events"].as_array().unwrap();
    let names: Vec<&str> = events.iter().map(|e| e["name"].as_str().unwrap()).collect();
    assert_eq!(
        names,
        ["account.opened", "account.deposited", "account.withdrawn"]
    );
    assert_eq!(positions(events), [1, 2, 6]);
    assert_eq!(events[0]["schema_version"], json!(2));
    assert_eq!(
        events[0]["payload"],
        json!({ "owner": "Ada", "overdraft_limit": 0 })
    );
    assert_eq!(
        events[0]["metadata"]["custom"],
        json!({ "request": "open" })
    );
    assert!(events[0]["metadata"]["correlation_id"].is_string());
    assert_eq!(events[0]["metadata"]["idempotency_key"], json!("open-ada"));
    assert_eq!(events[1]["metadata"].get("idempotency_key"), None);
    assert_eq!(events[2]["version"], json!(3));

    let text = success(run(&mut cli(&store), &["stream", "account-ada"]));
    assert!(
        text.starts_with("stream account-ada (category account), version 3\n"),
        "{text}"
    );
    assert!(text.contains("v1  position 1  "), "{text}");
    assert!(text.contains("account.opened  (schema v2)"), "{text}");
    assert!(text.contains("v3  position 6  "), "{text}");
    assert!(text.contains("  key open-ada\n"), "{text}");
    assert_eq!(text.matches("  key ").count(), 1, "{text}");
    assert!(
        text.contains("    metadata  {\"correlation_id\":"),
        "{text}"
    );
    // Pretty-printed payloads, one field a line.
    assert!(text.contains("\n      \"owner\": \"Ada\""), "{text}");
    assert!(text.contains("\n      \"amount\": 30\n"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stream_travels_in_time_by_version_and_by_instant() {
    let store = fresh_store().await;
    seed(&store).await;
    let at_v2 = json_of(&success(run(
        &mut cli(&store),
        &["--json", "stream", "account-ada", "--to-version", "2"],
    )));
    assert_eq!(at_v2["version"], json!(2));
    assert_eq!(at_v2["head_version"], json!(3));
    assert_eq!(at_v2["to_version"], json!(2));
    assert_eq!(positions(at_v2["events"].as_array().unwrap()), [1, 2]);
    let text = success(run(
        &mut cli(&store),
        &["stream", "account-ada", "--to-version", "2"],
    ));
    assert!(
        text.contains("up to version 2: version 2 of 3 (2 events shown)"),
        "{text}"
    );
    assert!(!text.contains("account.withdrawn"), "{text}");

    // As of the moment the deposit was recorded: the withdrawal after it is not shown.
    let deposited_at = at_v2["events"][1]["recorded_at"]
        .as_str()
        .unwrap()
        .to_owned();
    let as_of = json_of(&success(run(
        &mut cli(&store),
        &["--json", "stream", "account-ada", "--as-of", &deposited_at],
    )));
    assert_eq!(as_of["version"], json!(2));
    assert_eq!(as_of["as_of"], json!(deposited_at));
    assert_eq!(positions(as_of["events"].as_array().unwrap()), [1, 2]);

    // Before the stream began: no events, version 0.
    let before = json_of(&success(run(
        &mut cli(&store),
        &[
            "--json",
            "stream",
            "account-ada",
            "--as-of",
            "2000-01-01T00:00:00Z",
        ],
    )));
    assert_eq!(before["version"], json!(0));
    assert_eq!(before["events"], json!([]));

    // Both: the earlier point wins.
    let both = json_of(&success(run(
        &mut cli(&store),
        &[
            "--json",
            "stream",
            "account-ada",
            "--to-version",
            "1",
            "--as-of",
            &deposited_at,
        ],
    )));
    assert_eq!(both["version"], json!(1));

    usage_error(
        run(
            &mut cli(&store),
            &["stream", "account-ada", "--as-of", "yesterday"],
        ),
        "not an RFC 3339 time",
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_stream_is_an_error() {
    let store = fresh_store().await;
    seed(&store).await;
    failure(
        run(&mut cli(&store), &["stream", "account-nobody"]),
        &format!(
            "stream `account-nobody` does not exist in schema `{}`",
            store.schema()
        ),
    );
    failure(
        run(&mut cli(&store), &["--json", "stream", "account-nobody"]),
        "does not exist",
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn log_lists_the_global_log_with_filters() {
    let store = fresh_store().await;
    seed(&store).await;

    let all = log_json(&store, &[], 6);
    assert_eq!(positions(&all), [1, 2, 3, 4, 5, 6]);
    assert_eq!(all[0]["metadata"]["idempotency_key"], json!("open-ada"));
    let text = success(run(&mut cli(&store), &["log", "--limit", "2"]));
    assert!(
        text.lines().next().unwrap().ends_with(" key open-ada"),
        "{text}"
    );
    assert!(!text.lines().nth(1).unwrap().contains(" key "), "{text}");
    assert_eq!(all[2]["stream"], json!("account-bob"));
    assert!(all[0]["checkpoint"].as_str().unwrap().ends_with(":1"));

    let transfers = log_json(&store, &["--category", "transfer"], 1);
    assert_eq!(positions(&transfers), [5]);
    let money = log_json(
        &store,
        &["--name", "account.deposited", "--name", "account.withdrawn"],
        3,
    );
    assert_eq!(positions(&money), [2, 4, 6]);
    let opened = log_json(
        &store,
        &["--category", "account", "--name", "account.opened"],
        2,
    );
    assert_eq!(positions(&opened), [1, 3]);
    assert_eq!(
        positions(&log_json(&store, &["--from-position", "4"], 3)),
        [4, 5, 6]
    );
    assert_eq!(positions(&log_json(&store, &["--limit", "2"], 2)), [1, 2]);
    assert_eq!(
        positions(&log_json(
            &store,
            &["--from-position", "3", "--limit", "2"],
            2
        )),
        [3, 4]
    );

    // A time range: from the second event's instant to the fourth's.
    let since = all[1]["recorded_at"].as_str().unwrap();
    let until = all[3]["recorded_at"].as_str().unwrap();
    let window = log_json(&store, &["--since", since, "--until", until], 3);
    assert_eq!(positions(&window), [2, 3, 4]);
    assert_eq!(
        log_json(&store, &["--since", "2999-01-01T00:00:00Z"], 0),
        Vec::<Value>::new()
    );

    let text = success(run(&mut cli(&store), &["log", "--category", "transfer"]));
    assert!(
        text.contains(
            "transfer-t1  v1  transfer.requested (schema v1)  {\"from\":\"ada\",\"to\":\"bob\"}"
        ),
        "{text}"
    );
    assert_eq!(text.lines().count(), 1, "{text}");

    usage_error(
        run(&mut cli(&store), &["log", "--follow", "--until", since]),
        "cannot be used with",
    );
}

/// Reads the lines a child prints, on a thread, so a test can wait with a deadline.
fn lines_of(child: &mut std::process::Child) -> mpsc::Receiver<String> {
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { return };
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    rx
}

fn next_event(lines: &mpsc::Receiver<String>, child: &mut std::process::Child) -> Value {
    match lines.recv_timeout(Duration::from_secs(30)) {
        Ok(line) => json_of(&line),
        Err(e) => {
            let _ = child.kill();
            panic!("no event from `log --follow` within 30 s: {e}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn log_follow_prints_new_events_as_json_lines() {
    let store = fresh_store().await;
    append(
        &store,
        "account-ada",
        vec![event("account.deposited", json!({ "amount": 1 }))],
    )
    .await;
    // A poll interval far beyond the deadline: only NOTIFY can wake the follower in time.
    let mut child = cli(&store)
        .args([
            "--json",
            "log",
            "--follow",
            "--category",
            "account",
            "--poll-interval",
            "600000",
            "--limit",
            "3",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let lines = lines_of(&mut child);
    let first = next_event(&lines, &mut child);
    assert_eq!(first["position"], json!(1));
    assert_eq!(first["payload"], json!({ "amount": 1 }));

    append(
        &store,
        "transfer-t9",
        vec![event("transfer.requested", json!({}))],
    )
    .await;
    append(
        &store,
        "account-bob",
        vec![event("account.opened", json!({ "owner": "Bob" }))],
    )
    .await;
    let second = next_event(&lines, &mut child);
    assert_eq!(
        second["stream"],
        json!("account-bob"),
        "the category filter applies"
    );
    assert_eq!(second["position"], json!(3));

    append(
        &store,
        "account-bob",
        vec![event("account.deposited", json!({ "amount": 2 }))],
    )
    .await;
    let third = next_event(&lines, &mut child);
    assert_eq!(third["version"], json!(2));
    // `--limit 3` reached: the follower ends by itself.
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("`log --follow --limit 3` did not end after 3 events");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(status.success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn log_follow_does_not_skip_an_event_that_commits_late() {
    let store = fresh_store().await;
    append(
        &store,
        "account-ada",
        vec![event("account.opened", json!({}))],
    )
    .await;
    let mut child = cli(&store)
        .args([
            "--json",
            "log",
            "--follow",
            "--poll-interval",
            "50",
            "--limit",
            "3",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let lines = lines_of(&mut child);
    assert_eq!(next_event(&lines, &mut child)["position"], json!(1));

    // `slow` draws position 2 but commits after `fast` (position 3) did: a reader of
    // `position > n` would show 3, move past 2, and never show the late event.
    let mut open = store.pool().begin().await.unwrap();
    store
        .append_in(
            &mut open,
            &StreamId::from_raw("account-slow"),
            ExpectedVersion::NoStream,
            vec![event("account.opened", json!({ "late": true }))],
        )
        .await
        .unwrap();
    append(
        &store,
        "account-fast",
        vec![event("account.opened", json!({}))],
    )
    .await;
    // Give the follower time to poll (every 50 ms) while `fast` is committed and `slow` is not.
    tokio::time::sleep(Duration::from_millis(700)).await;
    open.commit().await.unwrap();

    let second = next_event(&lines, &mut child);
    let third = next_event(&lines, &mut child);
    assert_eq!(second["stream"], json!("account-slow"));
    assert_eq!(second["position"], json!(2));
    assert_eq!(third["stream"], json!("account-fast"));
    assert_eq!(third["position"], json!(3));
    let deadline = Instant::now() + Duration::from_secs(30);
    while child.try_wait().unwrap().is_none() {
        assert!(Instant::now() < deadline, "the follower did not end");
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn projection_list_and_reset() {
    let store = fresh_store().await;
    seed(&store).await;
    sql(
        &store,
        "INSERT INTO {s}.checkpoints (projection, transaction_id, position) \
         SELECT 'balances', transaction_id::text::bigint, position FROM {s}.events WHERE position = 6; \
         INSERT INTO {s}.checkpoints (projection, transaction_id, position) VALUES ('audit', 0, 0); \
         INSERT INTO {s}.checkpoints (projection, transaction_id, position, event_names) \
         SELECT 'openings', transaction_id::text::bigint, position, '{account.opened}' \
           FROM {s}.events WHERE position = 1",
    )
    .await;

    let list = json_of(&success(run(
        &mut cli(&store),
        &["projection", "list", "--json"],
    )));
    let projections = list["projections"].as_array().unwrap();
    let names: Vec<&str> = projections
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["audit", "balances", "openings"]);
    assert_eq!(projections[0]["behind"], json!(6));
    assert_eq!(projections[0]["checkpoint"], json!("0:0"));
    assert_eq!(projections[1]["behind"], json!(0));
    assert_eq!(
        projections[2]["behind"],
        json!(1),
        "only the openings after its checkpoint"
    );
    assert_eq!(projections[1]["reset_requested_at"], json!(null));
    let text = success(run(&mut cli(&store), &["projection", "list"]));
    assert!(text.starts_with("PROJECTION  CHECKPOINT"), "{text}");
    assert!(text.contains("\naudit  "), "{text}");

    // Not from a terminal and without --yes: refused, nothing deleted.
    failure(
        run(&mut cli(&store), &["projection", "reset", "balances"]),
        "refusing to reset projection `balances` without confirmation: pass --yes",
    );
    let list = json_of(&success(run(
        &mut cli(&store),
        &["--json", "projection", "list"],
    )));
    assert_eq!(list["projections"].as_array().unwrap().len(), 3);
    assert_eq!(list["projections"][1]["reset_requested_at"], json!(null));

    failure(
        run(
            &mut cli(&store),
            &["projection", "reset", "balance", "--yes"],
        ),
        "projection `balance` has no checkpoint",
    );

    let text = success(run(
        &mut cli(&store),
        &["projection", "reset", "balances", "--yes"],
    ));
    assert!(
        text.starts_with("reset requested for projection `balances`"),
        "{text}"
    );
    assert!(text.contains("never applied again on top"), "{text}");
    let reset = json_of(&success(run(
        &mut cli(&store),
        &["--json", "projection", "reset", "audit", "-y"],
    )));
    assert_eq!(reset["reset"], json!(true));
    assert_eq!(reset["previous_checkpoint"], json!("0:0"));
    // Nothing deleted: both are marked, and have the whole log to apply again.
    let list = json_of(&success(run(
        &mut cli(&store),
        &["--json", "projection", "list"],
    )));
    let projections = list["projections"].as_array().unwrap();
    assert_eq!(projections.len(), 3);
    assert!(projections[0]["reset_requested_at"].is_string());
    assert!(projections[1]["reset_requested_at"].is_string());
    assert_eq!(projections[1]["behind"], json!(6));
    assert_eq!(
        projections[1]["position"],
        json!(6),
        "the checkpoint stays where it was"
    );
    assert_eq!(projections[2]["reset_requested_at"], json!(null));
    let text = success(run(&mut cli(&store), &["projection", "list"]));
    assert!(text.contains("pending since"), "{text}");
    // Asking again is harmless.
    success(run(
        &mut cli(&store),
        &["projection", "reset", "audit", "--yes"],
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_passes_on_a_healthy_store() {
    let store = fresh_store().await;
    seed(&store).await;
    let text = success(run(&mut cli(&store), &["verify"]));
    assert!(text.contains("6 events in 3 streams"), "{text}");
    assert!(text.contains("no problems found"), "{text}");
    let report = json_of(&success(run(&mut cli(&store), &["verify", "--json"])));
    assert_eq!(report["ok"], json!(true));
    assert_eq!(report["problems"], json!(0));
    assert_eq!(report["findings"], json!([]));
}

fn finding<'a>(report: &'a Value, check: &str, stream: Option<&str>) -> &'a Value {
    report["findings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["check"] == json!(check) && stream.is_none_or(|s| f["stream"] == json!(s)))
        .unwrap_or_else(|| panic!("no `{check}` finding for {stream:?}: {report:#}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_locates_a_version_gap_a_bad_head_and_bad_rows() {
    let store = fresh_store().await;
    seed(&store).await;
    // The trigger forbids UPDATE and DELETE, not INSERT: rows written around `append()`.
    sql(
        &store,
        "INSERT INTO {s}.events (stream_id, version, event_id, name, schema_version, payload, metadata) \
         VALUES ('account-ada', 5, gen_random_uuid(), 'account.deposited', 1, '{\"amount\": 1}', '{}'); \
         INSERT INTO {s}.events (stream_id, version, event_id, name, schema_version, payload, metadata) \
         VALUES ('account-bob', 3, gen_random_uuid(), 'account.deposited', 0, '\"7\"', 'null'); \
         INSERT INTO {s}.streams (stream_id, version) VALUES ('account-ghost', 2); \
         UPDATE {s}.streams SET version = 3 WHERE stream_id = 'account-bob'; \
         INSERT INTO {s}.checkpoints (projection, transaction_id, position) VALUES ('balances', 1, 99)",
    )
    .await;

    let output = run(&mut cli(&store), &["verify", "--json"]);
    assert_eq!(output.status.code(), Some(1), "{}", stderr(&output));
    let report = json_of(&stdout(&output));
    assert_eq!(report["ok"], json!(false));

    let gap = finding(&report, "stream-versions", Some("account-ada"));
    assert_eq!(gap["version"], json!(5));
    assert_eq!(gap["position"], json!(7));
    assert_eq!(gap["severity"], json!("problem"));
    assert!(
        gap["message"]
            .as_str()
            .unwrap()
            .contains("version 4 is missing"),
        "{gap}"
    );
    // `streams` still says 3 for ada, whose last event is now 5.
    let head = finding(&report, "stream-head", Some("account-ada"));
    assert!(
        head["message"]
            .as_str()
            .unwrap()
            .contains("`streams` says version 3, but the last event is version 5"),
        "{head}"
    );
    let metadata = finding(&report, "metadata", Some("account-bob"));
    assert_eq!(metadata["version"], json!(3));
    assert_eq!(metadata["position"], json!(8));
    assert!(
        metadata["message"].as_str().unwrap().contains("is null"),
        "{metadata}"
    );
    let schema_version = finding(&report, "schema-version", Some("account-bob"));
    assert_eq!(schema_version["version"], json!(3));
    let payload = finding(&report, "payload", Some("account-bob"));
    assert_eq!(payload["severity"], json!("warning"));
    assert!(
        payload["message"]
            .as_str()
            .unwrap()
            .contains("a JSON string"),
        "{payload}"
    );
    let ghost = finding(&report, "stream-head", Some("account-ghost"));
    assert!(
        ghost["message"].as_str().unwrap().contains("has no events"),
        "{ghost}"
    );
    let checkpoint = finding(&report, "checkpoints", None);
    assert_eq!(checkpoint["projection"], json!("balances"));
    assert_eq!(report["problems"], json!(6));
    assert_eq!(report["warnings"], json!(1));

    let output = run(&mut cli(&store), &["verify"]);
    assert_eq!(output.status.code(), Some(1));
    let text = stdout(&output);
    assert!(text.contains("6 problems, 1 warning"), "{text}");
    let row = text
        .lines()
        .find(|line| line.starts_with("problem   stream-versions"))
        .unwrap_or_else(|| panic!("no gap row: {text}"));
    let cells: Vec<&str> = row.split_whitespace().collect();
    assert_eq!(cells[2..5], ["account-ada", "5", "7"], "{row}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_finds_a_disabled_immutability_trigger() {
    let store = fresh_store().await;
    seed(&store).await;
    sql(
        &store,
        "ALTER TABLE {s}.events DISABLE TRIGGER events_immutable",
    )
    .await;
    let output = run(&mut cli(&store), &["--json", "verify"]);
    assert_eq!(output.status.code(), Some(1));
    let report = json_of(&stdout(&output));
    let trigger = finding(&report, "immutability", None);
    assert!(
        trigger["message"]
            .as_str()
            .unwrap()
            .contains("trigger `events_immutable` on `events` is disabled"),
        "{trigger}"
    );
    assert_eq!(report["problems"], json!(1));

    sql(&store, "DROP TRIGGER events_no_truncate ON {s}.events").await;
    let report = json_of(&stdout(&run(&mut cli(&store), &["--json", "verify"])));
    assert_eq!(report["problems"], json!(2));
    assert!(
        report
            .to_string()
            .contains("trigger `events_no_truncate` on `events` is missing"),
        "{report}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_warnings_fail_only_with_strict() {
    let store = fresh_store().await;
    // A unit-struct event serializes to `null`: legal, but worth a look.
    append(
        &store,
        "clock-1",
        vec![NewEvent::new("clock.ticked", 1, Value::Null)],
    )
    .await;
    let text = success(run(&mut cli(&store), &["verify"]));
    assert!(text.contains("0 problems, 1 warning"), "{text}");
    assert!(text.contains("a JSON null, not an object"), "{text}");
    let output = run(&mut cli(&store), &["verify", "--strict"]);
    assert_eq!(output.status.code(), Some(1));
    assert!(stdout(&output).contains("1 problem, 0 warnings"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_reports_a_schema_from_a_newer_release() {
    let store = fresh_store().await;
    sql(
        &store,
        "INSERT INTO {s}.schema_migrations (version, description) VALUES (99, 'from the future')",
    )
    .await;
    let output = run(&mut cli(&store), &["--json", "verify"]);
    assert_eq!(output.status.code(), Some(1));
    let report = json_of(&stdout(&output));
    assert!(
        finding(&report, "schema-version", None)["message"]
            .as_str()
            .unwrap()
            .contains("schema version 99 is newer"),
        "{report}"
    );
    // Other commands refuse such a schema.
    failure(
        run(&mut cli(&store), &["status"]),
        "is at schema version 99, written by a newer eventsource",
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_schema_without_the_store_says_to_migrate() {
    let store = fresh_store().await;
    let empty = unique_schema();
    sql(&store, &format!("CREATE SCHEMA {empty}")).await;
    for command in [
        &["status"][..],
        &["stream", "account-ada"],
        &["log"],
        &["projection", "list"],
        &["verify"],
    ] {
        let mut args = vec!["--schema", empty.as_str()];
        args.extend_from_slice(command);
        let message = failure(
            run(bare_cli().env("DATABASE_URL", database_url()), &args),
            &format!("schema `{empty}` holds no event store"),
        );
        assert!(
            message.contains(&format!("run `eventsource migrate --schema {empty}`")),
            "{message}"
        );
    }
}

#[test]
fn connection_problems_are_one_line_errors() {
    // No database at all.
    failure(
        run(&mut bare_cli(), &["status"]),
        "no database given: pass --database-url",
    );
    // A URL that does not parse.
    failure(
        run(&mut bare_cli(), &["--database-url", "not a url", "status"]),
        "invalid PostgreSQL connection URL",
    );
    // A port nobody listens on.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("postgres://nobody@127.0.0.1:{port}/nothing");
    failure(
        run(&mut bare_cli(), &["--database-url", &url, "status"]),
        &format!("cannot connect to PostgreSQL at 127.0.0.1:{port}"),
    );
    // A server that accepts the connection and never answers.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!(
        "postgres://nobody@127.0.0.1:{}/nothing",
        silent.local_addr().unwrap().port()
    );
    failure(
        run(
            bare_cli().env("DATABASE_URL", &url),
            &["--connect-timeout", "1", "verify"],
        ),
        "no answer within 1 s",
    );
    // A database that does not exist on a real server.
    let real = database_url();
    let base = real
        .rsplit_once('/')
        .map_or(real.as_str(), |(base, _)| base);
    failure(
        run(
            &mut bare_cli(),
            &[
                "--database-url",
                &format!("{base}/no_such_database"),
                "status",
            ],
        ),
        "no_such_database",
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_arguments_exit_with_status_two() {
    let store = fresh_store().await;
    usage_error(
        run(&mut cli(&store), &["stream", "x", "--to-version", "0"]),
        "--to-version",
    );
    usage_error(
        run(
            bare_cli().env("DATABASE_URL", database_url()),
            &["--schema", "Not-Valid", "status"],
        ),
        "invalid schema name",
    );
    usage_error(
        run(&mut cli(&store), &["frobnicate"]),
        "unrecognized subcommand",
    );
    // A stream that exists at version 1 can be shown up to any later version.
    append(
        &store,
        "account-x",
        vec![event("account.opened", json!({}))],
    )
    .await;
    let trail = json_of(&success(run(
        &mut cli(&store),
        &["--json", "stream", "account-x", "--to-version", "9"],
    )));
    assert_eq!(trail["version"], json!(1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parked_events_are_listed_retried_and_discarded() {
    let store = fresh_store().await;
    seed(&store).await;
    let text = success(run(&mut cli(&store), &["projection", "parked"]));
    assert_eq!(text.trim(), "no parked events");
    // What a runner with `FailurePolicy::Park` leaves behind.
    sql(
        &store,
        "INSERT INTO {s}.parked_events \
             (projection, position, event_id, stream_id, version, name, error, attempts) \
         SELECT p.name, e.position, e.event_id, e.stream_id, e.version, e.name, \
                'projection stopped at event: the handler failed:\nrefusing ' || e.position, 3 \
           FROM {s}.events e, (VALUES ('balances'), ('audit')) AS p(name) \
          WHERE e.position IN (2, 4)",
    )
    .await;

    let listed = json_of(&success(run(
        &mut cli(&store),
        &["--json", "projection", "parked", "balances"],
    )));
    let parked = listed["parked"].as_array().unwrap();
    assert_eq!(parked.len(), 2);
    assert_eq!(parked[0]["position"], json!(2));
    assert_eq!(parked[0]["stream"], json!("account-ada"));
    assert_eq!(parked[0]["attempts"], json!(3));
    assert_eq!(parked[0]["retry_requested"], json!(false));
    assert!(parked[0]["error"].as_str().unwrap().ends_with("refusing 2"));
    let text = success(run(&mut cli(&store), &["projection", "parked"]));
    assert!(text.starts_with("PROJECTION  POSITION"), "{text}");
    assert_eq!(text.lines().count(), 5, "a header and four events: {text}");
    assert!(
        text.contains("the handler failed: refusing 4"),
        "one line per event: {text}"
    );

    // Retry: one event, or all; a position that is not parked is an error.
    let marked = json_of(&success(run(
        &mut cli(&store),
        &[
            "--json",
            "projection",
            "retry",
            "balances",
            "--position",
            "2",
        ],
    )));
    assert_eq!(marked["marked"], json!(1));
    failure(
        run(
            &mut cli(&store),
            &["projection", "retry", "balances", "--position", "3"],
        ),
        "projection `balances` has no parked event at position 3",
    );
    let neither = run(&mut cli(&store), &["projection", "retry", "balances"]);
    assert_eq!(neither.status.code(), Some(2));
    assert!(
        stderr(&neither).contains("--position"),
        "{}",
        stderr(&neither)
    );
    let text = success(run(
        &mut cli(&store),
        &["projection", "retry", "audit", "--all"],
    ));
    assert!(
        text.starts_with("marked 2 parked event(s) of projection `audit`"),
        "{text}"
    );
    let listed = json_of(&success(run(
        &mut cli(&store),
        &["--json", "projection", "parked"],
    )));
    let retry: Vec<bool> = listed["parked"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["retry_requested"].as_bool().unwrap())
        .collect();
    // audit 2, audit 4, balances 2, balances 4.
    assert_eq!(retry, [true, true, true, false]);

    // Discard asks first.
    failure(
        run(
            &mut cli(&store),
            &["projection", "discard", "audit", "--all"],
        ),
        "refusing to discard parked events of projection `audit` without confirmation",
    );
    let discarded = json_of(&success(run(
        &mut cli(&store),
        &["--json", "projection", "discard", "audit", "--all", "--yes"],
    )));
    assert_eq!(discarded["discarded"], json!(2));
    success(run(
        &mut cli(&store),
        &["projection", "discard", "balances", "--position", "4", "-y"],
    ));
    let listed = json_of(&success(run(
        &mut cli(&store),
        &["--json", "projection", "parked"],
    )));
    assert_eq!(listed["parked"].as_array().unwrap().len(), 1);
}

/// A store restored from a cluster whose transaction counter is ahead of this one (simulated:
/// events stored with transaction ids this cluster has not reached): `status` and `log` refuse
/// and name the repair, `verify` reports it, `migrate` re-bases it, and then all agree.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_moved_from_another_cluster_is_refused_until_migrate_rebases_it() {
    let store = fresh_store().await;
    seed(&store).await;
    sql(
        &store,
        "INSERT INTO {s}.events (stream_id, version, event_id, name, schema_version, payload, \
                                 metadata, transaction_id) \
         SELECT 'account-restored', v, gen_random_uuid(), 'account.deposited', 1, \
                '{\"amount\": 1}', '{}', pg_current_xact_id()::text::bigint + 100000 + v \
           FROM generate_series(1, 3) v; \
         INSERT INTO {s}.streams (stream_id, version) VALUES ('account-restored', 3); \
         INSERT INTO {s}.checkpoints (projection, transaction_id, position) \
         SELECT 'balances', transaction_id, position FROM {s}.events \
          WHERE stream_id = 'account-restored' AND version = 3",
    )
    .await;

    for args in [&["status"][..], &["log"][..], &["projection", "list"][..]] {
        let error = failure(
            run(&mut cli(&store), args),
            "was restored or moved from another PostgreSQL cluster",
        );
        assert!(error.contains("eventsource migrate --schema"), "{error}");
    }
    let report = run(&mut cli(&store), &["verify", "--json"]);
    assert_eq!(report.status.code(), Some(1));
    let report = json_of(&String::from_utf8_lossy(&report.stdout));
    assert_eq!(report["problems"], json!(1), "{report}");
    assert_eq!(report["findings"][0]["check"], json!("transaction-ids"));

    let migrated = json_of(&success(run(&mut cli(&store), &["--json", "migrate"])));
    assert!(
        migrated["rebased"]["to_offset"].as_u64().unwrap() > 0,
        "{migrated}"
    );
    let again = json_of(&success(run(&mut cli(&store), &["--json", "migrate"])));
    assert!(again.get("rebased").is_none(), "{again}");

    let status = json_of(&success(run(&mut cli(&store), &["status", "--json"])));
    assert_eq!(status["events"], json!(9));
    assert_eq!(status["projections"][0]["behind"], json!(0));
    append(
        &store,
        "account-ada",
        vec![event("account.deposited", json!({ "amount": 1 }))],
    )
    .await;
    let status = json_of(&success(run(&mut cli(&store), &["status", "--json"])));
    assert_eq!(status["projections"][0]["behind"], json!(1), "{status}");
    let verified = success(run(&mut cli(&store), &["verify"]));
    assert!(verified.contains("no problems found"), "{verified}");
}

#[tokio::test]
async fn streams_are_archived_and_deleted_with_confirmation() {
    let store = fresh_store().await;
    append(
        &store,
        "customer-c-1",
        vec![event("customer.registered", json!({ "n": 1 }))],
    )
    .await;
    append(
        &store,
        "customer-c-1",
        vec![event("customer.renamed", json!({ "n": 2 }))],
    )
    .await;
    append(
        &store,
        "customer-c-2",
        vec![event("customer.registered", json!({ "n": 3 }))],
    )
    .await;

    // No terminal to ask on, no --yes: refused, nothing done.
    failure(
        run(&mut cli(&store), &["stream", "archive", "customer-c-1"]),
        "refusing to archive stream `customer-c-1` without confirmation: pass --yes",
    );
    let archived = json_of(&success(run(
        &mut cli(&store),
        &["--json", "stream", "archive", "customer-c-1", "--yes"],
    )));
    assert_eq!(archived["stream"], json!("customer-c-1"));
    assert_eq!(archived["version"], json!(2));
    assert!(archived["archived_at"].is_string());
    let text = success(run(&mut cli(&store), &["stream", "customer-c-1"]));
    assert!(text.contains("archived at "), "{text}");
    let shown = json_of(&success(run(
        &mut cli(&store),
        &["--json", "stream", "show", "customer-c-1"],
    )));
    assert_eq!(shown["archived_at"], archived["archived_at"]);
    assert_eq!(shown["events"].as_array().unwrap().len(), 2);
    let error = store
        .append(
            &StreamId::from_raw("customer-c-1"),
            ExpectedVersion::Any,
            vec![event("customer.renamed", json!({}))],
        )
        .await
        .unwrap_err();
    assert!(error.to_string().contains("customer-c-1"), "{error}");
    failure(
        run(
            &mut cli(&store),
            &["stream", "archive", "customer-nobody", "--yes"],
        ),
        "stream `customer-nobody` does not exist",
    );

    failure(
        run(&mut cli(&store), &["stream", "delete", "customer-c-1"]),
        "refusing to delete stream `customer-c-1` without confirmation",
    );
    assert_eq!(
        json_of(&success(run(
            &mut cli(&store),
            &["--json", "stream", "customer-c-1"]
        )))["events"]
            .as_array()
            .unwrap()
            .len(),
        2
    );
    let deleted = json_of(&success(run(
        &mut cli(&store),
        &["--json", "stream", "delete", "customer-c-1", "-y"],
    )));
    assert_eq!(deleted["deleted_events"], json!(2));
    let text = success(run(&mut cli(&store), &["stream", "customer-c-1"]));
    assert!(text.contains("deleted at "), "{text}");
    // The other stream is untouched and the log skips the deleted events.
    let log = log_json(&store, &[], 1);
    assert_eq!(log[0]["stream"], json!("customer-c-2"));
    // Deleting again deletes nothing, without asking.
    let again = json_of(&success(run(
        &mut cli(&store),
        &["--json", "stream", "delete", "customer-c-1"],
    )));
    assert_eq!(again["deleted_events"], json!(0));
    // `verify` sees nothing wrong.
    success(run(&mut cli(&store), &["verify"]));
}

#[tokio::test]
async fn snapshots_are_deleted_by_stream_type_or_all() {
    let store = fresh_store().await;
    for (stream, version) in [("cart-1", 1), ("cart-2", 1), ("order-1", 1)] {
        append(&store, stream, vec![event("x.happened", json!({}))]).await;
        eventsource_core::SnapshotStore::save_snapshot(
            &store,
            eventsource_core::Snapshot {
                stream_id: StreamId::from_raw(stream),
                version: eventsource_core::Version(version),
                state_fingerprint: "fp".into(),
                state: json!({}),
                taken_at: chrono::Utc::now(),
            },
        )
        .await
        .unwrap();
    }
    usage_error(
        run(&mut cli(&store), &["snapshot", "delete"]),
        "required arguments were not provided",
    );
    let text = success(run(
        &mut cli(&store),
        &["snapshot", "delete", "--stream", "cart-1"],
    ));
    assert_eq!(text, "deleted 1 snapshots of stream cart-1\n");
    let done = json_of(&success(run(
        &mut cli(&store),
        &["--json", "snapshot", "delete", "--type", "cart"],
    )));
    assert_eq!(done["deleted"], json!(1));
    let done = json_of(&success(run(
        &mut cli(&store),
        &["--json", "snapshot", "delete", "--all"],
    )));
    assert_eq!(done["deleted"], json!(1));
}

#[tokio::test]
async fn personal_data_is_shown_as_sealed_or_forgotten_never_in_clear() {
    let store = fresh_store().await;
    let shredding = eventsource_core::Shredding::new(store.clone(), store.key_store());
    let personal = NewEvent::new(
        "customer.registered",
        1,
        json!({ "id": "c-1", "email": { "$personal": "ada@example.com", "$subject": "c-1" } }),
    );
    shredding
        .append(
            &StreamId::from_raw("customer-c-1"),
            ExpectedVersion::NoStream,
            vec![personal],
        )
        .await
        .unwrap();
    let text = success(run(&mut cli(&store), &["stream", "customer-c-1"]));
    assert!(text.contains("<personal data of c-1: sealed>"), "{text}");
    assert!(!text.contains("ada@example.com"), "{text}");
    shredding.forget("c-1").await.unwrap();
    for args in [
        &["stream", "customer-c-1"][..],
        &["--json", "stream", "customer-c-1"][..],
        &["--json", "log"][..],
    ] {
        let text = success(run(&mut cli(&store), args));
        assert!(text.contains("<personal data of c-1: forgotten>"), "{text}");
        assert!(!text.contains("ada@example.com"), "{text}");
        assert!(text.contains("\"c-1\"") || text.contains("c-1"), "{text}");
    }
}

/// The bank example's exported JSON Schemas (`examples/bank.rs` checks they are current).
const BANK_SCHEMAS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/schemas/bank");

/// Exit status 1 (problems found); the stdout.
fn problems(output: Output) -> String {
    assert_eq!(
        output.status.code(),
        Some(1),
        "stdout: {}\nstderr: {}",
        stdout(&output),
        stderr(&output)
    );
    stdout(&output)
}

#[test]
fn json_schema_check_validates_a_payload_file_without_a_database() {
    let dir = std::env::temp_dir().join(format!("es-cli-schema-{}", Uuid::now_v7().simple()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("events.jsonl");
    let valid = [
        json!({"name": "account.opened", "schema_version": 1, "payload": {"owner": "Bob"}}),
        json!({"name": "account.opened", "schema_version": 2, "payload": {"owner": "Ada", "overdraft_limit": 50}}),
        json!({"stream": "account-ada", "version": 2, "position": 7, "name": "account.deposited", "schema_version": 1, "payload": {"amount": 100}}),
    ];
    let lines: Vec<String> = valid.iter().map(Value::to_string).collect();
    std::fs::write(&file, lines.join("\n")).unwrap();
    let path = file.to_str().unwrap();
    let ok = success(run(
        &mut bare_cli(),
        &["json-schema", "check", BANK_SCHEMAS, "--payloads", path],
    ));
    assert!(ok.contains("checked 3 payloads against 4 schemas"), "{ok}");
    assert!(ok.contains(": 0 problems"), "{ok}");

    // A negative amount, a missing field, an unknown version, a line that is not JSON and
    // one that is not an event; a huge value is shown as an excerpt.
    let huge = "x".repeat(100_000);
    let mut lines = lines.clone();
    lines.extend([
        json!({"stream": "account-ada", "version": 3, "position": 9, "name": "account.withdrawn", "schema_version": 1, "payload": {"amount": -5}}).to_string(),
        json!({"name": "account.opened", "schema_version": 2, "payload": {"owner": "Ada"}}).to_string(),
        json!({"name": "account.opened", "schema_version": 3, "payload": {}}).to_string(),
        "{not json".to_owned(),
        json!({"payload": {}}).to_string(),
        json!({"name": "account.opened", "schema_version": 1, "payload": {"owner": huge}}).to_string(),
    ]);
    std::fs::write(&file, lines.join("\n")).unwrap();
    let report = problems(run(
        &mut bare_cli(),
        &["json-schema", "check", BANK_SCHEMAS, "--payloads", path],
    ));
    assert!(report.contains("checked 8 payloads"), "{report}");
    assert!(report.contains(": 5 problems"), "{report}");
    assert!(
        report.contains("line 4, position 9, account-ada v3: account.withdrawn v1: at `/amount`: -5 breaks `minimum: 0`"),
        "{report}"
    );
    assert!(
        report.contains(
            "line 5: account.opened v2: at ``: the required property `overdraft_limit` is missing"
        ),
        "{report}"
    );
    assert!(
        report.contains("line 6: account.opened v3: no schema for `account.opened` v3"),
        "{report}"
    );
    assert!(report.contains("line 7: not JSON"), "{report}");
    assert!(report.contains("line 8: not an event"), "{report}");
    assert!(report.len() < 5_000, "bounded: {} bytes", report.len());

    let json = json_of(&problems(run(
        &mut bare_cli(),
        &[
            "--json",
            "json-schema",
            "check",
            BANK_SCHEMAS,
            "--payloads",
            path,
        ],
    )));
    assert_eq!(json["checked"], json!(8));
    assert_eq!(json["problem_count"], json!(5));
    assert_eq!(json["problems"][0]["position"], json!(9));
    assert_eq!(json["problems"][0]["name"], json!("account.withdrawn"));

    // What `log --json` prints (one document with `events`) is read too.
    let document = json!({"events": valid, "count": 3});
    std::fs::write(&file, document.to_string()).unwrap();
    success(run(
        &mut bare_cli(),
        &["json-schema", "check", BANK_SCHEMAS, "--payloads", path],
    ));

    // Unreadable inputs fail with one line.
    let missing = dir.join("missing");
    failure(
        run(
            &mut bare_cli(),
            &[
                "json-schema",
                "check",
                missing.to_str().unwrap(),
                "--payloads",
                path,
            ],
        ),
        "missing",
    );
    failure(
        run(
            &mut bare_cli(),
            &[
                "json-schema",
                "check",
                BANK_SCHEMAS,
                "--payloads",
                missing.to_str().unwrap(),
            ],
        ),
        "reading the payloads",
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_schema_check_validates_the_stored_payloads() {
    let store = fresh_store().await;
    seed(&store).await;
    let ok = success(run(
        &mut cli(&store),
        &[
            "json-schema",
            "check",
            BANK_SCHEMAS,
            "--category",
            "account",
        ],
    ));
    assert!(ok.contains("checked 5 payloads against 4 schemas"), "{ok}");
    // `transfer.requested` is not the bank's: it has no schema.
    let report = problems(run(
        &mut cli(&store),
        &["json-schema", "check", BANK_SCHEMAS],
    ));
    assert!(report.contains("checked 6 payloads"), "{report}");
    assert!(
        report.contains("position 5, transfer-t1 v1: transfer.requested v1: no schema"),
        "{report}"
    );
    append(
        &store,
        "account-bob",
        vec![event("account.deposited", json!({ "amount": "lots" }))],
    )
    .await;
    let report = json_of(&problems(run(
        &mut cli(&store),
        &[
            "--json",
            "json-schema",
            "check",
            BANK_SCHEMAS,
            "--name",
            "account.deposited",
        ],
    )));
    assert_eq!(report["checked"], json!(3), "{report}");
    assert_eq!(report["problem_count"], json!(1), "{report}");
    assert_eq!(report["problems"][0]["stream"], json!("account-bob"));
    assert_eq!(report["problems"][0]["version"], json!(3));
}
