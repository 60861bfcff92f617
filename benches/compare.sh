#!/usr/bin/env bash
# Runs the same jobq-bench measurements against two builds of jobq, one
# after the other for each measurement (A, then B, `rounds` times), each on
# a fresh server process whose CPU time jobq-bench reads (--server-pid).
# Back to back on one machine, so the ratios between A and B mean something
# even where the machine's speed drifts.
#
#   cargo build --release && cp target/release/{jobq,jobq-bench} /tmp/a/
#   ... change, rebuild, copy to /tmp/b ...
#   benches/compare.sh /tmp/a /tmp/b [rounds]
set -euo pipefail
a=${1:?usage: compare.sh DIR_A DIR_B [ROUNDS]}
b=${2:?usage: compare.sh DIR_A DIR_B [ROUNDS]}
rounds=${3:-2}
port=${JOBQ_COMPARE_PORT:-50071}

measure() {
  local dir=$1
  shift
  "$dir/jobq" --listen "127.0.0.1:$port" --metrics-listen 127.0.0.1:0 \
    --queue-capacity 10000000 --memory-budget-bytes 8589934592 >/dev/null 2>&1 &
  local pid=$!
  for _ in $(seq 100); do
    (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break
    sleep 0.1
  done
  "$dir/jobq-bench" --server "http://127.0.0.1:$port" --server-pid "$pid" "$@" | tail -n 1
  kill "$pid"
  wait "$pid" 2>/dev/null || true
}

measurements=(
  "--jobs 100000 --concurrency 4 enqueue --via stream"
  "--jobs 200000 --concurrency 16 enqueue --via stream"
  "--jobs 200000 --concurrency 4 drain --mode worker --credits 4"
  "--jobs 50000 --concurrency 4 pipeline --rate 5000 --via stream"
)
for m in "${measurements[@]}"; do
  echo "== jobq-bench $m"
  for _ in $(seq "$rounds"); do
    # shellcheck disable=SC2086
    printf 'A %s\n' "$(measure "$a" $m)"
    # shellcheck disable=SC2086
    printf 'B %s\n' "$(measure "$b" $m)"
  done
done
