//! The PostgreSQL group commit under faults: the server crashes (`pg_ctl -m immediate`) while
//! shared transactions are in flight, a writing process is killed with SIGKILL while its
//! queue is full, and many callers send the same idempotent command through shared groups.
//! After each: every acknowledged append is stored once at the version it was acknowledged
//! with, an append without an answer is wholly stored or not at all, every stream's versions
//! run 1, 2, 3... and `verify` finds nothing wrong.
//!
//! The crash test restarts the test cluster: it holds [`CLUSTER`] exclusively, the others
//! share it, so no test of this file runs during the crash (cargo runs test binaries one after
//! the other). It needs `PG_BIN`, `PG_DIR` and `PG_DATA`, which `scripts/test.sh` exports. The
//! killed writer is this test binary started again on its `child_writer_process` entry point.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "support/account.rs"]
mod account;
#[path = "support/postgres.rs"]
mod support;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use eventsource::postgres::PostgresStore;
use eventsource::postgres::sqlx::{self, AssertSqlSafe, Connection};
use eventsource::{
    Appended, CommandMetadata, EventStore, ExecuteError, Executed, ExpectedVersion, NewEvent,
    Repository, StoreError, StreamId, Version,
};
use serde_json::json;
use support::{
    cluster_env, database_url, fresh_pg_store, fresh_pg_store_with_group_transactions,
    fresh_pg_store_with_pool, lock_heads, restart_server, transactions, wait_for_lock_waiters,
};
use tracing::field::{Field, Visit};
use tracing_subscriber::Layer;
use tracing_subscriber::layer::{Context, SubscriberExt};
use uuid::Uuid;

/// Held exclusively by the test that crashes the server, shared by the others.
static CLUSTER: tokio::sync::RwLock<()> = tokio::sync::RwLock::const_new(());

/// The most any test waits for the store to answer after a fault: a hang detector, not a
/// speed requirement.
const HANG: Duration = Duration::from_secs(30);

fn added(amount: u64) -> NewEvent {
    NewEvent::new("counter.added", 1, json!({ "amount": amount }))
}

fn stream(id: &str) -> StreamId {
    StreamId::new("counter", id)
}

fn ids(events: &[NewEvent]) -> Vec<Uuid> {
    events.iter().map(|e| e.event_id).collect()
}

/// What the writer of a batch learned about it.
#[derive(Clone, Debug)]
enum Outcome {
    /// Acknowledged: written (or replayed) with this first version.
    Acknowledged(u64),
    /// Refused as a conflict: nothing was written.
    Conflict,
    /// An error, or no answer at all: written wholly or not at all.
    Unknown,
}

/// One batch a test tried to append, and what it was told.
#[derive(Clone, Debug)]
struct Batch {
    stream: String,
    ids: Vec<Uuid>,
    outcome: Outcome,
}

/// What [`check_store`] found of the batches without a sure answer.
#[derive(Debug, Default)]
struct Tally {
    acknowledged: usize,
    conflicts: usize,
    unknown_stored: usize,
    unknown_absent: usize,
    events: usize,
}

/// The store holds exactly what `batches` allow: each acknowledged batch once, at its
/// versions; no event of a conflict; each unknown batch wholly, at consecutive versions of its
/// stream, or not at all; no event that no batch sent. Every stream's versions run 1..=head,
/// its head row agrees, and `verify` reports no problem.
async fn check_store(store: &PostgresStore, batches: &[Batch]) -> Tally {
    let rows: Vec<(String, i64, Uuid)> = sqlx::query_as(AssertSqlSafe(format!(
        "SELECT stream_id, version, event_id FROM \"{}\".events",
        store.schema().as_str()
    )))
    .fetch_all(store.pool())
    .await
    .unwrap();
    let mut stored: HashMap<Uuid, (String, u64)> = HashMap::with_capacity(rows.len());
    for (s, version, id) in rows {
        let version = u64::try_from(version).unwrap();
        assert!(
            stored.insert(id, (s.clone(), version)).is_none(),
            "event {id} is stored twice (again in {s} v{version})"
        );
    }
    let mut sent: HashSet<Uuid> = HashSet::new();
    let mut tally = Tally {
        events: stored.len(),
        ..Tally::default()
    };
    for batch in batches {
        for id in &batch.ids {
            assert!(sent.insert(*id), "the test sent event {id} in two batches");
        }
        match batch.outcome {
            Outcome::Acknowledged(first) => {
                tally.acknowledged += 1;
                for (i, id) in batch.ids.iter().enumerate() {
                    let at = (batch.stream.clone(), first + i as u64);
                    assert_eq!(
                        stored.get(id),
                        Some(&at),
                        "acknowledged event {id} is not stored at {} v{}",
                        at.0,
                        at.1
                    );
                }
            }
            Outcome::Conflict => {
                tally.conflicts += 1;
                for id in &batch.ids {
                    assert!(
                        !stored.contains_key(id),
                        "event {id} of a conflict on {} is stored at {:?}",
                        batch.stream,
                        stored[id]
                    );
                }
            }
            Outcome::Unknown => {
                let found: Vec<&(String, u64)> =
                    batch.ids.iter().filter_map(|id| stored.get(id)).collect();
                if found.is_empty() {
                    tally.unknown_absent += 1;
                    continue;
                }
                assert_eq!(
                    found.len(),
                    batch.ids.len(),
                    "a partial batch on {}: {found:?} of {:?}",
                    batch.stream,
                    batch.ids
                );
                for (i, (s, version)) in found.iter().enumerate() {
                    assert_eq!(s, &batch.stream, "an event of the batch in another stream");
                    assert_eq!(
                        *version,
                        found[0].1 + i as u64,
                        "the batch on {s} is not at consecutive versions: {found:?}"
                    );
                }
                tally.unknown_stored += 1;
            }
        }
    }
    for (id, (s, version)) in &stored {
        assert!(
            sent.contains(id),
            "{s} v{version} holds event {id}, which no batch sent"
        );
    }
    assert_versions_gap_free(store).await;
    tally
}

