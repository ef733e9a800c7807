//! Inline SVG plots for the HTML report: percentile curves, bar charts and time lines.
//!
//! Drawn with plotters' SVG backend and none of its font features: without `ttf` or `ab_glyph`,
//! plotters estimates text extents itself and writes plain `<text>` elements, so no system font
//! or C library is needed to build or run, and the browser sets the text in the page's font.
//! Each function returns one `<svg>` element (without the `xmlns` attribute, which inline SVG in
//! HTML does not need, so the page holds no URL at all) that scales to its container.
//!
//! Every chart's frame (margins, grid, axes, fonts) is drawn by `frame`, which an `Axes` varies
//! per chart; lines with a legend entry by `draw_line`.
//!
//! Charts only draw what they are given; they do not compute results. The plots of the compare
//! and capacity pages live in `chart/bench.rs`.

use std::error::Error;
use std::ops::Range;

use plotters::coord::Shift;
use plotters::coord::ranged1d::{AsRangedCoord, DefaultFormatting, KeyPointHint, ValueFormatter};
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use super::ReportError;

mod bench;
mod timeline;

pub(crate) use bench::{BETTER, DeltaGroup, DeltaRow, Mark, NOISE, Step, StepSeries, WORSE};
pub(crate) use bench::{achieved_vs_offered, deltas, latency_vs_load};
pub(crate) use timeline::{Marker, YAxis, lines, lines_two_axes};

/// Categorical colours (Tableau 10), chosen to stay apart for readers with colour deficiency.
pub(crate) const PALETTE: [RGBColor; 10] = [
    RGBColor(0x4e, 0x79, 0xa7),
    RGBColor(0xf2, 0x8e, 0x2b),
    RGBColor(0x59, 0xa1, 0x4f),
    RGBColor(0xb0, 0x7a, 0xa1),
    RGBColor(0x76, 0xb7, 0xb2),
    RGBColor(0xe1, 0x57, 0x59),
    RGBColor(0x9c, 0x75, 0x5f),
    RGBColor(0xff, 0x9d, 0xa7),
    RGBColor(0xb6, 0x99, 0x2d),
    RGBColor(0x79, 0x70, 0x6e),
];
/// The per-message baseline and other reference bars.
pub(crate) const BASELINE: RGBColor = RGBColor(0xc3, 0xc8, 0xd0);
const INK: RGBColor = RGBColor(0x33, 0x41, 0x55);
const GRID: RGBColor = RGBColor(0xe5, 0xe9, 0xf0);
const AXIS: RGBColor = RGBColor(0x94, 0xa3, 0xb8);

/// The colour of a latency metric, the same in every chart of a page. Fifteen metrics share ten
/// colours: a metric takes its sibling's (channel_sync channel's, ack_lag schedule_lag's) or one
/// it never shares a chart with.
pub(crate) fn metric_color(metric: &str) -> RGBColor {
    let i = match metric {
        "read_receipt" | "read_users" => 0,
        "channel" | "channel_sync" => 1,
        "delivery" | "message" => 2,
        "read" => 3,
        "server_ack" | "reconnect" => 4,
        "schedule_lag" | "ack_lag" => 5,
        "group_read_first" | "message_offline" => 6,
        "group_read_all" | "read_users_page" => 7,
        other => 8 + other.len() % 2,
    };
    PALETTE[i]
}

/// One line of a chart.
pub(crate) struct Series<'a> {
    /// Legend text.
    pub label: String,
    pub color: RGBColor,
    /// (x, y) in the chart's units; for percentile charts x is the percentile, 0-100.
    pub points: &'a [(f64, f64)],
    /// Drawn dashed (the uncorrected view of a latency).
    pub dashed: bool,
}

impl<'a> Series<'a> {
    /// A solid line.
    pub(crate) fn solid(label: impl Into<String>, color: RGBColor, points: &'a [(f64, f64)]) -> Self {
        Series {
            label: label.into(),
            color,
            points,
            dashed: false,
        }
    }
}

