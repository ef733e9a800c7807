//! `ackstorm simulate`: the same users, in virtual time, against a model of the server.
//!
//! The users are `run`'s: the seeded [`World`], each user's [`crate::sim::behaviour::UserSim`]
//! (the very state machine the actors run) and the same collector fold, audit and report. The
//! server is the reference server's hub on a virtual clock, so every receipt, unread count,
//! group count and offline replay is the real one; what the hub does not say, how long it
//! takes, comes from a cost model ([`model::Model`]: CPU per frame in and out, cores, one-way
//! latency), queued per core. Time is virtual ([`engine`]): an hour of a million users takes
//! as long as its events take to handle, not an hour.
//!
//! A simulation's results folder is a run's (summary, report, `histograms.hdr`, manifest), its
//! report marked simulated, with the model and the predicted server cores per second beside it.

pub mod calibrate;
mod client;
mod engine;
mod folder;
pub mod model;
mod queue;
mod server;

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use thiserror::Error;

use crate::collector::Inline;
use crate::profile::{Plan, Target};
use crate::report::{Report, SimPoint, Simulation};
use crate::runner::target::{self, Metrics};
use crate::runner::{self, Measured, RunData, RunError, RunOutput, Sources};
use crate::sim::behaviour::{Micros, SimConfig};
use crate::sim::world::World;
use crate::transport::Capabilities;
use model::Model;

