//! A bank account, declared with the derives: open, deposit, withdraw; a rejected withdrawal;
//! the audit trail of a stream; time travel; and a read model built from the global log.
//!
//! Run with `cargo run --example bank`.
//!
//! The events' shapes are locked in `events.lock` (section `[bank]`) and their stored payloads
//! are kept in `tests/golden/bank`; `cargo test` checks both (see the guide
//! `eventsource::guide::evolving_events`).

use std::collections::BTreeMap;

use eventsource::prelude::*;
use eventsource::{Checkpoint, EventFilter, decode_event};

// Events: facts, with a stable name and a schema version.

/// An account was opened.
#[derive(Event, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[event(name = "account.opened", version = 2, previous = OpenedV1)]
struct Opened {
    owner: String,
    overdraft_limit: u64,
}

/// The first shape of `account.opened`, before overdrafts existed. Kept so old rows still load.
#[derive(Event, Deserialize)]
#[event(name = "account.opened", version = 1)]
struct OpenedV1 {
    owner: String,
}

impl From<OpenedV1> for Opened {
    fn from(old: OpenedV1) -> Self {
        Opened {
            owner: old.owner,
            overdraft_limit: 0,
        }
    }
}

/// Money came in.
#[derive(Event, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[event(name = "account.deposited")]
struct Deposited {
    amount: u64,
}

/// Money went out.
#[derive(Event, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[event(name = "account.withdrawn")]
struct Withdrawn {
    amount: u64,
}

// Commands: requests, which the account accepts or rejects.

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

/// Why the account rejects a command.
#[derive(Debug, PartialEq, thiserror::Error)]
enum AccountError {
    #[error("account is already open")]
    AlreadyOpen,
    #[error("account is not open")]
    NotOpen,
    #[error("insufficient funds: balance is {balance}, asked to withdraw {requested}")]
    InsufficientFunds { balance: u64, requested: u64 },
}

/// The aggregate: state folded from its events, deciding on its commands.
#[derive(Aggregate, Default, Serialize, Deserialize, Clone, Debug)]
#[aggregate(
    name = "account",
    error = AccountError,
    events(Opened, Deposited, Withdrawn),
    commands(Open, Deposit, Withdraw),
    snapshot(every = 100)
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
            overdraft_limit: 0,
        }))
    }
}

impl Handle<Deposit> for Account {
    fn handle(&self, command: Deposit) -> Result<Events<Self>, AccountError> {
        if self.owner.is_none() {
            return Err(AccountError::NotOpen);
        }
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

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let store = MemoryStore::new();
    let accounts = Repository::<Account, _>::new(store.clone());

    accounts
        .execute(
            "ada",
            Open {
                owner: "Ada".into(),
            },
        )
        .await?;
    accounts.execute("ada", Deposit { amount: 100 }).await?;
    accounts.execute("ada", Withdraw { amount: 30 }).await?;
    accounts
        .execute(
            "bob",
            Open {
                owner: "Bob".into(),
            },
        )
        .await?;
    accounts.execute("bob", Deposit { amount: 25 }).await?;

    // A rejected command: nothing is written, and the error is the account's own type.
    match accounts.execute("ada", Withdraw { amount: 500 }).await {
        Err(error) => match error.rejection() {
            Some(reason) => println!("rejected: {reason}"),
            None => return Err(error.into()),
        },
        Ok(_) => return Err("an overdraft was accepted".into()),
    }

    println!("\naudit trail of `{}`:", accounts.stream_id("ada"));
    let history = accounts.history("ada").await?;
    for line in &history {
        println!(
            "  v{} {} {:<18} {:?}",
            line.record.version,
            line.record.recorded_at.format("%H:%M:%S%.3f"),
            line.record.name,
            line.event
        );
    }

    let now = accounts.load("ada").await?;
    let at_v2 = accounts.load_at("ada", Version(2)).await?;
    // As of the moment the deposit was recorded: the withdrawal after it is not folded.
    let Some(deposit) = history.get(1) else {
        return Err("the deposit is missing from the audit trail".into());
    };
    let deposited_at = deposit.record.recorded_at;
    let as_of = accounts.load_as_of("ada", deposited_at).await?;
    println!("\ntime travel for ada:");
    println!(
        "  now (v{}):              balance {}",
        now.version, now.state.balance
    );
    println!("  at version 2:          balance {}", at_v2.state.balance);
    println!(
        "  as of the deposit:     balance {} (v{})",
        as_of.state.balance, as_of.version
    );

    // A read model: every account's balance, built from the global log.
    let mut balances: BTreeMap<String, i64> = BTreeMap::new();
    let filter = EventFilter::all().category(Account::NAME);
    let mut checkpoint = Checkpoint::START;
    loop {
        let page = store.read_all(checkpoint, 100, &filter).await?;
        let Some(last) = page.last() else { break };
        checkpoint = last.checkpoint;
        for record in &page {
            let balance = balances.entry(record.stream_id.to_string()).or_default();
            match decode_event::<Account>(record)? {
                AccountEvent::Opened(_) => {}
                AccountEvent::Deposited(e) => *balance += e.amount as i64,
                AccountEvent::Withdrawn(e) => *balance -= e.amount as i64,
            }
        }
    }
    println!("\nread model (balances from `read_all`):");
    for (stream, balance) in &balances {
        println!("  {stream:<12} {balance}");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One example of each current event: the golden check needs a sample of each version, and
    /// `EVENTSOURCE_GOLDEN=record cargo test --example bank` writes the missing ones from these.
    fn examples() -> Vec<AccountEvent> {
        vec![
            Opened {
                owner: "Ada".into(),
                overdraft_limit: 50,
            }
            .into(),
            Deposited { amount: 100 }.into(),
            Withdrawn { amount: 30 }.into(),
        ]
    }

    /// Every stored sample, old versions included, still decodes into today's events.
    #[test]
    fn golden_payloads() {
        eventsource::testing::check_golden(
            concat!(env!("CARGO_MANIFEST_DIR"), "/tests/golden/bank"),
            examples(),
        );
    }
}