/// Every stream's versions run 1, 2, 3... up to its head row's version, and `verify` finds no
/// problem.
async fn assert_versions_gap_free(store: &PostgresStore) {
    let schema = store.schema().as_str();
    let rows: Vec<(String, i64)> = sqlx::query_as(AssertSqlSafe(format!(
        "SELECT stream_id, version FROM \"{schema}\".events ORDER BY stream_id, version"
    )))
    .fetch_all(store.pool())
    .await
    .unwrap();
    let mut versions: BTreeMap<String, Vec<i64>> = BTreeMap::new();
    for (s, version) in rows {
        versions.entry(s).or_default().push(version);
    }
    let heads: BTreeMap<String, i64> = sqlx::query_as(AssertSqlSafe(format!(
        "SELECT stream_id, version FROM \"{schema}\".streams"
    )))
    .fetch_all(store.pool())
    .await
    .unwrap()
    .into_iter()
    .collect();
    for (s, versions) in &versions {
        let expected: Vec<i64> = (1..=versions.len() as i64).collect();
        assert_eq!(versions, &expected, "the versions of {s} have a gap");
        assert_eq!(
            heads.get(s),
            versions.last(),
            "the head row of {s} disagrees with its events"
        );
    }
    assert_eq!(
        heads.len(),
        versions.len(),
        "head rows without events: {heads:?}"
    );
    let report = store.admin().verify().await.unwrap();
    assert!(report.is_ok(), "verify: {:?}", report.findings);
}

