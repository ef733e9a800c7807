#!/usr/bin/env bash
# The tester's own cost on a run: peak RSS per simulated user, and CPU time (user + system) per
# message stanza or frame it sent. It runs `ackstorm run PROFILE [ARGS...]` under GNU time
# (`/usr/bin/time`), then reads the run's summary.json for the users and the frames sent by
# kind. It prints both the raw figures and the ratios, e.g. for profiles/xmpp-load.toml against
# a Prosody started by scripts/xmpp-server.sh. It builds nothing and starts no server; the run
# itself stops by itself.
#
# Usage: scripts/tester-cost.sh PROFILE [ARGS...]   (ARGS go to `ackstorm run`)
# Environment: BIN the ackstorm binary (default target/release/ackstorm).
set -euo pipefail

[ $# -ge 1 ] || { echo "usage: $0 PROFILE [ARGS...]" >&2; exit 2; }
BIN=${BIN:-target/release/ackstorm}
cd "$(dirname "$0")/.."
[ -x "$BIN" ] || { echo "no $BIN: run cargo build --release first" >&2; exit 1; }
[ -x /usr/bin/time ] || { echo "GNU time is needed: apt-get install -y time" >&2; exit 1; }
ulimit -n "$(ulimit -Hn)"

results=$(mktemp -d)
stats=$(mktemp)
trap 'rm -rf "$results" "$stats"' EXIT

status=0
/usr/bin/time -f "%M %U %S" -o "$stats" "$BIN" run "$@" --no-progress --results "$results" >"$results/run.log" 2>&1 || status=$?
# GNU time puts "Command exited with non-zero status N" first when the run failed an SLO.
read -r peak_kib user_s sys_s < <(tail -n 1 "$stats")
summary=$(find "$results" -name summary.json | head -1)
[ -n "$summary" ] || { echo "the run wrote no summary (exit $status)" >&2; exit 1; }

python3 - "$summary" "$peak_kib" "$user_s" "$sys_s" "$status" <<'EOF'
import json, sys
path, peak_kib, user_s, sys_s, status = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), float(sys.argv[4]), sys.argv[5]
s = json.load(open(path))
users = s["plan"]["users"]
sent = s["counters"]["frames_sent_by_op"]
# XMPP: every <message/> the tester wrote (chat, groupchat, receipts, markers); native: sends,
# receipts and acks.
message_kinds = ["message", "groupchat", "received", "displayed", "send", "delivery", "read", "channel"]
messages = sum(v for k, v in sent.items() if k in message_kinds)
frames = sum(sent.values())
cpu_us = (user_s + sys_s) * 1e6
print(f"run exit {status}: {s['name']}, {users} users, {s['connections']['achieved']} logged in, audit lost {s['audit']['total']['lost']}")
achieved = s["connections"]["achieved"]
# Per logged-in user too: a saturated server logs in fewer, and those hold the connections.
per_logged_in = f", {peak_kib / achieved:.1f} per user logged in" if achieved else ""
print(f"tester peak RSS {peak_kib / 1024:.1f} MiB: {peak_kib / users:.1f} KiB per user{per_logged_in}")
print(f"tester CPU {user_s:.2f} s user + {sys_s:.2f} s system over {s['elapsed_secs']:.0f} s")
print(f"message stanzas sent {messages:,} ({', '.join(f'{k} {v:,}' for k, v in sorted(sent.items()))})")
if messages:
    print(f"CPU per message stanza sent: {cpu_us / messages:.0f} us; per frame sent: {cpu_us / frames:.0f} us")
EOF
if [ "$status" != 0 ]; then
    echo "--- the end of the run's output (exit $status):"
    tail -n 30 "$results/run.log"
fi
