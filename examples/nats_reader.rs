//! The reading service: a read model in its own PostgreSQL schema (or database), fed from
//! NATS JetStream through a durable consumer, exactly once. Run `nats_writer` beside it.
//!
//! ```sh
//! export DATABASE_URL=postgres://postgres@127.0.0.1/postgres NATS_URL=nats://127.0.0.1:4222
//! cargo run --features nats,postgres --example nats_reader            # until Ctrl-C
//! cargo run --features nats,postgres --example nats_reader -- 1000    # until 1000 orders
//! ```
//!
//! `READER_DATABASE_URL` puts the read model in another database than the writer's.

use std::time::Duration;

use eventsource::nats::async_nats;
use eventsource::nats::{JetStreamSource, SubjectPrefix};
use eventsource::postgres::sqlx::{self, Row};
use eventsource::postgres::{PostgresStore, PostgresTx};
use eventsource::prelude::*;

const STREAM: &str = "SHOP";
const PREFIX: &str = "shop.events";

// The reader declares the event as it reads it: the same name and version, the fields it needs.
#[derive(Event, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[event(name = "order.placed")]
struct OrderPlaced {
    customer: String,
    amount: u64,
}

/// Revenue per customer, in `shop_reader.revenue`.
struct Revenue;

impl Projection for Revenue {
    const NAME: &'static str = "revenue";
    type Handles = (OrderPlaced,);
    type Error = sqlx::Error;
}

impl Project<OrderPlaced, PostgresTx> for Revenue {
    async fn project(
        &mut self,
        event: OrderPlaced,
        _: &RecordedEvent,
        tx: &mut PostgresTx,
    ) -> Result<(), sqlx::Error> {
        sqlx::query(
            "INSERT INTO shop_reader.revenue (customer, orders, amount) VALUES ($1, 1, $2)
             ON CONFLICT (customer) DO UPDATE
             SET orders = revenue.orders + 1, amount = revenue.amount + excluded.amount",
        )
        .bind(&event.customer)
        .bind(event.amount as i64)
        .execute(&mut **tx)
        .await?;
        Ok(())
    }
}

async fn orders(store: &PostgresStore) -> Result<i64, sqlx::Error> {
    let row = sqlx::query("SELECT coalesce(sum(orders), 0)::bigint FROM shop_reader.revenue")
        .fetch_one(store.pool())
        .await?;
    Ok(row.get(0))
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let until: Option<i64> = std::env::args().nth(1).map(|n| n.parse()).transpose()?;
    let database_url =
        std::env::var("READER_DATABASE_URL").or_else(|_| std::env::var("DATABASE_URL"))?;
    let nats_url = std::env::var("NATS_URL").unwrap_or_else(|_| "nats://127.0.0.1:4222".into());

    // The reader's own schema: the eventsource tables hold its checkpoint and lease.
    let store = PostgresStore::builder()
        .schema("shop_reader")
        .connect(&database_url)
        .await?;
    store.migrate().await?;
    sqlx::query(
        "CREATE TABLE IF NOT EXISTS shop_reader.revenue
         (customer text PRIMARY KEY, orders bigint NOT NULL, amount bigint NOT NULL)",
    )
    .execute(store.pool())
    .await?;

    let jetstream = async_nats::jetstream::new(async_nats::connect(&nats_url).await?);
    let prefix = SubjectPrefix::new(PREFIX)?;
    // A durable consumer named after the projection, on the `order` category only.
    let mut source = JetStreamSource::new(
        Revenue,
        store.clone(),
        jetstream,
        STREAM,
        prefix.category("order"),
    );

    let watched = store.clone();
    let done = async move {
        loop {
            let seen = orders(&watched).await.unwrap_or(0);
            if until.is_some_and(|n| seen >= n) {
                return;
            }
            tokio::select! {
                _ = tokio::signal::ctrl_c() => return,
                () = tokio::time::sleep(Duration::from_millis(200)) => {}
            }
        }
    };
    source.run(done).await?;

    let rows =
        sqlx::query("SELECT customer, orders, amount FROM shop_reader.revenue ORDER BY customer")
            .fetch_all(store.pool())
            .await?;
    for row in rows {
        let (customer, count, amount): (String, i64, i64) = (row.get(0), row.get(1), row.get(2));
        println!("{customer}: {count} orders, {amount} in all");
    }
    Ok(())
}