/// Waits (at most [`HANG`]) until `counter` reaches `n`.
async fn wait_for(counter: &AtomicUsize, n: usize, what: &str) {
    let deadline = Instant::now() + HANG;
    while counter.load(Ordering::SeqCst) < n {
        assert!(
            Instant::now() < deadline,
            "{what}: {} of {n}",
            counter.load(Ordering::SeqCst)
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// `count` appends at once, each to a new stream of its own: all must be acknowledged within
/// [`HANG`] (a transaction slot kept by a failed group would leave them queued for ever).
async fn burst(store: &PostgresStore, prefix: &str, count: usize) -> Vec<Batch> {
    let mut tasks = Vec::new();
    for i in 0..count {
        let store = store.clone();
        let s = stream(&format!("{prefix}-{i}"));
        tasks.push(tokio::spawn(async move {
            let events = vec![added(i as u64)];
            let sent = ids(&events);
            let written = store
                .append(&s, ExpectedVersion::NoStream, events)
                .await
                .unwrap();
            assert_eq!(written.first_version, Version(1));
            Batch {
                stream: s.as_str().to_owned(),
                ids: sent,
                outcome: Outcome::Acknowledged(1),
            }
        }));
    }
    let mut batches = Vec::new();
    for task in tasks {
        let batch = tokio::time::timeout(HANG, task)
            .await
            .unwrap_or_else(|_| panic!("an append of the {prefix} burst hangs: a slot is stuck"))
            .unwrap();
        batches.push(batch);
    }
    batches
}

/// Shared append statements that failed as a whole (the store's debug event "a shared append
/// statement failed; appending alone"), counted by [`count_failed_groups`].
static FAILED_GROUPS: AtomicUsize = AtomicUsize::new(0);

/// Counts the store's debug events that report a failed shared statement in [`FAILED_GROUPS`].
fn count_failed_groups() {
    struct Count;
    struct Message(bool);
    impl Visit for Message {
        fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
            if field.name() == "message" {
                self.0 |= format!("{value:?}").contains("shared append statement failed");
            }
        }
    }
    impl<S: tracing::Subscriber> Layer<S> for Count {
        fn on_event(&self, event: &tracing::Event<'_>, _: Context<'_, S>) {
            let mut message = Message(false);
            event.record(&mut message);
            if message.0 {
                FAILED_GROUPS.fetch_add(1, Ordering::SeqCst);
            }
        }
    }
    // Once per process; the tests that run beside this one share no store with it.
    let _ = tracing::subscriber::set_global_default(tracing_subscriber::registry().with(Count));
}

/// What a writer of the crash test saw.
#[derive(Default)]
struct WriterLog {
    batches: Vec<Batch>,
    /// Errors that are neither transient nor a conflict.
    unexpected: Vec<String>,
    /// Per append call: when it began and ended, and whether it failed.
    spans: Vec<(Instant, Instant, bool)>,
    /// Acknowledged as replayed on a retry after an error.
    replayed_after_error: usize,
    /// Acknowledged as replayed on the first send.
    replayed_first_time: usize,
}

/// 24 writers on streams of their own and on three shared streams (`Exact` at a version just
/// read: often a conflict), appending without pause while the server crashes three times: once
/// at whatever moment, twice with two streams' heads locked so that a shared statement is
/// surely in flight and the queue full. Half of the private writers retry a failed batch
/// unchanged (its ids make a retry of a batch stored after all a replay), the other half give
/// a failed batch up and go on from the version they read. Afterwards a burst of 32 appends
/// must be acknowledged: no transaction slot is stuck.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_server_crash_mid_group_loses_no_acknowledged_append_and_writes_no_partial_batch() {
    const PRIVATE: u64 = 18;
    const SHARED: u64 = 6;
    const OPS: u64 = 5_000;
    const ACKS_PER_PHASE: usize = 150;
    const CRASHES: usize = 3;
    let _exclusive = CLUSTER.write().await;
    // Fails before writing anything without the cluster's directories.
    for name in ["PG_BIN", "PG_DIR", "PG_DATA"] {
        cluster_env(name);
    }
    count_failed_groups();
    let store = fresh_pg_store_with_pool(16).await;
    let acknowledged = Arc::new(AtomicUsize::new(0));
    let failures = Arc::new(AtomicUsize::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let shared: Vec<StreamId> = (0..3).map(|i| stream(&format!("shared-{i}"))).collect();
    let deadline = Instant::now() + Duration::from_secs(50);

    let mut tasks = Vec::new();
    for writer in 0..PRIVATE + SHARED {
        let (store, shared) = (store.clone(), shared.clone());
        let (acknowledged, failures, stop) = (
            Arc::clone(&acknowledged),
            Arc::clone(&failures),
            Arc::clone(&stop),
        );
        tasks.push(tokio::spawn(async move {
            let mut log = WriterLog::default();
            let own = stream(&format!("own-{writer}"));
            let mut version = 0u64;
            for op in 0..OPS {
                if stop.load(Ordering::SeqCst) {
                    break;
                }
                assert!(
                    Instant::now() < deadline,
                    "writer {writer} is still writing"
                );
                // Mostly one event; some batches of two or three (still shared: up to 16).
                let n = if op.is_multiple_of(5) { 1 + op % 3 } else { 1 };
                let events: Vec<NewEvent> = (0..n).map(|i| added(writer * 100_000 + i)).collect();
                let sent = ids(&events);
                if writer >= PRIVATE {
                    // A shared stream at the version read a moment ago.
                    let s = &shared[(writer % 3) as usize];
                    let Ok(seen) = store.stream_version(s).await else {
                        tokio::time::sleep(Duration::from_millis(10)).await;
                        continue;
                    };
                    let start = Instant::now();
                    let result = store.append(s, ExpectedVersion::Exact(seen), events).await;
                    log.spans.push((start, Instant::now(), result.is_err()));
                    let outcome = match result {
                        Ok(written) => {
                            assert_eq!(written.first_version, seen.next(), "{s}");
                            acknowledged.fetch_add(1, Ordering::SeqCst);
                            Outcome::Acknowledged(written.first_version.0)
                        }
                        Err(StoreError::Conflict { .. }) => Outcome::Conflict,
                        Err(error) => {
                            failures.fetch_add(1, Ordering::SeqCst);
                            if !error.is_transient() {
                                log.unexpected.push(error.to_string());
                            }
                            tokio::time::sleep(Duration::from_millis(10)).await;
                            Outcome::Unknown
                        }
                    };
                    log.batches.push(Batch {
                        stream: s.as_str().to_owned(),
                        ids: sent,
                        outcome,
                    });
                    continue;
                }
                let retries = writer.is_multiple_of(2);
                let mut failed = false;
                loop {
                    let start = Instant::now();
                    let result = store
                        .append(
                            &own,
                            ExpectedVersion::Exact(Version(version)),
                            events.clone(),
                        )
                        .await;
                    log.spans.push((start, Instant::now(), result.is_err()));
                    match result {
                        Ok(written) => {
                            assert_eq!(written.first_version, Version(version + 1), "{own}");
                            assert_eq!(written.last_version, Version(version + n), "{own}");
                            if written.replayed {
                                if failed {
                                    log.replayed_after_error += 1;
                                } else {
                                    log.replayed_first_time += 1;
                                }
                            }
                            acknowledged.fetch_add(1, Ordering::SeqCst);
                            log.batches.push(Batch {
                                stream: own.as_str().to_owned(),
                                ids: sent,
                                outcome: Outcome::Acknowledged(version + 1),
                            });
                            version += n;
                            break;
                        }
                        Err(error) => {
                            failures.fetch_add(1, Ordering::SeqCst);
                            if !error.is_transient() {
                                log.unexpected.push(error.to_string());
                            }
                            failed = true;
                            assert!(
                                Instant::now() < deadline,
                                "writer {writer} cannot append after the restart: {error}"
                            );
                            tokio::time::sleep(Duration::from_millis(10)).await;
                            if retries {
                                continue;
                            }
                            log.batches.push(Batch {
                                stream: own.as_str().to_owned(),
                                ids: sent,
                                outcome: Outcome::Unknown,
                            });
                            // Go on from what is stored (once the server answers).
                            loop {
                                match store.stream_version(&own).await {
                                    Ok(stored) => {
                                        version = stored.0;
                                        break;
                                    }
                                    Err(error) => {
                                        assert!(
                                            Instant::now() < deadline,
                                            "writer {writer} cannot read after the restart: {error}"
                                        );
                                        tokio::time::sleep(Duration::from_millis(10)).await;
                                    }
                                }
                            }
                            break;
                        }
                    }
                }
            }
            log
        }));
    }

    // Crashes while the writers are in full flow: the first at whatever moment, the others
    // while the heads of two writers' streams are locked, so that the statements writing
    // them wait (the shared ones with the rest of their groups) and the queue fills up.
    let hostages = [stream("own-0"), stream("own-1")];
    let mut crashes = Vec::new();
    let mut failed_groups = Vec::new();
    for crash in 0..CRASHES {
        let before = acknowledged.load(Ordering::SeqCst);
        wait_for(
            &acknowledged,
            before + ACKS_PER_PHASE,
            "appends before a crash",
        )
        .await;
        let mut lock = None;
        if crash > 0 {
            for s in &hostages {
                let deadline = Instant::now() + HANG;
                while store.stream_version(s).await.unwrap() == Version(0) {
                    assert!(Instant::now() < deadline, "{s} has no event yet");
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            }
            lock = Some(lock_heads(&store, &hostages).await);
            wait_for_lock_waiters(&store, 1, HANG).await;
        }
        let groups_before = FAILED_GROUPS.load(Ordering::SeqCst);
        let crashed = Instant::now();
        tokio::task::spawn_blocking(|| restart_server("immediate"))
            .await
            .unwrap();
        crashes.push((crashed, Instant::now()));
        drop(lock); // its session ended with the crash
        let after = acknowledged.load(Ordering::SeqCst);
        wait_for(
            &acknowledged,
            after + ACKS_PER_PHASE,
            "appends after the restart",
        )
        .await;
        failed_groups.push(FAILED_GROUPS.load(Ordering::SeqCst) - groups_before);
    }
    // The point of the test: a crash with locked heads ended a shared statement in flight
    // (its appends were then written alone, or failed).
    assert!(
        failed_groups[1..].iter().sum::<usize>() > 0,
        "no crash hit a shared statement: {failed_groups:?}"
    );
    stop.store(true, Ordering::SeqCst);
    let mut all = WriterLog::default();
    for task in tasks {
        let log = tokio::time::timeout(HANG, task)
            .await
            .expect("a writer hangs after the restarts")
            .unwrap();
        all.batches.extend(log.batches);
        all.unexpected.extend(log.unexpected);
        all.spans.extend(log.spans);
        all.replayed_after_error += log.replayed_after_error;
        all.replayed_first_time += log.replayed_first_time;
    }
    assert!(
        all.unexpected.is_empty(),
        "errors during a crash are transient: {:?}",
        all.unexpected
    );
    // Each crash met appends in flight: begun before the server was back, and failed after
    // the crash began or answered only once the server was back. More than the two transaction
    // slots write alone: queued or grouped ones.
    let mut hit = Vec::new();
    for (crashed, restarted) in &crashes {
        let n = all
            .spans
            .iter()
            .filter(|(start, end, failed)| {
                start < restarted && (*failed && end > crashed || end > restarted)
            })
            .count();
        assert!(n > 2, "a crash hit only {n} appends in flight");
        hit.push(n);
    }
    let mut batches = all.batches;

    // The store takes appends again, many at once: no transaction slot is stuck.
    batches.extend(burst(&store, "after", 32).await);
    let tally = check_store(&store, &batches).await;
    assert!(tally.acknowledged > 4 * ACKS_PER_PHASE, "{tally:?}");
    eprintln!(
        "crash: {tally:?}; shared statements failed by the crashes: {failed_groups:?}; \
         appends in flight at the crashes: {hit:?}; {} failed; replayed: {} \
         retries of a failed batch, {} first sends (a group's lost answer sorted out alone)",
        failures.load(Ordering::SeqCst),
        all.replayed_after_error,
        all.replayed_first_time,
    );
}

/// Writers of the child process.
const CHILD_WRITERS: u64 = 32;

/// Prints `line` to stdout as one write, flushed: a line the parent reads was written before
/// the next step. (libtest may print on the same line first: the parent looks for `GC|`.)
fn say(line: &str) {
    let mut out = std::io::stdout().lock();
    out.write_all(format!("GC|{line}\n").as_bytes()).unwrap();
    out.flush().unwrap();
}

/// Entry point of the writer process the SIGKILL test starts (a no-op unless
/// `EVENTSOURCE_TEST_GC_SCHEMA` is set): [`CHILD_WRITERS`] tasks append to that schema for at
/// most a minute, each printing `try <batch> <stream> <ids>` before an append and
/// `ok <batch> <first version>`, `conflict <batch>` or `err <batch> <error>` after it.
#[test]
#[ignore = "the writer process the SIGKILL test starts (with --ignored); nothing to check on its own"]
fn child_writer_process() {
    let Ok(schema) = std::env::var("EVENTSOURCE_TEST_GC_SCHEMA") else {
        return;
    };
    let url = std::env::var("EVENTSOURCE_TEST_GC_URL").unwrap();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async move {
        let store = PostgresStore::builder()
            .schema(schema)
            .max_connections(8)
            .connect(&url)
            .await
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(60);
        let mut tasks = Vec::new();
        for writer in 0..CHILD_WRITERS {
            let store = store.clone();
            tasks.push(tokio::spawn(async move {
                // Every fourth writer on one of four shared streams, the others on their own.
                let shared = writer % 4 == 3;
                let s = if shared {
                    stream(&format!("shared-{}", writer % 16 / 4))
                } else {
                    stream(&format!("own-{writer}"))
                };
                let mut version = Version(0);
                let mut op = 0u64;
                while Instant::now() < deadline {
                    op += 1;
                    let batch = writer * 1_000_000 + op;
                    if shared {
                        match store.stream_version(&s).await {
                            Ok(v) => version = v,
                            Err(error) => {
                                say(&format!("err {batch} {error}"));
                                continue;
                            }
                        }
                    }
                    let n = if op.is_multiple_of(4) { 1 + op % 3 } else { 1 };
                    let events: Vec<NewEvent> = (0..n).map(|i| added(batch * 10 + i)).collect();
                    let list: Vec<String> = events.iter().map(|e| e.event_id.to_string()).collect();
                    say(&format!("try {batch} {s} {}", list.join(",")));
                    match store
                        .append(&s, ExpectedVersion::Exact(version), events)
                        .await
                    {
                        Ok(written) => {
                            say(&format!("ok {batch} {}", written.first_version.0));
                            version = written.last_version;
                        }
                        Err(StoreError::Conflict { .. }) => say(&format!("conflict {batch}")),
                        Err(error) => {
                            say(&format!("err {batch} {error}"));
                            if let Ok(v) = store.stream_version(&s).await {
                                version = v;
                            }
                        }
                    }
                }
            }));
        }
        for task in tasks {
            task.await.unwrap();
        }
    });
}

/// The child's lines, read as they come: `try` lines by batch, the answers by batch.
#[derive(Default)]
struct ChildLog {
    tries: BTreeMap<u64, (String, Vec<Uuid>)>,
    answers: HashMap<u64, Outcome>,
    errors: Vec<String>,
    acknowledged: usize,
}

impl ChildLog {
    fn read(&mut self, line: &str) {
        let Some((_, line)) = line.split_once("GC|") else {
            return;
        };
        let mut words = line.splitn(4, ' ');
        let (kind, batch) = (words.next().unwrap(), words.next().unwrap());
        let batch: u64 = batch.parse().unwrap();
        match kind {
            "try" => {
                let s = words.next().unwrap().to_owned();
                let ids = words
                    .next()
                    .unwrap()
                    .split(',')
                    .map(|id| id.parse().unwrap())
                    .collect();
                self.tries.insert(batch, (s, ids));
            }
            "ok" => {
                let first: u64 = words.next().unwrap().parse().unwrap();
                self.answers.insert(batch, Outcome::Acknowledged(first));
                self.acknowledged += 1;
            }
            "conflict" => {
                self.answers.insert(batch, Outcome::Conflict);
            }
            "err" => {
                self.errors.push(line.to_owned());
                self.answers.insert(batch, Outcome::Unknown);
            }
            other => panic!("unknown line from the child: {other}"),
        }
    }

    /// Every batch tried, with its answer (`Unknown` when it got none before the kill).
    fn batches(&self) -> Vec<Batch> {
        self.tries
            .iter()
            .map(|(batch, (s, ids))| Batch {
                stream: s.clone(),
                ids: ids.clone(),
                outcome: self.answers.get(batch).cloned().unwrap_or(Outcome::Unknown),
            })
            .collect()
    }

    fn unanswered(&self) -> usize {
        self.tries
            .keys()
            .filter(|b| !self.answers.contains_key(b))
            .count()
    }
}

/// A writing process with 32 appenders queued on the transaction slot, killed with SIGKILL
/// after 300 acknowledged appends, while its statements run. Its unanswered appends are
/// stored wholly or not at all; everything it acknowledged is stored; and no lock of it
/// outlives it: every stream it touched takes an append at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_writer_killed_mid_group_leaves_whole_batches_and_no_lock() {
    let _shared = CLUSTER.read().await;
    let store = fresh_pg_store().await;
    let schema = store.schema().as_str().to_owned();
    let application = format!("gc-child-{}", &schema[schema.len() - 8..]);
    let url = database_url();
    let separator = if url.contains('?') { '&' } else { '?' };
    let stderr_path = std::env::temp_dir().join(format!("eventsource-{schema}.stderr"));
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "--ignored",
            "--exact",
            "child_writer_process",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("EVENTSOURCE_TEST_GC_SCHEMA", &schema)
        .env(
            "EVENTSOURCE_TEST_GC_URL",
            format!("{url}{separator}application_name={application}"),
        )
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(&stderr_path).unwrap())
        .spawn()
        .unwrap();
    let log = Arc::new(Mutex::new(ChildLog::default()));
    // Reads the child's lines as they come (a full pipe would stop it), until it is gone.
    let reader = {
        let (log, stdout) = (Arc::clone(&log), child.stdout.take().unwrap());
        std::thread::spawn(move || {
            let mut stdout = BufReader::new(stdout);
            let mut line = Vec::new();
            loop {
                line.clear();
                if stdout.read_until(b'\n', &mut line).unwrap() == 0 {
                    return;
                }
                // A line cut by the kill was never followed by its append.
                if line.ends_with(b"\n") {
                    let text = String::from_utf8_lossy(&line[..line.len() - 1]).into_owned();
                    log.lock().unwrap().read(&text);
                }
            }
        })
    };

    let deadline = Instant::now() + HANG;
    loop {
        if log.lock().unwrap().acknowledged >= 300 {
            break;
        }
        if let Some(status) = child.try_wait().unwrap() {
            panic!(
                "the writer process exited early ({status}): {}",
                std::fs::read_to_string(&stderr_path).unwrap_or_default()
            );
        }
        assert!(
            Instant::now() < deadline,
            "the writer process acknowledged {} appends",
            log.lock().unwrap().acknowledged
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    // Kill it while one of its statements runs.
    let deadline = Instant::now() + HANG;
    loop {
        let active: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM pg_stat_activity WHERE application_name = $1 AND state = 'active'",
        )
        .bind(&application)
        .fetch_one(store.pool())
        .await
        .unwrap();
        if active > 0 {
            break;
        }
        assert!(Instant::now() < deadline, "no statement of the writer runs");
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    reader.join().unwrap();
    let _ = std::fs::remove_file(&stderr_path);
    let log = std::mem::take(&mut *log.lock().unwrap());
    assert!(
        log.errors.is_empty(),
        "the writer failed appends before the kill: {:?}",
        log.errors
    );
    // More appends in flight than the transaction slot can write alone: some were queued
    // or in a shared group.
    let unanswered = log.unanswered();
    assert!(
        unanswered > 2,
        "only {unanswered} appends were in flight at the kill"
    );

    // The server ends the killed process's sessions (a statement running at the kill ends,
    // committed or rolled back, when it finds its client gone).
    let deadline = Instant::now() + HANG;
    loop {
        let sessions: i64 =
            sqlx::query_scalar("SELECT count(*) FROM pg_stat_activity WHERE application_name = $1")
                .bind(&application)
                .fetch_one(store.pool())
                .await
                .unwrap();
        if sessions == 0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{sessions} sessions of the killed writer live on"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }

    let batches = log.batches();
    let tally = check_store(&store, &batches).await;
    // The writer's appends went through shared transactions: some hold several streams.
    let shared: i64 = sqlx::query_scalar(AssertSqlSafe(format!(
        "SELECT count(*) FROM (SELECT transaction_id FROM \"{schema}\".events \
          GROUP BY transaction_id HAVING count(DISTINCT stream_id) > 1) t"
    )))
    .fetch_one(store.pool())
    .await
    .unwrap();
    assert!(shared > 0, "no transaction of the writer was shared");
    assert!(tally.events >= tally.acknowledged, "{tally:?}");
    eprintln!("kill: {tally:?}, {unanswered} appends unanswered at the kill");

    // Every stream the writer touched takes an append at once: the killed sessions hold no lock.
    let touched: BTreeMap<String, i64> = sqlx::query_as(AssertSqlSafe(format!(
        "SELECT stream_id, version FROM \"{schema}\".streams"
    )))
    .fetch_all(store.pool())
    .await
    .unwrap()
    .into_iter()
    .collect();
    assert!(touched.len() > 8, "{touched:?}");
    let mut tasks = Vec::new();
    for (s, head) in touched {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            let s = StreamId::from_raw(s);
            let head = Version(u64::try_from(head).unwrap());
            let written = store
                .append(&s, ExpectedVersion::Exact(head), vec![added(0)])
                .await
                .unwrap();
            assert_eq!(written.first_version, head.next(), "{s}");
        }));
    }
    for task in tasks {
        tokio::time::timeout(HANG, task)
            .await
            .expect("an append to a stream of the killed writer hangs: a lock outlived it")
            .unwrap();
    }
    assert_versions_gap_free(&store).await;
}

