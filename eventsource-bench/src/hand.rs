//! The hand-written twin of [`Account`](crate::fixture::Account)'s fold: the baseline the
//! generated dispatch is measured against.

use crate::fixture::{AccountEvent, Deposited, Opened, Withdrawn};

/// The events, as a hand-written enum.
#[derive(Clone, Debug)]
pub enum HandEvent {
    /// See [`Opened`].
    Opened(Opened),
    /// See [`Deposited`].
    Deposited(Deposited),
    /// See [`Withdrawn`].
    Withdrawn(Withdrawn),
}

impl From<AccountEvent> for HandEvent {
    fn from(event: AccountEvent) -> Self {
        match event {
            AccountEvent::Opened(e) => HandEvent::Opened(e),
            AccountEvent::Deposited(e) => HandEvent::Deposited(e),
            AccountEvent::Withdrawn(e) => HandEvent::Withdrawn(e),
        }
    }
}

/// The state, folded by a plain `match`.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct HandAccount {
    /// The owner, once opened.
    pub owner: Option<String>,
    /// In cents.
    pub balance: u64,
    /// Events folded.
    pub movements: u64,
}

impl HandAccount {
    /// Folds one event, with the same bodies as the `Apply` impls of the derived account.
    #[inline]
    pub fn apply(&mut self, event: &HandEvent) {
        match event {
            HandEvent::Opened(e) => {
                self.owner = Some(e.owner.clone());
                self.movements += 1;
            }
            HandEvent::Deposited(e) => {
                self.balance = self.balance.wrapping_add(e.amount);
                self.movements += 1;
            }
            HandEvent::Withdrawn(e) => {
                self.balance = self.balance.wrapping_sub(e.amount);
                self.movements += 1;
            }
        }
    }
}

/// Folds `events` `passes` times over with the derive's generated dispatch
/// (`Aggregate::evolve`).
///
/// The fold loops live here, in the crate of the `Apply` impls, as in an application (the
/// repository's generic fold is instantiated in the crate that declares the aggregate): a loop
/// in another crate could not inline the impls, and would measure that instead of the dispatch.
#[inline(never)]
pub fn fold_generated(
    events: &[crate::fixture::AccountEvent],
    passes: usize,
) -> crate::fixture::Account {
    use eventsource::Aggregate as _;
    let mut state = crate::fixture::Account::default();
    for _ in 0..passes {
        for event in events {
            state.evolve(event);
        }
    }
    state
}

/// Folds `events` `passes` times over with the hand-written `match`.
#[inline(never)]
pub fn fold_hand_written(events: &[HandEvent], passes: usize) -> HandAccount {
    let mut state = HandAccount::default();
    for _ in 0..passes {
        for event in events {
            state.apply(event);
        }
    }
    state
}
