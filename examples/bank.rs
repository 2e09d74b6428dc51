//! A bank account, declared with the derives: open, deposit, withdraw; a rejected withdrawal;
//! the audit trail of a stream; time travel; and a read model built from the global log.
//!
//! Run with `cargo run --example bank`; `cargo run --example bank -- --write-schemas DIR`
//! writes the JSON Schema of every event version instead (for a schema registry).
//!
//! The events' shapes are locked in `events.lock` (section `[bank]`) and their stored payloads
//! are kept in `tests/golden/bank`, their JSON Schemas (for other services' schema registries)
//! in `tests/schemas/bank`; `cargo test` checks all three (see the guide
//! `eventsource::guide::evolving_events`).

use std::collections::BTreeMap;

use eventsource::prelude::*;
use eventsource::{Project, Projection, ProjectionRunner, RecordedEvent};

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

// Read models: projections name their events once and receive each stored record.

/// Every account's balance, held in memory (for the in-memory store).
#[derive(Default)]
struct Balances(BTreeMap<String, i64>);

impl Projection for Balances {
    const NAME: &'static str = "balances";
    type Handles = (Deposited, Withdrawn);
    type Error = std::convert::Infallible;
}

impl Project<Deposited> for Balances {
    async fn project(
        &mut self,
        e: Deposited,
        at: &RecordedEvent,
        _: &mut (),
    ) -> Result<(), Self::Error> {
        *self.0.entry(at.stream_id.to_string()).or_default() += e.amount as i64;
        Ok(())
    }
}

impl Project<Withdrawn> for Balances {
    async fn project(
        &mut self,
        e: Withdrawn,
        at: &RecordedEvent,
        _: &mut (),
    ) -> Result<(), Self::Error> {
        *self.0.entry(at.stream_id.to_string()).or_default() -= e.amount as i64;
        Ok(())
    }
}

/// The same read model as a PostgreSQL table, written in the transaction that moves the
/// projection's checkpoint: each event is applied exactly once, even across crashes.
#[cfg(feature = "postgres")]
mod sql_read_model {
    use super::{Deposited, Withdrawn};
    use eventsource::postgres::sqlx::{self, AssertSqlSafe};
    use eventsource::postgres::{PostgresStore, PostgresTx};
    use eventsource::{Project, Projection, RecordedEvent};

    pub(super) struct BalanceTable {
        pub(super) table: String,
    }

    impl BalanceTable {
        pub(super) async fn create(store: &PostgresStore) -> Result<Self, sqlx::Error> {
            let table = format!("\"{}\".balances", store.schema().as_str());
            let sql = format!(
                "CREATE TABLE IF NOT EXISTS {table} (account text PRIMARY KEY, balance bigint NOT NULL)"
            );
            sqlx::query(AssertSqlSafe(sql))
                .execute(store.pool())
                .await?;
            Ok(BalanceTable { table })
        }

        async fn add(
            &self,
            account: &str,
            amount: i64,
            tx: &mut PostgresTx,
        ) -> Result<(), sqlx::Error> {
            let sql = format!(
                "INSERT INTO {} (account, balance) VALUES ($1, $2) \
                 ON CONFLICT (account) DO UPDATE SET balance = balances.balance + EXCLUDED.balance",
                self.table
            );
            sqlx::query(AssertSqlSafe(sql))
                .bind(account)
                .bind(amount)
                .execute(&mut **tx)
                .await?;
            Ok(())
        }
    }

    impl Projection for BalanceTable {
        const NAME: &'static str = "balance_table";
        type Handles = (Deposited, Withdrawn);
        type Error = sqlx::Error;
    }

    impl Project<Deposited, PostgresTx> for BalanceTable {
        async fn project(
            &mut self,
            e: Deposited,
            at: &RecordedEvent,
            tx: &mut PostgresTx,
        ) -> Result<(), sqlx::Error> {
            self.add(at.stream_id.as_str(), e.amount as i64, tx).await
        }
    }

    impl Project<Withdrawn, PostgresTx> for BalanceTable {
        async fn project(
            &mut self,
            e: Withdrawn,
            at: &RecordedEvent,
            tx: &mut PostgresTx,
        ) -> Result<(), sqlx::Error> {
            self.add(at.stream_id.as_str(), -(e.amount as i64), tx)
                .await
        }
    }
}

