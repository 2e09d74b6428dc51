//! A bank account, event-sourced on the in-memory store.
//!
//! Run with `cargo run --example bank`. It executes commands, shows a rejected command with its
//! typed error, prints an account's audit trail, loads past state (time travel) and builds a
//! read model from the global log.

use std::collections::BTreeMap;
use std::error::Error;

use eventsource::prelude::*;
use eventsource::{Checkpoint, DecodeFailure, EventFilter, Version};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The account: state folded from its events.
#[derive(Default, Serialize, Deserialize, Clone, Debug)]
struct Account {
    owner: Option<String>,
    balance: i64,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
enum AccountEvent {
    Opened { owner: String },
    Deposited { amount: i64 },
    Withdrawn { amount: i64 },
}

#[derive(Clone, Debug)]
enum AccountCommand {
    Open { owner: String },
    Deposit { amount: i64 },
    Withdraw { amount: i64 },
}

#[derive(Debug, thiserror::Error)]
enum BankError {
    #[error("the account is already open")]
    AlreadyOpen,
    #[error("the account is not open")]
    NotOpen,
    #[error("amounts must be positive, got {0}")]
    NotPositive(i64),
    #[error("insufficient funds: balance {balance}, asked {asked}")]
    InsufficientFunds { balance: i64, asked: i64 },
}

impl EventSet for AccountEvent {
    const NAMES: &'static [&'static str] =
        &["account.opened", "account.deposited", "account.withdrawn"];

    fn name(&self) -> &'static str {
        match self {
            AccountEvent::Opened { .. } => "account.opened",
            AccountEvent::Deposited { .. } => "account.deposited",
            AccountEvent::Withdrawn { .. } => "account.withdrawn",
        }
    }

    fn schema_version(&self) -> u32 {
        1
    }

    fn encode(&self) -> Result<Value, serde_json::Error> {
        Ok(match self {
            AccountEvent::Opened { owner } => serde_json::json!({ "owner": owner }),
            AccountEvent::Deposited { amount } | AccountEvent::Withdrawn { amount } => {
                serde_json::json!({ "amount": amount })
            }
        })
    }

    fn decode(name: &str, version: u32, payload: &Value) -> Result<Self, DecodeFailure> {
        #[derive(Deserialize)]
        struct Opened {
            owner: String,
        }
        #[derive(Deserialize)]
        struct Amount {
            amount: i64,
        }
        if version != 1 {
            return Err(DecodeFailure::VersionTooNew {
                found: version,
                latest: 1,
            });
        }
        match name {
            "account.opened" => DecodeFailure::parse::<Opened>(version, payload)
                .map(|e| AccountEvent::Opened { owner: e.owner }),
            "account.deposited" => DecodeFailure::parse::<Amount>(version, payload)
                .map(|e| AccountEvent::Deposited { amount: e.amount }),
            "account.withdrawn" => DecodeFailure::parse::<Amount>(version, payload)
                .map(|e| AccountEvent::Withdrawn { amount: e.amount }),
            _ => Err(DecodeFailure::UnknownEvent),
        }
    }
}

impl Aggregate for Account {
    const NAME: &'static str = "account";
    const SNAPSHOT: SnapshotPolicy = SnapshotPolicy::Every(100);
    const STATE_FINGERPRINT: &'static str = "account{owner:Option<String>,balance:i64}";
    type Event = AccountEvent;
    type Command = AccountCommand;
    type Error = BankError;
    type Services = ();

    fn apply(&mut self, event: &AccountEvent) {
        match event {
            AccountEvent::Opened { owner } => self.owner = Some(owner.clone()),
            AccountEvent::Deposited { amount } => self.balance += amount,
            AccountEvent::Withdrawn { amount } => self.balance -= amount,
        }
    }

    fn handle(&self, command: AccountCommand, _: &()) -> Result<Events<Self>, BankError> {
        let open = self.owner.is_some();
        match command {
            AccountCommand::Open { .. } if open => Err(BankError::AlreadyOpen),
            AccountCommand::Open { owner } => Ok(Events::one(AccountEvent::Opened { owner })),
            _ if !open => Err(BankError::NotOpen),
            AccountCommand::Deposit { amount } | AccountCommand::Withdraw { amount }
                if amount <= 0 =>
            {
                Err(BankError::NotPositive(amount))
            }
            AccountCommand::Deposit { amount } => {
                Ok(Events::one(AccountEvent::Deposited { amount }))
            }
            AccountCommand::Withdraw { amount } if amount > self.balance => {
                Err(BankError::InsufficientFunds {
                    balance: self.balance,
                    asked: amount,
                })
            }
            AccountCommand::Withdraw { amount } => {
                Ok(Events::one(AccountEvent::Withdrawn { amount }))
            }
        }
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn Error>> {
    let store = MemoryStore::new();
    let accounts = Repository::<Account, _>::new(store.clone());

    println!("== commands");
    accounts
        .execute(
            "alice",
            AccountCommand::Open {
                owner: "Alice".into(),
            },
        )
        .await?;
    accounts
        .execute("alice", AccountCommand::Deposit { amount: 100 })
        .await?;
    accounts
        .execute("alice", AccountCommand::Withdraw { amount: 30 })
        .await?;
    accounts
        .execute("alice", AccountCommand::Deposit { amount: 45 })
        .await?;
    accounts
        .execute(
            "bob",
            AccountCommand::Open {
                owner: "Bob".into(),
            },
        )
        .await?;
    accounts
        .execute("bob", AccountCommand::Deposit { amount: 20 })
        .await?;
    let alice = accounts.load("alice").await?;
    println!(
        "alice: balance {} at version {}",
        alice.state.balance, alice.version
    );

    println!("\n== a rejected command");
    match accounts
        .execute("bob", AccountCommand::Withdraw { amount: 500 })
        .await
    {
        Err(error) => println!("rejected: {error}"),
        Ok(done) => return Err(format!("overdraft was accepted at {}", done.version).into()),
    }

    println!("\n== audit trail of account-alice");
    for line in accounts.history("alice").await? {
        let r = &line.record;
        println!(
            "v{} pos {} {} {:<18} {:?}",
            r.version,
            r.position,
            r.recorded_at.format("%H:%M:%S%.3f"),
            r.name,
            line.event
        );
    }

    println!("\n== time travel");
    for version in 1..=alice.version.0 {
        let past = accounts.load_at("alice", Version(version)).await?;
        println!("alice at version {version}: balance {}", past.state.balance);
    }

    println!("\n== read model: balances from the global log");
    let mut balances: BTreeMap<String, i64> = BTreeMap::new();
    let mut checkpoint = Checkpoint::START;
    let filter = EventFilter::all().category("account");
    loop {
        let page = store.read_all(checkpoint, 2, &filter).await?;
        let Some(last) = page.last() else { break };
        checkpoint = last.checkpoint;
        for record in &page {
            let event = eventsource::decode_event::<Account>(record)?;
            let balance = balances.entry(record.stream_id.to_string()).or_default();
            match event {
                AccountEvent::Opened { .. } => {}
                AccountEvent::Deposited { amount } => *balance += amount,
                AccountEvent::Withdrawn { amount } => *balance -= amount,
            }
        }
    }
    for (stream, balance) in &balances {
        println!("{stream:<14} {balance:>6}");
    }
    println!("(read up to checkpoint {checkpoint})");
    Ok(())
}
