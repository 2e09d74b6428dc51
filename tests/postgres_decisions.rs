//! Decisions across streams on PostgreSQL, where it differs from memory: transactions that
//! commit out of order, the caller's own transactions, many writers on one boundary.

#[path = "support/postgres.rs"]
mod support;

use std::collections::HashSet;
use std::time::Duration;

use eventsource::postgres::PostgresStore;
use eventsource::{
    AppendCondition, DecisionStore, EventStore, ExpectedVersion, NewEvent, Query, QueryItem,
    StoreError, StreamAppend, StreamId, Tag,
};
use serde_json::json;
use support::{database_url, fresh_pg_store, unique_schema};

fn course(id: u64) -> Tag {
    Tag::new("course", id)
}

fn enrolled(student: u64, course_id: u64) -> NewEvent {
    NewEvent::new("student.enrolled", 1, json!({ "student": student }))
        .with_tags([course(course_id), Tag::new("student", student)])
}

fn enrol(student: u64, course_id: u64) -> Vec<StreamAppend> {
    vec![StreamAppend::new(
        StreamId::new("student", student),
        ExpectedVersion::Any,
        vec![enrolled(student, course_id)],
    )]
}

fn in_course(id: u64) -> Query {
    Query::new().item(QueryItem::tagged([course(id)]))
}

/// A tagged write still open when the decision reads is not in the read; once it commits,
/// the decision's conditional append (which waited for it) fails instead of overlooking it,
/// although its position is below everything the read saw.
#[tokio::test]
async fn a_write_open_during_the_read_fails_the_condition_when_it_commits() {
    let store = fresh_pg_store().await;
    let mut open = store.pool().begin().await.unwrap();
    store
        .append_in(
            &mut open,
            &StreamId::new("student", 1),
            ExpectedVersion::Any,
            vec![enrolled(1, 7)],
        )
        .await
        .unwrap();
    // Later writes of the same course cannot commit before it: they wait for its tag lock.
    // An untagged write commits meanwhile, with a higher position.
    store
        .append(
            &StreamId::new("other", 1),
            ExpectedVersion::Any,
            vec![NewEvent::new("x", 1, json!({}))],
        )
        .await
        .unwrap();

    let read = store.read_query(&in_course(7)).await.unwrap();
    assert!(read.events.is_empty(), "the open write is not visible yet");
    let decision = {
        let store = store.clone();
        let condition = read.condition(in_course(7));
        tokio::spawn(async move { store.append_streams(enrol(2, 7), Some(condition)).await })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        !decision.is_finished(),
        "the decision waits for the open writer's lock"
    );
    open.commit().await.unwrap();
    let outcome = decision.await.unwrap();
    assert!(
        matches!(outcome, Err(StoreError::ConditionFailed { ref stream, .. }) if *stream == StreamId::new("student", 1)),
        "{outcome:?}"
    );
}

/// A long transaction elsewhere in the cluster holds the global read horizon back, but it
/// does not make decisions fail or read stale facts: the read position is the read's
/// snapshot, not the horizon.
#[tokio::test]
async fn an_unrelated_open_transaction_does_not_stall_decisions() {
    let store = fresh_pg_store().await;
    let mut unrelated = store.pool().begin().await.unwrap();
    store
        .append_in(
            &mut unrelated,
            &StreamId::new("other", 1),
            ExpectedVersion::Any,
            vec![NewEvent::new("x", 1, json!({}))],
        )
        .await
        .unwrap();
    for student in 0..5 {
        let read = store.read_query(&in_course(3)).await.unwrap();
        assert_eq!(
            read.events.len(),
            student as usize,
            "each read sees the commits before it"
        );
        store
            .append_streams(enrol(student, 3), Some(read.condition(in_course(3))))
            .await
            .unwrap();
    }
    unrelated.rollback().await.unwrap();
}

