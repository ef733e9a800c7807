//! Turns what a run measured into its [`Report`]: the plan in brief, target identity,
//! throughput over the steady phase, counters, ack economics with server frames, the audit,
//! SLO outcomes, and the warnings a reader needs before trusting the numbers.

use std::time::SystemTime;

use super::target::Running;
use super::{Measured, ramp_end, traffic_end};
use crate::profile::{self, Plan};
use std::collections::BTreeMap;

use crate::report::{
    AckEconomics, AckSplit, Counters, PlanSummary, Report, SCHEMA_VERSION, ServerFrames, ShardSet, TargetInfo,
    Throughput,
};
use crate::transport::{Capabilities, Capability, Driver, FrameStats};

/// Schedule lag p99 above which the generator, not the server, is the bottleneck. The 1 ms
/// timer and a busy box put a healthy generator's p99 at 2-6 ms; 10 ms means it is behind.
pub const LAG_LIMIT_MS: f64 = 10.0;

fn rfc3339(t: SystemTime) -> String {
    humantime::format_rfc3339_seconds(t).to_string()
}

fn total(a: &AckSplit, b: &AckSplit) -> AckSplit {
    let read = a.messages_read + b.messages_read;
    let acks = a.read_acks + a.channel_acks + b.read_acks + b.channel_acks;
    let per = if read == 0 { 0.0 } else { acks as f64 / read as f64 };
    AckSplit {
        messages_read: read,
        read_acks: a.read_acks + b.read_acks,
        channel_acks: a.channel_acks + b.channel_acks,
        acks_per_read: per,
        baseline_acks: read,
        saving_pct: if read == 0 { 0.0 } else { 100.0 * (1.0 - per) },
    }
}

/// What the report says of the target and the wire, whoever measured it: one process's
/// driver and target ([`Sources::of`]), or the sum of a merge's shards.
#[derive(Debug, Clone, Default)]
pub(crate) struct Sources {
    /// `embedded` or `external`.
    pub kind: String,
    /// The target's URL.
    pub url: String,
    /// The target's own warnings (e.g. an unverified certificate).
    pub warnings: Vec<String>,
    /// The driver's protocol name.
    pub protocol: String,
    /// What the protocol can report.
    pub capabilities: Capabilities,
    /// Frames sent by op.
    pub sent_by_op: BTreeMap<String, u64>,
    /// Frames received by op.
    pub received_by_op: BTreeMap<String, u64>,
    /// Bytes sent.
    pub bytes_sent: u64,
    /// Bytes received.
    pub bytes_received: u64,
    /// Server frames the tester could not use, by cause.
    pub faults_by_cause: BTreeMap<String, u64>,
    /// This process's part in a sharded run (`None`: the whole run, or a merge's).
    pub shards: Option<ShardSet>,
    /// The server runs in the tester's process: its `/metrics` CPU time is both's.
    pub server_in_process: bool,
}

impl Sources {
    /// What one process's `target` and `driver` saw.
    pub fn of(target: &Running, driver: &dyn Driver) -> Sources {
        let stats: &FrameStats = driver.stats();
        let map = |v: Vec<(&str, u64)>| v.into_iter().map(|(k, n)| (k.to_string(), n)).collect();
        Sources {
            kind: target.kind.to_string(),
            url: target.url.clone(),
            warnings: target.warnings.clone(),
            protocol: driver.name().to_string(),
            capabilities: driver.capabilities(),
            sent_by_op: map(stats.sent_by_op()),
            received_by_op: map(stats.received_by_op()),
            bytes_sent: stats.bytes_sent.load(std::sync::atomic::Ordering::Relaxed),
            bytes_received: stats.bytes_received.load(std::sync::atomic::Ordering::Relaxed),
            faults_by_cause: map(stats.faults_by_cause()),
            shards: None,
            server_in_process: target.in_process(),
        }
    }
}

