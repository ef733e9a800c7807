//! The results folder: `results/<name>-<utc timestamp>/` with `summary.json`, the whole-run
//! histograms `histograms.hdr`, the per-second interval log `latencies.hlog`, the
//! `manifest.json`, the effective `profile.toml` and a self-contained `report.html` (a shard
//! adds its `events.bin`); and the strategies comparison folder.

use std::path::{Path, PathBuf};
use std::time::SystemTime;

use serde::{Deserialize, Serialize};

use super::{RunError, RunOutput};
use crate::profile::Plan;
use crate::report::{self, CapacityReport, CompareReport, Comparison, Report};
use crate::transport::{Capabilities, Capability};

/// The whole-run histograms of a results folder.
pub const HISTOGRAMS_FILE: &str = "histograms.hdr";

/// `20261125T180125Z`-style UTC stamp for folder names.
fn stamp(t: SystemTime) -> String {
    humantime::format_rfc3339_seconds(t).to_string().replace(['-', ':'], "")
}

/// A fresh folder `<root>/<name>-<stamp>` (suffixed if a folder of that second exists).
pub(super) fn fresh_dir(root: &Path, name: &str) -> Result<PathBuf, RunError> {
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

pub(super) fn put(dir: &Path, file: &str, bytes: &[u8]) -> Result<(), RunError> {
    let path = dir.join(file);
    std::fs::write(&path, bytes).map_err(|source| RunError::Io { path, source })
}

/// What a run records about itself beside its measurements, so that two results folders can
/// be told apart and trusted: which build, which workload, which machine, when.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    /// The ackstorm version that measured.
    pub ackstorm_version: String,
    /// Run name.
    pub name: String,
    /// `embedded` or `external`.
    pub target_kind: String,
    /// WebSocket URL.
    pub target_url: String,
    /// The user's label of the server build (`--label`).
    pub label: Option<String>,
    /// The server's `ackstorm_build_info` labels, when it exposes them.
    pub build_info: Option<String>,
    /// Hash of the workload (same hash, same workload, whatever the build).
    pub profile_hash: String,
    /// Workload seed.
    pub seed: u64,
    /// Ack strategy.
    pub strategy: String,
    /// The machine the tester ran on.
    pub machine: Machine,
    /// UTC start, RFC 3339.
    pub started_at: String,
    /// UTC end, RFC 3339.
    pub ended_at: String,
    /// The command line.
    pub command: Vec<String>,
    /// What a merge needs beyond the report (absent in folders of older versions).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run: Option<RunData>,
}

/// What `ackstorm merge` needs of each shard besides its report: which run and shard it
/// was, when its clock started, and what its protocol could report.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunData {
    /// The run id (group ids and message bodies carry it).
    pub run_id: String,
    /// This shard's index and the shard count (`None`: an unsharded run).
    pub shard: Option<(u32, u32)>,
    /// The run clock's zero, microseconds since the Unix epoch (event times count from it).
    pub clock_zero_unix_us: u64,
    /// Capabilities the driver's protocol lacked.
    pub missing_capabilities: Vec<Capability>,
}

impl RunData {
    /// The data of a run of `plan` with id `run_id` whose clock started at `clock_zero`.
    pub fn of(plan: &Plan, run_id: &str, clock_zero: SystemTime, caps: Capabilities) -> RunData {
        RunData {
            run_id: run_id.to_string(),
            shard: plan.launch.shard.map(|s| (s.index, s.count)),
            clock_zero_unix_us: clock_zero
                .duration_since(SystemTime::UNIX_EPOCH)
                .map_or(0, |d| d.as_micros() as u64),
            missing_capabilities: caps.missing(),
        }
    }

    /// The run clock's zero.
    pub fn clock_zero(&self) -> SystemTime {
        SystemTime::UNIX_EPOCH + std::time::Duration::from_micros(self.clock_zero_unix_us)
    }
}

/// The tester's machine.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Machine {
    /// Logical cores available.
    pub cores: usize,
    /// Physical memory, bytes (0 when unknown).
    pub memory_bytes: u64,
    /// Operating system and architecture.
    pub os: String,
}

