//! Tags from `#[tag]` fields, and decision models (`#[aggregate(..., decision)]`): the
//! given/when/then harness and `Decisions` on the in-memory store.

use eventsource::prelude::*;
use eventsource::{DecideError, NewEvent, QueryRead, Repository};
use serde::{Deserialize, Serialize};

#[derive(Event, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[event(name = "user.registered", version = 1)]
struct Registered {
    #[tag]
    username: String,
    #[tag(key = "account")]
    id: u64,
    display_name: String,
}

#[derive(Event, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[event(name = "user.released", version = 1)]
struct Released(#[tag(key = "username")] String);

#[derive(Clone, Debug, Serialize)]
struct Register {
    username: String,
    id: u64,
}

#[derive(Clone, Debug, Serialize)]
struct Release {
    username: String,
}

#[derive(Debug, PartialEq, thiserror::Error)]
enum NameError {
    #[error("the name is taken")]
    Taken,
    #[error("the name is not taken")]
    Free,
}

/// Whether one user name is taken: the facts of every account, in whatever stream.
#[derive(Aggregate, Default, Serialize, Deserialize, Debug)]
#[aggregate(
    name = "username",
    error = NameError,
    events(Registered, Released),
    commands(Register, Release),
    decision
)]
struct UserName {
    taken: bool,
}

impl Apply<Registered> for UserName {
    fn apply(&mut self, _: &Registered) {
        self.taken = true;
    }
}

impl Apply<Released> for UserName {
    fn apply(&mut self, _: &Released) {
        self.taken = false;
    }
}

impl Handle<Register> for UserName {
    fn handle(&self, command: Register) -> Result<Events<Self>, NameError> {
        if self.taken {
            return Err(NameError::Taken);
        }
        Ok(Events::one(Registered {
            display_name: command.username.clone(),
            username: command.username,
            id: command.id,
        }))
    }
}

impl Handle<Release> for UserName {
    fn handle(&self, command: Release) -> Result<Events<Self>, NameError> {
        if !self.taken {
            return Err(NameError::Free);
        }
        Ok(Events::one(Released(command.username)))
    }
}

fn name(username: &str) -> Query {
    Query::new().item(QueryItem::tagged([Tag::new("username", username)]))
}

impl ConsistencyBoundary<Register> for UserName {
    fn boundary(command: &Register) -> Boundary {
        Boundary::new(
            StreamId::new("account", command.id),
            name(&command.username),
        )
    }
}

impl ConsistencyBoundary<Release> for UserName {
    fn boundary(command: &Release) -> Boundary {
        Boundary::new(
            StreamId::new("released", &command.username),
            name(&command.username),
        )
    }
}

#[test]
fn tag_fields_become_tags() {
    let registered = Registered {
        username: "ada".into(),
        id: 7,
        display_name: "Ada".into(),
    };
    assert_eq!(
        registered.tags(),
        vec![Tag::new("username", "ada"), Tag::new("account", 7)]
    );
    assert_eq!(
        Released("ada".into()).tags(),
        vec![Tag::new("username", "ada")]
    );
    // The generated event enum carries them, and so does every encoded event.
    let event = UserNameEvent::from(Released("bob".into()));
    assert_eq!(event.event_tags(), vec![Tag::new("username", "bob")]);
    let encoded = NewEvent::encode(&event).unwrap();
    assert_eq!(encoded.tags, vec![Tag::new("username", "bob")]);
}

#[test]
fn decision_models_use_the_given_when_then_harness() {
    UserName::given_nothing()
        .when(Register {
            username: "ada".into(),
            id: 1,
        })
        .then([Registered {
            username: "ada".into(),
            id: 1,
            display_name: "ada".into(),
        }]);
    UserName::given([Registered {
        username: "ada".into(),
        id: 1,
        display_name: "Ada".into(),
    }])
    .when(Register {
        username: "ada".into(),
        id: 2,
    })
    .then_error(NameError::Taken);
}

#[tokio::test]
async fn decisions_fold_the_boundary_across_streams() {
    let store = MemoryStore::new();
    let names = Decisions::<UserName, _>::new(store.clone());
    let done = names
        .execute(Register {
            username: "ada".into(),
            id: 1,
        })
        .await
        .unwrap();
    assert_eq!(done.stream_id, StreamId::new("account", 1));
    assert!(done.state.taken);
    assert_eq!(done.attempts, 1);

    // Another account, another stream: the boundary still sees the name taken.
    let refused = names
        .execute(Register {
            username: "ada".into(),
            id: 2,
        })
        .await;
    assert!(
        matches!(
            refused,
            Err(DecideError::Rejected {
                source: NameError::Taken,
                ..
            })
        ),
        "{refused:?}"
    );
    names
        .execute(Release {
            username: "ada".into(),
        })
        .await
        .unwrap();
    names
        .execute(Register {
            username: "ada".into(),
            id: 2,
        })
        .await
        .unwrap();
    let (state, _) = names.load(&name("ada")).await.unwrap();
    assert!(state.taken);

    // An event written through a repository carries its tags into the boundary too.
    let accounts = Repository::<UserName, _>::new(store.clone());
    accounts
        .append(
            "9",
            ExpectedVersion::Any,
            vec![UserNameEvent::from(Released("grace".into()))],
        )
        .await
        .unwrap();
    let read: QueryRead = store.read_query(&name("grace")).await.unwrap();
    assert_eq!(read.events.len(), 1);
}

/// Writers racing on one name through `Decisions`: one wins, the others are rejected (after
/// deciding again on the boundary that changed), none conflicts for good.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn racing_decisions_take_a_name_once() {
    let store = MemoryStore::new();
    let mut handles = Vec::new();
    for id in 0..16 {
        let names = Decisions::<UserName, _>::new(store.clone());
        handles.push(tokio::spawn(async move {
            names
                .execute(Register {
                    username: "linus".into(),
                    id,
                })
                .await
        }));
    }
    let mut won = 0;
    for handle in handles {
        match handle.await.unwrap() {
            Ok(_) => won += 1,
            Err(DecideError::Rejected {
                source: NameError::Taken,
                ..
            }) => {}
            Err(other) => panic!("unexpected: {other}"),
        }
    }
    assert_eq!(won, 1);
}
