//! The results folder: `results/<name>-<utc timestamp>/` with `summary.json`, the latency
//! interval log `latencies.hlog`, the effective `profile.toml` and a self-contained
//! `report.html`; and the strategies comparison folder.

use std::path::{Path, PathBuf};
use std::time::SystemTime;

use super::{RunError, RunOutput};
use crate::profile::Plan;
use crate::report::{self, Comparison, Report};

/// `20261125T180125Z`-style UTC stamp for folder names.
fn stamp(t: SystemTime) -> String {
    humantime::format_rfc3339_seconds(t).to_string().replace(['-', ':'], "")
}

/// A fresh folder `<root>/<name>-<stamp>` (suffixed if a folder of that second exists).
fn fresh_dir(root: &Path, name: &str) -> Result<PathBuf, RunError> {
    let base = format!("{name}-{}", stamp(SystemTime::now()));
    let mut dir = root.join(&base);
    let mut n = 1;
    while dir.exists() {
        n += 1;
        dir = root.join(format!("{base}-{n}"));
    }
    std::fs::create_dir_all(&dir).map_err(|source| RunError::Io {
        path: dir.clone(),
        source,
    })?;
    Ok(dir)
}

fn put(dir: &Path, file: &str, bytes: &[u8]) -> Result<(), RunError> {
    let path = dir.join(file);
    std::fs::write(&path, bytes).map_err(|source| RunError::Io { path, source })
}

/// Writes a run's folder; returns its path.
pub(super) fn write(plan: &Plan, report: &Report, hlog: &[u8], effective: &str) -> Result<PathBuf, RunError> {
    let dir = fresh_dir(&plan.results_dir, &plan.name)?;
    let json = serde_json::to_string_pretty(report).expect("reports serialize");
    put(&dir, "summary.json", json.as_bytes())?;
    put(&dir, "latencies.hlog", hlog)?;
    put(&dir, "profile.toml", effective.as_bytes())?;
    put(&dir, "report.html", report::render_html(report)?.as_bytes())?;
    Ok(dir)
}

/// Writes the comparison of strategies; returns its folder.
pub fn write_comparison(plan: &Plan, comparison: &Comparison, runs: &[RunOutput]) -> Result<PathBuf, RunError> {
    let dir = fresh_dir(&plan.results_dir, &format!("{}-strategies", plan.name))?;
    let json = serde_json::to_string_pretty(comparison).expect("comparisons serialize");
    put(&dir, "comparison.json", json.as_bytes())?;
    let reports: Vec<Report> = runs.iter().map(|r| r.report.clone()).collect();
    put(
        &dir,
        "comparison.html",
        report::render_comparison_html(comparison, &reports)?.as_bytes(),
    )?;
    Ok(dir)
}
