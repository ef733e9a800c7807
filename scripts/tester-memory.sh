#!/usr/bin/env bash
# Tester memory per idle connected user.
#
# Starts `ackstorm serve` on a free loopback port (its own process, so the tester's RSS is
# its own), runs `ackstorm run profiles/idle.toml` against it with N users, waits until the
# server counts all of them logged in, samples the tester's VmRSS for a few seconds and takes
# the median. Then the same with BASE users (default 100: the tester's own baseline, its
# runtime, world and collector with few users), and prints
#   (median RSS with N users - median RSS with BASE users) / (N - BASE)
# in KiB per user. With N equal to BASE it prints the one RSS. Everything runs on loopback and
# stops by itself (everything it started is killed on exit).
#
# Usage: scripts/tester-memory.sh [N] [BIN]
#   N    users (default 10000; at most ~19,000: the hard file limit is per process)
#   BIN  the ackstorm binary (default target/release/ackstorm; build it with
#        `cargo build --release` first: this script builds nothing)
# Environment: BASE users of the baseline (default 100), SETTLE seconds after the last login
# (default 3), SAMPLES one-second RSS samples (default 5), RUN_ARGS more arguments for
# `ackstorm run` (e.g. RUN_ARGS="--shard 0/1 --run-id m": a shard, writing its event log).
set -euo pipefail

N=${1:-10000}
BIN=${2:-target/release/ackstorm}
BASE=${BASE:-100}
SETTLE=${SETTLE:-3}
SAMPLES=${SAMPLES:-5}
cd "$(dirname "$0")/.."

[ -x "$BIN" ] || { echo "no $BIN: run cargo build --release first" >&2; exit 1; }
ulimit -n "$(ulimit -Hn)"

rss_kib() { awk '/^VmRSS:/ {print $2}' "/proc/$1/status"; }

RESULTS=$(mktemp -d)
SERVER=""
TESTER=""
stop() {
    [ -n "$TESTER" ] && kill "$TESTER" 2>/dev/null || true
    [ -n "$SERVER" ] && kill "$SERVER" 2>/dev/null || true
    wait 2>/dev/null || true
    TESTER=""
    SERVER=""
}
cleanup() {
    stop
    rm -rf "$RESULTS"
}
trap cleanup EXIT

# measure USERS: sets MEDIAN to the tester's median VmRSS (KiB) with USERS idle users logged in.
MEDIAN=""
measure() {
    local users=$1 addr="" logged
    # A fresh log: the address is read from it before the server may have opened it.
    rm -f "$RESULTS/server.log"
    "$BIN" serve --listen 127.0.0.1:0 --secret s --rate-limit 0 >"$RESULTS/server.log" 2>&1 &
    SERVER=$!
    for _ in $(seq 100); do
        addr=$(awk '/^listening on / {print $3; exit}' "$RESULTS/server.log" 2>/dev/null || true)
        [ -n "$addr" ] && break
        sleep 0.1
    done
    [ -n "$addr" ] || { echo "server did not start" >&2; cat "$RESULTS/server.log" >&2; exit 1; }
    logged_in() { curl -fsS "http://$addr/metrics" 2>/dev/null | awk '$1 == "ackstorm_logged_in" {print $2}' || true; }

    # Long enough a steady phase to ramp (2,000 users/s), settle and sample.
    local duration=$((users / 2000 + SETTLE + SAMPLES + 15))
    "$BIN" run profiles/idle.toml --target "ws://$addr/ws" --secret s --users "$users" \
        --duration "${duration}s" --no-progress --results "$RESULTS" ${RUN_ARGS:-} >"$RESULTS/tester.log" 2>&1 &
    TESTER=$!

    local deadline=$((SECONDS + duration))
    while logged=$(logged_in) && [ "$logged" != "$users" ]; do
        if [ $SECONDS -ge $deadline ] || ! kill -0 "$TESTER" 2>/dev/null; then
            echo "only $logged of $users logged in" >&2
            tail -20 "$RESULTS/tester.log" >&2
            exit 1
        fi
        sleep 0.5
    done
    sleep "$SETTLE"
    local samples=()
    for _ in $(seq "$SAMPLES"); do
        samples+=("$(rss_kib "$TESTER")")
        sleep 1
    done
    [ "$(logged_in)" = "$users" ] || { echo "connections dropped while sampling: $(logged_in) of $users" >&2; exit 1; }
    stop
    MEDIAN=$(printf '%s\n' "${samples[@]}" | sort -n | awk '{a[NR] = $1} END {print a[int((NR + 1) / 2)]}')
}

measure "$N"
LOADED=$MEDIAN
if [ "$N" = "$BASE" ]; then
    awk -v n="$N" -v rss="$LOADED" 'BEGIN { printf "tester RSS with %d idle users %.1f MiB\n", n, rss / 1024 }'
    exit 0
fi
measure "$BASE"
BASELINE=$MEDIAN
awk -v n="$N" -v b="$BASE" -v loaded="$LOADED" -v base="$BASELINE" 'BEGIN {
    printf "tester RSS with %d idle users %.1f MiB, with %d %.1f MiB: %.2f KiB per user\n",
        b, base / 1024, n, loaded / 1024, (loaded - base) / (n - b)
}'
