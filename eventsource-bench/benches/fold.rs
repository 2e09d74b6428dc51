//! Fold: the derive's generated `apply` dispatch against a hand-written `match`, over 1M events.
//! Prints criterion's figures, then the ratio of the medians (target ≤ 1.05, DESIGN §7).
#![allow(missing_docs)]

use std::hint::black_box;
use std::path::PathBuf;

use criterion::{Criterion, Throughput};
use eventsource_bench::fixture::{AccountEvent, nth_event};
use eventsource_bench::hand::{HandEvent, fold_generated, fold_hand_written};

const EVENTS: u64 = 1_000_000;
const GROUP: &str = "fold_1m_events";

fn main() {
    let generated: Vec<AccountEvent> = (0..EVENTS).map(nth_event).collect();
    let hand: Vec<HandEvent> = generated.iter().cloned().map(HandEvent::from).collect();

    let mut criterion = Criterion::default()
        .sample_size(30)
        .warm_up_time(std::time::Duration::from_secs(2))
        .measurement_time(std::time::Duration::from_secs(6))
        .configure_from_args();
    {
        let mut group = criterion.benchmark_group(GROUP);
        group.throughput(Throughput::Elements(EVENTS));
        group.bench_function("generated", |b| {
            b.iter(|| black_box(fold_generated(black_box(&generated))))
        });
        group.bench_function("hand_written", |b| {
            b.iter(|| black_box(fold_hand_written(black_box(&hand))))
        });
        group.finish();
    }
    criterion.final_summary();

    match (median_ns("generated"), median_ns("hand_written")) {
        (Some(generated), Some(hand)) => println!(
            "\nFOLD 1M events: generated {:.2} ms ({:.0} M events/s), hand-written match {:.2} ms \
             ({:.0} M events/s), ratio {:.3} (target <= 1.05: {})",
            generated / 1e6,
            EVENTS as f64 / generated * 1e3,
            hand / 1e6,
            EVENTS as f64 / hand * 1e3,
            generated / hand,
            if generated / hand <= 1.05 {
                "met"
            } else {
                "NOT met"
            },
        ),
        _ => {
            println!("\nFOLD: no criterion estimates found (run without a filter to get the ratio)")
        }
    }
}

/// Criterion's median estimate, in nanoseconds, of one benchmark of the group, read from where
/// criterion stores it (`$CRITERION_HOME`, else `$CARGO_TARGET_DIR/criterion`, else the
/// workspace's `target/criterion`).
fn median_ns(id: &str) -> Option<f64> {
    let home = std::env::var_os("CRITERION_HOME")
        .map(PathBuf::from)
        .or_else(|| {
            std::env::var_os("CARGO_TARGET_DIR").map(|d| PathBuf::from(d).join("criterion"))
        })
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/criterion"));
    let text =
        std::fs::read_to_string(home.join(GROUP).join(id).join("new/estimates.json")).ok()?;
    let estimates: serde_json::Value = serde_json::from_str(&text).ok()?;
    estimates["median"]["point_estimate"].as_f64()
}
