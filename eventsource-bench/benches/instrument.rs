//! The cost of the instrumentation with no tracing subscriber and no metrics recorder
//! installed: the spans and metric calls one command makes, alone, beside the cheapest command
//! there is (a warm aggregate on the in-memory store, no I/O). A PostgreSQL append takes
//! about 0.4 ms, so the figure against it is smaller still.
#![allow(missing_docs, clippy::expect_used)]

use std::hint::black_box;
use std::num::NonZeroUsize;

use criterion::Criterion;
use eventsource::observe::names;
use eventsource::{MemoryStore, Repository};
use eventsource_bench::fixture::{Account, Deposit};
use eventsource_bench::measure::criterion_median_ns;
use tracing::field::Empty;

const GROUP: &str = "instrumentation";

/// The span and metric calls of one warm command: the execute span (6 fields, 3 recorded),
/// the append span (6 fields, 2 recorded), the latency histogram and the events counter.
fn instrumentation_of_one_command(stream: &str) {
    let execute = tracing::info_span!(
        "eventsource.execute",
        aggregate = "account",
        stream = %stream,
        command = "Deposit",
        version = Empty,
        retries = Empty,
        outcome = Empty,
    );
    let entered = execute.enter();
    let append = tracing::debug_span!(
        "eventsource.append",
        store = "memory",
        stream = %stream,
        batch_size = 1usize,
        expected = "version 7",
        outcome = Empty,
        version = Empty,
    );
    drop(append.enter());
    append.record("outcome", "ok");
    append.record("version", 8u64);
    metrics::histogram!(names::APPEND_SECONDS, "store" => "memory", "outcome" => "ok").record(1e-6);
    metrics::counter!(names::EVENTS_APPENDED, "store" => "memory").increment(1);
    drop(entered);
    execute.record("version", 8u64);
    execute.record("retries", 0u32);
    execute.record("outcome", "ok");
}

fn main() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("a tokio runtime");
    let repository = Repository::<Account, _>::new(MemoryStore::new())
        .with_cache(NonZeroUsize::new(16).expect("16 is not zero"));
    runtime
        .block_on(repository.execute("ada", Deposit { amount: 1 }))
        .expect("the first deposit");

    let mut criterion = Criterion::default()
        .sample_size(30)
        .warm_up_time(std::time::Duration::from_secs(1))
        .measurement_time(std::time::Duration::from_secs(3))
        .configure_from_args();
    let mut group = criterion.benchmark_group(GROUP);
    group.bench_function("warm_command_in_memory", |b| {
        b.iter(|| {
            black_box(
                runtime
                    .block_on(repository.execute("ada", Deposit { amount: 1 }))
                    .is_ok(),
            )
        })
    });
    group.bench_function("its_instrumentation_alone", |b| {
        b.iter(|| instrumentation_of_one_command(black_box("account-ada")))
    });
    group.finish();
    criterion.final_summary();

    if let (Some(command), Some(instrumentation)) = (
        criterion_median_ns(GROUP, "warm_command_in_memory"),
        criterion_median_ns(GROUP, "its_instrumentation_alone"),
    ) {
        println!(
            "\nINSTRUMENT no subscriber, no recorder: {instrumentation:.0} ns per command, \
             {:.1}% of a warm in-memory command ({command:.0} ns), {:.3}% of a 0.4 ms PostgreSQL append",
            instrumentation / command * 100.0,
            instrumentation / 400_000.0 * 100.0
        );
    }
}
