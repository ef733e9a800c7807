//! The Grafana dashboard in `deploy/grafana/` against the exporter: every PromQL expression
//! names only families the renderer emits (the list is taken from the rendered text, not
//! copied), and quantiles are never averaged across testers.

use std::collections::BTreeSet;

use serde_json::Value;

use super::render::render;
use super::render::tests::{families, full_snapshot, info};
use crate::collector::{Metric, WINDOW_QUANTILES};

fn dashboard() -> Value {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/deploy/grafana/ackstorm-dashboard.json");
    let text = std::fs::read_to_string(path).expect("the dashboard file");
    serde_json::from_str(&text).expect("the dashboard is JSON")
}

/// Every panel, those inside rows too.
fn panels(d: &Value) -> Vec<&Value> {
    let mut out = Vec::new();
    for p in d["panels"].as_array().expect("panels") {
        out.push(p);
        if let Some(inner) = p["panels"].as_array() {
            out.extend(inner);
        }
    }
    out
}

fn exprs(p: &Value) -> Vec<&str> {
    p["targets"]
        .as_array()
        .map(|ts| ts.iter().filter_map(|t| t["expr"].as_str()).collect())
        .unwrap_or_default()
}

/// The `ackstorm_*` names in a PromQL expression.
fn metric_names(expr: &str) -> Vec<&str> {
    expr.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == ':'))
        .filter(|t| t.starts_with("ackstorm_"))
        .collect()
}

/// The values given to label `label` (`label="..."`) in an expression.
fn label_values<'a>(expr: &'a str, label: &str) -> Vec<&'a str> {
    let pat = format!("{label}=\"");
    expr.match_indices(&pat)
        .filter(|(i, _)| !expr[..*i].ends_with(|c: char| c.is_ascii_alphanumeric() || c == '_'))
        .filter_map(|(i, _)| expr[i + pat.len()..].split('"').next())
        .collect()
}

#[test]
fn every_expression_names_only_what_the_exporter_emits() {
    let emitted: BTreeSet<String> = families(&render(&full_snapshot(), &info()))
        .into_iter()
        .map(|(name, _)| name)
        .collect();
    let d = dashboard();
    let mut queries: Vec<&str> = panels(&d).into_iter().flat_map(exprs).collect();
    for v in d["templating"]["list"].as_array().unwrap() {
        queries.extend(v["definition"].as_str());
    }
    assert!(queries.len() >= 8, "{queries:?}");
    let quantiles: Vec<String> = WINDOW_QUANTILES.iter().map(|q| format!("{q}")).collect();
    for q in &queries {
        let names = metric_names(q);
        assert!(!names.is_empty(), "no ackstorm metric in {q}");
        for n in names {
            assert!(
                emitted.contains(n),
                "{n} (in {q}) is not emitted; the exporter has {emitted:?}"
            );
        }
        for m in label_values(q, "metric") {
            assert!(Metric::parse(m).is_some(), "no metric {m:?} in {q}");
        }
        for v in label_values(q, "quantile") {
            assert!(quantiles.iter().any(|x| x == v), "no quantile {v:?} in {q}");
        }
    }
    // The checks can fail: a name the exporter does not have is caught.
    assert!(!emitted.contains("ackstorm_tester_messages_total"));
    assert_eq!(
        metric_names("rate(ackstorm_tester_x_total[1m])"),
        ["ackstorm_tester_x_total"]
    );
}

#[test]
fn the_promised_panels_are_there_and_quantiles_are_never_averaged() {
    let d = dashboard();
    assert!(d["schemaVersion"].as_u64().unwrap() >= 36);
    let vars = d["templating"]["list"].as_array().unwrap();
    let ds = vars
        .iter()
        .find(|v| v["type"] == "datasource")
        .expect("a datasource variable");
    assert_eq!(ds["query"], "prometheus");
    let ds_ref = format!("${{{}}}", ds["name"].as_str().unwrap());
    let all = panels(&d);
    let ids: BTreeSet<u64> = all.iter().map(|p| p["id"].as_u64().unwrap()).collect();
    assert_eq!(ids.len(), all.len(), "panel ids repeat");
    for p in &all {
        assert_eq!(p["datasource"]["uid"], ds_ref.as_str(), "{}", p["title"]);
    }
    let everything: Vec<&str> = all.iter().flat_map(|p| exprs(p)).collect();
    let has = |needle: &str| everything.iter().any(|e| e.contains(needle));
    assert!(has("sum(ackstorm_tester_users_connected"));
    assert!(has("rate(ackstorm_tester_messages_sent_total"));
    assert!(has("sum by (kind) (rate(ackstorm_tester_receipts_received_total"));
    assert!(has("ackstorm_tester_lost_total"));
    for m in ["server_ack", "read_receipt", "delivery"] {
        let p = all
            .iter()
            .find(|p| {
                exprs(p)
                    .iter()
                    .any(|e| e.contains(&format!("metric=\"{m}\",quantile=\"0.99\"")))
            })
            .unwrap_or_else(|| panic!("no p99 panel of {m}"));
        let desc = p["description"].as_str().unwrap_or_default();
        assert!(
            desc.contains("cannot be averaged") && desc.contains("ackstorm merge"),
            "{desc}"
        );
        assert!(exprs(p).iter().any(|e| e.starts_with("max(")), "{:?}", exprs(p));
    }
    for e in everything.iter().filter(|e| e.contains("latency_seconds")) {
        for agg in ["avg", "sum", "avg_over_time", "quantile"] {
            assert!(
                !e.contains(&format!("{agg}(")) && !e.contains(&format!("{agg} by")),
                "{e}"
            );
        }
    }
}
