//! Conformance cases for retiring streams, snapshot maintenance and crypto-shredding: what
//! every store implementing [`StreamRetirement`] and [`SnapshotMaintenance`] must do. Run them
//! with [`lifecycle_conformance_tests!`](crate::lifecycle_conformance_tests).
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use serde_json::{Value, json};

use super::conformance::TestStore;
use super::fixture::ADDED;
use crate::{
    Checkpoint, EventStore, ExpectedVersion, KeyStore, LogFilter, MemoryKeyStore, NewEvent,
    ProjectionStore, SEALED_PATHS, Shredding, Snapshot, SnapshotMaintenance, SnapshotScope,
    SnapshotStore, StoreError, StreamId, StreamRetirement, Version,
};

/// The bound of every lifecycle case.
pub trait LifecycleStore: TestStore + StreamRetirement + SnapshotMaintenance {}
impl<S: TestStore + StreamRetirement + SnapshotMaintenance> LifecycleStore for S {}

fn added(amount: u64) -> NewEvent {
    NewEvent::new(ADDED, 1, json!({ "amount": amount }))
}

fn snapshot(s: &StreamId, version: u64) -> Snapshot {
    Snapshot {
        stream_id: s.clone(),
        version: Version(version),
        state_fingerprint: "fp".to_owned(),
        state: json!({ "value": version }),
        taken_at: chrono::Utc::now(),
    }
}

fn assert_archived<T: std::fmt::Debug>(result: Result<T, StoreError>, stream: &StreamId) {
    match result {
        Err(error @ StoreError::StreamArchived { .. }) => {
            let StoreError::StreamArchived { stream: s } = &error else {
                unreachable!()
            };
            assert_eq!(s, stream, "the error names the stream");
            assert!(error.to_string().contains(stream.as_str()));
        }
        other => panic!("expected StreamArchived, got {other:?}"),
    }
}

pub async fn archived_stream_refuses_appends_and_stays_readable<S: LifecycleStore>(store: S) {
    let s = StreamId::new("counter", "archived");
    let other = StreamId::new("counter", "open");
    assert!(
        store.archive_stream(&s).await.unwrap().is_none(),
        "no stream, nothing archived"
    );
    assert!(store.stream_status(&s).await.unwrap().is_none());
    store
        .append(&s, ExpectedVersion::NoStream, vec![added(1), added(2)])
        .await
        .unwrap();
    store
        .append(&other, ExpectedVersion::NoStream, vec![added(3)])
        .await
        .unwrap();
    let open = store.stream_status(&s).await.unwrap().unwrap();
    assert!(!open.is_archived());
    assert_eq!(open.version, Version(2));

    let archived = store.archive_stream(&s).await.unwrap().unwrap();
    assert!(archived.is_archived());
    assert_eq!(archived.version, Version(2));
    assert!(archived.deleted_at.is_none());
    // Archiving again keeps the first time.
    let again = store.archive_stream(&s).await.unwrap().unwrap();
    assert_eq!(again.archived_at, archived.archived_at);

    for expected in [
        ExpectedVersion::Any,
        ExpectedVersion::StreamExists,
        ExpectedVersion::Exact(Version(2)),
    ] {
        assert_archived(store.append(&s, expected, vec![added(9)]).await, &s);
    }
    // A wrong expectation is still a conflict.
    assert!(matches!(
        store
            .append(&s, ExpectedVersion::Exact(Version(1)), vec![added(9)])
            .await,
        Err(StoreError::Conflict { .. })
    ));
    // Nothing was written; the stream reads as before; other streams are open.
    assert_eq!(store.stream_version(&s).await.unwrap(), Version(2));
    assert_eq!(
        store.read_stream(&s, Version(1), 10).await.unwrap().len(),
        2
    );
    store
        .append(&other, ExpectedVersion::Any, vec![added(4)])
        .await
        .unwrap();
    assert_eq!(
        store.stream_status(&s).await.unwrap().unwrap().archived_at,
        archived.archived_at
    );
}

