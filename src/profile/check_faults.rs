//! The `[faults]` tables checked into the plan: every fault inside the run it strikes, counts
//! within the population, restarts only of an embedded server (then a child process).

use std::time::Duration;

use super::check::Checker;
use super::plan::*;
use super::raw::*;
use super::secs;

/// The faults, checked against the run they strike; restarts make the embedded server a
/// child process (`plan.target`).
pub(super) fn faults(raw: &RawFaults, plan: &mut Plan, ramp_ok: bool, c: &mut Checker) -> Faults {
    let end = ramp_ok.then(|| plan.traffic_end());
    let (users, devices) = (plan.peak_users(), plan.population.devices_per_user);
    let connections = (
        users.saturating_mul(devices),
        format!("the connections at peak ({users} users x {devices} devices)"),
    );
    let peak_users = (users, format!("the users at peak ({users})"));
    let drop_connections = raw
        .drop_connections
        .iter()
        .flatten()
        .enumerate()
        .map(|(i, w)| {
            let key = format!("faults.drop_connections[{i}]");
            window(c, &key, (w.at.as_ref(), w.over.as_ref(), w.count), end, &connections)
        })
        .collect();
    let stall_readers = raw
        .stall_readers
        .iter()
        .flatten()
        .enumerate()
        .map(|(i, s)| {
            let key = format!("faults.stall_readers[{i}]");
            let window = window(c, &key, (s.at.as_ref(), s.over.as_ref(), s.count), end, &peak_users);
            let key = format!("{key}.stall");
            if s.stall.is_none() {
                c.fail(&key, "missing: how long each user stops reading, e.g. \"5s\"");
            }
            let stall = c.duration(&key, s.stall.as_ref(), Duration::ZERO);
            if s.stall.is_some() && stall.is_zero() {
                c.fail(&key, "must be longer than 0s");
            }
            Stall { window, stall }
        })
        .collect();
    let server_restarts: Vec<Duration> = raw
        .server_restarts
        .iter()
        .flatten()
        .enumerate()
        .map(|(i, r)| at(c, &format!("faults.server_restarts[{i}].at"), r.at.as_ref(), end))
        .collect();
    if !server_restarts.is_empty() {
        match &mut plan.target {
            Target::External { .. } => c.fail(
                "faults.server_restarts",
                "needs the embedded server: the tester cannot restart an external one (target.url)",
            ),
            Target::Embedded {
                mode: EmbeddedMode::InProcess,
                ..
            } => c.fail(
                "faults.server_restarts",
                "needs the embedded server in a child process (target.embedded = \"in-process\" cannot be killed)",
            ),
            Target::Embedded { mode, .. } => {
                *mode = EmbeddedMode::ChildProcess;
                c.note("faults.server_restarts: the embedded server runs as a child process, so that it can be killed and restarted on its port");
            }
        }
    }
    Faults {
        drop_connections,
        stall_readers,
        server_restarts,
    }
}

/// A required fault start at `key`, before traffic ends (`end`, when known).
fn at(c: &mut Checker, key: &str, raw: Option<&String>, end: Option<Duration>) -> Duration {
    if raw.is_none() {
        c.fail(key, "missing: when the fault strikes, from run start, e.g. \"10s\"");
        return Duration::ZERO;
    }
    let at = c.duration(key, raw, Duration::ZERO);
    if let Some(end) = end
        && at >= end
    {
        c.fail(
            key,
            format!(
                "{} is not before traffic ends ({}): faults strike while traffic runs",
                secs(at),
                secs(end)
            ),
        );
    }
    at
}

/// A fault window at `key` from its raw `(at, over, count)`: within traffic (`end`), hitting
/// between 1 and `max.0` (described by `max.1`).
fn window(
    c: &mut Checker,
    key: &str,
    (at_raw, over_raw, count): (Option<&String>, Option<&String>, Option<u64>),
    end: Option<Duration>,
    max: &(u64, String),
) -> FaultWindow {
    let at = at(c, &format!("{key}.at"), at_raw, end);
    let over = c.duration(&format!("{key}.over"), over_raw, Duration::ZERO);
    if let Some(end) = end
        && at < end
        && at.saturating_add(over) > end
    {
        c.fail(
            &format!("{key}.over"),
            format!(
                "the window ends at {}, after traffic ends ({})",
                secs(at.saturating_add(over)),
                secs(end)
            ),
        );
    }
    let count = match count {
        None => {
            c.fail(
                &format!("{key}.count"),
                format!("missing: how many it hits, at most {}", max.1),
            );
            0
        }
        Some(n) if n == 0 || n > max.0 => {
            c.fail(&format!("{key}.count"), format!("{n} must be between 1 and {}", max.1));
            n
        }
        Some(n) => n,
    };
    FaultWindow { at, over, count }
}
