//! `ackstorm calibrate RESULTS_DIR`: a cost model from a socket run against any server.
//!
//! What a run measured, and how each model figure follows from it:
//! - **CPU per frame**: the server's CPU time over the run (its `/metrics`
//!   `process_cpu_seconds_total`, recorded as `target.server_cpu_secs`) divided by the frames
//!   it read and wrote (its `ackstorm_frames_*_total`). One run gives one equation, so a frame
//!   in and a frame out are charged alike.
//! - **Generator CPU per frame**: the tester's CPU over the run (its timeline) divided by the
//!   frames it sent and read; used when the generator shared the server's box (`colocated`:
//!   a loopback target), where it is what takes cores from the server.
//! - **Cores**: the machine's (`manifest.json`).
//! - **One-way latency**: what is left of the measured `server_ack` p50 once the CPU of the
//!   frame and its reply is taken out, halved. Calibrate on a run below the knee, where that
//!   p50 has no queueing in it.

use std::path::Path;

use thiserror::Error;

use super::model::{Calibration, Model};
use crate::report::Report;
use crate::runner::Manifest;

/// Why a results folder gives no model.
#[derive(Debug, Error)]
pub enum CalibrateError {
    /// A file could not be read or parsed.
    #[error("{path}: {message}")]
    Read {
        /// The file.
        path: String,
        /// What went wrong.
        message: String,
    },
    /// The run did not measure what a model needs.
    #[error("{dir}: {message}")]
    Missing {
        /// The results folder.
        dir: String,
        /// What is missing and how to get it.
        message: String,
    },
}

fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T, CalibrateError> {
    let text = std::fs::read_to_string(path).map_err(|e| CalibrateError::Read {
        path: path.display().to_string(),
        message: e.to_string(),
    })?;
    serde_json::from_str(&text).map_err(|e| CalibrateError::Read {
        path: path.display().to_string(),
        message: format!("not an ackstorm results file ({e})"),
    })
}

/// The model a run's results folder gives, and a header saying where it came from.
pub fn from_results(dir: &Path, name: Option<&str>) -> Result<(Model, String), CalibrateError> {
    let report: Report = read_json(&dir.join("summary.json"))?;
    let manifest: Manifest = read_json(&dir.join("manifest.json"))?;
    let model = derive(&report, &manifest, &dir.display().to_string(), name)?;
    let header = format!(
        "ackstorm server model, calibrated by `ackstorm calibrate {}`\n\
         from a run of {:.0} messages/s against {} ({}) on {} cores, {}.\n\
         Used by `ackstorm simulate` (profile key model.file, or --model).",
        dir.display(),
        report.throughput.messages_per_sec,
        report.target.url,
        report.target.label.as_deref().unwrap_or(&report.target.kind),
        manifest.machine.cores,
        report.started_at,
    );
    Ok((model, header))
}

/// The model of `report` (its results folder is named `dir`).
pub fn derive(report: &Report, manifest: &Manifest, dir: &str, name: Option<&str>) -> Result<Model, CalibrateError> {
    let missing = |message: String| CalibrateError::Missing {
        dir: dir.to_string(),
        message,
    };
    if report.simulation.is_some() {
        return Err(missing("a simulation's results: calibrate from a run against a real server".into()));
    }
    let frames = report.ack_economics.server_frames.as_ref().ok_or_else(|| {
        missing("the server's frame counters are unknown (its /metrics has no ackstorm_frames_in_total / ackstorm_frames_out_total)".into())
    })?;
    let server_frames = frames.total_in + frames.total_out;
    if server_frames == 0 {
        return Err(missing("the server counted no frames".into()));
    }
    let cpu = report.target.server_cpu_secs.ok_or_else(|| {
        missing(
            "the server's CPU time is unknown: an embedded server must run as its own process \
             (--set 'target.server.mode=\"child-process\"'), an external one must expose process_cpu_seconds_total"
                .into(),
        )
    })?;
    let server_ack = report
        .latencies
        .get("server_ack")
        .ok_or_else(|| missing("no server_ack latency was measured".into()))?;
    let tester_cpu: f64 = report.timeline.iter().map(|p| p.cpu_pct / 100.0).sum();
    let tester_frames: u64 =
        report.counters.frames_sent_by_op.values().sum::<u64>() + report.counters.frames_received_by_op.values().sum::<u64>();
    let per_frame = cpu * 1e6 / server_frames as f64;
    let tester_frame_us = if tester_frames == 0 {
        0.0
    } else {
        tester_cpu * 1e6 / tester_frames as f64
    };
    let colocated = is_loopback(&report.target.url);
    let tester = if colocated { tester_frame_us } else { 0.0 };
    let one_way_us = ((server_ack.p50 * 1e3 - 2.0 * tester - 2.0 * per_frame) / 2.0).max(0.0);
    let server = report
        .target
        .label
        .clone()
        .or_else(|| report.target.build_info.clone())
        .unwrap_or_else(|| report.target.url.clone());
    Ok(Model {
        name: name.map_or_else(
            || format!("{server} on {} cores ({})", manifest.machine.cores, manifest.machine.os),
            str::to_string,
        ),
        cores: manifest.machine.cores.max(1) as u32,
        one_way_us: round2(one_way_us),
        frame_in_us: round2(per_frame),
        frame_out_us: round2(per_frame),
        tester_frame_us: round2(tester_frame_us),
        colocated,
        calibration: Some(Calibration {
            results: dir.to_string(),
            run_started_at: report.started_at.clone(),
            server,
            messages_per_sec: report.throughput.messages_per_sec,
            server_cpu_secs: cpu,
            tester_cpu_secs: tester_cpu,
            server_frames,
            server_ack_p50_ms: server_ack.p50,
        }),
    })
}

fn round2(v: f64) -> f64 {
    (v * 100.0).round() / 100.0
}

/// Whether the target URL names this machine (the generator then shares the server's cores).
fn is_loopback(url: &str) -> bool {
    let host = url
        .split("://")
        .nth(1)
        .unwrap_or(url)
        .split(['/', '?'])
        .next()
        .unwrap_or("");
    let host = match host.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or(""),
        None => host.rsplit_once(':').map_or(host, |(h, _)| h),
    };
    host == "localhost"
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_targets_are_told_from_remote_ones() {
        assert!(is_loopback("ws://127.0.0.1:9100/ws"));
        assert!(is_loopback("ws://localhost:1/ws"));
        assert!(is_loopback("wss://[::1]:443/ws"));
        assert!(is_loopback("ws://127.0.0.3"));
        assert!(!is_loopback("wss://chat.example.com/ws"));
        assert!(!is_loopback("ws://10.0.0.1:9100/ws"));
    }
}
