//! `compare` on synthetic results folders with known deltas.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, SystemTime};

use hdrhistogram::serialization::V2DeflateSerializer;
use hdrhistogram::serialization::interval_log::{IntervalLogWriterBuilder, Tag};

use super::*;
use crate::report::*;

fn latency(p50: f64, p99: f64) -> Latency {
    Latency {
        count: 1000,
        min: p50 / 2.0,
        mean: p50,
        p50,
        p90: p99 * 0.8,
        p99,
        p999: p99,
        max: p99 * 1.2,
        curve: vec![],
        uncorrected: None,
    }
}

/// A run summary with the given figures; everything else plausible and equal.
fn summary(read_receipt_p99: f64, server_ack_p99: f64, msgs_per_sec: f64, lost: u64, hash: &str) -> Report {
    let mut latencies = BTreeMap::new();
    latencies.insert(
        "read_receipt".to_string(),
        latency(read_receipt_p99 / 4.0, read_receipt_p99),
    );
    latencies.insert("server_ack".to_string(), latency(server_ack_p99 / 4.0, server_ack_p99));
    latencies.insert("delivery".to_string(), latency(2.0, 8.0));
    latencies.insert("channel".to_string(), Latency::default());
    let timeline = (0..20)
        .map(|t| TimelinePoint {
            t: t as f64,
            messages: msgs_per_sec as u64 + (t % 3),
            ..Default::default()
        })
        .collect();
    Report {
        schema_version: SCHEMA_VERSION,
        name: "t".into(),
        started_at: "2026-11-25T00:00:00Z".into(),
        ended_at: "2026-11-25T00:00:20Z".into(),
        elapsed_secs: 20.0,
        plan: PlanSummary {
            strategy: "hybrid".into(),
            users: 10,
            devices_per_user: 1,
            groups: 0,
            seed: 1,
            duration_secs: 18.0,
            offered_one_to_one_per_sec: msgs_per_sec,
            offered_group_per_sec: 0.0,
            profile_hash: hash.into(),
        },
        target: TargetInfo {
            kind: "external".into(),
            url: "ws://127.0.0.1:1/ws".into(),
            build_info: None,
            label: None,
            protocol: "native".into(),
            not_available: Vec::new(),
            server_cpu_secs: None,
        },
        connections: Connections {
            asked: 10,
            achieved: 10,
            ..Default::default()
        },
        throughput: Throughput {
            messages_per_sec: msgs_per_sec,
            messages_sent: 100,
            ..Default::default()
        },
        latencies,
        counters: Counters::default(),
        ack_economics: AckEconomics::default(),
        audit: Audit {
            total: AuditKind {
                lost,
                ..Default::default()
            },
            by_kind: BTreeMap::new(),
            drain_secs: 1.0,
            ..Default::default()
        },
        timeline,
        slo: vec![],
        warnings: vec![],
        interrupted: false,
        faults: Vec::new(),
        shards: None,
        simulation: None,
    }
}

fn write_run(dir: &Path, r: &Report, hlog: Option<&[Vec<u64>]>) {
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(dir.join("summary.json"), serde_json::to_string(r).unwrap()).unwrap();
    let Some(seconds) = hlog else { return };
    let mut out = Vec::new();
    let mut ser = V2DeflateSerializer::new();
    {
        let mut b = IntervalLogWriterBuilder::new();
        b.with_base_time(SystemTime::UNIX_EPOCH);
        let mut w = b.begin_log_with(&mut out, &mut ser).unwrap();
        for (i, values) in seconds.iter().enumerate() {
            let mut h = Histogram::<u64>::new_with_bounds(1, 3_600_000_000, 3).unwrap();
            for v in values {
                h.record(*v).unwrap();
            }
            w.write_histogram(
                &h,
                Duration::from_secs(i as u64),
                Duration::from_secs(1),
                Tag::new("read_receipt"),
            )
            .unwrap();
        }
    }
    std::fs::write(dir.join("latencies.hlog"), out).unwrap();
}

fn row<'a>(r: &'a CompareReport, metric: &str) -> &'a MetricDelta {
    r.rows
        .iter()
        .find(|x| x.metric == metric)
        .unwrap_or_else(|| panic!("no row {metric}"))
}

