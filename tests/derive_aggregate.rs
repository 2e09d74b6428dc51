//! `#[derive(Aggregate)]`: the generated enums, the fold and command dispatch, and the stored
//! form, through the repository.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a test fails by panicking

use eventsource::ExecuteError;
use eventsource::prelude::*;

#[derive(Event, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[event(name = "account.opened")]
struct Opened {
    owner: String,
}

#[derive(Event, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[event(name = "account.deposited")]
struct Deposited {
    amount: u64,
}

#[derive(Event, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[event(name = "account.withdrawn")]
struct Withdrawn {
    amount: u64,
}

#[derive(Clone, Debug)]
struct Open {
    owner: String,
}

#[derive(Clone, Debug)]
struct Deposit {
    amount: u64,
}

#[derive(Clone, Debug)]
struct Withdraw {
    amount: u64,
}

#[derive(Debug, PartialEq, thiserror::Error)]
enum AccountError {
    #[error("the account is already open")]
    AlreadyOpen,
    #[error("balance {balance} is less than {requested}")]
    InsufficientFunds { balance: u64, requested: u64 },
}

#[derive(Aggregate, Default, Serialize, Deserialize, Clone, Debug)]
#[aggregate(
    name = "account",
    error = AccountError,
    events(Opened, Deposited, Withdrawn),
    commands(Open, Deposit, Withdraw),
    snapshot(every = 2)
)]
struct Account {
    owner: Option<String>,
    balance: u64,
}

impl Apply<Opened> for Account {
    fn apply(&mut self, event: &Opened) {
        self.owner = Some(event.owner.clone());
    }
}

impl Apply<Deposited> for Account {
    fn apply(&mut self, event: &Deposited) {
        self.balance += event.amount;
    }
}

impl Apply<Withdrawn> for Account {
    fn apply(&mut self, event: &Withdrawn) {
        self.balance -= event.amount;
    }
}

impl Handle<Open> for Account {
    fn handle(&self, command: Open) -> Result<Events<Self>, AccountError> {
        if self.owner.is_some() {
            return Err(AccountError::AlreadyOpen);
        }
        Ok(Events::one(Opened {
            owner: command.owner,
        }))
    }
}

impl Handle<Deposit> for Account {
    fn handle(&self, command: Deposit) -> Result<Events<Self>, AccountError> {
        Ok(Events::one(Deposited {
            amount: command.amount,
        }))
    }
}

impl Handle<Withdraw> for Account {
    fn handle(&self, command: Withdraw) -> Result<Events<Self>, AccountError> {
        if command.amount > self.balance {
            return Err(AccountError::InsufficientFunds {
                balance: self.balance,
                requested: command.amount,
            });
        }
        Ok(Events::one(Withdrawn {
            amount: command.amount,
        }))
    }
}

#[test]
fn the_aggregate_constants_come_from_the_attribute() {
    assert_eq!(Account::NAME, "account");
    assert_eq!(Account::SNAPSHOT, SnapshotPolicy::Every(2));
    assert_eq!(
        AccountEvent::NAMES,
        ["account.opened", "account.deposited", "account.withdrawn"]
    );
    assert_eq!(Account::STATE_FINGERPRINT.len(), 16);
}

#[test]
fn the_event_enum_encodes_and_decodes_the_stored_form() {
    let event = AccountEvent::from(Deposited { amount: 5 });
    assert_eq!(event.name(), "account.deposited");
    assert_eq!(event.schema_version(), 1);
    let payload = event.encode().unwrap();
    assert_eq!(payload, serde_json::json!({ "amount": 5 }));
    let decoded = AccountEvent::decode("account.deposited", 1, &payload).unwrap();
    assert_eq!(decoded, event);
    assert!(matches!(
        AccountEvent::decode("account.closed", 1, &payload),
        Err(eventsource::DecodeFailure::UnknownEvent)
    ));
}

#[test]
fn debug_shows_the_event_itself() {
    let event = AccountEvent::from(Deposited { amount: 5 });
    assert_eq!(format!("{event:?}"), "Deposited { amount: 5 }");
    let command = AccountCommand::from(Withdraw { amount: 1 });
    assert_eq!(format!("{command:?}"), "Withdraw { amount: 1 }");
}

