//! A synthetic but plausible [`Report`] and [`Comparison`] for the renderer and schema tests:
//! every field set, curves consistent with their percentiles, a failed SLO and a warning so that
//! every part of a page has something to show.

use std::collections::BTreeMap;

use super::model::*;

/// A latency whose percentiles follow one curve: p50 at `p50`, growing as (1/(1-q))^`tail`.
fn latency(count: u64, p50: f64, tail: f64, uncorrected: bool) -> Latency {
    let at = |p: f64| p50 * (0.5 / (1.0 - p.min(99.999) / 100.0)).powf(tail);
    let grid = [
        0.0, 5.0, 10.0, 20.0, 30.0, 40.0, 50.0, 60.0, 70.0, 75.0, 80.0, 85.0, 90.0, 93.0, 95.0, 97.0, 98.0, 99.0, 99.5,
        99.7, 99.9, 99.95, 99.99, 99.995, 99.999, 100.0,
    ];
    let min = p50 * 0.35;
    let curve: Vec<(f64, f64)> = grid
        .iter()
        .map(|&p| (p, if p == 0.0 { min } else { at(p).max(min) }))
        .collect();
    let max = curve.last().map_or(p50, |c| c.1);
    Latency {
        count,
        min,
        mean: p50 * 1.3,
        p50,
        p90: at(90.0),
        p99: at(99.0),
        p999: at(99.9),
        max,
        curve,
        // Without the correction the tail is shorter: stalls hide the sends they delayed.
        uncorrected: uncorrected.then(|| Box::new(latency(count, p50 * 0.97, tail * 0.7, false))),
    }
}

fn counts(pairs: &[(&str, u64)]) -> BTreeMap<String, u64> {
    pairs.iter().map(|&(k, v)| (k.to_string(), v)).collect()
}

fn split(messages_read: u64, read_acks: u64, channel_acks: u64) -> AckSplit {
    let acks = read_acks + channel_acks;
    AckSplit {
        messages_read,
        read_acks,
        channel_acks,
        acks_per_read: acks as f64 / messages_read as f64,
        baseline_acks: messages_read,
        saving_pct: 100.0 * (1.0 - acks as f64 / messages_read as f64),
    }
}

fn audit(expected: u64, lost: u64, duplicated: u64, unexpected: u64) -> AuditKind {
    AuditKind {
        expected,
        arrived: expected - lost,
        lost,
        duplicated,
        unexpected,
    }
}

