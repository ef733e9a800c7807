//! Plots of the compare and capacity pages: the change of every metric from A to B with its
//! noise interval, and latency and throughput against the offered load of a capacity search.
//!
//! Like the rest of `chart`, these draw what they are given and compute no result.

use std::ops::Range;

use plotters::coord::ranged1d::{DefaultFormatting, KeyPointHint};
use plotters::coord::types::RangedCoordf64;
use plotters::element::ComposedElement;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use super::{
    AXIS, Axes, Chart, DrawResult, GRID, INK, PALETTE, TickAxis, compact, draw_line, draw_svg, font, frame, legend,
    nice_max,
};
use crate::report::ReportError;

/// Better beyond the noise (the page's `--pass`, a little lighter for a filled bar).
pub(crate) const BETTER: RGBColor = RGBColor(0x2f, 0x9e, 0x6b);
/// Worse beyond the noise.
pub(crate) const WORSE: RGBColor = RGBColor(0xd6, 0x3c, 0x42);
/// Within the noise.
pub(crate) const NOISE: RGBColor = RGBColor(0xb4, 0xbc, 0xc7);
/// Thresholds and failed steps (the page's `--fail`).
const FAIL: RGBColor = RGBColor(0xc0, 0x26, 0x2d);
const FAIL_BG: RGBColor = RGBColor(0xfd, 0xec, 0xed);
/// The capacity found (the page's `--pass`).
const PASS: RGBColor = RGBColor(0x0f, 0x7b, 0x4f);
const MUTED: RGBColor = RGBColor(0x64, 0x74, 0x8b);

/// One bar of the change chart.
pub(crate) struct DeltaRow {
    /// The metric, left of the axis.
    pub label: String,
    /// (B - A) / A in percent; `None` when A is 0 (no bar).
    pub delta_pct: Option<f64>,
    /// The 95% interval of B - A in percent of A.
    pub interval_pct: Option<(f64, f64)>,
    pub color: RGBColor,
    /// Text at the end of the bar: `+18.4%`.
    pub text: String,
    /// A regression: the row is shaded and its text bold red.
    pub strong: bool,
}

/// Rows under a heading.
pub(crate) struct DeltaGroup {
    pub title: String,
    pub rows: Vec<DeltaRow>,
}

/// Height of one bar's row, px.
const ROW_PX: f64 = 27.0;
/// A group heading's share of a row.
const HEAD: f64 = 1.0;
/// Room above the first group for the threshold labels, in rows.
const TOP: f64 = 0.8;

