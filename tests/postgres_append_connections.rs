//! The connections a store built by `PostgresStoreBuilder` keeps for its appends and stream
//! loads, outside sqlx's pool (no ping around each statement): ended by the server, cut off
//! by a cancelled append or read, closed with the store. Whatever happens to them, an append
//! either fails or is committed, a read returns what is stored, the store never holds more
//! sessions than its pool's `max_connections` and the 4 it keeps, and none is left inside a
//! transaction.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "support/postgres.rs"]
mod support;

use std::time::Duration;

use eventsource::postgres::PostgresStore;
use eventsource::postgres::sqlx::{self, Connection, PgConnection};
use eventsource::testing::fixture::ADDED;
use eventsource::{EventStore, ExpectedVersion, NewEvent, StreamId, Version};
use serde_json::json;
use support::{database_url, drop_after, unique_schema};

/// A migrated store whose sessions carry an application name of their own, so that the test
/// can find (and end) them.
async fn named_store(max_connections: u32) -> (PostgresStore, String) {
    named_store_keeping(max_connections, true).await
}

/// [`named_store`], keeping connections of its own or not.
async fn named_store_keeping(max_connections: u32, keep: bool) -> (PostgresStore, String) {
    let name = format!("append-conn-{}", uuid::Uuid::now_v7().simple());
    let url = database_url();
    let separator = if url.contains('?') { '&' } else { '?' };
    let store = PostgresStore::builder()
        .schema(unique_schema())
        .max_connections(max_connections)
        .keep_connections(keep)
        .acquire_timeout(Duration::from_secs(20))
        .connect(&format!("{url}{separator}application_name={name}"))
        .await
        .unwrap();
    store.migrate().await.unwrap();
    (store, name)
}

/// The server's sessions named `name`: how many, and how many inside a transaction.
async fn sessions(name: &str) -> (i64, i64) {
    let mut other = PgConnection::connect(&database_url()).await.unwrap();
    let counts: (i64, i64) = sqlx::query_as(
        "SELECT count(*), count(*) FILTER (WHERE state LIKE 'idle in transaction%') \
         FROM pg_stat_activity WHERE application_name = $1",
    )
    .bind(name)
    .fetch_one(&mut other)
    .await
    .unwrap();
    other.close().await.unwrap();
    counts
}

/// Ends every session named `name` from the server's side (`pg_terminate_backend`, as an
/// administrator would); returns how many.
async fn terminate(name: &str) -> i64 {
    let mut other = PgConnection::connect(&database_url()).await.unwrap();
    let ended: i64 = sqlx::query_scalar(
        "SELECT count(*) FILTER (WHERE pg_terminate_backend(pid)) \
         FROM pg_stat_activity WHERE application_name = $1",
    )
    .bind(name)
    .fetch_one(&mut other)
    .await
    .unwrap();
    other.close().await.unwrap();
    // The ended backends are gone from pg_stat_activity once they have exited.
    for _ in 0..100 {
        if sessions(name).await.0 == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    ended
}

fn one_event(n: u64) -> Vec<NewEvent> {
    vec![NewEvent::new(ADDED, 1, json!({ "amount": n }))]
}

/// Appends one event to each of `streams` at once, on the store's next version of each.
async fn append_each(store: &PostgresStore, streams: &[StreamId], version: u64) {
    let appends = streams.iter().map(|stream| {
        store.append(
            stream,
            if version == 0 {
                ExpectedVersion::NoStream
            } else {
                ExpectedVersion::Exact(Version(version))
            },
            one_event(version),
        )
    });
    for (stream, appended) in streams
        .iter()
        .zip(futures_util::future::join_all(appends).await)
    {
        let appended =
            appended.unwrap_or_else(|e| panic!("appending to {stream} at {version}: {e}"));
        assert!(
            !appended.replayed,
            "{stream} at {version}: nothing was lost mid-way"
        );
        assert_eq!(appended.last_version, Version(version + 1));
    }
}

/// An administrator ends all of the store's sessions between appends, again and again: the
/// next appends (one alone, then eight at once, which share transactions) all succeed. A
/// connection kept for appends learns of its end only when its next statement fails (with
/// `FATAL 57P01`, within the half-second in which it is not pinged); that append is then
/// written on the pool, whose connections are checked before use.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn appends_succeed_after_the_server_ends_the_stores_sessions() {
    let (store, name) = named_store(6).await;
    let lone = [StreamId::new("counter", "lone")];
    let many: Vec<_> = (0..8)
        .map(|i| StreamId::new("counter", format!("many-{i}")))
        .collect();
    append_each(&store, &lone, 0).await;
    append_each(&store, &many, 0).await;
    for version in 1..=5 {
        let ended = terminate(&name).await;
        assert!(ended >= 1, "round {version}: the store had sessions to end");
        if version % 2 == 0 {
            // A read first: on a kept read connection, ended too.
            let events = store.read_stream(&lone[0], Version(1), 100).await.unwrap();
            assert_eq!(events.len() as u64, version);
        }
        append_each(&store, &lone, version).await;
        append_each(&store, &many, version).await;
    }
    for stream in lone.iter().chain(&many) {
        let events = store.read_stream(stream, Version(1), 100).await.unwrap();
        assert_eq!(events.len(), 6, "{stream}: each acknowledged append once");
    }
    let (open, in_transaction) = sessions(&name).await;
    assert!(open <= 6 + 4, "{open} sessions for max_connections 6");
    assert_eq!(in_transaction, 0);
}

