//! The server's cost model: what each frame costs in CPU, how many cores there are to spend
//! it on, and how far the clients are; read from a TOML file (`[model] file = ...` in the
//! profile, `simulate --model`, written by `ackstorm calibrate`), or the calibration that
//! ships with ackstorm.
//!
//! Queueing: every frame the server reads is a job of `frame_in_us + frame_out_us x (frames
//! it writes)` on the first core to come free, first come first served ([`Cores`]). When the
//! load generator shares the box (`colocated`, as in every calibration run on one machine),
//! its own work per frame is a job on the same cores: that is what makes a box's knee.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::path::{Path, PathBuf};

use rand::{RngExt, SeedableRng};
use rand_distr::StandardNormal;
use rand_pcg::Pcg64Mcg;
use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::sim::behaviour::Micros;

/// The calibration that ships with ackstorm: the reference server on the 2-core box it was
/// measured on (`ackstorm calibrate`; how is in the file).
pub const SHIPPED: &str = include_str!("../../profiles/models/reference-2core.toml");

/// Why a model cannot be used.
#[derive(Debug, Error)]
pub enum ModelError {
    /// The file could not be read.
    #[error("model {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The file is not a model.
    #[error("model {path}: {message}")]
    Parse {
        /// The file.
        path: String,
        /// What is wrong.
        message: String,
    },
}

/// Where a calibrated model came from: the runs, each figure in the runs' order.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Calibration {
    /// The results folders it was derived from.
    pub results: Vec<String>,
    /// The server build it measured (label, or the version of `ackstorm_build_info`).
    pub server: String,
    /// Messages per second in each run.
    pub messages_per_sec: Vec<f64>,
    /// Server CPU over each run, seconds.
    pub server_cpu_secs: Vec<f64>,
    /// Tester CPU over each run, seconds.
    pub tester_cpu_secs: Vec<f64>,
    /// Frames the server read and wrote in each run.
    pub server_frames: Vec<u64>,
    /// `server_ack` p50 measured, ms.
    pub server_ack_p50_ms: Vec<f64>,
    /// `read_receipt` p50 measured, ms (the one-way latency is fitted to the lightest run's).
    pub read_receipt_p50_ms: Vec<f64>,
    /// `read_receipt` p99 measured, ms (and its spread).
    pub read_receipt_p99_ms: Vec<f64>,
}

/// A server's costs and the path to it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Model {
    /// What it models, for the report.
    pub name: String,
    /// Cores the server (and, when `colocated`, the load generator) runs on.
    pub cores: u32,
    /// Time from a client handing a frame over to the server starting on it (and back), µs:
    /// the network, both kernels and the client's own reading. The median, with `one_way_sigma`.
    pub one_way_us: f64,
    /// Spread of the one-way time: log-normal with this shape (the standard deviation of its
    /// logarithm); 0: always `one_way_us`. A frame never overtakes one sent before it on the
    /// same connection.
    #[serde(default)]
    pub one_way_sigma: f64,
    /// CPU per frame the server reads, µs (handling it included).
    pub frame_in_us: f64,
    /// CPU per frame the server writes (reply or push), µs.
    pub frame_out_us: f64,
    /// Server CPU spent whatever the load, cores: what a busier server saves per frame (it
    /// writes more frames per system call) shows up as this, with a smaller cost per frame.
    #[serde(default)]
    pub server_base_cores: f64,
    /// CPU the load generator spends per frame it sends or reads, µs (only with `colocated`).
    #[serde(default)]
    pub tester_frame_us: f64,
    /// Generator CPU spent whatever the load, cores (only with `colocated`).
    #[serde(default)]
    pub tester_base_cores: f64,
    /// The load generator shares the server's cores (a calibration on one box). Off, the model
    /// predicts a server on its own hardware, with clients elsewhere.
    #[serde(default)]
    pub colocated: bool,
    /// The clients' timer resolution, µs: a planned send or ack leaves at the next multiple
    /// of it, as an SDK's (and ackstorm's own, tokio's 1 ms) timers fire. 0: on time.
    #[serde(default)]
    pub timer_us: u64,
    /// Where the figures came from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub calibration: Option<Calibration>,
}

impl Model {
    /// The model in `text` (`origin` names it in errors).
    pub fn parse(text: &str, origin: &str) -> Result<Model, ModelError> {
        let m: Model = toml::from_str(text).map_err(|e| ModelError::Parse {
            path: origin.to_string(),
            message: e.to_string(),
        })?;
        m.check().map_err(|message| ModelError::Parse {
            path: origin.to_string(),
            message,
        })?;
        Ok(m)
    }

