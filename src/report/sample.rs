//! A synthetic but plausible [`Report`] and [`Comparison`] for the renderer and schema tests:
//! every field set, curves consistent with their percentiles, a failed SLO and a warning so that
//! every part of a page has something to show.

use std::collections::BTreeMap;

use super::bench::*;
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

/// One kind of the audit: `expected` of which `lost` and `lost_in_disconnect` never came.
fn audit(expected: u64, lost: u64, lost_in_disconnect: u64) -> AuditKind {
    AuditKind {
        expected,
        arrived: expected - lost - lost_in_disconnect,
        lost,
        lost_in_disconnect,
        ..Default::default()
    }
}

/// Connections the sample's `drop_connections` fault (200 at 30 s, over 2 s) has cut and not
/// yet seen back at second `t`; 3 never come back.
fn fault_dip(t: f64) -> u64 {
    match t as u64 {
        30 => 95,
        31 => 150,
        32 => 40,
        s if s >= 33 => 3,
        _ => 0,
    }
}

/// A 60 s run of the `batched` strategy with 2,000 users; one SLO fails (3 delivery receipts lost),
/// the generator fell behind for a few seconds (its CPU near a full core), a fault dropped 200
/// connections at 30 s (197 came back; 2 messages and a reply went down with them), and the
/// server refused 6 requests.
pub(crate) fn sample_report() -> Report {
    let latencies: BTreeMap<String, Latency> = [
        ("server_ack", latency(71_940, 1.18, 0.32, true)),
        ("message", latency(69_478, 1.64, 0.33, true)),
        ("message_offline", latency(1_204, 3_870.0, 0.25, true)),
        ("delivery", latency(69_480, 2.41, 0.34, true)),
        ("read_receipt", latency(52_310, 6.85, 0.42, true)),
        ("read", latency(52_310, 1_512.0, 0.18, true)),
        ("channel", latency(8_904, 4.92, 0.38, true)),
        ("channel_sync", latency(4_410, 5.31, 0.38, true)),
        ("group_read_first", latency(9_876, 812.0, 0.22, true)),
        ("group_read_all", latency(9_540, 2_630.0, 0.2, true)),
        ("read_users_page", latency(1_320, 3.9, 0.3, false)),
        ("read_users", latency(610, 8.7, 0.3, false)),
        ("reconnect", latency(200, 420.0, 0.35, false)),
        ("schedule_lag", latency(71_940, 0.21, 0.6, false)),
        ("ack_lag", latency(38_314, 0.14, 0.55, false)),
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
                    (3_800.0 * ramp).round() as u64 - fault_dip(t)
                } else {
                    3_797 - (t as u64 - 72) * 900
                },
                messages,
                acks: (messages as f64 * 0.41 * wobble).round() as u64,
                receipts: (messages as f64 * 1.52 + if t >= 70.0 { 300.0 / (t - 68.0) } else { 0.0 }).round() as u64,
                errors: if (39.0..42.0).contains(&t) { 2 } else { 0 },
                schedule_lag_p99: steady * (0.6 + 0.2 * (t * 1.7).sin().abs() + 14.0 * stall * (t - 37.0) / 7.0),
                rss_mb: 38.0 + 54.0 * ramp + 0.08 * t * steady,
                cpu_pct: 6.0 + 64.0 * steady * wobble + 30.0 * stall,
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
            protocol: "native".to_string(),
            not_available: Vec::new(),
            server_cpu_secs: None,
        },
        connections: Connections {
            asked: 4_000,
            achieved: 3_800,
            failed: 12,
            peak: 3_800,
            dropped: 203,
            reconnects: 200,
            resent: 14,
        },
        throughput: Throughput {
            messages_sent: 71_940,
            one_to_one_sent: 59_980,
            group_sent: 11_960,
            messages_per_sec: 1_199.0,
            skipped_offline: 1_830,
            skipped_disconnected: 37,
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
            unparseable: 2,
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
        audit: sample_audit(),
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
        interrupted: false,
        faults: vec![FaultReport {
            kind: "drop_connections".to_string(),
            at_secs: 30.0,
            over_secs: 2.0,
            planned: 200,
            done: 200,
            recovered: 197,
            recovery_p50_ms: 420.0,
            recovery_max_ms: 2_310.0,
            lost: 0,
            lost_in_disconnect: 3,
        }],
        shards: None,
        simulation: None,
    }
}

