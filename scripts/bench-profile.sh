#!/usr/bin/env bash
# Profiles the PostgreSQL benches: the same durable throwaway cluster as scripts/bench.sh, with
# pg_stat_statements tracking nested statements (those inside the append function too) and
# function timing. Runs the scenarios selected by the arguments (substrings, as for
# scripts/bench.sh), then prints where the server's time went. See BENCHMARKS.md.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
source scripts/lib/pg.sh

cargo bench -p eventsource-bench --no-run
pg_start eventsource_bench shared_preload_libraries=pg_stat_statements pg_stat_statements.track=all \
    track_functions=all track_io_timing=on pg_stat_statements.track_planning=on ${BENCH_PG_SETTINGS:-}
psql() { "$PG_BIN/psql" -X -q -h 127.0.0.1 -p "$PG_PORT" -U postgres -d eventsource_bench "$@"; }
psql -c "CREATE EXTENSION pg_stat_statements"

BENCH_ROUNDS=${BENCH_ROUNDS:-3} cargo bench -q -p eventsource-bench --bench postgres -- "$@"

echo
echo "=== server time by statement (pg_stat_statements, nested statements included) ==="
psql -P pager=off -c "
SELECT calls, round(total_exec_time::numeric, 1) AS total_ms, plans, round(total_plan_time::numeric, 1) AS plan_ms,
       round(mean_exec_time::numeric, 3) AS mean_ms, rows,
       wal_records, wal_bytes, left(regexp_replace(query, '\s+', ' ', 'g'), 110) AS query
  FROM pg_stat_statements
 WHERE query !~* '^(CREATE|DROP|SHOW|SET|BEGIN|COMMIT)'
 ORDER BY total_exec_time DESC LIMIT 25"
echo "=== functions (track_functions) ==="
psql -P pager=off -c "SELECT schemaname, funcname, calls, round(total_time::numeric,1) AS total_ms, round(self_time::numeric,1) AS self_ms FROM pg_stat_user_functions ORDER BY total_time DESC"
echo "=== WAL and commits ==="
psql -P pager=off -c "SELECT wal_records, wal_bytes, wal_write, wal_sync, round(wal_sync_time::numeric,1) AS wal_sync_ms FROM pg_stat_wal"
psql -P pager=off -c "SELECT xact_commit, xact_rollback FROM pg_stat_database WHERE datname = current_database()"
