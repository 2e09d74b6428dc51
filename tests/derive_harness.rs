//! The given/when/then harness on a derived aggregate, including what its failures say.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a test fails by panicking

use std::panic;

use eventsource::prelude::*;

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
struct Deposit {
    amount: u64,
}

#[derive(Clone, Debug)]
struct Withdraw {
    amount: u64,
}

#[derive(Debug, PartialEq, thiserror::Error)]
enum AccountError {
    #[error("balance {balance} is less than {requested}")]
    InsufficientFunds { balance: u64, requested: u64 },
}

#[derive(Aggregate, Default, Serialize, Deserialize, Debug)]
#[aggregate(
    name = "account",
    error = AccountError,
    events(Deposited, Withdrawn),
    commands(Deposit, Withdraw)
)]
struct Account {
    balance: u64,
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
        // Withdrawing everything is recorded as two events, to give the tables rows to compare.
        if command.amount == self.balance && command.amount > 1 {
            return Ok(Events::one(Withdrawn {
                amount: command.amount - 1,
            })
            .and(Withdrawn { amount: 1 }));
        }
        Ok(Events::one(Withdrawn {
            amount: command.amount,
        }))
    }
}

#[test]
fn passing_scenarios() {
    Account::given([Deposited { amount: 10 }])
        .and(Withdrawn { amount: 2 })
        .when(Withdraw { amount: 3 })
        .then([Withdrawn { amount: 3 }])
        .then_state(|account| assert_eq!(account.balance, 5));

    Account::given_nothing()
        .when(Deposit { amount: 4 })
        .then([Deposited { amount: 4 }]);

    Account::given([Deposited { amount: 10 }])
        .when(Withdraw { amount: 30 })
        .then_error(AccountError::InsufficientFunds {
            balance: 10,
            requested: 30,
        })
        .then_error_matches(|error| matches!(error, AccountError::InsufficientFunds { .. }));
}

#[test]
fn differing_events_are_shown_side_by_side() {
    let when = Account::given([Deposited { amount: 10 }]).when(Withdraw { amount: 10 });
    let failure = when.check([Withdrawn { amount: 10 }]).unwrap_err();
    assert_eq!(
        failure.message(),
        "\
given/when/then failed for `account`: the command produced other events than expected
given:
  1. Deposited { amount: 10 }
when: Withdraw { amount: 10 }
     expected                 | actual
!  1 Withdrawn { amount: 10 } | Withdrawn { amount: 9 }
!  2 -                        | Withdrawn { amount: 1 }"
    );
}

#[test]
fn a_rejection_where_events_were_expected_shows_the_error() {
    let when = Account::given_nothing().when(Withdraw { amount: 1 });
    let failure = when.check([Withdrawn { amount: 1 }]).unwrap_err();
    assert_eq!(
        failure.message(),
        "\
given/when/then failed for `account`: expected events, but the command was rejected
given:
  (no events)
when: Withdraw { amount: 1 }
rejected with: InsufficientFunds { balance: 0, requested: 1 }
expected:
  1. Withdrawn { amount: 1 }"
    );
}

#[test]
fn an_accepted_command_where_an_error_was_expected_shows_the_events() {
    let when = Account::given_nothing().when(Deposit { amount: 1 });
    let expected = AccountError::InsufficientFunds {
        balance: 0,
        requested: 1,
    };
    let failure = when.check_error(&expected).unwrap_err();
    assert!(
        failure
            .message()
            .ends_with("expected error: InsufficientFunds { balance: 0, requested: 1 }\nproduced:\n  1. Deposited { amount: 1 }"),
        "{failure}"
    );
}

#[test]
fn then_panics_with_the_failure_message() {
    let panic = panic::catch_unwind(|| {
        Account::given([Deposited { amount: 5 }])
            .when(Deposit { amount: 1 })
            .then([Deposited { amount: 2 }]);
    })
    .unwrap_err();
    let message = panic
        .downcast_ref::<String>()
        .expect("the panic carries a formatted message");
    assert!(
        message.contains("!  1 Deposited { amount: 2 } | Deposited { amount: 1 }"),
        "{message}"
    );
}
