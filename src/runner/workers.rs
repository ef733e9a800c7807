//! `ackstorm run --workers N`: N shard processes on this machine, started together at one
//! `--start-at`, each under the file limit with source addresses of its own, then merged.
//!
//! With the embedded target, one child server serves all workers when every connection fits
//! one process's file limit (the workload stays exactly the profile's); beyond that each worker
//! starts its own server and users talk only within their shard (`population.partition =
//! "shard"`), since one server process could not hold them all.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::SystemTime;

use super::driver::{CONNECTIONS_PER_SOURCE_ADDRESS, loopback_sources};
use super::merge::{MergeError, merge};
use super::shards::{self, run_dir};
use super::{RunError, RunOutput, interrupt, target};
use crate::profile::{Auth, EmbeddedMode, Partition, Plan, Target};

/// Connections one child server takes for all workers: its sockets stay under the 20,000 file
/// limit with room for its own files.
const ONE_SERVER_MAX_CONNECTIONS: u64 = 18_000;

/// How a worker run is started.
pub struct Workers<'a> {
    /// The profile file.
    pub profile: &'a Path,
    /// The command line's overrides (`key=value`), passed on to every worker.
    pub overrides: &'a [String],
    /// Worker processes.
    pub count: u32,
    /// The shared start.
    pub start_at: SystemTime,
    /// The run id (default: derived from the workload and the start).
    pub run_id: Option<String>,
}

