//! The terminal summaries of `ackstorm compare` (verdict first, then every metric by group) and
//! `ackstorm capacity` (the capacity, why the search stopped, the steps).

use std::fmt::Write as _;

use comfy_table::CellAlignment;

use super::{right_align, table};
use crate::report::bench::{CapacityReport, CompareReport};
use crate::report::bench_view::{self as view, Movement, movement};
use crate::report::fmt;

/// The terminal summary of `ackstorm compare`.
pub fn render_compare_text(r: &CompareReport) -> String {
    let mut out = format!("ackstorm compare: B {:?} against A {:?}\n", r.b.label, r.a.label);
    for (tag, s) in [("A", &r.a), ("B", &r.b)] {
        let _ = writeln!(
            out,
            "  {tag} {}: {}, {} run{}, build {}, profile {}",
            s.label,
            s.path,
            s.runs,
            if s.runs == 1 { "" } else { "s" },
            s.build_info.as_deref().unwrap_or("unknown"),
            fmt::short_hash(&s.profile_hash),
        );
    }
    let _ = writeln!(out, "{}", view::noise_sentence(r));

    let stamp = if r.failed { "FAIL" } else { "PASS" };
    let _ = writeln!(out, "\n{stamp}: {}", view::compare_headline(r));
    for m in view::gated_regressions(r) {
        let _ = writeln!(out, "  ✗ {} {}", m.metric, view::change(m));
    }
    for m in r.rows.iter().filter(|m| m.regression && !m.gated) {
        let _ = writeln!(out, "  ! {} {}, not gated", m.metric, view::change(m));
    }
    for m in r.rows.iter().filter(|m| movement(m) == Movement::Better) {
        let _ = writeln!(out, "  ✓ {} {}, better", m.metric, view::change(m));
    }
    let warnings = view::compare_warnings(r);
    if !warnings.is_empty() {
        out.push_str("\nWarnings\n");
        for w in &warnings {
            let _ = writeln!(out, "  ! {w}");
        }
    }

    for g in view::groups(&r.rows) {
        let _ = writeln!(out, "\n{}", g.title);
        let mut t = table(&[
            "metric",
            "unit",
            "A",
            "B",
            "Δ %",
            "95% interval of B-A",
            "beyond noise",
            "flag",
        ]);
        for m in g.rows {
            let flag = match (m.regression, m.gated, movement(m)) {
                (true, true, _) => "REGRESSION",
                (true, false, _) => "regression, not gated",
                (false, _, Movement::Worse) => "worse",
                (false, _, Movement::Better) => "better",
                (false, _, Movement::Noise) => "",
            };
            t.add_row(vec![
                m.metric.clone(),
                m.unit.clone(),
                fmt::in_unit(m.a, &m.unit),
                fmt::in_unit(m.b, &m.unit),
                m.delta_pct.map_or(fmt::NONE.to_string(), fmt::signed_pct),
                format!(
                    "{} .. {}",
                    fmt::signed_in_unit(m.ci_low, &m.unit),
                    fmt::signed_in_unit(m.ci_high, &m.unit)
                ),
                if m.beyond_noise { "yes" } else { "no" }.to_string(),
                flag.to_string(),
            ]);
        }
        right_align(&mut t, 2);
        if let Some(flag) = t.column_mut(7) {
            flag.set_cell_alignment(CellAlignment::Left);
        }
        let _ = writeln!(out, "{t}");
    }
    out
}

