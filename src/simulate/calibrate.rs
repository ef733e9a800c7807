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
//! - **One-way latency**: what is left of the measured `read_receipt` p50 (a read ack's way to
//!   the server and its receipt's way to the sender: no timer in it) once the CPU of the
//!   frames on that way is taken out, halved. Calibrate on a run below the knee, where that
//!   p50 has little queueing in it, and near it, where CPU per frame is what it is at load
//!   (a busier server writes more frames per system call: 10.5 µs a frame at 5,000 chains/s
//!   here, 6.8 µs at 15,000).
//! - **Timer**: ackstorm's own, tokio's 1 ms wheel ([`GENERATOR_TIMER_US`]): a planned send
//!   leaves at the next tick, which is part of every `server_ack` the run measured.

use std::path::Path;

use thiserror::Error;

use super::model::{Calibration, Model};
use crate::report::Report;
use crate::runner::Manifest;

/// The resolution of the generator's timers (tokio's timer wheel), µs.
pub const GENERATOR_TIMER_US: u64 = 1000;

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

/// One socket run, as a calibration reads it.
struct Run {
    dir: String,
    report: Report,
    cores: usize,
    os: String,
}

impl Run {
    fn load(dir: &Path) -> Result<Run, CalibrateError> {
        let report: Report = read_json(&dir.join("summary.json"))?;
        let manifest: Manifest = read_json(&dir.join("manifest.json"))?;
        Ok(Run {
            dir: dir.display().to_string(),
            report,
            cores: manifest.machine.cores,
            os: manifest.machine.os,
        })
    }
}

/// What one run measured that a model is fitted to.
struct Measured {
    elapsed: f64,
    server_cpu: f64,
    server_frames: f64,
    tester_cpu: f64,
    tester_frames: f64,
    rate: f64,
    read_receipt: (f64, f64),
    server_ack_p50: f64,
}

fn measured(run: &Run) -> Result<Measured, CalibrateError> {
    let report = &run.report;
    let missing = |message: String| CalibrateError::Missing {
        dir: run.dir.clone(),
        message,
    };
    if report.simulation.is_some() {
        return Err(missing(
            "a simulation's results: calibrate from a run against a real server".into(),
        ));
    }
    let frames = report.ack_economics.server_frames.as_ref().ok_or_else(|| {
        missing("the server's frame counters are unknown (its /metrics has no ackstorm_frames_in_total / ackstorm_frames_out_total)".into())
    })?;
    let server_frames = (frames.total_in + frames.total_out) as f64;
    if server_frames == 0.0 {
        return Err(missing("the server counted no frames".into()));
    }
    let server_cpu = report.target.server_cpu_secs.ok_or_else(|| {
        missing(
            "the server's CPU time is unknown: an embedded server must run as its own process \
             (--set target.embedded=\"child-process\"), an external one must expose process_cpu_seconds_total"
                .into(),
        )
    })?;
    let latency = |m: &str| {
        report.latencies.get(m).filter(|l| l.count > 0).ok_or_else(|| {
            missing(format!(
                "no {m} latency was measured (the model's one-way latency is fitted to it)"
            ))
        })
    };
    let read_receipt = latency("read_receipt")?;
    let server_ack = latency("server_ack")?;
    Ok(Measured {
        elapsed: report.elapsed_secs.max(1e-3),
        server_cpu,
        server_frames,
        tester_cpu: report.timeline.iter().map(|p| p.cpu_pct / 100.0).sum(),
        tester_frames: (report.counters.frames_sent_by_op.values().sum::<u64>()
            + report.counters.frames_received_by_op.values().sum::<u64>()) as f64,
        rate: report.throughput.messages_per_sec,
        read_receipt: (read_receipt.p50 * 1e3, read_receipt.p99 * 1e3),
        server_ack_p50: server_ack.p50,
    })
}

