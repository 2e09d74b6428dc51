# A throwaway PostgreSQL cluster, shared by scripts/test.sh and scripts/bench.sh. Source it,
# then call `pg_start NAME [extra postgres -c settings...]`; it sets PG_BIN, PG_DIR, PG_DATA,
# PG_PORT and DATABASE_URL (database NAME), exports all but PG_PORT (tests that restart the
# server use PG_BIN, PG_DIR and PG_DATA), and installs a trap that stops the server and deletes
# its directory on exit, also on failure.
#
# The cluster lives in a temporary directory, listens on a free port on 127.0.0.1 only (and on
# a Unix socket inside that directory) and trusts local connections. PostgreSQL refuses to run
# as root: its tools then run as the `postgres` user.

# A directory holding initdb, pg_ctl and createdb: the one pg_ctl on PATH really lives in (it is
# often a symlink into the versioned directory), else the newest /usr/lib/postgresql/*/bin.
pg_find_bin() {
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
    echo "$PG_SCRIPT: no PostgreSQL binaries (initdb, pg_ctl, createdb) on PATH or under /usr/lib/postgresql/*/bin" >&2
    exit 1
}

pg_free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()' 2>/dev/null \
        || echo $((20000 + RANDOM % 20000))
}

# Every cluster pg_start started (their directories), stopped and deleted by pg_stop.
PG_CLUSTERS=()

# pg_stop [STATUS]: stops and deletes every cluster, then exits with STATUS (default: the status
# the script ended with).
pg_stop() {
    local status=${1:-$?} dir
    for dir in "${PG_CLUSTERS[@]}"; do
        if [[ -f "$dir/data/postmaster.pid" ]]; then
            "${as_pg[@]}" "$PG_BIN/pg_ctl" -D "$dir/data" -m fast -w stop >/dev/null 2>&1 || true
        fi
        rm -rf "$dir"
    done
    exit "$status"
}

# pg_start DATABASE [SETTING=VALUE...]: each setting is passed to the server as `-c SETTING=VALUE`.
# May be called several times (e.g. the restore drill's second cluster): the variables then
# describe the last cluster started, and the trap stops them all.
pg_start() {
    local database=$1 setting options
    shift
    PG_SCRIPT=${PG_SCRIPT:-scripts/$(basename "$0")}
    PG_BIN="$(pg_find_bin)"
    PG_DIR="$(mktemp -d -t eventsource-pg.XXXXXX)"
    PG_DATA="$PG_DIR/data"
    PG_PORT="$(pg_free_port)"
    PG_CLUSTERS+=("$PG_DIR")

    as_pg=()
    if [[ "$(id -u)" == 0 ]]; then
        as_pg=(runuser -u postgres --)
        chown postgres: "$PG_DIR"
    fi
    chmod 700 "$PG_DIR"
    trap pg_stop EXIT INT TERM

    options="-p $PG_PORT -k $PG_DIR -c listen_addresses=127.0.0.1"
    for setting in "$@"; do
        options+=" -c $setting"
    done
    "${as_pg[@]}" "$PG_BIN/initdb" -D "$PG_DATA" -U postgres --auth=trust -E UTF8 --locale=C >"$PG_DIR/initdb.log" 2>&1 \
        || { cat "$PG_DIR/initdb.log" >&2; exit 1; }
    "${as_pg[@]}" "$PG_BIN/pg_ctl" -D "$PG_DATA" -l "$PG_DIR/server.log" -o "$options" -w start >/dev/null \
        || { cat "$PG_DIR/server.log" >&2; exit 1; }
    "${as_pg[@]}" "$PG_BIN/createdb" -h 127.0.0.1 -p "$PG_PORT" -U postgres "$database"

    DATABASE_URL="postgres://postgres@127.0.0.1:$PG_PORT/$database"
    export DATABASE_URL PG_BIN PG_DIR PG_DATA
}

# The server's version, e.g. `15.14`.
pg_version() {
    "$PG_BIN/pg_ctl" --version | awk '{print $3}'
}