pub async fn deleting_a_stream_removes_only_its_events<S>(store: S)
where
    S: LifecycleStore + ProjectionStore,
{
    let doomed = StreamId::new("counter", "doomed");
    let kept = StreamId::new("counter", "kept");
    store
        .append(&kept, ExpectedVersion::NoStream, vec![added(1)])
        .await
        .unwrap();
    let before = store
        .read_all(Checkpoint::START, 100, &LogFilter::all())
        .await
        .unwrap();
    let checkpoint_before = before.last().unwrap().checkpoint;
    let written = store
        .append(&doomed, ExpectedVersion::NoStream, vec![added(2), added(3)])
        .await
        .unwrap();
    let doomed_ids: Vec<_> = store
        .read_stream(&doomed, Version(1), 10)
        .await
        .unwrap()
        .iter()
        .map(|e| e.event_id)
        .collect();
    store
        .append(&kept, ExpectedVersion::Any, vec![added(4)])
        .await
        .unwrap();
    store.save_snapshot(snapshot(&doomed, 2)).await.unwrap();
    store.save_snapshot(snapshot(&kept, 1)).await.unwrap();
    // A projection that read up to here already.
    let all = store
        .read_all(Checkpoint::START, 100, &LogFilter::all())
        .await
        .unwrap();
    let checkpoint_after = all.last().unwrap().checkpoint;

    assert_eq!(store.delete_stream(&doomed).await.unwrap(), 2);
    assert_eq!(
        store.delete_stream(&doomed).await.unwrap(),
        0,
        "deleting twice deletes nothing"
    );
    assert_eq!(
        store
            .delete_stream(&StreamId::new("counter", "none"))
            .await
            .unwrap(),
        0
    );

    assert!(
        store
            .read_stream(&doomed, Version(1), 10)
            .await
            .unwrap()
            .is_empty()
    );
    for id in doomed_ids {
        assert!(store.find_event(id).await.unwrap().is_none());
    }
    assert!(store.load_snapshot(&doomed).await.unwrap().is_none());
    assert!(store.load_snapshot(&kept).await.unwrap().is_some());
    let status = store.stream_status(&doomed).await.unwrap().unwrap();
    assert!(status.is_archived() && status.deleted_at.is_some());
    assert_eq!(
        status.version,
        Version(2),
        "the head stays: the id is never reused"
    );
    assert_archived(
        store
            .append(&doomed, ExpectedVersion::Any, vec![added(5)])
            .await,
        &doomed,
    );

    // A projection behind the deleted events skips them; one past them is unaffected.
    let behind = store
        .read_all(checkpoint_before, 100, &LogFilter::all())
        .await
        .unwrap();
    assert_eq!(behind.len(), 1);
    assert_eq!(behind[0].stream_id, kept);
    assert!(behind.iter().all(|e| e.stream_id != doomed));
    assert_eq!(
        store
            .count_after(checkpoint_before, &LogFilter::all())
            .await
            .unwrap(),
        1
    );
    assert!(
        store
            .read_all(checkpoint_after, 100, &LogFilter::all())
            .await
            .unwrap()
            .is_empty()
    );
    // Positions are never reused.
    let next = store
        .append(&kept, ExpectedVersion::Any, vec![added(6)])
        .await
        .unwrap();
    assert!(next.first_position > written.last_position);
    let after = store
        .read_all(checkpoint_after, 100, &LogFilter::all())
        .await
        .unwrap();
    assert_eq!(after.len(), 1);
    assert_eq!(
        store
            .read_stream(&kept, Version(1), 10)
            .await
            .unwrap()
            .len(),
        3
    );
}

pub async fn snapshots_are_deleted_by_stream_and_by_category<S: LifecycleStore>(store: S) {
    let a1 = StreamId::new("cart", "1");
    let a2 = StreamId::new("cart", "2");
    let b1 = StreamId::new("order", "1");
    for s in [&a1, &a2, &b1] {
        store.save_snapshot(snapshot(s, 3)).await.unwrap();
    }
    assert_eq!(
        store
            .delete_snapshots(&SnapshotScope::Stream(a1.clone()))
            .await
            .unwrap(),
        1
    );
    assert!(store.load_snapshot(&a1).await.unwrap().is_none());
    assert!(store.load_snapshot(&a2).await.unwrap().is_some());
    assert_eq!(
        store
            .delete_snapshots(&SnapshotScope::Stream(a1.clone()))
            .await
            .unwrap(),
        0
    );
    store.save_snapshot(snapshot(&a1, 3)).await.unwrap();
    assert_eq!(
        store
            .delete_snapshots(&SnapshotScope::Category("cart".into()))
            .await
            .unwrap(),
        2
    );
    assert!(store.load_snapshot(&a2).await.unwrap().is_none());
    assert!(store.load_snapshot(&b1).await.unwrap().is_some());
    // A category is the part before the first '-', not a prefix.
    assert_eq!(
        store
            .delete_snapshots(&SnapshotScope::Category("orde".into()))
            .await
            .unwrap(),
        0
    );
    assert_eq!(
        store.delete_snapshots(&SnapshotScope::All).await.unwrap(),
        1
    );
    assert!(store.load_snapshot(&b1).await.unwrap().is_none());
    // Snapshots can be taken again afterwards.
    store.save_snapshot(snapshot(&b1, 1)).await.unwrap();
    assert_eq!(
        store.load_snapshot(&b1).await.unwrap().unwrap().version,
        Version(1)
    );
}

