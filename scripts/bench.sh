#!/usr/bin/env bash
# Runs the benchmark suite and prints every figure beside its raw baseline, as ratios:
#   fold (criterion), decode (criterion), then the PostgreSQL benches (append, command, load)
#   against a throwaway cluster with PostgreSQL's durable defaults (fsync on,
#   synchronous_commit on), stopped and deleted on exit.
# Takes 2-4 minutes after the build (more on a slow disk); see BENCHMARKS.md. The whole output is kept in
# target/bench.log. Extra arguments select PostgreSQL scenarios by substring, e.g.
#   scripts/bench.sh "append 1 event"
# and BENCH_ROUNDS sets their measured rounds (default 15); BENCH_PG_SETTINGS (below) starts
# the cluster with other settings.
#
# The scale scenario is opt-in (issue 22):
#   scripts/bench.sh scale [N]
# grows one store to N events (default 5,000,000; at 5M it takes about 3.5 GB of disk and
# 10-15 minutes) with the bulk import, then measures command, load, catch-up, filtered
# catch-up, status and verify at 10,000 events and at N, each beside raw SQL.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
source scripts/lib/pg.sh
source scripts/lib/nats.sh

export CRITERION_HOME="$PWD/target/criterion"
LOG=target/bench.log
mkdir -p target

# Build everything first, so the compiler does not compete with the measurements.
cargo bench -p eventsource-bench --no-run

SCALE=0
if [[ "${1:-}" == "scale" ]]; then
    SCALE=1
    export SCALE_EVENTS="${2:-5000000}"
    set -- scale
fi

# BENCH_PG_SETTINGS="synchronous_commit=off ..." starts the cluster with other settings, e.g. to
# take the disk's flush out of the figures and see what the client and the server's CPU cost
# (the figures are then not the durable ones BENCHMARKS.md reports as such).
# shellcheck disable=SC2086
pg_start eventsource_bench ${BENCH_PG_SETTINGS:-}
if [[ $SCALE -eq 0 ]]; then
    nats_start
fi
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
grep -E '^(scripts/bench.sh:|FOLD|DECODE|INSTRUMENT|COMMITS|SCALE|PostgreSQL:|NATS:|\|)' "$LOG"
