#!/usr/bin/env bash
# Compile time of the derives against the same code written by hand (issue 23).
#
# For each N, generates two crates with one aggregate of N events and N commands:
#   derived/  #[derive(Event)] x N, #[derive(Aggregate)] with events(...) and commands(...)
#   hand/     the same event structs with serde's derives, the event and command enums, the
#             fold and dispatch `match`es and the Event/EventEnum/Aggregate impls by hand
# and times `cargo check` of each (dependencies built first, then only the crate itself:
# `touch src/lib.rs`), the median of ROUNDS runs, interleaved.
#
#   ./scripts/derive_compile_time.sh            # N = 50 100 200, 3 rounds
#   NS="200" ROUNDS=5 ./scripts/derive_compile_time.sh
#   ROOT=/path/to/another/checkout ./scripts/derive_compile_time.sh   # e.g. the previous release
set -euo pipefail
ROOT="${ROOT:-$(cd "$(dirname "$0")/.." && pwd)}"
WORK="${WORK:-$(mktemp -d)}"
NS="${NS:-50 100 200}"
ROUNDS="${ROUNDS:-3}"
export CARGO_TARGET_DIR="$WORK/target"

manifest() {
  cat <<TOML
[package]
name = "$1"
version = "0.0.0"
edition = "2024"
publish = false

[dependencies]
eventsource = { path = "$ROOT", default-features = false, features = ["derive"] }
serde = { version = "1", features = ["derive"] }
serde_json = "1"

[workspace]
TOML
}

gen_derived() {
  local n=$1
  echo "use eventsource::prelude::*;"
  for i in $(seq 1 "$n"); do
    cat <<RS
#[derive(Event, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[event(name = "big.e$i")]
pub struct E$i { pub a: u64, pub b: String }
#[derive(Clone, Debug)]
pub struct C$i { pub a: u64 }
impl Apply<E$i> for Big { fn apply(&mut self, e: &E$i) { self.total += e.a; } }
impl Handle<C$i> for Big {
    fn handle(&self, c: C$i) -> Result<Events<Self>, Self::Error> {
        Ok(Events::one(E$i { a: c.a, b: String::new() }))
    }
}
RS
  done
  local events commands
  events=$(seq -s, -f 'E%g' 1 "$n")
  commands=$(seq -s, -f 'C%g' 1 "$n")
  cat <<RS
#[derive(Aggregate, Default, Serialize, Deserialize)]
#[aggregate(name = "big", events($events), commands($commands))]
pub struct Big { pub total: u64 }
RS
}

gen_hand() {
  local n=$1
  cat <<'RS'
use eventsource::{Aggregate, DecodeFailure, Event, EventEnum, Events};
use serde::{Deserialize, Serialize};
use serde_json::Value;
RS
  for i in $(seq 1 "$n"); do
    cat <<RS
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct E$i { pub a: u64, pub b: String }
impl Event for E$i {
    const NAME: &'static str = "big.e$i";
    const VERSION: u32 = 1;
    fn decode_version(version: u32, payload: &Value) -> Result<Self, DecodeFailure> {
        DecodeFailure::parse(version, payload)
    }
}
#[derive(Clone, Debug)]
pub struct C$i { pub a: u64 }
RS
  done
  echo "#[derive(Clone, Debug, PartialEq)] pub enum BigEvent {"
  for i in $(seq 1 "$n"); do echo "  E$i(E$i),"; done
  echo "}"
  for i in $(seq 1 "$n"); do echo "impl From<E$i> for BigEvent { fn from(e: E$i) -> Self { BigEvent::E$i(e) } }"; done
  echo "pub enum BigCommand {"
  for i in $(seq 1 "$n"); do echo "  C$i(C$i),"; done
  echo "}"
  echo "impl EventEnum for BigEvent {"
  echo -n "  const NAMES: &'static [&'static str] = &["
  for i in $(seq 1 "$n"); do echo -n "\"big.e$i\","; done
  echo "];"
  echo "  fn name(&self) -> &'static str { match self {"
  for i in $(seq 1 "$n"); do echo "    BigEvent::E$i(_) => \"big.e$i\","; done
  echo "  } }"
  echo "  fn schema_version(&self) -> u32 { 1 }"
  echo "  fn encode(&self) -> Result<Value, serde_json::Error> { match self {"
  for i in $(seq 1 "$n"); do echo "    BigEvent::E$i(e) => serde_json::to_value(e),"; done
  echo "  } }"
  echo "  fn decode(name: &str, version: u32, payload: &Value) -> Result<Self, DecodeFailure> { match name {"
  for i in $(seq 1 "$n"); do echo "    \"big.e$i\" => E$i::decode_version(version, payload).map(BigEvent::E$i),"; done
  echo "    _ => Err(DecodeFailure::UnknownEvent),"
  echo "  } }"
  echo "}"
  cat <<'RS'
#[derive(Default, Serialize, Deserialize)]
pub struct Big { pub total: u64 }
impl Aggregate for Big {
    const NAME: &'static str = "big";
    const STATE_FINGERPRINT: &'static str = "big-v1";
    type Event = BigEvent;
    type Command = BigCommand;
    type Error = std::convert::Infallible;
    type Services = ();
    fn evolve(&mut self, event: &BigEvent) {
        match event {
RS
  for i in $(seq 1 "$n"); do echo "            BigEvent::E$i(e) => self.total += e.a,"; done
  cat <<'RS'
        }
    }
    fn decide(&self, command: BigCommand, _: &()) -> Result<Events<Self>, Self::Error> {
        match command {
RS
  for i in $(seq 1 "$n"); do echo "            BigCommand::C$i(c) => Ok(Events::one(E$i { a: c.a, b: String::new() })),"; done
  echo "        }"
  echo "    }"
  echo "}"
}

median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }

time_check() {
  local dir=$1
  touch "$dir/src/lib.rs"
  local start end
  start=$(date +%s.%N)
  (cd "$dir" && cargo check -q 2>/dev/null)
  end=$(date +%s.%N)
  echo "$end - $start" | bc
}

printf '%-5s %10s %10s %7s\n' N derived hand ratio
for n in $NS; do
  for kind in derived hand; do
    dir="$WORK/$kind$n"
    mkdir -p "$dir/src"
    manifest "${kind}_$n" > "$dir/Cargo.toml"
    "gen_$kind" "$n" > "$dir/src/lib.rs"
    (cd "$dir" && cargo check -q) # dependencies, and a first build
  done
  d=(); h=()
  for _ in $(seq 1 "$ROUNDS"); do
    d+=("$(time_check "$WORK/derived$n")")
    h+=("$(time_check "$WORK/hand$n")")
  done
  dm=$(printf '%s\n' "${d[@]}" | median)
  hm=$(printf '%s\n' "${h[@]}" | median)
  printf '%-5s %9.2fs %9.2fs %6.2fx\n' "$n" "$dm" "$hm" "$(echo "$dm / $hm" | bc -l)"
done
