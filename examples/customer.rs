//! A customer whose email address is personal data: sealed with a key of the customer's own,
//! read back in the clear while the key exists, and forgotten for good (GDPR article 17) by
//! deleting that key, without rewriting a single stored event.
//!
//! Run with `cargo run --example customer`.

use std::collections::BTreeMap;
use std::convert::Infallible;

use eventsource::prelude::*;
use eventsource::{EventStore, SnapshotStore, Version};

/// A customer registered. The email is personal data of the customer `customer_id` names: the
/// id is a pseudonym (never put a name or an address in it), the email is sealed with the
/// customer's key.
#[derive(Event, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[event(name = "customer.registered")]
struct Registered {
    customer_id: String,
    #[personal(subject = customer_id)]
    email: Personal<String>,
    plan: String,
}

/// The customer changed plans: nothing personal in it.
#[derive(Event, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[event(name = "customer.plan_changed")]
struct PlanChanged {
    plan: String,
}

#[derive(Clone, Debug)]
struct Register {
    customer_id: String,
    email: String,
}

#[derive(Clone, Debug)]
struct ChangePlan {
    plan: String,
}

#[derive(Debug, thiserror::Error)]
enum CustomerError {
    #[error("the customer is already registered")]
    AlreadyRegistered,
    #[error("the customer is not registered")]
    NotRegistered,
}

#[derive(Aggregate, Default, Serialize, Deserialize, Clone, Debug)]
#[aggregate(
    name = "customer",
    error = CustomerError,
    events(Registered, PlanChanged),
    commands(Register, ChangePlan),
    snapshot(every = 2)
)]
struct Customer {
    registered: bool,
    email: Option<Personal<String>>,
    plan: String,
}

impl Apply<Registered> for Customer {
    fn apply(&mut self, e: &Registered) {
        self.registered = true;
        self.email = Some(e.email.clone());
        self.plan = e.plan.clone();
    }
}

impl Apply<PlanChanged> for Customer {
    fn apply(&mut self, e: &PlanChanged) {
        self.plan = e.plan.clone();
    }
}

impl Handle<Register> for Customer {
    fn handle(&self, c: Register) -> Result<Events<Self>, CustomerError> {
        if self.registered {
            return Err(CustomerError::AlreadyRegistered);
        }
        Ok(Events::one(Registered {
            customer_id: c.customer_id,
            email: Personal::Known(c.email),
            plan: "basic".into(),
        }))
    }
}

impl Handle<ChangePlan> for Customer {
    fn handle(&self, c: ChangePlan) -> Result<Events<Self>, CustomerError> {
        if !self.registered {
            return Err(CustomerError::NotRegistered);
        }
        Ok(Events::one(PlanChanged { plan: c.plan }))
    }
}

/// A read model: who gets the newsletter. A forgotten email is simply not there.
#[derive(Default)]
struct Newsletter {
    emails: BTreeMap<String, String>,
}

impl Projection for Newsletter {
    const NAME: &'static str = "newsletter";
    type Handles = (Registered,);
    type Error = Infallible;
}

impl Project<Registered> for Newsletter {
    async fn project(
        &mut self,
        e: Registered,
        _: &RecordedEvent,
        _: &mut (),
    ) -> Result<(), Infallible> {
        match e.email {
            Personal::Known(email) => self.emails.insert(e.customer_id, email),
            Personal::Forgotten => self.emails.remove(&e.customer_id),
        };
        Ok(())
    }
}

impl Reset for Newsletter {
    async fn reset(&mut self, _: &mut ()) -> Result<(), Infallible> {
        self.emails.clear();
        Ok(())
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    // The store, wrapped so that personal fields are sealed on the way in and opened on the
    // way out. With PostgreSQL: `Shredding::new(store.clone(), store.key_store())`.
    let plain = MemoryStore::new();
    let store = Shredding::new(plain.clone(), MemoryKeyStore::new());
    let customers = Repository::<Customer, _>::new(store.clone());

    for (id, email) in [("c-1", "ada@example.com"), ("c-2", "grace@example.com")] {
        customers
            .execute(
                id,
                Register {
                    customer_id: id.into(),
                    email: email.into(),
                },
            )
            .await?;
    }
    customers
        .execute("c-1", ChangePlan { plan: "pro".into() })
        .await?;

    // What is stored: the email sealed, everything else as it was.
    let stream = customers.stream_id("c-1");
    let stored = plain.read_stream(&stream, Version(1), 1).await?;
    println!("stored:   {}", stored[0].payload);
    let loaded = customers.load("c-1").await?;
    println!(
        "loaded:   {:?} on plan {}",
        loaded.state.email.as_ref().and_then(Personal::known),
        loaded.state.plan
    );

    let mut newsletter = ProjectionRunner::new(Newsletter::default(), store.clone());
    newsletter.catch_up().await?;
    println!("newsletter: {:?}", newsletter.projection().emails);

    // c-1 asks to be forgotten: delete the key, drop the snapshots holding the email.
    let forgotten = store.forget("c-1").await?;
    println!(
        "forgot c-1: {} stream(s), {} snapshot(s) deleted",
        forgotten.streams.len(),
        forgotten.snapshots_deleted
    );
    assert!(plain.load_snapshot(&stream).await?.is_none());

    // Every reader now gets `Personal::Forgotten`; what was not personal remains.
    let loaded = customers.load("c-1").await?;
    assert!(
        loaded
            .state
            .email
            .as_ref()
            .is_some_and(Personal::is_forgotten)
    );
    println!(
        "loaded:   {:?} on plan {}",
        loaded.state.email, loaded.state.plan
    );
    for line in customers.history("c-1").await? {
        println!(
            "history:  v{} {} {:?}",
            line.record.version, line.record.name, line.event
        );
    }
    newsletter.rebuild(|_| {}).await?;
    println!(
        "newsletter after a rebuild: {:?}",
        newsletter.projection().emails
    );
    assert!(!newsletter.projection().emails.contains_key("c-1"));
    Ok(())
}