/// The sample's audit, every kind the collector knows, the total their sum: 3 delivery receipts
/// lost, 1 of them still awaited at the end; 2 messages and a reply lost with the dropped
/// connections; 6 requests refused (the errors of [`Counters::errors_by_code`]); messages for
/// users who never came back not due; a duplicated group count, a late read receipt and an
/// unexpected statistic.
fn sample_audit() -> Audit {
    let reply = AuditKind {
        refused: 6,
        ..audit(114_054, 0, 1)
    };
    let message = AuditKind {
        not_due: 1_830,
        ..audit(69_480, 0, 2)
    };
    let read = AuditKind {
        late: 1,
        ..audit(43_100, 0, 0)
    };
    let group_read = AuditKind {
        duplicated: 1,
        ..audit(9_540, 0, 0)
    };
    let statistic = AuditKind {
        unexpected: 1,
        not_due: 12,
        ..audit(670, 0, 0)
    };
    let by_kind: BTreeMap<String, AuditKind> = [
        ("reply", reply),
        ("message", message),
        (
            "delivery",
            AuditKind {
                lost_at_end: 1,
                ..audit(47_123, 3, 0)
            },
        ),
        ("read", read),
        ("channel", audit(8_870, 0, 0)),
        ("channel_sync", audit(4_410, 0, 0)),
        ("group_read", group_read),
        ("statistic", statistic),
        ("read_users", audit(610, 0, 0)),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    let mut total = AuditKind::default();
    by_kind.values().for_each(|k| total.add(k));
    Audit {
        total,
        by_kind,
        refused_by_code: counts(&[("rate_limited", 4), ("unknown_message", 2)]),
        protocol_errors: counts(&[("bad_frame", 0), ("binary", 0), ("invalid_json", 0), ("unknown_op", 2)]),
        drain_secs: 5.0,
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

/// One row of a sample comparison; the interval is `(B - A) ± half`.
#[allow(clippy::too_many_arguments)]
fn delta(
    metric: &str,
    unit: &str,
    better: Better,
    a: f64,
    b: f64,
    half: f64,
    threshold: f64,
    gated: bool,
) -> MetricDelta {
    let diff = b - a;
    let delta_pct = (a != 0.0).then(|| 100.0 * diff / a);
    let beyond_noise = diff.abs() > half;
    let worse = match better {
        Better::Lower => diff > 0.0,
        Better::Higher => diff < 0.0,
    };
    MetricDelta {
        metric: metric.to_string(),
        unit: unit.to_string(),
        better,
        a,
        b,
        delta_pct,
        ci_low: diff - half,
        ci_high: diff + half,
        beyond_noise,
        regression: worse && beyond_noise && delta_pct.is_none_or(|d| d.abs() > threshold),
        gated,
    }
}

/// `main` against a pull request over five runs each, gated at 5% on `compare`'s default
/// metrics: `read_receipt.p99`, `server_ack.p99` and `audit.lost` regress past the threshold,
/// `channel.p99` too but ungated, `read_receipt.p50` is worse but under it, `schedule_lag.p99`
/// is better, the rest is noise.
pub(crate) fn sample_compare() -> CompareReport {
    let t = 5.0;
    let (lo, hi) = (Better::Lower, Better::Higher);
    let rows = vec![
        delta("server_ack.p50", "ms", lo, 1.18, 1.21, 0.05, t, false),
        delta("server_ack.p99", "ms", lo, 4.13, 4.42, 0.19, t, true),
        delta("delivery.p50", "ms", lo, 2.41, 2.39, 0.06, t, false),
        delta("delivery.p99", "ms", lo, 9.11, 9.52, 0.74, t, true),
        delta("read_receipt.p50", "ms", lo, 6.85, 7.04, 0.11, t, false),
        delta("read_receipt.p99", "ms", lo, 35.4, 41.9, 2.6, t, true),
        delta("read.p50", "ms", lo, 1_512.0, 1_498.0, 31.0, t, false),
        delta("read.p99", "ms", lo, 3_057.0, 3_102.0, 88.0, t, false),
        delta("channel.p50", "ms", lo, 4.92, 5.01, 0.2, t, false),
        delta("channel.p99", "ms", lo, 21.8, 24.6, 1.3, t, false),
        delta("schedule_lag.p50", "ms", lo, 0.21, 0.2, 0.02, t, false),
        delta("schedule_lag.p99", "ms", lo, 2.2, 1.64, 0.31, t, false),
        delta(
            "throughput.messages_per_sec",
            "msg/s",
            hi,
            1_199.0,
            1_187.0,
            21.0,
            t,
            true,
        ),
        delta("errors.rate", "%", lo, 0.0053, 0.0061, 0.0021, t, true),
        delta("audit.lost", "count", lo, 0.6, 2.4, 1.1, t, true),
        delta("audit.duplicated", "count", lo, 0.0, 0.2, 0.4, t, false),
        delta("connections.failed", "count", lo, 12.0, 12.4, 1.9, t, false),
        delta("ack.acks_per_read", "acks/read", lo, 0.48, 0.48, 0.004, t, false),
        delta("ack.saving_pct", "%", hi, 51.9, 52.1, 0.6, t, false),
    ];
    let failed = rows.iter().any(|r| r.regression && r.gated);
    CompareReport {
        a: Side {
            path: "results/bench/main".to_string(),
            label: "main@3f2a1c9".to_string(),
            runs: 5,
            build_info: Some("version=0.1.0,commit=3f2a1c9".to_string()),
            profile_hash: "9f86d081884c7d659a2feaa0c55ad015".to_string(),
        },
        b: Side {
            path: "results/bench/pr-412".to_string(),
            label: "pr-412@8be01d7".to_string(),
            runs: 5,
            build_info: Some("version=0.1.0,commit=8be01d7,dirty".to_string()),
            profile_hash: "9f86d081884c7d659a2feaa0c55ad015".to_string(),
        },
        noise: "repeated-runs".to_string(),
        threshold_pct: Some(t),
        rows,
        warnings: vec!["read_receipt.p999 is missing on side A (runs from before 0.1.0); not compared".to_string()],
        failed,
    }
}

/// Single runs (bootstrap noise) of two different workloads, gated at 25%; `audit.lost` is
/// ungated here, so nothing gated regressed.
pub(crate) fn sample_compare_other_workload() -> CompareReport {
    let mut r = sample_compare();
    r.a.runs = 1;
    r.b.runs = 1;
    r.b.build_info = None;
    r.b.profile_hash = "1b4f0e9851971998e732078544c96b36".to_string();
    r.noise = "bootstrap".to_string();
    r.threshold_pct = Some(25.0);
    r.warnings.clear();
    for row in &mut r.rows {
        row.regression &= row.delta_pct.is_none_or(|d| d.abs() > 25.0);
        row.gated &= row.metric != "audit.lost";
    }
    r.failed = false;
    r
}

/// One capacity step, its SLO value being the `read_receipt` p99 (`rr` is p50, p99); it passed
/// unless it has a `limit`.
fn step(
    load: f64,
    offered: f64,
    achieved: f64,
    rr: (f64, f64),
    ack_p99: f64,
    lag_p99: f64,
    limit: Option<Limit>,
) -> CapacityStep {
    CapacityStep {
        load,
        offered_per_sec: offered,
        achieved_per_sec: achieved,
        value: Some(rr.1),
        read_receipt_p50: rr.0,
        read_receipt_p99: rr.1,
        server_ack_p99: ack_p99,
        schedule_lag_p99: lag_p99,
        connections_failed: 0,
        passed: limit.is_none(),
        limit,
        results_dir: format!("results/capacity-20261101T150000/users-{load}"),
    }
}

/// A search over users (4 msg/s each) with a knee near 10,000 msg/s: doubling up to 4,000 users
/// (failed), then bisecting; the server is the limit at 2,500 users.
pub(crate) fn sample_capacity() -> CapacityReport {
    let s = Some(Limit::ServerSaturated);
    CapacityReport {
        name: "capacity".to_string(),
        vary: "users".to_string(),
        slo: vec![
            "read_receipt.p99 < 20ms".to_string(),
            "schedule_lag.p99 < 10ms".to_string(),
            "audit.lost == 0".to_string(),
        ],
        steps: vec![
            step(250.0, 1_000.0, 998.0, (2.1, 6.1), 1.02, 0.41, None),
            step(500.0, 2_000.0, 1_997.0, (2.3, 6.8), 1.1, 0.45, None),
            step(1_000.0, 4_000.0, 3_995.0, (2.8, 8.2), 1.31, 0.62, None),
            step(2_000.0, 8_000.0, 7_986.0, (4.1, 12.5), 2.05, 1.1, None),
            step(4_000.0, 16_000.0, 13_870.0, (61.0, 262.0), 48.0, 4.8, s),
            step(3_000.0, 12_000.0, 11_820.0, (11.8, 48.3), 9.6, 2.3, s),
            step(2_500.0, 10_000.0, 9_978.0, (5.6, 17.9), 3.4, 1.6, None),
        ],
        capacity: Some(2_500.0),
        capacity_per_sec: Some(10_000.0),
        limit: Limit::ServerSaturated,
        summary: "2,500 users (10,000 msg/s offered) held read_receipt.p99 < 20ms; at 3,000 users the server \
                  saturated (p99 48.3 ms) while the generator kept its schedule."
            .to_string(),
    }
}

/// The same search where the tester falls behind first: schedule lag breaks its SLO at 3,000
/// users while the server's latencies still hold.
pub(crate) fn sample_capacity_generator() -> CapacityReport {
    let mut r = sample_capacity();
    let g = Some(Limit::GeneratorSaturated);
    r.slo = vec![
        "schedule_lag.p99 < 10ms".to_string(),
        "read_receipt.p99 < 50ms".to_string(),
    ];
    for s in &mut r.steps {
        let over = (s.offered_per_sec / 10_000.0).powi(4);
        s.schedule_lag_p99 = 0.4 + 7.0 * over;
        s.read_receipt_p99 = 6.0 + 6.0 * over;
        s.read_receipt_p50 = 2.0 + 1.5 * over;
        s.server_ack_p99 = 1.0 + 1.2 * over;
        s.achieved_per_sec = s.offered_per_sec * (1.0 - 0.035 * (over - 1.0).clamp(0.0, 4.0));
        s.value = Some(s.schedule_lag_p99);
        s.passed = s.schedule_lag_p99 < 10.0;
        s.limit = if s.passed { None } else { g };
    }
    r.steps[4].connections_failed = 37;
    r.capacity = Some(2_500.0);
    r.capacity_per_sec = Some(10_000.0);
    r.limit = Limit::GeneratorSaturated;
    r.summary = format!(
        "2,500 users (10,000 msg/s offered) held every SLO; at 3,000 users the generator fell behind its schedule \
         (schedule_lag p99 {:.1} ms) before the server's latencies moved: the server's capacity is at least this.",
        r.steps[5].schedule_lag_p99
    );
    r
}
