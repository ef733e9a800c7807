//! Tests of the strategies comparison, `compare` and `capacity` pages: every strategy, side,
//! step and limit shown and explained, warnings loud, strings escaped, empty reports rendered.

use super::tests::{assert_self_contained, count};
use super::{render_capacity_html, render_compare_html, render_comparison_html};
use crate::report::bench::Limit;
use crate::report::fmt;
use crate::report::sample::{
    sample_capacity, sample_capacity_generator, sample_compare, sample_compare_other_workload, sample_comparison,
};
use crate::report::text::{render_capacity_text, render_compare_text};

#[test]
fn comparison_page_compares_every_strategy() {
    let (c, reports) = sample_comparison();
    let html = render_comparison_html(&c, &reports).unwrap();
    assert_self_contained(&html);
    // Ack frames, read latency, server frames, and the read curves from the reports.
    assert_eq!(count(&html, "<svg"), 4);
    for row in &c.rows {
        assert!(
            html.contains(&format!("<th scope=\"row\">{}</th>", row.strategy)),
            "no row for {}",
            row.strategy
        );
        assert!(html.contains(&fmt::int(row.ack_frames)));
        assert!(html.contains(&fmt::ms(row.read_p99_ms)));
    }
    assert!(html.contains("51.9% fewer"), "saving vs per_message not labelled");
    assert!(html.contains("no /metrics"), "missing server frames not labelled");

    let without_reports = render_comparison_html(&c, &[]).unwrap();
    assert_eq!(count(&without_reports, "<svg"), 3);
}

#[test]
fn compare_page_shows_sides_verdict_chart_and_every_row() {
    let r = sample_compare();
    let html = render_compare_html(&r).unwrap();
    assert!(html.starts_with("<!doctype html>"));
    assert_self_contained(&html);
    assert_eq!(count(&html, "<svg"), 1, "one change chart");
    assert!(html.contains("aria-label=\"change from A to B\""));
    assert!(html.contains("class=\"verdict fail\""));
    for text in [
        "FAIL",
        "3 gated metrics regressed by more than 5%",
        "main@3f2a1c9",
        "pr-412@8be01d7",
        "5 runs",
        "version=0.1.0,commit=8be01d7,dirty",
        "9f86d081884c7d659a2feaa0c55ad015",
        "t interval over the runs of each side",
        "+18.4% (35.4 → 41.9 ms)",
        "read_receipt.p999 is missing on side A",
    ] {
        assert!(html.contains(text), "page lacks {text:?}");
    }
    // The regressed metrics are named in the band, with their changes.
    for metric in ["read_receipt.p99", "server_ack.p99", "audit.lost"] {
        assert!(
            html.contains(&format!(
                "<li class=\"fail\"><span class=\"mark\">✗</span><code>{metric}</code>"
            )),
            "band does not name {metric}"
        );
    }
    for m in &r.rows {
        assert!(
            html.contains(&format!("<th scope=\"row\">{}</th>", m.metric)),
            "no row for {}",
            m.metric
        );
        assert!(html.contains(&format!(">{}<", m.metric)), "chart lacks {}", m.metric);
    }
    assert!(html.contains("<tr class=\"bad\"><th scope=\"row\">read_receipt.p99</th>"));
    assert!(html.contains("from 0 to 0.2 count"), "a change from 0 is not labelled");
    assert!(html.contains("<code>channel.p99</code><span class=\"measured\">+12.8% (21.8 → 24.6 ms) · not gated"));
    assert!(html.contains("<tr class=\"good\"><th scope=\"row\">schedule_lag.p99</th>"));
    assert!(!html.contains("different workloads"), "equal hashes flagged");
    assert!(!html.contains("class=\"differs\""));
}

#[test]
fn compare_page_passes_and_warns_loudly_about_different_workloads() {
    let html = render_compare_html(&sample_compare_other_workload()).unwrap();
    assert_self_contained(&html);
    assert!(html.contains("class=\"verdict pass\""));
    assert!(html.contains("No gated metric regressed by more than 25%"));
    assert!(html.contains("A and B ran different workloads (profile 9f86d081884c vs 1b4f0e985197)"));
    assert_eq!(count(&html, "class=\"differs\""), 2);
    assert!(html.contains("block bootstrap over the per-second intervals"));
    assert!(html.contains("not exposed by the server"));
}

