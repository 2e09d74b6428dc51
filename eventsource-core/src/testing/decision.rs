//! Conformance cases of [`DecisionStore`]: atomic multi-stream appends, queries of tagged
//! events, and conditional appends, also under concurrency. Run them with
//! [`decision_conformance_tests!`](crate::decision_conformance_tests).
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::collections::{HashMap, HashSet};

use serde_json::json;

use crate::{
    AppendCondition, DecisionStore, ExpectedVersion, InvalidAppend, NewEvent, Query, QueryItem,
    ReadPosition, StoreError, StreamAppend, StreamId, Tag, Version,
};

/// The bound every store under test meets.
pub trait DecisionTestStore: DecisionStore + Clone {}
impl<S: DecisionStore + Clone> DecisionTestStore for S {}

fn stream(id: &str) -> StreamId {
    StreamId::new("dcb", id)
}

fn event(name: &str, tags: &[Tag]) -> NewEvent {
    NewEvent::new(name, 1, json!({})).with_tags(tags.iter().cloned())
}

fn course(id: u64) -> Tag {
    Tag::new("course", id)
}

fn student(id: u64) -> Tag {
    Tag::new("student", id)
}

async fn version<S: DecisionTestStore>(store: &S, s: &StreamId) -> Version {
    store.stream_version(s).await.unwrap()
}

pub async fn multi_stream_append_is_all_or_nothing<S: DecisionTestStore>(store: S) {
    let (a, b, c) = (stream("a"), stream("b"), stream("c"));
    store
        .append(&a, ExpectedVersion::NoStream, vec![event("x", &[])])
        .await
        .unwrap();
    store
        .append(&b, ExpectedVersion::NoStream, vec![event("x", &[])])
        .await
        .unwrap();
    // a holds, b and c do not: both are named, nothing is written.
    let refused = store
        .append_streams(
            vec![
                StreamAppend::new(
                    a.clone(),
                    ExpectedVersion::Exact(Version(1)),
                    vec![event("y", &[])],
                ),
                StreamAppend::new(b.clone(), ExpectedVersion::NoStream, vec![event("y", &[])]),
                StreamAppend::new(
                    c.clone(),
                    ExpectedVersion::StreamExists,
                    vec![event("y", &[])],
                ),
            ],
            None,
        )
        .await;
    match refused {
        Err(StoreError::Conflicts { conflicts }) => {
            let named: Vec<(&StreamId, ExpectedVersion, Version)> = conflicts
                .iter()
                .map(|c| (&c.stream, c.expected, c.actual))
                .collect();
            assert_eq!(
                named,
                vec![
                    (&b, ExpectedVersion::NoStream, Version(1)),
                    (&c, ExpectedVersion::StreamExists, Version(0)),
                ],
                "every failing stream, with expected and actual, in the order given"
            );
        }
        other => panic!("expected a multi-stream conflict, got {other:?}"),
    }
    assert_eq!(version(&store, &a).await, Version(1), "a was not written");
    assert_eq!(version(&store, &b).await, Version(1));
    assert_eq!(version(&store, &c).await, Version(0));
    let head = store.head_position().await.unwrap();

    let written = store
        .append_streams(
            vec![
                StreamAppend::new(
                    c.clone(),
                    ExpectedVersion::NoStream,
                    vec![event("y", &[]), event("z", &[])],
                ),
                StreamAppend::new(
                    a.clone(),
                    ExpectedVersion::Exact(Version(1)),
                    vec![event("y", &[])],
                ),
                StreamAppend::new(b.clone(), ExpectedVersion::Any, vec![event("y", &[])]),
            ],
            None,
        )
        .await
        .unwrap();
    let streams: Vec<&StreamId> = written.iter().map(|w| &w.stream_id).collect();
    assert_eq!(streams, vec![&c, &a, &b], "one result per stream, in order");
    assert_eq!(
        (written[0].first_version, written[0].last_version),
        (Version(1), Version(2))
    );
    assert_eq!(written[1].last_version, Version(2));
    assert_eq!(written[2].last_version, Version(2));
    assert!(written.iter().all(|w| !w.replayed));
    assert!(written[0].first_position > head);
    // One transaction: the four events are contiguous in the global order.
    let log = store
        .read_all(crate::Checkpoint::START, 100, &crate::LogFilter::all())
        .await
        .unwrap();
    let new: Vec<_> = log.iter().filter(|e| e.position > head).collect();
    assert_eq!(new.len(), 4);
    assert!(
        new.iter()
            .all(|e| e.checkpoint.transaction() == new[0].checkpoint.transaction()),
        "a multi-stream append is one transaction"
    );
}