    /// The model in file `path`.
    pub fn load(path: &Path) -> Result<Model, ModelError> {
        let text = std::fs::read_to_string(path).map_err(|source| ModelError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Model::parse(&text, &path.display().to_string())
    }

    /// The calibration that ships with ackstorm.
    pub fn shipped() -> Model {
        Model::parse(SHIPPED, "profiles/models/reference-2core.toml").expect("the shipped model is valid (tested)")
    }

    /// A model in which nothing costs anything (counts only, no latency but the network's).
    pub fn free(one_way_us: f64) -> Model {
        Model {
            name: "free".into(),
            cores: 1,
            one_way_us,
            one_way_sigma: 0.0,
            frame_in_us: 0.0,
            frame_out_us: 0.0,
            server_base_cores: 0.0,
            tester_frame_us: 0.0,
            tester_base_cores: 0.0,
            colocated: false,
            timer_us: 0,
            calibration: None,
        }
    }

    fn check(&self) -> Result<(), String> {
        if !self.one_way_sigma.is_finite() || !(0.0..=5.0).contains(&self.one_way_sigma) {
            return Err(format!(
                "one_way_sigma must be between 0 and 5, got {}",
                self.one_way_sigma
            ));
        }
        if self.timer_us > 60_000_000 {
            return Err(format!("timer_us must be at most 60,000,000, got {}", self.timer_us));
        }
        if self.cores == 0 || self.cores > 4096 {
            return Err(format!("cores must be 1 to 4096, got {}", self.cores));
        }
        let base = self.server_base_cores + if self.colocated { self.tester_base_cores } else { 0.0 };
        if !base.is_finite()
            || self.server_base_cores < 0.0
            || self.tester_base_cores < 0.0
            || base >= f64::from(self.cores)
        {
            return Err(format!(
                "server_base_cores and tester_base_cores must be at least 0 and leave some of the {} cores, got {} and {}",
                self.cores, self.server_base_cores, self.tester_base_cores
            ));
        }
        for (key, v) in [
            ("one_way_us", self.one_way_us),
            ("frame_in_us", self.frame_in_us),
            ("frame_out_us", self.frame_out_us),
            ("tester_frame_us", self.tester_frame_us),
        ] {
            if !v.is_finite() || !(0.0..=1e7).contains(&v) {
                return Err(format!("{key} must be between 0 and 10,000,000 µs, got {v}"));
            }
        }
        Ok(())
    }

    /// The file's text (`ackstorm calibrate` writes it), with a header saying what it is.
    pub fn to_toml(&self, header: &str) -> String {
        let body = toml::to_string_pretty(self).expect("a model serializes");
        let mut out = String::new();
        for line in header.lines() {
            out.push_str("# ");
            out.push_str(line);
            out.push('\n');
        }
        out.push('\n');
        out.push_str(&body);
        out
    }

    /// One-way latency in whole µs (its median).
    pub fn one_way(&self) -> Micros {
        self.one_way_us.round() as Micros
    }
}

/// The clients' connections: each frame's one-way time drawn from the model (seeded), in
/// order per connection and direction.
#[derive(Debug)]
pub struct Network {
    median: f64,
    sigma: f64,
    rng: Pcg64Mcg,
    /// Latest arrival so far per device: (at the server, at the client).
    last: Vec<(Micros, Micros)>,
}

impl Network {
    /// The network of `model` for `devices` devices, drawn from `seed`.
    pub fn new(model: &Model, devices: usize, seed: u64) -> Network {
        Network {
            median: model.one_way_us,
            sigma: model.one_way_sigma,
            rng: Pcg64Mcg::seed_from_u64(seed ^ 0x006e_6574_776f_726b),
            last: vec![(0, 0); devices],
        }
    }

    fn draw(&mut self) -> Micros {
        if self.sigma == 0.0 {
            return self.median.round() as Micros;
        }
        let z: f64 = self.rng.sample(StandardNormal);
        (self.median * (self.sigma * z).exp()).round() as Micros
    }

    /// When a frame device `dev` sends at `t` reaches the server.
    pub fn up(&mut self, dev: usize, t: Micros) -> Micros {
        let at = (t + self.draw()).max(self.last[dev].0);
        self.last[dev].0 = at;
        at
    }

    /// When a frame the server sends device `dev` at `t` reaches it.
    pub fn down(&mut self, dev: usize, t: Micros) -> Micros {
        let at = (t + self.draw()).max(self.last[dev].1);
        self.last[dev].1 = at;
        at
    }
}

impl From<Model> for crate::report::SimModel {
    fn from(m: Model) -> Self {
        crate::report::SimModel {
            name: m.name,
            cores: m.cores,
            one_way_us: m.one_way_us,
            one_way_sigma: m.one_way_sigma,
            frame_in_us: m.frame_in_us,
            frame_out_us: m.frame_out_us,
            tester_frame_us: m.tester_frame_us,
            colocated: m.colocated,
            timer_us: m.timer_us,
            server_base_cores: m.server_base_cores,
            tester_base_cores: m.tester_base_cores,
            calibrated_from: m.calibration.map(|c| c.results.join(" ")),
        }
    }
}

/// Identical cores serving jobs first come first served; counts the busy time per second of
/// run time, by who asked (the server, or the generator sharing its cores).
#[derive(Debug)]
pub struct Cores {
    /// Share of each core left to jobs (what the load-independent base leaves).
    speed: f64,
    /// When each core comes free, ns on the run clock.
    free: BinaryHeap<Reverse<u64>>,
    /// Busy ns per second of run time: (server, tester).
    busy: Vec<(u64, u64)>,
}

/// Who a job is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Job {
    /// The server handling a frame.
    Server,
    /// The load generator sending or reading a frame.
    Tester,
}