/// `append_streams_in` writes with the caller's transaction: nothing on rollback, all on
/// commit, and the boundary stays locked until then.
#[tokio::test]
async fn appends_in_the_callers_transaction_follow_it() {
    let store = fresh_pg_store().await;
    let mut tx = store.pool().begin().await.unwrap();
    store
        .append_streams_in(
            &mut tx,
            enrol(1, 9),
            Some(AppendCondition::none_match(in_course(9))),
        )
        .await
        .unwrap();
    tx.rollback().await.unwrap();
    assert!(
        store
            .read_query(&in_course(9))
            .await
            .unwrap()
            .events
            .is_empty()
    );

    let mut tx = store.pool().begin().await.unwrap();
    store
        .append_streams_in(
            &mut tx,
            enrol(1, 9),
            Some(AppendCondition::none_match(in_course(9))),
        )
        .await
        .unwrap();
    let rival = {
        let store = store.clone();
        tokio::spawn(async move {
            store
                .append_streams(enrol(2, 9), Some(AppendCondition::none_match(in_course(9))))
                .await
        })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        !rival.is_finished(),
        "the boundary is locked until the caller commits"
    );
    tx.commit().await.unwrap();
    assert!(matches!(
        rival.await.unwrap(),
        Err(StoreError::ConditionFailed { .. })
    ));
    assert_eq!(
        store.read_query(&in_course(9)).await.unwrap().events.len(),
        1
    );
}

/// Many writers (more than the pool's connections) on one boundary, with multi-stream
/// decisions and plain tagged appends interleaved, and a second boundary beside it: the
/// capacity holds exactly, and the other course is filled independently.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn many_writers_on_one_boundary_never_exceed_the_capacity() {
    const CAPACITY: usize = 25;
    const TASKS: u64 = 40;
    let store = PostgresStore::builder()
        .schema(unique_schema())
        .max_connections(16)
        .acquire_timeout(Duration::from_secs(60))
        .connect(&database_url())
        .await
        .unwrap();
    store.migrate().await.unwrap();

    let mut handles = Vec::new();
    for task in 0..TASKS {
        let store = store.clone();
        handles.push(tokio::spawn(async move {
            let course_id = if task % 4 == 3 { 2 } else { 1 };
            let query = in_course(course_id);
            for attempt in 0.. {
                let read = store.read_query(&query).await.unwrap();
                let taken = read
                    .events
                    .iter()
                    .filter(|e| e.name == "student.enrolled")
                    .count();
                if taken >= CAPACITY {
                    return None;
                }
                // Each enrolment also moves the course's own counter stream: a multi-stream
                // append under the condition.
                let appends = vec![
                    StreamAppend::new(
                        StreamId::new("student", task),
                        ExpectedVersion::Any,
                        vec![enrolled(task, course_id)],
                    ),
                    StreamAppend::new(
                        StreamId::new("seats", course_id),
                        ExpectedVersion::Any,
                        vec![NewEvent::new("seat.taken", 1, json!({ "by": task }))],
                    ),
                ];
                match store
                    .append_streams(appends, Some(read.condition(query.clone())))
                    .await
                {
                    Ok(_) => return Some(task),
                    Err(StoreError::ConditionFailed { .. }) => {
                        assert!(attempt < 10_000, "no progress");
                        tokio::task::yield_now().await;
                    }
                    Err(other) => panic!("unexpected error: {other}"),
                }
            }
            None
        }));
    }
    let noise = {
        let store = store.clone();
        tokio::spawn(async move {
            for n in 0..20 {
                store
                    .append(
                        &StreamId::new("course", 1),
                        ExpectedVersion::Any,
                        vec![
                            NewEvent::new("course.noted", 1, json!({ "n": n }))
                                .with_tags([course(1)]),
                        ],
                    )
                    .await
                    .unwrap();
            }
        })
    };
    let mut winners = HashSet::new();
    for handle in handles {
        if let Some(task) = handle.await.unwrap() {
            winners.insert(task);
        }
    }
    noise.await.unwrap();

    let enrolled_in = |events: &[eventsource::RecordedEvent]| {
        events
            .iter()
            .filter(|e| e.name == "student.enrolled")
            .count()
    };
    let course_1 = store.read_query(&in_course(1)).await.unwrap().events;
    let course_2 = store.read_query(&in_course(2)).await.unwrap().events;
    assert_eq!(
        enrolled_in(&course_1),
        CAPACITY,
        "course 1 is full and not over"
    );
    assert_eq!(
        enrolled_in(&course_2),
        (TASKS / 4) as usize,
        "course 2 had room for all"
    );
    assert_eq!(winners.len(), CAPACITY + (TASKS / 4) as usize);
    let seats_1 = store
        .stream_version(&StreamId::new("seats", 1))
        .await
        .unwrap();
    assert_eq!(
        seats_1.0 as usize, CAPACITY,
        "the counter stream moved with each decision"
    );
}

