#!/usr/bin/env python3
"""Tester memory drift of a run: RSS at minute 2 against the last minute of traffic.

Usage: scripts/rss-drift.py results/soak-*/summary.json
Reads the timeline's per-second `rss_mb` (the tester's own resident memory) and prints the
median over seconds 110-130 (minute 2), over the last 20 s of traffic, and their ratio.
"""
import json
import statistics
import sys

for path in sys.argv[1:]:
    s = json.load(open(path))
    tl = [p for p in s["timeline"] if p.get("rss_mb", 0) > 0]
    last_t = max(p["t"] for p in tl if p["messages"] > 0)
    m2 = statistics.median(p["rss_mb"] for p in tl if 110 <= p["t"] <= 130)
    last = statistics.median(p["rss_mb"] for p in tl if last_t - 20 <= p["t"] <= last_t)
    peak = max(p["rss_mb"] for p in tl)
    print(f"{path}: RSS minute 2 {m2:.1f} MiB, end {last:.1f} MiB, peak {peak:.1f} MiB, drift {100 * (last / m2 - 1):+.1f}%")