impl Cores {
    /// `n` idle cores, `base` of them kept busy whatever the load (spread over all `n`).
    pub fn new(n: u32, base: f64) -> Cores {
        let n = n.max(1);
        Cores {
            speed: ((f64::from(n) - base) / f64::from(n)).clamp(0.01, 1.0),
            free: (0..n).map(|_| Reverse(0)).collect(),
            busy: Vec::new(),
        }
    }

    /// Runs a job of `cost_us` that arrives at `t`: when it is done (µs, rounded up).
    pub fn run(&mut self, t: Micros, cost_us: f64, job: Job) -> Micros {
        if cost_us <= 0.0 {
            return t;
        }
        let cost = (cost_us * 1000.0).round() as u64;
        let Reverse(free) = self.free.pop().expect("at least one core");
        let start = free.max(t.saturating_mul(1000));
        let done = start + (cost as f64 / self.speed).round() as u64;
        self.free.push(Reverse(done));
        let sec = (start / 1_000_000_000) as usize;
        if self.busy.len() <= sec {
            self.busy.resize(sec + 1, (0, 0));
        }
        match job {
            Job::Server => self.busy[sec].0 += cost,
            Job::Tester => self.busy[sec].1 += cost,
        }
        done.div_ceil(1000)
    }

    /// Cores kept busy in each second of run time: (server, tester).
    pub fn busy_per_sec(&self) -> Vec<(f64, f64)> {
        self.busy
            .iter()
            .map(|(s, t)| (*s as f64 / 1e9, *t as f64 / 1e9))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shipped_model_is_valid_and_says_where_it_came_from() {
        let m = Model::shipped();
        assert!(m.cores >= 1);
        assert!(m.frame_in_us > 0.0 && m.frame_out_us > 0.0, "{m:?}");
        assert!(m.calibration.is_some(), "a shipped model names its calibration run");
    }

    #[test]
    fn a_model_round_trips_through_its_file() {
        let m = Model::shipped();
        let text = m.to_toml("a test\nsecond line");
        assert!(text.starts_with("# a test\n# second line\n"));
        assert_eq!(Model::parse(&text, "t").unwrap(), m);
    }

    #[test]
    fn bad_models_say_what_is_wrong() {
        let e = Model::parse(
            "name='x'\ncores=0\none_way_us=1\nframe_in_us=1\nframe_out_us=1",
            "m.toml",
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("m.toml") && e.contains("cores"), "{e}");
        let e = Model::parse("name='x'\ncores=1\none_way_us=-1\nframe_in_us=1\nframe_out_us=1", "m")
            .unwrap_err()
            .to_string();
        assert!(e.contains("one_way_us"), "{e}");
        let e = Model::parse(
            "name='x'\ncores=1\none_way_us=1\nframe_in_us=1\nframe_out_us=1\nspeed=2",
            "m",
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("speed"), "{e}");
    }

    #[test]
    fn jobs_queue_for_the_first_free_core() {
        let mut c = Cores::new(2, 0.0);
        assert_eq!(c.run(0, 10.0, Job::Server), 10);
        assert_eq!(c.run(0, 10.0, Job::Server), 10);
        // Both busy until 10: the third waits.
        assert_eq!(c.run(5, 10.0, Job::Tester), 20);
        // A core is free again by 30.
        assert_eq!(c.run(30, 1.5, Job::Server), 32);
        assert_eq!(c.run(40, 0.0, Job::Server), 40, "a free job does not queue");
        let busy = c.busy_per_sec();
        assert!(
            (busy[0].0 - 21.5e-6).abs() < 1e-12 && (busy[0].1 - 10e-6).abs() < 1e-12,
            "{busy:?}"
        );
    }

    #[test]
    fn a_base_load_slows_every_job_by_the_share_it_takes() {
        // Half of each of 2 cores is taken: a 10 µs job takes 20 µs, and counts as 10 µs.
        let mut c = Cores::new(2, 1.0);
        assert_eq!(c.run(0, 10.0, Job::Server), 20);
        assert!((c.busy_per_sec()[0].0 - 10e-6).abs() < 1e-12);
    }
}
