//! A customer whose email is personal data, and the crypto-shredding scenario run on every
//! store: register, snapshot, project, forget, read everything back, project across the forget.
#![allow(dead_code, unreachable_pub, clippy::expect_used, clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::sync::{Arc, Mutex};

use eventsource::prelude::*;
use eventsource::{EventStore, KeyStore, ProjectionStore, SnapshotMaintenance, StreamRetirement};

#[derive(Event, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[event(name = "customer.registered")]
pub struct Registered {
    pub customer_id: String,
    #[personal(subject = customer_id)]
    pub email: Personal<String>,
    pub plan: String,
}

#[derive(Event, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[event(name = "customer.email_changed")]
pub struct EmailChanged {
    pub customer_id: String,
    #[personal(subject = customer_id)]
    pub email: Personal<String>,
}

#[derive(Event, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[event(name = "customer.plan_changed")]
pub struct PlanChanged {
    pub plan: String,
}

#[derive(Clone, Debug)]
pub struct Register {
    pub customer_id: String,
    pub email: String,
    pub plan: String,
}

#[derive(Clone, Debug)]
pub struct ChangeEmail {
    pub email: String,
}

#[derive(Clone, Debug)]
pub struct ChangePlan {
    pub plan: String,
}

#[derive(Debug, PartialEq, thiserror::Error)]
pub enum CustomerError {
    #[error("the customer is not registered")]
    NotRegistered,
    #[error("the email address is not valid")]
    InvalidEmail,
}

#[derive(Aggregate, Default, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[aggregate(
    name = "customer",
    error = CustomerError,
    events(Registered, EmailChanged, PlanChanged),
    commands(Register, ChangeEmail, ChangePlan),
    snapshot(every = 2)
)]
pub struct Customer {
    pub id: Option<String>,
    pub email: Option<Personal<String>>,
    pub plan: String,
}

impl Apply<Registered> for Customer {
    fn apply(&mut self, e: &Registered) {
        self.id = Some(e.customer_id.clone());
        self.email = Some(e.email.clone());
        self.plan = e.plan.clone();
    }
}

impl Apply<EmailChanged> for Customer {
    fn apply(&mut self, e: &EmailChanged) {
        self.email = Some(e.email.clone());
    }
}

impl Apply<PlanChanged> for Customer {
    fn apply(&mut self, e: &PlanChanged) {
        self.plan = e.plan.clone();
    }
}

impl Handle<Register> for Customer {
    fn handle(&self, c: Register) -> Result<Events<Self>, CustomerError> {
        if !c.email.contains('@') {
            return Err(CustomerError::InvalidEmail);
        }
        Ok(Events::one(Registered {
            customer_id: c.customer_id,
            email: Personal::Known(c.email),
            plan: c.plan,
        }))
    }
}

impl Handle<ChangeEmail> for Customer {
    fn handle(&self, c: ChangeEmail) -> Result<Events<Self>, CustomerError> {
        let id = self.id.clone().ok_or(CustomerError::NotRegistered)?;
        Ok(Events::one(EmailChanged {
            customer_id: id,
            email: Personal::Known(c.email),
        }))
    }
}

impl Handle<ChangePlan> for Customer {
    fn handle(&self, c: ChangePlan) -> Result<Events<Self>, CustomerError> {
        self.id.as_ref().ok_or(CustomerError::NotRegistered)?;
        Ok(Events::one(PlanChanged { plan: c.plan }))
    }
}

/// A read model: the mailing list, customer id -> email (`None` once forgotten).
#[derive(Clone, Default)]
pub struct MailingList {
    pub emails: Arc<Mutex<BTreeMap<String, Option<String>>>>,
    pub applied: Arc<Mutex<u64>>,
}

impl MailingList {
    pub fn get(&self, id: &str) -> Option<Option<String>> {
        self.emails.lock().unwrap().get(id).cloned()
    }

    fn set(&self, id: &str, email: &Personal<String>) {
        self.emails
            .lock()
            .unwrap()
            .insert(id.to_owned(), email.known().cloned());
        *self.applied.lock().unwrap() += 1;
    }
}

impl Projection for MailingList {
    const NAME: &'static str = "mailing_list";
    type Handles = (Registered, EmailChanged);
    type Error = Infallible;
}

impl<Tx: Send> Project<Registered, Tx> for MailingList {
    async fn project(
        &mut self,
        e: Registered,
        _: &RecordedEvent,
        _: &mut Tx,
    ) -> Result<(), Infallible> {
        self.set(&e.customer_id, &e.email);
        Ok(())
    }
}

impl<Tx: Send> Project<EmailChanged, Tx> for MailingList {
    async fn project(
        &mut self,
        e: EmailChanged,
        _: &RecordedEvent,
        _: &mut Tx,
    ) -> Result<(), Infallible> {
        self.set(&e.customer_id, &e.email);
        Ok(())
    }
}

impl<Tx: Send> Reset<Tx> for MailingList {
    async fn reset(&mut self, _: &mut Tx) -> Result<(), Infallible> {
        self.emails.lock().unwrap().clear();
        *self.applied.lock().unwrap() = 0;
        Ok(())
    }
}

pub const ADA: &str = "ada.lovelace@example.com";
pub const ADA_NEW: &str = "countess@example.org";
pub const GRACE: &str = "grace.hopper@example.com";

pub fn register(id: &str, email: &str) -> Register {
    Register {
        customer_id: id.to_owned(),
        email: email.to_owned(),
        plan: "basic".to_owned(),
    }
}