pub async fn multi_stream_retry_is_replayed<S: DecisionTestStore>(store: S) {
    let (a, b) = (stream("ra"), stream("rb"));
    let call = vec![
        StreamAppend::new(
            a.clone(),
            ExpectedVersion::NoStream,
            vec![event("x", &[course(1)])],
        ),
        StreamAppend::new(
            b.clone(),
            ExpectedVersion::NoStream,
            vec![event("x", &[]), event("y", &[])],
        ),
    ];
    let first = store.append_streams(call.clone(), None).await.unwrap();
    // The retry's expectations and condition no longer hold: it is still a retry.
    let condition = AppendCondition::none_match(Query::new().item(QueryItem::tagged([course(1)])));
    let again = store
        .append_streams(call.clone(), Some(condition))
        .await
        .unwrap();
    assert!(again.iter().all(|w| w.replayed), "{again:?}");
    for (first, again) in first.iter().zip(&again) {
        assert_eq!(
            (
                first.first_version,
                first.last_version,
                first.first_position,
                first.last_position
            ),
            (
                again.first_version,
                again.last_version,
                again.first_position,
                again.last_position
            )
        );
    }
    assert_eq!(
        version(&store, &b).await,
        Version(2),
        "nothing written twice"
    );

    // Part of the call stored, part new: a duplicate, nothing written.
    let mut partial = call;
    partial[1] = StreamAppend::new(stream("rc"), ExpectedVersion::Any, vec![event("x", &[])]);
    let refused = store.append_streams(partial, None).await;
    assert!(
        matches!(refused, Err(StoreError::DuplicateEventId { ref existing_stream, .. }) if *existing_stream == a),
        "{refused:?}"
    );
    assert_eq!(version(&store, &stream("rc")).await, Version(0));
}

pub async fn multi_stream_append_is_validated<S: DecisionTestStore>(store: S) {
    let a = stream("va");
    let ok =
        |s: &StreamId| StreamAppend::new(s.clone(), ExpectedVersion::Any, vec![event("x", &[])]);
    let invalid = |result: Result<Vec<crate::Appended>, StoreError>| match result {
        Err(StoreError::Invalid(invalid)) => invalid,
        other => panic!("expected an invalid append, got {other:?}"),
    };
    assert!(matches!(
        invalid(store.append_streams(vec![], None).await),
        InvalidAppend::NoStreams
    ));
    assert!(matches!(
        invalid(store.append_streams(vec![ok(&a), ok(&a)], None).await),
        InvalidAppend::RepeatedStream { .. }
    ));
    let shared = event("x", &[]);
    let twice = vec![
        StreamAppend::new(a.clone(), ExpectedVersion::Any, vec![shared.clone()]),
        StreamAppend::new(stream("vb"), ExpectedVersion::Any, vec![shared]),
    ];
    assert!(matches!(
        invalid(store.append_streams(twice, None).await),
        InvalidAppend::RepeatedEventId { .. }
    ));
    let empty = vec![StreamAppend::new(a.clone(), ExpectedVersion::Any, vec![])];
    assert!(matches!(
        store.append_streams(empty, None).await,
        Err(StoreError::EmptyBatch { .. })
    ));
    let bad_tag = vec![StreamAppend::new(
        a.clone(),
        ExpectedVersion::Any,
        vec![event("x", &[Tag::from_raw("nul\0")])],
    )];
    assert!(matches!(
        invalid(store.append_streams(bad_tag, None).await),
        InvalidAppend::Tag { .. }
    ));
    let too_many: Vec<Tag> = (0..40).map(|i| Tag::new("t", i)).collect();
    assert!(matches!(
        store
            .append(&a, ExpectedVersion::Any, vec![event("x", &too_many)])
            .await,
        Err(StoreError::Invalid(InvalidAppend::TooManyTags {
            count: 40,
            ..
        }))
    ));
    let untagged =
        AppendCondition::none_match(Query::new().item(QueryItem::default().named(["x"])));
    assert!(matches!(
        invalid(store.append_streams(vec![ok(&a)], Some(untagged)).await),
        InvalidAppend::UntaggedQueryItem { item: 0 }
    ));
    let long = Query::new().item(QueryItem::tagged([Tag::from_raw("x".repeat(300))]));
    assert!(matches!(
        store.read_query(&long).await,
        Err(StoreError::Invalid(InvalidAppend::QueryTag { .. }))
    ));
    let nul_name = Query::new().item(QueryItem::tagged([course(1)]).named(["a\0b"]));
    assert!(matches!(
        store.read_query(&nul_name).await,
        Err(StoreError::Invalid(InvalidAppend::QueryName { .. }))
    ));
    assert_eq!(version(&store, &a).await, Version(0), "nothing was written");
    assert!(
        store
            .read_query(&Query::new())
            .await
            .unwrap()
            .events
            .is_empty(),
        "an empty query matches nothing"
    );
}