/// Deleting a stream (where the law demands it) also removes its rows from the tag index:
/// tags may carry personal data, and a query reads no trace of the stream afterwards. Other
/// streams' tags stay; the tag index stays immutable to anything but the delete path.
#[tokio::test]
async fn deleting_a_stream_removes_its_tags() {
    use eventsource::StreamRetirement;
    use eventsource::postgres::sqlx;
    let store = fresh_pg_store().await;
    store.append_streams(enrol(1, 7), None).await.unwrap();
    store.append_streams(enrol(2, 7), None).await.unwrap();
    let schema = store.schema().as_str().to_owned();
    let tag_rows = |student: u64| {
        let store = store.clone();
        let schema = schema.clone();
        async move {
            sqlx::query_scalar::<_, i64>(sqlx::AssertSqlSafe(format!(
                "SELECT count(*) FROM \"{schema}\".event_tags WHERE tag = 'student:{student}'"
            )))
            .fetch_one(store.pool())
            .await
            .unwrap()
        }
    };
    assert_eq!(tag_rows(1).await, 1);

    let refused = sqlx::query(sqlx::AssertSqlSafe(format!(
        "DELETE FROM \"{schema}\".event_tags WHERE tag = 'student:1'"
    )))
    .execute(store.pool())
    .await
    .unwrap_err()
    .to_string();
    assert!(refused.contains("immutable"), "{refused}");

    assert_eq!(
        store
            .delete_stream(&StreamId::new("student", 1))
            .await
            .unwrap(),
        1
    );
    assert_eq!(tag_rows(1).await, 0);
    assert_eq!(tag_rows(2).await, 1);
    let read = store.read_query(&in_course(7)).await.unwrap();
    assert_eq!(read.events.len(), 1);
    assert_eq!(read.events[0].stream_id, StreamId::new("student", 2));
}

/// The next notification on `listener` within `within`, as the position it carries; a lost
/// listener connection or a payload that is no position fails the test.
#[allow(clippy::expect_used)]
async fn next_position(
    listener: &mut eventsource::postgres::sqlx::postgres::PgListener,
    within: Duration,
) -> Option<u64> {
    match tokio::time::timeout(within, listener.recv()).await {
        Ok(notification) => Some(
            notification
                .expect("the listener's connection stays up")
                .payload()
                .parse()
                .expect("a notification carries a position"),
        ),
        Err(_) => None,
    }
}

/// Listeners hear of the events the append functions write: a decision the store commits
/// itself is signalled after its commit (migration 10: the function no longer NOTIFYs in the
/// store's own transaction, which serialized every commit), and an append inside the
/// caller's transaction (`append_in`, `append_streams_in`) is heard when, and only when,
/// that transaction commits.
#[tokio::test]
async fn listeners_hear_of_decisions_and_appends_in_a_callers_transaction_at_commit() {
    let store = fresh_pg_store().await;
    let mut listener = eventsource::postgres::sqlx::postgres::PgListener::connect(&database_url())
        .await
        .unwrap();
    listener
        .listen(&format!("{}_events", store.schema().as_str()))
        .await
        .unwrap();

    let written = store.append_streams(enrol(1, 1), None).await.unwrap();
    let heard = next_position(&mut listener, Duration::from_secs(10)).await;
    assert_eq!(heard, Some(written[0].last_position.0), "a decision");

    for in_transaction in ["append_in", "append_streams_in"] {
        let mut tx = store.begin_transaction().await.unwrap();
        let position = if in_transaction == "append_in" {
            store
                .append_in(
                    &mut tx,
                    &StreamId::new("student", 2),
                    ExpectedVersion::NoStream,
                    vec![NewEvent::new(
                        "student.enrolled",
                        1,
                        json!({ "student": 2 }),
                    )],
                )
                .await
                .unwrap()
                .last_position
        } else {
            store
                .append_streams_in(&mut tx, enrol(3, 1), None)
                .await
                .unwrap()[0]
                .last_position
        };
        assert_eq!(
            next_position(&mut listener, Duration::from_millis(300)).await,
            None,
            "{in_transaction}: nothing is heard before the caller commits"
        );
        tx.commit().await.unwrap();
        let heard = next_position(&mut listener, Duration::from_secs(10)).await;
        assert_eq!(heard, Some(position.0), "{in_transaction}: heard at commit");
    }
}
