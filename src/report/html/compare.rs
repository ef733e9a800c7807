//! The page of `ackstorm compare`: the two sides (with a loud warning when they ran different
//! workloads), the verdict, counts of what moved, the change of every metric as one chart, then
//! every row in tables by group.

use minijinja::value::Serde;
use serde::Serialize;

use super::{Band, Card, Chip, Figure, Row, render};
use crate::report::ReportError;
use crate::report::bench::{CompareReport, MetricDelta, Side};
use crate::report::bench_view::{self as view, Group, Movement, movement};
use crate::report::chart::{self, BETTER, DeltaGroup, DeltaRow, NOISE, WORSE};
use crate::report::fmt;

/// Width of the change chart, the page's full width.
const CHART_WIDTH: u32 = 1180;

/// One side in the header.
#[derive(Serialize)]
struct SideView {
    /// `A` or `B`.
    tag: &'static str,
    /// `baseline` or `candidate`.
    role: &'static str,
    label: String,
    path: String,
    runs: String,
    build: String,
    hash: String,
}

/// Every row in one table, under a heading row per group (so the columns line up).
#[derive(Serialize)]
struct GroupedTable {
    head: Vec<&'static str>,
    groups: Vec<RowGroup>,
}

#[derive(Serialize)]
struct RowGroup {
    title: &'static str,
    rows: Vec<Row>,
}

/// The page comparing build (or run set) B against A.
pub fn render_compare_html(r: &CompareReport) -> Result<String, ReportError> {
    let sides = [side("A", "baseline", &r.a), side("B", "candidate", &r.b)];
    let warnings = view::compare_warnings(r);
    let groups = view::groups(&r.rows);
    let page = minijinja::context! {
        r => Serde(r),
        sides => Serde(&sides),
        hashes_differ => r.a.profile_hash != r.b.profile_hash,
        band => Serde(&band(r)),
        warnings => warnings,
        cards => Serde(&cards(r)),
        noise => view::noise_sentence(r),
        threshold => view::threshold(r),
        chart => Serde(&figure(&groups, r.threshold_pct)?),
        table => Serde(&table(&groups)),
    };
    render("compare.html", page)
}

fn side(tag: &'static str, role: &'static str, s: &Side) -> SideView {
    SideView {
        tag,
        role,
        label: s.label.clone(),
        path: s.path.clone(),
        runs: format!("{} run{}", s.runs, if s.runs == 1 { "" } else { "s" }),
        build: s
            .build_info
            .clone()
            .unwrap_or_else(|| "not exposed by the server".to_string()),
        hash: s.profile_hash.clone(),
    }
}

fn band(r: &CompareReport) -> Band {
    let mut chips: Vec<Chip> = view::gated_regressions(r)
        .into_iter()
        .map(|m| Chip {
            tone: "fail",
            mark: "✗",
            label: m.metric.clone(),
            value: view::change(m),
        })
        .collect();
    for m in r.rows.iter().filter(|m| m.regression && !m.gated) {
        chips.push(Chip {
            tone: "warn",
            mark: "!",
            label: m.metric.clone(),
            value: format!("{} · not gated", view::change(m)),
        });
    }
    for m in r.rows.iter().filter(|m| movement(m) == Movement::Better) {
        chips.push(Chip {
            tone: "pass",
            mark: "✓",
            label: m.metric.clone(),
            value: format!("{} · better", view::change(m)),
        });
    }
    let gate = match view::threshold(r) {
        Some(t) => format!(
            "Threshold {t}: a gated metric fails the comparison when it is worse by more than {t} and beyond the \
             noise."
        ),
        None => "No threshold: pass --fail-on-regression PCT to fail on regressions.".to_string(),
    };
    Band {
        tone: if r.failed { "fail" } else { "pass" },
        stamp: if r.failed { "FAIL" } else { "PASS" }.to_string(),
        headline: view::compare_headline(r),
        chips,
        notes: vec![gate],
    }
}

