//! Tests of the run's HTML page (the other pages': `tests_pages`): self-contained (no URL to
//! fetch), one `<svg>` per plot, the numbers a reader looks for, report strings escaped, and
//! empty parts rendered rather than failing.

use super::{render_capacity_html, render_compare_html, render_comparison_html, render_html};
use crate::report::fmt;
use crate::report::model::FaultReport;
use crate::report::sample::{
    sample_capacity, sample_capacity_generator, sample_compare, sample_compare_other_workload, sample_comparison,
    sample_report,
};

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

pub(super) fn assert_self_contained(html: &str) {
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

pub(super) fn count(html: &str, needle: &str) -> usize {
    html.matches(needle).count()
}

#[test]
fn run_page_is_self_contained_with_a_plot_per_chart() {
    let report = sample_report();
    let html = render_html(&report).unwrap();
    assert!(html.starts_with("<!doctype html>"));
    assert_self_contained(&html);
    // One percentile chart per metric, the ack volume chart, four time lines.
    assert_eq!(count(&html, "<svg"), report.latencies.len() + 1 + 4);
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
        "tester resources over time",
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

/// The inline `<svg>` labelled `label`.
fn svg<'a>(html: &'a str, label: &str) -> &'a str {
    let at = html
        .find(&format!("aria-label=\"{label}\""))
        .unwrap_or_else(|| panic!("no {label} plot"));
    let start = html[..at].rfind("<svg").unwrap();
    &html[start..at + html[at..].find("</svg>").unwrap()]
}

/// A number attribute `name` of the SVG element starting `element`.
fn attr(element: &str, name: &str) -> f64 {
    let key = format!(" {name}=\"");
    let at = element.find(&key).unwrap_or_else(|| panic!("no {name} in {element}")) + key.len();
    element[at..].split('"').next().unwrap().parse().unwrap()
}

/// Every `<text>` of `svg`: (x, y, text).
fn texts(svg: &str) -> Vec<(f64, f64, String)> {
    svg.split("<text ")
        .skip(1)
        .map(|t| {
            let (tag, rest) = t.split_once('>').unwrap();
            let text = rest.split("</text>").next().unwrap().trim();
            (
                attr(&format!(" {tag}"), "x"),
                attr(&format!(" {tag}"), "y"),
                text.to_string(),
            )
        })
        .collect()
}

/// The x of the x axis tick labelled `label`.
fn x_tick(svg: &str, label: &str) -> f64 {
    let bottom = texts(svg).iter().map(|t| t.1).fold(0.0, f64::max);
    texts(svg)
        .into_iter()
        .filter(|t| t.2 == label)
        .max_by(|a, b| a.1.total_cmp(&b.1))
        .filter(|t| t.1 > bottom - 40.0)
        .unwrap_or_else(|| panic!("no x tick {label}"))
        .0
}

/// The y axis tick labels (right-aligned, left of the plot), top to bottom.
fn y_ticks(svg: &str) -> Vec<(f64, String)> {
    let mut ticks: Vec<(f64, String)> = svg
        .split("<text ")
        .filter(|t| t.contains("text-anchor=\"end\"") && attr(&format!(" {t}"), "x") < 100.0)
        .map(|t| {
            let text = t.split_once('>').unwrap().1.split("</text>").next().unwrap().trim();
            (attr(&format!(" {t}"), "y"), text.to_string())
        })
        .collect();
    ticks.sort_by(|a, b| a.0.total_cmp(&b.0));
    ticks
}

const TIME_LINES: [&str; 4] = [
    "traffic over time",
    "connections over time",
    "p99 per second",
    "tester resources over time",
];

