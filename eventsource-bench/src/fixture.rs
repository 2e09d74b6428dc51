//! The aggregate the benchmarks drive: a bank account, declared with the derives, whose
//! `account.deposited` event has a two-step upcaster chain (v1 -> v2 -> v3).

use eventsource::prelude::*;

/// An account was opened.
#[derive(Event, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[event(name = "account.opened")]
pub struct Opened {
    /// Who owns it.
    pub owner: String,
}

/// Money came in (schema version 3, the current one).
#[derive(Event, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[event(name = "account.deposited", version = 3, previous = DepositedV2)]
pub struct Deposited {
    /// In cents.
    pub amount: u64,
    /// ISO 4217 code.
    pub currency: String,
    /// Free text, added in version 3.
    pub memo: Option<String>,
}

/// `account.deposited` version 2: before memos.
#[derive(Event, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[event(name = "account.deposited", version = 2, previous = DepositedV1)]
pub struct DepositedV2 {
    /// In cents.
    pub amount: u64,
    /// ISO 4217 code.
    pub currency: String,
}

/// `account.deposited` version 1: before currencies.
#[derive(Event, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[event(name = "account.deposited", version = 1)]
pub struct DepositedV1 {
    /// In cents.
    pub amount: u64,
}

impl From<DepositedV1> for DepositedV2 {
    fn from(old: DepositedV1) -> Self {
        DepositedV2 {
            amount: old.amount,
            currency: "EUR".to_owned(),
        }
    }
}

impl From<DepositedV2> for Deposited {
    fn from(old: DepositedV2) -> Self {
        Deposited {
            amount: old.amount,
            currency: old.currency,
            memo: None,
        }
    }
}

/// Money went out.
#[derive(Event, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[event(name = "account.withdrawn")]
pub struct Withdrawn {
    /// In cents.
    pub amount: u64,
}

/// Put money in.
#[derive(Clone, Debug)]
pub struct Deposit {
    /// In cents.
    pub amount: u64,
}

/// Why an account refuses a command.
#[derive(Debug, thiserror::Error)]
pub enum AccountError {
    /// Deposits must be positive.
    #[error("a deposit must be positive")]
    NothingToDeposit,
}

/// An account without snapshots: every load folds its whole stream (a repository's
/// `with_snapshot_policy` gives it some).
#[derive(Aggregate, Default, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[aggregate(
    name = "account",
    error = AccountError,
    events(Opened, Deposited, Withdrawn),
    commands(Deposit)
)]
pub struct Account {
    /// The owner, once opened.
    pub owner: Option<String>,
    /// In cents.
    pub balance: u64,
    /// Events folded.
    pub movements: u64,
}

impl Apply<Opened> for Account {
    fn apply(&mut self, event: &Opened) {
        self.owner = Some(event.owner.clone());
        self.movements += 1;
    }
}

impl Apply<Deposited> for Account {
    fn apply(&mut self, event: &Deposited) {
        self.balance = self.balance.wrapping_add(event.amount);
        self.movements += 1;
    }
}

impl Apply<Withdrawn> for Account {
    fn apply(&mut self, event: &Withdrawn) {
        self.balance = self.balance.wrapping_sub(event.amount);
        self.movements += 1;
    }
}

impl Handle<Deposit> for Account {
    fn handle(&self, command: Deposit) -> Result<Events<Self>, AccountError> {
        if command.amount == 0 {
            return Err(AccountError::NothingToDeposit);
        }
        Ok(Events::one(deposited(command.amount)))
    }
}

/// A current-version deposit.
pub fn deposited(amount: u64) -> Deposited {
    Deposited {
        amount,
        currency: "EUR".to_owned(),
        memo: Some("salary".to_owned()),
    }
}

/// The `n`-th event of a synthetic history: opened first, then mostly deposits, every fourth a
/// withdrawal.
pub fn nth_event(n: u64) -> AccountEvent {
    match n {
        0 => Opened {
            owner: "ada".to_owned(),
        }
        .into(),
        n if n % 4 == 3 => Withdrawn { amount: n % 7 + 1 }.into(),
        n => deposited(n % 13 + 1).into(),
    }
}

/// The same account events as one enum (`#[derive(EventEnum)]`, named apart from the
/// aggregate's generated `AccountEvent`): `account.deposited` is the variant `Deposited`, at
/// version 3, whose older versions decode through [`DepositedV2`]. Each variant is `same_as`
/// its struct: one event version declared twice in a crate, checked to be identical.
#[derive(EventEnum, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[event(prefix = "account.")]
pub enum LedgerEvent {
    /// An account was opened.
    #[event(same_as = Opened)]
    Opened {
        /// Who owns it.
        owner: String,
    },
    /// Money came in (schema version 3).
    #[event(version = 3, previous = DepositedV2, same_as = Deposited)]
    Deposited {
        /// In cents.
        amount: u64,
        /// ISO 4217 code.
        currency: String,
        /// Free text, added in version 3.
        memo: Option<String>,
    },
    /// Money went out.
    #[event(same_as = Withdrawn)]
    Withdrawn {
        /// In cents.
        amount: u64,
    },
}

impl From<DepositedV2> for LedgerEvent {
    fn from(old: DepositedV2) -> Self {
        LedgerEvent::Deposited {
            amount: old.amount,
            currency: old.currency,
            memo: None,
        }
    }
}