/// One bar of each category in a bar chart, stacked from `segments`.
pub(crate) struct Bar {
    /// (legend text, colour, one value per category), bottom segment first.
    pub segments: Vec<(String, RGBColor, Vec<f64>)>,
    /// Text above the bar, one per category (empty for none).
    pub labels: Vec<String>,
}

type Area<'a> = DrawingArea<SVGBackend<'a>, Shift>;
type DrawResult = Result<(), Box<dyn Error>>;

/// The highest percentile drawn: the curve's 100th percentile (its maximum) is placed here,
/// since 1/(1-q) is infinite at q = 1.
const TOP_PERCENTILE: f64 = 99.999;
/// Percentile ticks of the x axis.
const PERCENTILE_TICKS: [(f64, &str); 6] = [
    (50.0, "50"),
    (90.0, "90"),
    (99.0, "99"),
    (99.9, "99.9"),
    (99.99, "99.99"),
    (99.999, "99.999"),
];

/// Position of percentile `p` (0-100) on the HDR axis: log10(1 / (1 - p/100)).
pub(crate) fn hdr_x(p: f64) -> f64 {
    (100.0 / (100.0 - p.clamp(0.0, TOP_PERCENTILE))).log10()
}

/// Latency percentile curves on the HDR scale (x: percentile, log of 1/(1-q); y: ms).
pub(crate) fn percentiles(title: &str, series: &[Series<'_>], size: (u32, u32)) -> Result<String, ReportError> {
    let points = || series.iter().flat_map(|s| s.points.iter());
    let x_max = points().map(|&(p, _)| hdr_x(p)).fold(4.0_f64, f64::max);
    let y_max = nice_max(points().map(|&(_, ms)| ms).fold(0.0, f64::max));
    let ticks: Vec<f64> = PERCENTILE_TICKS
        .iter()
        .map(|&(p, _)| hdr_x(p))
        .filter(|&x| x <= x_max + 1e-9)
        .collect();
    let axes = Axes {
        x_desc: Some("percentile"),
        y_desc: Some("ms"),
        x_format: &|x| percentile_label(*x),
        y_labels: Some(6),
        ..Axes::default()
    };
    let x = TickAxis {
        lo: 0.0,
        hi: x_max,
        ticks,
    };
    draw_svg(title, size, |root| {
        let mut chart = frame(root, x, 0.0..y_max, &axes)?;
        for s in series {
            let pts = s.points.iter().map(|&(p, ms)| (hdr_x(p), ms));
            draw_line(&mut chart, pts, s.color, s.dashed, &s.label)?;
        }
        legend(&mut chart)
    })
}

/// Grouped (and optionally stacked) bars: for each category, the `bars` side by side, and
/// `notes` (one per category, may be empty) in bold above the category's bars.
pub(crate) fn bars(
    title: &str,
    y_desc: &str,
    categories: &[String],
    bars: &[Bar],
    notes: &[String],
    size: (u32, u32),
) -> Result<String, ReportError> {
    let n = categories.len().max(1) as f64;
    let height = |b: &Bar, c: usize| {
        b.segments
            .iter()
            .map(|s| s.2.get(c).copied().unwrap_or(0.0))
            .sum::<f64>()
    };
    let tallest = bars
        .iter()
        .flat_map(|b| (0..categories.len()).map(move |c| height(b, c)))
        .fold(0.0, f64::max);
    // Headroom for the labels and notes above the bars, and the legend.
    // The legend takes the top fifth of the plot; labels and notes stay below it.
    let y_max = nice_max(tallest * if notes.is_empty() { 1.4 } else { 1.6 });
    let centers: Vec<f64> = (0..categories.len()).map(|c| c as f64 + 0.5).collect();
    let slot = 0.8 / bars.len().max(1) as f64;
    let axes = Axes {
        x_area: 34,
        y_desc: Some(y_desc),
        x_format: &|x| categories.get(x.floor() as usize).cloned().unwrap_or_default(),
        y_labels: Some(5),
        x_mesh: false,
        label_size: 14,
        ..Axes::default()
    };
    let x = TickAxis {
        lo: 0.0,
        hi: n,
        ticks: centers,
    };
    draw_svg(title, size, |root| {
        let mut chart = frame(root, x, 0.0..y_max, &axes)?;
        for (i, bar) in bars.iter().enumerate() {
            let x0 = |c: usize| c as f64 + 0.1 + slot * i as f64 + slot * 0.06;
            let x1 = |c: usize| c as f64 + 0.1 + slot * (i + 1) as f64 - slot * 0.06;
            let mut base = vec![0.0; categories.len()];
            for (label, color, values) in &bar.segments {
                let rects: Vec<_> = (0..categories.len())
                    .map(|c| {
                        let v = values.get(c).copied().unwrap_or(0.0);
                        let r = Rectangle::new([(x0(c), base[c]), (x1(c), base[c] + v)], color.filled());
                        base[c] += v;
                        r
                    })
                    .collect();
                let color = *color;
                chart
                    .draw_series(rects)?
                    .label(label)
                    .legend(move |(x, y)| Rectangle::new([(x, y - 6), (x + 14, y + 6)], color.filled()).into_dyn());
            }
            let texts = bar
                .labels
                .iter()
                .enumerate()
                .filter(|(_, l)| !l.is_empty())
                .map(|(c, l)| {
                    let anchor = Pos::new(HPos::Center, VPos::Bottom);
                    Text::new(
                        l.clone(),
                        ((x0(c) + x1(c)) / 2.0, base[c] + y_max * 0.01),
                        font(15).pos(anchor),
                    )
                });
            chart.draw_series(texts)?;
        }
        let notes = notes.iter().enumerate().filter(|(_, n)| !n.is_empty()).map(|(c, n)| {
            let top = bars.iter().map(|b| height(b, c)).fold(0.0, f64::max);
            let anchor = Pos::new(HPos::Center, VPos::Bottom);
            let style = ("sans-serif", 16, FontStyle::Bold).into_font().color(&INK).pos(anchor);
            Text::new(n.clone(), (c as f64 + 0.5, top + y_max * 0.1), style)
        });
        chart.draw_series(notes)?;
        legend(&mut chart)
    })
}

/// A linear axis whose ticks are exactly `ticks` (plotters' `WithKeyPoints` takes no label
/// formatter, and the HDR percentile axis needs both).
struct TickAxis {
    lo: f64,
    hi: f64,
    ticks: Vec<f64>,
}

impl Ranged for TickAxis {
    type FormatOption = DefaultFormatting;
    type ValueType = f64;

    fn map(&self, value: &f64, limit: (i32, i32)) -> i32 {
        let share = (value - self.lo) / (self.hi - self.lo);
        limit.0 + (share * f64::from(limit.1 - limit.0)).round() as i32
    }

    fn key_points<H: KeyPointHint>(&self, _hint: H) -> Vec<f64> {
        self.ticks.clone()
    }

    fn range(&self) -> Range<f64> {
        self.lo..self.hi
    }
}

type Chart<'a, 'b, X, Y> = ChartContext<'a, SVGBackend<'b>, Cartesian2d<X, Y>>;

/// What sets one chart's frame apart; the margins, grid, axis colour and fonts are the same for
/// every chart ([`frame`] draws them).
struct Axes<'a> {
    /// Height of the x axis' tick labels and title, px.
    x_area: u32,
    /// Width of the y axis' tick labels and title, px.
    y_area: u32,
    /// Width of a second y axis on the right, px (0: none).
    y2_area: u32,
    /// Space above the plot, px (marker labels go there).
    margin_top: u32,
    /// Axis titles; none drawn when absent.
    x_desc: Option<&'a str>,
    y_desc: Option<&'a str>,
    /// Tick labels.
    x_format: &'a dyn Fn(&f64) -> String,
    y_format: &'a dyn Fn(&f64) -> String,
    /// How many tick labels to aim for; plotters' default when absent.
    x_labels: Option<usize>,
    y_labels: Option<usize>,
    /// Grid lines at the x ticks (vertical) and at the y ticks (horizontal).
    x_mesh: bool,
    y_mesh: bool,
    /// Font size of the tick labels (the axis titles are always 13).
    label_size: u32,
}

