#!/usr/bin/env bash
# Runs the benchmark suite and prints every figure beside its raw baseline, as ratios:
#   fold (criterion), decode (criterion), then the PostgreSQL benches (append, command, load)
#   against a throwaway cluster with PostgreSQL's durable defaults (fsync on,
#   synchronous_commit on), stopped and deleted on exit.
# Takes 2-4 minutes after the build (more on a slow disk); see BENCHMARKS.md. The whole output is kept in
# target/bench.log. Extra arguments select PostgreSQL scenarios by substring, e.g.
#   scripts/bench.sh "append 1 event"
# and BENCH_ROUNDS sets their measured rounds (default 15).
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
source scripts/lib/pg.sh
source scripts/lib/nats.sh

export CRITERION_HOME="$PWD/target/criterion"
LOG=target/bench.log
mkdir -p target

# Build everything first, so the compiler does not compete with the measurements.
cargo bench -p eventsource-bench --no-run

pg_start eventsource_bench
nats_start
{
    echo "scripts/bench.sh: PostgreSQL $(pg_version) on $DATABASE_URL (durable defaults); $(nproc) cores; $(date -u +%FT%TZ)"
    if [[ $# -eq 0 ]]; then
        cargo bench -q -p eventsource-bench --bench fold
        cargo bench -q -p eventsource-bench --bench decode
        cargo bench -q -p eventsource-bench --bench instrument
    fi
    cargo bench -q -p eventsource-bench --bench postgres -- "$@"
    if [[ $# -eq 0 ]]; then
        cargo bench -q -p eventsource-bench --bench nats
    fi
} 2>&1 | tee "$LOG"

echo
echo "=== summary (full output in $LOG) ==="
grep -E '^(scripts/bench.sh:|FOLD|DECODE|INSTRUMENT|COMMITS|PostgreSQL:|NATS:|\|)' "$LOG"
