//! Fold: the derive's generated `apply` dispatch against a hand-written `match`, over 1M events:
//! a buffer of 1,000 events that stays in cache, folded 1,000 times over. (A vector of 1M
//! events is 56 MB: the loop is then bound by memory bandwidth, and the ratio moved between
//! runs with where each vector's pages landed, with identical machine code.) Prints criterion's
//! figures, then the ratio measured interleaved (target ≤ 1.05, DESIGN §7).
#![allow(missing_docs)]

use std::hint::black_box;
use std::time::Instant;

use criterion::{Criterion, Throughput};
use eventsource_bench::fixture::{AccountEvent, nth_event};
use eventsource_bench::hand::{HandEvent, fold_generated, fold_hand_written};
use eventsource_bench::measure::{criterion_median_ns, median, quantile};

const BUFFER: u64 = 1_000;
const PASSES: usize = 1_000;
const EVENTS: u64 = BUFFER * PASSES as u64;
const GROUP: &str = "fold_1m_events";
const INTERLEAVED_ROUNDS: usize = 101;

fn main() {
    let generated: Vec<AccountEvent> = (0..BUFFER).map(nth_event).collect();
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
            b.iter(|| black_box(fold_generated(black_box(&generated), PASSES)))
        });
        group.bench_function("hand_written", |b| {
            b.iter(|| black_box(fold_hand_written(black_box(&hand), PASSES)))
        });
        group.finish();
    }
    criterion.final_summary();

    // Criterion measures one function after the other; on a shared machine that can drift.
    // The ratio is also taken side by side: both folds in every round, in alternating order,
    // the median of the per-round ratios.
    let mut ratios = Vec::new();
    for round in 0..INTERLEAVED_ROUNDS {
        let time = |generated_first: bool| {
            let start = Instant::now();
            if generated_first {
                black_box(fold_generated(black_box(&generated), PASSES));
            } else {
                black_box(fold_hand_written(black_box(&hand), PASSES));
            }
            start.elapsed().as_secs_f64()
        };
        let (g, h) = if round % 2 == 0 {
            let g = time(true);
            (g, time(false))
        } else {
            let h = time(false);
            (time(true), h)
        };
        ratios.push(g / h);
    }
    let interleaved = median(&ratios);
    println!(
        "\nFOLD interleaved: generated / hand-written = {interleaved:.3} (median of {INTERLEAVED_ROUNDS} \
         rounds, interquartile {:.3}–{:.3}; target <= 1.05: {})",
        quantile(&ratios, 0.25),
        quantile(&ratios, 0.75),
        if interleaved <= 1.05 {
            "met"
        } else {
            "NOT met"
        }
    );

    match (
        criterion_median_ns(GROUP, "generated"),
        criterion_median_ns(GROUP, "hand_written"),
    ) {
        (Some(generated), Some(hand)) => println!(
            "FOLD criterion (one after the other): generated {:.2} ms ({:.0} M events/s), \
             hand-written match {:.2} ms ({:.0} M events/s), ratio {:.3}",
            generated / 1e6,
            EVENTS as f64 / generated * 1e3,
            hand / 1e6,
            EVENTS as f64 / hand * 1e3,
            generated / hand,
        ),
        _ => {
            println!("\nFOLD: no criterion estimates found (run without a filter to get the ratio)")
        }
    }
}
