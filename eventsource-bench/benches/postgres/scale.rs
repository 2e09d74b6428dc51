//! The scale scenario (issue 22): one store grown with the bulk import to `SCALE_EVENTS` events
//! (default 5,000,000), measured at 10,000 events and at full size, each figure beside raw SQL
//! doing the same work on the same tables: a command (load, decide, append 1), a load, a
//! catch-up (20,000 events from the middle of the log), a catch-up filtered to a 1 % event
//! name (the whole log), `status`, and `verify` against set-based SQL doing the same checks.
//!
//! Opt-in (`scripts/bench.sh scale [N]`): at 5M the store takes about 3.5 GB; the schema is
//! dropped at the end unless `SCALE_KEEP=1`.

use std::time::Instant;

use eventsource::postgres::PostgresStore;
use eventsource::prelude::*;
use eventsource::{Checkpoint, postgres::ImportEvent};
use eventsource::{LogFilter, NewEvent, RecordedEvent};
use eventsource_bench::fixture::{Account, Deposit, Opened, Withdrawn, nth_event};
use eventsource_bench::hand::{HandAccount, HandEvent};
use eventsource_bench::measure::{Contest, Table, Unit};
use serde_json::{Value, json};
use sqlx::{PgPool, Row};
use uuid::Uuid;

use crate::BoxError;

const SCHEMA: &str = "bench_scale";
/// Events per imported stream.
const PER_STREAM: u64 = 20;
/// Every this many imported events one is `account.flagged` (1 %).
const FLAGGED_EVERY: u64 = 100;
const FLAGGED: &str = "account.flagged";
/// Streams the command scenario works on, and the length of the loaded stream.
const COMMAND_STREAMS: u64 = 20;
const LOAD_LENGTH: u64 = 200;
const CATCH_UP: usize = 20_000;
const PAGE: usize = 500;

/// The scenario; `target` events in the end.
pub(crate) async fn scale(
    url: &str,
    pool: &PgPool,
    table: &mut Table,
    target: u64,
) -> Result<(), BoxError> {
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
        "DROP SCHEMA IF EXISTS {SCHEMA} CASCADE"
    )))
    .execute(pool)
    .await?;
    let store = PostgresStore::builder()
        .schema(SCHEMA)
        .max_connections(4)
        .connect(url)
        .await?;
    store.migrate().await?;
    let repo = Repository::<Account, _>::new(store.clone());
    for k in 0..COMMAND_STREAMS {
        repo.append(
            &format!("cmd{k}"),
            ExpectedVersion::NoStream,
            (0..10).map(nth_event),
        )
        .await?;
    }
    repo.append(
        "load",
        ExpectedVersion::NoStream,
        (0..LOAD_LENGTH).map(nth_event),
    )
    .await?;
    let mut grown = 0;
    let mut sizes = vec![10_000.min(target), target];
    sizes.dedup();
    for size in sizes {
        let start = Instant::now();
        let added = grow(&store, grown, size).await?;
        grown += added;
        let import_secs = start.elapsed().as_secs_f64();
        let start = Instant::now();
        // As autovacuum leaves an insert-only table (one statement each: VACUUM refuses to run
        // in a transaction block).
        for table in ["events", "streams"] {
            sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
                "VACUUM ANALYZE {SCHEMA}.{table}"
            )))
            .execute(pool)
            .await?;
        }
        println!(
            "SCALE: grew to {} events ({added} imported in {import_secs:.1} s, {:.0} events/s; VACUUM ANALYZE {:.1} s); {}",
            thousands(grown),
            added as f64 / import_secs.max(1e-9),
            start.elapsed().as_secs_f64(),
            footprint(pool).await?
        );
        let label = format!("at {} events", thousands(grown));
        measure(&store, &repo, pool, table, &label).await?;
    }
    if std::env::var("SCALE_KEEP").as_deref() != Ok("1") {
        store.pool().close().await;
        sqlx::raw_sql(sqlx::AssertSqlSafe(format!("DROP SCHEMA {SCHEMA} CASCADE")))
            .execute(pool)
            .await?;
    }
    Ok(())
}