/// Builds the report; returns it with the `.hlog` text.
pub(crate) fn build(
    plan: &Plan,
    src: &Sources,
    m: Measured,
    started_at: SystemTime,
    ended_at: SystemTime,
) -> (Report, Vec<u8>) {
    let f = m.folded;
    let protocol = src.protocol.as_str();
    // Left out of the latencies and the audit by the collector, named here.
    let not_available = crate::collector::unavailable(src.capabilities);
    let (offered_single, offered_group) = plan.offered_rates();
    let (steady_from, steady_to) = (ramp_end(plan).as_secs_f64(), traffic_end(plan).as_secs_f64());
    let steady: Vec<_> = f
        .timeline
        .iter()
        .filter(|p| p.t >= steady_from.ceil() && p.t + 1.0 <= steady_to)
        .collect();
    let messages_per_sec = if steady.is_empty() {
        (f.sent.0 + f.sent.1) as f64 / steady_to.max(1.0)
    } else {
        steady.iter().map(|p| p.messages).sum::<u64>() as f64 / steady.len() as f64
    };
    let frames_sent: u64 = src.sent_by_op.values().sum();
    let errors: u64 = f.errors.values().sum();
    let nonzero = |v: &BTreeMap<String, u64>| {
        v.iter()
            .filter(|(_, n)| **n > 0)
            .map(|(k, n)| (k.clone(), *n))
            .collect()
    };
    let server_frames = match (&m.before, &m.after) {
        (Some(b), Some(a)) if !a.frames_in.is_empty() => {
            let (frames_in, frames_out) = b.delta(a);
            Some(ServerFrames {
                total_in: frames_in.values().sum(),
                total_out: frames_out.values().sum(),
                frames_in,
                frames_out,
            })
        }
        _ => None,
    };
    let (one, group) = f.economics;
    let mut connections = f.connections;
    connections.asked =
        (plan.local_peak_users() as f64 * plan.reading.online_share).round() as u64 * plan.population.devices_per_user;
    let mut audit = f.audit;
    audit.drain_secs = plan.drain.as_secs_f64();
    audit.protocol_errors = src.faults_by_cause.clone();

    let mut report = Report {
        schema_version: SCHEMA_VERSION,
        name: plan.name.clone(),
        started_at: rfc3339(started_at),
        ended_at: rfc3339(ended_at),
        elapsed_secs: m.elapsed.as_secs_f64(),
        plan: PlanSummary {
            strategy: plan.acks.strategy.as_str().to_string(),
            users: plan.peak_users(),
            devices_per_user: plan.population.devices_per_user,
            groups: plan.groups.count,
            seed: plan.seed,
            duration_secs: plan.duration.as_secs_f64(),
            offered_one_to_one_per_sec: offered_single,
            offered_group_per_sec: offered_group,
            profile_hash: profile::workload_hash(plan),
        },
        target: TargetInfo {
            kind: src.kind.clone(),
            url: src.url.clone(),
            build_info: m
                .after
                .as_ref()
                .or(m.before.as_ref())
                .and_then(|x| x.build_info.clone()),
            label: plan.label.clone(),
            protocol: protocol.to_string(),
            not_available: not_available.iter().map(|n| n.to_string()).collect(),
            server_cpu_secs: match (&m.before, &m.after) {
                (Some(b), Some(a)) if !src.server_in_process => {
                    a.cpu_secs.zip(b.cpu_secs).map(|(a, b)| (a - b).max(0.0))
                }
                _ => None,
            },
        },
        connections,
        throughput: Throughput {
            messages_sent: f.sent.0 + f.sent.1,
            one_to_one_sent: f.sent.0,
            group_sent: f.sent.1,
            messages_per_sec,
            skipped_offline: f.skipped,
            skipped_disconnected: f.skipped_disconnected,
            frames_sent,
            frames_received: src.received_by_op.values().sum(),
            bytes_sent: src.bytes_sent,
            bytes_received: src.bytes_received,
        },
        latencies: f.latencies,
        counters: Counters {
            frames_sent_by_op: nonzero(&src.sent_by_op),
            frames_received_by_op: nonzero(&src.received_by_op),
            receipts_received: f.receipts,
            errors_by_code: f.errors,
            error_rate: if frames_sent == 0 {
                0.0
            } else {
                errors as f64 / frames_sent as f64
            },
            rate_limited: f.rate_limited,
            unparseable: src.faults_by_cause.values().sum(),
        },
        ack_economics: AckEconomics {
            strategy: plan.acks.strategy.as_str().to_string(),
            total: total(&one, &group),
            one_to_one: one,
            group,
            server_frames,
        },
        audit,
        timeline: f.timeline,
        slo: Vec::new(),
        warnings: Vec::new(),
        interrupted: m.interrupted.is_some(),
        faults: f.faults,
        shards: src.shards.clone(),
        simulation: None,
    };
    report.warnings = src.warnings.clone();
    report.warnings.extend(warnings(&report, &f.connect_errors));
    if !src.capabilities.has(Capability::ServerReadCounts) && report.plan.groups > 0 {
        report.warnings.push(format!(
            "group read counts are counted by each sender's client from the readers' markers: the {protocol} protocol has no server-side count"
        ));
    }
    if let Some(e) = &f.hlog_error {
        report
            .warnings
            .push(format!("the interval log could not be written: {e}"));
    }
    if let Some(e) = &f.events_error {
        report.warnings.push(format!("the event log could not be written: {e}"));
    }
    match &report.shards {
        Some(s) if s.index.is_some() && s.count > 1 => report.warnings.push(format!(
            "shard {} of {}: {}; the SLOs are judged on the merged run (`ackstorm merge`)",
            s.index.unwrap_or(0),
            s.count,
            if s.partitioned {
                "its users talked only within the shard, so its audit is complete"
            } else {
                "its audit and the latencies between users of different shards are complete only in the merged run"
            }
        )),
        _ => report.slo = plan.slo.iter().map(|c| c.evaluate(&report)).collect(),
    }
    (report, f.hlog)
}