pub async fn query_reads_tagged_events_across_streams<S: DecisionTestStore>(store: S) {
    store
        .append(
            &stream("c1"),
            ExpectedVersion::Any,
            vec![event("course.defined", &[course(1)]), event("other", &[])],
        )
        .await
        .unwrap();
    store
        .append(
            &stream("s7"),
            ExpectedVersion::Any,
            vec![
                event("student.enrolled", &[course(1), student(7)]),
                event("student.enrolled", &[course(2), student(7)]),
            ],
        )
        .await
        .unwrap();
    store
        .append_streams(
            vec![StreamAppend::new(
                stream("s8"),
                ExpectedVersion::Any,
                vec![event("student.enrolled", &[student(8), course(1)])],
            )],
            None,
        )
        .await
        .unwrap();

    let names = |read: &crate::QueryRead| -> Vec<(String, String)> {
        read.events
            .iter()
            .map(|e| (e.stream_id.to_string(), e.name.clone()))
            .collect()
    };
    let in_course = store
        .read_query(&Query::new().item(QueryItem::tagged([course(1)])))
        .await
        .unwrap();
    assert_eq!(
        names(&in_course),
        vec![
            ("dcb-c1".into(), "course.defined".into()),
            ("dcb-s7".into(), "student.enrolled".into()),
            ("dcb-s8".into(), "student.enrolled".into()),
        ],
        "every stream, in the global order"
    );
    let positions: Vec<_> = in_course.events.iter().map(|e| e.checkpoint).collect();
    assert!(positions.windows(2).all(|w| w[0] < w[1]));

    let enrolments_of_7 = store
        .read_query(
            &Query::new()
                .item(QueryItem::tagged([student(7), course(1)]).named(["student.enrolled"])),
        )
        .await
        .unwrap();
    assert_eq!(
        enrolments_of_7.events.len(),
        1,
        "every tag of the item must match"
    );

    let either = store
        .read_query(
            &Query::new()
                .item(QueryItem::tagged([course(2)]))
                .item(QueryItem::tagged([student(8)]).named(["student.enrolled"]))
                .item(QueryItem::tagged([student(8)])),
        )
        .await
        .unwrap();
    assert_eq!(
        either.events.len(),
        2,
        "items are alternatives; an event counts once"
    );
    let unknown_name = store
        .read_query(&Query::new().item(QueryItem::tagged([course(1)]).named(["nope"])))
        .await
        .unwrap();
    assert!(unknown_name.events.is_empty());
}