/// Imports streams of `PER_STREAM` events until the import brought `to - from` more (whole
/// streams, so a little more); returns how many.
async fn grow(store: &PostgresStore, from: u64, to: u64) -> Result<u64, BoxError> {
    let mut added = 0;
    // One transaction per million events.
    while from + added < to {
        let mut import = store.begin_import().await?;
        let chunk_end = (from + added + 1_000_000).min(to);
        while from + added < chunk_end {
            let first = from + added;
            let stream = StreamId::from_raw(format!("account-s{}", first / PER_STREAM));
            for n in 0..PER_STREAM {
                let global = first + n;
                let event = if global % FLAGGED_EVERY == FLAGGED_EVERY - 1 {
                    NewEvent::new(FLAGGED, 1, json!({"reason": "audit", "by": "bench"}))
                } else {
                    NewEvent::encode(&nth_event(n))?
                };
                import
                    .push(ImportEvent {
                        stream: stream.clone(),
                        version: Version(n + 1),
                        event,
                    })
                    .await?;
            }
            added += PER_STREAM;
        }
        import.finish().await?;
    }
    Ok(added)
}

/// Bytes per event of the table and of each index.
async fn footprint(pool: &PgPool) -> Result<String, BoxError> {
    let rows = sqlx::query(
        "SELECT c.relname::text AS name, pg_relation_size(c.oid) AS bytes, \
                (SELECT count(*) FROM bench_scale.events) AS events \
           FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
          WHERE n.nspname = 'bench_scale' \
            AND (c.relname = 'events' OR c.oid IN \
                 (SELECT indexrelid FROM pg_index WHERE indrelid = 'bench_scale.events'::regclass)) \
          ORDER BY c.relname",
    )
    .fetch_all(pool)
    .await?;
    let mut parts = Vec::new();
    for row in &rows {
        let name: String = row.try_get("name")?;
        let bytes: i64 = row.try_get("bytes")?;
        let events: i64 = row.try_get("events")?;
        parts.push(format!("{name} {:.1}", bytes as f64 / events.max(1) as f64));
    }
    let toast: i64 = sqlx::query_scalar(
        "SELECT coalesce(pg_total_relation_size(reltoastrelid), 0) FROM pg_class \
          WHERE oid = 'bench_scale.events'::regclass",
    )
    .fetch_one(pool)
    .await?;
    parts.push(format!("toast {toast} bytes"));
    Ok(format!("bytes per event: {}", parts.join(", ")))
}

