//! The exposition text checked line by line and read back with `prometheus-parse`.

use std::collections::{BTreeMap, BTreeSet};

use prometheus_parse::{Scrape, Value};

use super::*;
use crate::collector::{AckKind, Loss, Metric, WindowLatency};

/// A snapshot with something in every family.
pub(crate) fn full_snapshot() -> Snapshot {
    let window = |metric, base: u64| WindowLatency {
        metric,
        samples: 120,
        quantiles_us: [base, 2 * base, 4 * base, 8 * base, 9 * base],
    };
    Snapshot {
        connected: 7,
        messages: 30,
        sent: (20, 10),
        acks: AckKind::ALL.iter().map(|k| (*k, 3 + k.index() as u64)).collect(),
        receipts: BTreeMap::from([("delivery".into(), 11), ("read".into(), 5), ("channel".into(), 2)]),
        errors: 3,
        errors_by_code: BTreeMap::from([("rate_limited".into(), 2), ("not_member".into(), 1)]),
        connect_failed: 1,
        dropped: 2,
        reconnects: 2,
        lost: vec![
            Loss {
                kind: "message",
                lost: 4,
                lost_in_disconnect: 1,
            },
            Loss {
                kind: "read",
                lost: 0,
                lost_in_disconnect: 2,
            },
        ],
        window_secs: 10,
        window: vec![window(Metric::ServerAck, 500), window(Metric::ReadReceipt, 3_075)],
        ..Snapshot::default()
    }
}

pub(crate) fn info() -> Info {
    Info {
        run: "5f3a".into(),
        name: "smoke".into(),
        elapsed_secs: 12.5,
    }
}

/// `(name, type)` of every family the text declares, in order.
pub(crate) fn families(text: &str) -> Vec<(String, String)> {
    text.lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .map(|l| {
            let (name, kind) = l.split_once(' ').expect("name and type");
            (name.to_string(), kind.to_string())
        })
        .collect()
}

fn parse(text: &str) -> Scrape {
    Scrape::parse(text.lines().map(|l| Ok(l.to_string()))).expect("parses")
}

#[test]
fn every_family_has_help_then_type_then_its_samples_together() {
    let text = render(&full_snapshot(), &info());
    let mut seen: BTreeSet<String> = BTreeSet::new();
    let mut current: Option<String> = None;
    let mut lines = text.lines();
    while let Some(line) = lines.next() {
        if let Some(rest) = line.strip_prefix("# HELP ") {
            let (name, help) = rest.split_once(' ').expect("name and help");
            assert!(!help.trim().is_empty(), "{line}");
            assert!(name.starts_with(PREFIX), "{line}");
            assert!(seen.insert(name.to_string()), "{name} declared twice");
            let ty = lines.next().expect("a TYPE line after HELP");
            assert!(ty.starts_with(&format!("# TYPE {name} ")), "{ty} after {line}");
            let kind = ty.rsplit(' ').next().unwrap();
            assert!(["counter", "gauge"].contains(&kind), "{ty}");
            assert_eq!(name.ends_with("_total"), kind == "counter", "{ty}");
            current = Some(name.to_string());
        } else {
            assert!(!line.starts_with('#'), "a comment that is no HELP: {line}");
            let name = line.split(['{', ' ']).next().unwrap();
            // Samples follow their own family's TYPE, with nothing of another family between.
            assert_eq!(Some(name), current.as_deref(), "{line}");
        }
    }
    assert!(text.ends_with('\n'));
    assert_eq!(seen.len(), families(&text).len());
}