pub async fn condition_fails_on_a_matching_write_after_the_read<S: DecisionTestStore>(store: S) {
    let query = Query::new().item(QueryItem::tagged([course(1)]).named(["student.enrolled"]));
    let read = store.read_query(&query).await.unwrap();
    assert!(read.events.is_empty());
    let enrol = |s: u64| {
        vec![StreamAppend::new(
            stream(&format!("student-{s}")),
            ExpectedVersion::Any,
            vec![event("student.enrolled", &[course(1), student(s)])],
        )]
    };

    // Writes that do not match (another course, another name) leave the condition holding.
    store
        .append(
            &stream("x"),
            ExpectedVersion::Any,
            vec![event("student.enrolled", &[course(2)])],
        )
        .await
        .unwrap();
    store
        .append(
            &stream("x"),
            ExpectedVersion::Any,
            vec![event("course.renamed", &[course(1)])],
        )
        .await
        .unwrap();
    store
        .append_streams(enrol(1), Some(read.condition(query.clone())))
        .await
        .unwrap();

    // The same stale read again: the enrolment just written matches.
    let refused = store
        .append_streams(enrol(2), Some(read.condition(query.clone())))
        .await;
    match refused {
        Err(StoreError::ConditionFailed {
            stream: s, name, ..
        }) => {
            assert_eq!(s, stream("student-1"));
            assert_eq!(name, "student.enrolled");
        }
        other => panic!("expected a failed condition, got {other:?}"),
    }
    assert_eq!(version(&store, &stream("student-2")).await, Version(0));

    // A plain append carrying the tag counts as much as a conditional one.
    let fresh = store.read_query(&query).await.unwrap();
    assert_eq!(fresh.events.len(), 1);
    store
        .append(
            &stream("y"),
            ExpectedVersion::Any,
            vec![event("student.enrolled", &[course(1)])],
        )
        .await
        .unwrap();
    assert!(matches!(
        store
            .append_streams(enrol(3), Some(fresh.condition(query.clone())))
            .await,
        Err(StoreError::ConditionFailed { .. })
    ));

    // Uniqueness: no event matching, ever.
    let name = Query::new().item(QueryItem::tagged([Tag::new("username", "ada")]));
    let register = |s: &str| {
        vec![StreamAppend::new(
            stream(s),
            ExpectedVersion::NoStream,
            vec![event("user.registered", &[Tag::new("username", "ada")])],
        )]
    };
    store
        .append_streams(
            register("u1"),
            Some(AppendCondition::none_match(name.clone())),
        )
        .await
        .unwrap();
    assert!(matches!(
        store
            .append_streams(
                register("u2"),
                Some(AppendCondition::none_match(name.clone()))
            )
            .await,
        Err(StoreError::ConditionFailed { .. })
    ));
    // A fresh read of the name sees the registration; a condition on it holds until the
    // next matching write.
    let seen = store.read_query(&name).await.unwrap();
    assert_eq!(seen.events.len(), 1);
    assert_ne!(seen.position, ReadPosition::START);
    store
        .append_streams(
            vec![StreamAppend::new(
                stream("u1"),
                ExpectedVersion::Exact(Version(1)),
                vec![event("user.renamed", &[])],
            )],
            Some(seen.condition(name.clone())),
        )
        .await
        .unwrap();
}

/// The payload field in which a decision records how many matching events it saw.
const SEEN: &str = "seen";

