//! What the text and HTML renderers of a run's [`Report`] and of a strategies
//! [`Comparison`](super::model::Comparison)
//! share: the order latencies and audit kinds are listed in, and the rows of the latency, audit,
//! faults, ack economics and strategies tables, which both renderers show cell for cell.
//!
//! Presentation only: every cell is a model value put through `fmt`; nothing is computed here.
//! Headings, wording and layout stay with each renderer (the terminal's are terser).

use std::collections::BTreeMap;

use super::fmt;
use super::model::{
    AckEconomics, Audit, AuditKind, FaultReport, Latency, Report, ShardRow, ShardSet, Simulation, StrategyRow,
};

/// Latency metrics in the order a reader follows a message.
pub(crate) const METRIC_ORDER: [&str; 15] = super::model::LATENCY_METRICS;

/// The first of the tester's own lags, which close [`METRIC_ORDER`].
const TESTER_LAGS_FROM: &str = "schedule_lag";

/// The report's latency metrics in [`METRIC_ORDER`], unknown ones before the tester's own lags
/// (`schedule_lag`, `ack_lag`).
pub(crate) fn ordered_latencies(report: &Report) -> Vec<(&str, &Latency)> {
    let lags = METRIC_ORDER
        .iter()
        .position(|m| *m == TESTER_LAGS_FROM)
        .unwrap_or(METRIC_ORDER.len());
    let rank = |name: &str| match METRIC_ORDER.iter().position(|m| *m == name) {
        Some(i) if i >= lags => i + 1,
        Some(i) => i,
        None => lags,
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

/// Audit kinds in the order a request and its message travel (unknown kinds follow).
pub(crate) const AUDIT_KIND_ORDER: [&str; 9] = super::model::AUDIT_KINDS;

/// A column of the audit table: its head, what it means, and its value.
pub(crate) struct AuditColumn {
    pub head: &'static str,
    /// One line for a legend.
    pub meaning: &'static str,
    pub value: fn(&AuditKind) -> u64,
    /// Shown even when zero in every row (a zero there is news).
    pub always: bool,
}

/// Every column of the audit table, in order.
pub(crate) const AUDIT_COLUMNS: [AuditColumn; 10] = [
    AuditColumn {
        head: "expected",
        meaning: "owed to the tester, from what it sent and was told",
        value: |a| a.expected,
        always: true,
    },
    AuditColumn {
        head: "arrived",
        meaning: "of those, arrived (counted once)",
        value: |a| a.arrived,
        always: true,
    },
    AuditColumn {
        head: "lost",
        meaning: "owed, never arrived, and the protocol does not excuse it",
        value: |a| a.lost,
        always: true,
    },
    AuditColumn {
        head: "lost at end",
        meaning: "of the lost, still awaited when the run ended, sent less than its slowest transit before: maybe only late (a longer drain tells)",
        value: |a| a.lost_at_end,
        always: false,
    },
    AuditColumn {
        head: "dup",
        meaning: "extra copies of something that arrived",
        value: |a| a.duplicated,
        always: false,
    },
    AuditColumn {
        head: "unexpected",
        meaning: "arrived with nothing to match (never sent, never asked for)",
        value: |a| a.unexpected,
        always: false,
    },
    AuditColumn {
        head: "refused",
        meaning: "requests answered with an error: a reply came, nothing is lost",
        value: |a| a.refused,
        always: false,
    },
    AuditColumn {
        head: "lost in disconnect",
        meaning: "went down with a connection that died; protocol v1 allows it",
        value: |a| a.lost_in_disconnect,
        always: false,
    },
    AuditColumn {
        head: "not due",
        meaning: "not owed: its device or user never came back online",
        value: |a| a.not_due,
        always: false,
    },
    AuditColumn {
        head: "late",
        meaning: "arrived after the audit had settled it",
        value: |a| a.late,
        always: false,
    },
];

/// The audit as a table: the rows worth a line and the columns worth showing.
pub(crate) struct AuditTable<'a> {
    /// The columns shown: the `always` ones and those non-zero in some row.
    pub columns: Vec<&'static AuditColumn>,
    /// Heads of the columns left out, zero in every row.
    pub omitted: Vec<&'static str>,
    /// (kind, figures): every kind with any non-zero figure, in [`AUDIT_KIND_ORDER`], then the
    /// total; empty when nothing was expected or seen at all.
    pub rows: Vec<(&'a str, &'a AuditKind)>,
}

impl AuditTable<'_> {
    /// A row's cells under [`Self::heads`]: the kind, then each column's count.
    pub(crate) fn cells(&self, kind: &str, a: &AuditKind) -> Vec<String> {
        std::iter::once(kind.to_string())
            .chain(self.columns.iter().map(|c| fmt::int((c.value)(a))))
            .collect()
    }

    /// The table's head: `kind`, then the columns shown.
    pub(crate) fn heads(&self) -> Vec<&'static str> {
        std::iter::once("kind")
            .chain(self.columns.iter().map(|c| c.head))
            .collect()
    }
}