/// CPU as `base` cores busy whatever the load plus `per_frame` µs a frame, fitted by least
/// squares to (seconds, frames, CPU seconds) of each run; one run (or runs at one load) gives
/// no base: all its CPU is the frames'.
fn fit_cpu(points: &[(f64, f64, f64)]) -> (f64, f64) {
    let per = |(_, f, c): &(f64, f64, f64)| c / f.max(1.0);
    if points.len() < 2 {
        return (0.0, points.first().map_or(0.0, per) * 1e6);
    }
    // cpu/elapsed = base + per_frame x frames/elapsed: a line through the runs' rates.
    let xs: Vec<f64> = points.iter().map(|(e, f, _)| f / e).collect();
    let ys: Vec<f64> = points.iter().map(|(e, _, c)| c / e).collect();
    let n = xs.len() as f64;
    let (mx, my) = (xs.iter().sum::<f64>() / n, ys.iter().sum::<f64>() / n);
    let sxx: f64 = xs.iter().map(|x| (x - mx).powi(2)).sum();
    if sxx <= f64::EPSILON * mx.max(1.0) {
        let total: f64 = points.iter().map(|p| p.2).sum::<f64>() / points.iter().map(|p| p.1).sum::<f64>().max(1.0);
        return (0.0, total * 1e6);
    }
    let slope = xs.iter().zip(&ys).map(|(x, y)| (x - mx) * (y - my)).sum::<f64>() / sxx;
    let base = my - slope * mx;
    if slope <= 0.0 || base < 0.0 {
        // Not a line through the origin's side: charge everything to the frames.
        let total: f64 = points.iter().map(|p| p.2).sum::<f64>() / points.iter().map(|p| p.1).sum::<f64>().max(1.0);
        return (0.0, total * 1e6);
    }
    (base, slope * 1e6)
}

/// The model that socket runs' results folders give (one run, or several of one workload at
/// different loads), and a header saying where it came from.
pub fn from_results(dirs: &[&Path], name: Option<&str>) -> Result<(Model, String), CalibrateError> {
    let runs: Vec<Run> = dirs.iter().map(|d| Run::load(d)).collect::<Result<_, _>>()?;
    let model = derive(&runs.iter().collect::<Vec<_>>(), name)?;
    let first = &runs[0];
    let loads: Vec<String> = runs
        .iter()
        .map(|r| format!("{:.0}", r.report.throughput.messages_per_sec))
        .collect();
    let header = format!(
        "ackstorm server model, calibrated by `ackstorm calibrate {}`\n\
         from runs of {} messages/s against {} ({}) on {} cores, {}.\n\
         Used by `ackstorm simulate` (profile key model.file, or --model).",
        runs.iter().map(|r| r.dir.as_str()).collect::<Vec<_>>().join(" "),
        loads.join(", "),
        first.report.target.url,
        first
            .report
            .target
            .label
            .as_deref()
            .unwrap_or(&first.report.target.kind),
        first.cores,
        first.report.started_at,
    );
    Ok((model, header))
}

fn derive(runs: &[&Run], name: Option<&str>) -> Result<Model, CalibrateError> {
    let Some(first) = runs.first() else {
        return Err(CalibrateError::Missing {
            dir: String::new(),
            message: "no results folder given".into(),
        });
    };
    let m: Vec<Measured> = runs.iter().map(|r| measured(r)).collect::<Result<_, _>>()?;
    let (server_base, per_frame) = fit_cpu(
        &m.iter()
            .map(|x| (x.elapsed, x.server_frames, x.server_cpu))
            .collect::<Vec<_>>(),
    );
    let (tester_base, tester_frame_us) = fit_cpu(
        &m.iter()
            .map(|x| (x.elapsed, x.tester_frames, x.tester_cpu))
            .collect::<Vec<_>>(),
    );
    let colocated = is_loopback(&first.report.target.url);
    let tester = if colocated { tester_frame_us } else { 0.0 };
    // The network from the lightest load: the least queueing in its latencies.
    let light = m
        .iter()
        .min_by(|a, b| a.rate.total_cmp(&b.rate))
        .expect("at least one run");
    let on_the_way = 2.0 * tester + 2.0 * per_frame;
    let (one_way_us, one_way_sigma) = fit_one_way(light.read_receipt.0 - on_the_way, light.read_receipt.1 - on_the_way);
    let report = &first.report;
    let version = report.target.build_info.as_deref().and_then(|b| {
        b.split(',')
            .find_map(|kv| kv.strip_prefix("version=\""))
            .map(|v| format!("ackstorm {} reference server", v.trim_end_matches('"')))
    });
    let server = report
        .target
        .label
        .clone()
        .or(version)
        .unwrap_or_else(|| report.target.url.clone());
    Ok(Model {
        name: name.map_or_else(
            || format!("{server} on {} cores ({})", first.cores, first.os),
            str::to_string,
        ),
        cores: first.cores.max(1) as u32,
        one_way_us: round2(one_way_us),
        one_way_sigma: round2(one_way_sigma),
        frame_in_us: round2(per_frame),
        frame_out_us: round2(per_frame),
        server_base_cores: round2(server_base),
        tester_frame_us: round2(tester_frame_us),
        tester_base_cores: if colocated { round2(tester_base) } else { 0.0 },
        colocated,
        timer_us: GENERATOR_TIMER_US,
        calibration: Some(Calibration {
            results: runs.iter().map(|r| r.dir.clone()).collect(),
            server,
            messages_per_sec: m.iter().map(|x| x.rate.round()).collect(),
            server_cpu_secs: m.iter().map(|x| round2(x.server_cpu)).collect(),
            tester_cpu_secs: m.iter().map(|x| round2(x.tester_cpu)).collect(),
            server_frames: m.iter().map(|x| x.server_frames as u64).collect(),
            server_ack_p50_ms: m.iter().map(|x| x.server_ack_p50).collect(),
            read_receipt_p50_ms: m.iter().map(|x| x.read_receipt.0 / 1e3).collect(),
            read_receipt_p99_ms: m.iter().map(|x| x.read_receipt.1 / 1e3).collect(),
        }),
    })
}

