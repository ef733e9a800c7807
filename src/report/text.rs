//! The end-of-run summary for a terminal: a few tables and lines a person reads in ten seconds
//! (latency percentiles, throughput, ack economics, the audit, SLOs, warnings).
//!
//! Plain text without colour codes, so it reads the same in a pipe, a CI log or a file; the full
//! detail lives in `summary.json` and the HTML page. The summaries of `ackstorm compare` and
//! `ackstorm capacity` live in `text/bench.rs`.

use std::fmt::Write as _;

use comfy_table::{CellAlignment, Table, TableStyle, presets};

use super::fmt;
use super::model::{AckSplit, Comparison, Latency, Report};

mod bench;
pub use bench::{render_capacity_text, render_compare_text};

/// Latency metrics in the order a reader follows a message.
pub(crate) const METRIC_ORDER: [&str; 8] = super::model::LATENCY_METRICS;

/// The report's latency metrics in [`METRIC_ORDER`], unknown ones before `schedule_lag`.
pub(crate) fn ordered_latencies(report: &Report) -> Vec<(&str, &Latency)> {
    let rank = |name: &str| match METRIC_ORDER.iter().position(|m| *m == name) {
        Some(i) if name == "schedule_lag" => i + 1,
        Some(i) => i,
        None => METRIC_ORDER.len() - 1,
    };
    let mut metrics: Vec<(&str, &Latency)> = report.latencies.iter().map(|(k, v)| (k.as_str(), v)).collect();
    metrics.sort_by_key(|(name, _)| rank(name));
    metrics
}

/// The terminal summary of one run.
pub fn render_text(report: &Report) -> String {
    let mut out = String::new();
    let plan = &report.plan;
    let _ = writeln!(
        out,
        "ackstorm run {:?}: strategy {}, {} users x {} devices, {} groups, {} steady ({} wall), seed {}",
        report.name,
        plan.strategy,
        fmt::int(plan.users),
        plan.devices_per_user,
        fmt::int(plan.groups),
        fmt::secs(plan.duration_secs),
        fmt::secs(report.elapsed_secs),
        plan.seed,
    );
    let target = &report.target;
    let label = target.label.as_deref().map(|l| format!(" ({l})")).unwrap_or_default();
    let _ = writeln!(
        out,
        "target: {} {}{label}, started {}",
        target.kind,
        target.url,
        fmt::when(&report.started_at)
    );

    out.push_str("\nLatency (ms, from the scheduled send)\n");
    let mut lat = table(&["metric", "count", "p50", "p90", "p99", "p99.9", "max", "p99 uncorr."]);
    for (name, l) in ordered_latencies(report) {
        let uncorrected = l.uncorrected.as_ref().map_or(fmt::NONE.to_string(), |u| fmt::ms(u.p99));
        lat.add_row(vec![
            name.to_string(),
            fmt::int(l.count),
            fmt::ms(l.p50),
            fmt::ms(l.p90),
            fmt::ms(l.p99),
            fmt::ms(l.p999),
            fmt::ms(l.max),
            uncorrected,
        ]);
    }
    right_align(&mut lat, 1);
    let _ = writeln!(out, "{lat}");

    let tp = &report.throughput;
    let offered = plan.offered_one_to_one_per_sec + plan.offered_group_per_sec;
    let _ = writeln!(
        out,
        "\nThroughput: {} msg/s (offered {}/s); {} messages ({} one-to-one, {} group), {} skipped offline",
        fmt::rate(tp.messages_per_sec),
        fmt::rate(offered),
        fmt::int(tp.messages_sent),
        fmt::int(tp.one_to_one_sent),
        fmt::int(tp.group_sent),
        fmt::int(tp.skipped_offline),
    );
    let c = &report.connections;
    let _ = writeln!(
        out,
        "Connections: {} of {} logged in (peak {}), {} failed, {} dropped; errors {} ({} of frames sent)",
        fmt::int(c.achieved),
        fmt::int(c.asked),
        fmt::int(c.peak),
        fmt::int(c.failed),
        fmt::int(c.dropped),
        fmt::int(report.counters.errors_by_code.values().sum()),
        fmt::pct(100.0 * report.counters.error_rate),
    );

    let econ = &report.ack_economics;
    let _ = writeln!(out, "\nAck economics ({} vs one ack per message read)", econ.strategy);
    let mut acks = table(&[
        "",
        "read",
        "read acks",
        "channel acks",
        "acks/read",
        "baseline",
        "saving",
    ]);
    for (kind, s) in [
        ("one-to-one", &econ.one_to_one),
        ("group", &econ.group),
        ("total", &econ.total),
    ] {
        acks.add_row(ack_row(kind, s));
    }
    right_align(&mut acks, 1);
    let _ = writeln!(out, "{acks}");
    if let Some(sf) = &econ.server_frames {
        let _ = writeln!(
            out,
            "Server frames: {} in, {} out",
            fmt::int(sf.total_in),
            fmt::int(sf.total_out)
        );
    }

    let a = &report.audit.total;
    let _ = writeln!(
        out,
        "\nAudit: {} lost, {} duplicated, {} unexpected of {} receipts expected ({} arrived; drain {})",
        fmt::int(a.lost),
        fmt::int(a.duplicated),
        fmt::int(a.unexpected),
        fmt::int(a.expected),
        fmt::int(a.arrived),
        fmt::secs(report.audit.drain_secs),
    );

    if !report.slo.is_empty() {
        let failed = report.slo.iter().filter(|s| !s.passed).count();
        let verdict = if failed == 0 {
            "all held".to_string()
        } else {
            format!("{failed} of {} failed", report.slo.len())
        };
        let _ = writeln!(out, "\nSLOs: {verdict}");
        for slo in &report.slo {
            let verdict = if slo.passed { "PASS" } else { "FAIL" };
            let value = slo
                .value
                .map_or("no value".to_string(), |v| format!("measured {}", fmt::measured(v)));
            let _ = writeln!(out, "  {verdict}  {}  ({value})", slo.check);
        }
    }
    if !report.warnings.is_empty() {
        out.push_str("\nWarnings\n");
        for w in &report.warnings {
            let _ = writeln!(out, "  ! {w}");
        }
    }
    out
}

