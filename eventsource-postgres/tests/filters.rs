//! Filtered global reads against a real PostgreSQL server, on both plans a filter can take:
//! up to `EACH_VALUE_LIMIT` distinct names (or categories) read each value's index and merge
//! the pages; more read the global index and filter (issue 22). Both must return the same
//! events, in checkpoint order, page after page.
//!
//! Needs `DATABASE_URL` (`scripts/test.sh` sets it); fails, never skips, without it.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use eventsource_core::{
    Checkpoint, EventStore, ExpectedVersion, LogFilter, NewEvent, RecordedEvent, StreamId,
};
use eventsource_postgres::PostgresStore;
use serde_json::json;
use uuid::Uuid;

async fn fresh_store() -> PostgresStore {
    let url = match std::env::var("DATABASE_URL") {
        Ok(url) if !url.trim().is_empty() => url,
        _ => panic!(
            "DATABASE_URL is not set: the filter tests need a PostgreSQL server. Run \
             `scripts/test.sh` (it starts a throwaway PostgreSQL and sets DATABASE_URL)"
        ),
    };
    let store = PostgresStore::builder()
        .schema(format!("t_{}", Uuid::now_v7().simple()))
        .max_connections(2)
        .acquire_timeout(Duration::from_secs(20))
        .horizon_wait(Duration::from_secs(5))
        .connect(&url)
        .await
        .unwrap_or_else(|e| panic!("the filter tests need a reachable PostgreSQL server: {e}"));
    store.migrate().await.unwrap();
    store
}

/// Every event passing `filter`, read `page` at a time.
async fn read_paged(store: &PostgresStore, filter: &LogFilter, page: usize) -> Vec<RecordedEvent> {
    let mut all = Vec::new();
    let mut after = Checkpoint::START;
    loop {
        let events = store.read_all(after, page, filter).await.unwrap();
        let Some(last) = events.last() else {
            return all;
        };
        after = last.checkpoint;
        assert!(events.len() <= page);
        all.extend(events);
    }
}

fn filter(categories: &[&str], names: &[&str]) -> LogFilter {
    let mut filter = LogFilter::all();
    filter.categories = categories.iter().map(|c| (*c).to_owned()).collect();
    filter.names = names.iter().map(|n| (*n).to_owned()).collect();
    filter
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn few_and_many_names_and_categories_read_the_same_events_in_order() {
    let store = fresh_store().await;
    // 12 names over 3 categories, interleaved across transactions and batches.
    let names: Vec<String> = (0..12).map(|i| format!("N{i}")).collect();
    for round in 0..6 {
        for (s, category) in ["a", "b", "c"].iter().enumerate() {
            let batch = (0..5)
                .map(|i| {
                    let name = &names[(round * 7 + s * 3 + i) % names.len()];
                    NewEvent::new(name.clone(), 1, json!({ "round": round }))
                })
                .collect();
            let stream = StreamId::from_raw(format!("{category}-{}", round % 2));
            store
                .append(&stream, ExpectedVersion::Any, batch)
                .await
                .unwrap();
        }
    }
    let everything = read_paged(&store, &LogFilter::all(), 1000).await;
    assert_eq!(everything.len(), 90);
    let nine: Vec<&str> = names.iter().take(9).map(String::as_str).collect();
    let cases = [
        filter(&[], &["N1"]),
        filter(&[], &["N1", "N5", "N5", "N1"]),
        filter(&[], &nine[..8]),
        filter(&[], &nine),
        filter(&["b"], &[]),
        filter(&["a", "c", "a"], &[]),
        filter(&["a", "b", "c", "d", "e", "f", "g", "h", "i"], &[]),
        filter(&["a"], &["N2", "N3"]),
        filter(&["a", "c"], &nine),
        filter(&["a", "b", "c", "d", "e", "f", "g", "h", "i"], &nine),
        filter(&[], &["nothing"]),
    ];
    for case in &cases {
        let expected: Vec<_> = everything
            .iter()
            .filter(|e| {
                (case.categories.is_empty()
                    || case.categories.iter().any(|c| e.stream_id.category() == c))
                    && (case.names.is_empty() || case.names.contains(&e.name))
            })
            .map(|e| e.checkpoint)
            .collect();
        for page in [1, 4, 1000] {
            let got: Vec<_> = read_paged(&store, case, page)
                .await
                .iter()
                .map(|e| e.checkpoint)
                .collect();
            assert_eq!(got, expected, "{case:?}, pages of {page}");
        }
    }
}

/// A filter that holds nearly every event of the log is read on in plain checkpoint order
/// (the store's dense-read hint) and filtered in the store: the pages must be the same as
/// the filter's own statement gives, also where the other events are sprinkled in.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dense_filter_reads_the_same_events_as_a_sparse_one() {
    let store = fresh_store().await;
    // Long dense stretches of `A`/`B`, an `Other` now and then, a run of `Other`s.
    for i in 0..120_u32 {
        let name = match i {
            _ if i % 23 == 22 => "Other",
            60..=70 => "Other",
            _ if i % 2 == 0 => "A",
            _ => "B",
        };
        let stream = StreamId::from_raw(format!("s-{}", i % 5));
        store
            .append(
                &stream,
                ExpectedVersion::Any,
                vec![NewEvent::new(name, 1, json!({ "i": i }))],
            )
            .await
            .unwrap();
    }
    let everything = read_paged(&store, &LogFilter::all(), 1000).await;
    assert_eq!(everything.len(), 120);
    for case in [
        filter(&[], &["A", "B"]),
        filter(&["s"], &["A", "B"]),
        filter(&["s"], &[]),
        filter(&[], &["A"]),
    ] {
        let expected: Vec<_> = everything
            .iter()
            .filter(|e| case.matches(e))
            .map(|e| e.checkpoint)
            .collect();
        for page in [1, 4, 7, 1000] {
            // Twice: the second run starts with the hints the first one left.
            for run in 0..2 {
                let got: Vec<_> = read_paged(&store, &case, page)
                    .await
                    .iter()
                    .map(|e| e.checkpoint)
                    .collect();
                assert_eq!(got, expected, "{case:?}, pages of {page}, run {run}");
            }
        }
    }
}

