//! Reports: the one serialisable [`Report`] of a run (and the [`Comparison`] of strategies),
//! rendered as JSON (`summary.json`), a terminal table, and a self-contained HTML page with
//! SVG plots.
//!
//! Renderers only read the model; they never measure or compute results of their own.

pub mod model;

pub use model::*;
