#!/usr/bin/env bash
# Instructions, counted by valgrind (cachegrind), which does not depend on
# the machine's load: the repeatable complement of the timed benchmarks.
#
# 1. Per beacon, each step of the in-memory path (`benches/per_beacon.rs`),
#    the decoding of a pixel's query, and a whole custom event with two
#    allowed properties (to compare with `beacon`, a whole pageview).
# 2. Per request, the whole server process (user space; the kernel's share
#    is not counted) for `footfall serve` and the bare hyper baseline of
#    `benches/load.sh`, under the same keep-alive POSTs, then the same
#    keep-alive pixel GETs, sent by ab.
#
# Each runs N and 2N times; the difference over N is the cost of one,
# without the set-up (building the User-Agent parsers, starting up).
#
#   benches/instructions.sh            # N = 20000 beacons, 5000 requests
#   N=50000 REQUESTS=10000 benches/instructions.sh
set -euo pipefail
# A failure inside $(…) stops the script too, rather than printing a
# count of nothing.
shopt -s inherit_errexit
cd "$(dirname "$0")/.."
# wrk and ab send one visitor's beacon over and over: the rate cap stays on
# (its check is part of every beacon's cost) at a limit never reached, so
# every request is counted as a view, as a real site's are.
NEVER_CAPPED=4294967295

N=${N:-20000}
REQUESTS=${REQUESTS:-5000}
if ! command -v valgrind >/dev/null 2>&1 || ! command -v ab >/dev/null 2>&1; then
  echo "installing valgrind and ab (apache2-utils) from the distribution's packages" >&2
  . scripts/apt-install.sh
  apt_install valgrind apache2-utils
fi
# The profiling profile: release code with line tables, so cg_annotate can
# name the lines an instruction count comes from (release is stripped).
cargo build --profile profiling --locked --quiet --example per-beacon --example bare-hyper --bin footfall
bin=target/profiling/examples/per-beacon
out=$(mktemp -d)
server_pid=
cleanup() {
  [ -n "$server_pid" ] && kill "$server_pid" 2>/dev/null || true
  rm -rf "$out"
}
trap cleanup EXIT

# Prints the instructions of one run; stops the script if the run failed.
instructions() { # step n
  rm -f "$out/cg"
  valgrind --tool=cachegrind --cache-sim=no --cachegrind-out-file="$out/cg" \
    --error-exitcode=1 "$bin" "$1" "$2" 2>"$out/log" >/dev/null ||
    { cat "$out/log" >&2; exit 1; }
  local count
  count=$(awk '/^summary:/ {print $2}' "$out/cg")
  [ -n "$count" ] || { echo "no count for $1" >&2; exit 1; }
  echo "$count"
}

printf '%-10s %14s\n' step "instructions"
for step in decode anonymise fold beacon pixel cap visit event; do
  one=$(instructions "$step" "$N")
  two=$(instructions "$step" $((2 * N)))
  awk -v s="$step" -v a="$one" -v b="$two" -v n="$N" 'BEGIN { printf "%-10s %14.0f\n", s, (b - a) / n }'
done

# The load benchmark's body and User-Agent.
body='{"n":"pageview","u":"https://example.com/blog/2026/11/privacy-first-analytics?utm_source=newsletter","d":"example.com","r":"https://news.ycombinator.com/item?id=41234567","w":1440,"h":0}'
ua='Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36'
printf '%s' "$body" >"$out/body"
pixel='d=example.com&u=https%3A%2F%2Fexample.com%2Fblog%2F2026%2F11%2Fprivacy-first-analytics&r=https%3A%2F%2Fnews.ycombinator.com%2F&w=1440'

# Sets `counted` to the server's instructions for that many requests. Not
# called in $(…), so the server's pid is the script's to clean up.
server_instructions() { # name requests post|pixel
  local port=$((20000 + RANDOM % 20000)) requests=$2 scenario=$3
  local cmd
  if [ "$1" = bare ]; then
    cmd=(target/profiling/examples/bare-hyper "127.0.0.1:$port" 1)
  else
    cmd=(target/profiling/footfall serve --listen "127.0.0.1:$port" --threads 1
      --data-dir "$out/data-$scenario-$requests" --site example.com
      --dashboard-listen "127.0.0.1:$((port + 1))" --max-views-per-minute "$NEVER_CAPPED")
  fi
  rm -f "$out/server"
  valgrind --tool=cachegrind --cache-sim=no --cachegrind-out-file="$out/server" "${cmd[@]}" \
    2>"$out/server.log" >/dev/null &
  server_pid=$!
  local up=
  for _ in $(seq 600); do
    # Ours, not some other program on a port drawn at random.
    kill -0 "$server_pid" 2>/dev/null || break
    if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then up=1; break; fi
    sleep 0.1
  done
  [ -n "$up" ] || { cat "$out/server.log" >&2; echo "$1 did not start" >&2; exit 1; }
  local request=(-p "$out/body" -T 'text/plain;charset=UTF-8' "http://127.0.0.1:$port/api/event")
  [ "$scenario" = post ] || request=("http://127.0.0.1:$port/api/event?$pixel")
  ab -q -k -n "$requests" -c 16 -H "User-Agent: $ua" "${request[@]}" >"$out/ab" 2>&1 ||
    { cat "$out/ab" >&2; exit 1; }
  if ! grep -q '^Failed requests: *0$' "$out/ab" || grep -q '^Non-2xx' "$out/ab"; then
    cat "$out/ab" >&2
    exit 1
  fi
  if [ "$1" = footfall ]; then
    # Counted, not answered 202 and dropped: the path measured is the
    # one that counts.
    local metrics
    metrics=$(exec 3<>"/dev/tcp/127.0.0.1/$((port + 1))"
      printf 'GET /metrics HTTP/1.0\r\n\r\n' >&3
      cat <&3)
    grep -q "^footfall_beacons_counted_total $requests\b" <<<"$metrics" || {
      grep '^footfall_beacons' <<<"$metrics" >&2
      echo "not every beacon was counted" >&2
      exit 1
    }
  fi
  kill -TERM "$server_pid"
  wait "$server_pid" || true
  server_pid=
  counted=$(awk '/^summary:/ {print $2}' "$out/server")
  [ -n "$counted" ] || { echo "no count from $1" >&2; exit 1; }
}

for scenario in post pixel; do
  case $scenario in
    post) label="keep-alive POST";;
    pixel) label="keep-alive pixel GET";;
  esac
  printf '\n%-10s %14s\n' server "instructions a request ($label, user space)"
  for server in bare footfall; do
    server_instructions "$server" "$REQUESTS" "$scenario"
    one=$counted
    server_instructions "$server" $((2 * REQUESTS)) "$scenario"
    two=$counted
    awk -v s="$server" -v a="$one" -v b="$two" -v n="$REQUESTS" 'BEGIN { printf "%-10s %14.0f\n", s, (b - a) / n }'
  done
done