/// Horizontal bars of the change of every row from A to B, percent, with the noise interval as
/// an error bar, grouped under headings; dashed lines at ± the regression threshold. A bar that
/// runs past the axis (a rare large change) is cut with an arrow, its text giving the value.
pub(crate) fn deltas(
    title: &str,
    groups: &[DeltaGroup],
    threshold: Option<f64>,
    width: u32,
) -> Result<String, ReportError> {
    // Lay the rows out from the top, in row units; y grows upward in the chart.
    let mut at = TOP;
    let (mut heads, mut rows) = (Vec::new(), Vec::new());
    for g in groups {
        heads.push((at + HEAD / 2.0, g.title.as_str()));
        at += HEAD;
        for r in &g.rows {
            rows.push((at + 0.5, r));
            at += 1.0;
        }
    }
    let total = at.max(TOP + 1.0);
    let y = |from_top: f64| total - from_top;
    let cap = clip_limit(rows.iter().map(|(_, r)| *r), threshold);
    let clip = |v: f64| v.clamp(-cap, cap);
    let mut ends: Vec<f64> = vec![0.0];
    for (_, r) in &rows {
        ends.extend(r.delta_pct.map(clip));
        ends.extend(r.interval_pct.iter().flat_map(|&(lo, hi)| [clip(lo), clip(hi)]));
    }
    if let Some(t) = threshold {
        ends.extend([-t, t]);
    }
    let lo = ends.iter().copied().fold(0.0, f64::min);
    let hi = ends.iter().copied().fold(0.0, f64::max);
    let span = if hi - lo > 0.0 { hi - lo } else { 2.0 };
    // Room for the value texts beyond the bars.
    let (x_lo, x_hi) = (lo - span * 0.13, hi + span * 0.13);
    let pad = span * 0.012;
    let label_of = |v: f64| {
        rows.iter()
            .find(|(c, _)| (y(*c) - v).abs() < 1e-6)
            .map_or(String::new(), |(_, r)| r.label.clone())
    };
    let height = (total * ROW_PX + 62.0).round() as u32;
    let axes = Axes {
        x_area: 40,
        y_area: 230,
        x_desc: Some("change from A to B, % of A"),
        x_format: &|x| signed(*x),
        y_format: &|v| label_of(*v),
        x_labels: Some(10),
        y_mesh: false,
        ..Axes::default()
    };
    let y_axis = TickAxis {
        lo: 0.0,
        hi: total,
        ticks: rows.iter().map(|(c, _)| y(*c)).collect(),
    };
    draw_svg(title, (width, height), |root| {
        let mut chart = frame(root, x_lo..x_hi, y_axis, &axes)?;
        let shade = rows
            .iter()
            .filter(|(_, r)| r.strong)
            .map(|(c, _)| Rectangle::new([(x_lo, y(c - 0.5)), (x_hi, y(c + 0.5))], FAIL_BG.filled()));
        chart.draw_series(shade)?;
        for (i, (c, head)) in heads.iter().enumerate() {
            if i > 0 {
                let line = y(c - HEAD / 2.0);
                chart.draw_series([PathElement::new(vec![(x_lo, line), (x_hi, line)], GRID.stroke_width(1))])?;
            }
            // Headings sit in the label area, left of the metric names.
            let (_, py) = chart.backend_coord(&(x_lo, y(*c)));
            let style = ("sans-serif", 12, FontStyle::Bold).into_font().color(&MUTED);
            root.draw(&Text::new(
                head.to_uppercase(),
                (14, py),
                style.pos(Pos::new(HPos::Left, VPos::Center)),
            ))?;
        }
        if let Some(t) = threshold {
            for x in [-t, t] {
                let line = vec![(x, 0.0), (x, total - TOP * 0.45)];
                chart.draw_series(DashedLineSeries::new(line, 5, 4, FAIL.mix(0.7).stroke_width(1)))?;
            }
            let style = font(12).color(&FAIL).pos(Pos::new(HPos::Left, VPos::Bottom));
            let text = format!("±{}% threshold", compact(t));
            chart.draw_series([Text::new(text, (t + pad, total - TOP * 0.4), style)])?;
        }
        chart.draw_series([PathElement::new(
            vec![(0.0, 0.0), (0.0, total - TOP * 0.45)],
            INK.stroke_width(1),
        )])?;
        for (c, r) in &rows {
            draw_delta(&mut chart, y(*c), r, cap, pad)?;
        }
        Ok(())
    })
}

type DeltaChart<'a, 'b> = Chart<'a, 'b, RangedCoordf64, TickAxis>;

/// One row: the bar, the interval, the text beyond both.
fn draw_delta(chart: &mut DeltaChart<'_, '_>, y: f64, r: &DeltaRow, cap: f64, pad: f64) -> DrawResult {
    let clip = |v: f64| v.clamp(-cap, cap);
    let mut far = (0.0_f64, 0.0_f64);
    if let Some(d) = r.delta_pct {
        chart.draw_series([Rectangle::new([(0.0, y - 0.3), (clip(d), y + 0.3)], r.color.filled())])?;
        far = (far.0.min(clip(d)), far.1.max(clip(d)));
        if d.abs() > cap {
            arrow(chart, clip(d), y, d.signum(), r.color)?;
        }
    }
    if let Some((lo, hi)) = r.interval_pct {
        let (l, h) = (clip(lo), clip(hi));
        let whisker = INK.stroke_width(2);
        chart.draw_series([PathElement::new(vec![(l, y), (h, y)], whisker)])?;
        for (end, raw) in [(l, lo), (h, hi)] {
            if raw.abs() <= cap {
                chart.draw_series([PathElement::new(vec![(end, y - 0.19), (end, y + 0.19)], whisker)])?;
            }
        }
        far = (far.0.min(l), far.1.max(h));
    }
    let right = r.delta_pct.is_none_or(|d| d >= 0.0);
    // Past the arrowhead when the bar was cut.
    let pad = if r.delta_pct.is_some_and(|d| d.abs() > cap) {
        pad * 3.0
    } else {
        pad
    };
    let (x, h) = if right {
        (far.1 + pad, HPos::Left)
    } else {
        (far.0 - pad, HPos::Right)
    };
    let weight = if r.strong { FontStyle::Bold } else { FontStyle::Normal };
    let color = match (r.strong, r.delta_pct) {
        (true, _) => FAIL,
        (false, None) => MUTED,
        _ => INK,
    };
    let style = ("sans-serif", 13, weight)
        .into_font()
        .color(&color)
        .pos(Pos::new(h, VPos::Center));
    chart.draw_series([Text::new(r.text.clone(), (x, y), style)])?;
    Ok(())
}