impl Default for Axes<'_> {
    /// Compact numbers on both axes, a grid both ways, no titles.
    fn default() -> Self {
        Axes {
            x_area: 44,
            y_area: 62,
            y2_area: 0,
            margin_top: 12,
            x_desc: None,
            y_desc: None,
            x_format: &compact_tick,
            y_format: &compact_tick,
            x_labels: None,
            y_labels: None,
            x_mesh: true,
            y_mesh: true,
            label_size: 13,
        }
    }
}

/// A chart on `root` over `x` by `y`, its frame drawn as every chart's is: margins, light grid,
/// axes, tick labels and titles as `axes` says.
fn frame<'a, 'b, X, Y>(
    root: &Area<'b>,
    x: X,
    y: Y,
    axes: &Axes<'_>,
) -> Result<Chart<'a, 'b, X::CoordDescType, Y::CoordDescType>, Box<dyn Error>>
where
    X: AsRangedCoord<Value = f64>,
    Y: AsRangedCoord<Value = f64>,
    X::CoordDescType: ValueFormatter<f64>,
    Y::CoordDescType: ValueFormatter<f64>,
{
    let mut chart = build(root, x, y, axes)?;
    mesh(&mut chart, axes)?;
    Ok(chart)
}

/// The chart [`frame`] draws, before its grid and axes: a chart with a second y axis attaches
/// it here, before [`mesh`], or the first axis' labels are drawn on the right as well.
fn build<'a, 'b, X, Y>(
    root: &Area<'b>,
    x: X,
    y: Y,
    axes: &Axes<'_>,
) -> Result<Chart<'a, 'b, X::CoordDescType, Y::CoordDescType>, Box<dyn Error>>
where
    X: AsRangedCoord<Value = f64>,
    Y: AsRangedCoord<Value = f64>,
{
    Ok(ChartBuilder::on(root)
        .margin(12)
        .margin_top(axes.margin_top)
        .margin_right(22)
        .x_label_area_size(axes.x_area)
        .y_label_area_size(axes.y_area)
        .right_y_label_area_size(axes.y2_area)
        .build_cartesian_2d(x, y)?)
}

