#!/usr/bin/env bash
# Builds and runs the README's quick start as a new crate, the way a newcomer would: `cargo new`,
# the README's `[dependencies]` block pasted into Cargo.toml, its program as src/main.rs.
#
# The only change to what the README says is where `eventsource` comes from: this checkout (a
# path dependency that keeps the README's version requirement, so a release that outgrows it
# fails here). The workspace's Cargo.lock seeds the crate's lockfile and the workspace's target
# directory is shared, so a second run compiles only the quick start itself; cargo goes online
# only if the lockfile lacks something. The program must compile without warnings.
#
# It takes from README.md the first ```toml block that has a `[dependencies]` line, and the
# first ```rust block that has a `fn main`.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# Absolute, since the build runs in a temporary directory (a relative one is cargo's: from here).
export CARGO_TARGET_DIR="$(realpath -m "${CARGO_TARGET_DIR:-$root/target}")"

# The fenced block of language $1 whose text contains $2.
readme_block() {
    awk -v lang="$1" -v needle="$2" '
        !inside && $0 == "```" lang { inside = 1; text = ""; next }
        inside && $0 == "```" { inside = 0; if (index(text, needle)) { printf "%s", text; exit } next }
        inside { text = text $0 "\n" }
    ' "$root/README.md"
}

dependencies="$(readme_block toml '[dependencies]')"
program="$(readme_block rust 'fn main')"
if [[ -z "$dependencies" || -z "$program" ]]; then
    echo "scripts/quickstart.sh: README.md has no \`\`\`toml [dependencies] block or no \`\`\`rust block with fn main" >&2
    exit 1
fi
if ! grep -Eq '^eventsource = ' <<<"$dependencies"; then
    echo "scripts/quickstart.sh: the README's [dependencies] block has no \`eventsource = ...\` line" >&2
    exit 1
fi

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
cd "$work"
cargo new --quiet --vcs none --bin quickstart
cd quickstart
cp "$root/rust-toolchain.toml" .
cp "$root/Cargo.lock" .

# `cargo new` ends the manifest with an empty `[dependencies]`; the README's block replaces it.
# `eventsource = "0.1"` or `eventsource = { version = "0.1", ... }` gains `path = <checkout>`.
sed -i '/^\[dependencies\]$/,$d' Cargo.toml
sed -E \
    -e "s|^eventsource = \"([^\"]*)\"|eventsource = { version = \"\\1\" }|" \
    -e "s|^eventsource = \\{|eventsource = { path = \"$root\",|" \
    <<<"$dependencies" >>Cargo.toml
# Its own workspace, even when the temporary directory is inside another one.
printf '\n[workspace]\n' >>Cargo.toml
printf '%s' "$program" >src/main.rs

if ! cargo metadata --offline --format-version 1 >/dev/null 2>&1; then
    cargo fetch --quiet
fi
cargo rustc --offline --quiet --bin quickstart -- -D warnings
"$CARGO_TARGET_DIR/debug/quickstart" >/dev/null
echo "scripts/quickstart.sh: the README's quick start builds and runs as a new crate"
