#!/usr/bin/env bash
# Runs the whole test suite (memory and PostgreSQL) against a throwaway PostgreSQL cluster.
#
# The cluster lives in a temporary directory, listens on a free port on 127.0.0.1 only (and on
# a Unix socket inside that directory), trusts local connections, and is stopped and deleted on
# exit, also when a test fails. Extra arguments go to `cargo test`, e.g.
#   scripts/test.sh --test postgres_conformance
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

# A directory holding initdb, pg_ctl and createdb: the one pg_ctl on PATH really lives in (it is
# often a symlink into the versioned directory), else the newest /usr/lib/postgresql/*/bin.
find_pg_bin() {
    local dir candidates=()
    if command -v pg_ctl >/dev/null 2>&1; then
        candidates+=("$(dirname "$(readlink -f "$(command -v pg_ctl)")")")
    fi
    for dir in $(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V -r); do
        candidates+=("$dir")
    done
    for dir in "${candidates[@]}"; do
        if [[ -x "$dir/initdb" && -x "$dir/pg_ctl" && -x "$dir/createdb" ]]; then
            echo "$dir"
            return
        fi
    done
    echo "scripts/test.sh: no PostgreSQL binaries (initdb, pg_ctl, createdb) on PATH or under /usr/lib/postgresql/*/bin" >&2
    exit 1
}

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()' 2>/dev/null \
        || echo $((20000 + RANDOM % 20000))
}

PG_BIN="$(find_pg_bin)"
PG_DIR="$(mktemp -d -t eventsource-pg.XXXXXX)"
PG_DATA="$PG_DIR/data"
PG_PORT="$(free_port)"

# PostgreSQL refuses to run as root: run its tools as the `postgres` user then.
as_pg=()
if [[ "$(id -u)" == 0 ]]; then
    as_pg=(runuser -u postgres --)
    chown postgres: "$PG_DIR"
fi
chmod 700 "$PG_DIR"

stop_cluster() {
    local status=$?
    if [[ -f "$PG_DATA/postmaster.pid" ]]; then
        "${as_pg[@]}" "$PG_BIN/pg_ctl" -D "$PG_DATA" -m fast -w stop >/dev/null 2>&1 || true
    fi
    rm -rf "$PG_DIR"
    exit "$status"
}
trap stop_cluster EXIT INT TERM

"${as_pg[@]}" "$PG_BIN/initdb" -D "$PG_DATA" -U postgres --auth=trust -E UTF8 --locale=C >"$PG_DIR/initdb.log" 2>&1 \
    || { cat "$PG_DIR/initdb.log" >&2; exit 1; }
"${as_pg[@]}" "$PG_BIN/pg_ctl" -D "$PG_DATA" -l "$PG_DIR/server.log" \
    -o "-p $PG_PORT -k $PG_DIR -c listen_addresses=127.0.0.1 -c max_connections=200 -c fsync=off" -w start >/dev/null \
    || { cat "$PG_DIR/server.log" >&2; exit 1; }
"${as_pg[@]}" "$PG_BIN/createdb" -h 127.0.0.1 -p "$PG_PORT" -U postgres eventsource_test

export DATABASE_URL="postgres://postgres@127.0.0.1:$PG_PORT/eventsource_test"
echo "scripts/test.sh: PostgreSQL $("$PG_BIN/pg_ctl" --version | awk '{print $3}') on $DATABASE_URL"

cargo test --workspace --all-features "$@"

# The example, on PostgreSQL this time (the README's first command runs it in memory).
RUST_LOG=warn cargo run --quiet --features postgres --example bank >/dev/null
echo "scripts/test.sh: examples/bank ran on PostgreSQL"
