//! The HTML report: one self-contained page per run (and one per strategy comparison), meant to
//! be looked at: a header, a verdict band, key numbers, plots as inline SVG, then the tables.
//!
//! The page loads nothing: CSS is inline, plots are inline `<svg>`, fonts are the reader's own.
//! Rust code here turns the model into display strings and charts; the minijinja templates in
//! `templates/` only lay them out (and escape every string taken from the report).
//!
//! `run` builds the page of one run, `comparison` the page of a strategy comparison, `compare`
//! the page of one build against another and `capacity` the page of a capacity search; this
//! module holds what they share: the display types the templates read and the template
//! environment.

mod capacity;
mod compare;
mod comparison;
mod run;

use minijinja::value::Value;
use minijinja::{Environment, UndefinedBehavior};
use serde::Serialize;

use super::ReportError;
use super::fmt;

pub use capacity::render_capacity_html;
pub use compare::render_compare_html;
pub use comparison::render_comparison_html;
pub use run::render_html;

const STYLE_CSS: &str = include_str!("../templates/style.css");
const BASE_HTML: &str = include_str!("../templates/base.html");
const MACROS_HTML: &str = include_str!("../templates/macros.html");
const REPORT_HTML: &str = include_str!("../templates/report.html");
const COMPARISON_HTML: &str = include_str!("../templates/comparison.html");
const COMPARE_HTML: &str = include_str!("../templates/compare.html");
const CAPACITY_HTML: &str = include_str!("../templates/capacity.html");

/// Small-multiple percentile chart.
const SMALL: (u32, u32) = (580, 270);
/// Full-width chart.
const WIDE: (u32, u32) = (1180, 270);
/// Bar chart beside a table.
const HALF: (u32, u32) = (560, 330);

/// A labelled value in the header.
#[derive(Serialize)]
struct Fact {
    label: &'static str,
    value: String,
}

/// A key number: one big value, or a few side by side (`pairs`, e.g. p50 and p99).
#[derive(Serialize)]
struct Card {
    label: String,
    value: String,
    unit: String,
    /// (label, value) shown instead of `value` when not empty.
    pairs: Vec<(&'static str, String)>,
    sub: String,
    /// `good`, `bad` or empty.
    tone: &'static str,
}

impl Card {
    fn new(label: &str, value: String, unit: &str, sub: String, tone: &'static str) -> Self {
        Card {
            label: label.to_string(),
            value,
            unit: unit.to_string(),
            pairs: Vec::new(),
            sub,
            tone,
        }
    }
}

/// The verdict band of every page but the strategies one: a stamp, a headline, chips, notes.
#[derive(Serialize)]
struct Band {
    /// `pass`, `fail`, `warn`, `info` or `none`: the band's colour.
    tone: &'static str,
    /// The word in the stamp: `PASS`, `FAIL`, `—`, `SERVER SATURATED`.
    stamp: String,
    headline: String,
    chips: Vec<Chip>,
    /// Sentences under the headline and chips, one paragraph each.
    notes: Vec<String>,
}

/// A labelled value in a band: a check with its measure, a regressed metric with its change.
#[derive(Serialize)]
struct Chip {
    /// `pass`, `fail`, `warn` or empty.
    tone: &'static str,
    /// `✓`, `✗`, `!` or empty.
    mark: &'static str,
    label: String,
    value: String,
}

/// A plot with its heading; `svg` absent when there was nothing to draw.
#[derive(Serialize)]
struct Figure {
    title: String,
    caption: String,
    svg: Option<String>,
}

/// A table: the first column is a label, the others numbers.
#[derive(Serialize, Default)]
struct TableView {
    title: String,
    head: Vec<String>,
    rows: Vec<Row>,
    note: String,
    /// (column, what it means), shown under the table when not empty.
    legend: Vec<(String, String)>,
}

#[derive(Serialize)]
struct Row {
    cells: Vec<String>,
    /// `bad` to highlight the row, `worse` or `good` to colour its numbers, or empty.
    tone: &'static str,
    /// One class per cell (`bad`, `warn` or empty) to highlight single cells; empty for none.
    marks: Vec<&'static str>,
}

impl TableView {
    fn new(title: &str, head: &[&str]) -> Self {
        TableView {
            title: title.to_string(),
            head: head.iter().map(|h| h.to_string()).collect(),
            ..Default::default()
        }
    }

    fn row(&mut self, cells: Vec<String>, bad: bool) {
        self.toned(cells, if bad { "bad" } else { "" });
    }

    /// A row with a tone: `bad`, `worse`, `good` or empty.
    fn toned(&mut self, cells: Vec<String>, tone: &'static str) {
        self.rows.push(Row {
            cells,
            tone,
            marks: Vec::new(),
        });
    }

    /// A row whose cells are highlighted one by one: `marks` holds a class per cell.
    fn marked(&mut self, cells: Vec<String>, marks: Vec<&'static str>) {
        debug_assert_eq!(cells.len(), marks.len());
        self.rows.push(Row { cells, tone: "", marks });
    }

    /// A two-column table of a counter map.
    fn counts<'a>(title: &str, head: [&str; 2], counts: impl IntoIterator<Item = (&'a String, &'a u64)>) -> Self {
        let mut t = TableView::new(title, &head);
        for (k, v) in counts {
            t.row(vec![k.clone(), fmt::int(*v)], false);
        }
        if t.rows.is_empty() {
            t.note = "none".to_string();
        }
        t
    }
}

fn render(name: &'static str, ctx: Value) -> Result<String, ReportError> {
    let err = |source| ReportError::Template { template: name, source };
    let mut env = Environment::new();
    // A misspelt field in a template is a bug to catch in the tests, not an empty cell.
    env.set_undefined_behavior(UndefinedBehavior::Strict);
    for (n, src) in [
        ("style.css", STYLE_CSS),
        ("base.html", BASE_HTML),
        ("macros.html", MACROS_HTML),
        ("report.html", REPORT_HTML),
        ("comparison.html", COMPARISON_HTML),
        ("compare.html", COMPARE_HTML),
        ("capacity.html", CAPACITY_HTML),
    ] {
        env.add_template(n, src).map_err(err)?;
    }
    env.get_template(name).and_then(|t| t.render(ctx)).map_err(err)
}

#[cfg(test)]
mod tests;

#[cfg(test)]
mod tests_pages;
