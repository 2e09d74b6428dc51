//! Fold: the derive's generated `apply` dispatch against a hand-written `match`, over 1M events.
//! Prints criterion's figures, then the ratio of the medians (target ≤ 1.05, DESIGN §7).
#![allow(missing_docs)]

use std::hint::black_box;

use criterion::{Criterion, Throughput};
use eventsource_bench::fixture::{AccountEvent, nth_event};
use eventsource_bench::hand::{HandEvent, fold_generated, fold_hand_written};
use eventsource_bench::measure::criterion_median_ns;

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

    match (
        criterion_median_ns(GROUP, "generated"),
        criterion_median_ns(GROUP, "hand_written"),
    ) {
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
