//! A derived bank account and the concurrent idempotency scenario run on every store: callers
//! race with shared and own idempotency keys, some withdrawals are rejected, every caller
//! retries, and every answer is checked against the stream.
#![allow(dead_code, unreachable_pub, clippy::expect_used, clippy::unwrap_used)]

use std::collections::BTreeMap;

use eventsource::prelude::*;
use eventsource::{CommandMetadata, EventStore, ExecuteError, SnapshotStore, Version};

#[derive(Event, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[event(name = "account.deposited")]
pub struct Deposited {
    pub amount: u64,
}

#[derive(Event, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[event(name = "account.withdrawn")]
pub struct Withdrawn {
    pub amount: u64,
}

/// Put money in (serializable: its amount is part of its fingerprint).
#[derive(Clone, Debug, Serialize)]
pub struct Deposit {
    pub amount: u64,
}

/// Take money out; rejected beyond the balance.
#[derive(Clone, Debug, Serialize)]
pub struct Withdraw {
    pub amount: u64,
}

/// Not serializable: compared by name only.
#[derive(Clone, Debug)]
pub struct Note {
    pub text: String,
}

#[derive(Debug, PartialEq, thiserror::Error)]
pub enum AccountError {
    #[error("insufficient funds: balance {balance}, requested {requested}")]
    InsufficientFunds { balance: u64, requested: u64 },
}

#[derive(Aggregate, Default, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[aggregate(
    name = "account",
    error = AccountError,
    events(Deposited, Withdrawn),
    commands(Deposit, Withdraw, Note),
    snapshot(every = 3)
)]
pub struct Account {
    pub balance: u64,
    pub movements: u32,
}

impl Apply<Deposited> for Account {
    fn apply(&mut self, e: &Deposited) {
        self.balance += e.amount;
        self.movements += 1;
    }
}

impl Apply<Withdrawn> for Account {
    fn apply(&mut self, e: &Withdrawn) {
        self.balance -= e.amount;
        self.movements += 1;
    }
}

impl Handle<Deposit> for Account {
    fn handle(&self, c: Deposit) -> Result<Events<Self>, AccountError> {
        Ok(Events::one(Deposited { amount: c.amount }))
    }
}

impl Handle<Withdraw> for Account {
    fn handle(&self, c: Withdraw) -> Result<Events<Self>, AccountError> {
        if c.amount > self.balance {
            return Err(AccountError::InsufficientFunds {
                balance: self.balance,
                requested: c.amount,
            });
        }
        Ok(Events::one(Withdrawn { amount: c.amount }))
    }
}

impl Handle<Note> for Account {
    fn handle(&self, _: Note) -> Result<Events<Self>, AccountError> {
        Ok(Events::none())
    }
}

/// One caller's answer, comparable across callers.
#[derive(Clone, Debug, PartialEq)]
enum Answer {
    Done {
        version: Version,
        events: Vec<AccountEvent>,
        state: Account,
    },
    Rejected,
}