/// Appends and reads cancelled at every point (while a connection is taken, pinged or opened, while the
/// statement is on the wire, while it waits for its result) leave no connection in a
/// transaction, no half-written batch, and never push the store past `max_connections` and
/// its 4 kept connections:
/// a connection whose append was cut off is closed, not reused, and stops counting.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancelled_appends_leave_no_session_behind_and_stay_within_max_connections() {
    let (store, name) = named_store(8).await;
    let mut most = 0;
    for round in 0..96u64 {
        let stream = StreamId::new("counter", format!("cut-{round}"));
        let batch = if round % 3 == 0 {
            // Two events: a batch that must be stored whole or not at all.
            vec![
                NewEvent::new(ADDED, 1, json!({ "amount": 1 })),
                NewEvent::new(ADDED, 1, json!({ "amount": 2 })),
            ]
        } else {
            one_event(1)
        };
        drop_after(
            store.append(&stream, ExpectedVersion::NoStream, batch),
            (round % 12 + 1) as usize,
        )
        .await;
        // And a read of it, cut off as well.
        drop_after(
            store.read_stream(&stream, Version(1), 10),
            (round % 5 + 1) as usize,
        )
        .await;
        if round % 8 == 7 {
            // Some idle time, so that kept connections are pinged before their next use.
            tokio::time::sleep(Duration::from_millis(600)).await;
        }
        let (open, in_transaction) = sessions(&name).await;
        most = most.max(open);
        assert_eq!(
            in_transaction, 0,
            "round {round}: a session left in a transaction"
        );
        let stored = store.read_stream(&stream, Version(1), 10).await.unwrap();
        let expected_whole = if round % 3 == 0 { 2 } else { 1 };
        assert!(
            stored.is_empty() || stored.len() == expected_whole,
            "round {round}: {} of {expected_whole} events stored",
            stored.len()
        );
    }
    // Still appending, also eight at once, on the kept connections or the pool.
    let streams: Vec<_> = (0..8)
        .map(|i| StreamId::new("counter", format!("after-{i}")))
        .collect();
    append_each(&store, &streams, 0).await;
    append_each(&store, &streams, 1).await;
    let (open, _) = sessions(&name).await;
    most = most.max(open);
    assert!(most <= 8 + 4, "{most} sessions for max_connections 8");
}

/// `PostgresStore::close` closes every session of the store, the pool's and the ones kept for
/// appends; appends fail afterwards instead of opening new ones.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn closing_the_store_ends_all_of_its_sessions() {
    let (store, name) = named_store(6).await;
    let streams: Vec<_> = (0..8)
        .map(|i| StreamId::new("counter", format!("closing-{i}")))
        .collect();
    append_each(&store, &streams, 0).await;
    assert!(sessions(&name).await.0 >= 2);
    let clone = store.clone();
    store.close().await;
    for _ in 0..100 {
        if sessions(&name).await.0 == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(
        sessions(&name).await.0,
        0,
        "the store's sessions are closed"
    );
    let after = clone
        .append(&streams[0], ExpectedVersion::Any, one_event(9))
        .await;
    assert!(after.is_err(), "a closed store appends nothing: {after:?}");
    assert_eq!(sessions(&name).await.0, 0, "and opens no session for it");
}

/// With `keep_connections(false)`, or a pool of fewer than 4, the store opens no connection
/// beside its pool: eight clients appending and loading at once stay within `max_connections`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_keeping_no_connections_stays_within_its_pool() {
    for (max, keep) in [(4, false), (3, true)] {
        let (store, name) = named_store_keeping(max, keep).await;
        let streams: Vec<_> = (0..8)
            .map(|i| StreamId::new("counter", format!("pooled-{i}")))
            .collect();
        let mut most = 0;
        for version in 0..4 {
            let loads = streams
                .iter()
                .map(|stream| store.read_stream(stream, Version(1), 10));
            let (_, ()) = tokio::join!(futures_util::future::join_all(loads), async {
                append_each(&store, &streams, version).await;
            });
            most = most.max(sessions(&name).await.0);
        }
        assert!(most >= 1);
        assert!(
            most <= i64::from(max),
            "keep {keep}: {most} sessions for max_connections {max}"
        );
    }
}

/// Decisions (the read of a boundary, the conditional append) go through the pool, beside the
/// kept connections: after an administrator ended every session of the store, each next
/// decision succeeds, and each is stored once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn decisions_succeed_after_the_server_ends_the_stores_sessions() {
    use eventsource::{DecisionStore, Query, QueryItem, StreamAppend, Tag};
    let (store, name) = named_store(6).await;
    let query = Query::new().item(QueryItem::tagged([Tag::new("course", "c1")]));
    for round in 0..4usize {
        if round > 0 {
            assert!(
                terminate(&name).await >= 1,
                "round {round}: sessions to end"
            );
        }
        let read = store.read_query(&query).await.unwrap();
        assert_eq!(
            read.events.len(),
            round,
            "round {round}: every decision so far"
        );
        let event = NewEvent::new(ADDED, 1, json!({ "amount": round }))
            .with_tags([Tag::new("course", "c1")]);
        let append = StreamAppend::new(
            StreamId::new("student", format!("s{round}")),
            ExpectedVersion::NoStream,
            vec![event],
        );
        let written = store
            .append_streams(vec![append], Some(read.condition(query.clone())))
            .await
            .unwrap_or_else(|e| panic!("round {round}: {e}"));
        assert!(!written[0].replayed, "round {round}");
    }
    assert_eq!(store.read_query(&query).await.unwrap().events.len(), 4);
}
