//! The page comparing strategies over the same workload: the rows as a table, then ack frames,
//! read latency and server frames per strategy, and the `read` percentile curves when the runs'
//! reports are at hand.

use minijinja::value::Serde;

use super::{Fact, Figure, HALF, TableView, render};
use crate::report::chart::{self, Bar, PALETTE, Series};
use crate::report::fmt;
use crate::report::model::{Comparison, Latency, Report, StrategyRow};
use crate::report::run_view::{self as view, STRATEGY_HEAD};
use crate::report::{ReportError, SCHEMA_VERSION};

/// The page comparing strategies; `reports` (the runs behind the rows, any order) add the `read`
/// percentile curves per strategy when given.
pub fn render_comparison_html(c: &Comparison, reports: &[Report]) -> Result<String, ReportError> {
    let names: Vec<String> = c.rows.iter().map(|r| r.strategy.clone()).collect();
    let acks = Bar {
        segments: vec![
            (
                "read acks".into(),
                PALETTE[0],
                c.rows.iter().map(|r| r.read_acks as f64).collect(),
            ),
            (
                "channel acks".into(),
                PALETTE[1],
                c.rows.iter().map(|r| r.channel_acks as f64).collect(),
            ),
        ],
        labels: c
            .rows
            .iter()
            .map(|r| match r.saving_vs_per_message_pct {
                Some(s) => format!("{} · {}", fmt::int(r.ack_frames), fmt::saving(s)),
                None => fmt::int(r.ack_frames),
            })
            .collect(),
    };
    let latency = |label: &str, color, f: fn(&StrategyRow) -> f64| Bar {
        segments: vec![(label.to_string(), color, c.rows.iter().map(f).collect())],
        labels: c.rows.iter().map(|r| fmt::ms(f(r))).collect(),
    };
    let read = [
        latency("read p50", PALETTE[4], |r| r.read_p50_ms),
        latency("read p99", PALETTE[3], |r| r.read_p99_ms),
    ];
    let server = Bar {
        segments: vec![(
            "server frames (in + out)".into(),
            PALETTE[6],
            c.rows.iter().map(|r| r.server_frames.unwrap_or(0) as f64).collect(),
        )],
        labels: c
            .rows
            .iter()
            .map(|r| r.server_frames.map_or("no /metrics".to_string(), fmt::int))
            .collect(),
    };
    let mut figures = vec![
        Figure {
            title: "Ack frames per strategy".into(),
            caption: "read + channel acks the clients sent, with the saving versus per_message".into(),
            svg: Some(chart::bars(
                "ack frames per strategy",
                "ack frames",
                &names,
                &[acks],
                &[],
                HALF,
            )?),
        },
        Figure {
            title: "Read latency per strategy".into(),
            caption: "send → sender learns it was read, ms".into(),
            svg: Some(chart::bars(
                "read latency per strategy",
                "ms",
                &names,
                &read,
                &[],
                HALF,
            )?),
        },
        Figure {
            title: "Server frames per strategy".into(),
            caption: "frames the server read and wrote, from /metrics".into(),
            svg: Some(chart::bars(
                "server frames per strategy",
                "frames",
                &names,
                &[server],
                &[],
                HALF,
            )?),
        },
    ];
    let curves: Vec<(String, &Latency)> = c
        .rows
        .iter()
        .filter_map(|row| {
            let report = reports.iter().find(|r| r.plan.strategy == row.strategy)?;
            Some((
                row.strategy.clone(),
                report.latencies.get("read").filter(|l| !l.curve.is_empty())?,
            ))
        })
        .collect();
    if !curves.is_empty() {
        let series: Vec<Series<'_>> = curves
            .iter()
            .enumerate()
            .map(|(i, (name, l))| Series::solid(name.clone(), PALETTE[i % PALETTE.len()], &l.curve))
            .collect();
        figures.push(Figure {
            title: "Read latency percentiles".into(),
            caption: "send → read receipt, corrected for coordinated omission".into(),
            svg: Some(chart::percentiles("read percentiles per strategy", &series, HALF)?),
        });
    }
    let mut table = TableView::new("Strategies", &STRATEGY_HEAD);
    for r in &c.rows {
        table.row(view::strategy_cells(r), r.lost > 0);
    }
    let facts = [
        Fact {
            label: "strategies",
            value: names.join(" · "),
        },
        Fact {
            label: "seed",
            value: c.seed.to_string(),
        },
        Fact {
            label: "workload",
            value: "the same profile and seed for every run".to_string(),
        },
    ];
    let page = minijinja::context! {
        comparison => Serde(c),
        facts => Serde(&facts),
        table => Serde(&table),
        figures => Serde(&figures),
        schema_version => SCHEMA_VERSION,
    };
    render("comparison.html", page)
}