/// `rounds` rounds on fresh accounts funded with 100. Per round, 8 tasks: four send one
/// withdrawal of 80 under a shared key, two withdraw 30 under keys of their own, two send one
/// deposit of 5 under another shared key; each then retries its command once. Checked: a
/// shared key's callers all get the same answer (one execution, or all rejected because the
/// balance was gone), exactly one of them is not `replayed`, no answer is a rejection caused
/// by its own key, every returned state is the refold of the stream at the returned version,
/// and the stream holds exactly the writes reported.
pub async fn concurrent_account_rounds<S>(store: S, rounds: usize)
where
    S: EventStore + SnapshotStore + Clone,
{
    let repo = Repository::<Account, _>::new(store.clone());
    let (mut accepted, mut rejected, mut replayed) = (0, 0, 0);
    for round in 0..rounds {
        let id = format!("round-{round}");
        repo.execute(&id, Deposit { amount: 100 }).await.unwrap();
        let mut tasks = Vec::new();
        for task in 0..8usize {
            let store = store.clone();
            let id = id.clone();
            tasks.push(tokio::spawn(async move {
                let repo = Repository::<Account, _>::new(store).retry_on_conflict(100);
                let (key, command): (String, AccountCommand) = match task {
                    0..=3 => (format!("w80-{round}"), Withdraw { amount: 80 }.into()),
                    4 | 5 => (
                        format!("w30-{round}-{task}"),
                        Withdraw { amount: 30 }.into(),
                    ),
                    _ => (format!("d5-{round}"), Deposit { amount: 5 }.into()),
                };
                let mut answers = Vec::new();
                for _ in 0..2 {
                    let metadata = CommandMetadata::new().idempotency_key(&key);
                    let result = repo.execute_with(&id, command.clone(), metadata).await;
                    answers.push(result);
                }
                (key, answers)
            }));
        }
        let mut by_key: BTreeMap<String, Vec<(Answer, bool)>> = BTreeMap::new();
        for task in tasks {
            let (key, answers) = task.await.unwrap();
            for (attempt, result) in answers.into_iter().enumerate() {
                let answer = match result {
                    Ok(done) => {
                        let refold = repo.load_at(&id, done.version).await.unwrap();
                        assert_eq!(
                            done.state, refold.state,
                            "round {round}, key {key}: the state is the stream's at {}",
                            done.version
                        );
                        let history = repo.history(&id).await.unwrap();
                        let last = &history[done.version.0 as usize - 1];
                        assert_eq!(
                            last.record.metadata.idempotency_key.as_deref(),
                            Some(key.as_str()),
                            "round {round}: the version is this key's append"
                        );
                        assert_eq!(done.events, std::slice::from_ref(&last.event));
                        if attempt == 1 {
                            assert!(done.replayed, "round {round}, key {key}: a retry replays");
                        }
                        if done.replayed {
                            replayed += 1;
                        }
                        (
                            Answer::Done {
                                version: done.version,
                                events: done.events,
                                state: done.state,
                            },
                            done.replayed,
                        )
                    }
                    Err(ExecuteError::Rejected { source, .. }) => {
                        assert!(
                            key.starts_with('w'),
                            "round {round}: a deposit is never rejected"
                        );
                        let AccountError::InsufficientFunds { balance, requested } = source;
                        assert!(
                            balance < requested,
                            "round {round}: {balance} < {requested}"
                        );
                        rejected += 1;
                        (Answer::Rejected, false)
                    }
                    Err(other) => panic!("round {round}, key {key}: unexpected error: {other}"),
                };
                by_key.entry(key.clone()).or_default().push(answer);
            }
        }
        let mut writes = 0;
        for (key, answers) in &by_key {
            let first_done = answers
                .iter()
                .find(|(answer, _)| matches!(answer, Answer::Done { .. }));
            if key.starts_with("w30") {
                // An own key: the retry replays the first answer, or a rejection is decided anew.
                if let (Answer::Done { .. }, _) = &answers[0] {
                    assert_eq!(answers[0].0, answers[1].0, "round {round}, key {key}");
                    assert!(!answers[0].1 && answers[1].1, "round {round}, key {key}");
                    writes += 1;
                }
                continue;
            }
            match first_done {
                Some((done, _)) => {
                    // Every caller of the shared key gets that one execution; one wrote it.
                    assert!(
                        answers.iter().all(|(answer, _)| answer == done),
                        "round {round}, key {key}: {answers:?}"
                    );
                    let writers = answers.iter().filter(|(_, replayed)| !replayed).count();
                    assert_eq!(writers, 1, "round {round}, key {key}: one writer");
                    writes += 1;
                    accepted += 1;
                }
                None => {
                    assert!(
                        key.starts_with("w80"),
                        "round {round}, key {key}: {answers:?}"
                    );
                }
            }
        }
        let history = repo.history(&id).await.unwrap();
        assert_eq!(
            history.len(),
            1 + writes,
            "round {round}: only the reported writes"
        );
        let loaded = repo.load(&id).await.unwrap();
        assert_eq!(
            loaded.state,
            repo.load_at(&id, loaded.version).await.unwrap().state
        );
    }
    assert!(
        accepted > 0 && rejected > 0 && replayed > 0,
        "a mixed run: {accepted} {rejected} {replayed}"
    );
}