/// The terminal summary of `ackstorm capacity`.
pub fn render_capacity_text(r: &CapacityReport) -> String {
    let unit = view::load_unit(r);
    let load = |v: f64| match unit {
        "" => fmt::measured(v),
        u => format!("{} {u}", fmt::measured(v)),
    };
    let mut out = format!(
        "ackstorm capacity {:?}: vary {}; SLO {}\n",
        r.name,
        r.vary,
        r.slo.join(", ")
    );
    let capacity = match (r.capacity, r.capacity_per_sec) {
        (Some(c), Some(o)) => format!("{} ({} msg/s offered)", load(c), fmt::rate(o)),
        (Some(c), None) => load(c),
        (None, _) => "none: no load tried held the SLO".to_string(),
    };
    let _ = writeln!(out, "\nCapacity: {capacity}");
    let _ = writeln!(
        out,
        "Limit: {}. {}",
        view::limit_title(r.limit),
        view::limit_meaning(r.limit)
    );
    let _ = writeln!(out, "{}", view::sentence(&r.summary));

    let slo = view::capacity_slo(r);
    let slo_head = slo.as_ref().map_or("SLO value".to_string(), |s| s.metric.clone());
    let load_head = if unit.is_empty() {
        "load".to_string()
    } else {
        unit.to_string()
    };
    let _ = writeln!(out, "\nSteps in the order run (ms)");
    let mut t = table(&[
        "step",
        &load_head,
        "offered/s",
        "achieved/s",
        &slo_head,
        "read_receipt p99",
        "server_ack p99",
        "schedule_lag p99",
        "failed conns",
        "held",
        "limit",
    ]);
    for (i, s) in r.steps.iter().enumerate() {
        t.add_row(vec![
            (i + 1).to_string(),
            fmt::measured(s.load),
            fmt::rate(s.offered_per_sec),
            fmt::rate(s.achieved_per_sec),
            view::slo_value(s.value, slo.as_ref()),
            fmt::ms(s.read_receipt_p99),
            fmt::ms(s.server_ack_p99),
            fmt::ms(s.schedule_lag_p99),
            fmt::int(s.connections_failed),
            if s.passed { "yes" } else { "NO" }.to_string(),
            s.limit.map_or(String::new(), |l| view::limit_title(l).to_string()),
        ]);
    }
    right_align(&mut t, 1);
    let _ = writeln!(out, "{t}");
    if let Some(s) = view::capacity_step(r) {
        let _ = writeln!(out, "Results of the capacity step: {}", s.results_dir);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::sample::{
        sample_capacity, sample_capacity_generator, sample_compare, sample_compare_other_workload,
    };

    #[test]
    fn compare_summary_leads_with_the_verdict_and_lists_every_row() {
        let r = sample_compare();
        let text = render_compare_text(&r);
        assert!(
            text.contains("FAIL: 3 gated metrics regressed by more than 5%"),
            "{text}"
        );
        assert!(text.contains("  ✗ read_receipt.p99 +18.4% (35.4 → 41.9 ms)"), "{text}");
        assert!(text.contains("  ✗ server_ack.p99 +7.0%"), "{text}");
        assert!(text.contains("  ✗ audit.lost +300% (0.6 → 2.4 count)"), "{text}");
        assert!(
            text.contains("  ! channel.p99 +12.8% (21.8 → 24.6 ms), not gated"),
            "{text}"
        );
        assert!(text.contains("  ✓ schedule_lag.p99 -25.5%"), "{text}");
        assert!(
            text.contains("t interval over the runs of each side (5 runs of A"),
            "{text}"
        );
        for m in &r.rows {
            let line = text
                .lines()
                .find(|l| l.starts_with(&format!("│ {} ", m.metric)))
                .unwrap_or_else(|| panic!("no row for {} in {text}", m.metric));
            assert!(line.contains(&fmt::in_unit(m.b, &m.unit)), "{line}");
        }
        assert!(!text.contains("different workloads"), "{text}");
    }

    #[test]
    fn compare_summary_passes_and_warns_about_different_workloads() {
        let text = render_compare_text(&sample_compare_other_workload());
        assert!(
            text.contains("PASS: No gated metric regressed by more than 25%"),
            "{text}"
        );
        assert!(
            text.contains("! A and B ran different workloads (profile 9f86d081884c vs 1b4f0e985197)"),
            "{text}"
        );
        assert!(text.contains("block bootstrap"), "{text}");
        assert!(text.contains("build unknown"), "{text}");
    }

    #[test]
    fn capacity_summary_gives_the_capacity_limit_and_steps() {
        let r = sample_capacity();
        let text = render_capacity_text(&r);
        assert!(text.contains("Capacity: 2,500 users (10,000 msg/s offered)"), "{text}");
        assert!(text.contains("Limit: server saturated."), "{text}");
        assert!(text.contains(&r.summary), "{text}");
        assert!(text.contains("17.9 ms"), "{text}");
        assert!(text.contains("13,870"), "{text}");
        let failed = text
            .lines()
            .find(|l| l.starts_with("│ 5 "))
            .unwrap_or_else(|| panic!("{text}"));
        assert!(failed.contains("NO") && failed.contains("server saturated"), "{failed}");
        assert!(text.contains("Results of the capacity step: results/capacity-20261101T150000/users-2500"));

        let g = render_capacity_text(&sample_capacity_generator());
        assert!(g.contains("Limit: generator saturated."), "{g}");
        assert!(g.contains("lower bound"), "{g}");
    }
}
