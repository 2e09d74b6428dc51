//! Decode: a stored row (a `RecordedEvent`, whose JSON payload the driver has parsed) to the
//! current event type through the framework's `decode_event`, with no upcast (the row is at the
//! current version 3) and through the two-step chain v1 -> v2 -> v3; beside a hand-written
//! `serde_json` decode of the same payloads. The same rows are also decoded as the variant of an
//! event enum (`#[derive(EventEnum)]`), against the same baselines.
#![allow(missing_docs)]

use std::hint::black_box;

use criterion::{Criterion, Throughput};
use eventsource::{
    Checkpoint, EventEnum, Metadata, Position, RecordedEvent, StreamId, Version, decode_event,
};
use eventsource_bench::fixture::{
    Account, AccountEvent, Deposited, DepositedV1, DepositedV2, LedgerEvent,
};
use eventsource_bench::measure::{Contest, criterion_median_ns, median, quantile};
use serde::Deserialize;
use serde_json::{Value, json};

const ROWS: u64 = 10_000;
const GROUP: &str = "decode_10k_rows";
/// Rounds of the side-by-side comparison (the first few are warm-up).
const ROUNDS: usize = 40;
const WARM_UP: usize = 4;

fn row(n: u64, schema_version: u32, payload: Value) -> RecordedEvent {
    RecordedEvent {
        event_id: uuid::Uuid::now_v7(),
        stream_id: StreamId::new("account", "ada"),
        version: Version(n + 1),
        position: Position(n + 1),
        checkpoint: Checkpoint::from_parts(1, n + 1),
        name: "account.deposited".to_owned(),
        schema_version,
        payload,
        metadata: Metadata::default(),
        recorded_at: chrono::Utc::now(),
    }
}

fn main() {
    let current: Vec<RecordedEvent> = (0..ROWS)
        .map(|n| {
            row(
                n,
                3,
                json!({"amount": n, "currency": "EUR", "memo": "salary"}),
            )
        })
        .collect();
    let v1: Vec<RecordedEvent> = (0..ROWS).map(|n| row(n, 1, json!({"amount": n}))).collect();
    let mut criterion = Criterion::default()
        .sample_size(30)
        .warm_up_time(std::time::Duration::from_secs(1))
        .measurement_time(std::time::Duration::from_secs(4))
        .configure_from_args();
    let mut group = criterion.benchmark_group(GROUP);
    group.throughput(Throughput::Elements(ROWS));
    group.bench_function("framework_no_upcast", |b| {
        b.iter(|| {
            for record in black_box(&current) {
                black_box(decode_event::<Account>(record).ok());
            }
        })
    });
    group.bench_function("hand_written_serde", |b| {
        b.iter(|| {
            for record in black_box(&current) {
                black_box(Deposited::deserialize(&record.payload).ok());
            }
        })
    });
    group.bench_function("framework_2_step_upcast", |b| {
        b.iter(|| {
            for record in black_box(&v1) {
                black_box(decode_event::<Account>(record).ok());
            }
        })
    });
    group.bench_function("hand_written_serde_2_step", |b| {
        b.iter(|| {
            for record in black_box(&v1) {
                let event = DepositedV1::deserialize(&record.payload)
                    .ok()
                    .map(|v1| Deposited::from(DepositedV2::from(v1)));
                black_box(event);
            }
        })
    });
    group.bench_function("event_enum_no_upcast", |b| {
        b.iter(|| {
            for record in black_box(&current) {
                let event =
                    LedgerEvent::decode(&record.name, record.schema_version, &record.payload);
                black_box(event.ok());
            }
        })
    });
    group.bench_function("event_enum_2_step_upcast", |b| {
        b.iter(|| {
            for record in black_box(&v1) {
                let event =
                    LedgerEvent::decode(&record.name, record.schema_version, &record.payload);
                black_box(event.ok());
            }
        })
    });
    group.finish();
    criterion.final_summary();

    // Criterion measures one function after the other; on a shared machine that drifts. The
    // ratios are also taken side by side: every contestant in every round, in rotating order,
    // the median of the per-round ratios to the hand-written decode.
    type Decode = fn(&RecordedEvent) -> bool;
    // Both through `EventEnum::decode`: the generated `AccountEvent` over the struct events,
    // and the derived `LedgerEvent`.
    let struct_events: Decode =
        |r| AccountEvent::decode(&r.name, r.schema_version, &r.payload).is_ok();
    let event_enum: Decode = |r| LedgerEvent::decode(&r.name, r.schema_version, &r.payload).is_ok();
    let by_hand: Decode = |r| Deposited::deserialize(&r.payload).is_ok();
    let by_hand_2_step: Decode = |r| {
        DepositedV1::deserialize(&r.payload)
            .map(|v1| Deposited::from(DepositedV2::from(v1)))
            .is_ok()
    };
    println!();
    for (what, rows, hand) in [
        ("no upcast (v3)", &current, by_hand),
        ("2-step upcast (v1 -> v3)", &v1, by_hand_2_step),
    ] {
        let contestants = [event_enum, struct_events, hand];
        let mut contest = Contest::new(&["event enum", "struct events", "by hand"], WARM_UP);
        for round in 0..ROUNDS {
            for who in contest.order(round) {
                let decode = contestants[who];
                let start = std::time::Instant::now();
                for record in rows {
                    black_box(decode(black_box(record)));
                }
                contest.record(round, who, ROWS, start.elapsed());
            }
        }
        for (who, name) in [(0, "event enum"), (1, "struct events")] {
            let ratios = contest.paired_ratios(who, 2);
            println!(
                "DECODE interleaved, {what}: {name} / hand-written serde = {:.2} (median of {} rounds, interquartile {:.2}-{:.2}; {:.2} M events/s)",
                median(&ratios),
                ratios.len(),
                quantile(&ratios, 0.25),
                quantile(&ratios, 0.75),
                1e-6 / contest.median(who),
            );
        }
    }

    println!();
    for (framework, baseline, what) in [
        (
            "framework_no_upcast",
            "hand_written_serde",
            "no upcast (v3)",
        ),
        (
            "framework_2_step_upcast",
            "hand_written_serde_2_step",
            "2-step upcast (v1 -> v3)",
        ),
        (
            "event_enum_no_upcast",
            "hand_written_serde",
            "event enum, no upcast (v3)",
        ),
        (
            "event_enum_2_step_upcast",
            "hand_written_serde_2_step",
            "event enum, 2-step upcast (v1 -> v3)",
        ),
    ] {
        if let (Some(f), Some(b)) = (
            criterion_median_ns(GROUP, framework),
            criterion_median_ns(GROUP, baseline),
        ) {
            println!(
                "DECODE {what}: framework {:.2} M events/s, hand-written serde {:.2} M events/s, \
                 ratio {:.2}",
                ROWS as f64 / f * 1e3,
                ROWS as f64 / b * 1e3,
                f / b
            );
        }
    }
}