/// Runs `w.count` shard processes of `plan` and merges them.
pub fn run(plan: &Plan, w: &Workers) -> Result<RunOutput, RunError> {
    interrupt::install();
    let run_id = w
        .run_id
        .clone()
        .unwrap_or_else(|| shards::default_run_id(plan, w.start_at));
    let dir = run_dir(plan, &run_id);
    std::fs::create_dir_all(&dir).map_err(|source| RunError::Io {
        path: dir.clone(),
        source,
    })?;
    let connections = plan.peak_users() * plan.population.devices_per_user;
    let mut extra: Vec<String> = Vec::new();
    let mut server = None;
    if let Target::Embedded { .. } = plan.target {
        if connections <= ONE_SERVER_MAX_CONNECTIONS {
            let mut p = plan.clone();
            if let Target::Embedded { mode, .. } = &mut p.target {
                *mode = EmbeddedMode::ChildProcess;
            }
            let running = target::start(&p)?;
            let Auth::Secret(secret) = &running.auth else {
                return Err(RunError::Target("the embedded server has no secret".into()));
            };
            extra.push(format!("target.url={}", toml_str(&running.url)));
            extra.push(format!("target.secret={}", toml_str(secret)));
            if plan.label.is_none() {
                // The workers see an external URL: say what it is.
                extra.push(format!(
                    "target.label={}",
                    toml_str("embedded reference server (one for all workers)")
                ));
            }
            eprintln!(
                "workers: one server for all {connections} connections at {}",
                running.url
            );
            server = Some(running);
        } else {
            extra.push("population.partition=\"shard\"".to_string());
            eprintln!(
                "workers: {connections} connections do not fit one server process: one server per worker, users talk within their shard"
            );
        }
    } else if plan.population.partition == Partition::Shard {
        eprintln!("workers: population.partition = \"shard\" with one external server: users talk within their shard");
    }
    let loopback = match &plan.target {
        Target::Embedded { .. } => true,
        Target::External { url, .. } => crate::transport::connect::TargetUrl::parse(url).is_ok_and(|u| {
            u.host == "localhost" || u.host.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback())
        }),
    };
    let per_worker = connections.div_ceil(u64::from(w.count));
    let ips_each = per_worker.div_ceil(CONNECTIONS_PER_SOURCE_ADDRESS).max(1);
    let start = humantime::format_rfc3339_millis(w.start_at).to_string();
    // Each worker serves its live metrics on a port of its own (checked before any starts).
    let live_addrs = (0..w.count)
        .map(|i| {
            plan.tester
                .metrics_listen
                .map(|a| super::live::worker_addr(a, i))
                .transpose()
        })
        .collect::<Result<Vec<_>, _>>()?;
    let mut children: Vec<(u32, Child, PathBuf)> = Vec::new();
    for i in 0..w.count {
        let mut sets: Vec<String> = w.overrides.to_vec();
        sets.extend(extra.iter().cloned());
        if loopback && plan.tester.source_ips.is_empty() {
            let ips: Vec<String> = loopback_sources(u64::from(i) * ips_each, ips_each)
                .iter()
                .map(|ip| format!("\"{ip}\""))
                .collect();
            sets.push(format!("tester.source_ips=[{}]", ips.join(",")));
        }
        if let Some(addr) = &live_addrs[i as usize] {
            sets.push(format!("tester.metrics_listen={}", toml_str(&addr.to_string())));
        }
        let log = dir.join(format!("worker-{i}.log"));
        let out = std::fs::File::create(&log).map_err(|source| RunError::Io {
            path: log.clone(),
            source,
        })?;
        let err = out.try_clone().map_err(|source| RunError::Io {
            path: log.clone(),
            source,
        })?;
        let exe = std::env::current_exe().map_err(|e| RunError::Target(format!("finding this executable: {e}")))?;
        let mut cmd = Command::new(exe);
        cmd.arg("run").arg(w.profile);
        for s in &sets {
            cmd.args(["--set", s]);
        }
        cmd.args(["--shard", &format!("{i}/{}", w.count)])
            .args(["--run-id", &run_id])
            .args(["--start-at", &start])
            .arg("--no-progress")
            .env_remove("JOB_COMPLETION_INDEX")
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err);
        let child = cmd
            .spawn()
            .map_err(|e| RunError::Target(format!("starting worker {i}: {e}")))?;
        children.push((i, child, log));
    }
    eprintln!(
        "workers: {} shards of run {run_id} start at {start}; logs in {}",
        w.count,
        dir.display()
    );
    if let (Some(first), Some(Some(last))) = (plan.tester.metrics_listen, live_addrs.last()) {
        eprintln!("workers: live metrics on {first} to {last}, one port per worker");
    }
    let mut failed = Vec::new();
    let mut running = children;
    let mut forwarded = false;
    while !running.is_empty() {
        // A signal to this process alone (a SIGTERM from a supervisor) goes on to the workers,
        // which then stop, drain and write their results like any interrupted run.
        if let (Some(sig), false) = (interrupt::requested(), forwarded) {
            forwarded = true;
            for (_, child, _) in &running {
                // SAFETY: kill(2) on the pid of a child not yet reaped by this process.
                unsafe { libc::kill(child.id() as libc::pid_t, sig) };
            }
        }
        let mut still = Vec::new();
        for (i, mut child, log) in running {
            let status = child
                .try_wait()
                .map_err(|e| RunError::Target(format!("waiting for worker {i}: {e}")))?;
            let Some(status) = status else {
                still.push((i, child, log));
                continue;
            };
            match status.code() {
                Some(0) | Some(1) => eprintln!("workers: shard {i} done"),
                _ => {
                    let text = std::fs::read_to_string(&log).unwrap_or_default();
                    let tail: Vec<&str> = text.lines().rev().take(5).collect();
                    failed.push(format!(
                        "shard {i} ({status}): {}",
                        tail.into_iter().rev().collect::<Vec<_>>().join(" | ")
                    ));
                }
            }
        }
        running = still;
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    if let Some(mut s) = server {
        s.stop();
    }
    if !failed.is_empty() && interrupt::requested().is_none() {
        return Err(RunError::Setup(format!("workers failed: {}", failed.join("; "))));
    }
    let mut out = merge(std::slice::from_ref(&dir), None).map_err(|e| match e {
        MergeError::Write(e) => e,
        other => RunError::Setup(format!("merging the workers: {other}")),
    })?;
    out.interrupted = interrupt::requested();
    Ok(out)
}

/// A TOML string literal.
fn toml_str(s: &str) -> String {
    toml::Value::String(s.to_string()).to_string()
}