impl Machine {
    /// This machine.
    pub fn this() -> Machine {
        let memory_bytes = std::fs::read_to_string("/proc/meminfo")
            .ok()
            .and_then(|t| {
                let line = t.lines().find(|l| l.starts_with("MemTotal:"))?.to_string();
                let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
                Some(kib * 1024)
            })
            .unwrap_or(0);
        Machine {
            cores: std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
            memory_bytes,
            os: format!("{}-{}", std::env::consts::OS, std::env::consts::ARCH),
        }
    }
}

impl Manifest {
    /// The manifest of a finished run.
    pub fn of(report: &Report, run: Option<RunData>) -> Manifest {
        Manifest {
            ackstorm_version: env!("CARGO_PKG_VERSION").to_string(),
            name: report.name.clone(),
            target_kind: report.target.kind.clone(),
            target_url: report.target.url.clone(),
            label: report.target.label.clone(),
            build_info: report.target.build_info.clone(),
            profile_hash: report.plan.profile_hash.clone(),
            seed: report.plan.seed,
            strategy: report.plan.strategy.clone(),
            machine: Machine::this(),
            started_at: report.started_at.clone(),
            ended_at: report.ended_at.clone(),
            command: std::env::args().collect(),
            run,
        }
    }
}

/// Makes a run's folder before it starts (`dir`, or a fresh one under the plan's results
/// folder), so that what is written while it runs (the interval log) has a place, and an
/// interrupted run leaves its results there too.
pub(crate) fn prepare(plan: &Plan, dir: Option<&Path>) -> Result<PathBuf, RunError> {
    match dir {
        Some(d) => {
            std::fs::create_dir_all(d).map_err(|source| RunError::Io {
                path: d.to_path_buf(),
                source,
            })?;
            Ok(d.to_path_buf())
        }
        None => fresh_dir(&plan.results_dir, &plan.name),
    }
}

/// Writes a finished run's files into its folder: `hlog` is the interval log when it was kept
/// in memory (empty when it is on disk already), `hdr` the whole-run histograms.
pub(super) fn write(
    dir: &Path,
    report: &Report,
    logs: (&[u8], &[u8]),
    effective: &str,
    run: RunData,
) -> Result<(), RunError> {
    let (hlog, hdr) = logs;
    let json = serde_json::to_string_pretty(report).expect("reports serialize");
    put(dir, "summary.json", json.as_bytes())?;
    put(dir, HISTOGRAMS_FILE, hdr)?;
    let manifest = serde_json::to_string_pretty(&Manifest::of(report, Some(run))).expect("manifests serialize");
    put(dir, "manifest.json", manifest.as_bytes())?;
    if !hlog.is_empty() || !dir.join("latencies.hlog").exists() {
        put(dir, "latencies.hlog", hlog)?;
    }
    put(dir, "profile.toml", effective.as_bytes())?;
    put(dir, "report.html", report::render_html(report)?.as_bytes())?;
    Ok(())
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

/// Writes a capacity search's `capacity.json` and `capacity.html` into its folder.
pub(super) fn write_capacity(dir: &Path, report: &CapacityReport) -> Result<(), RunError> {
    let json = serde_json::to_string_pretty(report).expect("capacity reports serialize");
    put(dir, "capacity.json", json.as_bytes())?;
    put(dir, "capacity.html", report::render_capacity_html(report)?.as_bytes())
}

/// Writes a comparison of two builds into a fresh `compare-<A>-vs-<B>-<stamp>` folder.
pub fn write_compare(root: &Path, report: &CompareReport) -> Result<PathBuf, RunError> {
    let clean = |s: &str| -> String {
        s.chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || "-_.".contains(c) {
                    c
                } else {
                    '_'
                }
            })
            .take(40)
            .collect()
    };
    let dir = fresh_dir(
        root,
        &format!("compare-{}-vs-{}", clean(&report.a.label), clean(&report.b.label)),
    )?;
    let json = serde_json::to_string_pretty(report).expect("compare reports serialize");
    put(&dir, "compare.json", json.as_bytes())?;
    put(&dir, "compare.html", report::render_compare_html(report)?.as_bytes())?;
    Ok(dir)
}
