# A throwaway NATS server with JetStream, for scripts/test.sh and scripts/bench.sh. Source it,
# then call `nats_start`; it sets NATS_BIN, NATS_DIR, NATS_PORT and NATS_URL (exported, with
# NATS_SERVER_BIN for tests that run servers of their own) and stops the server and deletes its
# directory on exit, also on failure (after pg_stop's work when scripts/lib/pg.sh is sourced
# and started first).
#
# The server listens on a free port on 127.0.0.1 only and keeps JetStream's files in a
# temporary directory. If `nats-server` is missing it is installed from Debian's package
# (2.9.x), which needs root.

nats_find_bin() {
    if command -v nats-server >/dev/null 2>&1; then
        command -v nats-server
        return
    fi
    if [[ "$(id -u)" == 0 ]] && command -v apt-get >/dev/null 2>&1; then
        echo "$NATS_SCRIPT: nats-server is missing; installing Debian's package" >&2
        apt-get update >&2 && apt-get install -y nats-server >&2
        command -v nats-server
        return
    fi
    echo "$NATS_SCRIPT: nats-server is not on PATH; install it (Debian: apt-get install nats-server)" >&2
    exit 1
}

nats_free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()' 2>/dev/null \
        || echo $((20000 + RANDOM % 20000))
}

# Stops the server and deletes its directory. Always succeeds: under `set -e` a failing
# command in a trap handler would end the handler before pg_stop ran (the script's status is
# handed to pg_stop by the trap instead).
nats_stop() {
    if [[ -n "${NATS_PID:-}" ]] && kill -0 "$NATS_PID" 2>/dev/null; then
        kill "$NATS_PID" 2>/dev/null || true
        wait "$NATS_PID" 2>/dev/null || true
    fi
    rm -rf "$NATS_DIR"
    return 0
}

nats_start() {
    local attempt
    NATS_SCRIPT=${NATS_SCRIPT:-scripts/$(basename "$0")}
    NATS_BIN="$(nats_find_bin)"
    NATS_DIR="$(mktemp -d -t eventsource-nats.XXXXXX)"
    NATS_PORT="$(nats_free_port)"

    # Chain with pg.sh's handler (which exits with the saved status) when it is installed.
    if declare -F pg_stop >/dev/null; then
        trap 'es_status=$?; nats_stop; pg_stop "$es_status"' EXIT INT TERM
    else
        trap nats_stop EXIT INT TERM
    fi

    "$NATS_BIN" -js -a 127.0.0.1 -p "$NATS_PORT" -sd "$NATS_DIR/jetstream" >"$NATS_DIR/server.log" 2>&1 &
    NATS_PID=$!
    for attempt in $(seq 1 100); do
        if grep -q "Server is ready" "$NATS_DIR/server.log" 2>/dev/null; then
            break
        fi
        if ! kill -0 "$NATS_PID" 2>/dev/null; then
            cat "$NATS_DIR/server.log" >&2
            echo "$NATS_SCRIPT: nats-server exited at start" >&2
            exit 1
        fi
        sleep 0.1
    done
    if ! grep -q "Server is ready" "$NATS_DIR/server.log"; then
        cat "$NATS_DIR/server.log" >&2
        echo "$NATS_SCRIPT: nats-server did not become ready" >&2
        exit 1
    fi

    NATS_URL="nats://127.0.0.1:$NATS_PORT"
    NATS_SERVER_BIN="$NATS_BIN"
    export NATS_URL NATS_SERVER_BIN
}

# The server's version, e.g. `v2.9.10`.
nats_version() {
    "$NATS_BIN" --version | awk '{print $2}'
}
