#!/usr/bin/env bash
# Load benchmark: `footfall serve` against a bare hyper server (the least a
# server on the same stack can do: read the body, answer 204), under the
# same wrk load, in one run, and prints footfall's figures as ratios of the
# baseline's. Loopback only; each run is bounded by DURATION.
#
# A shared machine's speed drifts by tens of percent within minutes, so
# each scenario runs in ROUNDS rounds of the two servers back to back (the
# order alternating), a ratio is taken within each round, and the median
# round (the lower middle one for an even number) is printed with the
# range of the ratios.
#
#   benches/load.sh                      # 3 rounds of 5 s, 64 connections, 1 thread
#   ROUNDS=5 DURATION=10s CONNS=64 THREADS=1 benches/load.sh
#
# On a machine with two or more cores the server is pinned to core 0 and wrk
# to core 1, so they do not compete for one core.
set -euo pipefail
cd "$(dirname "$0")/.."
# wrk and ab send one visitor's beacon over and over: the rate cap stays on
# (its check is part of every beacon's cost) at a limit never reached, so
# every request is counted as a view, as a real site's are.
NEVER_CAPPED=4294967295

DURATION=${DURATION:-5s}
ROUNDS=${ROUNDS:-3}
CONNS=${CONNS:-64}
THREADS=${THREADS:-1}

if ! command -v wrk >/dev/null 2>&1; then
  echo "installing wrk from the distribution's packages" >&2
  . scripts/apt-install.sh
  apt_install wrk
fi
cargo build --release --locked --quiet --bin footfall --example bare-hyper
footfall=target/release/footfall
bare=target/release/examples/bare-hyper

