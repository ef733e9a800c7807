//! Reports: the one serialisable [`Report`] of a run (and the [`Comparison`] of strategies),
//! rendered as JSON (`summary.json`), a terminal table, and a self-contained HTML page with
//! SVG plots.
//!
//! Renderers only read the model; they never measure or compute results of their own.
//!
//! # Layout
//! - `model`: the data ([`Report`], [`Comparison`]); its serde JSON is `summary.json`, whose
//!   shape `schema/summary.schema.json` pins down (and `schema/comparison.schema.json` for
//!   [`Comparison`]).
//! - `text`: the end-of-run terminal tables ([`render_text`], [`render_comparison_text`]).
//! - `html`: the self-contained HTML pages, `html/run.rs` ([`render_html`]) and
//!   `html/comparison.rs` ([`render_comparison_html`]), laid out by the minijinja templates in
//!   `templates/`, with plots from `chart`.
//! - `sample` (tests only): a synthetic report and comparison with every field set.
//! - `chart`: inline SVG plots (plotters' SVG backend, no fonts or C libraries needed).
//! - `fmt`: number formatting shared by the text and HTML renderers.

mod chart;
mod fmt;
mod html;
pub mod model;
mod text;

#[cfg(test)]
mod sample;
#[cfg(test)]
mod schema_tests;

pub use html::{render_comparison_html, render_html};
pub use model::*;
pub use text::{render_comparison_text, render_text};

use thiserror::Error;

/// Why a report could not be rendered.
#[derive(Debug, Error)]
pub enum ReportError {
    /// A template failed to load or render (a bug in the templates, not in the report).
    #[error("report template {template}: {source}")]
    Template {
        /// Template name, e.g. `report.html`.
        template: &'static str,
        /// What minijinja said, with the template line.
        source: minijinja::Error,
    },
    /// A plot could not be drawn.
    #[error("report chart {chart:?}: {reason}")]
    Chart {
        /// The chart's title, e.g. `percentiles of read`.
        chart: String,
        /// What the plotting backend said.
        reason: String,
    },
}
