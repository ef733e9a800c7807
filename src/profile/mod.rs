//! Profiles: a TOML file (plus command-line overrides) checked into a typed [`Plan`].
//!
//! Two stages, as in ripgrep's flags: [`raw`] mirrors the file (read by `lenient`, which
//! gathers every unknown key and wrong type instead of stopping at the first), and `check`
//! validates it into a typed [`plan`] with every default filled. Precedence: command
//! line (`--set key=value` and its shorthands) > profile file > defaults. Every error names the
//! file, the key and what is wrong; all problems are reported at once. The effective plan is
//! written back as TOML ([`effective_toml`]) so a run records exactly what it executed.

mod check;
mod check_faults;
mod check_live;
mod check_target;
pub mod curve;
mod launch;
mod lenient;
pub mod plan;
pub mod raw;
pub mod slo;

use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};
use thiserror::Error;

pub use curve::Curve;
pub use launch::{Launch, Shard};
pub use plan::*;
pub use raw::RawProfile;
pub use slo::SloCheck;

/// Why a profile could not become a plan.
#[derive(Debug, Error)]
pub enum ProfileError {
    /// The file could not be read.
    #[error("{file}: cannot read: {source}")]
    Read {
        /// The profile path.
        file: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// Not TOML: the file cannot be read at all, so this is the only error.
    #[error("{file}: {message}")]
    Toml {
        /// The profile path.
        file: PathBuf,
        /// The TOML parser's message (with line and key).
        message: String,
    },
    /// Unknown keys, values of the wrong type and values the plan cannot use: every one.
    #[error("{file}: {} problem{}:{}", problems.len(), if problems.len() == 1 { "" } else { "s" }, problems.iter().map(|(k, m)| format!("\n  - {k}: {m}")).collect::<String>())]
    Invalid {
        /// The profile path.
        file: PathBuf,
        /// (key, what is wrong), every problem found.
        problems: Vec<(String, String)>,
    },
    /// A `--set key=value` that does not fit the profile.
    #[error("--set {arg}: {message}")]
    Override {
        /// The override as given.
        arg: String,
        /// What is wrong.
        message: String,
    },
}

/// Sets `key.path = value` in a TOML table; `value` is read as TOML (`5000`, `true`, `"x"`,
/// `["a"]`), or as a bare string when it is not TOML (`30s`, `hybrid`).
pub fn apply_override(table: &mut toml::Table, arg: &str) -> Result<(), ProfileError> {
    let err = |message: &str| ProfileError::Override {
        arg: arg.to_string(),
        message: message.to_string(),
    };
    let (path, value) = arg
        .split_once('=')
        .ok_or_else(|| err("expected key=value, e.g. population.users=5000"))?;
    let value = match format!("v = {}", value.trim()).parse::<toml::Table>() {
        Ok(mut t) => t.remove("v").expect("parsed a table with key v"),
        Err(_) => toml::Value::String(value.trim().to_string()),
    };
    let keys: Vec<&str> = path.trim().split('.').collect();
    if keys.iter().any(|k| k.is_empty()) {
        return Err(err("empty key"));
    }
    let mut cursor = table;
    for k in &keys[..keys.len() - 1] {
        let entry = cursor
            .entry(k.to_string())
            .or_insert_with(|| toml::Value::Table(toml::Table::new()));
        cursor = entry
            .as_table_mut()
            .ok_or_else(|| err(&format!("{k} is not a table")))?;
    }
    cursor.insert(keys[keys.len() - 1].to_string(), value);
    Ok(())
}

/// Parses profile text (already read from `file`) with overrides applied, and validates it.
///
/// Text that is not TOML is one error (nothing else can be read). Otherwise every unknown key,
/// every value of the wrong type and every invalid value comes back in one
/// [`ProfileError::Invalid`]; a problem with a key given by an override says so.
pub fn parse(file: &Path, text: &str, overrides: &[String]) -> Result<Plan, ProfileError> {
    let mut table: toml::Table = text.parse().map_err(|e: toml::de::Error| ProfileError::Toml {
        file: file.to_path_buf(),
        message: e.to_string(),
    })?;
    for o in overrides {
        apply_override(&mut table, o)?;
    }
    let read = lenient::read::<RawProfile>(&table);
    let mut checker = check::Checker {
        errors: Vec::new(),
        notes: Vec::new(),
        left_out: read.left_out,
    };
    let plan = read.raw.map(|raw| check::check(&raw, &mut checker));
    let mut problems = read.problems;
    problems.append(&mut checker.errors);
    match plan {
        Some(plan) if problems.is_empty() => Ok(plan),
        _ => {
            for (key, message) in &mut problems {
                if let Some(arg) = overrides.iter().rev().find(|o| {
                    let path = o.split_once('=').map_or(o.as_str(), |(p, _)| p.trim());
                    within(key, path)
                }) {
                    message.push_str(&format!(" (from the command line: {arg})"));
                }
            }
            Err(ProfileError::Invalid {
                file: file.to_path_buf(),
                problems,
            })
        }
    }
}

/// `key` is `path` or a key inside it (`a.b` is within `a`, `a.b[0].c` within `a.b`).
fn within(key: &str, path: &str) -> bool {
    key.strip_prefix(path)
        .is_some_and(|rest| rest.is_empty() || rest.starts_with('.') || rest.starts_with('['))
}

/// Reads and validates the profile at `path` with `overrides` (`key=value`) applied.
pub fn load(path: &Path, overrides: &[String]) -> Result<Plan, ProfileError> {
    let text = std::fs::read_to_string(path).map_err(|source| ProfileError::Read {
        file: path.to_path_buf(),
        source,
    })?;
    parse(path, &text, overrides)
}

fn secs(d: std::time::Duration) -> String {
    humantime::format_duration(d).to_string()
}

fn delay_raw(d: &Delay) -> raw::RawDelay {
    match d {
        Delay::Fixed(v) => raw::RawDelay {
            dist: Some("fixed".into()),
            value: Some(secs(*v)),
            ..Default::default()
        },
        Delay::Exp(m) => raw::RawDelay {
            dist: Some("exp".into()),
            mean: Some(secs(*m)),
            ..Default::default()
        },
        Delay::LogNormal { median, p99 } => raw::RawDelay {
            dist: Some("lognormal".into()),
            median: Some(secs(*median)),
            p99: Some(secs(*p99)),
            ..Default::default()
        },
    }
}

/// Faults as written: each list only when it has entries.
fn faults_raw(f: &Faults) -> raw::RawFaults {
    fn some<T>(v: Vec<T>) -> Option<Vec<T>> {
        (!v.is_empty()).then_some(v)
    }
    let window = |w: &FaultWindow| raw::RawFaultWindow {
        at: Some(secs(w.at)),
        over: Some(secs(w.over)),
        count: Some(w.count),
    };
    raw::RawFaults {
        drop_connections: some(f.drop_connections.iter().map(window).collect()),
        stall_readers: some(
            f.stall_readers
                .iter()
                .map(|s| {
                    let w = window(&s.window);
                    raw::RawStall {
                        at: w.at,
                        over: w.over,
                        count: w.count,
                        stall: Some(secs(s.stall)),
                    }
                })
                .collect(),
        ),
        server_restarts: some(
            f.server_restarts
                .iter()
                .map(|at| raw::RawRestart { at: Some(secs(*at)) })
                .collect(),
        ),
    }
}

/// The plan written back as a complete profile (every default explicit). Secrets and token
/// files are left out: results folders get shared.
pub fn effective_toml(p: &Plan) -> String {
    use raw::*;
    let (users_per_sec, steps) = match &p.ramp {
        Ramp::Rate { users_per_sec } => (*users_per_sec, None),
        Ramp::Steps { users_per_sec, steps } => (
            *users_per_sec,
            Some(
                steps
                    .iter()
                    .map(|s| RawStep {
                        users: Some(s.users),
                        hold: Some(secs(s.hold)),
                    })
                    .collect(),
            ),
        ),
    };
    let target = match &p.target {
        Target::Embedded { mode, threads, server } => RawTarget {
            embedded: Some(
                serde_json::to_value(mode)
                    .ok()
                    .and_then(|v| v.as_str().map(String::from))
                    .unwrap_or_default(),
            ),
            server_threads: *threads,
            label: p.label.clone(),
            server: Some(RawServer {
                rate_limit: Some(server.rate_limit.map_or(0.0, |r| r.per_second)),
                rate_burst: server.rate_limit.map(|r| r.burst),
                offline_single: Some(server.offline_single),
                offline_group: Some(server.offline_group),
                group_max_members: Some(server.group_max_members),
                messages: Some(server.messages),
                message_bytes: Some(server.message_bytes),
                delay_ms: Some(server.delay_ms),
                throttle: server.throttle,
            }),
            ..Default::default()
        },
        Target::External {
            url,
            ca_file,
            insecure,
            protocol,
            ..
        } => RawTarget {
            protocol: match protocol {
                Protocol::Native => None,
                Protocol::Xmpp(_) => Some("xmpp".to_string()),
            },
            // Credentials are not written back.
            xmpp: match protocol {
                Protocol::Native => None,
                Protocol::Xmpp(x) => Some(RawXmpp {
                    domain: Some(x.domain.clone()),
                    muc_domain: Some(x.muc_domain.clone()),
                    password: None,
                    starttls: Some(x.starttls.as_str().to_string()),
                    sasl: x
                        .sasl_plain
                        .map(|plain| if plain { "plain" } else { "scram-sha-1" }.to_string()),
                    stream_management: Some(x.stream_management),
                }),
            },
            url: Some(url.clone()),
            ca_file: ca_file.as_ref().map(|p| p.display().to_string()),
            insecure: insecure.then_some(true),
            label: p.label.clone(),
            ..Default::default()
        },
    };
    let raw = RawProfile {
        run: RawRun {
            name: Some(p.name.clone()),
            duration: steps.is_none().then(|| secs(p.duration)),
            drain: Some(secs(p.drain)),
            seed: Some(p.seed),
            ramp: Some(RawRamp {
                users_per_sec: Some(users_per_sec),
                steps,
            }),
            results_dir: Some(p.results_dir.display().to_string()),
        },
        target,
        population: RawPopulation {
            users: Some(p.population.users),
            devices_per_user: Some(p.population.devices_per_user),
            delivery_share: Some(p.population.delivery_share),
            contacts: Some(p.population.contacts),
            user_prefix: Some(p.population.user_prefix.clone()),
            partition: Some(p.population.partition.as_str().to_string()),
        },
        groups: RawGroups {
            count: Some(p.groups.count),
            size_min: Some(p.groups.size_min),
            size_max: Some(p.groups.size_max),
            admins: Some(p.groups.admins),
            allow_group_ack_share: Some(p.groups.allow_group_ack_share),
            server_read_ack: Some(p.groups.server_read_ack),
            server_ack_anyone: Some(p.groups.server_ack_anyone),
            server_ack_max_members: Some(p.groups.server_ack_max_members),
            read_users_share: Some(p.groups.read_users_share),
            read_users_delay: Some(secs(p.groups.read_users_delay)),
            read_users_page: Some(p.groups.read_users_page),
        },
        traffic: RawTraffic {
            one_to_one_per_min: Some(p.traffic.one_to_one_per_min),
            group_per_min: Some(p.traffic.group_per_min),
            message_bytes: Some(p.traffic.message_bytes),
            contact_choice: Some(match p.traffic.contact_choice {
                ContactChoice::Uniform => "uniform".into(),
                ContactChoice::Zipf(_) => "zipf".into(),
            }),
            zipf_exponent: match p.traffic.contact_choice {
                ContactChoice::Zipf(s) => Some(s),
                ContactChoice::Uniform => None,
            },
            warmup: p.traffic.warmup.map(secs),
            curve: p.traffic.curve.as_ref().map(|c| c.factors().to_vec()),
            curve_step: p.traffic.curve.as_ref().map(|c| secs(c.step())),
        },
        reading: RawReading {
            online_share: Some(p.reading.online_share),
            always_open: Some(p.reading.always_open),
            open: Some(secs(p.reading.open)),
            away: Some(secs(p.reading.away)),
            read_probability: Some(p.reading.read_probability),
            read_delay: Some(delay_raw(&p.reading.read_delay)),
            churn: p.reading.churn.map(|c| RawChurn {
                online: Some(secs(c.online)),
                offline: Some(secs(c.offline)),
            }),
        },
        acks: RawAcks {
            strategy: Some(p.acks.strategy.as_str().into()),
            debounce: Some(secs(p.acks.debounce)),
        },
        slo: RawSlo {
            checks: Some(p.slo.iter().map(|c| c.text.clone()).collect()),
        },
        tester: RawTester {
            arbiters: Some(p.tester.arbiters),
            source_ips: Some(p.tester.source_ips.iter().map(|ip| ip.to_string()).collect()),
            connect_timeout: Some(secs(p.tester.connect_timeout)),
            progress: Some(p.tester.progress),
            setup_timeout: Some(secs(p.tester.setup_timeout)),
            close_timeout: Some(secs(p.tester.close_timeout)),
            audit_horizon: Some(secs(p.tester.audit_horizon)),
            metrics_listen: p.tester.metrics_listen.map(|a| a.to_string()),
        },
        reconnect: RawReconnect {
            enabled: Some(p.reconnect.enabled),
            initial: Some(secs(p.reconnect.initial)),
            max: Some(secs(p.reconnect.max)),
            multiplier: Some(p.reconnect.multiplier),
            jitter: Some(p.reconnect.jitter),
            outbox: Some(p.reconnect.outbox),
        },
        faults: faults_raw(&p.faults),
        model: p.model.as_ref().map(|m| RawModel {
            file: Some(m.file.display().to_string()),
        }),
    };
    toml::to_string(&raw).expect("the raw profile always serializes")
}

/// Short hex hash of the **workload** of a plan: everything that decides what the simulated
/// users do (users, groups, traffic and its curve, reading, acks, reconnects, faults, seed,
/// durations), and not where they do it (target, server options, labels, the server model of
/// a simulation), what is checked (SLOs) or where results go. Two runs of different server builds with the same workload have the same hash.
pub fn workload_hash(plan: &Plan) -> String {
    let mut p = plan.clone();
    p.name = String::new();
    p.results_dir = std::path::PathBuf::from("results");
    p.target = Target::Embedded {
        mode: EmbeddedMode::Auto,
        threads: None,
        server: ServerOptions {
            rate_limit: None,
            offline_single: 0,
            offline_group: 0,
            group_max_members: 0,
            messages: 0,
            message_bytes: 0,
            delay_ms: 0,
            throttle: None,
        },
    };
    p.label = None;
    p.slo.clear();
    p.tester.progress = true;
    // Where connections come from is not the workload (`run --workers` gives each its own).
    p.tester.source_ips.clear();
    // Nor where live metrics are served.
    p.tester.metrics_listen = None;
    // Nor the server model a simulation uses (the workload is the same).
    p.model = None;
    p.notes.clear();
    hex::encode(&Sha256::digest(effective_toml(&p).as_bytes())[..8])
}

#[cfg(test)]
#[path = "tests.rs"]
mod tests;

#[cfg(test)]
#[path = "tests_target.rs"]
mod tests_target;

#[cfg(test)]
#[path = "tests_curve_model.rs"]
mod tests_curve_model;

#[cfg(test)]
#[path = "tests_faults.rs"]
mod tests_faults;
