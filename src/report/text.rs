//! The end-of-run summary for a terminal: a few tables and lines a person reads in ten seconds
//! (latency percentiles, throughput, ack economics, the audit, SLOs, warnings).
//!
//! Plain text without colour codes, so it reads the same in a pipe, a CI log or a file; the full
//! detail lives in `summary.json` and the HTML page. The summaries of `ackstorm compare` and
//! `ackstorm capacity` live in `text/bench.rs`.

use std::fmt::Write as _;

use comfy_table::{CellAlignment, Table, TableStyle, presets};

use super::fmt;
use super::model::{Comparison, Report};
use super::run_view::{self as view, STRATEGY_HEAD};

mod bench;
pub use bench::{render_capacity_text, render_compare_text};

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
    for (name, l) in view::ordered_latencies(report) {
        lat.add_row(view::latency_cells(name, l, false));
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
    let mut acks = table(&view::ack_head("saving"));
    for row in view::ack_rows(econ) {
        acks.add_row(row);
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
    let mut t = table(&STRATEGY_HEAD);
    for r in &c.rows {
        t.add_row(view::strategy_cells(r));
    }
    right_align(&mut t, 1);
    let _ = writeln!(out, "{t}");
    out
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
        assert!(text.contains("3 lost, 1 duplicated, 1 unexpected"), "{text}");
        assert!(
            text.contains(&fmt::saving(report.ack_economics.total.saving_pct)),
            "{text}"
        );
        assert!(text.contains("1,199 msg/s"), "{text}");
        assert!(text.contains("! the generator was the bottleneck"), "{text}");
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
