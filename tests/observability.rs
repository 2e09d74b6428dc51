//! Spans and metrics: the documented names, fields and values, captured with a test
//! subscriber and a test recorder.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::sync::{Arc, Mutex};

use eventsource::observe::names;
use eventsource::testing::fixture::{Counter, CounterCommand};
use eventsource::{
    DecodeFailure, Event, EventStore, ExpectedVersion, MemoryStore, NewEvent, Project, Projection,
    ProjectionRunner, RecordedEvent, Repository, StreamId,
};
use metrics_util::debugging::{DebugValue, DebuggingRecorder, Snapshotter};
use serde_json::json;
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing_subscriber::Layer;
use tracing_subscriber::layer::{Context, SubscriberExt};

/// A closed span: its name and fields.
#[derive(Clone, Debug)]
struct Captured {
    name: &'static str,
    fields: BTreeMap<String, String>,
}

#[derive(Clone, Default)]
struct Capture {
    open: Arc<Mutex<BTreeMap<u64, Captured>>>,
    closed: Arc<Mutex<Vec<Captured>>>,
}

struct Fields<'a>(&'a mut BTreeMap<String, String>);
impl Visit for Fields<'_> {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.0.insert(field.name().to_owned(), format!("{value:?}"));
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.insert(field.name().to_owned(), value.to_owned());
    }
}

impl<S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>> Layer<S>
    for Capture
{
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, _: Context<'_, S>) {
        let mut span = Captured {
            name: attrs.metadata().name(),
            fields: BTreeMap::new(),
        };
        attrs.record(&mut Fields(&mut span.fields));
        self.open.lock().unwrap().insert(id.into_u64(), span);
    }
    fn on_record(&self, id: &Id, values: &Record<'_>, _: Context<'_, S>) {
        if let Some(span) = self.open.lock().unwrap().get_mut(&id.into_u64()) {
            values.record(&mut Fields(&mut span.fields));
        }
    }
    fn on_close(&self, id: Id, _: Context<'_, S>) {
        if let Some(span) = self.open.lock().unwrap().remove(&id.into_u64()) {
            self.closed.lock().unwrap().push(span);
        }
    }
}

impl Capture {
    fn take(&self, name: &str) -> Vec<BTreeMap<String, String>> {
        let mut closed = self.closed.lock().unwrap();
        let (matching, rest): (Vec<_>, Vec<_>) = closed.drain(..).partition(|s| s.name == name);
        *closed = rest;
        matching.into_iter().map(|s| s.fields).collect()
    }
}

/// The value of metric `name` with exactly these labels in the snapshot (drains it).
fn metric(snapshotter: &Snapshotter, name: &str, labels: &[(&str, &str)]) -> Option<DebugValue> {
    snapshotter
        .snapshot()
        .into_vec()
        .into_iter()
        .find_map(|(key, _, _, value)| {
            let key = key.key();
            let same_labels = key.labels().count() == labels.len()
                && labels
                    .iter()
                    .all(|(k, v)| key.labels().any(|l| l.key() == *k && l.value() == *v));
            (key.name() == name && same_labels).then_some(value)
        })
}

