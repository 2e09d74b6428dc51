#!/usr/bin/env bash
# Runs the whole test suite. (The PostgreSQL tests, and the throwaway server they need,
# are added with the PostgreSQL adapter.)
set -euo pipefail
cd "$(dirname "$0")/.."
cargo test --workspace --all-features "$@"
