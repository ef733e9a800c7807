//! What the text and HTML renderers of [`CompareReport`] and [`CapacityReport`] share: rows
//! grouped for reading, which way a row moved, the verdict's wording, plain words for noise
//! methods and capacity limits, and a loose reading of an SLO check for its threshold.
//!
//! Presentation only: `beyond_noise`, `regression`, `failed` and the limits come from the model
//! and are never recomputed here.

use super::bench::{Better, CapacityReport, CapacityStep, CompareReport, Limit, MetricDelta, Side};
use super::fmt;
use super::run_view::METRIC_ORDER;

/// How a metric moved from A to B, as a reader judges it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Movement {
    /// Better beyond the noise.
    Better,
    /// Worse beyond the noise (a regression, or below the threshold).
    Worse,
    /// Within the noise.
    Noise,
}

/// How `r` moved: a flagged regression is always worse; otherwise the direction of B - A counts
/// only beyond the noise.
pub(crate) fn movement(r: &MetricDelta) -> Movement {
    let diff = r.b - r.a;
    if r.regression {
        Movement::Worse
    } else if !r.beyond_noise || diff == 0.0 || !diff.is_finite() {
        Movement::Noise
    } else if (diff < 0.0) == (r.better == Better::Lower) {
        Movement::Better
    } else {
        Movement::Worse
    }
}

/// Rows of a comparison that belong together.
pub(crate) struct Group<'a> {
    pub title: &'static str,
    pub rows: Vec<&'a MetricDelta>,
}

/// Group titles, in page order.
const GROUPS: [&str; 6] = [
    "Latency",
    "Throughput",
    "Errors and connections",
    "Ack economics",
    "Receipt audit",
    "Other",
];
/// Latency statistics in reading order.
const STATS: [&str; 8] = ["min", "p50", "mean", "p90", "p99", "p999", "max", "count"];

fn group_of(metric: &str) -> usize {
    let prefix = metric.split('.').next().unwrap_or(metric);
    match prefix {
        p if METRIC_ORDER.contains(&p) => 0,
        "throughput" => 1,
        "errors" | "rate_limited" | "connections" => 2,
        "ack" | "server_frames" | "frames" => 3,
        "audit" => 4,
        _ => 5,
    }
}

/// The rows by group (latency, throughput, errors, ack economics, audit, other), empty groups
/// left out; latencies follow a message (each metric's statistics together, p50 before p99),
/// other groups keep the report's order.
pub(crate) fn groups(rows: &[MetricDelta]) -> Vec<Group<'_>> {
    let rank = |items: &[&str], x: &str| items.iter().position(|i| *i == x).unwrap_or(items.len());
    let mut out: Vec<Group<'_>> = GROUPS
        .iter()
        .map(|&title| Group {
            title,
            rows: Vec::new(),
        })
        .collect();
    for r in rows {
        out[group_of(&r.metric)].rows.push(r);
    }
    out[0].rows.sort_by_key(|r| {
        let (name, stat) = r.metric.split_once('.').unwrap_or((&r.metric, ""));
        (rank(&METRIC_ORDER, name), rank(&STATS, stat))
    });
    out.retain(|g| !g.rows.is_empty());
    out
}

/// The threshold as written on the command line: `5%`.
pub(crate) fn threshold(r: &CompareReport) -> Option<String> {
    r.threshold_pct.map(|t| format!("{}%", fmt::measured(t)))
}

/// Gated regressions: what failed the comparison.
pub(crate) fn gated_regressions(r: &CompareReport) -> Vec<&MetricDelta> {
    r.rows.iter().filter(|m| m.regression && m.gated).collect()
}

/// The verdict in one line, without PASS/FAIL.
pub(crate) fn compare_headline(r: &CompareReport) -> String {
    let n = gated_regressions(r).len();
    let plural = if n == 1 { "metric" } else { "metrics" };
    match (r.failed, threshold(r)) {
        (true, Some(t)) if n > 0 => format!("{n} gated {plural} regressed by more than {t}"),
        (true, _) => "A gated metric regressed past the threshold".to_string(),
        (false, Some(t)) => format!("No gated metric regressed by more than {t}"),
        (false, None) => "No regression gate was set (--fail-on-regression)".to_string(),
    }
}

/// How a row changed, for the verdict: `+18.4% (35.4 → 41.9 ms)`.
/// Without a percentage when A is 0: `0 → 0.2 count`.
pub(crate) fn change(m: &MetricDelta) -> String {
    let values = format!(
        "{} → {} {}",
        fmt::in_unit(m.a, &m.unit),
        fmt::in_unit(m.b, &m.unit),
        m.unit
    );
    match m.delta_pct {
        Some(d) => format!("{} ({values})", fmt::signed_pct(d)),
        None => values,
    }
}

/// A sentence as given, its first letter capitalised.
pub(crate) fn sentence(s: &str) -> String {
    let mut chars = s.chars();
    chars
        .next()
        .map_or(String::new(), |c| c.to_uppercase().chain(chars).collect())
}

