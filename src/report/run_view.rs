//! What the text and HTML renderers of a run's [`Report`] and of a strategies
//! [`Comparison`](super::model::Comparison)
//! share: the order latencies are listed in, and the rows of the latency, ack economics and
//! strategies tables, which both renderers show cell for cell.
//!
//! Presentation only: every cell is a model value put through `fmt`; nothing is computed here.
//! Headings, wording and layout stay with each renderer (the terminal's are terser).

use super::fmt;
use super::model::{AckEconomics, Latency, Report, StrategyRow};

/// Latency metrics in the order a reader follows a message.
pub(crate) const METRIC_ORDER: [&str; 15] = super::model::LATENCY_METRICS;

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

/// A latency table row: metric, count, [min,] p50, p90, p99, p99.9, max (ms), then the
/// uncorrected p99. The terminal leaves `min` out to stay narrow.
pub(crate) fn latency_cells(name: &str, l: &Latency, with_min: bool) -> Vec<String> {
    let min = with_min.then(|| fmt::ms(l.min));
    let uncorrected = l.uncorrected.as_ref().map_or(fmt::NONE.to_string(), |u| fmt::ms(u.p99));
    [name.to_string(), fmt::int(l.count)]
        .into_iter()
        .chain(min)
        .chain([l.p50, l.p90, l.p99, l.p999, l.max].map(fmt::ms))
        .chain([uncorrected])
        .collect()
}

/// The head of the ack economics table, its last column (the saving) named `saving`.
pub(crate) fn ack_head(saving: &str) -> [&str; 7] {
    ["", "read", "read acks", "channel acks", "acks/read", "baseline", saving]
}

/// The ack economics rows (one-to-one, group, total) under [`ack_head`].
pub(crate) fn ack_rows(econ: &AckEconomics) -> Vec<Vec<String>> {
    [
        ("one-to-one", &econ.one_to_one),
        ("group", &econ.group),
        ("total", &econ.total),
    ]
    .into_iter()
    .map(|(kind, s)| {
        vec![
            kind.to_string(),
            fmt::int(s.messages_read),
            fmt::int(s.read_acks),
            fmt::int(s.channel_acks),
            fmt::num(s.acks_per_read, 2),
            fmt::int(s.baseline_acks),
            fmt::saving(s.saving_pct),
        ]
    })
    .collect()
}

/// The head of the strategies table of a [`Comparison`](super::model::Comparison).
pub(crate) const STRATEGY_HEAD: [&str; 11] = [
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
];

/// One strategy's row under [`STRATEGY_HEAD`].
pub(crate) fn strategy_cells(r: &StrategyRow) -> Vec<String> {
    vec![
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
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::sample::sample_report;

    #[test]
    fn metrics_follow_a_message_and_schedule_lag_comes_last() {
        let report = sample_report();
        let names: Vec<&str> = ordered_latencies(&report).into_iter().map(|(n, _)| n).collect();
        assert_eq!(names.first(), Some(&"server_ack"));
        assert_eq!(names.last(), Some(&"schedule_lag"));
        assert_eq!(names.len(), report.latencies.len());
    }

    #[test]
    fn latency_rows_show_min_only_when_asked() {
        let report = sample_report();
        let (name, l) = ordered_latencies(&report)[0];
        let wide = latency_cells(name, l, true);
        let narrow = latency_cells(name, l, false);
        assert_eq!(wide.len(), narrow.len() + 1);
        assert_eq!(wide[2], fmt::ms(l.min));
        assert_eq!(wide[3..], narrow[2..]);
        assert_eq!(narrow[0], name);
    }

    #[test]
    fn ack_rows_end_with_the_total() {
        let report = sample_report();
        let rows = ack_rows(&report.ack_economics);
        assert_eq!(rows.len(), 3);
        assert_eq!(rows[2][0], "total");
        assert_eq!(rows[2][6], fmt::saving(report.ack_economics.total.saving_pct));
    }
}
