#!/usr/bin/env bash
# The journal's cost, measured beside the in-memory mode in one run: each
# measurement on a fresh `jobq` process (its CPU read by jobq-bench through
# --server-pid), in memory, with --data-dir and --fsync always, and with
# --fsync interval=10ms, one after the other.
#
#   cargo build --release -p jobq -p jobq-bench
#   benches/durable.sh target/release
set -euo pipefail
bin=${1:?usage: durable.sh DIR_WITH_JOBQ_AND_JOBQ_BENCH}
port=${JOBQ_BENCH_PORT:-50072}
data=$(mktemp -d)
trap 'rm -rf "$data"' EXIT

measure() {
  local mode=$1
  shift
  local extra=()
  rm -rf "$data/dir"
  case $mode in
    memory) ;;
    always) extra=(--data-dir "$data/dir" --fsync always) ;;
    interval) extra=(--data-dir "$data/dir" --fsync interval=10ms) ;;
  esac
  "$bin/jobq" --listen "127.0.0.1:$port" --metrics-listen 127.0.0.1:0 \
    --queue-capacity 10000000 --memory-budget-bytes 8589934592 "${extra[@]}" >/dev/null 2>&1 &
  local pid=$!
  for _ in $(seq 100); do
    (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break
    sleep 0.1
  done
  printf '%-9s %s\n' "$mode" "$("$bin/jobq-bench" --server "http://127.0.0.1:$port" --server-pid "$pid" "$@" | tail -n 1)"
  kill "$pid"
  wait "$pid" 2>/dev/null || true
}

measurements=(
  "--jobs 100000 --concurrency 16 enqueue --via stream"
  "--jobs 100000 --concurrency 4 drain --mode worker --credits 4"
  "--jobs 2000 --concurrency 1 enqueue --via unary"
  "--jobs 20000 --concurrency 16 enqueue --via unary"
)
for m in "${measurements[@]}"; do
  echo "== jobq-bench $m"
  for mode in memory always interval; do
    # shellcheck disable=SC2086
    measure "$mode" $m
  done
done