#[test]
fn apply_dispatches_to_each_events_impl() {
    let mut account = Account::default();
    for event in [
        AccountEvent::from(Opened {
            owner: "ada".into(),
        }),
        Deposited { amount: 10 }.into(),
        Withdrawn { amount: 4 }.into(),
    ] {
        account.evolve(&event);
    }
    assert_eq!(account.owner.as_deref(), Some("ada"));
    assert_eq!(account.balance, 6);
}

#[tokio::test]
async fn commands_dispatch_to_their_handlers_through_the_repository() {
    let repo = Repository::<Account, _>::new(MemoryStore::new());
    repo.execute(
        7,
        Open {
            owner: "ada".into(),
        },
    )
    .await
    .unwrap();
    repo.execute(7, Deposit { amount: 10 }).await.unwrap();
    let done = repo.execute(7, Withdraw { amount: 3 }).await.unwrap();
    assert_eq!(
        done.events,
        vec![AccountEvent::from(Withdrawn { amount: 3 })]
    );
    assert_eq!(done.state.balance, 7);

    let rejected = repo.execute(7, Withdraw { amount: 30 }).await.unwrap_err();
    assert!(matches!(rejected, ExecuteError::Rejected { .. }));
    assert_eq!(
        rejected.rejection(),
        Some(&AccountError::InsufficientFunds {
            balance: 7,
            requested: 30
        })
    );

    let reopened = repo
        .execute(
            7,
            Open {
                owner: "bob".into(),
            },
        )
        .await
        .unwrap_err();
    assert_eq!(reopened.rejection(), Some(&AccountError::AlreadyOpen));

    let loaded = repo.load(7).await.unwrap();
    assert_eq!(loaded.version, Version(3));
    // `snapshot(every = 2)`: the load starts from the snapshot taken at version 2.
    assert_eq!(loaded.snapshot_version, Some(Version(2)));
    assert_eq!(loaded.state.balance, 7);
}

// Services: handlers that need outside help receive it.

struct Limits {
    max_deposit: u64,
}

#[derive(Aggregate, Default, Serialize, Deserialize, Debug)]
#[aggregate(
    name = "wallet",
    error = AccountError,
    events(Deposited),
    commands(Deposit),
    services = Limits
)]
struct Wallet {
    balance: u64,
}

impl Apply<Deposited> for Wallet {
    fn apply(&mut self, event: &Deposited) {
        self.balance += event.amount;
    }
}

impl HandleWith<Deposit> for Wallet {
    fn handle(&self, command: Deposit, limits: &Limits) -> Result<Events<Self>, AccountError> {
        if command.amount > limits.max_deposit {
            return Err(AccountError::InsufficientFunds {
                balance: limits.max_deposit,
                requested: command.amount,
            });
        }
        Ok(Events::one(Deposited {
            amount: command.amount,
        }))
    }
}

#[tokio::test]
async fn handlers_receive_the_declared_services() {
    let repo =
        Repository::<Wallet, _>::with_services(MemoryStore::new(), Limits { max_deposit: 100 });
    repo.execute(1, Deposit { amount: 60 }).await.unwrap();
    let over = repo.execute(1, Deposit { amount: 101 }).await.unwrap_err();
    assert!(over.rejection().is_some());
    assert_eq!(repo.load(1).await.unwrap().state.balance, 60);
}

// The state fingerprint follows the shape, not the name or the formatting.

mod same_shape {
    use eventsource::prelude::*;

    #[derive(Event, Serialize, Deserialize, Clone, Debug, PartialEq)]
    pub(super) struct Ticked;

    #[derive(Aggregate, Default, Serialize, Deserialize)]
    #[aggregate(events(Ticked))]
    pub(super) struct Clock {
        pub(super) owner: Option<String>,
        pub(super) balance: u64,
    }

