//! The page of `ackstorm capacity`: the capacity found and why the search stopped as a verdict
//! band, latency and achieved throughput against offered load, what each limit means, then the
//! steps in the order they ran.

use minijinja::value::Serde;
use serde::Serialize;

use super::{Band, Card, Chip, Fact, Figure, HALF, TableView, render};
use crate::report::ReportError;
use crate::report::bench::{CapacityReport, CapacityStep, Limit};
use crate::report::bench_view::{self as view, SloParts};
use crate::report::chart::{self, Mark, Step, StepSeries, metric_color};
use crate::report::fmt;

/// The latency plot: full width, a little taller than a time line.
const LATENCY: (u32, u32) = (1180, 400);

/// A limit in the key beside the throughput plot.
#[derive(Serialize)]
struct LimitView {
    title: &'static str,
    meaning: &'static str,
    /// The limit this search stopped at.
    reached: bool,
}

/// The page of a capacity search.
pub fn render_capacity_html(r: &CapacityReport) -> Result<String, ReportError> {
    let slo = view::capacity_slo(r);
    let held = r.steps.iter().filter(|s| s.passed).count();
    let varied = match view::load_unit(r) {
        "" | "users" => r.vary.clone(),
        unit => format!("{} ({unit})", r.vary),
    };
    let facts = vec![
        Fact {
            label: "varied",
            value: varied,
        },
        Fact {
            label: "steps",
            value: format!("{} run · {} held", r.steps.len(), held),
        },
        Fact {
            label: "stopped by",
            value: view::limit_title(r.limit).to_string(),
        },
    ];
    let limits = [
        Limit::ServerSaturated,
        Limit::GeneratorSaturated,
        Limit::ConnectionLimit,
        Limit::NotReached,
    ]
    .map(|l| LimitView {
        title: view::limit_title(l),
        meaning: view::limit_meaning(l),
        reached: l == r.limit,
    });
    let page = minijinja::context! {
        r => Serde(r),
        facts => Serde(&facts),
        band => Serde(&band(r)),
        cards => Serde(&cards(r, slo.as_ref())),
        latency => Serde(&latency_figure(r, slo.as_ref())?),
        achieved => Serde(&achieved_figure(r)?),
        limits => Serde(&limits),
        table => Serde(&table(r, slo.as_ref())),
    };
    render("capacity.html", page)
}

/// `2,500 users`, or the bare number when the varied quantity is unknown.
fn load(r: &CapacityReport, v: f64) -> String {
    match view::load_unit(r) {
        "" => fmt::measured(v),
        unit => format!("{} {unit}", fmt::measured(v)),
    }
}

fn band(r: &CapacityReport) -> Band {
    let (tone, headline) = match (r.capacity, r.limit) {
        (None, _) => ("fail", "No load tried held the SLO".to_string()),
        (Some(c), limit) => {
            let offered = r
                .capacity_per_sec
                .map_or(String::new(), |o| format!(" · {} msg/s offered", fmt::rate(o)));
            let tone = match limit {
                Limit::ServerSaturated | Limit::NotReached => "info",
                Limit::GeneratorSaturated | Limit::ConnectionLimit => "warn",
            };
            let at_least = if limit == Limit::ServerSaturated {
                ""
            } else {
                "at least "
            };
            (tone, format!("Capacity {at_least}{}{offered}", load(r, c)))
        }
    };
    let chips = r
        .slo
        .iter()
        .map(|check| Chip {
            tone: "",
            mark: "",
            label: check.clone(),
            value: String::new(),
        })
        .collect();
    Band {
        tone,
        stamp: view::limit_title(r.limit).to_uppercase(),
        headline,
        chips,
        notes: vec![view::sentence(&r.summary), view::limit_meaning(r.limit).to_string()],
    }
}

fn cards(r: &CapacityReport, slo: Option<&SloParts>) -> Vec<Card> {
    let at = view::capacity_step(r);
    let none = || fmt::NONE.to_string();
    let capacity = Card::new(
        "capacity",
        r.capacity.map_or_else(none, fmt::measured),
        view::load_unit(r),
        "highest load that held".to_string(),
        if r.capacity.is_some() { "good" } else { "bad" },
    );
    let offered = Card::new(
        "offered at capacity",
        r.capacity_per_sec.map_or_else(none, fmt::rate),
        "msg/s",
        "the schedule's rate".to_string(),
        "",
    );
    let achieved = Card::new(
        "achieved at capacity",
        at.map_or_else(none, |s| fmt::rate(s.achieved_per_sec)),
        "msg/s",
        at.filter(|s| s.offered_per_sec > 0.0).map_or(String::new(), |s| {
            format!(
                "{} of offered",
                fmt::pct(100.0 * s.achieved_per_sec / s.offered_per_sec)
            )
        }),
        "",
    );
    let slo_card = Card::new(
        "SLO at capacity",
        view::slo_value(at.and_then(|s| s.value), slo),
        "",
        r.slo.first().cloned().unwrap_or_else(|| "no SLO".to_string()),
        "",
    );
    let held = r.steps.iter().filter(|s| s.passed).count();
    let steps = Card::new(
        "steps held",
        fmt::int(held as u64),
        &format!("/ {}", r.steps.len()),
        format!("{} failed", r.steps.len() - held),
        "",
    );
    vec![capacity, offered, achieved, slo_card, steps]
}