/// The terminal table of `ackstorm strategies`.
pub fn render_comparison_text(c: &Comparison) -> String {
    let mut out = format!("ackstorm strategies {:?}, seed {}\n", c.name, c.seed);
    let mut t = table(&[
        "strategy",
        "messages",
        "read",
        "read acks",
        "channel acks",
        "ack frames",
        "vs per_message",
        "read p50 ms",
        "read p99 ms",
        "server frames",
        "lost",
    ]);
    for r in &c.rows {
        t.add_row(vec![
            r.strategy.clone(),
            fmt::int(r.messages_sent),
            fmt::int(r.messages_read),
            fmt::int(r.read_acks),
            fmt::int(r.channel_acks),
            fmt::int(r.ack_frames),
            r.saving_vs_per_message_pct.map_or(fmt::NONE.to_string(), fmt::saving),
            fmt::ms(r.read_p50_ms),
            fmt::ms(r.read_p99_ms),
            r.server_frames.map_or(fmt::NONE.to_string(), fmt::int),
            fmt::int(r.lost),
        ]);
    }
    right_align(&mut t, 1);
    let _ = writeln!(out, "{t}");
    out
}

fn ack_row(kind: &str, s: &AckSplit) -> Vec<String> {
    vec![
        kind.to_string(),
        fmt::int(s.messages_read),
        fmt::int(s.read_acks),
        fmt::int(s.channel_acks),
        fmt::num(s.acks_per_read, 2),
        fmt::int(s.baseline_acks),
        fmt::saving(s.saving_pct),
    ]
}

const STYLE: TableStyle = presets::UTF8_FULL_CONDENSED.with_rounded_corners();

fn table(header: &[&str]) -> Table {
    let mut t = Table::new();
    t.load_style(STYLE).set_header(header.to_vec());
    t
}

/// Right-aligns the number columns, from `first` on.
fn right_align(t: &mut Table, first: usize) {
    for col in t.column_iter_mut().skip(first) {
        col.set_cell_alignment(CellAlignment::Right);
    }
}

#[cfg(test)]
mod tests {
    use super::super::sample::{sample_comparison, sample_report};
    use super::*;

    #[test]
    fn run_summary_has_percentiles_economics_audit_and_verdicts() {
        let report = sample_report();
        let text = render_text(&report);
        for (name, l) in &report.latencies {
            let row = text
                .lines()
                .find(|line| line.contains(&format!(" {name} ")))
                .unwrap_or_else(|| panic!("{text}"));
            assert!(
                row.contains(&fmt::ms(l.p99)),
                "{name} p99 {} missing in {row}",
                fmt::ms(l.p99)
            );
        }
        let measured = fmt::measured(report.latencies["read_receipt"].p99);
        assert!(
            text.contains(&format!("PASS  read_receipt.p99 < 50ms  (measured {measured})")),
            "{text}"
        );
        assert!(text.contains("FAIL  audit.lost == 0"), "{text}");
        assert!(text.contains("SLOs: 1 of 4 failed"), "{text}");
        assert!(text.contains("3 lost, 1 duplicated, 0 unexpected"), "{text}");
        assert!(
            text.contains(&fmt::saving(report.ack_economics.total.saving_pct)),
            "{text}"
        );
        assert!(text.contains("1,199 msg/s"), "{text}");
        assert!(text.contains("! the generator was the bottleneck"), "{text}");
    }

    #[test]
    fn metrics_follow_a_message_and_schedule_lag_comes_last() {
        let report = sample_report();
        let names: Vec<&str> = ordered_latencies(&report).into_iter().map(|(n, _)| n).collect();
        assert_eq!(names.first(), Some(&"server_ack"));
        assert_eq!(names.last(), Some(&"schedule_lag"));
        assert_eq!(names.len(), report.latencies.len());
    }

    #[test]
    fn comparison_table_has_a_row_per_strategy() {
        let (c, _) = sample_comparison();
        let text = render_comparison_text(&c);
        for row in &c.rows {
            let prefix = format!("│ {} ", row.strategy);
            let line = text
                .lines()
                .find(|l| l.starts_with(&prefix))
                .unwrap_or_else(|| panic!("{text}"));
            assert!(line.contains(&fmt::int(row.ack_frames)), "{line}");
            assert!(line.contains(&fmt::ms(row.read_p99_ms)), "{line}");
        }
        assert!(text.contains("51.9% fewer"), "{text}");
    }
}
