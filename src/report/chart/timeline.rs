//! Time-series charts: lines over the run's seconds (one or two y axes), with injected faults
//! marked and shaded on the time axis, and y axes that always start at 0.

use super::*;

/// A stretch of the run to mark on the time lines (an injected fault): a line at `at`, shaded
/// over the `over` seconds that follow, labelled at the top.
pub(crate) struct Marker {
    pub at: f64,
    pub over: f64,
    pub label: String,
}

/// The y axis of a time line chart. It always starts at 0: a rate or a count cut off above zero
/// makes a small change look like a collapse.
pub(crate) struct YAxis<'a> {
    /// Axis title.
    pub desc: &'a str,
    /// Whole-number ticks only (counts, per-second rates).
    pub whole: bool,
    /// The axis reaches at least this high (100 for a CPU share, so one core reads as full).
    pub floor: f64,
}

impl<'a> YAxis<'a> {
    /// An axis of counts.
    pub(crate) fn counts(desc: &'a str) -> Self {
        YAxis {
            desc,
            whole: true,
            floor: 0.0,
        }
    }

    /// An axis of measures (ms, MiB, %).
    pub(crate) fn measure(desc: &'a str) -> Self {
        YAxis {
            desc,
            whole: false,
            floor: 0.0,
        }
    }

    /// The ticks of this axis over `series`.
    fn ticks(&self, series: &[Series<'_>]) -> TickAxis {
        let top = series
            .iter()
            .flat_map(|s| s.points.iter().map(|&(_, y)| y))
            .fold(self.floor, f64::max);
        zero_based(top, Y_TICKS, self.whole)
    }
}

/// How many intervals a time line's y axis is split into, at most.
pub(super) const Y_TICKS: usize = 5;
/// How many intervals its time axis is split into, at most.
pub(super) const X_TICKS: usize = 12;
/// Injected faults on the time lines (the page's `--fail` colour).
pub(super) const FAULT: RGBColor = RGBColor(0xc0, 0x26, 0x2d);

/// Time lines (x: seconds since the start) over one y axis, with `markers`.
pub(crate) fn lines(
    title: &str,
    y: YAxis<'_>,
    series: &[Series<'_>],
    markers: &[Marker],
    size: (u32, u32),
) -> Result<String, ReportError> {
    let end = time_end(series);
    let axes = Axes {
        y_desc: Some(y.desc),
        ..time_axes(markers)
    };
    let y = y.ticks(series);
    let top = y.hi;
    draw_svg(title, size, |root| {
        let mut chart = frame(root, time_axis(end), y, &axes)?;
        shade(&mut chart, markers, end, top)?;
        for s in series {
            draw_time_line(&mut chart, s)?;
        }
        mark(&mut chart, markers, end, top)?;
        legend(&mut chart)
    })
}

/// Time lines over two y axes, `left` and `right` (lines on the right one are named so in
/// their legend by the caller), with `markers`.
pub(crate) fn lines_two_axes(
    title: &str,
    left: (YAxis<'_>, &[Series<'_>]),
    right: (YAxis<'_>, &[Series<'_>]),
    markers: &[Marker],
    size: (u32, u32),
) -> Result<String, ReportError> {
    let all: Vec<&Series<'_>> = left.1.iter().chain(right.1).collect();
    let end = all
        .iter()
        .flat_map(|s| s.points.iter().map(|&(t, _)| t))
        .fold(1.0, f64::max);
    let axes = Axes {
        y_desc: Some(left.0.desc),
        y2_area: 62,
        ..time_axes(markers)
    };
    let (y_left, y_right) = (left.0.ticks(left.1), right.0.ticks(right.1));
    let top = y_left.hi;
    draw_svg(title, size, |root| {
        let chart = build(root, time_axis(end), y_left, &axes)?;
        let mut chart = chart.set_secondary_coord(time_axis(end), y_right);
        mesh(&mut chart, &axes)?;
        chart
            .configure_secondary_axes()
            .axis_style(AXIS)
            .label_style(font(axes.label_size))
            .axis_desc_style(font(13))
            .y_label_formatter(&compact_tick)
            .y_desc(right.0.desc)
            .draw()?;
        shade(&mut chart, markers, end, top)?;
        for s in left.1 {
            draw_time_line(&mut chart, s)?;
        }
        for s in right.1 {
            let color = s.color;
            chart
                .draw_secondary_series(LineSeries::new(s.points.iter().copied(), color.stroke_width(2)))?
                .label(&s.label)
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], color.stroke_width(3)));
        }
        mark(&mut chart, markers, end, top)?;
        legend(&mut chart)
    })
}

/// The last second of `series`, at least 1.
pub(super) fn time_end(series: &[Series<'_>]) -> f64 {
    series
        .iter()
        .flat_map(|s| s.points.iter().map(|&(t, _)| t))
        .fold(1.0, f64::max)
}

/// The frame of every time line chart but its y axis, with room above the plot for the labels
/// of `markers` (in one row, or two when there are several).
pub(super) fn time_axes(markers: &[Marker]) -> Axes<'static> {
    let rows = markers.len().min(2) as u32;
    Axes {
        x_area: 40,
        x_desc: Some("seconds since start"),
        x_format: &|x| format!("{x:.0}"),
        margin_top: 12 + MARKER_ROW * rows,
        ..Axes::default()
    }
}