/// Writers commit out of order (each holds its transaction open a while) while a reader pages
/// through a dense filter: every event is read once, in checkpoint order, none skipped.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_dense_filter_skips_nothing_while_writers_commit_out_of_order() {
    let store = fresh_store().await;
    let dense = filter(&[], &["Dense"]);
    let writers: Vec<_> = (0..4_u64)
        .map(|w| {
            let store = store.clone();
            tokio::spawn(async move {
                for i in 0..25_u64 {
                    let mut tx = store.pool().begin().await.unwrap();
                    let name = if i % 10 == 9 { "Other" } else { "Dense" };
                    store
                        .append_in(
                            &mut tx,
                            &StreamId::from_raw(format!("w-{w}-{i}")),
                            ExpectedVersion::NoStream,
                            vec![NewEvent::new(name, 1, json!({ "w": w, "i": i }))],
                        )
                        .await
                        .unwrap();
                    // Later transactions of other writers commit meanwhile.
                    tokio::time::sleep(Duration::from_millis((w * 7 + i * 3) % 11)).await;
                    tx.commit().await.unwrap();
                }
            })
        })
        .collect();
    let mut seen = Vec::new();
    let mut after = Checkpoint::START;
    let mut writing = true;
    while writing {
        writing = writers.iter().any(|w| !w.is_finished());
        loop {
            let page = store.read_all(after, 4, &dense).await.unwrap();
            let Some(last) = page.last() else { break };
            after = last.checkpoint;
            seen.extend(page.iter().map(|e| (e.checkpoint, e.event_id)));
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    for writer in writers {
        writer.await.unwrap();
    }
    // Whatever the last pass left.
    loop {
        let page = store.read_all(after, 4, &dense).await.unwrap();
        let Some(last) = page.last() else { break };
        after = last.checkpoint;
        seen.extend(page.iter().map(|e| (e.checkpoint, e.event_id)));
    }
    let expected: Vec<_> = read_paged(&store, &LogFilter::all(), 1000)
        .await
        .iter()
        .filter(|e| e.name == "Dense")
        .map(|e| (e.checkpoint, e.event_id))
        .collect();
    assert_eq!(expected.len(), 92);
    assert_eq!(seen, expected, "read once each, in checkpoint order");
}
