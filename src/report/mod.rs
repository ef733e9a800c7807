//! Reports: the one serialisable [`Report`] of a run (and the [`Comparison`] of strategies, the
//! [`CompareReport`] of two builds, the [`CapacityReport`] of a capacity search), rendered as JSON (`summary.json`), a terminal table, and a self-contained HTML page with
//! SVG plots.
//!
//! Renderers only read the model; they never measure or compute results of their own.
//!
//! # Layout
//! - `bench`: models of `ackstorm compare` ([`CompareReport`]) and `ackstorm capacity`
//!   ([`CapacityReport`]).
//! - `model`: the data ([`Report`], [`Comparison`]); its serde JSON is `summary.json`, whose
//!   shape `schema/summary.schema.json` pins down (and `schema/comparison.schema.json` for
//!   [`Comparison`]).
//! - `text`: the end-of-run terminal tables ([`render_text`], [`render_comparison_text`]), and in
//!   `text/bench.rs` those of compare and capacity ([`render_compare_text`],
//!   [`render_capacity_text`]).
//! - `html`: the self-contained HTML pages, `html/run.rs` ([`render_html`]),
//!   `html/comparison.rs` ([`render_comparison_html`]), `html/compare.rs`
//!   ([`render_compare_html`]) and `html/capacity.rs` ([`render_capacity_html`]), laid out by the
//!   minijinja templates in `templates/` (each page extends `base.html` and draws on the macros
//!   of `macros.html`), with plots from `chart`.
//! - `run_view`: what the run and strategies renderers share (metric order, table rows);
//!   `bench_view`: what the compare and capacity renderers share (row groups, wording).
//! - `sample` (tests only): a synthetic report, comparison, compare and capacity report with
//!   every field set.
//! - `chart`: inline SVG plots (plotters' SVG backend, no fonts or C libraries needed); the
//!   compare and capacity plots in `chart/bench.rs`.
//! - `fmt`: number formatting shared by the text and HTML renderers.

pub mod bench;
mod bench_view;
mod chart;
mod fmt;
mod html;
pub mod model;
mod run_view;
pub(crate) mod text;

#[cfg(test)]
mod sample;
#[cfg(test)]
mod schema_tests;

pub use bench::*;
pub use html::{render_capacity_html, render_compare_html, render_comparison_html, render_html};
pub use model::*;
pub use text::{render_capacity_text, render_compare_text, render_comparison_text, render_text};

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
