#!/usr/bin/env bash
# Instructions the server executes per job, counted by valgrind's
# callgrind: the same for the same binary and workload whatever else the
# machine is doing, so one run judges a change (perf's counters are not
# supported on every machine this runs on).
#
# The server runs under callgrind with instrumentation off; it is switched on
# just before each fixed workload and off after it, so start-up, shutdown
# and the wait between are not counted. Prints instructions per job for:
# unary enqueue, enqueue over the client's stream from 4 tasks, batches, and
# drain through the worker runtime; then the same for a plain tonic echo
# service (`jobq-bench echo-serve`) per unary call and per stream message
# with one in flight, the transport's floor for the first two.
#
#   cargo build --release -p jobq -p jobq-bench
#   benches/instructions.sh [DIR] [JOBS]      # DIR holds jobq and jobq-bench
#
# JOBQ_INSTRUCTIONS_KEEP=DIR keeps each workload's callgrind profile there,
# for `callgrind_annotate --inclusive=yes DIR/<workload>.cg`.
set -euo pipefail
dir=${1:-target/release}
jobs=${2:-4000}
port=${JOBQ_INSTRUCTIONS_PORT:-50081}
out=$(mktemp -d /tmp/jobq-callgrind.XXXXXX)
trap 'rm -rf "$out"' EXIT

command -v valgrind >/dev/null || { echo "valgrind is needed (Debian: apt-get install valgrind)"; exit 1; }
for binary in jobq jobq-bench; do
  [ -x "$dir/$binary" ] || { echo "no $dir/$binary: cargo build --release -p jobq -p jobq-bench"; exit 1; }
done

# Starts "$@" under callgrind, instrumentation off, and waits for its port.
start() {
  valgrind --tool=callgrind --instr-atstart=no --callgrind-out-file="$out/cg.%p" \
    "$@" >"$out/server.log" 2>&1 &
  pid=$!
  for _ in $(seq 600); do
    (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && return
    sleep 0.1
  done
  echo "the server under callgrind did not listen on $port:"
  cat "$out/server.log"
  exit 1
}

stop() {
  kill "$pid"
  wait "$pid" 2>/dev/null || true
}

# The instructions counted while jobq-bench "$@" ran.
count() {
  callgrind_control -z "$pid" >/dev/null 2>&1
  callgrind_control -i on "$pid" >/dev/null 2>&1
  "$dir/jobq-bench" --server "http://127.0.0.1:$port" --echo-server "http://127.0.0.1:$port" "$@" >/dev/null
  callgrind_control -i off "$pid" >/dev/null 2>&1
  callgrind_control -d "$pid" >/dev/null 2>&1
  local file
  file=$(ls -t "$out"/cg."$pid".* | head -n 1)
  grep -m1 '^totals:' "$file" | awk '{print $2}'
}

report() {
  printf '%-56s %10d instructions/job\n' "$1" "$2"
  [ -z "${JOBQ_INSTRUCTIONS_KEEP:-}" ] || cp "$(ls -t "$out"/cg."$pid".* | head -n 1)" "$JOBQ_INSTRUCTIONS_KEEP/$(echo "$1" | tr 'A-Z' 'a-z' | tr -c 'a-z0-9\n' '-').cg"
}

start "$dir/jobq" --listen "127.0.0.1:$port" --metrics-listen 127.0.0.1:0 --web-listen off \
  --queue-capacity 10000000 --memory-budget-bytes 8589934592
# Warm up the allocator, the queue and the connections' buffers first.
"$dir/jobq-bench" --server "http://127.0.0.1:$port" --jobs 500 --concurrency 4 enqueue --via stream >/dev/null
report "enqueue, unary, 4 tasks" $(($(count --jobs "$jobs" --concurrency 4 enqueue --via unary) / jobs))
report "enqueue, client stream, 4 tasks" $(($(count --jobs "$jobs" --concurrency 4 enqueue --via stream) / jobs))
# A drain first fills its queues in batches of 100: that share is
# measured alone and taken off.
batches=$(count --jobs "$jobs" --concurrency 4 enqueue --batch 100)
report "enqueue, 100 per BatchEnqueue" $((batches / jobs))
drained=$(count --jobs "$jobs" --concurrency 4 drain --mode worker --credits 4)
report "drain, worker runtime, 4 handlers (lease + ack)" $(((drained - batches) / jobs))
stop

start "$dir/jobq-bench" echo-serve --listen "127.0.0.1:$port"
"$dir/jobq-bench" --echo-server "http://127.0.0.1:$port" --jobs 500 baseline >/dev/null
report "echo baseline, unary, 4 tasks" $(($(count --jobs "$jobs" --concurrency 4 baseline --only unary) / jobs))
report "echo baseline, stream, 1 in flight, 4 tasks" $(($(count --jobs "$jobs" --concurrency 4 baseline --only ping-pong) / jobs))
stop