/// Why a simulation could not run.
#[derive(Debug, Error)]
pub enum SimulateError {
    /// The profile asks for something a simulation does not model.
    #[error("simulate: {0}")]
    Unsupported(String),
    /// The cost model could not be read.
    #[error(transparent)]
    Model(#[from] model::ModelError),
    /// Writing the results failed.
    #[error(transparent)]
    Run(#[from] RunError),
}

/// The run tag of a simulation: fixed per seed, so that two simulations of one profile are
/// the same run.
fn tag(plan: &Plan) -> String {
    plan.launch
        .run_id
        .clone()
        .unwrap_or_else(|| format!("sim{:x}", plan.seed))
}

/// `ackstorm capacity --simulate`: the capacity search of `run`'s, each step simulated.
pub fn capacity(
    plan: &Plan,
    search: &runner::capacity::Search,
    effective: impl Fn(&Plan) -> String,
    model: &Model,
) -> Result<(crate::report::CapacityReport, std::path::PathBuf), SimulateError> {
    check(plan)?;
    let mut step = |p: &Plan, e: &str, dir: &std::path::Path| {
        simulate_into(p, e, model, Some(dir)).map_err(|err| match err {
            SimulateError::Run(r) => r,
            other => RunError::Setup(other.to_string()),
        })
    };
    Ok(runner::capacity::capacity_with(plan, search, effective, &mut step)?)
}

/// What a simulation needs that `run` does not support, or the other way round.
fn check(plan: &Plan) -> Result<(), SimulateError> {
    if !plan.faults.is_empty() {
        return Err(SimulateError::Unsupported(
            "the profile injects faults (faults.*): a simulated network never fails; remove them, or use `run`".into(),
        ));
    }
    if plan.launch.shard.is_some() {
        return Err(SimulateError::Unsupported(
            "--shard: a simulation runs every user in one process".into(),
        ));
    }
    Ok(())
}

/// Simulates `plan` against `model`; `effective` is the effective profile text (saved with
/// the results).
pub fn simulate(plan: &Plan, effective: &str, model: &Model) -> Result<RunOutput, SimulateError> {
    simulate_into(plan, effective, model, None)
}

/// [`simulate`], its results in `dir` (default: a fresh folder under the results folder).
pub fn simulate_into(
    plan: &Plan,
    effective: &str,
    model: &Model,
    dir: Option<&std::path::Path>,
) -> Result<RunOutput, SimulateError> {
    check(plan)?;
    let wall = Instant::now();
    let started_at = SystemTime::now();
    let tag = tag(plan);
    let world = Arc::new(World::build_tagged(plan, &tag));
    let dir = runner::prepare(plan, dir)?;
    let micros = |d: Duration| d.as_micros() as Micros;
    let end = plan.traffic_end();
    let run_end = end + plan.drain;
    let quiet = (plan.drain / 2).min(Duration::from_secs(1));
    let cfg = Arc::new(SimConfig::new(plan, micros(end), micros(run_end.saturating_sub(quiet))));
    let clock_zero = started_at;
    let zero_ms = clock_zero
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    let mut server = server::Server::new(target::server_config(plan, "simulated"), zero_ms);
    let before = Some(Metrics::parse(&server.metrics_text()));
    create_groups(&world, &mut server)?;
    let settings = runner::collector_settings(plan, &world, Capabilities::ALL);
    let mut fold = Inline::new(clock_zero, settings);
    let engine = engine::Engine::new(engine::Setup {
        world: world.clone(),
        cfg,
        model: model.clone(),
        devices: plan.population.devices_per_user.clamp(1, 32) as u8,
        message_bytes: plan.traffic.message_bytes,
        tag: tag.clone(),
        end: micros(run_end),
        seed: plan.seed,
    });
    let outcome = engine.run(&mut server, &mut fold);
    let after = Some(Metrics::parse(&server.metrics_text()));
    let folded = fold.finish();
    let wall_secs = wall.elapsed().as_secs_f64();
    let sources = sources(plan, &server, model);
    let data = RunData::of(plan, &tag, clock_zero, sources.capabilities);
    let measured = Measured::of(folded, clock_zero, (before, after), run_end);
    let simulation = simulation(model, plan, &outcome, wall_secs);
    let report = runner::conclude(
        plan,
        &sources,
        measured,
        (started_at, clock_zero + run_end),
        &dir,
        (effective, data),
        |r: &mut Report| mark(r, simulation),
    )?;
    Ok(RunOutput {
        report,
        dir,
        interrupted: None,
    })
}

/// Each group's owner creates it before the run clock starts (a setup device, as in `run`).
fn create_groups(world: &World, server: &mut server::Server) -> Result<(), SimulateError> {
    use crate::transport::{Inbound, LoginSpec, Op, Reply};
    // Setup devices get ids past every user device.
    let base = u64::MAX / 2;
    for (i, g) in world.groups.iter().enumerate() {
        let id = base + i as u64;
        let spec = LoginSpec {
            user: world.users[g.owner as usize].clone(),
            device: Arc::from(format!("setup{i}")),
            delivery: false,
            groups: Arc::from([]),
        };
        server
            .login(id, 0, &spec)
            .map_err(|e| SimulateError::Unsupported(format!("setup login refused: {e}")))?;
        let op = Op::CreateGroup {
            group: g.id.clone(),
            members: g.members.iter().map(|m| world.users[*m as usize].clone()).collect(),
            admins: g.admins.iter().map(|m| world.users[*m as usize].clone()).collect(),
        };
        if let Some((
            _,
            Some(Inbound::Reply {
                reply: Reply::Error { message, .. },
                ..
            }),
        )) = server.request(id, 1, &op)
        {
            return Err(SimulateError::Unsupported(format!("createGroup {}: {message}", g.id)));
        }
        server.logout(id);
        server.drain(|_, _, _| {});
    }
    Ok(())
}

/// What the report says of the target and the wire.
fn sources(plan: &Plan, server: &server::Server, model: &Model) -> Sources {
    let stats = server.stats();
    let map = |v: Vec<(&str, u64)>| v.into_iter().map(|(k, n)| (k.to_string(), n)).collect();
    let mut warnings = vec![format!(
        "simulated: virtual time against a model of the reference server ({}); latencies and server cores are the model's predictions, counts are the reference server's routing",
        model.name
    )];
    if let Target::External { url, .. } = &plan.target {
        warnings.push(format!(
            "the profile names {url}; a simulation routes with the reference server's rules and the model's costs"
        ));
    }
    Sources {
        kind: "simulated".into(),
        url: format!("model:{}", model.name),
        warnings,
        protocol: "native".into(),
        capabilities: Capabilities::ALL,
        sent_by_op: map(stats.sent_by_op()),
        received_by_op: map(stats.received_by_op()),
        bytes_sent: stats.bytes_sent.load(std::sync::atomic::Ordering::Relaxed),
        bytes_received: stats.bytes_received.load(std::sync::atomic::Ordering::Relaxed),
        faults_by_cause: map(stats.faults_by_cause()),
        shards: None,
        // The model's server has no process: its CPU is predicted, in the report's simulation.
        server_in_process: true,
    }
}

fn simulation(model: &Model, plan: &Plan, o: &engine::Outcome, wall_secs: f64) -> Simulation {
    let n = o.seconds.len().max(o.busy.len());
    let series: Vec<SimPoint> = (0..n)
        .map(|i| {
            let s = o.seconds.get(i).copied().unwrap_or_default();
            let (server, tester) = o.busy.get(i).copied().unwrap_or_default();
            SimPoint {
                t: i as f64,
                server_cores: server + model.server_base_cores,
                tester_cores: if model.colocated {
                    tester + model.tester_base_cores
                } else {
                    0.0
                },
                frames_in: s.frames_in,
                frames_out: s.frames_out,
                receipts: s.receipts,
            }
        })
        .collect();
    let (from, to) = (plan.ramp_end().as_secs_f64(), plan.traffic_end().as_secs_f64());
    let steady: Vec<&SimPoint> = series
        .iter()
        .filter(|p| p.t >= from.ceil() && p.t + 1.0 <= to)
        .collect();
    let mean = |f: fn(&SimPoint) -> f64| {
        if steady.is_empty() {
            0.0
        } else {
            steady.iter().map(|p| f(p)).sum::<f64>() / steady.len() as f64
        }
    };
    Simulation {
        model: model.clone().into(),
        wall_secs,
        events: o.events,
        peak_server_cores: series.iter().map(|p| p.server_cores).fold(0.0, f64::max),
        mean_server_cores: mean(|p| p.server_cores),
        receipts_per_sec: mean(|p| p.receipts as f64),
        series,
    }
}

/// Marks a report as a simulation's.
fn mark(r: &mut Report, s: Simulation) {
    r.target.kind = "simulated".into();
    r.simulation = Some(s);
}