/// The steps as plot points sorted by offered rate: x the offered msg/s, y as `y` says.
fn points(r: &CapacityReport, y: fn(&CapacityStep) -> f64) -> Vec<Step> {
    let mut steps: Vec<&CapacityStep> = r.steps.iter().collect();
    steps.sort_by(|a, b| a.offered_per_sec.total_cmp(&b.offered_per_sec));
    let point = |s: &CapacityStep| Step {
        x: s.offered_per_sec,
        y: y(s),
        passed: s.passed,
    };
    steps.into_iter().map(point).collect()
}

fn capacity_mark(r: &CapacityReport) -> Option<Mark> {
    r.capacity_per_sec.map(|v| Mark {
        value: v,
        label: format!("capacity {} msg/s", fmt::rate(v)),
    })
}

fn latency_figure(r: &CapacityReport, slo: Option<&SloParts>) -> Result<Figure, ReportError> {
    let line = |label: &str, metric: &str, dashed: bool, y: fn(&CapacityStep) -> f64| StepSeries {
        label: label.to_string(),
        color: metric_color(metric),
        points: points(r, y),
        dashed,
    };
    let series = [
        line("read_receipt p50", "read_receipt", true, |s| s.read_receipt_p50),
        line("read_receipt p99", "read_receipt", false, |s| s.read_receipt_p99),
        line("server_ack p99", "server_ack", false, |s| s.server_ack_p99),
        line("schedule_lag p99", "schedule_lag", false, |s| s.schedule_lag_p99),
    ];
    let threshold = slo.filter(|s| s.unit == "ms").map(|s| Mark {
        value: s.value,
        label: format!("SLO {} {} {} ms", s.metric, s.op, fmt::measured(s.value)),
    });
    let caption = match &threshold {
        Some(_) => "ms at each step's offered rate; dots held the SLO, rings failed; red dashes: the SLO threshold",
        None => "ms at each step's offered rate; dots held the SLO, rings failed",
    };
    let mark = capacity_mark(r);
    let svg = (!r.steps.is_empty())
        .then(|| {
            chart::latency_vs_load(
                "latency against load",
                &series,
                threshold.as_ref(),
                mark.as_ref(),
                LATENCY,
            )
        })
        .transpose()?;
    Ok(Figure {
        title: "Latency against load".into(),
        caption: caption.into(),
        svg,
    })
}

fn achieved_figure(r: &CapacityReport) -> Result<Figure, ReportError> {
    let achieved = points(r, |s| s.achieved_per_sec);
    let mark = capacity_mark(r);
    let svg = (!achieved.is_empty())
        .then(|| chart::achieved_vs_offered("achieved against offered", &achieved, mark.as_ref(), HALF))
        .transpose()?;
    Ok(Figure {
        title: "Achieved against offered".into(),
        caption: "messages per second sent in the steady phase; below the diagonal the load was not carried".into(),
        svg,
    })
}

fn table(r: &CapacityReport, slo: Option<&SloParts>) -> TableView {
    let load_head = match view::load_unit(r) {
        "" => "load".to_string(),
        unit => format!("load ({unit})"),
    };
    let head = [
        "#",
        &load_head,
        "offered msg/s",
        "achieved msg/s",
        "SLO value",
        "read_receipt p99 ms",
        "server_ack p99 ms",
        "schedule_lag p99 ms",
        "failed conns",
        "held",
        "limit",
        "results",
    ];
    let mut t = TableView::new("Steps in the order run", &head);
    let (parent, names) = view::results_dirs(r);
    let capacity = view::capacity_step(r);
    for ((i, s), dir) in r.steps.iter().enumerate().zip(names) {
        let cells = vec![
            format!("{}", i + 1),
            fmt::measured(s.load),
            fmt::rate(s.offered_per_sec),
            fmt::rate(s.achieved_per_sec),
            view::slo_value(s.value, slo),
            fmt::ms(s.read_receipt_p99),
            fmt::ms(s.server_ack_p99),
            fmt::ms(s.schedule_lag_p99),
            fmt::int(s.connections_failed),
            if s.passed { "yes" } else { "no" }.to_string(),
            s.limit
                .map_or(fmt::NONE.to_string(), |l| view::limit_title(l).to_string()),
            dir.to_string(),
        ];
        let tone = match (s.passed, capacity.is_some_and(|c| std::ptr::eq(c, s))) {
            (false, _) => "bad",
            (true, true) => "good",
            (true, false) => "",
        };
        t.toned(cells, tone);
    }
    t.note = match (r.steps.is_empty(), parent) {
        (true, _) => "no steps ran".to_string(),
        (false, parent) => {
            let under = parent.map_or(String::new(), |p| format!("; results folders under {p}/"));
            let measured = slo.map_or(String::new(), |s| format!("; SLO value: {}", s.metric));
            format!("green: the capacity found; red: steps that failed the SLO{measured}{under}")
        }
    };
    t
}