/// An arrowhead at `x` pointing `dir` (±1): the bar goes on past the axis.
fn arrow(chart: &mut DeltaChart<'_, '_>, x: f64, y: f64, dir: f64, color: RGBColor) -> DrawResult {
    let d = if dir > 0.0 { 1 } else { -1 };
    let tip = Polygon::new(vec![(0, -9), (9 * d, 0), (0, 9)], color.filled());
    chart.draw_series([EmptyElement::at((x, y)) + tip])?;
    Ok(())
}

/// How far from zero the change axis reaches: the rows' extents, but a row far beyond the others
/// (a count going from 1 to 4 is +300%) is cut so that the rest stay readable.
fn clip_limit<'a>(rows: impl Iterator<Item = &'a DeltaRow>, threshold: Option<f64>) -> f64 {
    let mut reach: Vec<f64> = rows
        .map(|r| {
            let (lo, hi) = r.interval_pct.unwrap_or((0.0, 0.0));
            [r.delta_pct.unwrap_or(0.0), lo, hi]
                .into_iter()
                .filter(|v| v.is_finite())
                .fold(0.0_f64, |m, v| m.max(v.abs()))
        })
        .collect();
    if reach.len() < 4 {
        return f64::INFINITY;
    }
    reach.sort_by(f64::total_cmp);
    let typical = reach[reach.len() * 3 / 4];
    (typical * 3.0).max(threshold.unwrap_or(0.0) * 2.5).max(10.0)
}

fn signed(x: f64) -> String {
    match x {
        x if x > 0.0 => format!("+{}%", compact(x)),
        x if x < 0.0 => format!("-{}%", compact(-x)),
        _ => "0".to_string(),
    }
}

/// One point of a capacity plot.
#[derive(Clone, Copy)]
pub(crate) struct Step {
    /// Offered msg/s.
    pub x: f64,
    pub y: f64,
    /// The step held its SLO (a filled marker; a hollow one when not).
    pub passed: bool,
}

/// A line through the steps of a capacity search, sorted by x.
pub(crate) struct StepSeries {
    pub label: String,
    pub color: RGBColor,
    pub points: Vec<Step>,
    pub dashed: bool,
}

/// A reference line: the SLO threshold (horizontal) or the capacity found (vertical).
pub(crate) struct Mark {
    pub value: f64,
    pub label: String,
}

type StepChart<'a, 'b, Y> = Chart<'a, 'b, RangedCoordf64, Y>;