/// The scenario, on `store` (a fresh, empty one) wrapped with `keys`. Returns the key
/// material of the forgotten subject's key, for the caller's leak checks.
pub async fn forget_scenario<S, K>(store: S, keys: K) -> Vec<u8>
where
    S: EventStore + SnapshotStore + SnapshotMaintenance + StreamRetirement + ProjectionStore,
    K: KeyStore,
{
    let shredding = Shredding::new(store.clone(), keys);
    let customers = Repository::<Customer, _>::new(shredding.clone());
    customers
        .execute("c-1", register("c-1", ADA))
        .await
        .unwrap();
    customers
        .execute(
            "c-1",
            ChangeEmail {
                email: ADA_NEW.into(),
            },
        )
        .await
        .unwrap();
    customers
        .execute("c-2", register("c-2", GRACE))
        .await
        .unwrap();
    let key = shredding
        .key_store()
        .key("c-1", 1)
        .await
        .unwrap()
        .unwrap()
        .material()
        .to_vec();

    // Stored sealed; read back in the clear.
    let stream = customers.stream_id("c-1");
    for raw in store.read_stream(&stream, Version(1), 10).await.unwrap() {
        let text = serde_json::to_string(&raw.payload).unwrap();
        assert!(
            !text.contains("lovelace") && !text.contains("countess"),
            "{text}"
        );
    }
    let loaded = customers.load("c-1").await.unwrap();
    assert_eq!(
        loaded.state.email,
        Some(Personal::Known(ADA_NEW.to_owned()))
    );
    // Snapshot every 2: the second event took one, in the clear (it is dropped on forget).
    assert_eq!(loaded.snapshot_version, Some(Version(2)));

    // A projection catches up before the forget.
    let list = MailingList::default();
    let mut runner = ProjectionRunner::new(list.clone(), shredding.clone());
    runner.catch_up().await.unwrap();
    assert_eq!(list.get("c-1"), Some(Some(ADA_NEW.to_owned())));

    // Forget c-1.
    let forgotten = shredding.forget("c-1").await.unwrap();
    assert_eq!(forgotten.streams, vec![stream.clone()]);
    assert_eq!(forgotten.snapshots_deleted, 1);
    assert!(store.load_snapshot(&stream).await.unwrap().is_none());
    assert!(
        store
            .load_snapshot(&customers.stream_id("c-2"))
            .await
            .unwrap()
            .is_none(),
        "c-2 has one event: no snapshot yet"
    );

    // Every reader gets the typed forgotten value, never an error.
    let loaded = customers.load("c-1").await.unwrap();
    assert_eq!(loaded.state.email, Some(Personal::Forgotten));
    assert_eq!(loaded.state.plan, "basic", "what is not personal remains");
    assert_eq!(loaded.snapshot_version, None);
    let history = customers.history("c-1").await.unwrap();
    assert_eq!(history.len(), 2);
    for line in &history {
        match &line.event {
            CustomerEvent::Registered(e) => {
                assert_eq!(e.email, Personal::Forgotten);
                assert_eq!(e.customer_id, "c-1");
            }
            CustomerEvent::EmailChanged(e) => assert!(e.email.is_forgotten()),
            CustomerEvent::PlanChanged(_) => {}
        }
    }
    let at_one = customers.load_at("c-1", Version(1)).await.unwrap();
    assert_eq!(at_one.state.email, Some(Personal::Forgotten));
    assert_eq!(
        customers.load("c-2").await.unwrap().state.email,
        Some(Personal::Known(GRACE.to_owned()))
    );

    // The running projection goes on across the forget: new events of the forgotten
    // subject (sealed with a new key) and of others apply.
    customers
        .execute(
            "c-1",
            ChangeEmail {
                email: "back@example.net".into(),
            },
        )
        .await
        .unwrap();
    customers
        .execute("c-3", register("c-3", "c3@example.com"))
        .await
        .unwrap();
    runner.catch_up().await.unwrap();
    assert_eq!(list.get("c-1"), Some(Some("back@example.net".to_owned())));
    assert_eq!(list.get("c-3"), Some(Some("c3@example.com".to_owned())));
    // The new key is version 2: the old data stays forgotten.
    let history = customers.history("c-1").await.unwrap();
    assert_eq!(history.len(), 3);
    assert!(matches!(&history[0].event, CustomerEvent::Registered(e) if e.email.is_forgotten()));
    assert!(
        matches!(&history[2].event, CustomerEvent::EmailChanged(e) if e.email.known().map(String::as_str) == Some("back@example.net"))
    );

    // A rebuild (a projection behind the forget) reads the forgotten values: no error.
    runner.rebuild(|_| {}).await.unwrap();
    assert_eq!(list.get("c-1"), Some(Some("back@example.net".to_owned())));
    assert_eq!(list.get("c-2"), Some(Some(GRACE.to_owned())));
    assert_eq!(*list.applied.lock().unwrap(), 5);
    let log = shredding
        .read_all(
            eventsource::Checkpoint::START,
            100,
            &eventsource::LogFilter::all(),
        )
        .await
        .unwrap();
    let first = eventsource::decode_event::<Customer>(&log[0]).unwrap();
    assert!(matches!(first, CustomerEvent::Registered(e) if e.email.is_forgotten()));
    key
}

/// A repository over a store that does not seal refuses personal values.
pub async fn plain_store_refuses_personal_values<S>(store: S)
where
    S: EventStore + SnapshotStore + Clone,
{
    let customers = Repository::<Customer, _>::new(store.clone());
    let error = customers
        .execute("c-1", register("c-1", ADA))
        .await
        .unwrap_err();
    let message = error.to_string();
    assert!(message.contains("Shredding"), "{message}");
    assert!(!message.contains("lovelace"), "{message}");
    assert_eq!(
        store
            .stream_version(&customers.stream_id("c-1"))
            .await
            .unwrap(),
        Version::NONE
    );
}
