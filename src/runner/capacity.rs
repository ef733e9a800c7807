//! `ackstorm capacity`: the highest load that holds an SLO.
//!
//! Steps the load up geometrically from the profile's own level until a step fails, then
//! bisects between the last step that held and the first that failed until they are within
//! a tolerance. Each step is a full run (fresh embedded server, its own results folder). A
//! failed step is classified: connections failing is the **connection limit**; the generator
//! falling behind its schedule (schedule lag p99 over the limit) is **generator saturated**,
//! whatever the SLO said, because its latencies are then the tester's; otherwise the SLO broke
//! with the generator on time: **server saturated**.

use std::path::PathBuf;

use super::summary::LAG_LIMIT_MS;
use super::{RunError, RunOutput, results, run_into};
use crate::profile::{Plan, Ramp, SloCheck};
use crate::report::{CapacityReport, CapacityStep, Limit, Report};

/// What a capacity search varies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Vary {
    /// `population.users` (message rates per user stay).
    Users,
    /// `traffic.one_to_one_per_min` (group rate scaled with it).
    Rate,
}

impl Vary {
    /// The name used in reports.
    pub fn as_str(self) -> &'static str {
        match self {
            Vary::Users => "users",
            Vary::Rate => "rate",
        }
    }
}

/// How to search.
#[derive(Debug, Clone)]
pub struct Search {
    /// What to vary.
    pub vary: Vary,
    /// The checks a step must hold (empty: the profile's).
    pub slo: Vec<SloCheck>,
    /// First load (default: the profile's).
    pub start: Option<f64>,
    /// Growth factor between steps before the first failure.
    pub factor: f64,
    /// Stop bisecting when the gap is below this fraction of the load.
    pub tolerance: f64,
    /// Most steps in all.
    pub max_steps: usize,
    /// Typical schedule lag (ms) above which the generator counts as saturated.
    pub max_lag_ms: f64,
}

impl Default for Search {
    fn default() -> Self {
        Search {
            vary: Vary::Users,
            slo: Vec::new(),
            start: None,
            factor: 2.0,
            tolerance: 0.1,
            max_steps: 12,
            max_lag_ms: LAG_LIMIT_MS,
        }
    }
}

/// The plan at load `load`.
fn at_load(plan: &Plan, vary: Vary, load: f64) -> Plan {
    let mut p = plan.clone();
    match vary {
        Vary::Users => {
            p.population.users = load.round().max(1.0) as u64;
            p.population.contacts = p.population.contacts.min(p.population.users.saturating_sub(1));
        }
        Vary::Rate => {
            let scale = if plan.traffic.one_to_one_per_min > 0.0 {
                load / plan.traffic.one_to_one_per_min
            } else {
                1.0
            };
            p.traffic.one_to_one_per_min = load;
            p.traffic.group_per_min = plan.traffic.group_per_min * scale;
        }
    }
    p
}

fn base_load(plan: &Plan, vary: Vary) -> f64 {
    match vary {
        Vary::Users => plan.population.users as f64,
        Vary::Rate => plan.traffic.one_to_one_per_min,
    }
}

/// The generator's typical lag in a run: the median over the seconds of the run of each
/// second's schedule-lag p99, so that one bad second (a scheduler hiccup) does not count as
/// a generator that cannot keep up.
fn typical_lag(r: &Report) -> f64 {
    let mut per_second: Vec<f64> = r
        .timeline
        .iter()
        .map(|p| p.schedule_lag_p99)
        .filter(|v| *v > 0.0)
        .collect();
    if per_second.is_empty() {
        return r.latencies.get("schedule_lag").map_or(0.0, |l| l.p99);
    }
    per_second.sort_by(f64::total_cmp);
    per_second[per_second.len() / 2]
}

/// Why a step did not hold (`None`: it held). `value` is the first SLO metric's value.
fn classify(r: &Report, slo_passed: bool, value: Option<f64>, max_lag_ms: f64) -> Option<Limit> {
    let lag = typical_lag(r);
    let lagging = lag > max_lag_ms;
    if r.connections.failed > 0 || r.connections.achieved < r.connections.asked {
        Some(Limit::ConnectionLimit)
    } else if slo_passed {
        // The server held, but the load did not leave on time: the tester is the limit.
        lagging.then_some(Limit::GeneratorSaturated)
    } else if lagging && value.is_none_or(|v| lag >= 0.5 * v) {
        // The lateness is of the order of what broke the SLO.
        Some(Limit::GeneratorSaturated)
    } else {
        Some(Limit::ServerSaturated)
    }
}

fn step_of(load: f64, plan: &Plan, out: &RunOutput, slo: &[SloCheck], max_lag_ms: f64) -> CapacityStep {
    let r = &out.report;
    let results: Vec<_> = slo.iter().map(|c| c.evaluate(r)).collect();
    let passed_slo = results.iter().all(|s| s.passed);
    let limit = classify(r, passed_slo, results.first().and_then(|s| s.value), max_lag_ms);
    let (single, group) = plan.offered_rates();
    let l = |m: &str| r.latencies.get(m).cloned().unwrap_or_default();
    CapacityStep {
        load,
        offered_per_sec: single + group,
        achieved_per_sec: r.throughput.messages_per_sec,
        value: results.first().and_then(|s| s.value),
        read_receipt_p50: l("read_receipt").p50,
        read_receipt_p99: l("read_receipt").p99,
        server_ack_p99: l("server_ack").p99,
        schedule_lag_p99: typical_lag(r),
        connections_failed: r.connections.failed,
        passed: limit.is_none(),
        limit,
        results_dir: out.dir.display().to_string(),
    }
}