/// The grid, axes, tick labels and titles of [`frame`].
fn mesh<X, Y>(chart: &mut Chart<'_, '_, X, Y>, axes: &Axes<'_>) -> DrawResult
where
    X: Ranged<ValueType = f64> + ValueFormatter<f64>,
    Y: Ranged<ValueType = f64> + ValueFormatter<f64>,
{
    let mut mesh = chart.configure_mesh();
    mesh.bold_line_style(GRID)
        .light_line_style(TRANSPARENT)
        .axis_style(AXIS)
        .label_style(font(axes.label_size))
        .axis_desc_style(font(13))
        .x_label_formatter(axes.x_format)
        .y_label_formatter(axes.y_format);
    if !axes.x_mesh {
        mesh.disable_x_mesh();
    }
    if !axes.y_mesh {
        mesh.disable_y_mesh();
    }
    if let Some(d) = axes.x_desc {
        mesh.x_desc(d);
    }
    if let Some(d) = axes.y_desc {
        mesh.y_desc(d);
    }
    if let Some(n) = axes.x_labels {
        mesh.x_labels(n);
    }
    if let Some(n) = axes.y_labels {
        mesh.y_labels(n);
    }
    mesh.draw()?;
    Ok(())
}

/// A line through `points` with its legend entry: solid at 3 px, or dashed at 2 px (the
/// uncorrected view of a latency, a p50 beside p99s).
fn draw_line<'a, 'b: 'a, X, Y, I>(
    chart: &mut Chart<'a, 'b, X, Y>,
    points: I,
    color: RGBColor,
    dashed: bool,
    label: &str,
) -> DrawResult
where
    X: Ranged<ValueType = f64>,
    Y: Ranged<ValueType = f64>,
    I: IntoIterator<Item = (f64, f64)>,
    I::IntoIter: Clone,
{
    let style = color.stroke_width(if dashed { 2 } else { 3 });
    let anno = if dashed {
        chart.draw_series(DashedLineSeries::new(points, 7, 5, style))?
    } else {
        chart.draw_series(LineSeries::new(points, style))?
    };
    anno.label(label).legend(move |(x, y)| {
        // A dashed line is drawn as two strokes with a gap.
        let (stop, restart) = if dashed { (x + 7, x + 11) } else { (x + 18, x + 18) };
        EmptyElement::at((0, 0))
            + PathElement::new(vec![(x, y), (stop, y)], style)
            + PathElement::new(vec![(restart, y), (x + 18, y)], style)
    });
    Ok(())
}

