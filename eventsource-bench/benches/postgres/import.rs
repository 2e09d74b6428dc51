//! Bulk import: `PostgresStore::import` (validation, stream heads, COPY in batches, one
//! transaction) against a raw `COPY` of the same rows into a table like the store's `events`
//! (same columns, constraints and indexes), in one transaction, with no validation and no heads.

use std::time::Instant;

use eventsource::postgres::{ImportEvent, PostgresStore};
use eventsource::{NewEvent, StreamId, Version};
use eventsource_bench::fixture::nth_event;
use eventsource_bench::measure::{Contest, Table, Unit};
use sqlx::PgPool;

use crate::{BoxError, WARM_UP};

const SCHEMA: &str = "bench_import";
const RAW_SCHEMA: &str = "bench_import_raw";
/// Streams per round, and events per stream.
const STREAMS: u64 = 2_000;
const PER_STREAM: u64 = 25;

/// The store's `events` table (migrations 1 and 4), without the stream heads.
pub(crate) fn raw_events_table(schema: &str) -> String {
    format!(
        "CREATE SCHEMA {schema};
         CREATE TABLE {schema}.events (
             position bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
             transaction_id bigint NOT NULL,
             stream_id text NOT NULL,
             category text NOT NULL GENERATED ALWAYS AS (split_part(stream_id, '-', 1)) STORED,
             version bigint NOT NULL CHECK (version > 0),
             event_id uuid NOT NULL,
             name text NOT NULL,
             schema_version bigint NOT NULL,
             payload jsonb NOT NULL,
             metadata jsonb NOT NULL,
             recorded_at timestamptz NOT NULL DEFAULT now(),
             CONSTRAINT events_event_id_unique UNIQUE (event_id),
             CONSTRAINT events_stream_version_unique UNIQUE (stream_id, version)
         );
         CREATE INDEX events_checkpoint_idx ON {schema}.events (transaction_id, position);
         CREATE INDEX events_category_checkpoint_idx ON {schema}.events (category, transaction_id, position);
         CREATE INDEX events_name_checkpoint_idx ON {schema}.events (name, transaction_id, position);"
    )
}

/// `streams` streams of `per_stream` events each, stream after stream, named `<prefix>-<n>`.
pub(crate) fn history(prefix: &str, streams: u64, per_stream: u64) -> Vec<ImportEvent> {
    let mut events = Vec::with_capacity((streams * per_stream) as usize);
    for s in 0..streams {
        let stream = StreamId::from_raw(format!("{prefix}-{s}"));
        for n in 0..per_stream {
            events.push(ImportEvent {
                stream: stream.clone(),
                version: Version(n + 1),
                event: NewEvent::encode(&nth_event(n)).expect("events encode"),
            });
        }
    }
    events
}

/// The rows of `events` COPYed by hand into `schema`.events, in one transaction: the physical
/// limit of an import (text format, sent in chunks of about 1 MiB).
pub(crate) async fn raw_copy(
    pool: &PgPool,
    schema: &str,
    events: &[ImportEvent],
) -> Result<(), BoxError> {
    use std::io::Write;
    let mut tx = pool.begin().await?;
    let transaction_id: i64 = sqlx::query_scalar("SELECT pg_current_xact_id()::text::bigint")
        .fetch_one(&mut *tx)
        .await?;
    let mut copy = tx
        .copy_in_raw(&format!(
            "COPY {schema}.events (transaction_id, stream_id, version, event_id, name, \
             schema_version, payload, metadata) FROM STDIN"
        ))
        .await?;
    let mut buffer = Vec::with_capacity(1 << 21);
    for e in events {
        write!(buffer, "{transaction_id}\t")?;
        escape(&mut buffer, e.stream.as_str().as_bytes());
        write!(buffer, "\t{}\t{}\t", e.version.0, e.event.event_id)?;
        escape(&mut buffer, e.event.name.as_bytes());
        write!(buffer, "\t{}\t", e.event.schema_version)?;
        escape(&mut buffer, &serde_json::to_vec(&e.event.payload)?);
        buffer.push(b'\t');
        escape(&mut buffer, &serde_json::to_vec(&e.event.metadata)?);
        buffer.push(b'\n');
        if buffer.len() >= 1 << 20 {
            copy.send(buffer.as_slice()).await?;
            buffer.clear();
        }
    }
    copy.send(buffer.as_slice()).await?;
    copy.finish().await?;
    tx.commit().await?;
    Ok(())
}

fn escape(buffer: &mut Vec<u8>, text: &[u8]) {
    for &b in text {
        match b {
            b'\\' => buffer.extend_from_slice(b"\\\\"),
            b'\n' => buffer.extend_from_slice(b"\\n"),
            b'\r' => buffer.extend_from_slice(b"\\r"),
            b'\t' => buffer.extend_from_slice(b"\\t"),
            b => buffer.push(b),
        }
    }
}

/// Each round imports `STREAMS` new streams of `PER_STREAM` events both ways.
pub(crate) async fn import(
    url: &str,
    pool: &PgPool,
    table: &mut Table,
    rounds: usize,
) -> Result<(), BoxError> {
    for schema in [SCHEMA, RAW_SCHEMA] {
        sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
            "DROP SCHEMA IF EXISTS {schema} CASCADE"
        )))
        .execute(pool)
        .await?;
    }
    sqlx::raw_sql(sqlx::AssertSqlSafe(raw_events_table(RAW_SCHEMA)))
        .execute(pool)
        .await?;
    let store = PostgresStore::builder()
        .schema(SCHEMA)
        .max_connections(4)
        .connect(url)
        .await?;
    store.migrate().await?;
    let mut contest = Contest::new(
        &[
            "PostgresStore::import (validated, heads, COPY batches of 10,000)",
            "raw COPY, same rows, same table and indexes",
        ],
        WARM_UP,
    );
    for round in 0..WARM_UP + rounds {
        let events = history(&format!("account-r{round}"), STREAMS, PER_STREAM);
        let count = events.len() as u64;
        for who in contest.order(round) {
            let events = events.clone();
            let start = Instant::now();
            if who == 0 {
                store.import(events).await?;
            } else {
                raw_copy(pool, RAW_SCHEMA, &events).await?;
            }
            contest.record(round, who, count, start.elapsed());
        }
    }
    // ≥ 0.8× the raw throughput: a time ratio of at most 1.25.
    table.add(
        &format!("import {} events per round", STREAMS * PER_STREAM),
        &contest,
        Unit::PerSecond("events"),
        Some((1, 1.25)),
    );
    Ok(())
}