fn fields(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

fn install() -> (
    Capture,
    tracing::subscriber::DefaultGuard,
    DebuggingRecorder,
) {
    let capture = Capture::default();
    let subscriber = tracing_subscriber::registry().with(capture.clone());
    let guard = tracing::subscriber::set_default(subscriber);
    (capture, guard, DebuggingRecorder::new())
}

#[tokio::test]
async fn append_and_conflict_are_traced_and_counted() {
    let (capture, _guard, recorder) = install();
    let snapshotter = recorder.snapshotter();
    let _metrics = metrics::set_default_local_recorder(&recorder);
    let store = MemoryStore::new();
    let stream = StreamId::new("counter", "a");
    let batch = vec![
        NewEvent::new("counter.added", 1, json!({ "amount": 1 })),
        NewEvent::new("counter.added", 1, json!({ "amount": 2 })),
    ];
    store
        .append(&stream, ExpectedVersion::NoStream, batch)
        .await
        .unwrap();
    let spans = capture.take("eventsource.append");
    assert_eq!(
        spans,
        [fields(&[
            ("store", "memory"),
            ("stream", "counter-a"),
            ("batch_size", "2"),
            ("expected", "no stream"),
            ("outcome", "ok"),
            ("version", "2"),
        ])]
    );
    assert_eq!(
        metric(&snapshotter, names::EVENTS_APPENDED, &[("store", "memory")]),
        Some(DebugValue::Counter(2))
    );

    let late = vec![NewEvent::new("counter.added", 1, json!({ "amount": 3 }))];
    let conflict = store
        .append(
            &stream,
            ExpectedVersion::Exact(eventsource::Version(1)),
            late,
        )
        .await;
    assert!(conflict.is_err());
    let spans = capture.take("eventsource.append");
    assert_eq!(spans[0]["outcome"], "conflict");
    assert_eq!(spans[0]["expected"], "version 1");
    let snapshot = snapshotter.snapshot().into_vec();
    let find = |name: &str| {
        snapshot
            .iter()
            .find(|(k, ..)| k.key().name() == name)
            .map(|(k, _, _, v)| (k.key().clone(), v))
    };
    assert_eq!(
        find(names::APPEND_CONFLICTS).unwrap().1,
        &DebugValue::Counter(1)
    );
    assert!(find(names::EVENTS_APPENDED).is_none_or(|(_, v)| *v == DebugValue::Counter(0)));
    let (_, _, _, latency) = snapshot
        .iter()
        .find(|(k, ..)| {
            k.key().name() == names::APPEND_SECONDS
                && k.key()
                    .labels()
                    .any(|l| l.key() == "outcome" && l.value() == "conflict")
        })
        .expect("a latency sample labelled outcome=conflict");
    assert!(matches!(latency, DebugValue::Histogram(v) if v.len() == 1 && v[0].0 >= 0.0));
}

#[tokio::test]
async fn command_and_load_with_snapshot_are_traced_and_counted() {
    let (capture, _guard, recorder) = install();
    let snapshotter = recorder.snapshotter();
    let _metrics = metrics::set_default_local_recorder(&recorder);
    let repo = Repository::<Counter, _>::new(MemoryStore::new());
    for amount in 1..=4 {
        repo.execute("x", CounterCommand::Add(amount))
            .await
            .unwrap();
    }
    let executes = capture.take("eventsource.execute");
    assert_eq!(executes.len(), 4);
    assert_eq!(
        executes[3],
        fields(&[
            ("aggregate", "counter"),
            ("stream", "counter-x"),
            ("command", "CounterCommand"),
            ("version", "4"),
            ("retries", "0"),
            ("outcome", "ok"),
        ])
    );
    let rejected = repo.execute("x", CounterCommand::Add(Counter::LIMIT)).await;
    assert!(rejected.is_err());
    assert_eq!(
        capture.take("eventsource.execute")[0]["outcome"],
        "rejected"
    );

    // Snapshot every 3 events: the store holds one at version 3; the load folds 1 event.
    let _ = snapshotter.snapshot();
    capture.take("eventsource.load");
    let loaded = repo.load("x").await.unwrap();
    assert_eq!(loaded.events_folded, 1);
    assert_eq!(
        capture.take("eventsource.load"),
        [fields(&[
            ("aggregate", "counter"),
            ("stream", "counter-x"),
            ("events_folded", "1"),
            ("snapshot", "true"),
            ("version", "4"),
        ])]
    );
    assert_eq!(
        metric(
            &snapshotter,
            names::SNAPSHOT_HITS,
            &[("aggregate", "counter")]
        ),
        Some(DebugValue::Counter(1))
    );
    repo.load("fresh").await.unwrap();
    assert_eq!(
        metric(
            &snapshotter,
            names::SNAPSHOT_MISSES,
            &[("aggregate", "counter")]
        ),
        Some(DebugValue::Counter(1))
    );
}

#[derive(Debug, serde::Deserialize)]
struct Added {
    amount: u64,
}
impl Event for Added {
    const NAME: &'static str = "counter.added";
    const VERSION: u32 = 1;
    fn decode_version(version: u32, payload: &serde_json::Value) -> Result<Self, DecodeFailure> {
        DecodeFailure::parse(version, payload)
    }
}

#[derive(Default)]
struct Sum(u64);
impl Projection for Sum {
    const NAME: &'static str = "sum";
    type Handles = (Added,);
    type Error = Infallible;
}
impl Project<Added> for Sum {
    async fn project(&mut self, e: Added, _: &RecordedEvent, _: &mut ()) -> Result<(), Infallible> {
        self.0 += e.amount;
        Ok(())
    }
}

#[tokio::test]
async fn projection_batch_is_traced_and_lag_reported() {
    let (capture, _guard, recorder) = install();
    let snapshotter = recorder.snapshotter();
    let _metrics = metrics::set_default_local_recorder(&recorder);
    let store = MemoryStore::new();
    let batch = (1..=5)
        .map(|a| NewEvent::new("counter.added", 1, json!({ "amount": a })))
        .collect();
    store
        .append(&StreamId::new("counter", "p"), ExpectedVersion::Any, batch)
        .await
        .unwrap();
    let mut runner = ProjectionRunner::new(Sum::default(), store.clone());
    runner.catch_up().await.unwrap();
    assert_eq!(runner.projection().0, 15);
    let batches = capture.take("eventsource.projection.batch");
    assert_eq!(
        batches,
        [fields(&[
            ("projection", "sum"),
            ("from", "0:0"),
            ("to", "1:5"),
            ("count", "5")
        ])]
    );
    let snapshot = snapshotter.snapshot().into_vec();
    let value = |name: &str| {
        snapshot
            .iter()
            .find(|(k, ..)| k.key().name() == name && k.key().labels().any(|l| l.value() == "sum"))
            .map(|(.., v)| v)
    };
    assert_eq!(
        value(names::PROJECTION_EVENTS),
        Some(&DebugValue::Counter(5))
    );
    assert_eq!(
        value(names::PROJECTION_LAG),
        Some(&DebugValue::Gauge(0.0.into()))
    );
    assert_eq!(
        value(names::PROJECTION_HORIZON_LAG),
        Some(&DebugValue::Gauge(0.0.into()))
    );
}
