//! Tests of the HTML pages: self-contained (no URL to fetch), one `<svg>` per plot, the numbers a
//! reader looks for, report strings escaped, and empty parts rendered rather than failing.

use super::{render_comparison_html, render_html};
use crate::report::fmt;
use crate::report::sample::{sample_comparison, sample_report};

/// Values of every `src=` and `href=` attribute in `html`.
fn linked(html: &str) -> Vec<String> {
    let lower = html.to_ascii_lowercase();
    let mut out = Vec::new();
    for attr in ["src=", "href="] {
        for (at, _) in lower.match_indices(attr) {
            let rest = &html[at + attr.len()..];
            let value = match rest.chars().next() {
                Some(q @ ('"' | '\'')) => rest[1..].split(q).next().unwrap_or(""),
                _ => rest.split([' ', '>']).next().unwrap_or(""),
            };
            out.push(value.to_string());
        }
    }
    out
}

fn assert_self_contained(html: &str) {
    for link in linked(html) {
        let l = link.to_ascii_lowercase();
        assert!(
            !l.starts_with("http:") && !l.starts_with("https:") && !l.starts_with("//"),
            "external link {link}"
        );
    }
    let lower = html.to_ascii_lowercase();
    assert!(!lower.contains("<script src"), "page loads a script");
    assert!(
        !lower.contains("@import") && !lower.contains("url("),
        "page loads CSS resources"
    );
    // The sample has no URL of its own but the ws:// target, so nothing else may name a host.
    assert!(
        !lower.contains("http://") && !lower.contains("https://"),
        "page holds a URL"
    );
}

fn count(html: &str, needle: &str) -> usize {
    html.matches(needle).count()
}

#[test]
fn run_page_is_self_contained_with_a_plot_per_chart() {
    let report = sample_report();
    let html = render_html(&report).unwrap();
    assert!(html.starts_with("<!doctype html>"));
    assert_self_contained(&html);
    // One percentile chart per metric, the ack volume chart, three time lines.
    assert_eq!(count(&html, "<svg"), report.latencies.len() + 1 + 3);
    assert_eq!(count(&html, "<svg"), count(&html, "</svg>"));
    for name in report.latencies.keys() {
        assert!(
            html.contains(&format!("aria-label=\"percentiles of {name}\"")),
            "no percentile plot of {name}"
        );
    }
    for label in [
        "ack volume",
        "traffic over time",
        "connections over time",
        "p99 per second",
    ] {
        assert!(html.contains(&format!("aria-label=\"{label}\"")), "no {label} plot");
    }
}

#[test]
fn run_page_shows_header_verdict_key_numbers_and_tables() {
    let report = sample_report();
    let html = render_html(&report).unwrap();
    for text in [
        "office-hours",
        "batched",
        // (minijinja escapes `/` as `&#x2f;`.)
        "ws:&#x2f;&#x2f;127.0.0.1:9100&#x2f;ws",
        "2,000 × 2 devices",
        "2026-11-01 14:03:12 UTC",
        "1 of 4 SLOs failed",
        // SLO checks are escaped, with their measured values.
        "read_receipt.p99 &lt; 50ms",
        &format!("{} ms", fmt::measured(report.latencies["read_receipt"].p99)),
        "the generator was the bottleneck",
        "1,199",
        "lost receipts",
        "51.9%",
    ] {
        assert!(html.contains(text), "page lacks {text:?}");
    }
    for (metric, l) in &report.latencies {
        assert!(html.contains(&format!(">{metric}<")), "page lacks metric {metric}");
        assert!(
            html.contains(&format!("<td>{}</td>", fmt::ms(l.p99))),
            "page lacks {metric} p99 {}",
            fmt::ms(l.p99)
        );
    }
    let rr = &report.latencies["read_receipt"];
    let pair = format!(
        "p50</small>{}</span><span><small class=\"pre\">p99</small>{}<",
        fmt::ms(rr.p50),
        fmt::ms(rr.p99)
    );
    assert!(html.contains(&pair), "no read_receipt key numbers {pair}");
    assert!(html.contains("class=\"verdict fail\""));
    assert!(
        html.contains("<tr class=\"bad\"><th scope=\"row\">delivery</th>"),
        "lost delivery receipts not flagged"
    );
    for title in [
        "Receipt audit",
        "Ack economics",
        "Server frames",
        "Frames sent",
        "Receipts received",
        "Errors",
        "unknown_message",
    ] {
        assert!(html.contains(title), "page lacks table {title}");
    }
}

#[test]
fn report_strings_are_escaped() {
    let mut report = sample_report();
    report.name = "<script>alert(1)</script>".into();
    report.warnings = vec!["<img src=x onerror=alert(2)>".into()];
    report.plan.strategy = "a\"b<c>".into();
    let html = render_html(&report).unwrap();
    assert!(
        !html.contains("<script>") && !html.contains("<img"),
        "report text reached the page unescaped"
    );
    assert!(html.contains("&lt;script&gt;alert(1)&lt;&#x2f;script&gt;") || html.contains("&lt;script&gt;alert(1)"));
}

#[test]
fn empty_and_degenerate_reports_still_render() {
    let mut report = sample_report();
    report.latencies.values_mut().for_each(|l| {
        l.curve.clear();
        l.uncorrected = None;
    });
    report.latencies.remove("read");
    report.timeline.clear();
    report.slo.clear();
    report.warnings.clear();
    report.ack_economics.server_frames = None;
    report.ack_economics.total.acks_per_read = f64::NAN;
    report.counters.errors_by_code.clear();
    let html = render_html(&report).unwrap();
    assert!(html.contains("No SLOs were checked"));
    assert!(html.contains("nothing to plot"));
    assert!(html.contains("the server exposed no ackstorm metrics"));
    assert!(
        !html.contains("Read this before trusting"),
        "warning band without warnings"
    );
    assert_eq!(count(&html, "<svg"), 1, "only the ack chart has data");

    let mut bare = sample_report();
    bare.latencies.clear();
    bare.ack_economics = Default::default();
    bare.timeline = vec![Default::default()];
    render_html(&bare).unwrap();
}

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

/// Writes the sample pages for a person (or a headless browser) to look at.
#[test]
fn sample_pages_are_written_to_the_temp_dir() {
    let dir = std::env::temp_dir();
    let (c, reports) = sample_comparison();
    let pages = [
        ("ackstorm-sample-report.html", render_html(&sample_report()).unwrap()),
        (
            "ackstorm-sample-comparison.html",
            render_comparison_html(&c, &reports).unwrap(),
        ),
    ];
    for (name, html) in pages {
        let path = dir.join(name);
        std::fs::write(&path, &html).unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), html);
    }
}
