//! The end-of-run summary for a terminal: a few tables and lines a person reads in ten seconds
//! (latency percentiles, throughput, ack economics, the audit, faults, SLOs, warnings), opened by
//! a loud line when the run was interrupted.
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
    if report.interrupted {
        out.push_str("INTERRUPTED: figures cover only what ran\n");
    }
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
        "target: {} {} ({} protocol){label}, started {}",
        target.kind,
        target.url,
        target.protocol,
        fmt::when(&report.started_at)
    );
    if let Some(shards) = &report.shards {
        let _ = writeln!(out, "{}", view::shards_line(shards));
    }
    if let Some(sim) = &report.simulation {
        out.push_str("\nSimulated in virtual time: latencies and cores below are the model's predictions\n");
        for (k, v) in view::simulation_rows(sim) {
            let _ = writeln!(out, "  {k}: {v}");
        }
    }
    if !target.not_available.is_empty() {
        let _ = writeln!(
            out,
            "not available with this protocol: {}",
            target.not_available.join(", ")
        );
    }

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
        "\nThroughput: {} msg/s (offered {}/s); {} messages ({} one-to-one, {} group), {} skipped offline{}",
        fmt::rate(tp.messages_per_sec),
        fmt::rate(offered),
        fmt::int(tp.messages_sent),
        fmt::int(tp.one_to_one_sent),
        fmt::int(tp.group_sent),
        fmt::int(tp.skipped_offline),
        unless_zero(", {} skipped disconnected", tp.skipped_disconnected),
    );
    let c = &report.connections;
    let _ = writeln!(
        out,
        "Connections: {} of {} logged in (peak {}), {} failed, {} dropped{}{}; errors {} ({} of frames sent)",
        fmt::int(c.achieved),
        fmt::int(c.asked),
        fmt::int(c.peak),
        fmt::int(c.failed),
        fmt::int(c.dropped),
        unless_zero(", {} reconnects", c.reconnects),
        unless_zero(", {} resent", c.resent),
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

    audit(&mut out, report);
    if let Some(shards) = report.shards.as_ref().filter(|s| !s.rows.is_empty()) {
        out.push_str("\nShards\n");
        let mut t = table(&view::SHARD_HEAD);
        for r in &shards.rows {
            t.add_row(view::shard_cells(r));
        }
        right_align(&mut t, 1);
        let _ = writeln!(out, "{t}");
        let _ = writeln!(out, "Clocks: {}", shards.clocks);
    }
    if !report.faults.is_empty() {
        out.push_str("\nFaults injected\n");
        let mut faults = table(&view::FAULT_HEAD);
        for f in &report.faults {
            faults.add_row(view::fault_cells(f));
        }
        right_align(&mut faults, 1);
        let _ = writeln!(out, "{faults}");
    }

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

/// The audit: a row per kind that has anything, the columns that are non-zero somewhere (and
/// expected, arrived, lost always), then refused codes and protocol errors.
fn audit(out: &mut String, report: &Report) {
    let audit = &report.audit;
    let t = view::audit_table(audit);
    let drain = fmt::secs(audit.drain_secs);
    if t.rows.is_empty() {
        let _ = writeln!(out, "\nAudit: nothing was expected or arrived (drain {drain})");
    } else {
        let lost = audit.total.lost;
        let verdict = match (lost, audit.total.lost_at_end) {
            (0, _) => "nothing lost".to_string(),
            (lost, 0) => format!("{} LOST", fmt::int(lost)),
            (lost, at_end) => format!(
                "{} LOST ({} still awaited at the end: maybe late)",
                fmt::int(lost),
                fmt::int(at_end)
            ),
        };
        let _ = writeln!(
            out,
            "\nAudit: {verdict}; expected against arrived after a drain of {drain}"
        );
        let mut tbl = table(&t.heads());
        for (kind, a) in &t.rows {
            tbl.add_row(t.cells(kind, a));
        }
        right_align(&mut tbl, 1);
        let _ = writeln!(out, "{tbl}");
    }
    let extras = view::audit_extras(audit);
    if !extras.is_empty() {
        let _ = writeln!(out, "{}", extras.join(" · "));
    }
}

/// `template` with `{}` replaced by `n`, or nothing when `n` is zero.
fn unless_zero(template: &str, n: u64) -> String {
    if n == 0 {
        String::new()
    } else {
        template.replacen("{}", &fmt::int(n), 1)
    }
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

/// A terminal table in the report's style.
pub(crate) fn table(header: &[&str]) -> Table {
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
        assert!(
            text.contains(&fmt::saving(report.ack_economics.total.saving_pct)),
            "{text}"
        );
        assert!(text.contains("1,199 msg/s"), "{text}");
        assert!(text.contains("! the generator was the bottleneck"), "{text}");
    }

    /// The line of `text` that starts a table row of `head`.
    fn row<'a>(text: &'a str, head: &str) -> &'a str {
        let prefix = format!("│ {head} ");
        text.lines()
            .find(|l| l.starts_with(&prefix))
            .unwrap_or_else(|| panic!("no row {head} in\n{text}"))
    }

    /// The cells of a table row, trimmed, its head first.
    fn cells(line: &str) -> Vec<&str> {
        line.trim_matches('│').split(['┆', '│']).map(str::trim).collect()
    }

    #[test]
    fn audit_table_has_a_row_per_kind_with_anything_and_the_extras_below() {
        let mut report = sample_report();
        report.audit.by_kind.insert("read_users".into(), Default::default());
        let full = render_text(&report);
        // (Latency and ack economics rows share names with audit rows: look past them.)
        let text = &full[full.find("\nAudit:").unwrap_or_else(|| panic!("{full}"))..];
        assert!(
            text.starts_with(
                "\nAudit: 3 LOST (1 still awaited at the end: maybe late); expected against arrived after a drain of 5.0 s"
            ),
            "{text}"
        );
        let head = cells(row(text, "kind"));
        assert_eq!(
            head,
            [
                "kind",
                "expected",
                "arrived",
                "lost",
                "lost at end",
                "dup",
                "unexpected",
                "refused",
                "lost in disconnect",
                "not due",
                "late"
            ]
        );
        let d = &report.audit.by_kind["delivery"];
        let delivery = cells(row(text, "delivery"));
        assert_eq!(
            delivery[1..5],
            [
                fmt::int(d.expected),
                fmt::int(d.arrived),
                "3".to_string(),
                "1".to_string()
            ]
        );
        assert_eq!(cells(row(text, "reply"))[7], "6", "refused");
        assert_eq!(
            cells(row(text, "message"))[8..10],
            ["2", "1,830"],
            "lost in disconnect, not due"
        );
        let total = cells(row(text, "total"));
        assert_eq!(total[1], fmt::int(report.audit.total.expected));
        assert!(!text.contains("│ read_users "), "an empty kind got a row:\n{text}");
        assert!(
            text.contains("refused: rate_limited 4, unknown_message 2 · protocol errors: unknown_op 2"),
            "{text}"
        );

        // Columns that are zero in every row go; no extras line without refusals or bad frames.
        report.audit.by_kind.values_mut().for_each(|a| a.late = 0);
        report.audit.total.late = 0;
        report.audit.refused_by_code.clear();
        report.audit.protocol_errors.values_mut().for_each(|n| *n = 0);
        let text = render_text(&report);
        assert!(!cells(row(&text, "kind")).contains(&"late"), "{text}");
        assert!(
            !text.contains("refused:") && !text.contains("protocol errors"),
            "{text}"
        );

        report.audit = Default::default();
        let text = render_text(&report);
        assert!(text.contains("Audit: nothing was expected or arrived"), "{text}");
    }

    #[test]
    fn interrupted_runs_say_so_first_and_new_counts_show_when_non_zero() {
        let mut report = sample_report();
        let text = render_text(&report);
        assert!(!text.contains("INTERRUPTED"), "{text}");
        assert!(
            text.contains("203 dropped, 200 reconnects, 14 resent; errors"),
            "{text}"
        );
        assert!(
            text.contains("1,830 skipped offline, 37 skipped disconnected"),
            "{text}"
        );

        report.interrupted = true;
        report.connections.reconnects = 0;
        report.connections.resent = 0;
        report.throughput.skipped_disconnected = 0;
        let text = render_text(&report);
        assert_eq!(text.lines().next(), Some("INTERRUPTED: figures cover only what ran"));
        assert!(text.contains("203 dropped; errors"), "{text}");
        assert!(!text.contains("reconnects") && !text.contains("resent"), "{text}");
        assert!(!text.contains("skipped disconnected"), "{text}");
    }

    #[test]
    fn simulations_say_so_and_show_their_model_in_text_and_html() {
        let mut report = sample_report();
        assert!(!render_text(&report).contains("Simulated"));
        report.simulation = Some(crate::report::Simulation {
            model: crate::report::SimModel {
                name: "reference, 2 cores".into(),
                cores: 2,
                one_way_us: 80.0,
                frame_in_us: 4.4,
                frame_out_us: 4.4,
                colocated: true,
                calibrated_from: Some("results/calibration-x".into()),
                ..Default::default()
            },
            peak_server_cores: 1.25,
            mean_server_cores: 0.75,
            receipts_per_sec: 12_345.0,
            events: 1_000,
            ..Default::default()
        });
        let text = render_text(&report);
        assert!(text.contains("Simulated in virtual time"), "{text}");
        assert!(
            text.contains("predicted server cores: 1.25 peak, 0.75 steady mean"),
            "{text}"
        );
        assert!(text.contains("receipts routed: 12,345/s"), "{text}");
        assert!(text.contains("calibrated from: results/calibration-x"), "{text}");
        let html = crate::report::render_html(&report).unwrap();
        assert!(html.contains("Simulated: the model and its predictions"));
        assert!(html.contains("reference, 2 cores"));
    }

    #[test]
    fn merged_runs_show_their_shards_in_text_and_html() {
        let mut report = sample_report();
        assert!(!render_text(&report).contains("Shards"));
        let row = |index: u32, messages: u64| crate::report::ShardRow {
            index,
            results_dir: format!("r/x-t1/shard-{index}"),
            users: 500,
            connected_peak: 498,
            messages_sent: messages,
            schedule_lag_p99_ms: 3.25,
            cpu_secs: 12.5,
            peak_rss_mb: 81.0,
            clock_offset_ms: 0.0,
        };
        report.shards = Some(crate::report::ShardSet {
            run_id: "t1".into(),
            count: 2,
            index: None,
            partitioned: false,
            rows: vec![row(0, 1234), row(1, 4321)],
            clocks: "one clock".into(),
        });
        let text = render_text(&report);
        assert!(text.contains("merged from 2 shards of run t1"), "{text}");
        assert_eq!(
            cells(row_of(&text, "1 ")),
            ["1", "500", "498", "4,321", "3.25", "12.5", "81", "0.000"]
        );
        let html = crate::report::render_html(&report).unwrap();
        assert!(
            html.contains("<h2>Shards</h2>") && html.contains("4,321"),
            "no shards section"
        );
    }

    fn row_of<'a>(text: &'a str, first_cell: &str) -> &'a str {
        text.lines()
            .find(|l| l.trim_start_matches(['│', ' ']).starts_with(first_cell) && l.contains("4,321"))
            .unwrap_or_else(|| panic!("no row {first_cell:?} in\n{text}"))
    }

    #[test]
    fn faults_get_a_table_only_when_there_were_any() {
        let mut report = sample_report();
        let text = render_text(&report);
        assert!(text.contains("Faults injected"), "{text}");
        assert_eq!(
            cells(row(&text, "drop_connections")),
            [
                "drop_connections",
                "30 s",
                "2.0 s",
                "200",
                "200",
                "197",
                "420",
                "2,310",
                "0",
                "3"
            ]
        );
        report.faults.clear();
        assert!(!render_text(&report).contains("Faults"));
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