fn warnings(r: &Report, connect_errors: &[String]) -> Vec<String> {
    let mut w = Vec::new();
    let lag = r.latencies.get("schedule_lag").map_or(0.0, |l| l.p99);
    if lag > LAG_LIMIT_MS {
        w.push(format!(
            "generator bottleneck: schedule_lag p99 is {lag:.1} ms (> {LAG_LIMIT_MS} ms): messages left late, so latencies include the tester's own delay; use fewer users per process or more cores before blaming the server"
        ));
    }
    if r.connections.failed > 0 {
        w.push(format!(
            "{} connection attempts failed (first: {}); see the file limit (20,000 per process) and ephemeral ports (~28k per source address)",
            r.connections.failed,
            connect_errors.first().map(String::as_str).unwrap_or("?")
        ));
    }
    let injected: u64 = r
        .faults
        .iter()
        .filter(|f| f.kind == "drop_connections")
        .map(|f| f.done)
        .sum();
    let unplanned = r.connections.dropped.saturating_sub(injected);
    if unplanned > 0 {
        let restarts = if r.faults.iter().any(|f| f.kind == "server_restart") {
            " (server restarts included)"
        } else {
            ""
        };
        w.push(format!(
            "{unplanned} connections were closed by the server or the network{restarts}, not by the simulation or a planned drop"
        ));
    }
    let offered = r.plan.offered_one_to_one_per_sec + r.plan.offered_group_per_sec;
    if offered > 0.0 && r.throughput.messages_per_sec < 0.9 * offered && r.throughput.skipped_offline == 0 {
        w.push(format!(
            "sent {:.0} messages/s in the steady phase, below the {:.0}/s offered",
            r.throughput.messages_per_sec, offered
        ));
    }
    if r.interrupted {
        w.push("the run was interrupted: its figures cover only what ran before the signal".to_string());
    }
    let lost: Vec<String> = r
        .audit
        .by_kind
        .iter()
        .filter(|(_, k)| k.lost > 0)
        .map(|(name, k)| format!("{} {name}", k.lost))
        .collect();
    if !lost.is_empty() {
        w.push(format!(
            "the audit found losses the protocol does not allow: {} (see the audit table)",
            lost.join(", ")
        ));
    }
    let at_end = r.audit.total.lost_at_end;
    if at_end > 0 {
        let slowest = crate::collector::Metric::TRANSIT
            .iter()
            .filter_map(|m| r.latencies.get(m.name()))
            .fold(0.0, |max: f64, l| max.max(l.max));
        w.push(format!(
            "{at_end} of the {} losses were still awaited when the run ended, sent less than the run's slowest transit ({slowest:.0} ms) before it: a server with a backlog may only be late; rerun with a longer run.drain (now {:.1} s) to tell late from lost",
            r.audit.total.lost, r.audit.drain_secs,
        ));
    }
    if r.audit.total.lost_in_disconnect > 0 {
        w.push(format!(
            "{} pushes or replies were lost with connections that died (allowed by protocol v1: at most once on a live connection)",
            r.audit.total.lost_in_disconnect
        ));
    }
    if r.counters.error_rate > 0.0 {
        let top = r
            .counters
            .errors_by_code
            .iter()
            .max_by_key(|(_, n)| **n)
            .map(|(c, n)| format!("{c} x{n}"));
        w.push(format!(
            "{:.3}% of frames got errors (most: {})",
            r.counters.error_rate * 100.0,
            top.unwrap_or_default()
        ));
    }
    if r.counters.unparseable > 0 {
        let causes: Vec<String> = r
            .audit
            .protocol_errors
            .iter()
            .filter(|(_, n)| **n > 0)
            .map(|(c, n)| format!("{c} x{n}"))
            .collect();
        w.push(format!(
            "{} server frames could not be used ({})",
            r.counters.unparseable,
            causes.join(", ")
        ));
    }
    w
}
