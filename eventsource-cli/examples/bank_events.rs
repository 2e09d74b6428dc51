//! Writes the bank example's events (two accounts, deposits, a withdrawal) into a PostgreSQL
//! store, so that there is something to look at with the `eventsource` CLI:
//!
//! ```sh
//! DATABASE_URL=postgres://... cargo run -p eventsource-cli --example bank_events
//! eventsource status
//! ```
//!
//! It also records a checkpoint for a `balances` read model that has applied the first four
//! events, as a projection runner would.

use eventsource_core::{EventStore, ExpectedVersion, Metadata, NewEvent, StreamId, Version};
use eventsource_postgres::PostgresStore;
use eventsource_postgres::sqlx::{self, AssertSqlSafe};
use serde_json::json;
use uuid::Uuid;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let url = std::env::var("DATABASE_URL").map_err(|_| "set DATABASE_URL")?;
    let store = PostgresStore::connect(&url).await?;
    store.migrate().await?;

    let teller = |request: &str| -> Result<Metadata, serde_json::Error> {
        let mut metadata = Metadata {
            correlation_id: Some(Uuid::now_v7()),
            ..Metadata::default()
        };
        metadata.insert("user", &"teller-7")?;
        metadata.insert("request", &request)?;
        Ok(metadata)
    };
    let event = |name: &str, version: u32, payload, metadata| {
        NewEvent::new(name, version, payload).with_metadata(metadata)
    };

    let ada = StreamId::new("account", "ada");
    let bob = StreamId::new("account", "bob");
    let opened = json!({ "owner": "Ada", "overdraft_limit": 0 });
    store
        .append(
            &ada,
            ExpectedVersion::NoStream,
            vec![event("account.opened", 2, opened, teller("open")?)],
        )
        .await?;
    store
        .append(
            &ada,
            ExpectedVersion::Exact(Version(1)),
            vec![event(
                "account.deposited",
                1,
                json!({ "amount": 100 }),
                teller("deposit")?,
            )],
        )
        .await?;
    let opened = json!({ "owner": "Bob", "overdraft_limit": 0 });
    store
        .append(
            &bob,
            ExpectedVersion::NoStream,
            vec![event("account.opened", 2, opened, teller("open")?)],
        )
        .await?;
    store
        .append(
            &bob,
            ExpectedVersion::Exact(Version(1)),
            vec![event(
                "account.deposited",
                1,
                json!({ "amount": 25 }),
                teller("deposit")?,
            )],
        )
        .await?;
    let fourth = store.head_position().await?;
    store
        .append(
            &ada,
            ExpectedVersion::Exact(Version(2)),
            vec![event(
                "account.withdrawn",
                1,
                json!({ "amount": 30 }),
                teller("withdraw")?,
            )],
        )
        .await?;

    // A read model that has applied everything up to the fourth event.
    sqlx::query(AssertSqlSafe(format!(
        "INSERT INTO \"{}\".checkpoints (projection, transaction_id, position) \
         SELECT 'balances', transaction_id::text::bigint, position FROM \"{0}\".events \
          WHERE position = $1 \
         ON CONFLICT (projection) DO NOTHING",
        store.schema()
    )))
    .bind(i64::try_from(fourth.0)?)
    .execute(store.pool())
    .await?;
    println!(
        "wrote 5 events to streams `{ada}` and `{bob}` in schema `{}`",
        store.schema()
    );
    Ok(())
}
