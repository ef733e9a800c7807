//! `ackstorm run`: executes a plan end to end.
//!
//! Start (or name) the target, read its `/metrics`, create the groups, then on an actix
//! system with one arbiter per core start each user actor at its planned time, show progress,
//! stop traffic, drain, stop the actors, fold the collector, read `/metrics` again, and turn
//! it all into a [`Report`] and a results folder.

pub mod capacity;
mod driver;
pub mod interrupt;
mod live;
pub mod merge;
mod progress;
mod results;
pub mod shards;
mod summary;
pub mod target;
pub mod workers;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use actix::prelude::*;
use futures_util::StreamExt;
use thiserror::Error;

use crate::collector;
use crate::profile::{Plan, Strategy};
use crate::report::{Comparison, Report, ReportError, SCHEMA_VERSION, StrategyRow};
use crate::sim::behaviour::{Micros, SimConfig};
use crate::sim::user::{Quiet, Shared, Stop, UserActor};
use crate::sim::world::World;
use crate::transport::conformance::{Cast, Check};
use crate::transport::{Capability, Command, Driver, Inbound, LoginSpec, Op, Reply, TransportError};

pub(crate) use results::prepare;
pub use results::{HISTOGRAMS_FILE, Machine, Manifest, RunData, write_compare, write_comparison};
pub use summary::LAG_LIMIT_MS;
pub(crate) use summary::Sources;

