//! `ackstorm compare A B`: one server build (or run set) against another, metric by metric,
//! with whether each difference is beyond the noise, and a verdict CI can gate on.
//!
//! A side is a results folder of one run (it holds `summary.json`) or of a `--repeat` set
//! (its `run-*` folders do). Values are means over a side's runs. The noise interval comes
//! from the spread between runs when both sides have several, else from a block bootstrap
//! over the per-second intervals of `latencies.hlog` ([`noise`]). Reading results only: no
//! sockets, no runs.

pub mod noise;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use base64::Engine;
use hdrhistogram::Histogram;
use hdrhistogram::serialization::Deserializer;
use hdrhistogram::serialization::interval_log::{IntervalLogIterator, LogEntry};
use thiserror::Error;

use self::noise::{Interval, Seconds};
use crate::profile::slo::metric_value;
use crate::report::{Better, CompareReport, MetricDelta, Report, Side};

/// Why results could not be compared.
#[derive(Debug, Error)]
pub enum CompareError {
    /// The folder holds no `summary.json` (nor `run-*/summary.json`).
    #[error("{0}: not an ackstorm results folder (no summary.json, and no run-*/summary.json)")]
    NotResults(PathBuf),
    /// A file could not be read.
    #[error("{path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// `summary.json` is not a summary of this ackstorm.
    #[error("{path}: {message}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// An unknown metric was asked for.
    #[error("--metrics: unknown metric {0:?} (see the rows of a comparison for the names)")]
    UnknownMetric(String),
}

/// Latency metrics compared, each at p50 and p99.
use crate::report::LATENCY_METRICS as LATENCIES;
/// Other compared values: (metric, unit, better).
const OTHERS: [(&str, &str, Better); 6] = [
    ("throughput.messages_per_sec", "msg/s", Better::Higher),
    ("errors.rate", "%", Better::Lower),
    ("audit.lost", "count", Better::Lower),
    ("connections.failed", "count", Better::Lower),
    ("ack.acks_per_read", "acks/read", Better::Lower),
    ("ack.saving_pct", "%", Better::Higher),
];
/// Gated by `--fail-on-regression` unless `--metrics` names others: the typical and the tail
/// latency of the three receipt steps a user feels most, throughput, errors and losses.
pub const DEFAULT_GATE: [&str; 9] = [
    "server_ack.p50",
    "server_ack.p99",
    "delivery.p50",
    "delivery.p99",
    "read_receipt.p50",
    "read_receipt.p99",
    "throughput.messages_per_sec",
    "errors.rate",
    "audit.lost",
];
const BOOTSTRAP_ITERATIONS: usize = 1000;

/// One run of a side: its summary and the per-second latency intervals of its log.
struct Run {
    report: Report,
    /// Per latency metric, the seconds of the interval log.
    seconds: BTreeMap<String, Seconds>,
}

fn read(path: &Path) -> Result<String, CompareError> {
    std::fs::read_to_string(path).map_err(|source| CompareError::Read {
        path: path.to_path_buf(),
        source,
    })
}

/// Per-second (value, count) pairs per metric from an interval log (missing log: none).
fn read_hlog(path: &Path) -> BTreeMap<String, Seconds> {
    let mut out: BTreeMap<String, Seconds> = BTreeMap::new();
    let Ok(bytes) = std::fs::read(path) else { return out };
    let mut de = Deserializer::new();
    for entry in IntervalLogIterator::new(&bytes) {
        let Ok(LogEntry::Interval(h)) = entry else { continue };
        let Some(tag) = h.tag() else { continue };
        let Ok(raw) = base64::engine::general_purpose::STANDARD.decode(h.encoded_histogram()) else {
            continue;
        };
        let Ok(hist): Result<Histogram<u64>, _> = de.deserialize(&mut raw.as_slice()) else {
            continue;
        };
        let pairs = hist
            .iter_recorded()
            .map(|v| (v.value_iterated_to(), v.count_at_value()))
            .collect();
        out.entry(tag.as_str().to_string()).or_default().push(pairs);
    }
    out
}