/// Latency against offered load on a log axis (a knee spans two decades), markers filled where
/// the step held and hollow where it failed, with the SLO threshold and the capacity found.
pub(crate) fn latency_vs_load(
    title: &str,
    series: &[StepSeries],
    slo: Option<&Mark>,
    capacity: Option<&Mark>,
    size: (u32, u32),
) -> Result<String, ReportError> {
    let ys = || {
        let values = series.iter().flat_map(|s| s.points.iter().map(|p| p.y));
        values.chain(slo.map(|m| m.value)).filter(|v| v.is_finite() && *v > 0.0)
    };
    let y_axis = LogAxis::covering(ys().fold(f64::INFINITY, f64::min), ys().fold(0.0, f64::max) * 1.6);
    let x_max = x_max(series, capacity);
    let axes = Axes {
        x_desc: Some("offered msg/s"),
        y_desc: Some("ms (log scale)"),
        x_labels: Some(10),
        ..Axes::default()
    };
    draw_svg(title, size, |root| {
        let mut chart = frame(root, 0.0..x_max, y_axis, &axes)?;
        if let Some(m) = capacity {
            capacity_line(&mut chart, m)?;
        }
        if let Some(m) = slo {
            let (lo, hi) = (0.0, x_max);
            chart.draw_series(DashedLineSeries::new(
                [(lo, m.value), (hi, m.value)],
                8,
                5,
                FAIL.stroke_width(2),
            ))?;
            let style = font(13).color(&FAIL).pos(Pos::new(HPos::Right, VPos::Bottom));
            chart.draw_series([Text::new(m.label.clone(), (hi - x_max * 0.01, m.value * 1.06), style)])?;
        }
        draw_steps(&mut chart, series)?;
        legend(&mut chart)
    })
}

/// Messages per second achieved against offered, with the line where they are equal.
pub(crate) fn achieved_vs_offered(
    title: &str,
    points: &[Step],
    capacity: Option<&Mark>,
    size: (u32, u32),
) -> Result<String, ReportError> {
    let series = [StepSeries {
        label: "achieved".into(),
        color: PALETTE[0],
        points: points.to_vec(),
        dashed: false,
    }];
    let x_max = x_max(&series, capacity);
    let y_max = nice_max(points.iter().map(|p| p.y).fold(x_max / 1.05, f64::max));
    let axes = Axes {
        x_desc: Some("offered msg/s"),
        y_desc: Some("achieved msg/s"),
        x_labels: Some(6),
        y_labels: Some(6),
        ..Axes::default()
    };
    draw_svg(title, size, |root| {
        let mut chart = frame(root, 0.0..x_max, 0.0..y_max, &axes)?;
        if let Some(m) = capacity {
            capacity_line(&mut chart, m)?;
        }
        let diagonal = [(0.0, 0.0), (x_max.min(y_max), x_max.min(y_max))];
        chart
            .draw_series(DashedLineSeries::new(diagonal, 6, 5, AXIS.stroke_width(2)))?
            .label("achieved = offered")
            .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], AXIS.stroke_width(2)));
        draw_steps(&mut chart, &series)?;
        legend(&mut chart)
    })
}

fn x_max(series: &[StepSeries], capacity: Option<&Mark>) -> f64 {
    let xs = series.iter().flat_map(|s| s.points.iter().map(|p| p.x));
    nice_max(xs.chain(capacity.map(|m| m.value)).fold(0.0, f64::max))
}

fn capacity_line<Y: Ranged<ValueType = f64>>(chart: &mut StepChart<'_, '_, Y>, m: &Mark) -> DrawResult {
    let (y_lo, y_hi) = {
        let r = chart.y_range();
        (r.start, r.end)
    };
    chart.draw_series(DashedLineSeries::new(
        [(m.value, y_lo), (m.value, y_hi)],
        3,
        4,
        PASS.stroke_width(2),
    ))?;
    let style = ("sans-serif", 13, FontStyle::Bold).into_font().color(&PASS);
    let text = Text::new(m.label.clone(), (6, 8), style.pos(Pos::new(HPos::Left, VPos::Top)));
    chart.draw_series([EmptyElement::at((m.value, y_hi)) + text])?;
    Ok(())
}

/// The lines, their markers, and legend entries for the two kinds of marker.
fn draw_steps<'a, 'b: 'a, Y: Ranged<ValueType = f64>>(
    chart: &mut StepChart<'a, 'b, Y>,
    series: &[StepSeries],
) -> DrawResult {
    for s in series {
        let pts = s.points.iter().map(|p| (p.x, p.y));
        draw_line(chart, pts, s.color, s.dashed, &s.label)?;
        let color = s.color;
        chart.draw_series(s.points.iter().map(move |p| marker((p.x, p.y), p.passed, color)))?;
    }
    let none = std::iter::empty::<Circle<(f64, f64), i32>>;
    chart
        .draw_series(none())?
        .label("step held the SLO")
        .legend(|(x, y)| marker((x + 9, y), true, INK));
    chart
        .draw_series(none())?
        .label("step failed")
        .legend(|(x, y)| marker((x + 9, y), false, INK));
    Ok(())
}

