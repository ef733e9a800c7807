#!/usr/bin/env bash
# Simulated against measured: for each socket run's results folder given, simulates the same
# effective profile with MODEL and prints p50/p99 of server_ack and read_receipt, measured and
# simulated, with their ratios. Loopback runs only feed it; simulations use no sockets.
#
#   scripts/sim-vs-run.sh MODEL RESULTS_DIR...
set -euo pipefail
cd "$(dirname "$0")/.."
model=$1; shift
bin=target/release/ackstorm
out=$(mktemp -d)
printf '%-10s %-13s %9s %9s %9s %9s %7s %7s\n' msg/s metric run_p50 sim_p50 run_p99 sim_p99 p50x p99x
for dir in "$@"; do
  "$bin" simulate "$dir/profile.toml" --model "$model" --no-progress --results "$out" >/dev/null 2>&1
  sim=$(ls -td "$out"/*/ | head -1)
  python3 - "$dir/summary.json" "$sim/summary.json" <<'PY'
import json, sys
run, sim = (json.load(open(p)) for p in sys.argv[1:3])
for m in ("server_ack", "read_receipt"):
    a, b = run["latencies"][m], sim["latencies"][m]
    print(f'{run["throughput"]["messages_per_sec"]:<10.0f} {m:<13} {a["p50"]:9.3f} {b["p50"]:9.3f} {a["p99"]:9.2f} {b["p99"]:9.2f} {b["p50"]/a["p50"]:7.2f} {b["p99"]/a["p99"]:7.2f}')
PY
done
rm -rf "$out"