/// Draws into a string with `draw` and turns the SVG into an inline element.
fn draw_svg(title: &str, size: (u32, u32), draw: impl FnOnce(&Area<'_>) -> DrawResult) -> Result<String, ReportError> {
    let mut buf = String::new();
    {
        let root = SVGBackend::with_string(&mut buf, size).into_drawing_area();
        let drawn = root.fill(&WHITE).map_err(Box::from).and_then(|()| draw(&root));
        let drawn = drawn.and_then(|()| root.present().map_err(Box::from));
        drawn.map_err(|e| ReportError::Chart {
            chart: title.to_string(),
            reason: e.to_string(),
        })?;
    }
    let label = format!(" role=\"img\" aria-label=\"{}\"", escape_attr(title));
    Ok(buf.replacen(" xmlns=\"http://www.w3.org/2000/svg\"", &label, 1))
}

fn legend<'a, 'b: 'a, X: Ranged, Y: Ranged>(chart: &mut Chart<'a, 'b, X, Y>) -> DrawResult {
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .background_style(WHITE.mix(0.88))
        .border_style(GRID)
        .label_font(font(13))
        .margin(8)
        .draw()?;
    Ok(())
}

fn font(size: u32) -> TextStyle<'static> {
    ("sans-serif", size).into_font().color(&INK)
}

/// The tick label of an HDR x position (key points are exactly the ticks).
fn percentile_label(x: f64) -> String {
    PERCENTILE_TICKS
        .iter()
        .find(|(p, _)| (hdr_x(*p) - x).abs() < 1e-6)
        .map_or(String::new(), |(_, l)| l.to_string())
}

/// [`compact`] as a tick label formatter.
fn compact_tick(v: &f64) -> String {
    compact(*v)
}

/// A short axis number: `0`, `2.5`, `40`, `1.2k`, `35k`, `1.5M`.
pub(crate) fn compact(v: f64) -> String {
    let a = v.abs();
    let trim = |s: String| {
        if s.contains('.') {
            s.trim_end_matches('0').trim_end_matches('.').to_string()
        } else {
            s
        }
    };
    if a >= 1e6 {
        format!("{}M", trim(format!("{:.1}", v / 1e6)))
    } else if a >= 1e4 {
        format!("{}k", trim(format!("{:.0}", v / 1e3)))
    } else if a >= 1e3 {
        format!("{}k", trim(format!("{:.1}", v / 1e3)))
    } else if a >= 10.0 || a == 0.0 {
        format!("{v:.0}")
    } else {
        trim(format!("{v:.2}"))
    }
}

/// A round axis maximum a little above `v` (1, 2, 2.5, 5 x 10^k), never zero.
fn nice_max(v: f64) -> f64 {
    if !v.is_finite() || v <= 0.0 {
        return 1.0;
    }
    let scale = 10f64.powf((v * 1.05).log10().floor());
    let step = [1.0, 1.2, 1.5, 2.0, 2.5, 3.0, 4.0, 5.0, 6.0, 8.0, 10.0]
        .into_iter()
        .find(|m| m * scale >= v * 1.05);
    step.unwrap_or(10.0) * scale
}