/// The audit's rows and columns, as both renderers show them.
pub(crate) fn audit_table(audit: &Audit) -> AuditTable<'_> {
    let rank = |kind: &str| {
        AUDIT_KIND_ORDER
            .iter()
            .position(|k| *k == kind)
            .unwrap_or(AUDIT_KIND_ORDER.len())
    };
    let any = |a: &AuditKind| AUDIT_COLUMNS.iter().any(|c| (c.value)(a) > 0);
    let mut rows: Vec<(&str, &AuditKind)> = audit
        .by_kind
        .iter()
        .filter(|(_, a)| any(a))
        .map(|(k, a)| (k.as_str(), a))
        .collect();
    rows.sort_by_key(|(kind, _)| rank(kind));
    if !rows.is_empty() || any(&audit.total) {
        rows.push(("total", &audit.total));
    }
    let (columns, omitted) = AUDIT_COLUMNS
        .iter()
        .partition::<Vec<_>, _>(|c| c.always || rows.iter().any(|(_, a)| (c.value)(a) > 0));
    AuditTable {
        columns,
        omitted: omitted.into_iter().map(|c| c.head).collect(),
        rows,
    }
}

/// What the audit counted beside its table, one phrase each, only when non-zero: `refused:
/// rate_limited 4, unknown_message 2`, `protocol errors: unknown_op 2`.
pub(crate) fn audit_extras(audit: &Audit) -> Vec<String> {
    let listed = |title: &str, counts: &BTreeMap<String, u64>| {
        let items: Vec<String> = counts
            .iter()
            .filter(|(_, n)| **n > 0)
            .map(|(k, n)| format!("{k} {}", fmt::int(*n)))
            .collect();
        (!items.is_empty()).then(|| format!("{title}: {}", items.join(", ")))
    };
    [
        listed("refused", &audit.refused_by_code),
        listed("protocol errors", &audit.protocol_errors),
    ]
    .into_iter()
    .flatten()
    .collect()
}

/// The head of a merged run's shards table.
pub(crate) const SHARD_HEAD: [&str; 8] = [
    "shard",
    "users",
    "peak connected",
    "messages",
    "schedule lag p99 ms",
    "tester CPU s",
    "tester peak RSS MiB",
    "clock offset ms",
];

/// One shard's row under [`SHARD_HEAD`].
pub(crate) fn shard_cells(r: &ShardRow) -> Vec<String> {
    vec![
        r.index.to_string(),
        fmt::int(r.users),
        fmt::int(r.connected_peak),
        fmt::int(r.messages_sent),
        fmt::ms(r.schedule_lag_p99_ms),
        format!("{:.1}", r.cpu_secs),
        format!("{:.0}", r.peak_rss_mb),
        format!("{:.3}", r.clock_offset_ms),
    ]
}

/// What a simulation ran against and predicts, as (what, value) rows: one place for the text
/// and HTML reports.
pub(crate) fn simulation_rows(s: &Simulation) -> Vec<(&'static str, String)> {
    let m = &s.model;
    let mut rows = vec![
        ("model", m.name.clone()),
        ("cores", m.cores.to_string()),
        (
            "one-way latency",
            format!(
                "{:.0} µs median, log-normal spread {:.2}",
                m.one_way_us, m.one_way_sigma
            ),
        ),
        (
            "server CPU",
            format!(
                "{:.2} µs a frame read, {:.2} µs a frame written, {:.2} cores base",
                m.frame_in_us, m.frame_out_us, m.server_base_cores
            ),
        ),
    ];
    if m.colocated {
        rows.push((
            "generator on the same cores",
            format!(
                "{:.2} µs a frame, {:.2} cores base",
                m.tester_frame_us, m.tester_base_cores
            ),
        ));
    }
    if let Some(c) = &m.calibrated_from {
        rows.push(("calibrated from", c.clone()));
    }
    rows.extend([
        (
            "predicted server cores",
            format!(
                "{:.2} peak, {:.2} steady mean",
                s.peak_server_cores, s.mean_server_cores
            ),
        ),
        (
            "receipts routed",
            format!("{}/s steady mean", fmt::int(s.receipts_per_sec.round() as u64)),
        ),
        (
            "simulation",
            format!("{} events in {:.1} s of wall time", fmt::int(s.events), s.wall_secs),
        ),
    ]);
    rows
}