    #[derive(Aggregate, Default, Serialize, Deserialize)]
    #[aggregate(events(Ticked))]
    pub(super) struct Renamed {
        #[serde(rename = "bal")]
        pub(super) owner: Option<String>,
        pub(super) balance: u64,
    }

    impl Apply<Ticked> for Clock {
        fn apply(&mut self, _: &Ticked) {}
    }
    impl Apply<Ticked> for Renamed {
        fn apply(&mut self, _: &Ticked) {}
    }
}

#[test]
fn the_state_fingerprint_follows_the_serialized_shape() {
    use same_shape::{Clock, Renamed};
    assert_eq!(Clock::STATE_FINGERPRINT, Account::STATE_FINGERPRINT);
    assert_ne!(Renamed::STATE_FINGERPRINT, Account::STATE_FINGERPRINT);
    // The name defaults to the type's name in snake case.
    assert_eq!(Clock::NAME, "clock");
}

// Snapshots: a state whose serialized shape changed does not read old snapshots.

mod reshaped {
    use super::AccountEvent;
    use eventsource::prelude::*;
    use eventsource::shape::{hex_str, shape_hex};

    /// `Account` after a release that changed how its state is stored (a `serde` rename only):
    /// snapshots taken by the old code no longer fit. Its `Aggregate` impl is written by hand
    /// (one crate derives one aggregate per name; this one stands for the next release), with
    /// the fingerprint the derive would give it: its derived deep `Shape`.
    #[derive(Shape, Default, Serialize, Deserialize, Debug)]
    pub(super) struct Account {
        pub(super) owner: Option<String>,
        #[serde(rename = "funds")]
        pub(super) balance: u64,
    }

    const HEX: [u8; 16] = shape_hex(<Account as Shape>::SHAPE_FINGERPRINT);

    impl Aggregate for Account {
        const NAME: &'static str = "account";
        const STATE_FINGERPRINT: &'static str = hex_str(&HEX);
        type Event = AccountEvent;
        type Command = ();
        type Error = std::convert::Infallible;
        type Services = ();

        fn evolve(&mut self, event: &AccountEvent) {
            match event {
                AccountEvent::Opened(event) => self.owner = Some(event.owner.clone()),
                AccountEvent::Deposited(event) => self.balance += event.amount,
                AccountEvent::Withdrawn(event) => self.balance -= event.amount,
            }
        }

        fn decide(&self, _: (), _: &()) -> Result<Events<Self>, Self::Error> {
            Ok(Events::none())
        }
    }
}

#[tokio::test]
async fn a_snapshot_of_another_state_shape_is_ignored_and_the_stream_refolded() {
    let store = MemoryStore::new();
    let before = Repository::<Account, _>::new(store.clone());
    before
        .execute(
            1,
            Open {
                owner: "ada".into(),
            },
        )
        .await
        .unwrap();
    before.execute(1, Deposit { amount: 5 }).await.unwrap();
    before.execute(1, Deposit { amount: 7 }).await.unwrap();
    assert_eq!(
        before.load(1).await.unwrap().snapshot_version,
        Some(Version(2))
    );

    assert_ne!(
        reshaped::Account::STATE_FINGERPRINT,
        Account::STATE_FINGERPRINT
    );
    let after = Repository::<reshaped::Account, _>::new(store);
    let loaded = after.load(1).await.unwrap();
    // The old snapshot (whose `balance` key the new state would not even find) is skipped.
    assert_eq!(loaded.snapshot_version, None);
    assert_eq!(loaded.version, Version(3));
    assert_eq!(loaded.state.balance, 12);
    assert_eq!(loaded.state.owner.as_deref(), Some("ada"));
}

#[test]
fn events_carry_their_shape_and_fingerprint() {
    assert_eq!(Deposited::SHAPE, "{amount:u64}");
    assert_eq!(Deposited::FINGERPRINT.len(), 16);
    // Same shape, same fingerprint, whatever the event's name.
    assert_eq!(Deposited::FINGERPRINT, Withdrawn::FINGERPRINT);
    assert_ne!(Deposited::FINGERPRINT, Opened::FINGERPRINT);
}