fn load_run(dir: &Path) -> Result<Run, CompareError> {
    let path = dir.join("summary.json");
    let report: Report = serde_json::from_str(&read(&path)?).map_err(|e| CompareError::Parse {
        path: path.clone(),
        message: format!("not an ackstorm summary ({e})"),
    })?;
    Ok(Run {
        report,
        seconds: read_hlog(&dir.join("latencies.hlog")),
    })
}

/// A side: one run folder, or the `run-*` folders of a set.
fn load_side(path: &Path) -> Result<(Side, Vec<Run>), CompareError> {
    let dirs: Vec<PathBuf> = if path.join("summary.json").is_file() {
        vec![path.to_path_buf()]
    } else {
        let mut d: Vec<PathBuf> = std::fs::read_dir(path)
            .map_err(|source| CompareError::Read {
                path: path.to_path_buf(),
                source,
            })?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.join("summary.json").is_file())
            .collect();
        d.sort();
        d
    };
    if dirs.is_empty() {
        return Err(CompareError::NotResults(path.to_path_buf()));
    }
    let runs = dirs.iter().map(|d| load_run(d)).collect::<Result<Vec<_>, _>>()?;
    let first = &runs[0].report;
    let folder = path
        .file_name()
        .map(|n| n.to_string_lossy().to_string())
        .unwrap_or_default();
    let side = Side {
        path: path.display().to_string(),
        label: first.target.label.clone().unwrap_or(folder),
        runs: runs.len() as u32,
        build_info: first.target.build_info.clone(),
        profile_hash: first.plan.profile_hash.clone(),
    };
    Ok((side, runs))
}

/// Options of a comparison.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// Fail when a gated metric is worse by more than this many percent, beyond the noise.
    pub threshold_pct: Option<f64>,
    /// Gated metrics; empty: [`DEFAULT_GATE`].
    pub gate: Vec<String>,
}

fn mean(xs: &[f64]) -> f64 {
    xs.iter().sum::<f64>() / xs.len() as f64
}

/// All rows' (metric, unit, better).
fn row_specs() -> Vec<(String, &'static str, Better)> {
    let mut rows: Vec<(String, &str, Better)> = LATENCIES
        .iter()
        .flat_map(|m| ["p50", "p99"].map(|s| (format!("{m}.{s}"), "ms", Better::Lower)))
        .collect();
    rows.extend(OTHERS.iter().map(|(m, u, b)| (m.to_string(), *u, *b)));
    rows
}

/// The steady-phase messages per second of a run's timeline.
fn per_second_messages(r: &Report) -> Vec<f64> {
    let ramp = (r.elapsed_secs - r.audit.drain_secs - r.plan.duration_secs).max(0.0);
    let end = r.elapsed_secs - r.audit.drain_secs;
    r.timeline
        .iter()
        .filter(|p| p.t >= ramp.ceil() && p.t + 1.0 <= end)
        .map(|p| p.messages as f64)
        .collect()
}

/// The noise interval of a row when a side has a single run.
fn single_run_interval(metric: &str, ra: &[Run], rb: &[Run], a: f64, b: f64) -> Interval {
    let exact = Interval {
        low: b - a,
        high: b - a,
    };
    if let Some((name, stat)) = metric.split_once('.')
        && LATENCIES.contains(&name)
    {
        let q = if stat == "p50" { 0.5 } else { 0.99 };
        let merge = |runs: &[Run]| -> Seconds {
            runs.iter()
                .flat_map(|r| r.seconds.get(name).cloned().unwrap_or_default())
                .collect()
        };
        // Intervals are in microseconds; rows are in milliseconds.
        return noise::bootstrap_quantile(&merge(ra), &merge(rb), q, BOOTSTRAP_ITERATIONS, 7).map_or(exact, |i| {
            Interval {
                low: i.low / 1000.0,
                high: i.high / 1000.0,
            }
        });
    }
    if metric == "throughput.messages_per_sec" {
        let series = |runs: &[Run]| -> Vec<f64> { runs.iter().flat_map(|r| per_second_messages(&r.report)).collect() };
        return noise::bootstrap_mean(&series(ra), &series(rb), BOOTSTRAP_ITERATIONS, 11).unwrap_or(exact);
    }
    // Counts and ratios of whole runs: exact, no sampling noise model.
    exact
}