fn personal(value: &str, subject: &str) -> Value {
    json!({ "$personal": value, "$subject": subject })
}

pub async fn personal_values_are_sealed_and_forgotten<S: LifecycleStore>(store: S) {
    let keys = MemoryKeyStore::new();
    let shredding = Shredding::new(store.clone(), keys.clone());
    let s = StreamId::new("customer", "c-1");
    let other = StreamId::new("customer", "c-2");
    let email = "ada.lovelace@example.com";
    let event = NewEvent::new(
        "customer.registered",
        1,
        json!({ "id": "c-1", "email": personal(email, "c-1"), "tags": ["es:personal:v1:1:YQ:AAAA"] }),
    );
    shredding
        .append(&s, ExpectedVersion::NoStream, vec![event])
        .await
        .unwrap();
    let second = NewEvent::new(
        "customer.registered",
        1,
        json!({ "id": "c-2", "email": personal("grace@example.com", "c-2") }),
    );
    shredding
        .append(&other, ExpectedVersion::NoStream, vec![second])
        .await
        .unwrap();
    shredding.save_snapshot(snapshot(&s, 1)).await.unwrap();
    shredding.save_snapshot(snapshot(&other, 1)).await.unwrap();

    // Stored: sealed, with its path listed; the plain text is nowhere in the row.
    let raw = store
        .read_stream(&s, Version(1), 10)
        .await
        .unwrap()
        .remove(0);
    let stored = serde_json::to_string(&raw).unwrap();
    assert!(
        !stored.contains("ada.lovelace"),
        "plain text stored: {stored}"
    );
    let sealed = raw.payload["email"].as_str().unwrap();
    assert!(sealed.starts_with("es:personal:v1:1:"), "{sealed}");
    assert_eq!(raw.metadata.custom[SEALED_PATHS], json!(["/email"]));
    assert_eq!(raw.payload["id"], json!("c-1"));

    // Read through the wrapper: opened, from every read.
    let read = shredding
        .read_stream(&s, Version(1), 10)
        .await
        .unwrap()
        .remove(0);
    assert_eq!(read.payload["email"], json!({ "$personal": email }));
    // A user's string that looks sealed is not touched.
    assert_eq!(read.payload["tags"], json!(["es:personal:v1:1:YQ:AAAA"]));
    let found = shredding.find_event(read.event_id).await.unwrap().unwrap();
    assert_eq!(found.payload, read.payload);
    let log = shredding
        .read_all(Checkpoint::START, 10, &LogFilter::all())
        .await
        .unwrap();
    assert_eq!(log[0].payload, read.payload);

    // Forget: the value reads back as forgotten everywhere, the subject's snapshots are gone.
    let key = keys.key("c-1", 1).await.unwrap().unwrap();
    let forgotten = shredding.forget("c-1").await.unwrap();
    assert_eq!(forgotten.streams, vec![s.clone()]);
    assert_eq!(forgotten.snapshots_deleted, 1);
    assert!(keys.key("c-1", 1).await.unwrap().is_none());
    assert!(store.load_snapshot(&s).await.unwrap().is_none());
    assert!(store.load_snapshot(&other).await.unwrap().is_some());
    let read = shredding
        .read_stream(&s, Version(1), 10)
        .await
        .unwrap()
        .remove(0);
    assert_eq!(read.payload["email"], json!({ "$forgotten": true }));
    assert_eq!(read.payload["id"], json!("c-1"));
    let log = shredding
        .read_all(Checkpoint::START, 10, &LogFilter::all())
        .await
        .unwrap();
    assert_eq!(log[0].payload["email"], json!({ "$forgotten": true }));
    assert_eq!(
        log[1].payload["email"],
        json!({ "$personal": "grace@example.com" })
    );
    // A new wrapper (another process) on the same keys agrees.
    let fresh = Shredding::new(store.clone(), keys.clone());
    let read = fresh
        .read_stream(&s, Version(1), 10)
        .await
        .unwrap()
        .remove(0);
    assert_eq!(read.payload["email"], json!({ "$forgotten": true }));

    // Written to again, the subject gets a new key; the old data stays forgotten.
    let again = NewEvent::new(
        "customer.email_changed",
        1,
        json!({ "email": personal("ada@new.example", "c-1") }),
    );
    shredding
        .append(&s, ExpectedVersion::Any, vec![again])
        .await
        .unwrap();
    let events = shredding.read_stream(&s, Version(1), 10).await.unwrap();
    assert_eq!(events[0].payload["email"], json!({ "$forgotten": true }));
    assert_eq!(
        events[1].payload["email"],
        json!({ "$personal": "ada@new.example" })
    );
    let raw = store
        .read_stream(&s, Version(2), 10)
        .await
        .unwrap()
        .remove(0);
    assert!(
        raw.payload["email"]
            .as_str()
            .unwrap()
            .starts_with("es:personal:v1:2:")
    );
    assert_ne!(
        keys.key("c-1", 2).await.unwrap().unwrap().material(),
        key.material()
    );
}