type BoxError = Box<dyn std::error::Error>;

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    // `cargo run --example bank -- --write-schemas DIR`: export the JSON Schema of every event
    // version for a schema registry, and stop.
    let mut args = std::env::args().skip_while(|arg| arg != "--write-schemas");
    if let (Some(_), Some(dir)) = (args.next(), args.next()) {
        let schemas = <AccountEvent as EventEnum>::event_schemas();
        for path in eventsource::json_schema::write_json_schemas(dir.as_ref(), &schemas)? {
            println!("wrote {}", path.display());
        }
        return Ok(());
    }
    // Readable logs: spans are printed when they close, with their fields and timing.
    // `RUST_LOG=debug` adds appends and loads; `RUST_LOG=off` silences them.
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_span_events(tracing_subscriber::fmt::format::FmtSpan::CLOSE)
        .with_writer(std::io::stderr)
        .init();
    // Metrics go to whatever recorder the application installs; here one that we can print.
    let recorder = metrics_util::debugging::DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    recorder.install()?;

    #[cfg(feature = "postgres")]
    if let Ok(url) = std::env::var("DATABASE_URL") {
        // A fresh schema per run, so that reruns start from empty accounts.
        let schema = format!("bank_{}", uuid::Uuid::now_v7().simple());
        let store = eventsource::postgres::PostgresStore::builder()
            .schema(schema.as_str())
            .connect(&url)
            .await?;
        store.migrate().await?;
        println!("store: PostgreSQL, schema `{schema}`\n");
        run(store.clone()).await?;
        let table = sql_read_model::BalanceTable::create(&store).await?;
        let mut runner = ProjectionRunner::new(table, store.clone());
        let caught_up = runner.catch_up().await?;
        println!(
            "\nread model in PostgreSQL ({} events applied):",
            caught_up.applied
        );
        let sql = format!(
            "SELECT account, balance FROM {} ORDER BY account",
            runner.projection().table
        );
        let rows: Vec<(String, i64)> =
            eventsource::postgres::sqlx::query_as(eventsource::postgres::sqlx::AssertSqlSafe(sql))
                .fetch_all(store.pool())
                .await?;
        for (account, balance) in rows {
            println!("  {account:<12} {balance}");
        }
        print_metrics(&snapshotter);
        return Ok(());
    }

    println!("store: in memory\n");
    let store = MemoryStore::new();
    run(store.clone()).await?;
    let mut runner = ProjectionRunner::new(Balances::default(), store);
    let caught_up = runner.catch_up().await?;
    println!(
        "\nread model ({} events applied by the `balances` projection):",
        caught_up.applied
    );
    for (stream, balance) in &runner.projection().0 {
        println!("  {stream:<12} {balance}");
    }
    print_metrics(&snapshotter);
    Ok(())
}

/// The commands, a rejection, the audit trail and time travel: the same code on any store.
async fn run<S: EventStore + SnapshotStore>(store: S) -> Result<(), BoxError> {
    let accounts = Repository::<Account, _>::new(store).retry_on_conflict(3);

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
            "  v{} pos {} {} {:<18} {:?}",
            line.record.version,
            line.record.position,
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
    let as_of = accounts
        .load_as_of("ada", deposit.record.recorded_at)
        .await?;
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
    Ok(())
}

/// Prints what the metrics recorder saw: counters, gauges, and histogram counts and maxima.
fn print_metrics(snapshotter: &metrics_util::debugging::Snapshotter) {
    use metrics_util::debugging::DebugValue;
    println!("\nmetrics:");
    let mut lines: Vec<String> = snapshotter
        .snapshot()
        .into_vec()
        .into_iter()
        .map(|(key, _, _, value)| {
            let key = key.key();
            let labels: Vec<String> = key
                .labels()
                .map(|l| format!("{}={}", l.key(), l.value()))
                .collect();
            let value = match value {
                DebugValue::Counter(n) => n.to_string(),
                DebugValue::Gauge(g) => g.to_string(),
                DebugValue::Histogram(samples) => {
                    let max = samples.iter().map(|s| s.0).fold(0.0, f64::max);
                    format!("{} samples, max {:.3} ms", samples.len(), max * 1e3)
                }
            };
            format!("  {:<44} {:<32} {value}", key.name(), labels.join(","))
        })
        .collect();
    lines.sort();
    for line in lines {
        println!("{line}");
    }
}

// The golden checks need `eventsource::testing` (`cargo test --features testing`, which
// `./scripts/test.sh` passes with `--all-features`); a plain `cargo test` still builds.
#[cfg(all(test, feature = "testing"))]
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

    /// The JSON Schema of every version, for other services' schema registries, as committed
    /// in `tests/schemas/bank` (`EVENTSOURCE_SCHEMAS=write cargo test --example bank` rewrites
    /// them; `eventsource json-schema check tests/schemas/bank` validates stored payloads).
    #[test]
    fn json_schemas() {
        eventsource::testing::check_json_schemas::<AccountEvent>(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/schemas/bank"
        ));
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