fn escape_attr(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

#[cfg(test)]
mod tests {
    use super::timeline::*;
    use super::*;

    #[test]
    fn hdr_axis_puts_nines_one_apart() {
        assert!((hdr_x(90.0) - 1.0).abs() < 1e-9);
        assert!((hdr_x(99.0) - 2.0).abs() < 1e-9);
        assert!((hdr_x(99.99) - 4.0).abs() < 1e-9);
        assert_eq!(hdr_x(100.0), hdr_x(TOP_PERCENTILE));
        assert_eq!(percentile_label(hdr_x(99.9)), "99.9");
    }

    #[test]
    fn axis_numbers_are_short_and_round() {
        assert_eq!(compact(0.0), "0");
        assert_eq!(compact(2.5), "2.5");
        assert_eq!(compact(1200.0), "1.2k");
        assert_eq!(compact(35000.0), "35k");
        assert_eq!(nice_max(0.0), 1.0);
        assert_eq!(nice_max(95.0), 100.0);
        assert!(nice_max(1234.0) >= 1234.0 * 1.05);
    }

    #[test]
    fn time_line_axes_start_at_zero_on_round_ticks() {
        // A flat line near 3,800 still gets an axis from 0, its top labelled.
        let y = zero_based(3_800.0, Y_TICKS, true);
        assert_eq!(y.ticks, [0.0, 1_000.0, 2_000.0, 3_000.0, 4_000.0]);
        assert_eq!(y.hi, 4_000.0);
        // Counts never get fractional ticks; measures may.
        assert_eq!(zero_based(2.0, Y_TICKS, true).ticks, [0.0, 1.0, 2.0, 3.0]);
        assert_eq!(zero_based(12.0, Y_TICKS, true).ticks, [0.0, 5.0, 10.0, 15.0]);
        assert_eq!(zero_based(2.0, Y_TICKS, false).ticks, [0.0, 0.5, 1.0, 1.5, 2.0, 2.5]);
        // Nothing to show still makes an axis.
        assert_eq!(zero_based(0.0, Y_TICKS, true).ticks, [0.0, 1.0]);
        assert_eq!(zero_based(f64::NAN, Y_TICKS, false).hi, 1.0);
        for max in [0.3, 7.0, 41.0, 98.0, 1_234.0, 71_940.0] {
            let y = zero_based(max, Y_TICKS, false);
            assert_eq!(y.ticks[0], 0.0);
            assert!(y.hi >= max && y.ticks.len() <= Y_TICKS + 1, "{max}: {:?}", y.ticks);
            assert_eq!(y.ticks.last(), Some(&y.hi));
        }
    }

    #[test]
    fn time_axes_tick_whole_round_seconds() {
        assert_eq!(time_axis(5.0).ticks, [0.0, 1.0, 2.0, 3.0, 4.0, 5.0]);
        assert_eq!(
            time_axis(75.0).ticks,
            (0..=7).map(|i| f64::from(i) * 10.0).collect::<Vec<_>>()
        );
        assert_eq!(time_axis(3_700.0).ticks[1], 600.0);
        let day = time_axis(86_400.0);
        assert!(
            day.ticks.len() <= X_TICKS + 1 && day.ticks[1] % 3_600.0 == 0.0,
            "{:?}",
            day.ticks
        );
    }

    #[test]
    fn svg_is_inline_and_url_free() {
        let pts = [(0.0, 1.0), (50.0, 2.0), (99.0, 5.0), (100.0, 9.0)];
        let s = Series {
            label: "read <x>".into(),
            color: PALETTE[0],
            points: &pts,
            dashed: false,
        };
        let svg = percentiles("read & co", &[s], (400, 200)).unwrap();
        assert!(svg.starts_with("<svg"), "{svg}");
        assert!(svg.contains("aria-label=\"read &amp; co\""));
        assert!(svg.contains("read &lt;x&gt;"), "legend text is escaped");
        assert!(!svg.contains("http"), "no URL in {svg}");
    }
}
