//! The writing service: commands append events to PostgreSQL, and a relay publishes them to
//! NATS JetStream exactly once. Run `nats_reader` beside it (see the README, "NATS JetStream").
//!
//! ```sh
//! nats-server -js &                                   # or any JetStream server / cluster
//! export DATABASE_URL=postgres://postgres@127.0.0.1/postgres NATS_URL=nats://127.0.0.1:4222
//! cargo run --features nats,postgres --example nats_writer -- 1000
//! ```
//!
//! It places that many orders (default 100), waits until the relay has published them all,
//! and exits.

use std::time::Duration;

use eventsource::ProjectionStore;
use eventsource::nats::async_nats;
use eventsource::nats::{Relay, SubjectPrefix, stream_config};
use eventsource::postgres::PostgresStore;
use eventsource::prelude::*;

/// The JetStream stream and subject prefix the two services agree on.
const STREAM: &str = "SHOP";
const PREFIX: &str = "shop.events";

#[derive(Event, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[event(name = "order.placed")]
struct OrderPlaced {
    customer: String,
    amount: u64,
}

#[derive(Clone, Debug)]
struct PlaceOrder {
    customer: String,
    amount: u64,
}

#[derive(Debug, thiserror::Error)]
enum OrderError {
    #[error("order already placed")]
    AlreadyPlaced,
}

#[derive(Aggregate, Default, Serialize, Deserialize, Clone, Debug)]
#[aggregate(name = "order", error = OrderError, events(OrderPlaced), commands(PlaceOrder))]
struct Order {
    placed: bool,
}

impl Apply<OrderPlaced> for Order {
    fn apply(&mut self, _: &OrderPlaced) {
        self.placed = true;
    }
}

impl Handle<PlaceOrder> for Order {
    fn handle(&self, command: PlaceOrder) -> Result<Events<Self>, OrderError> {
        if self.placed {
            return Err(OrderError::AlreadyPlaced);
        }
        Ok(Events::one(OrderPlaced {
            customer: command.customer,
            amount: command.amount,
        }))
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let orders: u64 = match std::env::args().nth(1) {
        Some(count) => count.parse()?,
        None => 100,
    };
    let database_url = std::env::var("DATABASE_URL")?;
    let nats_url = std::env::var("NATS_URL").unwrap_or_else(|_| "nats://127.0.0.1:4222".into());

    let store = PostgresStore::builder()
        .schema("shop")
        .connect(&database_url)
        .await?;
    store.migrate().await?;

    // The stream: every subject under the prefix, duplicates dropped within 10 minutes
    // (longer than any relay restart we expect), one replica (three on a cluster).
    let jetstream = async_nats::jetstream::new(async_nats::connect(&nats_url).await?);
    let prefix = SubjectPrefix::new(PREFIX)?;
    jetstream
        .get_or_create_stream(stream_config(STREAM, &prefix, Duration::from_secs(600), 1))
        .await?;

    // The relay runs beside the application; its checkpoint is in the `shop` schema.
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let mut relay = Relay::new(store.clone(), jetstream, "shop-relay", STREAM, prefix);
    let relay_task = tokio::spawn(async move {
        let result = relay
            .run(async {
                let _ = stopped.await;
            })
            .await;
        (relay, result)
    });

    let repository = Repository::<Order, _>::new(store.clone());
    let first = store.head_position().await?.0;
    for n in 0..orders {
        let id = format!("{}", first + n + 1);
        let command = PlaceOrder {
            customer: format!("customer-{}", n % 7),
            amount: 10 + n % 90,
        };
        repository.execute(&id, command).await?;
    }
    println!("placed {orders} orders");

    // Let the relay publish everything, then stop it.
    let head = store.head_position().await?;
    while store
        .load_checkpoint("shop-relay")
        .await?
        .is_none_or(|c| c.position() < head)
    {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let _ = stop.send(());
    let (_, result) = relay_task.await?;
    result?;
    println!("relayed up to position {head} to JetStream stream {STREAM}");
    Ok(())
}