/// A 60 s run of the `batched` strategy with 2,000 users; one SLO fails (3 receipts lost) and the
/// generator fell behind for a few seconds.
pub(crate) fn sample_report() -> Report {
    let latencies: BTreeMap<String, Latency> = [
        ("server_ack", latency(71_940, 1.18, 0.32, true)),
        ("delivery", latency(69_480, 2.41, 0.34, true)),
        ("read_receipt", latency(52_310, 6.85, 0.42, true)),
        ("read", latency(52_310, 1_512.0, 0.18, true)),
        ("channel", latency(8_904, 4.92, 0.38, true)),
        ("group_read_first", latency(9_876, 812.0, 0.22, true)),
        ("group_read_all", latency(9_540, 2_630.0, 0.2, true)),
        ("schedule_lag", latency(71_940, 0.21, 0.6, false)),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    let (read_receipt_p99, read_p99) = (latencies["read_receipt"].p99, latencies["read"].p99);
    let timeline = (0..=75)
        .map(|s| {
            let t = s as f64;
            let ramp = (t / 10.0).min(1.0);
            let steady = if (10.0..70.0).contains(&t) { 1.0 } else { 0.0 };
            let wobble = 1.0 + 0.04 * (t * 0.9).sin() + 0.02 * (t * 2.3).cos();
            let stall = if (38.0..45.0).contains(&t) { 1.0 } else { 0.0 };
            let messages = (1_199.0 * steady * wobble * (1.0 - 0.12 * stall)).round() as u64;
            TimelinePoint {
                t,
                connected: if t <= 72.0 {
                    (3_800.0 * ramp).round() as u64
                } else {
                    3_800 - (t as u64 - 72) * 900
                },
                messages,
                acks: (messages as f64 * 0.41 * wobble).round() as u64,
                receipts: (messages as f64 * 1.52 + if t >= 70.0 { 300.0 / (t - 68.0) } else { 0.0 }).round() as u64,
                errors: if (39.0..42.0).contains(&t) { 2 } else { 0 },
                schedule_lag_p99: steady * (0.6 + 0.2 * (t * 1.7).sin().abs() + 14.0 * stall * (t - 37.0) / 7.0),
                read_receipt_p99: steady * (19.0 + 3.0 * (t * 0.7).sin() + 30.0 * stall),
            }
        })
        .collect();
    let frames_in = counts(&[
        ("ack", 29_410),
        ("channel_ack", 8_904),
        ("login", 3_800),
        ("send", 71_940),
    ]);
    let frames_out = counts(&[
        ("ack_ok", 38_314),
        ("message", 69_480),
        ("receipt", 109_300),
        ("send_ok", 71_940),
    ]);
    Report {
        schema_version: SCHEMA_VERSION,
        name: "office-hours".to_string(),
        started_at: "2026-11-01T14:03:12.345Z".to_string(),
        ended_at: "2026-11-01T14:04:27.901Z".to_string(),
        elapsed_secs: 75.6,
        plan: PlanSummary {
            strategy: "batched".to_string(),
            users: 2_000,
            devices_per_user: 2,
            groups: 120,
            seed: 42,
            duration_secs: 60.0,
            offered_one_to_one_per_sec: 1_000.0,
            offered_group_per_sec: 200.0,
            profile_hash: "9f86d081884c7d659a2feaa0c55ad015".to_string(),
        },
        target: TargetInfo {
            kind: "embedded".to_string(),
            url: "ws://127.0.0.1:9100/ws".to_string(),
            build_info: Some("version=0.1.0,commit=666cbd0".to_string()),
            label: Some("reference server, in-memory store".to_string()),
        },
        connections: Connections {
            asked: 4_000,
            achieved: 3_800,
            failed: 12,
            peak: 3_800,
            dropped: 3,
        },
        throughput: Throughput {
            messages_sent: 71_940,
            one_to_one_sent: 59_980,
            group_sent: 11_960,
            messages_per_sec: 1_199.0,
            skipped_offline: 1_830,
            frames_sent: 114_054,
            frames_received: 217_034,
            bytes_sent: 19_873_402,
            bytes_received: 61_204_877,
        },
        latencies,
        counters: Counters {
            frames_sent_by_op: frames_in.clone(),
            frames_received_by_op: frames_out.clone(),
            receipts_received: counts(&[
                ("channel", 8_870),
                ("delivery", 47_120),
                ("group_read", 9_540),
                ("read", 43_100),
                ("statistic", 670),
            ]),
            errors_by_code: counts(&[("rate_limited", 4), ("unknown_message", 2)]),
            error_rate: 6.0 / 114_054.0,
            rate_limited: 4,
            unparseable: 0,
        },
        ack_economics: AckEconomics {
            strategy: "batched".to_string(),
            one_to_one: split(48_200, 14_120, 6_350),
            group: split(31_400, 15_290, 2_554),
            total: split(79_600, 29_410, 8_904),
            server_frames: Some(ServerFrames {
                total_in: frames_in.values().sum(),
                total_out: frames_out.values().sum(),
                frames_in,
                frames_out,
            }),
        },
        audit: Audit {
            total: audit(109_303, 3, 1, 0),
            by_kind: [
                ("channel", audit(8_870, 0, 0, 0)),
                ("delivery", audit(47_123, 3, 0, 0)),
                ("group_read", audit(9_540, 0, 1, 0)),
                ("message", audit(69_480, 0, 0, 0)),
                ("read", audit(43_100, 0, 0, 0)),
            ]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect(),
            drain_secs: 5.0,
        },
        timeline,
        slo: vec![
            SloResult {
                check: "read_receipt.p99 < 50ms".to_string(),
                value: Some(read_receipt_p99),
                passed: true,
            },
            SloResult {
                check: "read.p99 < 5000ms".to_string(),
                value: Some(read_p99),
                passed: true,
            },
            SloResult {
                check: "error_rate < 0.1%".to_string(),
                value: Some(0.0053),
                passed: true,
            },
            SloResult {
                check: "audit.lost == 0".to_string(),
                value: Some(3.0),
                passed: false,
            },
        ],
        warnings: vec![
            "the generator was the bottleneck for 7 s (schedule_lag p99 up to 14 ms at t=44 s): latencies in that \
             window include the tester's own delay"
                .to_string(),
        ],
    }
}

/// `sample_report` under another strategy, its `read` latency scaled, for comparison pages.
pub(crate) fn sample_report_with(strategy: &str, read_scale: f64) -> Report {
    let mut r = sample_report();
    r.plan.strategy = strategy.to_string();
    r.ack_economics.strategy = strategy.to_string();
    let scale = |l: &mut Latency| {
        for v in [
            &mut l.min,
            &mut l.mean,
            &mut l.p50,
            &mut l.p90,
            &mut l.p99,
            &mut l.p999,
            &mut l.max,
        ] {
            *v *= read_scale;
        }
        l.curve.iter_mut().for_each(|c| c.1 *= read_scale);
    };
    if let Some(read) = r.latencies.get_mut("read") {
        scale(read);
        if let Some(u) = read.uncorrected.as_deref_mut() {
            scale(u);
        }
    }
    r
}

/// Three strategies over the sample workload.
pub(crate) fn sample_comparison() -> (Comparison, Vec<Report>) {
    let reports = vec![
        sample_report_with("per_message", 0.78),
        sample_report(),
        sample_report_with("channel_only", 1.48),
    ];
    let read = |i: usize| (reports[i].latencies["read"].p50, reports[i].latencies["read"].p99);
    let row = |strategy: &str, read_acks: u64, channel_acks: u64, (p50, p99): (f64, f64), server: Option<u64>| {
        let ack_frames = read_acks + channel_acks;
        StrategyRow {
            strategy: strategy.to_string(),
            results_dir: format!("results/office-hours-20261101T140312-{strategy}"),
            messages_sent: 71_940,
            messages_read: 79_600,
            read_acks,
            channel_acks,
            ack_frames,
            saving_vs_per_message_pct: (strategy != "per_message")
                .then(|| 100.0 * (1.0 - ack_frames as f64 / 79_600.0)),
            read_p50_ms: p50,
            read_p99_ms: p99,
            server_frames: server,
            lost: if strategy == "batched" { 3 } else { 0 },
        }
    };
    let comparison = Comparison {
        schema_version: SCHEMA_VERSION,
        name: "office-hours".to_string(),
        seed: 42,
        rows: vec![
            row("per_message", 79_600, 0, read(0), Some(401_300)),
            row("batched", 29_410, 8_904, read(1), Some(363_088)),
            row("channel_only", 0, 21_870, read(2), None),
        ],
    };
    (comparison, reports)
}