#[test]
fn time_lines_mark_each_fault_where_it_struck() {
    let report = sample_report();
    let html = render_html(&report).unwrap();
    let fault = &report.faults[0];
    for label in TIME_LINES {
        let svg = svg(&html, label);
        let (x0, x10, x30) = (x_tick(svg, "0"), x_tick(svg, "10"), x_tick(svg, "30"));
        let per_sec = (x10 - x0) / 10.0;
        // The dashed line at 30 s, its label just right of it, above the plot.
        let marker = texts(svg)
            .into_iter()
            .find(|t| t.2 == fault.kind)
            .unwrap_or_else(|| panic!("{label}: no marker label"));
        assert!(
            (marker.0 - x30 - 4.0).abs() <= 1.0,
            "{label}: label at x {} for a fault at x {x30}",
            marker.0
        );
        let top = y_ticks(svg).first().unwrap().0;
        assert!(marker.1 <= top, "{label}: the label is inside the plot");
        let dashes = svg.matches("stroke=\"#C0262D\"").count();
        assert!(dashes > 10, "{label}: no dashed marker line ({dashes} strokes)");
        // Shaded over the 2 s it was spread over.
        let rect = svg
            .split("<rect ")
            .find(|r| r.contains("fill=\"#C0262D\""))
            .unwrap_or_else(|| panic!("{label}: no shading"));
        let rect = format!(" {rect}");
        assert!(
            (attr(&rect, "x") - x30).abs() <= 1.0,
            "{label}: shading starts elsewhere"
        );
        assert!(
            (attr(&rect, "width") - fault.over_secs * per_sec).abs() <= 1.5,
            "{label}: shading width"
        );
    }
    assert!(html.contains("<h2>Faults</h2>"));
    let row = &html[html
        .find("<th scope=\"row\">drop_connections</th>")
        .expect("no fault row")..];
    let row = &row[..row.find("</tr>").unwrap()];
    assert!(
        row.contains(
            "<td>30 s</td><td>2.0 s</td><td>200</td><td>200</td><td class=\"warn\">197</td><td>420</td><td>2,310</td>"
        ),
        "{row}"
    );

    let mut calm = report.clone();
    calm.faults.clear();
    let html = render_html(&calm).unwrap();
    assert!(!html.contains("#C0262D"), "a marker without a fault");
    assert!(!html.contains("<h2>Faults</h2>") && !html.contains("injected faults"));
}

#[test]
fn fault_labels_alternate_rows_and_keep_inside_the_plot() {
    let mut report = sample_report();
    let second = FaultReport {
        kind: "stall_readers".into(),
        at_secs: 33.0,
        over_secs: 0.0,
        ..Default::default()
    };
    let late = FaultReport {
        kind: "server_restart".into(),
        at_secs: 74.0,
        ..Default::default()
    };
    report.faults.extend([second, late]);
    let html = render_html(&report).unwrap();
    let svg = svg(&html, "connections over time");
    let label = |kind: &str| texts(svg).into_iter().find(|t| t.2 == kind).unwrap();
    let (a, b, c) = (
        label("drop_connections"),
        label("stall_readers"),
        label("server_restart"),
    );
    assert!(b.1 < a.1, "neighbouring labels share a row");
    // Near the right edge the label ends at its line instead of starting there.
    let restart = svg.split("<text ").find(|t| t.contains(">\nserver_restart")).unwrap();
    assert!(restart.contains("text-anchor=\"end\""), "{restart}");
    assert!(c.0 < x_tick(svg, "70") + 60.0);
    // Every fault gets its line; only the one spread over time (drop_connections) is shaded.
    let mut lines: Vec<&str> = svg
        .split("<polyline ")
        .filter(|l| l.contains("stroke=\"#C0262D\""))
        .map(|l| l.split("points=\"").nth(1).unwrap().split(',').next().unwrap())
        .collect();
    lines.sort();
    lines.dedup();
    assert_eq!(lines.len(), 3, "marker lines at x {lines:?}");
    assert_eq!(
        svg.split("<rect ").filter(|r| r.contains("fill=\"#C0262D\"")).count(),
        1
    );
}

#[test]
fn interrupted_runs_carry_a_banner_above_the_verdict() {
    let mut report = sample_report();
    let html = render_html(&report).unwrap();
    assert!(!html.contains("class=\"interrupted\"") && !html.contains("INTERRUPTED"));

    report.interrupted = true;
    let html = render_html(&report).unwrap();
    let banner = html
        .find("<section class=\"interrupted\" role=\"alert\">")
        .expect("no banner");
    assert!(html[banner..].starts_with(
        "<section class=\"interrupted\" role=\"alert\">\n  <span class=\"stamp\">INTERRUPTED</span>\n  <p><strong>Figures cover only what ran.</strong>"
    ));
    assert!(
        banner < html.find("class=\"verdict").unwrap(),
        "banner below the verdict"
    );
    assert!(html.contains("after 76 s of wall time"));
    assert!(html.contains("<title>INTERRUPTED · office-hours"));
}