/// Why a run could not produce results.
#[derive(Debug, Error)]
pub enum RunError {
    /// The target could not be started or reached.
    #[error("target: {0}")]
    Target(String),
    /// Connecting for setup failed.
    #[error(transparent)]
    Transport(#[from] TransportError),
    /// Creating the groups failed.
    #[error("setup: {0}")]
    Setup(String),
    /// Writing results failed.
    #[error("writing {path}: {source}")]
    Io {
        /// What was being written.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// The live metrics address (`tester.metrics_listen`) could not be bound.
    #[error("tester.metrics_listen: cannot listen on {addr}: {source}")]
    MetricsListen {
        /// The address.
        addr: std::net::SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// Rendering the report failed.
    #[error(transparent)]
    Report(#[from] ReportError),
    /// A signal stopped a series of runs; the interrupted run's results are in `dir`.
    #[error("interrupted (signal {signal}); the interrupted run's results are in {}", dir.display())]
    Interrupted {
        /// The signal.
        signal: i32,
        /// Results folder of the run it stopped.
        dir: PathBuf,
    },
}

/// A finished run.
#[derive(Debug)]
pub struct RunOutput {
    /// What it measured.
    pub report: Report,
    /// Where the results folder is.
    pub dir: PathBuf,
    /// The signal that stopped it early, if one did.
    pub interrupted: Option<i32>,
}

/// The longest drain after an interrupt.
const INTERRUPT_DRAIN: Duration = Duration::from_secs(2);

/// When traffic stops: [`Plan::traffic_end`].
pub fn traffic_end(plan: &Plan) -> Duration {
    plan.traffic_end()
}

/// When ramp-up ends (the steady phase starts): [`Plan::ramp_end`].
pub fn ramp_end(plan: &Plan) -> Duration {
    plan.ramp_end()
}

/// A short id of this run, put in group ids and message bodies so that state left on an
/// external server by earlier runs cannot be mistaken for this run's.
fn run_tag() -> String {
    let secs = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or(0);
    format!("{:x}", secs % 0xFFFF_FFFF)
}

/// `ackstorm conformance`: the driver of `plan`'s target through every step of the receipt
/// chains, with the first two users of the population and a fresh group.
pub fn conformance(plan: &Plan, wait: Duration) -> Result<Vec<Check>, RunError> {
    let tag = run_tag();
    let mut target = target::start(plan)?;
    let driver = driver::open(plan, &mut target)?;
    let prefix = &plan.population.user_prefix;
    let cast = Cast {
        a: Arc::from(format!("{prefix}0")),
        b: Arc::from(format!("{prefix}1")),
        group: Arc::from(format!("conformance.{tag}")),
        tag,
    };
    let system = actix_rt::System::new();
    let checks = system.block_on(crate::transport::conformance::run(driver.as_ref(), &cast, wait));
    target.stop();
    Ok(checks)
}

/// Runs `plan`; `effective` is its effective profile text (saved with the results).
pub fn run(plan: &Plan, effective: &str) -> Result<RunOutput, RunError> {
    run_into(plan, effective, None)
}

/// `ackstorm run --repeat N`: the plan `n` times, each kept in `run-1` ... `run-N` of one set
/// folder, so that `ackstorm compare` can use the spread between runs.
pub fn run_repeated(plan: &Plan, effective: &str, n: u32) -> Result<(PathBuf, Vec<RunOutput>), RunError> {
    let set = results::fresh_dir(&plan.results_dir, &plan.name)?;
    let mut outputs = Vec::new();
    for i in 1..=n {
        eprintln!("== run {i} of {n} ==");
        let out = run_into(plan, effective, Some(&set.join(format!("run-{i}"))))?;
        let stop = out.interrupted.is_some();
        outputs.push(out);
        if stop {
            break;
        }
    }
    Ok((set, outputs))
}

fn run_into(plan: &Plan, effective: &str, dir: Option<&std::path::Path>) -> Result<RunOutput, RunError> {
    interrupt::install();
    let tag = plan.launch.run_id.clone().unwrap_or_else(run_tag);
    let world = Arc::new(World::build_tagged(plan, &tag));
    let shard_dir = plan.launch.shard.map(|s| shards::shard_dir(plan, &tag, s));
    let dir = results::prepare(plan, dir.or(shard_dir.as_deref()))?;
    let mut target = target::start(plan)?;
    let driver = driver::open(plan, &mut target)?;
    let started_at = SystemTime::now();
    let system = actix_rt::System::new();
    let measured = system.block_on(drive(plan, &world, &target, driver.clone(), &tag, &dir))?;
    target.stop();
    let ended_at = SystemTime::now();
    let interrupted = measured.interrupted;
    let mut sources = summary::Sources::of(&target, driver.as_ref());
    sources.shards = shards::own(plan, &tag);
    let data = RunData::of(plan, &tag, measured.clock_zero, sources.capabilities);
    let report = conclude(
        plan,
        &sources,
        measured,
        (started_at, ended_at),
        &dir,
        (effective, data),
        |_| {},
    )?;
    Ok(RunOutput {
        report,
        dir,
        interrupted,
    })
}

/// The report of what was measured, written with everything beside it into `dir` (summary,
/// `histograms.hdr`, interval log, manifest with `run`, effective profile, HTML): one place for
/// a run's results and a merge's. `amend` adds what only the caller knows.
pub(crate) fn conclude(
    plan: &Plan,
    src: &summary::Sources,
    mut m: Measured,
    (started, ended): (SystemTime, SystemTime),
    dir: &std::path::Path,
    (effective, run): (&str, RunData),
    amend: impl FnOnce(&mut Report),
) -> Result<Report, RunError> {
    let histograms = std::mem::take(&mut m.folded.histograms);
    let (clock, elapsed) = (m.clock_zero, m.elapsed);
    let (mut report, hlog) = summary::build(plan, src, m, started, ended);
    amend(&mut report);
    let hdr = collector::histfile::write(&histograms, clock, elapsed).map_err(|e| RunError::Io {
        path: dir.join(results::HISTOGRAMS_FILE),
        source: std::io::Error::other(e),
    })?;
    results::write(dir, &report, (&hlog, &hdr), effective, run)?;
    Ok(report)
}

/// What the actix part of a run hands back.
pub(crate) struct Measured {
    folded: collector::Folded,
    /// The wall-clock time of the run clock's zero.
    clock_zero: SystemTime,
    before: Option<target::Metrics>,
    after: Option<target::Metrics>,
    elapsed: Duration,
    interrupted: Option<i32>,
}

impl Measured {
    /// What a run that did not use a collector thread measured (a simulation).
    pub(crate) fn of(
        folded: collector::Folded,
        clock_zero: SystemTime,
        (before, after): (Option<target::Metrics>, Option<target::Metrics>),
        elapsed: Duration,
    ) -> Measured {
        Measured {
            folded,
            clock_zero,
            before,
            after,
            elapsed,
            interrupted: None,
        }
    }
}

/// Sleeps until `deadline`; returns early with the signal if the run is interrupted.
async fn sleep_or_interrupt(deadline: Instant) -> Option<i32> {
    tokio::select! {
        _ = actix_rt::time::sleep_until(deadline.into()) => interrupt::requested(),
        _ = interrupt::wait() => interrupt::requested(),
    }
}

/// How the collector folds a run of `plan`: one place for a run's, a merge's and a
/// simulation's folding.
pub(crate) fn collector_settings(
    plan: &Plan,
    world: &World,
    capabilities: crate::transport::Capabilities,
) -> collector::Settings {
    let micros = |d: Duration| d.as_micros() as Micros;
    let stall = plan
        .faults
        .stall_readers
        .iter()
        .map(|s| s.stall)
        .max()
        .unwrap_or_default();
    collector::Settings {
        audience: audience(world, plan),
        horizon: micros(plan.tester.audit_horizon),
        hlog_path: None,
        events_path: None,
        faults: crate::sim::faults::list(plan),
        disconnect_grace: micros(Duration::from_secs(1) + stall),
        capabilities,
        live_window_secs: 0,
    }
}

/// Who gets what, for the collector's audit.
fn audience(world: &World, plan: &Plan) -> collector::Audience {
    collector::Audience {
        groups: world.groups.iter().map(|g| g.members.as_slice().into()).collect(),
        users: world.users.len() as u32,
        devices: plan.population.devices_per_user.min(32) as u8,
    }
}

async fn drive(
    plan: &Plan,
    world: &Arc<World>,
    target: &target::Running,
    driver: Arc<dyn Driver>,
    tag: &str,
    dir: &std::path::Path,
) -> Result<Measured, RunError> {
    let metrics_listener = match plan.tester.metrics_listen {
        Some(addr) => Some(live::bind(addr).await?),
        None => None,
    };
    // A certificate the tester does not trust fails the run here, once, with its reason.
    match actix_rt::time::timeout(plan.tester.connect_timeout, target.endpoint.check_tls()).await {
        Ok(r) => r?,
        Err(_) => return Err(TransportError::Timeout(plan.tester.connect_timeout).into()),
    }
    let before = target.metrics().await;
    // A shard creates the groups whose owner is one of its users: each group once.
    let mine = |user: u32| plan.launch.shard.is_none_or(|s| s.has(user));
    tokio::select! {
        r = actix_rt::time::timeout(plan.tester.setup_timeout, create_groups(world, driver.as_ref(), plan.tester.close_timeout, &mine)) => match r {
            Ok(r) => r?,
            Err(_) => {
                return Err(RunError::Setup(format!(
                    "createGroup: the server did not answer within {} (tester.setup_timeout)",
                    humantime::format_duration(plan.tester.setup_timeout)
                )))
            }
        },
        _ = interrupt::wait() => return Err(RunError::Setup("interrupted while creating groups".into())),
    }

    let start = match plan.launch.start_at {
        Some(at) => match shards::barrier(at).await {
            Ok(start) => start,
            Err(sig) => {
                return Err(RunError::Setup(format!(
                    "interrupted (signal {sig}) while waiting for --start-at"
                )));
            }
        },
        None => Instant::now(),
    };
    let clock_zero = SystemTime::now() - start.elapsed();
    let micros = |d: Duration| d.as_micros() as Micros;
    let mut settings = collector_settings(plan, world, driver.capabilities());
    settings.hlog_path = Some(dir.join("latencies.hlog"));
    settings.events_path = plan.launch.shard.map(|_| dir.join(shards::EVENTS_FILE));
    settings.live_window_secs = metrics_listener.as_ref().map_or(0, |_| collector::DEFAULT_WINDOW_SECS);
    let collector = collector::Handle::start(start, settings);
    let live = metrics_listener.map(|l| l.serve(collector.sink(), tag, &plan.name, start));
    let end = traffic_end(plan);
    let run_end = end + plan.drain;
    let quiet = (plan.drain / 2).min(Duration::from_secs(1));
    let cfg = Arc::new(SimConfig::new(plan, micros(end), micros(run_end.saturating_sub(quiet))));
    let shared = Arc::new(Shared {
        world: world.clone(),
        cfg,
        driver,
        start,
        devices: plan.population.devices_per_user as u32,
        message_bytes: plan.traffic.message_bytes,
        tag: tag.to_string(),
    });
    let arbiters: Vec<Arbiter> = (0..plan.tester.arbiters).map(|_| Arbiter::new()).collect();
    let progress = progress::spawn(collector.sink(), start, plan, run_end);

    let mut actors = Vec::with_capacity(world.users.len());
    let timeline = async {
        for ix in 0..world.users.len() as u32 {
            let planned = world.planned_start[ix as usize];
            if planned == Duration::MAX || !mine(ix) {
                continue;
            }
            if let Some(sig) = sleep_or_interrupt(start + planned).await {
                return Some(sig);
            }
            let (shared, sink) = (shared.clone(), collector.sink());
            let arbiter = arbiters[ix as usize % arbiters.len()].handle();
            actors.push(UserActor::start_in_arbiter(&arbiter, move |_| {
                UserActor::new(ix, shared, sink)
            }));
        }
        sleep_or_interrupt(start + run_end).await
    };
    let (interrupted, ()) = tokio::join!(timeline, restart_server(plan, target, start, collector.sink()));
    if interrupted.is_some() {
        // Stop sending, let what is in flight come back, then stop.
        for a in &actors {
            a.do_send(Quiet);
        }
        actix_rt::time::sleep(plan.drain.min(INTERRUPT_DRAIN)).await;
    }
    // A few hundred at a time, not one future per user at once (~300 bytes each, at the
    // run's memory peak: everything else is still held then).
    let stops = futures_util::stream::iter(actors.iter().map(|a| a.send(Stop)))
        .buffer_unordered(256)
        .for_each(|_| async {});
    if actix_rt::time::timeout(plan.tester.close_timeout, stops).await.is_err() {
        tracing::warn!("some users did not stop within {:?}", plan.tester.close_timeout);
    }
    // Let the close frames go out before the last scrape.
    actix_rt::time::sleep(Duration::from_millis(300)).await;
    progress.stop();
    let after = target.metrics().await;
    if let Some(live) = live {
        live.stop().await;
    }
    let folded = collector.finish();
    for a in arbiters {
        a.stop();
        let _ = a.join();
    }
    Ok(Measured {
        folded,
        clock_zero,
        before,
        after,
        elapsed: start.elapsed(),
        interrupted,
    })
}

/// Restarts the embedded server at the profile's `faults.server_restarts` times (until the
/// run is interrupted), telling the collector about each.
async fn restart_server(plan: &Plan, target: &target::Running, start: Instant, sink: collector::Sink) {
    let faults = crate::sim::faults::list(plan);
    for (index, f) in faults.iter().enumerate().filter(|(_, f)| f.kind == "server_restart") {
        if sleep_or_interrupt(start + Duration::from_micros(f.at)).await.is_some() {
            return;
        }
        let done = match target.restart() {
            Ok(down) => {
                tracing::info!("server restarted after {down:?} down");
                true
            }
            Err(e) => {
                eprintln!("fault: restarting the server failed: {e}");
                false
            }
        };
        let _ = sink.send(collector::Event::Fault {
            index: index as u32,
            at: start.elapsed().as_micros() as Micros,
            done,
        });
    }
}

/// Logs each group's owner in on a `setup` device, creates the group, and logs out.
/// Creates the world's groups, one setup connection per group. A protocol whose groups come
/// into being as members join (XMPP MUC) has none to create: its users join at login.
async fn create_groups(
    world: &World,
    driver: &dyn Driver,
    close_timeout: Duration,
    mine: &dyn Fn(u32) -> bool,
) -> Result<(), RunError> {
    if !driver.capabilities().has(Capability::CreateGroups) {
        return Ok(());
    }
    let tasks = world
        .groups
        .iter()
        .enumerate()
        .filter(|(_, g)| mine(g.owner))
        .map(|(i, g)| {
            let owner = world.users[g.owner as usize].clone();
            let members = g.members.iter().map(|m| world.users[*m as usize].clone()).collect();
            let admins = g.admins.iter().map(|m| world.users[*m as usize].clone()).collect();
            // One setup device per group: an owner of several groups must not kick itself.
            let spec = LoginSpec {
                user: owner,
                device: Arc::from(format!("setup{i}")),
                delivery: false,
                groups: Arc::from([]),
            };
            let group = g.id.clone();
            async move {
                let mut conn = driver.connect(spec).await?;
                let _ = conn.out.send(Command::Request {
                    req: 1,
                    op: Op::CreateGroup {
                        group: group.clone(),
                        members,
                        admins,
                    },
                });
                while let Some(t) = conn.events.next().await {
                    match t.event {
                        Inbound::Reply {
                            reply: Reply::Error { refusal, message },
                            ..
                        } => {
                            return Err(RunError::Setup(format!(
                                "createGroup {group}: {}: {message}",
                                refusal.code
                            )));
                        }
                        Inbound::Reply { req: Some(1), .. } => break,
                        Inbound::Closed => {
                            return Err(RunError::Setup(format!("createGroup {group}: connection closed")));
                        }
                        _ => {}
                    }
                }
                let _ = conn.out.send(Command::Close);
                // Wait for the close so the setup device is gone before traffic starts.
                let _ =
                    actix_rt::time::timeout(close_timeout, async { while conn.events.next().await.is_some() {} }).await;
                Ok(())
            }
        });
    let results: Vec<Result<(), RunError>> = futures_util::stream::iter(tasks).buffer_unordered(32).collect().await;
    results.into_iter().collect()
}

/// `ackstorm strategies`: the same seeded workload once per strategy.
pub fn strategies(
    plan: &Plan,
    list: &[Strategy],
    effective: impl Fn(&Plan) -> String,
) -> Result<(Comparison, Vec<RunOutput>), RunError> {
    let mut outputs = Vec::new();
    for s in list {
        let mut p = plan.clone();
        p.acks.strategy = *s;
        p.name = format!("{}-{}", plan.name, s.as_str());
        eprintln!("== strategy {} ==", s.as_str());
        let out = run(&p, &effective(&p))?;
        if let Some(signal) = out.interrupted {
            return Err(RunError::Interrupted { signal, dir: out.dir });
        }
        outputs.push(out);
    }
    let baseline = outputs
        .iter()
        .find(|o| o.report.plan.strategy == Strategy::PerMessage.as_str())
        .map(|o| ack_frames(&o.report));
    let rows = outputs
        .iter()
        .map(|o| {
            let r = &o.report;
            let e = &r.ack_economics.total;
            let read = r.latencies.get("read").cloned().unwrap_or_default();
            StrategyRow {
                strategy: r.plan.strategy.clone(),
                results_dir: o.dir.display().to_string(),
                messages_sent: r.throughput.messages_sent,
                messages_read: e.messages_read,
                read_acks: e.read_acks,
                channel_acks: e.channel_acks,
                ack_frames: ack_frames(r),
                saving_vs_per_message_pct: baseline
                    .filter(|b| *b > 0)
                    .map(|b| 100.0 * (1.0 - ack_frames(r) as f64 / b as f64)),
                read_p50_ms: read.p50,
                read_p99_ms: read.p99,
                server_frames: r.ack_economics.server_frames.as_ref().map(|s| s.total_in + s.total_out),
                lost: r.audit.total.lost,
            }
        })
        .collect();
    let comparison = Comparison {
        schema_version: SCHEMA_VERSION,
        name: plan.name.clone(),
        seed: plan.seed,
        rows,
    };
    Ok((comparison, outputs))
}

fn ack_frames(r: &Report) -> u64 {
    r.ack_economics.total.read_acks + r.ack_economics.total.channel_acks
}