#[test]
fn the_text_reads_back_with_its_types_and_values() {
    let text = render(&full_snapshot(), &info());
    let scrape = parse(&text);
    assert!(!scrape.samples.is_empty());
    for s in &scrape.samples {
        assert!(scrape.docs.contains_key(&s.metric), "no HELP for {}", s.metric);
        match s.value {
            Value::Counter(v) => assert!(s.metric.ends_with("_total") && v >= 0.0, "{s:?}"),
            Value::Gauge(_) => assert!(!s.metric.ends_with("_total"), "{s:?}"),
            _ => panic!("no TYPE (or a wrong one) for {s:?}"),
        }
    }
    let value = |name: &str, labels: &[(&str, &str)]| -> f64 {
        let found: Vec<f64> = scrape
            .samples
            .iter()
            .filter(|s| s.metric == format!("{PREFIX}{name}"))
            .filter(|s| labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v)))
            .map(|s| match s.value {
                Value::Counter(v) | Value::Gauge(v) => v,
                _ => unreachable!(),
            })
            .collect();
        assert_eq!(found.len(), 1, "{name} {labels:?}: {found:?}\n{text}");
        found[0]
    };
    assert_eq!(value("info", &[("run", "5f3a"), ("name", "smoke")]), 1.0);
    assert_eq!(value("elapsed_seconds", &[]), 12.5);
    assert_eq!(value("users_connected", &[]), 7.0);
    assert_eq!(value("messages_sent_total", &[("chat", "one_to_one")]), 20.0);
    assert_eq!(value("messages_sent_total", &[("chat", "group")]), 10.0);
    assert_eq!(value("acks_sent_total", &[("kind", "group_channel")]), 7.0);
    assert_eq!(value("receipts_received_total", &[("kind", "delivery")]), 11.0);
    assert_eq!(value("errors_total", &[("code", "rate_limited")]), 2.0);
    assert_eq!(value("connection_drops_total", &[]), 2.0);
    assert_eq!(value("lost_total", &[("kind", "message")]), 4.0);
    assert_eq!(value("lost_in_disconnect_total", &[("kind", "read")]), 2.0);
    assert_eq!(value("latency_samples", &[("metric", "read_receipt")]), 120.0);
    let p99 = value("latency_seconds", &[("metric", "read_receipt"), ("quantile", "0.99")]);
    assert!((p99 - 0.0123).abs() < 1e-9, "{p99}");
    assert!((value("latency_seconds", &[("metric", "server_ack"), ("quantile", "1")]) - 0.0045).abs() < 1e-9);
    // Each metric in the window has exactly the five quantiles, named as Prometheus does.
    for m in ["server_ack", "read_receipt"] {
        let qs: BTreeSet<&str> = scrape
            .samples
            .iter()
            .filter(|s| s.metric == format!("{PREFIX}latency_seconds") && s.labels.get("metric") == Some(m))
            .filter_map(|s| s.labels.get("quantile"))
            .collect();
        assert_eq!(qs, BTreeSet::from(["0.5", "0.9", "0.99", "0.999", "1"]), "{m}");
    }
    // Latency samples name metrics of the collector only.
    for s in scrape.samples.iter().filter_map(|s| s.labels.get("metric")) {
        assert!(Metric::parse(s).is_some(), "{s}");
    }
}

#[test]
fn an_empty_snapshot_declares_the_same_families() {
    let empty = render(&Snapshot::default(), &info());
    assert_eq!(families(&empty), families(&render(&full_snapshot(), &info())));
    assert!(!empty.contains("latency_seconds{"), "{empty}");
    assert!(empty.contains(
        "# HELP ackstorm_tester_latency_seconds Latency quantiles per metric over the last 0 closed seconds"
    ));
}

#[test]
fn label_values_and_help_are_escaped() {
    let mut i = info();
    i.name = "a \"b\" \\ c\nd".into();
    let text = render(&Snapshot::default(), &i);
    assert!(
        text.contains(r#"ackstorm_tester_info{run="5f3a",name="a \"b\" \\ c\nd"} 1"#),
        "{text}"
    );
    assert_eq!(escape_help("x\\y\nz"), "x\\\\y\\nz");
    assert_eq!(text.lines().filter(|l| l.starts_with(PREFIX)).count(), 2 + 1 + 2 + 3);
}