#[test]
fn capacity_page_shows_the_capacity_limit_plots_and_steps() {
    let r = sample_capacity();
    let html = render_capacity_html(&r).unwrap();
    assert!(html.starts_with("<!doctype html>"));
    assert_self_contained(&html);
    assert_eq!(count(&html, "<svg"), 2, "latency and throughput plots");
    for label in ["latency against load", "achieved against offered"] {
        assert!(html.contains(&format!("aria-label=\"{label}\"")), "no {label} plot");
    }
    for text in [
        "SERVER SATURATED",
        "Capacity 2,500 users · 10,000 msg&#x2f;s offered",
        "what ran out",
        "capacity 10,000 msg/s",
        // The SLO threshold line, parsed from the first check.
        "SLO read_receipt.p99 &lt; 20 ms",
        "<td>users-4000</td>",
        "results folders under results&#x2f;capacity-20261101T150000&#x2f;",
        "17.9 ms",
        "13,870",
    ] {
        assert!(html.contains(text), "page lacks {text:?}");
    }
    // (minijinja escapes the summary's characters; compare a part without any.)
    assert!(html.contains("held read_receipt.p99 &lt; 20ms; at 3,000 users the server saturated"));
    assert!(html.contains("class=\"verdict info\""));
    assert_eq!(count(&html, "<tr class=\"bad\">"), 2, "two failed steps");
    assert_eq!(count(&html, "<tr class=\"good\">"), 1, "one capacity step");
}

#[test]
fn capacity_page_of_a_saturated_generator_warns_and_skips_a_non_latency_threshold() {
    let mut r = sample_capacity_generator();
    let html = render_capacity_html(&r).unwrap();
    assert_self_contained(&html);
    assert!(html.contains("GENERATOR SATURATED"));
    assert!(html.contains("class=\"verdict warn\""));
    assert!(html.contains("Capacity at least 2,500 users"));
    assert!(html.contains("SLO schedule_lag.p99 &lt; 10 ms"));

    r.slo = vec!["audit.lost == 0".into()];
    let html = render_capacity_html(&r).unwrap();
    assert!(!html.contains("SLO audit.lost"), "a count is no latency threshold");
    assert_eq!(count(&html, "<svg"), 2);
    r.slo = vec!["nonsense".into()];
    render_capacity_html(&r).unwrap();
}

#[test]
fn every_capacity_limit_is_named_and_explained() {
    let mut r = sample_capacity();
    for (limit, stamp, tone, words) in [
        (Limit::ServerSaturated, "SERVER SATURATED", "info", "what ran out"),
        (
            Limit::GeneratorSaturated,
            "GENERATOR SATURATED",
            "warn",
            "the tester, not the server",
        ),
        (Limit::ConnectionLimit, "CONNECTION LIMIT", "warn", "Connections failed"),
        (Limit::NotReached, "LIMIT NOT REACHED", "info", "Search higher"),
    ] {
        r.limit = limit;
        let html = render_capacity_html(&r).unwrap();
        assert!(
            html.contains(&format!("<span class=\"stamp\">{stamp}</span>")),
            "{stamp}"
        );
        assert!(
            html.contains(&format!("class=\"verdict {tone}\"")),
            "{stamp} not {tone}"
        );
        assert!(html.contains(words), "{stamp} not explained");
        assert!(
            render_capacity_text(&r).contains(words),
            "{stamp} not explained in text"
        );
    }
}

#[test]
fn empty_compare_and_capacity_reports_still_render() {
    let mut c = sample_compare();
    c.rows.clear();
    c.threshold_pct = None;
    c.failed = false;
    c.noise = "magic".into();
    let html = render_compare_html(&c).unwrap();
    assert!(html.contains("No regression gate was set"));
    assert!(html.contains("computed by the &quot;magic&quot; method"));
    assert!(render_compare_text(&c).contains("PASS"));

    let mut r = sample_capacity();
    r.steps.clear();
    r.capacity = None;
    r.capacity_per_sec = None;
    r.slo.clear();
    let html = render_capacity_html(&r).unwrap();
    assert!(html.contains("No load tried held the SLO"));
    assert!(html.contains("nothing to plot"));
    assert_eq!(count(&html, "<svg"), 0);
    assert!(render_capacity_text(&r).contains("Capacity: none"));
}

#[test]
fn compare_and_capacity_strings_are_escaped() {
    let mut c = sample_compare();
    c.a.label = "<script>alert(1)</script>".into();
    c.rows[0].metric = "<img src=x>".into();
    let html = render_compare_html(&c).unwrap();
    assert!(
        !html.contains("<script>") && !html.contains("<img"),
        "compare page not escaped"
    );
    let mut r = sample_capacity();
    r.summary = "<script>alert(2)</script>".into();
    r.steps[0].results_dir = "<img src=y>".into();
    let html = render_capacity_html(&r).unwrap();
    assert!(
        !html.contains("<script>") && !html.contains("<img"),
        "capacity page not escaped"
    );
}
