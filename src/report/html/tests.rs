//! Tests of the HTML pages: self-contained (no URL to fetch), one `<svg>` per plot, the numbers a
//! reader looks for, report strings escaped, and empty parts rendered rather than failing.

use super::{render_capacity_html, render_compare_html, render_comparison_html, render_html};
use crate::report::bench::Limit;
use crate::report::fmt;
use crate::report::sample::{
    sample_capacity, sample_capacity_generator, sample_compare, sample_compare_other_workload, sample_comparison,
    sample_report,
};
use crate::report::text::{render_capacity_text, render_compare_text};

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
        "<div class=\"label\">lost</div>",
        "of 297,857 owed · 3 in disconnects · 1 dup · 1 unexp.",
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
    for title in [
        "Owed against arrived",
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

/// The `<tr>` of the audit table headed `kind`.
fn audit_row<'a>(html: &'a str, kind: &str) -> &'a str {
    let table = &html[html.find("Owed against arrived").expect("no audit table")..];
    let head = format!("<th scope=\"row\">{kind}</th>");
    let at = table.find(&head).unwrap_or_else(|| panic!("no audit row {kind}"));
    let start = table[..at].rfind("<tr").unwrap();
    &table[start..at + table[at..].find("</tr>").unwrap()]
}

#[test]
fn audit_table_has_a_row_per_kind_marks_losses_and_explains_its_columns() {
    let mut report = sample_report();
    report.audit.by_kind.insert("read_users".into(), Default::default());
    let html = render_html(&report).unwrap();
    let table = &html[html.find("Owed against arrived").unwrap()..];
    let table = &table[..table.find("</dl>").expect("no legend")];
    for head in [
        "expected",
        "arrived",
        "lost",
        "dup",
        "unexpected",
        "refused",
        "lost in disconnect",
        "not due",
        "late",
    ] {
        assert!(table.contains(&format!("<th>{head}</th>")), "no column {head}");
        assert!(table.contains(&format!("<dt>{head}</dt>")), "legend lacks {head}");
    }
    // Rows follow a message; a kind with nothing to show has none.
    let at = |kind: &str| table.find(&format!("<th scope=\"row\">{kind}</th>"));
    let order: Vec<usize> = ["reply", "message", "delivery", "statistic", "total"]
        .iter()
        .map(|k| at(k).unwrap_or_else(|| panic!("no row {k}")))
        .collect();
    assert!(order.is_sorted(), "rows out of order: {order:?}");
    assert_eq!(at("read_users"), None, "an empty kind got a row");

    // Lost cells are marked, and only those above zero.
    let d = &report.audit.by_kind["delivery"];
    let delivery = audit_row(&html, "delivery");
    assert!(
        delivery.contains(&format!(
            "<td>{}</td><td>{}</td><td class=\"bad\">3</td>",
            fmt::int(d.expected),
            fmt::int(d.arrived)
        )),
        "{delivery}"
    );
    assert!(audit_row(&html, "total").contains("<td class=\"bad\">3</td>"));
    assert!(
        !audit_row(&html, "message").contains("class=\"bad\""),
        "a zero lost cell is marked"
    );
    assert!(
        audit_row(&html, "group_read").contains("<td class=\"warn\">1</td>"),
        "duplicate not marked"
    );
    assert!(table.contains("refused: rate_limited 4, unknown_message 2 · protocol errors: unknown_op 2"));

    // Columns zero in every row go, and the note says which.
    report.audit.by_kind.values_mut().for_each(|a| a.late = 0);
    report.audit.total.late = 0;
    let html = render_html(&report).unwrap();
    let table = &html[html.find("Owed against arrived").unwrap()..];
    let table = &table[..table.find("</dl>").unwrap()];
    assert!(!table.contains("<th>late</th>") && !table.contains("<dt>late</dt>"));
    assert!(table.contains("zero in every row, not shown: late"), "{table}");
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
        (
            "ackstorm-sample-compare.html",
            render_compare_html(&sample_compare()).unwrap(),
        ),
        (
            "ackstorm-sample-compare-workloads.html",
            render_compare_html(&sample_compare_other_workload()).unwrap(),
        ),
        (
            "ackstorm-sample-capacity.html",
            render_capacity_html(&sample_capacity()).unwrap(),
        ),
        (
            "ackstorm-sample-capacity-generator.html",
            render_capacity_html(&sample_capacity_generator()).unwrap(),
        ),
    ];
    for (name, html) in pages {
        let path = dir.join(name);
        std::fs::write(&path, &html).unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), html);
    }
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
