#!/usr/bin/env bash
# Calibrates the shipped server model (profiles/models/reference-2core.toml): the capacity
# profile against the embedded reference server, run as its own process (so its CPU is its
# own), at a third, two thirds and all of the profile's 15,000 chains/s, then
# `ackstorm calibrate` over the three runs. Loopback only; about 90 s. Run it on an idle box.
#
#   scripts/calibrate-reference.sh [OUT]     (default: profiles/models/reference-2core.toml)
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-profiles/models/reference-2core.toml}
cargo build --release --quiet
bin=target/release/ackstorm
root=results/calibration-$(date -u +%Y%m%dT%H%M%SZ)
dirs=()
for rate in 1500 3000 4500; do
  "$bin" run profiles/capacity.toml --no-progress --results "$root" \
    --set 'target.embedded="child-process"' --set "traffic.one_to_one_per_min=$rate" >/dev/null
  dirs+=("$(ls -d "$root"/capacity-* | tail -1)")
  # Each run gets its own folder name (they are stamped by the second).
  sleep 1
done
"$bin" calibrate "${dirs[@]}" --out "$out" --name "ackstorm reference server, 2-core box, tester on the same box"
