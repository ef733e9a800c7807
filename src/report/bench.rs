//! Models of the two build-benchmarking outputs: [`CompareReport`] (`ackstorm compare`: one
//! build or run set against another) and [`CapacityReport`] (`ackstorm capacity`: the highest
//! load that held an SLO). Renderers read these and compute nothing.

use serde::{Deserialize, Serialize};

/// Which direction is better for a metric.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Better {
    /// Latencies, errors, losses.
    Lower,
    /// Throughput, savings.
    Higher,
}

/// One side of a comparison.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Side {
    /// Folder given on the command line.
    pub path: String,
    /// The build label (or the folder name).
    pub label: String,
    /// Runs found (a run folder: 1; a `--repeat` set: N).
    pub runs: u32,
    /// The server's `ackstorm_build_info`, when it had one.
    pub build_info: Option<String>,
    /// Profile hash of the runs (equal hashes: the same workload).
    pub profile_hash: String,
}

/// One metric of a comparison.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MetricDelta {
    /// e.g. `read_receipt.p99`, `throughput.messages_per_sec`.
    pub metric: String,
    /// `ms`, `msg/s`, `%`, `count`.
    pub unit: String,
    /// Which way is better.
    pub better: Better,
    /// A's value (the mean over its runs).
    pub a: f64,
    /// B's value (the mean over its runs).
    pub b: f64,
    /// (B - A) / A, percent; `None` when A is 0.
    pub delta_pct: Option<f64>,
    /// 95% interval of B - A, in the metric's unit.
    pub ci_low: f64,
    /// Upper end of that interval.
    pub ci_high: f64,
    /// The interval excludes 0: the difference is beyond the noise.
    pub beyond_noise: bool,
    /// Worse by more than the threshold and beyond the noise.
    pub regression: bool,
    /// Counted in the verdict (`--fail-on-regression` gates these).
    pub gated: bool,
}

/// `ackstorm compare A B`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CompareReport {
    /// Baseline.
    pub a: Side,
    /// Candidate.
    pub b: Side,
    /// How the noise interval was computed: `repeated-runs` (t interval over the runs of each
    /// side) or `bootstrap` (block bootstrap over the per-second intervals of single runs).
    pub noise: String,
    /// Regression threshold, percent (`--fail-on-regression`), if any.
    pub threshold_pct: Option<f64>,
    /// Every compared metric.
    pub rows: Vec<MetricDelta>,
    /// Things to know (different workloads, missing metrics).
    pub warnings: Vec<String>,
    /// True when a gated metric regressed past the threshold.
    pub failed: bool,
}

/// Why a capacity search stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Limit {
    /// The SLO broke while the generator kept its schedule: the server is the limit.
    ServerSaturated,
    /// The generator fell behind its schedule before the SLO broke: the tester is the limit.
    GeneratorSaturated,
    /// Connections failed (file or port limits, or the server refused them).
    ConnectionLimit,
    /// The highest load tried still held.
    NotReached,
}

/// One load level of a capacity search.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CapacityStep {
    /// The varied quantity (users, or messages per minute per user).
    pub load: f64,
    /// Offered messages per second at this level.
    pub offered_per_sec: f64,
    /// Messages per second sent in the steady phase.
    pub achieved_per_sec: f64,
    /// The SLO metric's value, in its unit.
    pub value: Option<f64>,
    /// p50 and p99 of `read_receipt`, ms (for the plot).
    pub read_receipt_p50: f64,
    /// p99 of `read_receipt`, ms.
    pub read_receipt_p99: f64,
    /// p99 of `server_ack`, ms.
    pub server_ack_p99: f64,
    /// The generator's typical schedule lag: the median over the run's seconds of each
    /// second's p99, ms.
    pub schedule_lag_p99: f64,
    /// Connections that failed.
    pub connections_failed: u64,
    /// The SLO held.
    pub passed: bool,
    /// What limited this step, when it failed.
    pub limit: Option<Limit>,
    /// Its results folder.
    pub results_dir: String,
}

/// `ackstorm capacity`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CapacityReport {
    /// Profile name.
    pub name: String,
    /// `users` or `rate`.
    pub vary: String,
    /// The SLO checks every step had to hold.
    pub slo: Vec<String>,
    /// Steps in the order run.
    pub steps: Vec<CapacityStep>,
    /// Highest load that held, if any.
    pub capacity: Option<f64>,
    /// Offered messages per second at that load.
    pub capacity_per_sec: Option<f64>,
    /// Why the search stopped.
    pub limit: Limit,
    /// A sentence for people.
    pub summary: String,
}