/// Runs the search with socket runs; returns the report and its folder.
pub fn capacity(
    plan: &Plan,
    search: &Search,
    effective: impl Fn(&Plan) -> String,
) -> Result<(CapacityReport, PathBuf), RunError> {
    capacity_with(plan, search, effective, &mut |p, e, dir| run_into(p, e, Some(dir)))
}

/// One step of a search: the plan at a load, its effective profile text, and the folder its
/// results go to.
pub type Step<'a> = dyn FnMut(&Plan, &str, &std::path::Path) -> Result<RunOutput, RunError> + 'a;

/// Runs the search, each step by `step` (a socket run, or a simulation).
pub fn capacity_with(
    plan: &Plan,
    search: &Search,
    effective: impl Fn(&Plan) -> String,
    step: &mut Step<'_>,
) -> Result<(CapacityReport, PathBuf), RunError> {
    if matches!(plan.ramp, Ramp::Steps { .. }) && search.vary == Vary::Users {
        return Err(RunError::Setup(
            "capacity --vary users needs run.ramp.users_per_sec, not steps".into(),
        ));
    }
    let slo = if search.slo.is_empty() {
        plan.slo.clone()
    } else {
        search.slo.clone()
    };
    if slo.is_empty() {
        return Err(RunError::Setup(
            "capacity needs an SLO: --slo 'read_receipt.p99 < 50ms' or slo.checks in the profile".into(),
        ));
    }
    let set = results::fresh_dir(&plan.results_dir, &format!("{}-capacity", plan.name))?;
    let mut steps: Vec<CapacityStep> = Vec::new();
    let mut run_step = |load: f64, steps: &mut Vec<CapacityStep>| -> Result<bool, RunError> {
        let mut p = at_load(plan, search.vary, load);
        p.slo = slo.clone();
        let load = base_load(&p, search.vary);
        eprintln!(
            "== capacity step {}: {} = {load} ==",
            steps.len() + 1,
            search.vary.as_str()
        );
        let dir = set.join(format!("step-{:02}-{}-{load}", steps.len() + 1, search.vary.as_str()));
        let out = step(&p, &effective(&p), &dir)?;
        if let Some(signal) = out.interrupted {
            return Err(RunError::Interrupted { signal, dir: out.dir });
        }
        let step = step_of(load, &p, &out, &slo, search.max_lag_ms);
        let passed = step.passed;
        steps.push(step);
        Ok(passed)
    };
    let users_integral = search.vary == Vary::Users;
    let mut load = search.start.unwrap_or_else(|| base_load(plan, search.vary)).max(1.0);
    let (mut good, mut bad): (Option<f64>, Option<f64>) = (None, None);
    // Grow (or, if the first step fails, shrink) until the knee is bracketed.
    while steps.len() < search.max_steps {
        if run_step(load, &mut steps)? {
            good = Some(load);
            if bad.is_some() {
                break;
            }
            load *= search.factor;
        } else {
            bad = Some(load);
            if good.is_some() || load <= 1.0 {
                break;
            }
            load = (load / search.factor).max(1.0);
        }
        if users_integral {
            load = load.round();
        }
    }
    // Bisect between the last load that held and the first that did not.
    while let (Some(g), Some(b)) = (good, bad) {
        let mid = if users_integral {
            ((g + b) / 2.0).round()
        } else {
            (g + b) / 2.0
        };
        if (b - g) / g <= search.tolerance || mid <= g || mid >= b || steps.len() >= search.max_steps {
            break;
        }
        if run_step(mid, &mut steps)? {
            good = Some(mid)
        } else {
            bad = Some(mid)
        }
    }
    let limit = match bad {
        Some(b) => steps
            .iter()
            .find(|s| s.load == b)
            .and_then(|s| s.limit)
            .unwrap_or(Limit::ServerSaturated),
        None => Limit::NotReached,
    };
    let capacity_step = good.and_then(|g| steps.iter().find(|s| s.load == g));
    let unit = if users_integral {
        "users"
    } else {
        "messages per minute per user"
    };
    let summary = match (capacity_step, limit) {
        (Some(s), Limit::NotReached) => format!(
            "every load tried held: at least {} {unit} ({:.0} messages/s offered); raise --start or the step count",
            s.load, s.offered_per_sec
        ),
        (Some(s), l) => format!(
            "capacity {} {unit} ({:.0} messages/s offered); the next load failed: {}",
            s.load,
            s.offered_per_sec,
            describe(l)
        ),
        (None, l) => format!("no load held, down to {}: {}", load, describe(l)),
    };
    let report = CapacityReport {
        name: plan.name.clone(),
        vary: search.vary.as_str().to_string(),
        slo: slo.iter().map(|c| c.text.clone()).collect(),
        capacity: capacity_step.map(|s| s.load),
        capacity_per_sec: capacity_step.map(|s| s.offered_per_sec),
        steps,
        limit,
        summary,
    };
    results::write_capacity(&set, &report)?;
    Ok((report, set))
}

fn describe(l: Limit) -> &'static str {
    match l {
        Limit::ServerSaturated => "the SLO broke while the generator kept its schedule (server saturated)",
        Limit::GeneratorSaturated => {
            "the generator fell behind its schedule (generator saturated: more tester cores or processes needed)"
        }
        Limit::ConnectionLimit => {
            "connections failed (connection limit: file descriptors, ports, or the server refusing)"
        }
        Limit::NotReached => "not reached",
    }
}