#[test]
fn repeated_runs_tell_a_real_regression_from_noise() {
    let tmp = tempfile::tempdir().unwrap();
    let (a, b) = (tmp.path().join("a"), tmp.path().join("b"));
    for (i, (rr, sa, rate)) in [(10.0, 5.0, 1000.0), (10.5, 5.2, 1004.0), (9.8, 4.9, 998.0)]
        .iter()
        .enumerate()
    {
        write_run(
            &a.join(format!("run-{}", i + 1)),
            &summary(*rr, *sa, *rate, 0, "h1"),
            None,
        );
    }
    // B: read_receipt p99 +50% (a regression), server_ack p99 -20% (better), throughput equal.
    for (i, (rr, sa, rate)) in [(15.0, 4.0, 1001.0), (15.2, 4.1, 997.0), (14.9, 3.9, 1003.0)]
        .iter()
        .enumerate()
    {
        write_run(
            &b.join(format!("run-{}", i + 1)),
            &summary(*rr, *sa, *rate, 0, "h1"),
            None,
        );
    }
    let r = compare(
        &a,
        &b,
        &Options {
            threshold_pct: Some(5.0),
            gate: vec![],
        },
    )
    .unwrap();
    assert_eq!(r.noise, "repeated-runs");
    assert_eq!((r.a.runs, r.b.runs), (3, 3));
    let rr = row(&r, "read_receipt.p99");
    assert!(rr.beyond_noise && rr.regression && rr.gated, "{rr:?}");
    assert!((rr.delta_pct.unwrap() - 48.4).abs() < 1.0, "{rr:?}");
    let sa = row(&r, "server_ack.p99");
    assert!(sa.beyond_noise && !sa.regression, "better is not a regression: {sa:?}");
    let tp = row(&r, "throughput.messages_per_sec");
    assert!(!tp.beyond_noise && !tp.regression, "{tp:?}");
    assert!(r.failed);
    assert!(r.rows.iter().all(|x| x.metric != "channel.p99"), "no samples, no row");

    // The same comparison without a threshold reports but does not fail; a 60% threshold passes.
    assert!(!compare(&a, &b, &Options::default()).unwrap().failed);
    assert!(
        !compare(
            &a,
            &b,
            &Options {
                threshold_pct: Some(60.0),
                gate: vec![]
            }
        )
        .unwrap()
        .failed
    );
    // Gating only server_ack.p99 (which improved) passes.
    let only = Options {
        threshold_pct: Some(5.0),
        gate: vec!["server_ack.p99".into()],
    };
    assert!(!compare(&a, &b, &only).unwrap().failed);
}

#[test]
fn single_runs_use_a_block_bootstrap_over_seconds() {
    let tmp = tempfile::tempdir().unwrap();
    let seconds = |tail: u64| -> Vec<Vec<u64>> {
        (0..20)
            .map(|s| {
                (0..200)
                    .map(|i| if i % 50 == 0 { tail + s * 37 } else { 1000 + i * 10 })
                    .collect()
            })
            .collect()
    };
    let (a, b, c) = (tmp.path().join("a"), tmp.path().join("b"), tmp.path().join("c"));
    write_run(&a, &summary(20.0, 5.0, 1000.0, 0, "h1"), Some(&seconds(20_000)));
    write_run(&b, &summary(40.0, 5.0, 1000.0, 2, "h1"), Some(&seconds(40_000)));
    write_run(&c, &summary(20.0, 5.0, 1000.0, 0, "h1"), Some(&seconds(20_000)));
    let r = compare(
        &a,
        &b,
        &Options {
            threshold_pct: Some(5.0),
            gate: vec![],
        },
    )
    .unwrap();
    assert_eq!(r.noise, "bootstrap");
    let rr = row(&r, "read_receipt.p99");
    assert!(rr.beyond_noise && rr.ci_low > 10.0, "the tail doubled: {rr:?}");
    let lost = row(&r, "audit.lost");
    assert!(
        lost.regression && lost.delta_pct.is_none(),
        "from 0 to 2 lost: {lost:?}"
    );
    assert!(r.failed);
    let same = compare(
        &a,
        &c,
        &Options {
            threshold_pct: Some(5.0),
            gate: vec![],
        },
    )
    .unwrap();
    assert!(!row(&same, "read_receipt.p99").beyond_noise);
    assert!(!same.failed);
}

#[test]
fn a_simulated_side_is_named_as_one() {
    let tmp = tempfile::tempdir().unwrap();
    let (a, b) = (tmp.path().join("a"), tmp.path().join("b"));
    let mut sim = summary(10.0, 5.0, 1000.0, 0, "h1");
    sim.simulation = Some(crate::report::Simulation {
        model: crate::report::SimModel {
            name: "ref-2core".into(),
            ..Default::default()
        },
        ..Default::default()
    });
    write_run(&a, &sim, None);
    write_run(&b, &summary(10.0, 5.0, 1000.0, 0, "h1"), None);
    let r = compare(&a, &b, &Options::default()).unwrap();
    let named: Vec<&String> = r.warnings.iter().filter(|w| w.contains("simulation")).collect();
    assert_eq!(named.len(), 1, "{:?}", r.warnings);
    assert!(named[0].starts_with("A is a simulation") && named[0].contains("ref-2core"));
}

#[test]
fn different_workloads_are_flagged_and_bad_input_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let (a, b) = (tmp.path().join("a"), tmp.path().join("b"));
    write_run(&a, &summary(10.0, 5.0, 1000.0, 0, "h1"), None);
    write_run(&b, &summary(10.0, 5.0, 1000.0, 0, "h2"), None);
    let r = compare(&a, &b, &Options::default()).unwrap();
    assert!(
        r.warnings.iter().any(|w| w.contains("different workloads")),
        "{:?}",
        r.warnings
    );
    let e = compare(&a, &tmp.path().join("nothing"), &Options::default())
        .unwrap_err()
        .to_string();
    assert!(e.contains("nothing"), "{e}");
    let e = compare(
        &a,
        &b,
        &Options {
            threshold_pct: None,
            gate: vec!["read_reciept.p99".into()],
        },
    )
    .unwrap_err();
    assert!(e.to_string().contains("read_reciept.p99"));
    std::fs::write(a.join("summary.json"), "{}").unwrap();
    let e = compare(&a, &b, &Options::default()).unwrap_err().to_string();
    assert!(
        e.contains("summary.json") && e.contains("not an ackstorm summary"),
        "{e}"
    );
}
