//! `summary.json` and the comparison JSON against `schema/*.schema.json`: the serde output of a
//! full synthetic report validates, and documents with a field missing or mistyped do not.

use serde_json::Value;

use super::model::{Comparison, Report};
use super::sample::{sample_comparison, sample_report};

const SUMMARY_SCHEMA: &str = include_str!("../../schema/summary.schema.json");
const COMPARISON_SCHEMA: &str = include_str!("../../schema/comparison.schema.json");

fn validator(schema: &str) -> jsonschema::Validator {
    let schema: Value = serde_json::from_str(schema).expect("schema is JSON");
    jsonschema::options()
        .should_validate_formats(true)
        .build(&schema)
        .expect("schema compiles")
}

/// The schema's complaints about `doc`, one line each (empty when valid).
fn errors(v: &jsonschema::Validator, doc: &Value) -> Vec<String> {
    v.iter_errors(doc)
        .map(|e| format!("{} at {}", e, e.instance_path()))
        .collect()
}

fn summary(report: &Report) -> Value {
    serde_json::to_value(report).unwrap()
}

#[test]
fn sample_report_matches_the_summary_schema() {
    let v = validator(SUMMARY_SCHEMA);
    let doc = summary(&sample_report());
    assert_eq!(errors(&v, &doc), Vec::<String>::new());
    // And it reads back as the same report, so the schema describes what serde round-trips.
    assert_eq!(serde_json::from_value::<Report>(doc).unwrap(), sample_report());
}

#[test]
fn absent_options_and_empty_collections_match_the_summary_schema() {
    let v = validator(SUMMARY_SCHEMA);
    let mut r = sample_report();
    r.target.build_info = None;
    r.target.label = None;
    r.ack_economics.server_frames = None;
    r.latencies.values_mut().for_each(|l| l.uncorrected = None);
    r.slo.iter_mut().for_each(|s| s.value = None);
    r.timeline.clear();
    r.warnings.clear();
    r.audit.by_kind.clear();
    r.audit.refused_by_code.clear();
    r.audit.protocol_errors.clear();
    r.faults.clear();
    r.interrupted = true;
    assert_eq!(errors(&v, &summary(&r)), Vec::<String>::new());
}

#[test]
fn a_simulations_summary_matches_the_schema() {
    let v = validator(SUMMARY_SCHEMA);
    let mut r = sample_report();
    r.target.kind = "simulated".into();
    r.target.server_cpu_secs = Some(12.5);
    r.simulation = Some(crate::report::Simulation {
        model: crate::report::SimModel {
            name: "reference server".into(),
            cores: 2,
            one_way_us: 80.0,
            one_way_sigma: 1.1,
            frame_in_us: 4.4,
            frame_out_us: 4.4,
            server_base_cores: 0.25,
            tester_base_cores: 0.3,
            tester_frame_us: 4.7,
            colocated: true,
            timer_us: 1000,
            calibrated_from: Some("results/calibration".into()),
        },
        wall_secs: 3.5,
        events: 1_000_000,
        peak_server_cores: 0.9,
        mean_server_cores: 0.8,
        receipts_per_sec: 20_000.0,
        series: vec![crate::report::SimPoint {
            t: 0.0,
            server_cores: 0.8,
            tester_cores: 0.9,
            frames_in: 45_000,
            frames_out: 90_000,
            receipts: 20_000,
        }],
    });
    let doc = summary(&r);
    assert_eq!(errors(&v, &doc), Vec::<String>::new());
    assert_eq!(serde_json::from_value::<Report>(doc).unwrap(), r);
}

#[test]
fn broken_summaries_are_rejected() {
    let v = validator(SUMMARY_SCHEMA);
    let good = summary(&sample_report());
    type Breakage = (&'static str, fn(&mut Value));
    let breakages: [Breakage; 19] = [
        ("top-level field removed", |d| {
            drop(d.as_object_mut().unwrap().remove("audit"))
        }),
        ("nested field removed", |d| {
            drop(d["plan"].as_object_mut().unwrap().remove("strategy"))
        }),
        ("latency field removed", |d| {
            drop(d["latencies"]["read"].as_object_mut().unwrap().remove("p99"))
        }),
        ("count as string", |d| d["throughput"]["messages_sent"] = "71940".into()),
        ("negative count", |d| d["connections"]["failed"] = (-1).into()),
        ("ms as string", |d| {
            d["latencies"]["read_receipt"]["p50"] = "6.85ms".into()
        }),
        ("unknown field", |d| d["counters"]["surprise"] = 1.into()),
        ("curve point of three", |d| {
            d["latencies"]["read"]["curve"][0] = serde_json::json!([0.0, 1.0, 2.0])
        }),
        ("bad timestamp", |d| d["started_at"] = "yesterday".into()),
        ("slo verdict as string", |d| d["slo"][0]["passed"] = "yes".into()),
        ("interrupted removed", |d| {
            drop(d.as_object_mut().unwrap().remove("interrupted"))
        }),
        ("interrupted as string", |d| d["interrupted"] = "no".into()),
        ("audit kind without refused", |d| {
            drop(d["audit"]["total"].as_object_mut().unwrap().remove("refused"))
        }),
        ("unknown audit kind", |d| {
            d["audit"]["by_kind"]["receipt"] = d["audit"]["total"].clone()
        }),
        ("unknown protocol error cause", |d| {
            d["audit"]["protocol_errors"]["garbled"] = 1.into()
        }),
        ("negative reconnects", |d| d["connections"]["reconnects"] = (-1).into()),
        ("timeline point without rss", |d| {
            drop(d["timeline"][3].as_object_mut().unwrap().remove("rss_mb"))
        }),
        ("unknown fault kind", |d| d["faults"][0]["kind"] = "unplug_cable".into()),
        ("fault without recovery", |d| {
            drop(d["faults"][0].as_object_mut().unwrap().remove("recovery_max_ms"))
        }),
    ];
    for (what, brk) in breakages {
        let mut doc = good.clone();
        brk(&mut doc);
        assert!(!v.is_valid(&doc), "schema accepted a summary with {what}");
    }
}

#[test]
fn sample_comparison_matches_its_schema_and_broken_ones_do_not() {
    let v = validator(COMPARISON_SCHEMA);
    let (c, _) = sample_comparison();
    let doc = serde_json::to_value(&c).unwrap();
    assert_eq!(errors(&v, &doc), Vec::<String>::new());
    assert_eq!(serde_json::from_value::<Comparison>(doc.clone()).unwrap(), c);

    let mut missing = doc.clone();
    missing["rows"][1].as_object_mut().unwrap().remove("ack_frames");
    assert!(!v.is_valid(&missing), "schema accepted a row without ack_frames");
    let mut mistyped = doc.clone();
    mistyped["rows"][0]["read_p99_ms"] = "2410".into();
    assert!(!v.is_valid(&mistyped), "schema accepted read_p99_ms as a string");
    let mut wrong_version = doc;
    wrong_version["schema_version"] = 2.into();
    assert!(!v.is_valid(&wrong_version), "schema accepted schema_version 2");
}
