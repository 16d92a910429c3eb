#!/usr/bin/env bash
# scripts/bench-ab-rust.sh RUNS BINARY... : the Rust guard vs raw pthread rows of two or more
# builds of the crate's `bench` example, run alternately (A B, B A, ...) so that every build sees
# the same machine noise. On a shared machine the raw pair alone moves 2x between runs; the
# ratio each run prints (guard / raw, measured in the same process) is the figure to compare.
#
# Build a binary per commit with
#   cargo build --release --locked -p robust-mutex --example bench
# and copy target/release/examples/bench aside (e.g. /tmp/bench-main, /tmp/bench-new). Prints
# the median, over the runs, of each build's raw, lock+drop and try_lock+drop ns and ratios.
# Each run is the example's own median of 7 trials of ITERATIONS (default 1,000,000).
set -euo pipefail

if (( $# < 2 )); then
  echo "usage: $0 RUNS BINARY [BINARY...]   (ITERATIONS=n to change the loop length)" >&2
  exit 2
fi
runs=$1
shift
iterations=${ITERATIONS:-1000000}

for ((i = 0; i < runs; i++)); do
  if (( i % 2 )); then order=$(printf '%s\n' "$@" | tac); else order=$(printf '%s\n' "$@"); fi
  while read -r binary; do
    out=$("$binary" "$iterations")
    # "result backend=pthread lock_ns=.. try_ns=.." plus the raw row's ns.
    raw=$(awk '/raw pthread/ { print $(NF-2) }' <<<"$out")
    lock=$(sed -n 's/.*lock_ns=\([0-9.]*\).*/\1/p' <<<"$out")
    try=$(sed -n 's/.*try_ns=\([0-9.]*\).*/\1/p' <<<"$out")
    echo "$binary $raw $lock $try"
  done <<<"$order"
done | python3 -c '
import collections, statistics, sys
runs = collections.defaultdict(list)
for line in sys.stdin:
    binary, raw, lock, try_ = line.split()
    runs[binary].append((float(raw), float(lock), float(try_)))
for binary, xs in runs.items():
    med = lambda f: statistics.median(f(x) for x in xs)
    print(f"{binary}: {len(xs)} runs, medians: raw {med(lambda x: x[0]):.2f} ns   "
          f"lock+drop {med(lambda x: x[1]):.2f} ns ({med(lambda x: x[1] / x[0]):.2f}x raw)   "
          f"try_lock+drop {med(lambda x: x[2]):.2f} ns ({med(lambda x: x[2] / x[0]):.2f}x raw)")
'