#[test]
fn tester_resources_are_plotted_on_two_axes() {
    let mut report = sample_report();
    let html = render_html(&report).unwrap();
    let svg = svg(&html, "tester resources over time");
    let t: Vec<String> = texts(svg).into_iter().map(|t| t.2).collect();
    for text in [
        "memory (RSS, MiB, left)",
        "CPU (% of one core, right)",
        "RSS, MiB",
        "CPU, % of one core",
    ] {
        assert!(t.iter().any(|x| x == text), "resources chart lacks {text:?}");
    }
    // The CPU axis on the right reaches one full core at least.
    let right = texts(svg)
        .into_iter()
        .filter(|t| t.0 > 1000.0)
        .map(|t| t.2)
        .collect::<Vec<_>>();
    assert!(right.iter().any(|x| x == "100"), "no 100% on the right axis: {right:?}");
    // And the left axis labels are not drawn on the right too.
    assert!(!right.iter().any(|x| x == "RSS, MiB"), "{right:?}");
    let rss_peak = report.timeline.iter().map(|p| p.rss_mb).fold(0.0, f64::max);
    assert!(html.contains(&format!("memory peaked at {} MiB", fmt::num(rss_peak, 0))));

    // A platform that measures neither gets a note, not a flat line at zero.
    report.timeline.iter_mut().for_each(|p| {
        p.rss_mb = 0.0;
        p.cpu_pct = 0.0;
    });
    let html = render_html(&report).unwrap();
    assert!(!html.contains("aria-label=\"tester resources over time\""));
    assert!(html.contains("the tester&#x27;s memory and CPU were not measured"));
    assert_eq!(count(&html, "<svg"), report.latencies.len() + 1 + 3);
}

#[test]
fn time_line_y_axes_start_at_zero_and_label_their_top() {
    let mut report = sample_report();
    // A flat, high line: an axis fitted to the data would start near 3,790.
    report.timeline.iter_mut().enumerate().for_each(|(i, p)| {
        p.connected = 3_790 + (i as u64 % 3) * 5;
    });
    let html = render_html(&report).unwrap();
    for label in TIME_LINES {
        let ticks = y_ticks(svg(&html, label));
        let (bottom, top) = (ticks.last().unwrap(), ticks.first().unwrap());
        assert_eq!(bottom.1, "0", "{label}: y axis starts at {ticks:?}");
        assert_ne!(top.1, "0", "{label}: {ticks:?}");
    }
    let ticks = y_ticks(svg(&html, "connections over time"));
    let labels: Vec<&str> = ticks.iter().map(|t| t.1.as_str()).collect();
    assert_eq!(labels, ["4k", "3k", "2k", "1k", "0"]);

    // A five-second run gets whole, distinct seconds on its time axis.
    report.timeline.truncate(6);
    let html = render_html(&report).unwrap();
    let svg = svg(&html, "connections over time");
    let bottom = texts(svg).iter().map(|t| t.1).fold(0.0, f64::max);
    let seconds: Vec<String> = texts(svg)
        .into_iter()
        .filter(|t| t.1 > bottom - 40.0 && t.2.parse::<u32>().is_ok())
        .map(|t| t.2)
        .collect();
    assert_eq!(seconds, ["0", "1", "2", "3", "4", "5"]);
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

/// Writes the sample pages for a person (or a headless browser) to look at.
#[test]
fn sample_pages_are_written_to_the_temp_dir() {
    let dir = std::env::temp_dir();
    let (c, reports) = sample_comparison();
    let pages = [
        ("ackstorm-sample-report.html", render_html(&sample_report()).unwrap()),
        (
            "ackstorm-sample-report-interrupted.html",
            render_html(&crate::report::model::Report {
                interrupted: true,
                ..sample_report()
            })
            .unwrap(),
        ),
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
