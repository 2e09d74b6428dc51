#!/usr/bin/env bash
# Runs the whole test suite (memory, PostgreSQL, NATS) against a throwaway PostgreSQL cluster
# and a throwaway nats-server with JetStream (scripts/lib/nats.sh; installed if missing).
#
# The cluster lives in a temporary directory, listens on a free port on 127.0.0.1 only (and on
# a Unix socket inside that directory), trusts local connections, and is stopped and deleted on
# exit, also when a test fails. Extra arguments go to `cargo test`, e.g.
#   scripts/test.sh --test postgres_conformance
# After the tests it builds the README's quick start as a new crate (scripts/quickstart.sh) and
# runs the bank and enrolment examples on PostgreSQL.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
source scripts/lib/pg.sh
source scripts/lib/nats.sh

# Durability is not under test here: fsync=off makes the suite faster.
# A second, fresh cluster for the backup-and-restore drill (tests/postgres_restore.rs): stores
# are dumped from one cluster and restored into the other, both ways. Started first, so that
# DATABASE_URL, PG_DIR and PG_DATA describe the main cluster.
pg_start eventsource_drill fsync=off
RESTORE_CLUSTER_URL="$DATABASE_URL"
# pg_dump and pg_restore live beside initdb; the drill runs them.
PG_DUMP_BIN="$PG_BIN"
export RESTORE_CLUSTER_URL PG_DUMP_BIN
pg_start eventsource_test max_connections=200 fsync=off
echo "scripts/test.sh: PostgreSQL $(pg_version) on $DATABASE_URL (restore drill: $RESTORE_CLUSTER_URL)"
nats_start
echo "scripts/test.sh: nats-server $(nats_version) with JetStream on $NATS_URL"

cargo test --workspace --all-features "$@"

# The README's quick start, built and run as a new crate with the README's dependencies.
scripts/quickstart.sh

# The example, on PostgreSQL this time (the README's first command runs it in memory).
RUST_LOG=warn cargo run --quiet --features postgres --example bank >/dev/null
echo "scripts/test.sh: examples/bank ran on PostgreSQL"
# The decision across streams (issue 18), in memory and on PostgreSQL: it asserts that the
# capacity and the per-student limit held.
RUST_LOG=warn cargo run --quiet --example enrolment >/dev/null
RUST_LOG=warn cargo run --quiet --features postgres --example enrolment >/dev/null
echo "scripts/test.sh: examples/enrolment ran in memory and on PostgreSQL"

# Reactions in memory: order, payment, shipment, and a payment timeout (issue 21).
RUST_LOG=warn cargo run --quiet --example orders >/dev/null
echo "scripts/test.sh: examples/orders ran"

# The two NATS services of the README: the writer places orders and relays them, the reader
# applies them into its own schema and stops once it has seen them all.
RUST_LOG=warn cargo run --quiet --features nats,postgres --example nats_writer -- 200 >/dev/null
RUST_LOG=warn timeout 300 cargo run --quiet --features nats,postgres --example nats_reader -- 200 >/dev/null
echo "scripts/test.sh: examples/nats_writer and nats_reader ran on PostgreSQL and NATS"