/// Height of a row of marker labels, px.
pub(super) const MARKER_ROW: u32 = 17;

/// The time axis from 0 to `end` seconds, ticked every whole 1, 2, 5, 10, 15, 30 s, 1, 2, 5,
/// 10, 15, 30 min or whole hours (plotters' own ticks fall on half seconds in a short run,
/// which a whole-second label shows twice).
pub(super) fn time_axis(end: f64) -> TickAxis {
    const STEPS: [f64; 13] = [
        1.0, 2.0, 5.0, 10.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0, 900.0, 1800.0, 3600.0,
    ];
    let step = STEPS
        .into_iter()
        .find(|s| end / s <= X_TICKS as f64)
        .unwrap_or_else(|| 3600.0 * (end / 3600.0 / X_TICKS as f64).ceil());
    let ticks = (0..)
        .map(|i| f64::from(i) * step)
        .take_while(|t| *t <= end + 1e-9)
        .collect();
    TickAxis {
        lo: 0.0,
        hi: end,
        ticks,
    }
}

/// An axis from 0 to a round top a little above `max`, ticked at a round step (1, 2, 2.5 or 5
/// x 10^k; never a fraction when `whole`) into at most `most` intervals, the top one labelled.
pub(super) fn zero_based(max: f64, most: usize, whole: bool) -> TickAxis {
    let reach = if max.is_finite() && max > 0.0 { max * 1.05 } else { 1.0 };
    let raw = reach / most as f64;
    let scale = 10f64.powf(raw.log10().floor());
    let step = [1.0, 2.0, 2.5, 5.0, 10.0]
        .into_iter()
        .map(|m| m * scale)
        .filter(|s| !whole || s.fract() == 0.0)
        .find(|s| *s >= raw)
        .unwrap_or(10.0 * scale);
    let step = if whole { step.max(1.0) } else { step };
    let n = (reach / step).ceil().max(1.0) as u32;
    TickAxis {
        lo: 0.0,
        hi: f64::from(n) * step,
        ticks: (0..=n).map(|i| f64::from(i) * step).collect(),
    }
}

/// A time line: 2 px, with its legend entry.
pub(super) fn draw_time_line<'a, 'b: 'a, X, Y>(chart: &mut Chart<'a, 'b, X, Y>, s: &Series<'_>) -> DrawResult
where
    X: Ranged<ValueType = f64>,
    Y: Ranged<ValueType = f64>,
{
    let color = s.color;
    chart
        .draw_series(LineSeries::new(s.points.iter().copied(), color.stroke_width(2)))?
        .label(&s.label)
        .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], color.stroke_width(3)));
    Ok(())
}

/// The markers' shading (under the lines), from each marker's start over its span, up to `top`;
/// a marker after `end` is not drawn.
pub(super) fn shade<'a, 'b: 'a, X, Y>(
    chart: &mut Chart<'a, 'b, X, Y>,
    markers: &[Marker],
    end: f64,
    top: f64,
) -> DrawResult
where
    X: Ranged<ValueType = f64>,
    Y: Ranged<ValueType = f64>,
{
    let spans = markers
        .iter()
        .filter(|m| m.at <= end && m.over > 0.0)
        .map(|m| Rectangle::new([(m.at, 0.0), ((m.at + m.over).min(end), top)], FAULT.mix(0.1).filled()));
    chart.draw_series(spans)?;
    Ok(())
}

/// The markers' lines and labels (over the lines): the labels stand above the plot, those of
/// neighbouring markers alternating between two rows, and turn left near the right edge.
pub(super) fn mark<'a, 'b: 'a, X, Y>(
    chart: &mut Chart<'a, 'b, X, Y>,
    markers: &[Marker],
    end: f64,
    top: f64,
) -> DrawResult
where
    X: Ranged<ValueType = f64>,
    Y: Ranged<ValueType = f64>,
{
    let shown: Vec<&Marker> = markers.iter().filter(|m| m.at <= end).collect();
    for m in &shown {
        let line = [(m.at, 0.0), (m.at, top)];
        chart.draw_series(DashedLineSeries::new(line, 6, 4, FAULT.stroke_width(2)))?;
    }
    let labels = shown.iter().enumerate().map(|(i, m)| {
        let style = ("sans-serif", 13, FontStyle::Bold).into_font().color(&FAULT);
        let dy = -3 - MARKER_ROW as i32 * (i as i32 % 2);
        let (dx, h) = if m.at > end * 0.8 {
            (-4, HPos::Right)
        } else {
            (4, HPos::Left)
        };
        let tick = PathElement::new(vec![(0, 0), (0, dy)], FAULT.stroke_width(2));
        EmptyElement::at((m.at, top))
            + tick
            + Text::new(m.label.clone(), (dx, dy), style.pos(Pos::new(h, VPos::Bottom)))
    });
    chart.draw_series(labels)?;
    Ok(())
}