/// Compares the results at `a` (baseline) and `b` (candidate).
pub fn compare(a: &Path, b: &Path, opts: &Options) -> Result<CompareReport, CompareError> {
    let specs = row_specs();
    for g in &opts.gate {
        if !specs.iter().any(|(m, _, _)| m == g) {
            return Err(CompareError::UnknownMetric(g.clone()));
        }
    }
    let gate: Vec<String> = if opts.gate.is_empty() {
        DEFAULT_GATE.iter().map(|s| s.to_string()).collect()
    } else {
        opts.gate.clone()
    };
    let (side_a, ra) = load_side(a)?;
    let (side_b, rb) = load_side(b)?;
    let repeated = ra.len() >= 2 && rb.len() >= 2;
    let mut warnings = Vec::new();
    if side_a.profile_hash != side_b.profile_hash {
        warnings.push(format!(
            "different workloads: profile hashes {} and {} differ, so differences may come from the profiles, not the builds",
            side_a.profile_hash, side_b.profile_hash
        ));
    }
    for (name, runs) in [("A", &ra), ("B", &rb)] {
        if let Some(sim) = runs.iter().find_map(|r| r.report.simulation.as_ref()) {
            warnings.push(format!(
                "{name} is a simulation (model {:?}): its latencies are the model's predictions, its counts the reference server's routing",
                sim.model.name
            ));
        }
    }
    let t = opts.threshold_pct.unwrap_or(0.0) / 100.0;
    let mut rows = Vec::new();
    for (metric, unit, better) in specs {
        let has_samples = |runs: &[Run]| match metric.split_once('.') {
            Some((name, _)) if LATENCIES.contains(&name) => runs
                .iter()
                .all(|r| r.report.latencies.get(name).is_some_and(|l| l.count > 0)),
            _ => true,
        };
        if !has_samples(&ra) || !has_samples(&rb) {
            continue;
        }
        let values =
            |runs: &[Run]| -> Option<Vec<f64>> { runs.iter().map(|r| metric_value(&r.report, &metric)).collect() };
        let (Some(va), Some(vb)) = (values(&ra), values(&rb)) else {
            continue;
        };
        let (a, b) = (mean(&va), mean(&vb));
        let interval = if repeated {
            noise::welch(&va, &vb).expect("two or more runs a side")
        } else {
            single_run_interval(&metric, &ra, &rb, a, b)
        };
        let beyond_noise = interval.excludes_zero();
        let worse = match better {
            Better::Lower => {
                if a == 0.0 {
                    b > 0.0
                } else {
                    b > a * (1.0 + t)
                }
            }
            Better::Higher => b < a * (1.0 - t),
        };
        let gated = gate.contains(&metric);
        rows.push(MetricDelta {
            delta_pct: (a != 0.0).then(|| 100.0 * (b - a) / a),
            metric,
            unit: unit.to_string(),
            better,
            a,
            b,
            ci_low: interval.low,
            ci_high: interval.high,
            beyond_noise,
            regression: worse && beyond_noise,
            gated,
        });
    }
    for g in &gate {
        if !rows.iter().any(|r| &r.metric == g) {
            warnings.push(format!("{g} has no samples on one side: not compared"));
        }
    }
    let failed = opts.threshold_pct.is_some() && rows.iter().any(|r| r.gated && r.regression);
    Ok(CompareReport {
        a: side_a,
        b: side_b,
        noise: if repeated { "repeated-runs" } else { "bootstrap" }.to_string(),
        threshold_pct: opts.threshold_pct,
        rows,
        warnings,
        failed,
    })
}

#[cfg(test)]
#[path = "tests.rs"]
mod tests;