/// The warnings to show: the report's, after one about different workloads unless the report
/// already has one (naming B's hash, or "different workloads").
pub(crate) fn compare_warnings(r: &CompareReport) -> Vec<String> {
    let (a, b) = (&r.a, &r.b);
    let said = r
        .warnings
        .iter()
        .any(|w| w.contains(&b.profile_hash) || w.contains("different workloads"));
    let ours = (a.profile_hash != b.profile_hash && !said).then(|| {
        format!(
            "A and B ran different workloads (profile {} vs {}): differences may come from the workload, not the \
             build",
            fmt::short_hash(&a.profile_hash),
            fmt::short_hash(&b.profile_hash)
        )
    });
    ours.into_iter().chain(r.warnings.iter().cloned()).collect()
}

/// The noise method in one sentence.
pub(crate) fn noise_sentence(r: &CompareReport) -> String {
    let runs = |s: &Side| format!("{} run{}", s.runs, if s.runs == 1 { "" } else { "s" });
    match r.noise.as_str() {
        "repeated-runs" => format!(
            "Noise: repeated runs — the 95% interval of B − A is a t interval over the runs of each side ({} of A, \
             {} of B), so it shows how much results move from run to run.",
            runs(&r.a),
            runs(&r.b)
        ),
        "bootstrap" => "Noise: bootstrap — the 95% interval of B − A is a block bootstrap over the per-second \
                        intervals of the single run on each side, so it sees the noise within a run but not \
                        between runs."
            .to_string(),
        other => format!("Noise: the 95% interval of B − A was computed by the {other:?} method."),
    }
}

/// A limit in two or three words.
pub(crate) fn limit_title(l: Limit) -> &'static str {
    match l {
        Limit::ServerSaturated => "server saturated",
        Limit::GeneratorSaturated => "generator saturated",
        Limit::ConnectionLimit => "connection limit",
        Limit::NotReached => "limit not reached",
    }
}

/// What a limit means for the reader.
pub(crate) fn limit_meaning(l: Limit) -> &'static str {
    match l {
        Limit::ServerSaturated => {
            "The SLO broke while the load generator kept its schedule, so the server (or the machine it runs on) is \
             what ran out."
        }
        Limit::GeneratorSaturated => {
            "The load generator fell behind its own schedule before the SLO broke: the tester, not the server, ran \
             out, so the capacity found is only a lower bound. Give the tester more CPU or more machines."
        }
        Limit::ConnectionLimit => {
            "Connections failed before the SLO broke (file or port limits on either side, or the server refused \
             them), so the capacity found is only a lower bound. Raise the limits and search again."
        }
        Limit::NotReached => {
            "Even the highest load tried held the SLO: the capacity is above it. Search higher to find the limit."
        }
    }
}

/// An SLO check read loosely: `METRIC OP VALUE[unit]`.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct SloParts {
    pub metric: String,
    pub op: &'static str,
    /// In ms when `unit` is `ms` (written in ms, s or us), else as written.
    pub value: f64,
    /// `ms`, `%`, or empty.
    pub unit: &'static str,
}

/// Reads `read_receipt.p99 < 20ms` as its parts; `None` when it does not look like a check.
pub(crate) fn parse_slo(text: &str) -> Option<SloParts> {
    let (at, op) = ["<=", ">=", "==", "<", ">"]
        .iter()
        .filter_map(|op| text.find(op).map(|at| (at, *op)))
        .min_by_key(|(at, op)| (*at, std::cmp::Reverse(op.len())))?;
    let metric = text[..at].trim();
    let value = text[at + op.len()..].trim();
    let (number, factor, unit) = if let Some(n) = value.strip_suffix("ms") {
        (n, 1.0, "ms")
    } else if let Some(n) = value.strip_suffix("us").or_else(|| value.strip_suffix("µs")) {
        (n, 0.001, "ms")
    } else if let Some(n) = value.strip_suffix('s') {
        (n, 1000.0, "ms")
    } else if let Some(n) = value.strip_suffix('%') {
        (n, 1.0, "%")
    } else {
        (value, 1.0, "")
    };
    let value = number.trim().parse::<f64>().ok()? * factor;
    (!metric.is_empty() && value.is_finite()).then(|| SloParts {
        metric: metric.to_string(),
        op,
        value,
        unit,
    })
}

/// The SLO check a capacity step's `value` measures (the first), read loosely.
pub(crate) fn capacity_slo(r: &CapacityReport) -> Option<SloParts> {
    r.slo.first().and_then(|s| parse_slo(s))
}

