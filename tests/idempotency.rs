//! Idempotency keys through the facade with a derived aggregate: the derived command
//! fingerprint, a reused key, and the concurrent account scenario on the memory store (the
//! PostgreSQL run is `postgres_idempotency`).
#![allow(clippy::unwrap_used, clippy::expect_used)] // a test fails by panicking

#[path = "support/account.rs"]
mod account;

use account::{Account, AccountCommand, Deposit, Note, Withdraw, concurrent_account_rounds};
use eventsource::prelude::*;
use eventsource::{Aggregate, CommandFingerprint, CommandMetadata, ExecuteError, Version};

fn keyed(key: &str) -> CommandMetadata {
    CommandMetadata::new().idempotency_key(key)
}

#[test]
fn the_derive_fingerprints_the_variant_and_serializable_content() {
    let deposit: AccountCommand = Deposit { amount: 5 }.into();
    assert_eq!(
        Account::command_fingerprint(&deposit),
        Some(CommandFingerprint::serialized(
            "Deposit",
            &serde_json::json!({ "amount": 5 })
        ))
    );
    let withdraw: AccountCommand = Withdraw { amount: 5 }.into();
    let withdraw = Account::command_fingerprint(&withdraw).unwrap();
    assert_eq!(withdraw.name, "Withdraw");
    assert!(!withdraw.matches(&Account::command_fingerprint(&deposit).unwrap()));
    // Without `Serialize`: the name only.
    let note: AccountCommand = Note { text: "hi".into() }.into();
    assert_eq!(
        Account::command_fingerprint(&note),
        Some(CommandFingerprint::named("Note"))
    );
}

#[tokio::test]
async fn a_reused_key_is_refused_with_the_content_compared() {
    let repo = Repository::<Account, _>::new(MemoryStore::new());
    repo.execute("a", Deposit { amount: 100 }).await.unwrap();
    let first = repo
        .execute_with("a", Withdraw { amount: 30 }, keyed("pay-1"))
        .await
        .unwrap();
    assert!(!first.replayed);
    // Same type, other content: the bug report's lost `Receive { qty: 50 }`.
    let error = repo
        .execute_with("a", Withdraw { amount: 50 }, keyed("pay-1"))
        .await
        .unwrap_err();
    assert!(
        matches!(&error, ExecuteError::IdempotencyKeyReused { key, version: Version(2), .. } if key == "pay-1"),
        "{error:?}"
    );
    // Another type under the key.
    let error = repo
        .execute_with("a", Deposit { amount: 30 }, keyed("pay-1"))
        .await
        .unwrap_err();
    assert!(matches!(error, ExecuteError::IdempotencyKeyReused { .. }));
    assert_eq!(repo.load("a").await.unwrap().state.balance, 70);
    // The same command replays.
    let again = repo
        .execute_with("a", Withdraw { amount: 30 }, keyed("pay-1"))
        .await
        .unwrap();
    assert!(again.replayed);
    assert_eq!((again.version, again.state.balance), (Version(2), 70));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_callers_on_the_memory_store() {
    concurrent_account_rounds(MemoryStore::new(), 40).await;
}

// An aggregate that names its own command enum: the fingerprint is the enum's name plus the
// digest of its JSON, which names the variant, so variants and contents are told apart.

#[derive(Clone, Debug, Serialize)]
enum LedgerCommand {
    Credit { amount: u64 },
    Debit { amount: u64 },
}

#[derive(Aggregate, Default, Serialize, Deserialize)]
#[aggregate(name = "ledger", events(account::Deposited), commands = LedgerCommand)]
struct Ledger {
    total: u64,
}

impl Apply<account::Deposited> for Ledger {
    fn apply(&mut self, e: &account::Deposited) {
        self.total += e.amount;
    }
}

impl Handle<LedgerCommand> for Ledger {
    fn handle(&self, command: LedgerCommand) -> Result<Events<Self>, std::convert::Infallible> {
        let amount = match command {
            LedgerCommand::Credit { amount } | LedgerCommand::Debit { amount } => amount,
        };
        Ok(Events::one(account::Deposited { amount }))
    }
}

#[tokio::test]
async fn a_users_command_enum_is_fingerprinted_by_its_json() {
    let credit = Ledger::command_fingerprint(&LedgerCommand::Credit { amount: 5 }).unwrap();
    assert_eq!(
        credit,
        CommandFingerprint::serialized("LedgerCommand", &LedgerCommand::Credit { amount: 5 })
    );
    let debit = Ledger::command_fingerprint(&LedgerCommand::Debit { amount: 5 }).unwrap();
    assert!(!credit.matches(&debit), "the variant is part of the JSON");
    let ledgers = Repository::<Ledger, _>::new(MemoryStore::new());
    ledgers
        .execute_with(1, LedgerCommand::Credit { amount: 5 }, keyed("k"))
        .await
        .unwrap();
    let reused = ledgers
        .execute_with(1, LedgerCommand::Debit { amount: 5 }, keyed("k"))
        .await;
    assert!(matches!(
        reused,
        Err(ExecuteError::IdempotencyKeyReused { .. })
    ));
}