/// Many tasks enrol students into one course of capacity `CAPACITY` with conditional
/// appends while another task plain-appends notes carrying the course tag. The course never
/// holds more than its capacity, no student is enrolled twice, and each decision saw exactly
/// the matching events committed before it (its recorded count equals its place among them).
pub async fn concurrent_decisions_keep_the_boundary<S: DecisionTestStore>(store: S) {
    const CAPACITY: usize = 12;
    const TASKS: u64 = 8;
    const STUDENTS_PER_TASK: u64 = 4;
    const NOTES: u64 = 10;
    let query = Query::new().item(QueryItem::tagged([course(1)]));

    let mut handles = Vec::new();
    for task in 0..TASKS {
        let (store, query) = (store.clone(), query.clone());
        handles.push(tokio::spawn(async move {
            let mut enrolled = 0u64;
            let mut retries = 0u64;
            for n in 0..STUDENTS_PER_TASK {
                let id = task * 100 + n;
                loop {
                    let read = store.read_query(&query).await.unwrap();
                    let taken = read
                        .events
                        .iter()
                        .filter(|e| e.name == "student.enrolled")
                        .count();
                    if taken >= CAPACITY {
                        break;
                    }
                    let enrolment = NewEvent::new(
                        "student.enrolled",
                        1,
                        json!({ SEEN: read.events.len(), "student": id }),
                    )
                    .with_tags([course(1), student(id)]);
                    let append = StreamAppend::new(
                        StreamId::new("student", id),
                        ExpectedVersion::Any,
                        vec![enrolment],
                    );
                    match store
                        .append_streams(vec![append], Some(read.condition(query.clone())))
                        .await
                    {
                        Ok(_) => {
                            enrolled += 1;
                            break;
                        }
                        Err(StoreError::ConditionFailed { .. }) => {
                            retries += 1;
                            tokio::task::yield_now().await;
                        }
                        Err(other) => panic!("unexpected error: {other}"),
                    }
                }
            }
            (enrolled, retries)
        }));
    }
    let notes = {
        let store = store.clone();
        tokio::spawn(async move {
            for n in 0..NOTES {
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
                tokio::task::yield_now().await;
            }
        })
    };
    let mut acknowledged = 0;
    for handle in handles {
        acknowledged += handle.await.unwrap().0;
    }
    notes.await.unwrap();

    let facts = store.read_query(&query).await.unwrap().events;
    let enrolments: Vec<_> = facts
        .iter()
        .enumerate()
        .filter(|(_, e)| e.name == "student.enrolled")
        .collect();
    assert_eq!(enrolments.len(), CAPACITY, "the course is full, never over");
    assert_eq!(
        acknowledged as usize, CAPACITY,
        "every acknowledged enrolment is stored"
    );
    let students: HashSet<_> = enrolments
        .iter()
        .map(|(_, e)| e.stream_id.clone())
        .collect();
    assert_eq!(students.len(), CAPACITY, "no student twice");
    assert_eq!(
        facts.iter().filter(|e| e.name == "course.noted").count() as u64,
        NOTES
    );
    for (place, enrolment) in enrolments {
        assert_eq!(
            enrolment.payload[SEEN].as_u64(),
            Some(place as u64),
            "the decision at {} saw exactly the facts before it",
            enrolment.position
        );
    }
}

/// Many tasks race to register the same few user names: each name is taken exactly once.
pub async fn concurrent_registrations_take_a_name_once<S: DecisionTestStore>(store: S) {
    const TASKS: u64 = 8;
    const NAMES: [&str; 3] = ["ada", "grace", "linus"];
    let mut handles = Vec::new();
    for task in 0..TASKS {
        let store = store.clone();
        handles.push(tokio::spawn(async move {
            let mut won = Vec::new();
            for name in NAMES {
                let tag = Tag::new("username", name);
                let query = Query::new().item(QueryItem::tagged([tag.clone()]));
                let append = StreamAppend::new(
                    StreamId::new("user", format!("{task}-{name}")),
                    ExpectedVersion::NoStream,
                    vec![
                        NewEvent::new("user.registered", 1, json!({ "name": name }))
                            .with_tags([tag]),
                    ],
                );
                match store
                    .append_streams(vec![append], Some(AppendCondition::none_match(query)))
                    .await
                {
                    Ok(_) => won.push(name),
                    Err(StoreError::ConditionFailed { .. }) => {}
                    Err(other) => panic!("unexpected error: {other}"),
                }
            }
            won
        }));
    }
    let mut winners: HashMap<&str, usize> = HashMap::new();
    for handle in handles {
        for name in handle.await.unwrap() {
            *winners.entry(name).or_default() += 1;
        }
    }
    for name in NAMES {
        assert_eq!(winners.get(name), Some(&1), "`{name}` taken exactly once");
        let stored = store
            .read_query(&Query::new().item(QueryItem::tagged([Tag::new("username", name)])))
            .await
            .unwrap();
        assert_eq!(stored.events.len(), 1);
    }
}