/// A filled dot, or a hollow ring for a failed step.
fn marker<C, DB: DrawingBackend>(at: C, passed: bool, color: RGBColor) -> Marker<C, DB> {
    let (r, under, over) = if passed {
        (4, color.filled(), color.filled())
    } else {
        (5, WHITE.filled(), color.stroke_width(2))
    };
    EmptyElement::at(at) + Circle::new((0, 0), r, under) + Circle::new((0, 0), r, over)
}

type Dot = Circle<(i32, i32), i32>;
type Marker<C, DB> = ComposedElement<C, DB, Dot, Dot>;

/// A log axis with 1-2-5 ticks (fewer when they would crowd).
struct LogAxis {
    lo: f64,
    hi: f64,
    ticks: Vec<f64>,
}

impl LogAxis {
    /// The 1-2-5 range around `lo..hi` (both positive; a fallback when not).
    fn covering(lo: f64, hi: f64) -> LogAxis {
        let (lo, hi) = if lo.is_finite() && lo > 0.0 && hi > lo {
            (lo, hi)
        } else {
            (1.0, 10.0)
        };
        let steps = |k: i32| [1.0, 2.0, 5.0].map(|m| m * 10f64.powi(k));
        let (k_lo, k_hi) = (lo.log10().floor() as i32, hi.log10().ceil() as i32);
        let all: Vec<f64> = (k_lo..=k_hi).flat_map(steps).collect();
        let lo = all.iter().copied().filter(|v| *v <= lo * 1.0001).fold(all[0], f64::max);
        let hi = all
            .iter()
            .copied()
            .find(|v| *v >= hi * 0.9999)
            .unwrap_or(10f64.powi(k_hi));
        let mut ticks: Vec<f64> = all.into_iter().filter(|v| *v >= lo && *v <= hi).collect();
        if ticks.len() > 12 {
            ticks.retain(|v| (v.log10() - v.log10().round()).abs() < 1e-9);
        }
        LogAxis { lo, hi, ticks }
    }
}

impl Ranged for LogAxis {
    type FormatOption = DefaultFormatting;
    type ValueType = f64;

    fn map(&self, value: &f64, limit: (i32, i32)) -> i32 {
        let v = value.max(self.lo * 1e-3);
        let share = (v.log10() - self.lo.log10()) / (self.hi.log10() - self.lo.log10());
        limit.0 + (share * f64::from(limit.1 - limit.0)).round() as i32
    }

    fn key_points<H: KeyPointHint>(&self, _hint: H) -> Vec<f64> {
        self.ticks.clone()
    }

    fn range(&self) -> Range<f64> {
        self.lo..self.hi
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(d: f64) -> DeltaRow {
        DeltaRow {
            label: "m".into(),
            delta_pct: Some(d),
            interval_pct: Some((d - 1.0, d + 1.0)),
            color: NOISE,
            text: String::new(),
            strong: false,
        }
    }

    #[test]
    fn a_far_outlier_is_cut_but_ordinary_rows_are_not() {
        let rows: Vec<DeltaRow> = [1.0, -2.0, 4.0, 3.0, 300.0].into_iter().map(row).collect();
        let cap = clip_limit(rows.iter(), Some(5.0));
        assert!((12.5..300.0).contains(&cap), "{cap}");
        let few: Vec<DeltaRow> = [1.0, 300.0].into_iter().map(row).collect();
        assert_eq!(clip_limit(few.iter(), None), f64::INFINITY);
    }

    #[test]
    fn log_axis_ticks_run_one_two_five() {
        let a = LogAxis::covering(0.41, 262.0 * 1.6);
        assert_eq!((a.lo, a.hi), (0.2, 500.0));
        assert_eq!(a.ticks[..4], [0.2, 0.5, 1.0, 2.0]);
        let wide = LogAxis::covering(0.001, 1e6);
        assert!(wide.ticks.len() <= 12, "{:?}", wide.ticks);
        let fallback = LogAxis::covering(0.0, 0.0);
        assert_eq!((fallback.lo, fallback.hi), (1.0, 10.0));
    }
}