fn thousands(value: u64) -> String {
    let digits = value.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// Runs `framework` and `raw` `rounds` times each, interleaved (one warm-up round), and adds
/// the row; each call returns how many units of work it did.
macro_rules! contest {
    ($table:expr, $name:expr, $names:expr, $unit:expr, $rounds:expr, $framework:expr, $raw:expr) => {{
        let mut contest = Contest::new(&$names, 1);
        for round in 0..1 + $rounds {
            for who in contest.order(round) {
                let start = Instant::now();
                let units: u64 = if who == 0 { $framework } else { $raw };
                contest.record(round, who, units, start.elapsed());
            }
        }
        $table.add(&$name, &contest, $unit, None);
    }};
}

async fn measure(
    store: &PostgresStore,
    repo: &Repository<Account, PostgresStore>,
    pool: &PgPool,
    table: &mut Table,
    label: &str,
) -> Result<(), BoxError> {
    let ops = 30u64;
    contest!(
        table,
        format!("command (load 10+, decide, append 1) {label}"),
        [
            "Repository::execute",
            "raw SELECT + decode + fold + INSERT + head UPDATE"
        ],
        Unit::Millis,
        3,
        {
            for op in 0..ops {
                repo.execute(
                    &format!("cmd{}", op % COMMAND_STREAMS),
                    Deposit { amount: 5 },
                )
                .await?;
            }
            ops
        },
        {
            for op in 0..ops {
                raw_command(pool, &format!("account-cmd{}", op % COMMAND_STREAMS)).await?;
            }
            ops
        }
    );
    contest!(
        table,
        format!("load a {LOAD_LENGTH}-event stream {label}"),
        ["Repository::load", "raw SELECT + decode + fold"],
        Unit::Millis,
        5,
        {
            for _ in 0..10 {
                repo.load("load").await?;
            }
            10
        },
        {
            for _ in 0..10 {
                raw_fold(pool, "account-load").await?;
            }
            10
        }
    );
    // From the middle of the log.
    let middle = middle_checkpoint(store).await?;
    contest!(
        table,
        format!("catch-up, {CATCH_UP} events from mid-log {label}"),
        [
            "read_all pages of 500 + decode",
            "raw SELECT pages of 500 + decode"
        ],
        Unit::Micros,
        3,
        read_all(store, middle, &LogFilter::all(), CATCH_UP).await?,
        raw_read(pool, middle, None, CATCH_UP).await?
    );
    let mut flagged = LogFilter::all();
    flagged.names = vec![FLAGGED.to_owned()];
    contest!(
        table,
        format!("catch-up filtered to a 1 % name, whole log {label}"),
        [
            "read_all by name, pages of 500",
            "raw SELECT by name, pages of 500"
        ],
        Unit::Micros,
        3,
        read_all(store, Checkpoint::START, &flagged, usize::MAX).await?,
        raw_read(pool, Checkpoint::START, Some(FLAGGED), usize::MAX).await?
    );
    let admin = store.admin();
    contest!(
        table,
        format!("status {label}"),
        [
            "PostgresAdmin::status",
            "raw exact counts (events, streams, newest time)"
        ],
        Unit::Millis,
        5,
        {
            admin.status().await?;
            1
        },
        {
            raw_status(pool).await?;
            1
        }
    );
    contest!(
        table,
        format!("verify {label}"),
        ["PostgresAdmin::verify", "set-based SQL, same checks"],
        Unit::Millis,
        2,
        {
            let report = admin.verify().await?;
            if !report.is_ok() {
                return Err(format!("verify found problems: {report:?}").into());
            }
            1
        },
        {
            raw_verify(pool).await?;
            1
        }
    );
    Ok(())
}

async fn middle_checkpoint(store: &PostgresStore) -> Result<Checkpoint, BoxError> {
    let head = store.head_position().await?;
    Ok(store
        .admin()
        .checkpoint_from_position(eventsource::Position(head.0 / 2))
        .await?)
}

/// Reads up to `limit` events passing `filter` after `from`, decoding each payload; returns
/// how many.
async fn read_all(
    store: &PostgresStore,
    from: Checkpoint,
    filter: &LogFilter,
    limit: usize,
) -> Result<u64, BoxError> {
    let mut after = from;
    let mut read = 0usize;
    while read < limit {
        let page: Vec<RecordedEvent> = store.read_all(after, PAGE, filter).await?;
        let Some(last) = page.last() else { break };
        after = last.checkpoint;
        for event in &page {
            std::hint::black_box(decode(&event.name, &event.payload));
        }
        read += page.len();
    }
    Ok(read as u64)
}

async fn raw_read(
    pool: &PgPool,
    from: Checkpoint,
    name: Option<&str>,
    limit: usize,
) -> Result<u64, BoxError> {
    let (mut transaction, mut position) = (from.transaction() as i64, from.position().0 as i64);
    let mut read = 0usize;
    let sql = match name {
        None => {
            "SELECT transaction_id, position, name, payload FROM bench_scale.events \
              WHERE (transaction_id, position) > ($1, $2) \
              ORDER BY transaction_id, position LIMIT $3"
        }
        Some(_) => {
            "SELECT transaction_id, position, name, payload FROM bench_scale.events \
              WHERE name = $4 AND (transaction_id, position) > ($1, $2) \
              ORDER BY transaction_id, position LIMIT $3"
        }
    };
    while read < limit {
        let rows = sqlx::query(sql)
            .bind(transaction)
            .bind(position)
            .bind(PAGE as i64)
            .bind(name.unwrap_or(""))
            .fetch_all(pool)
            .await?;
        let Some(last) = rows.last() else { break };
        transaction = last.try_get("transaction_id")?;
        position = last.try_get("position")?;
        for row in &rows {
            let name: &str = row.try_get("name")?;
            let payload: Value = row.try_get("payload")?;
            std::hint::black_box(decode(name, &payload));
        }
        read += rows.len();
    }
    Ok(read as u64)
}

/// What a projection would decode: the event, or nothing for a name it does not know.
fn decode(name: &str, payload: &Value) -> Option<HandEvent> {
    Some(match name {
        "account.opened" => HandEvent::Opened(Opened::deserialize(payload).ok()?),
        "account.deposited" => {
            HandEvent::Deposited(eventsource_bench::fixture::Deposited::deserialize(payload).ok()?)
        }
        "account.withdrawn" => HandEvent::Withdrawn(Withdrawn::deserialize(payload).ok()?),
        _ => return None,
    })
}

async fn raw_fold(pool: &PgPool, stream: &str) -> Result<(HandAccount, i64), BoxError> {
    let rows = sqlx::query(
        "SELECT version, name, payload FROM bench_scale.events \
          WHERE stream_id = $1 ORDER BY version",
    )
    .bind(stream)
    .fetch_all(pool)
    .await?;
    let mut state = HandAccount::default();
    let mut version = 0;
    for row in &rows {
        let name: &str = row.try_get("name")?;
        let payload: Value = row.try_get("payload")?;
        if let Some(event) = decode(name, &payload) {
            state.apply(&event);
        }
        version = row.try_get("version")?;
    }
    Ok((state, version))
}

/// Load, fold, then the event and the head move in one statement, as the store writes them.
async fn raw_command(pool: &PgPool, stream: &str) -> Result<(), BoxError> {
    let (state, version) = raw_fold(pool, stream).await?;
    if state.owner.is_none() {
        return Err("rejected".into());
    }
    let event = NewEvent::encode(&nth_event(1))?;
    sqlx::query(
        "WITH head AS (UPDATE bench_scale.streams SET version = $2 \
                        WHERE stream_id = $1 AND version = $2 - 1 RETURNING stream_id) \
         INSERT INTO bench_scale.events \
             (stream_id, version, event_id, name, schema_version, payload, metadata) \
         SELECT stream_id, $2, $3, $4, $5, $6, '{}'::jsonb FROM head",
    )
    .bind(stream)
    .bind(version + 1)
    .bind(Uuid::now_v7())
    .bind(&event.name)
    .bind(i64::from(event.schema_version))
    .bind(&event.payload)
    .execute(pool)
    .await?;
    Ok(())
}

/// What `status` computed before it was bounded: exact counts and the newest time.
async fn raw_status(pool: &PgPool) -> Result<(), BoxError> {
    sqlx::query(
        "SELECT (SELECT count(*) FROM bench_scale.events), \
                (SELECT count(*) FROM bench_scale.streams), \
                (SELECT max(recorded_at) FROM bench_scale.events)",
    )
    .fetch_one(pool)
    .await?;
    Ok(())
}

/// `verify`'s checks as set-based SQL (the metadata only checked to be an object, not decoded).
pub(crate) async fn raw_verify(pool: &PgPool) -> Result<(), BoxError> {
    let problems: i64 = sqlx::query_scalar(
        "SELECT (SELECT count(*) FILTER (WHERE version <> prev + 1 OR btrim(name) = '' \
                                           OR schema_version NOT BETWEEN 1 AND 4294967295 \
                                           OR jsonb_typeof(metadata) <> 'object') \
                   FROM (SELECT version, name, schema_version, metadata, \
                                lag(version, 1, 0::bigint) \
                                    OVER (PARTITION BY stream_id ORDER BY version) AS prev \
                           FROM bench_scale.events) e) \
              + (SELECT count(*) FROM bench_scale.streams h \
                   FULL JOIN (SELECT stream_id, max(version) AS last FROM bench_scale.events \
                               GROUP BY stream_id) l USING (stream_id) \
                  WHERE h.version IS DISTINCT FROM l.last) \
              + (SELECT count(*) FROM (SELECT position FROM bench_scale.events \
                                        GROUP BY position HAVING count(*) > 1) p) \
              + (SELECT count(*) FROM (SELECT event_id FROM bench_scale.events \
                                        GROUP BY event_id HAVING count(*) > 1) i)",
    )
    .fetch_one(pool)
    .await?;
    let warnings: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM bench_scale.events WHERE jsonb_typeof(payload) <> 'object'",
    )
    .fetch_one(pool)
    .await?;
    std::hint::black_box((problems, warnings));
    Ok(())
}