/// What a report says of its shards in one line (`None`: not a split run).
pub(crate) fn shards_line(s: &ShardSet) -> String {
    let split = if s.partitioned {
        ", users talking only within their shard"
    } else {
        ""
    };
    match s.index {
        Some(i) => format!("shard {i} of {} of run {}{split}", s.count, s.run_id),
        None => format!("merged from {} shards of run {}{split}", s.count, s.run_id),
    }
}

/// The head of the faults table.
pub(crate) const FAULT_HEAD: [&str; 10] = [
    "fault",
    "at",
    "over",
    "planned",
    "done",
    "recovered",
    "recovery p50 ms",
    "recovery max ms",
    "lost",
    "lost in disconnect",
];

/// One fault's row under [`FAULT_HEAD`]; the recovery times show as `–` when nothing recovered
/// (the model writes 0 then).
pub(crate) fn fault_cells(f: &FaultReport) -> Vec<String> {
    let recovery = |ms: f64| {
        if f.recovered == 0 {
            fmt::NONE.to_string()
        } else {
            fmt::ms(ms)
        }
    };
    vec![
        f.kind.clone(),
        fmt::secs(f.at_secs),
        fmt::secs(f.over_secs),
        fmt::int(f.planned),
        fmt::int(f.done),
        fmt::int(f.recovered),
        recovery(f.recovery_p50_ms),
        recovery(f.recovery_max_ms),
        fmt::int(f.lost),
        fmt::int(f.lost_in_disconnect),
    ]
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
    fn metrics_follow_a_message_and_the_testers_own_lags_come_last() {
        let mut report = sample_report();
        report.latencies.insert("zz_new".into(), Default::default());
        let names: Vec<&str> = ordered_latencies(&report).into_iter().map(|(n, _)| n).collect();
        assert_eq!(names.first(), Some(&"server_ack"));
        assert_eq!(names[names.len() - 3..], ["zz_new", "schedule_lag", "ack_lag"]);
        assert_eq!(names.len(), report.latencies.len());
    }

    #[test]
    fn audit_rows_follow_a_message_and_skip_empty_kinds_and_zero_columns() {
        let mut report = sample_report();
        report.audit.by_kind.insert("read_users".into(), Default::default());
        let t = audit_table(&report.audit);
        let kinds: Vec<&str> = t.rows.iter().map(|(k, _)| *k).collect();
        assert_eq!(
            kinds,
            [
                "reply",
                "message",
                "delivery",
                "read",
                "channel",
                "channel_sync",
                "group_read",
                "statistic",
                "total"
            ]
        );
        // The sample has something in every column.
        assert_eq!(t.heads().len(), 1 + AUDIT_COLUMNS.len());
        assert!(t.omitted.is_empty());
        let (_, delivery) = t.rows[2];
        assert_eq!(t.cells("delivery", delivery)[3], "3", "lost");

        report.audit.by_kind.values_mut().for_each(|a| {
            a.late = 0;
            a.duplicated = 0;
        });
        report.audit.total.late = 0;
        report.audit.total.duplicated = 0;
        let t = audit_table(&report.audit);
        assert_eq!(t.omitted, ["dup", "late"]);
        assert!(!t.heads().contains(&"late"));
        assert_eq!(t.cells("total", &report.audit.total).len(), t.heads().len());

        // Zero losses keep their column: "0 lost" is the news.
        report.audit = Audit {
            by_kind: [(
                "reply".to_string(),
                AuditKind {
                    expected: 5,
                    arrived: 5,
                    ..Default::default()
                },
            )]
            .into(),
            total: AuditKind {
                expected: 5,
                arrived: 5,
                ..Default::default()
            },
            ..Default::default()
        };
        let t = audit_table(&report.audit);
        assert_eq!(t.heads(), ["kind", "expected", "arrived", "lost"]);
        assert_eq!(t.rows.len(), 2);
        assert!(audit_table(&Audit::default()).rows.is_empty());
    }

    #[test]
    fn audit_extras_name_only_non_zero_codes_and_causes() {
        let report = sample_report();
        assert_eq!(
            audit_extras(&report.audit),
            [
                "refused: rate_limited 4, unknown_message 2",
                "protocol errors: unknown_op 2"
            ]
        );
        assert!(audit_extras(&Audit::default()).is_empty());
    }

    #[test]
    fn fault_rows_hide_recovery_times_when_nothing_recovered() {
        let report = sample_report();
        let cells = fault_cells(&report.faults[0]);
        assert_eq!(cells.len(), FAULT_HEAD.len());
        assert_eq!(cells[..3], ["drop_connections", "30 s", "2.0 s"]);
        assert_eq!(cells[6..], ["420", "2,310", "0", "3"]);
        let none = FaultReport {
            kind: "stall_readers".into(),
            done: 10,
            ..Default::default()
        };
        assert_eq!(fault_cells(&none)[6..8], [fmt::NONE, fmt::NONE]);
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
