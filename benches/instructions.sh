#!/usr/bin/env bash
# Instructions per beacon for each step of the in-memory path, counted by
# valgrind (cachegrind), which does not depend on the machine's load: the
# repeatable complement of `cargo bench --bench pipeline`'s times. Each step
# runs N and 2N times; the difference over N is the cost of one, without
# the set-up (building the User-Agent parsers, the first beacon).
#
#   benches/instructions.sh            # N = 20000
#   N=50000 benches/instructions.sh
set -euo pipefail
cd "$(dirname "$0")/.."

N=${N:-20000}
if ! command -v valgrind >/dev/null 2>&1; then
  echo "installing valgrind from the distribution's packages" >&2
  if [ "$(id -u)" -eq 0 ]; then sudo=; else sudo=sudo; fi
  $sudo apt-get update -qq
  $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq valgrind >/dev/null
fi
cargo build --release --locked --quiet --example per-beacon
bin=target/release/examples/per-beacon
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT

instructions() { # step n
  valgrind --tool=cachegrind --cache-sim=no --cachegrind-out-file="$out/cg" \
    "$bin" "$1" "$2" 2>"$out/log" >/dev/null
  awk '/^summary:/ {print $2}' "$out/cg"
}

printf '%-10s %14s\n' step "instructions"
for step in decode anonymise fold beacon; do
  one=$(instructions "$step" "$N")
  two=$(instructions "$step" $((2 * N)))
  awk -v s="$step" -v a="$one" -v b="$two" -v n="$N" 'BEGIN { printf "%-10s %14.0f\n", s, (b - a) / n }'
done