work=$(mktemp -d)
server_pid=
cleanup() {
  [ -n "$server_pid" ] && kill "$server_pid" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

if [ "$(nproc)" -ge 2 ]; then
  pin_server="taskset -c 0"
  pin_wrk="taskset -c 1"
else
  pin_server=
  pin_wrk=
fi

# A Plausible-style pageview, about 200 bytes, with a real browser's UA.
body='{"n":"pageview","u":"https://example.com/blog/2026/11/privacy-first-analytics?utm_source=newsletter","d":"example.com","r":"https://news.ycombinator.com/item?id=41234567","w":1440,"h":0}'
ua='Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36'
cat >"$work/post.lua" <<LUA
wrk.method = "POST"
wrk.body = '$body'
wrk.headers["Content-Type"] = "text/plain;charset=UTF-8"
wrk.headers["User-Agent"] = "$ua"
LUA
cat >"$work/close.lua" <<LUA
wrk.method = "POST"
wrk.body = '$body'
wrk.headers["Content-Type"] = "text/plain;charset=UTF-8"
wrk.headers["User-Agent"] = "$ua"
wrk.headers["Connection"] = "close"
LUA
cat >"$work/pixel.lua" <<LUA
wrk.method = "GET"
wrk.path = "/api/event?d=example.com&u=https%3A%2F%2Fexample.com%2Fblog%2F2026%2F11%2Fprivacy-first-analytics&r=https%3A%2F%2Fnews.ycombinator.com%2F&w=1440"
wrk.headers["User-Agent"] = "$ua"
LUA

# 10,000 distinct pages, so a flush has real work: about 10,000 rows.
cat >"$work/pages.lua" <<LUA
wrk.method = "POST"
wrk.headers["Content-Type"] = "text/plain;charset=UTF-8"
wrk.headers["User-Agent"] = "$ua"
local i = 0
request = function()
  i = (i + 1) % 10000
  local body = '{"n":"pageview","u":"https://example.com/docs/page-' .. i .. '?utm_source=x","d":"example.com","r":null,"w":1440}'
  return wrk.format(nil, nil, nil, body)
end
LUA

wait_port() {
  for _ in $(seq 100); do
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
    sleep 0.1
  done
  echo "server on port $1 did not start" >&2
  return 1
}

# Prints "requests/s p99_microseconds" for one wrk run.
measure() { # port script
  local out
  out=$($pin_wrk wrk -t1 -c"$CONNS" -d"$DURATION" --latency -s "$work/$2.lua" "http://127.0.0.1:$1/api/event")
  echo "$out" >>"$work/wrk.log"
  local rps p99
  rps=$(awk '/^Requests\/sec:/ {print $2}' <<<"$out")
  p99=$(awk '$1 == "99%" {v=$2; u=v; gsub(/[0-9.]/, "", u); gsub(/[a-z]/, "", v);
               m = (u == "us") ? 1 : (u == "ms") ? 1000 : (u == "s") ? 1000000 : 1; print v * m}' <<<"$out")
  echo "$rps $p99"
}

run() { # name scenario [extra footfall flags...]
  local port=$((20000 + RANDOM % 20000))
  local name=$1 scenario=$2
  shift 2
  if [ "$name" = bare ]; then
    $pin_server "$bare" "127.0.0.1:$port" "$THREADS" 2>/dev/null &
  else
    $pin_server "$footfall" serve --listen "127.0.0.1:$port" --threads "$THREADS" \
      --data-dir "$work/data-$scenario-$#" --site example.com \
      --dashboard-listen off --max-views-per-minute "$NEVER_CAPPED" "$@" 2>>"$work/footfall.log" &
  fi
  server_pid=$!
  wait_port "$port"
  measure "$port" "$scenario"
  kill -TERM "$server_pid"
  wait "$server_pid" 2>/dev/null || true
  server_pid=
}

printf 'wrk: 1 thread, %s connections, %s a run, %s rounds; servers: %s tokio worker thread(s)\n' "$CONNS" "$DURATION" "$ROUNDS" "$THREADS"
printf 'machine: %s cores, %s\n\n' "$(nproc)" "$(lscpu 2>/dev/null | awk -F: '/Model name/ {gsub(/^ +/, "", $2); print $2; exit}')"
printf '%-22s %10s %10s %7s %13s %9s %9s %7s\n' scenario "bare req/s" footfall ratio "(range)" "bare p99" footfall ratio
for scenario in post close pixel; do
  : >"$work/rounds"
  for round in $(seq "$ROUNDS"); do
    # Not `< <(run …)`: a process substitution would leave the server's
    # shutdown running behind the next measurement.
    if [ $((round % 2)) -eq 1 ]; then order="bare footfall"; else order="footfall bare"; fi
    for server in $order; do
      run "$server" "$scenario" >"$work/result-$server"
    done
    echo "$(cat "$work/result-bare") $(cat "$work/result-footfall")" >>"$work/rounds"
  done
  case $scenario in
    post) label="POST keep-alive";;
    close) label="POST Connection: close";;
    pixel) label="GET pixel keep-alive";;
  esac
  # Each line: bare req/s, bare p99, footfall req/s, footfall p99. The
  # round with the median throughput ratio is printed whole.
  awk '{ print $3 / $1, $0 }' "$work/rounds" | LC_ALL=C sort -g | awk -v l="$label" '
    { ratio[NR] = $1; line[NR] = $0 }
    END {
      split(line[int((NR + 1) / 2)], m, " ")
      printf "%-22s %10.0f %10.0f %6.1f%% %5.1f-%5.1f%% %7.0fus %7.0fus %6.2fx\n",
        l, m[2], m[4], 100 * m[1], 100 * ratio[1], 100 * ratio[NR], m[3], m[5], m[5] / m[3] }'
done

# Flushing off the request path: the same load over 10,000 pages, footfall
# writing every open bucket to Parquet each second, against no flushing,
# in rounds like the rest; the median round by p99 ratio is printed.
: >"$work/rounds"
for round in $(seq "$ROUNDS"); do
  if [ $((round % 2)) -eq 1 ]; then order="quiet flushing"; else order="flushing quiet"; fi
  for mode in $order; do
    if [ "$mode" = quiet ]; then
      rm -rf "$work/data-pages-0"
      run footfall pages >"$work/result-$mode"
    else
      rm -rf "$work/data-pages-2"
      run footfall pages --flush-interval 1s >"$work/result-$mode"
      files=$(find "$work/data-pages-2" -name "*.parquet" | wc -l)
    fi
  done
  echo "$(cat "$work/result-quiet") $(cat "$work/result-flushing") $files" >>"$work/rounds"
done
# Each line: quiet req/s, quiet p99, flushing req/s, flushing p99, files.
awk '{ print $4 / $2, $0 }' "$work/rounds" | LC_ALL=C sort -g | awk '
  { ratio[NR] = $1; line[NR] = $0 }
  END {
    split(line[int((NR + 1) / 2)], m, " ")
    printf "\nflush every second, 10,000 pages: %.0f req/s (%.1f%% of %.0f without), p99 %.0fus vs %.0fus (%.2fx; rounds %.2f-%.2fx); %d files written\n",
      m[4], 100 * m[4] / m[2], m[2], m[5], m[3], m[1], ratio[1], ratio[NR], m[6] }'