/// The log-normal one-way time (median µs, shape) whose sum of two draws (a frame's way to
/// the server and its receipt's way back) has `p50` and `p99` (µs): the shape by matching
/// the ratio p99/p50 of sampled sums (seeded), then the median by scaling.
fn fit_one_way(p50: f64, p99: f64) -> (f64, f64) {
    use rand::{RngExt, SeedableRng};
    if p50 <= 0.0 {
        return (0.0, 0.0);
    }
    let target = (p99 / p50).max(1.0);
    let mut rng = rand_pcg::Pcg64Mcg::seed_from_u64(0x0ca1_1b7a);
    let z: Vec<(f64, f64)> = (0..20_000)
        .map(|_| {
            (
                rng.sample(rand_distr::StandardNormal),
                rng.sample(rand_distr::StandardNormal),
            )
        })
        .collect();
    let quantiles = |sigma: f64| {
        let mut sums: Vec<f64> = z.iter().map(|(a, b)| (sigma * a).exp() + (sigma * b).exp()).collect();
        sums.sort_by(f64::total_cmp);
        (sums[sums.len() / 2], sums[sums.len() * 99 / 100])
    };
    let mut best = (f64::INFINITY, 0.0, 2.0);
    for i in 0..=150 {
        let sigma = f64::from(i) * 0.02;
        let (q50, q99) = quantiles(sigma);
        let miss = (q99 / q50 - target).abs();
        if miss < best.0 {
            best = (miss, sigma, q50);
        }
    }
    let (_, sigma, q50) = best;
    (p50 / q50, sigma)
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
    host == "localhost" || host.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_one_way_fit_reproduces_the_quantiles_it_was_given() {
        let (median, sigma) = fit_one_way(400.0, 400.0);
        assert!(sigma < 0.01 && (median - 200.0).abs() < 1.0, "{median} {sigma}");
        let (median, sigma) = fit_one_way(400.0, 3000.0);
        assert!(sigma > 0.5, "a long tail needs a spread: {sigma}");
        // Draw sums from the fitted model: its p50 and p99 are the targets, within 5%.
        use rand::{RngExt, SeedableRng};
        let mut rng = rand_pcg::Pcg64Mcg::seed_from_u64(1);
        let mut sums: Vec<f64> = (0..50_000)
            .map(|_| {
                let a: f64 = rng.sample(rand_distr::StandardNormal);
                let b: f64 = rng.sample(rand_distr::StandardNormal);
                median * ((sigma * a).exp() + (sigma * b).exp())
            })
            .collect();
        sums.sort_by(f64::total_cmp);
        let (p50, p99) = (sums[25_000], sums[49_500]);
        assert!(
            (p50 / 400.0 - 1.0).abs() < 0.05 && (p99 / 3000.0 - 1.0).abs() < 0.05,
            "{p50} {p99}"
        );
        assert_eq!(fit_one_way(-5.0, 10.0), (0.0, 0.0), "nothing left for the network");
    }

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