pub async fn personal_values_without_a_subject_are_refused<S: LifecycleStore>(store: S) {
    let shredding = Shredding::new(store.clone(), MemoryKeyStore::new());
    let s = StreamId::new("customer", "c-1");
    for payload in [
        json!({ "email": { "$personal": "ada@example.com" } }),
        json!({ "emails": [personal("ada@example.com", "c-1"), { "$personal": "x@example.com" }] }),
        json!({ "email": personal("ada@example.com", "") }),
        json!({ "email": personal("ada@example.com", &"s".repeat(300)) }),
        json!({ "email": personal("ada@example.com", "c\u{0}1") }),
    ] {
        let error = shredding
            .append(
                &s,
                ExpectedVersion::Any,
                vec![NewEvent::new("customer.x", 1, payload)],
            )
            .await
            .unwrap_err();
        assert!(
            matches!(error, StoreError::PersonalData { .. }),
            "{error:?}"
        );
        let message = error.to_string();
        assert!(!message.contains("example.com"), "{message}");
    }
    assert_eq!(store.stream_version(&s).await.unwrap(), Version::NONE);

    // A sealed-paths list given by the caller is dropped: a user's string that looks sealed
    // stays a string.
    let mut forged = NewEvent::new(
        "customer.noted",
        1,
        json!({ "note": "es:personal:v1:1:bm9ib2R5:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA" }),
    );
    forged
        .metadata
        .custom
        .insert(SEALED_PATHS.into(), json!(["/note"]));
    shredding
        .append(&s, ExpectedVersion::Any, vec![forged])
        .await
        .unwrap();
    let read = shredding
        .read_stream(&s, Version(1), 1)
        .await
        .unwrap()
        .remove(0);
    assert!(read.payload["note"].is_string(), "{}", read.payload);
    assert!(!read.metadata.custom.contains_key(SEALED_PATHS));
}

pub async fn repository_deletes_snapshots_and_archives<S: LifecycleStore>(store: S) {
    use super::fixture::{Counter, CounterCommand};
    use crate::{Repository, SnapshotPolicy};
    let counters =
        Repository::<Counter, _>::new(store.clone()).with_snapshot_policy(SnapshotPolicy::Every(2));
    for id in ["a", "b"] {
        for _ in 0..2 {
            counters.execute(id, CounterCommand::Add(1)).await.unwrap();
        }
    }
    let other = StreamId::new("other", "a");
    store.save_snapshot(snapshot(&other, 1)).await.unwrap();
    assert_eq!(
        counters.load("a").await.unwrap().snapshot_version,
        Some(Version(2))
    );
    assert!(counters.delete_snapshot("a").await.unwrap());
    assert!(!counters.delete_snapshot("a").await.unwrap());
    let loaded = counters.load("a").await.unwrap();
    assert_eq!((loaded.snapshot_version, loaded.state.value), (None, 2));
    // Taken on demand again.
    assert_eq!(counters.snapshot("a").await.unwrap(), Version(2));
    assert_eq!(counters.delete_snapshots().await.unwrap(), 2);
    assert!(
        store.load_snapshot(&other).await.unwrap().is_some(),
        "another type's stays"
    );

    let status = counters.archive("a").await.unwrap().unwrap();
    assert!(status.is_archived());
    assert!(counters.status("a").await.unwrap().unwrap().is_archived());
    let error = counters
        .execute("a", CounterCommand::Add(1))
        .await
        .unwrap_err();
    let message = error.to_string();
    assert!(
        message.contains("counter-a") && message.contains("archived"),
        "{message}"
    );
    assert!(counters.status("zzz").await.unwrap().is_none());
    counters.execute("b", CounterCommand::Add(1)).await.unwrap();
}