type Answer = Result<Executed<account::Account>, ExecuteError<account::AccountError>>;

/// A keyed deposit on account `id`, sent twice by one caller (the second a retry); each
/// caller has a repository of its own, so that nothing in the process orders them.
fn keyed_deposit(
    store: &PostgresStore,
    id: String,
    key: String,
    amount: u64,
) -> tokio::task::JoinHandle<(String, String, Vec<Answer>)> {
    let store = store.clone();
    tokio::spawn(async move {
        let repo = Repository::<account::Account, _>::new(store).retry_on_conflict(100);
        let mut answers = Vec::new();
        for _ in 0..2 {
            let metadata = CommandMetadata::new().idempotency_key(&key);
            answers.push(
                repo.execute_with(&id, account::Deposit { amount }, metadata)
                    .await,
            );
        }
        (id, key, answers)
    })
}

/// Many callers send one idempotent command at once, through groups they share with other
/// appends (both transaction slots are held by appends waiting for a locked head, so every
/// caller queues): one batch of fixed ids by 8 callers; two keys by 6 callers each on one
/// account; one key by 4 callers on each of three accounts. Each caller sends twice. Each
/// command is written once, every caller gets the same answer (versions, positions, state),
/// exactly one answer per command is not a replay, and nothing is doubled.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn idempotent_retries_through_shared_groups_execute_once_with_one_answer() {
    const ROUNDS: usize = 3;
    let _shared = CLUSTER.read().await;
    // Two transaction slots, both held by the blocked appends.
    let store = fresh_pg_store_with_group_transactions(16, 2).await;
    let blocked = [stream("blocked-a"), stream("blocked-b")];
    for s in &blocked {
        store
            .append(s, ExpectedVersion::NoStream, vec![added(0)])
            .await
            .unwrap();
    }
    for round in 0..ROUNDS {
        let lock = lock_heads(&store, &blocked).await;
        let mut holders = Vec::new();
        for s in &blocked {
            let (store, s) = (store.clone(), s.clone());
            holders.push(tokio::spawn(async move {
                store.append(&s, ExpectedVersion::Any, vec![added(1)]).await
            }));
        }
        wait_for_lock_waiters(&store, 2, HANG).await;

        // One batch of fixed ids, sent by 8 callers with different expectations.
        let same = stream(&format!("same-{round}"));
        let batch = vec![added(7), added(8)];
        let mut same_callers = Vec::new();
        for caller in 0..8 {
            let (store, same, batch) = (store.clone(), same.clone(), batch.clone());
            let expected = match caller % 3 {
                0 => ExpectedVersion::NoStream,
                1 => ExpectedVersion::Exact(Version(0)),
                _ => ExpectedVersion::Any,
            };
            same_callers.push(tokio::spawn(async move {
                let mut answers = Vec::new();
                for _ in 0..2 {
                    answers.push(store.append(&same, expected, batch.clone()).await);
                }
                answers
            }));
        }
        // Keyed commands.
        let mut keyed = Vec::new();
        for caller in 0..12u32 {
            let key = if caller.is_multiple_of(2) {
                "k-even"
            } else {
                "k-odd"
            };
            let amount = if caller.is_multiple_of(2) { 10 } else { 20 };
            keyed.push(keyed_deposit(
                &store,
                format!("both-{round}"),
                format!("{key}-{round}"),
                amount,
            ));
        }
        for caller in 0..12 {
            keyed.push(keyed_deposit(
                &store,
                format!("one-{round}-{}", caller % 3),
                format!("k-{round}"),
                5,
            ));
        }
        // Other appends in the same groups.
        let fillers: Vec<StreamId> = (0..8)
            .map(|i| stream(&format!("filler-{round}-{i}")))
            .collect();
        let mut filler_tasks = Vec::new();
        for s in &fillers {
            let (store, s) = (store.clone(), s.clone());
            filler_tasks.push(tokio::spawn(async move {
                store
                    .append(&s, ExpectedVersion::NoStream, vec![added(9)])
                    .await
            }));
        }
        // Everybody queues behind the two blocked appends; then the heads are released.
        tokio::time::sleep(Duration::from_millis(500)).await;
        lock.close().await.unwrap();
        for holder in holders {
            tokio::time::timeout(HANG, holder)
                .await
                .expect("a blocked append hangs")
                .unwrap()
                .unwrap();
        }

        // The batch of fixed ids: written once, every answer the same.
        let mut answers: Vec<Appended> = Vec::new();
        for caller in same_callers {
            for answer in tokio::time::timeout(HANG, caller)
                .await
                .expect("an append of the fixed batch hangs")
                .unwrap()
            {
                answers.push(answer.unwrap());
            }
        }
        let writers = answers.iter().filter(|a| !a.replayed).count();
        assert_eq!(writers, 1, "round {round}: one caller wrote the batch");
        let first = answers.iter().find(|a| !a.replayed).unwrap().clone();
        assert_eq!(
            (first.first_version, first.last_version),
            (Version(1), Version(2))
        );
        for answer in &answers {
            assert_eq!(
                (
                    answer.first_version,
                    answer.last_version,
                    answer.first_position,
                    answer.last_position
                ),
                (
                    first.first_version,
                    first.last_version,
                    first.first_position,
                    first.last_position
                ),
                "round {round}: a caller of the fixed batch got another answer"
            );
        }
        assert_eq!(transactions(&store, &same).await.len(), 2);

        // The fillers went in one group, together with the fixed batch.
        for task in filler_tasks {
            let written = tokio::time::timeout(HANG, task)
                .await
                .expect("a filler append hangs")
                .unwrap()
                .unwrap();
            assert_eq!(written.first_version, Version(1));
        }
        let group = transactions(&store, &same).await[0];
        for s in &fillers {
            assert_eq!(
                transactions(&store, s).await,
                vec![group],
                "round {round}: {s} was queued with the fixed batch and shares its transaction"
            );
        }

        // Keyed commands: one execution per (account, key), the same answer to every caller.
        let mut by_key: BTreeMap<(String, String), Vec<Executed<account::Account>>> =
            BTreeMap::new();
        for task in keyed {
            let (id, key, answers) = tokio::time::timeout(HANG, task)
                .await
                .expect("a keyed command hangs")
                .unwrap();
            for (attempt, answer) in answers.into_iter().enumerate() {
                let done = answer.unwrap_or_else(|e| panic!("round {round}, {id} {key}: {e}"));
                if attempt == 1 {
                    assert!(done.replayed, "round {round}, {id} {key}: a retry replays");
                }
                by_key
                    .entry((id.clone(), key.clone()))
                    .or_default()
                    .push(done);
            }
        }
        assert_eq!(by_key.len(), 5);
        let mut per_account: BTreeMap<String, usize> = BTreeMap::new();
        for ((id, key), answers) in &by_key {
            let writer = answers.iter().filter(|d| !d.replayed).count();
            assert_eq!(writer, 1, "round {round}, {id} {key}: one execution");
            let first = &answers[0];
            for done in answers {
                assert_eq!(
                    (done.version, &done.events, &done.state),
                    (first.version, &first.events, &first.state),
                    "round {round}, {id} {key}: every caller gets the one execution"
                );
            }
            *per_account.entry(id.clone()).or_default() += 1;
            let repo = Repository::<account::Account, _>::new(store.clone());
            let history = repo.history(id).await.unwrap();
            let at = &history[first.version.0 as usize - 1];
            assert_eq!(
                at.record.metadata.idempotency_key.as_deref(),
                Some(key.as_str()),
                "round {round}: {id} v{} is the execution of {key}",
                first.version
            );
        }
        for (id, executions) in per_account {
            let repo = Repository::<account::Account, _>::new(store.clone());
            assert_eq!(
                repo.history(&id).await.unwrap().len(),
                executions,
                "round {round}: {id} holds one event per key"
            );
        }
    }
    assert_versions_gap_free(&store).await;
}