/// A step's SLO value with the check's unit: `17.9 ms`, `0.02%`, `3`.
pub(crate) fn slo_value(v: Option<f64>, slo: Option<&SloParts>) -> String {
    match (v, slo.map_or("", |s| s.unit)) {
        (None, _) => fmt::NONE.to_string(),
        (Some(v), "ms") => format!("{} ms", fmt::ms(v)),
        (Some(v), "%") => format!("{}%", fmt::measured(v)),
        (Some(v), _) => fmt::measured(v),
    }
}

/// What the varied load counts: `users` or `msg/min per user`.
pub(crate) fn load_unit(r: &CapacityReport) -> &'static str {
    match r.vary.as_str() {
        "users" => "users",
        "rate" => "msg/min per user",
        _ => "",
    }
}

/// The step at the capacity found (the passing step at that load), if any.
pub(crate) fn capacity_step(r: &CapacityReport) -> Option<&CapacityStep> {
    let c = r.capacity?;
    r.steps.iter().find(|s| s.passed && s.load == c)
}

/// The steps' results folders, shortened to their last part when they share a parent folder:
/// (the parent, one name per step).
pub(crate) fn results_dirs(r: &CapacityReport) -> (Option<&str>, Vec<&str>) {
    fn split(d: &str) -> Option<(&str, &str)> {
        d.trim_end_matches('/').rsplit_once('/')
    }
    let parent = r.steps.first().and_then(|s| split(&s.results_dir)).map(|(p, _)| p);
    let shared = parent.filter(|p| {
        r.steps
            .iter()
            .all(|s| split(&s.results_dir).is_some_and(|(q, _)| q == *p))
    });
    let names = r
        .steps
        .iter()
        .map(|s| match shared {
            Some(_) => split(&s.results_dir).map_or(s.results_dir.as_str(), |(_, n)| n),
            None => s.results_dir.as_str(),
        })
        .collect();
    (shared, names)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::sample::sample_compare;

    #[test]
    fn slo_checks_are_read_loosely() {
        let p = parse_slo("read_receipt.p99 < 20ms").unwrap();
        assert_eq!(
            (p.metric.as_str(), p.op, p.value, p.unit),
            ("read_receipt.p99", "<", 20.0, "ms")
        );
        assert_eq!(parse_slo("read.p50<=1.5s").unwrap().value, 1500.0);
        assert_eq!(parse_slo("read.p50 >= 250us").unwrap().op, ">=");
        assert_eq!(parse_slo("errors.rate < 0.1%").unwrap().unit, "%");
        assert_eq!(parse_slo("audit.lost == 0").unwrap().unit, "");
        assert_eq!(parse_slo("p99 fast"), None);
        assert_eq!(parse_slo("read.p99 < soon"), None);
    }

    #[test]
    fn results_folders_shorten_only_under_one_parent() {
        let mut r = crate::report::sample::sample_capacity();
        let (parent, names) = results_dirs(&r);
        assert_eq!(parent, Some("results/capacity-20261101T150000"));
        assert_eq!(names.first(), Some(&"users-250"));
        r.steps[1].results_dir = "elsewhere/users-500".into();
        let (parent, names) = results_dirs(&r);
        assert_eq!(parent, None);
        assert_eq!(names[1], "elsewhere/users-500");
    }

    #[test]
    fn rows_group_by_kind_and_latencies_follow_a_message() {
        let r = sample_compare();
        let groups = groups(&r.rows);
        let titles: Vec<&str> = groups.iter().map(|g| g.title).collect();
        assert_eq!(
            titles,
            [
                "Latency",
                "Throughput",
                "Errors and connections",
                "Ack economics",
                "Receipt audit"
            ]
        );
        let latency: Vec<&str> = groups[0].rows.iter().map(|m| m.metric.as_str()).collect();
        assert_eq!(latency.first(), Some(&"server_ack.p50"));
        assert_eq!(latency.get(1), Some(&"server_ack.p99"));
        assert_eq!(latency.last(), Some(&"schedule_lag.p99"));
        assert_eq!(groups.iter().map(|g| g.rows.len()).sum::<usize>(), r.rows.len());
    }

    #[test]
    fn a_workload_warning_is_given_once() {
        let mut r = crate::report::sample::sample_compare_other_workload();
        assert_eq!(compare_warnings(&r).len(), 1);
        r.warnings = vec![format!(
            "different workloads: profile hashes {} and {} differ",
            r.a.profile_hash, r.b.profile_hash
        )];
        assert_eq!(compare_warnings(&r), r.warnings);
        r.b.profile_hash = r.a.profile_hash.clone();
        r.warnings.clear();
        assert!(compare_warnings(&r).is_empty());
    }

    #[test]
    fn movement_follows_the_better_direction_beyond_noise() {
        let r = sample_compare();
        let row = |m: &str| r.rows.iter().find(|x| x.metric == m).unwrap();
        assert_eq!(movement(row("read_receipt.p99")), Movement::Worse);
        assert_eq!(movement(row("schedule_lag.p99")), Movement::Better);
        assert_eq!(movement(row("throughput.messages_per_sec")), Movement::Noise);
    }
}
