//! `eventsource import` against a real PostgreSQL server: JSON lines in, events read back
//! equal, a projection catches up over them, conflicts and bad lines refused by line number
//! with nothing written.
//!
//! Every test works in a schema of its own. The tests need `DATABASE_URL` (`scripts/test.sh`
//! starts a throwaway cluster and sets it); without it they fail, they never skip.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::Write;
use std::process::{Command, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use eventsource_core::{
    Checkpoint, DecodeFailure, Event, EventStore, ExpectedVersion, LogFilter, NewEvent, Project,
    Projection, ProjectionRunner, RecordedEvent, StreamId, Version,
};
use eventsource_postgres::{PostgresStore, PostgresTx};
use serde_json::{Value, json};
use uuid::Uuid;

fn database_url() -> String {
    match std::env::var("DATABASE_URL") {
        Ok(url) if !url.trim().is_empty() => url,
        _ => panic!(
            "DATABASE_URL is not set: the CLI tests need a PostgreSQL server. Run \
             `scripts/test.sh` (it starts a throwaway PostgreSQL and sets DATABASE_URL)"
        ),
    }
}

async fn fresh_store() -> PostgresStore {
    let store = PostgresStore::builder()
        .schema(format!("t_{}", Uuid::now_v7().simple()))
        .max_connections(4)
        .acquire_timeout(Duration::from_secs(20))
        .horizon_wait(Duration::from_secs(5))
        .connect(&database_url())
        .await
        .unwrap_or_else(|e| panic!("the CLI tests need a reachable PostgreSQL server: {e}"));
    store.migrate().await.unwrap();
    store
}

/// Runs `eventsource import -` on `store` with `input` on stdin.
fn import(store: &PostgresStore, input: &[u8], extra: &[&str]) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_eventsource"))
        .env("DATABASE_URL", database_url())
        .args(["--schema", store.schema().as_str(), "import", "-"])
        .args(extra)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the eventsource binary runs");
    let mut stdin = child.stdin.take().unwrap();
    let input = input.to_vec();
    // The binary may stop reading early (a bad line): a broken pipe is expected then.
    let writer = std::thread::spawn(move || {
        let _ = stdin.write_all(&input);
    });
    let output = child.wait_with_output().unwrap();
    writer.join().unwrap();
    output
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn success(output: &Output) -> String {
    assert_eq!(
        output.status.code(),
        Some(0),
        "stdout: {}\nstderr: {}",
        text(&output.stdout),
        text(&output.stderr)
    );
    text(&output.stdout)
}

/// Exit status 2, one line on stderr containing every needle.
fn failure(output: &Output, needles: &[&str]) -> String {
    let message = text(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "stderr: {message}");
    assert_eq!(message.trim_end().lines().count(), 1, "one line: {message}");
    for needle in needles {
        assert!(
            message.contains(needle),
            "{message:?} should contain {needle:?}"
        );
    }
    message
}

fn line(stream: &str, version: u64, amount: i64) -> String {
    json!({
        "stream": stream,
        "version": version,
        "name": "account.deposited",
        "event_id": Uuid::now_v7(),
        "payload": {"amount": amount, "memo": "a\tb\\c\nd"},
        "metadata": {"correlation_id": Uuid::now_v7(), "custom": {"source": "legacy"}},
    })
    .to_string()
}

async fn all_events(store: &PostgresStore) -> Vec<RecordedEvent> {
    let mut out = Vec::new();
    let mut from = Checkpoint::START;
    loop {
        let page = store.read_all(from, 500, &LogFilter::all()).await.unwrap();
        let Some(last) = page.last() else {
            return out;
        };
        from = last.checkpoint;
        out.extend(page);
    }
}

struct Deposited {
    amount: i64,
}

impl Event for Deposited {
    const NAME: &'static str = "account.deposited";
    const VERSION: u32 = 1;

    fn decode_version(_: u32, payload: &Value) -> Result<Self, DecodeFailure> {
        let amount = payload["amount"]
            .as_i64()
            .ok_or(DecodeFailure::UnknownEvent)?;
        Ok(Deposited { amount })
    }
}

/// Totals in memory: (events, sum of amounts).
#[derive(Clone, Default)]
struct Totals(Arc<Mutex<(u64, i64)>>);

impl Projection for Totals {
    const NAME: &'static str = "totals";
    type Handles = (Deposited,);
    type Error = std::convert::Infallible;
}

impl Project<Deposited, PostgresTx> for Totals {
    async fn project(
        &mut self,
        event: Deposited,
        _: &RecordedEvent,
        _: &mut PostgresTx,
    ) -> Result<(), Self::Error> {
        let mut totals = self.0.lock().unwrap();
        totals.0 += 1;
        totals.1 += event.amount;
        Ok(())
    }
}

#[tokio::test]
async fn imported_events_read_back_equal_and_a_projection_catches_up_over_them() {
    let store = fresh_store().await;
    let mut lines = Vec::new();
    for i in 1..=40u64 {
        lines.push(line("account-a", i, i as i64));
        lines.push(line("account-b", i, 1000));
        if i % 10 == 0 {
            lines.push("   ".to_owned());
        }
    }
    let input = lines.join("\r\n") + "\n";
    let out = success(&import(&store, input.as_bytes(), &["--batch-size", "7"]));
    assert!(out.contains("imported 80 events into 2 streams"), "{out}");

    let stored = all_events(&store).await;
    let sent: Vec<Value> = lines
        .iter()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(stored.len(), sent.len());
    for (event, line) in stored.iter().zip(&sent) {
        assert_eq!(event.stream_id.as_str(), line["stream"]);
        assert_eq!(event.version.0, line["version"].as_u64().unwrap());
        assert_eq!(event.event_id.to_string(), line["event_id"]);
        assert_eq!(event.payload, line["payload"]);
        assert_eq!(event.name, "account.deposited");
        assert_eq!(event.schema_version, 1);
        assert_eq!(
            serde_json::to_value(&event.metadata).unwrap(),
            line["metadata"]
        );
    }

    let totals = Totals::default();
    let mut runner = ProjectionRunner::new(totals.clone(), store.clone());
    let caught_up = runner.catch_up().await.unwrap();
    assert_eq!(caught_up.applied, 80);
    assert_eq!(*totals.0.lock().unwrap(), (80, 820 + 40_000));

    // The heads moved: the application goes on from there.
    let appended = store
        .append(
            &StreamId::from_raw("account-b"),
            ExpectedVersion::Exact(Version(40)),
            vec![NewEvent::new("account.deposited", 1, json!({"amount": 1}))],
        )
        .await
        .unwrap();
    assert_eq!(appended.first_version, Version(41));
    assert_eq!(runner.catch_up().await.unwrap().applied, 1);
}

#[tokio::test]
async fn an_import_into_an_existing_stream_at_another_version_conflicts_and_writes_nothing() {
    let store = fresh_store().await;
    store
        .append(
            &StreamId::from_raw("account-a"),
            ExpectedVersion::NoStream,
            vec![NewEvent::new("account.opened", 1, json!({}))],
        )
        .await
        .unwrap();
    let input = [line("account-new", 1, 1), line("account-a", 1, 5)].join("\n");
    let output = import(&store, input.as_bytes(), &[]);
    failure(
        &output,
        &["line 2", "account-a", "version 1", "nothing was imported"],
    );
    assert_eq!(all_events(&store).await.len(), 1);
    // Continuing right after its head is fine.
    let input = line("account-a", 2, 5);
    success(&import(&store, input.as_bytes(), &[]));
    assert_eq!(all_events(&store).await.len(), 2);
}

#[tokio::test]
async fn a_bad_line_is_rejected_by_number_and_nothing_is_half_written() {
    let store = fresh_store().await;
    // Enough good lines before the bad one for several batches to be sent first.
    let good: Vec<String> = (1..=30).map(|v| line("account-a", v, 1)).collect();
    let cases: Vec<(Vec<u8>, Vec<&str>)> = vec![
        (
            b"{\"stream\": \"account-z\", \"version\": \"one\"".to_vec(),
            vec!["line 31"],
        ),
        (
            br#"{"stream": 7, "version": 1, "name": "x", "payload": {}}"#.to_vec(),
            vec!["line 31", "invalid type"],
        ),
        (b"\xff\xfe{}".to_vec(), vec!["line 31", "UTF-8"]),
        (
            br#"{"stream": "account-z", "version": 1, "payload": {}}"#.to_vec(),
            vec!["line 31", "name"],
        ),
        (
            br#"{"stream": "account-z", "version": 1, "name": "", "payload": {}}"#.to_vec(),
            vec!["line 31", "account-z"],
        ),
        (
            br#"{"stream": "account-a", "version": 33, "name": "x", "payload": {}}"#.to_vec(),
            vec!["line 31", "account-a", "version 33", "version 30"],
        ),
        (
            format!(
                r#"{{"stream": "a", "version": 1, "name": "x", "payload": "{}"}}"#,
                "x".repeat(5 << 20)
            )
            .into_bytes(),
            vec!["line 31", "longer than"],
        ),
    ];
    for (bad, needles) in cases {
        let mut input = good.join("\n").into_bytes();
        input.push(b'\n');
        input.extend_from_slice(&bad);
        input.extend_from_slice(b"\n");
        input.extend_from_slice(line("account-a", 31, 1).as_bytes());
        let output = import(&store, &input, &["--batch-size", "4"]);
        let message = failure(&output, &needles);
        assert!(message.len() < 1000, "bounded: {} bytes", message.len());
        assert!(all_events(&store).await.is_empty(), "after {message}");
        assert_eq!(
            store
                .stream_version(&StreamId::from_raw("account-a"))
                .await
                .unwrap(),
            Version(0)
        );
    }
}

#[tokio::test]
async fn a_missing_file_and_an_empty_input_are_handled() {
    let store = fresh_store().await;
    let output = Command::new(env!("CARGO_BIN_EXE_eventsource"))
        .env("DATABASE_URL", database_url())
        .args([
            "--schema",
            store.schema().as_str(),
            "import",
            "/nonexistent/events.jsonl",
        ])
        .output()
        .unwrap();
    failure(&output, &["/nonexistent/events.jsonl"]);
    let out = success(&import(&store, b"", &["--json"]));
    let report: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(report["events"], 0);
    let output = import(&store, b"", &["--batch-size", "0"]);
    assert_eq!(output.status.code(), Some(2));
}
