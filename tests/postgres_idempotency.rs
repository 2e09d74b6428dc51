//! Idempotency keys on a real PostgreSQL server: 8 tasks per round race with shared and own
//! keys, withdrawals are accepted or rejected, and every caller's answer is checked against
//! a refold of the stream (see `support/account.rs`).
#![allow(clippy::unwrap_used, clippy::expect_used)] // a test fails by panicking

#[path = "support/account.rs"]
mod account;
#[path = "support/postgres.rs"]
mod support;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_keyed_commands_run_once() {
    let store = support::fresh_pg_store().await;
    account::concurrent_account_rounds(store, 60).await;
}

/// The lookup a keyed command makes is one query on the unique event-id index, also on a table
/// the planner has no statistics for (a restored database), and after ANALYZE.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_key_lookup_is_an_index_scan() {
    use eventsource::postgres::sqlx::{self, AssertSqlSafe};
    use eventsource::{CommandMetadata, EventStore, ExpectedVersion, NewEvent, StreamId};

    let store = support::fresh_pg_store().await;
    for s in 0..20 {
        let events = (0..1_000)
            .map(|n| NewEvent::new("account.deposited", 1, serde_json::json!({ "amount": n })))
            .collect();
        store
            .append(
                &StreamId::new("account", format!("fill-{s}")),
                ExpectedVersion::NoStream,
                events,
            )
            .await
            .unwrap();
    }
    let repo = eventsource::Repository::<account::Account, _>::new(store.clone());
    let done = repo
        .execute_with(
            "a",
            account::Deposit { amount: 5 },
            CommandMetadata::new().idempotency_key("req-1"),
        )
        .await
        .unwrap();
    let id = repo.history("a").await.unwrap()[0].record.event_id;
    assert_eq!(
        store.find_event(id).await.unwrap().unwrap().version,
        done.version
    );
    let explain = format!(
        "EXPLAIN SELECT * FROM \"{}\".events WHERE event_id = $1",
        store.schema()
    );
    for analysed in [false, true] {
        if analysed {
            let analyze = format!("ANALYZE \"{}\".events", store.schema());
            sqlx::raw_sql(AssertSqlSafe(analyze))
                .execute(store.pool())
                .await
                .unwrap();
        }
        let plan: Vec<String> = sqlx::query_scalar(AssertSqlSafe(explain.clone()))
            .bind(id)
            .fetch_all(store.pool())
            .await
            .unwrap();
        let plan = plan.join("\n");
        assert!(
            plan.contains("Index Scan using events_event_id_unique"),
            "analysed: {analysed}\n{plan}"
        );
        assert!(!plan.contains("Seq Scan"), "{plan}");
    }
}
