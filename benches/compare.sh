#!/usr/bin/env bash
# Runs the same jobq-bench measurements against two builds of jobq, one
# after the other for each measurement (A, then B, `rounds` times), each on
# a fresh server process whose CPU time jobq-bench reads (--server-pid).
# Back to back on one machine, so the ratios between A and B mean something
# even where the machine's speed drifts. Each round of the unary and
# one-in-flight measurements starts with the echo baseline, served by a
# process of its own (`jobq-bench echo-serve`) like jobq, so their ratio to
# it is taken in the same minute.
#
#   cargo build --release -p jobq -p jobq-bench && cp target/release/{jobq,jobq-bench} /tmp/a/
#   ... change, rebuild, copy to /tmp/b ...
#   benches/compare.sh /tmp/a /tmp/b [rounds] [measurement ...]
#
# A measurement is jobq-bench's arguments after --server, e.g.
# "--jobs 40000 enqueue --via unary"; without any, the list below.
set -euo pipefail
a=${1:?usage: compare.sh DIR_A DIR_B [ROUNDS] [MEASUREMENT ...]}
b=${2:?usage: compare.sh DIR_A DIR_B [ROUNDS] [MEASUREMENT ...]}
rounds=${3:-2}
shift $(($# < 3 ? $# : 3))
port=${JOBQ_COMPARE_PORT:-50071}
echo_port=$((port + 1))

wait_for() {
  for _ in $(seq 100); do
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return
    sleep 0.1
  done
}

# The figures of jobq-bench "$@" against a fresh server built in $1: every
# line after the header.
measure() {
  local dir=$1
  shift
  "$dir/jobq" --listen "127.0.0.1:$port" --metrics-listen 127.0.0.1:0 --web-listen off \
    --queue-capacity 10000000 --memory-budget-bytes 8589934592 >/dev/null 2>&1 &
  local pid=$!
  wait_for "$port"
  "$dir/jobq-bench" --server "http://127.0.0.1:$port" --server-pid "$pid" "$@" | tail -n +2
  kill "$pid"
  wait "$pid" 2>/dev/null || true
}

# The echo baseline's figure for one of its parts ($1), in its own process.
baseline() {
  "$a/jobq-bench" echo-serve --listen "127.0.0.1:$echo_port" >/dev/null &
  local pid=$!
  wait_for "$echo_port"
  "$a/jobq-bench" --echo-server "http://127.0.0.1:$echo_port" --echo-pid "$pid" \
    --jobs "$2" baseline --only "$1"
  kill "$pid"
  wait "$pid" 2>/dev/null || true
}

measurements=("$@")
if [ ${#measurements[@]} -eq 0 ]; then
  measurements=(
    "--jobs 40000 --concurrency 4 enqueue --via unary"
    "--jobs 100000 --concurrency 4 enqueue --via stream"
    "--jobs 200000 --concurrency 16 enqueue --via stream"
    "--jobs 400000 --concurrency 4 enqueue --batch 100"
    "--jobs 200000 --concurrency 4 drain --mode worker --credits 4"
    "--jobs 50000 --concurrency 4 pipeline --rate 5000 --via stream"
    "--jobs 100000 --concurrency 4 pipeline --rate 10000 --via stream"
    "--jobs 100000 depth --deep 1000000"
  )
fi
for m in "${measurements[@]}"; do
  echo "== jobq-bench $m"
  for _ in $(seq "$rounds"); do
    case "$m" in
      *"--concurrency 4 enqueue --via unary"*) printf 'E %s\n' "$(baseline unary 40000)" ;;
      *"--concurrency 4 enqueue --via stream"*) printf 'E %s\n' "$(baseline ping-pong 100000)" ;;
    esac
    # shellcheck disable=SC2086
    measure "$a" $m | sed 's/^/A /'
    # shellcheck disable=SC2086
    measure "$b" $m | sed 's/^/B /'
  done
done
