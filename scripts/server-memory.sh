#!/usr/bin/env bash
# Server memory per idle logged-in connection.
#
# Starts `ackstorm serve` on 127.0.0.1:$PORT, reads its VmRSS idle, connects N idle users
# with `ackstorm run profiles/idle.toml` (another process), waits until the server counts all
# of them logged in, samples its VmRSS for a few seconds and prints
#   (median RSS with N logged in - idle RSS) / N
# in KiB per connection. Everything runs on loopback and stops by itself.
#
# Usage: scripts/server-memory.sh [N] [BIN]
#   N    users (default 10000; at most ~19,000: the hard file limit is per process)
#   BIN  the ackstorm binary (default target/release/ackstorm; build it with
#        `cargo build --release` first)
# Environment: PORT (default 9400), SETTLE seconds after the last login (default 3),
# SAMPLES one-second RSS samples (default 5).
set -euo pipefail

N=${1:-10000}
BIN=${2:-target/release/ackstorm}
PORT=${PORT:-9400}
SETTLE=${SETTLE:-3}
SAMPLES=${SAMPLES:-5}
cd "$(dirname "$0")/.."

[ -x "$BIN" ] || { echo "no $BIN: run cargo build --release first" >&2; exit 1; }
ulimit -n "$(ulimit -Hn)"

rss_kib() { awk '/^VmRSS:/ {print $2}' "/proc/$1/status"; }
logged_in() { curl -fsS "http://127.0.0.1:$PORT/metrics" 2>/dev/null | awk '$1 == "ackstorm_logged_in" {print $2}'; }

RESULTS=$(mktemp -d)
SERVER=""
TESTER=""
cleanup() {
    [ -n "$TESTER" ] && kill "$TESTER" 2>/dev/null || true
    [ -n "$SERVER" ] && kill "$SERVER" 2>/dev/null || true
    wait 2>/dev/null || true
    rm -rf "$RESULTS"
}
trap cleanup EXIT

"$BIN" serve --listen "127.0.0.1:$PORT" --secret s --rate-limit 0 >"$RESULTS/server.log" 2>&1 &
SERVER=$!
for _ in $(seq 100); do
    curl -fsS "http://127.0.0.1:$PORT/healthz" >/dev/null 2>&1 && break
    sleep 0.1
done
curl -fsS "http://127.0.0.1:$PORT/healthz" >/dev/null || { echo "server did not start" >&2; cat "$RESULTS/server.log" >&2; exit 1; }
sleep 1
IDLE=$(rss_kib "$SERVER")

# Long enough a steady phase to ramp (2,000 users/s), settle and sample.
DURATION=$((N / 2000 + SETTLE + SAMPLES + 15))
"$BIN" run profiles/idle.toml --target "ws://127.0.0.1:$PORT/ws" --secret s --users "$N" \
    --duration "${DURATION}s" --no-progress --results "$RESULTS" >"$RESULTS/tester.log" 2>&1 &
TESTER=$!

deadline=$((SECONDS + DURATION))
while [ "$(logged_in)" != "$N" ]; do
    if [ $SECONDS -ge $deadline ] || ! kill -0 "$TESTER" 2>/dev/null; then
        echo "only $(logged_in) of $N logged in" >&2
        tail -20 "$RESULTS/tester.log" >&2
        exit 1
    fi
    sleep 0.5
done
sleep "$SETTLE"
samples=()
for _ in $(seq "$SAMPLES"); do
    samples+=("$(rss_kib "$SERVER")")
    sleep 1
done
[ "$(logged_in)" = "$N" ] || { echo "connections dropped while sampling: $(logged_in) of $N" >&2; exit 1; }
LOADED=$(printf '%s\n' "${samples[@]}" | sort -n | awk '{a[NR] = $1} END {print a[int((NR + 1) / 2)]}')

awk -v n="$N" -v idle="$IDLE" -v loaded="$LOADED" 'BEGIN {
    printf "server RSS idle %.1f MiB, with %d idle logged-in connections %.1f MiB: %.2f KiB per connection\n",
        idle / 1024, n, loaded / 1024, (loaded - idle) / n
}'