fn cards(r: &CompareReport) -> Vec<Card> {
    let count = |m: Movement| r.rows.iter().filter(|x| movement(x) == m).count();
    let (worse, better, noise) = (count(Movement::Worse), count(Movement::Better), count(Movement::Noise));
    let regressions = r.rows.iter().filter(|m| m.regression).count();
    let gated = r.rows.iter().filter(|m| m.gated).count();
    let past = view::threshold(r).map_or(String::new(), |t| format!(" past {t}"));
    let n = |x: usize| fmt::int(x as u64);
    vec![
        Card::new(
            "metrics compared",
            n(r.rows.len()),
            "",
            format!("{} gated by the verdict", n(gated)),
            "",
        ),
        Card::new(
            "worse beyond noise",
            n(worse),
            "",
            format!(
                "{} regression{}{past}",
                n(regressions),
                if regressions == 1 { "" } else { "s" }
            ),
            if worse > 0 { "bad" } else { "" },
        ),
        Card::new(
            "better beyond noise",
            n(better),
            "",
            "the interval excludes 0".to_string(),
            if better > 0 { "good" } else { "" },
        ),
        Card::new("within noise", n(noise), "", "the interval holds 0".to_string(), ""),
        Card::new(
            "runs",
            format!("{} vs {}", r.a.runs, r.b.runs),
            "",
            format!("noise: {}", r.noise),
            "",
        ),
    ]
}

/// The 95% interval of B - A in percent of A, low end first; `None` when A is 0.
fn interval_pct(m: &MetricDelta) -> Option<(f64, f64)> {
    (m.a != 0.0 && m.a.is_finite()).then(|| {
        let (x, y) = (100.0 * m.ci_low / m.a, 100.0 * m.ci_high / m.a);
        (x.min(y), x.max(y))
    })
}

fn figure(groups: &[Group<'_>], threshold: Option<f64>) -> Result<Figure, ReportError> {
    let delta_groups: Vec<DeltaGroup> = groups
        .iter()
        .map(|g| DeltaGroup {
            title: g.title.to_string(),
            rows: g
                .rows
                .iter()
                .map(|m| DeltaRow {
                    label: m.metric.clone(),
                    delta_pct: m.delta_pct.filter(|d| d.is_finite()),
                    interval_pct: interval_pct(m),
                    color: match movement(m) {
                        Movement::Better => BETTER,
                        Movement::Worse => WORSE,
                        Movement::Noise => NOISE,
                    },
                    text: match m.delta_pct {
                        Some(d) => fmt::signed_pct(d),
                        None if m.b == m.a => format!("both {} {}", fmt::in_unit(m.a, &m.unit), m.unit),
                        None => format!("from 0 to {} {}", fmt::in_unit(m.b, &m.unit), m.unit),
                    },
                    strong: m.regression,
                })
                .collect(),
        })
        .collect();
    let svg = chart::deltas("change from A to B", &delta_groups, threshold, CHART_WIDTH)?;
    Ok(Figure {
        title: "Change from A to B".into(),
        caption: "bar: (B − A) / A · whisker: the 95% interval of B − A, in percent of A".into(),
        svg: Some(svg),
    })
}

fn table(groups: &[Group<'_>]) -> GroupedTable {
    let groups = groups
        .iter()
        .map(|g| RowGroup {
            title: g.title,
            rows: g.rows.iter().map(|m| row(m)).collect(),
        })
        .collect();
    GroupedTable {
        head: vec![
            "metric",
            "unit",
            "A",
            "B",
            "Δ %",
            "95% interval of B − A",
            "beyond noise",
            "flag",
        ],
        groups,
    }
}

fn row(m: &MetricDelta) -> Row {
    let moved = movement(m);
    let flag = match (m.regression, m.gated, moved) {
        (true, true, _) => "regression · gated",
        (true, false, _) => "regression · not gated",
        (false, _, Movement::Worse) => "worse, under threshold",
        (false, _, Movement::Better) => "better",
        (false, _, Movement::Noise) => fmt::NONE,
    };
    let interval = format!(
        "{} … {}",
        fmt::signed_in_unit(m.ci_low, &m.unit),
        fmt::signed_in_unit(m.ci_high, &m.unit)
    );
    let cells = vec![
        m.metric.clone(),
        m.unit.clone(),
        fmt::in_unit(m.a, &m.unit),
        fmt::in_unit(m.b, &m.unit),
        m.delta_pct.map_or(fmt::NONE.to_string(), fmt::signed_pct),
        interval,
        if m.beyond_noise { "yes" } else { "no" }.to_string(),
        flag.to_string(),
    ];
    let tone = match (m.regression, moved) {
        (true, _) => "bad",
        (false, Movement::Worse) => "worse",
        (false, Movement::Better) => "good",
        (false, Movement::Noise) => "",
    };
    Row {
        cells,
        tone,
        marks: Vec::new(),
    }
}
