//! Validation: a raw profile checked key by key into a [`Plan`], collecting every problem
//! with the key it belongs to.

use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::time::Duration;

use super::check_faults;
use super::check_target;
use super::curve::Curve;
use super::plan::*;
use super::raw::*;
use super::secs;
use super::slo::SloCheck;

pub(super) use crate::server::bounds as server_bounds;

/// Collects validation failures as `(key, message)`.
pub(super) struct Checker {
    pub(super) errors: Vec<(String, String)>,
    pub(super) notes: Vec<String>,
    /// Keys left out of the raw profile for a wrong type, already reported: what follows
    /// from their absence (a missing required key, a default) is not reported again.
    pub(super) left_out: Vec<String>,
}

impl Checker {
    pub(super) fn note(&mut self, message: &str) {
        self.notes.push(message.to_string());
    }

    pub(super) fn fail(&mut self, key: &str, message: impl Into<String>) {
        if !self.left_out.iter().any(|l| super::within(key, l)) {
            self.errors.push((key.to_string(), message.into()));
        }
    }

    pub(super) fn duration(&mut self, key: &str, v: Option<&String>, default: Duration) -> Duration {
        match v {
            None => default,
            Some(text) => match humantime::parse_duration(text) {
                Ok(d) => d,
                Err(e) => {
                    self.fail(
                        key,
                        format!("{text:?} is not a duration like \"30s\" or \"250ms\" ({e})"),
                    );
                    default
                }
            },
        }
    }

    pub(super) fn share(&mut self, key: &str, v: Option<f64>, default: f64) -> f64 {
        let v = v.unwrap_or(default);
        if !(0.0..=1.0).contains(&v) {
            self.fail(key, format!("{v} is not a share between 0 and 1"));
        }
        v
    }

    pub(super) fn positive(&mut self, key: &str, v: f64) -> f64 {
        if !(v.is_finite() && v >= 0.0) {
            self.fail(key, format!("{v} must be a number >= 0"));
        }
        v
    }

    /// A server rate (`rate_limit`, `throttle`): `None` for absent or 0 (off).
    pub(super) fn server_rate(&mut self, key: &str, v: Option<f64>) -> Option<f64> {
        let v = v.filter(|v| *v != 0.0)?;
        if server_bounds::RATE.contains(&v) {
            return Some(v);
        }
        let (lo, hi) = (server_bounds::RATE.start(), server_bounds::RATE.end());
        self.fail(
            key,
            format!("{v:e} must be 0 (off) or a rate between {lo} and {hi:e} frames per second"),
        );
        None
    }

    /// A server count within `range`, or `default` when absent.
    pub(super) fn server_count<T>(
        &mut self,
        key: &str,
        v: Option<T>,
        default: T,
        range: std::ops::RangeInclusive<u64>,
    ) -> T
    where
        T: Copy + TryInto<u64> + std::fmt::Display,
    {
        let Some(v) = v else { return default };
        if !v.try_into().is_ok_and(|n| range.contains(&n)) {
            self.fail(
                key,
                format!("{v} must be between {} and {}", range.start(), range.end()),
            );
            return default;
        }
        v
    }

    pub(super) fn at_least(&mut self, key: &str, v: u64, min: u64) -> u64 {
        if v < min {
            self.fail(key, format!("{v} must be at least {min}"));
        }
        v
    }

    pub(super) fn delay(&mut self, key: &str, raw: Option<&RawDelay>, default: Delay) -> Delay {
        let Some(raw) = raw else { return default };
        let keys = |d: &RawDelay| {
            [
                d.mean.is_some(),
                d.value.is_some(),
                d.median.is_some() || d.p99.is_some(),
            ]
        };
        let dist = raw.dist.as_deref().unwrap_or("exp");
        let given = keys(raw);
        let want = match dist {
            "fixed" => 1,
            "exp" => 0,
            "lognormal" => 2,
            other => {
                self.fail(
                    &format!("{key}.dist"),
                    format!("{other:?} is not one of \"exp\", \"fixed\", \"lognormal\""),
                );
                return default;
            }
        };
        for (i, name) in ["mean", "value", "median/p99"].iter().enumerate() {
            if given[i] && i != want {
                self.fail(key, format!("{name} does not apply to dist = {dist:?}"));
            }
        }
        let zero = Duration::ZERO;
        match dist {
            "fixed" => Delay::Fixed(self.duration(&format!("{key}.value"), raw.value.as_ref(), zero)),
            "lognormal" => {
                let median = self.duration(
                    &format!("{key}.median"),
                    raw.median.as_ref(),
                    Duration::from_millis(500),
                );
                let p99 = self.duration(&format!("{key}.p99"), raw.p99.as_ref(), median * 10);
                if p99 <= median || median.is_zero() {
                    self.fail(key, "lognormal needs 0 < median < p99");
                }
                Delay::LogNormal { median, p99 }
            }
            _ => Delay::Exp(self.duration(&format!("{key}.mean"), raw.mean.as_ref(), Duration::from_millis(800))),
        }
    }
}

/// `traffic.curve` and its `traffic.curve_step` (1h by default).
fn traffic_curve(tr: &RawTraffic, c: &mut Checker) -> Option<Curve> {
    let Some(factors) = &tr.curve else {
        if tr.curve_step.is_some() {
            c.note("traffic.curve_step has no effect without traffic.curve");
        }
        return None;
    };
    let step = c.duration("traffic.curve_step", tr.curve_step.as_ref(), Curve::DEFAULT_STEP);
    if step < Duration::from_micros(1) {
        c.fail("traffic.curve_step", "must be at least 1us");
        return None;
    }
    match Curve::new(factors.clone(), step) {
        Ok(curve) => Some(curve),
        Err((index, message)) => {
            let key = index.map_or("traffic.curve".to_string(), |i| format!("traffic.curve[{i}]"));
            c.fail(&key, message);
            None
        }
    }
}

/// `[model]`: a non-empty `file` (not read here).
fn model(raw: Option<&RawModel>, c: &mut Checker) -> Option<ModelSpec> {
    let raw = raw?;
    match raw.file.as_deref() {
        None => c.fail("model.file", "missing: the server cost model file, e.g. \"model.toml\""),
        Some(f) if f.trim().is_empty() => c.fail("model.file", "must not be empty"),
        Some(f) => return Some(ModelSpec { file: PathBuf::from(f) }),
    }
    None
}

/// Checks a raw profile; `errors` collects every problem (not just the first).
pub(super) fn check(raw: &RawProfile, c: &mut Checker) -> Plan {
    let r = &raw.run;
    let name = r.name.clone().unwrap_or_else(|| "run".to_string());
    if name.is_empty() || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b)) {
        c.fail(
            "run.name",
            format!("{name:?} must be non-empty letters, digits, '-', '_' or '.' (it names a folder)"),
        );
    }
    let users = c.at_least("population.users", raw.population.users.unwrap_or(0), 1);
    let ramp_raw = r.ramp.clone().unwrap_or_default();
    let users_per_sec = c.positive("run.ramp.users_per_sec", ramp_raw.users_per_sec.unwrap_or(1000.0));
    if users_per_sec == 0.0 {
        c.fail("run.ramp.users_per_sec", "must be above 0");
    }
    let (ramp, duration) = match &ramp_raw.steps {
        None => {
            if r.duration.is_none() {
                c.fail("run.duration", "missing: how long the steady phase lasts, e.g. \"30s\"");
            }
            (
                Ramp::Rate { users_per_sec },
                c.duration("run.duration", r.duration.as_ref(), Duration::ZERO),
            )
        }
        Some(raw_steps) => {
            if r.duration.is_some() {
                c.fail(
                    "run.duration",
                    "not allowed with run.ramp.steps: the steps' holds are the duration",
                );
            }
            if raw_steps.is_empty() {
                c.fail("run.ramp.steps", "needs at least one step");
            }
            let steps: Vec<Step> = raw_steps
                .iter()
                .enumerate()
                .map(|(i, s)| {
                    let key = format!("run.ramp.steps[{i}]");
                    let step_users = match s.users {
                        None => {
                            c.fail(&format!("{key}.users"), "missing: users connected during the step");
                            0
                        }
                        Some(n) if n == 0 || n > users => {
                            c.fail(
                                &format!("{key}.users"),
                                format!("{n} must be between 1 and population.users ({users})"),
                            );
                            n
                        }
                        Some(n) => n,
                    };
                    if s.hold.is_none() {
                        c.fail(&format!("{key}.hold"), "missing: how long the step holds, e.g. \"10s\"");
                    }
                    Step {
                        users: step_users,
                        hold: c.duration(&format!("{key}.hold"), s.hold.as_ref(), Duration::ZERO),
                    }
                })
                .collect();
            let given = raw_steps.iter().all(|s| s.users.is_some());
            if given && steps.windows(2).any(|w| w[1].users < w[0].users) {
                c.fail(
                    "run.ramp.steps",
                    "user counts must not decrease from one step to the next",
                );
            }
            let total = steps.iter().map(|s| s.hold).sum();
            (Ramp::Steps { users_per_sec, steps }, total)
        }
    };
    if duration.is_zero() && c.errors.is_empty() {
        c.fail("run.duration", "must be longer than 0s");
    }
    let drain = c.duration("run.drain", r.drain.as_ref(), Duration::from_secs(3));

    let target = check_target::target(&raw.target, c);

    let p = &raw.population;
    let population = Population {
        users,
        devices_per_user: c.at_least("population.devices_per_user", p.devices_per_user.unwrap_or(1), 1),
        delivery_share: c.share("population.delivery_share", p.delivery_share, 1.0),
        contacts: p.contacts.unwrap_or(8).min(users.saturating_sub(1)),
        user_prefix: p.user_prefix.clone().unwrap_or_else(|| "u".to_string()),
        partition: match p.partition.as_deref().unwrap_or("none") {
            "none" => Partition::None,
            "shard" => Partition::Shard,
            other => {
                c.fail(
                    "population.partition",
                    format!("{other:?} is not one of \"none\", \"shard\""),
                );
                Partition::None
            }
        },
    };
    if !crate::protocol::is_valid_id(&format!("{}{}", population.user_prefix, users)) {
        c.fail("population.user_prefix", "user ids must match [A-Za-z0-9_.-]{1,64}");
    }

    let g = &raw.groups;
    let count = g.count.unwrap_or(0);
    let size_min = g.size_min.unwrap_or(3.min(users));
    let size_max = g.size_max.unwrap_or(size_min.max(10).min(users));
    if count > 0 {
        if size_min < 2 || size_min > size_max {
            c.fail(
                "groups.size_min",
                format!("{size_min} must be at least 2 and at most groups.size_max ({size_max})"),
            );
        }
        if size_max > users {
            c.fail(
                "groups.size_max",
                format!("{size_max} is more than population.users ({users})"),
            );
        }
    }
    let groups = Groups {
        count,
        size_min,
        size_max,
        admins: g.admins.unwrap_or(1),
        allow_group_ack_share: c.share("groups.allow_group_ack_share", g.allow_group_ack_share, 0.5),
        server_read_ack: g.server_read_ack.unwrap_or(true),
        server_ack_anyone: g.server_ack_anyone.unwrap_or(false),
        server_ack_max_members: c.server_count(
            "groups.server_ack_max_members",
            g.server_ack_max_members,
            200,
            server_bounds::GROUP_MEMBERS,
        ),
        read_users_share: c.share("groups.read_users_share", g.read_users_share, 0.0),
        read_users_delay: c.duration(
            "groups.read_users_delay",
            g.read_users_delay.as_ref(),
            Duration::from_secs(2),
        ),
        read_users_page: g.read_users_page.unwrap_or(100),
    };
    if !(1..=500).contains(&groups.read_users_page) {
        c.fail(
            "groups.read_users_page",
            format!(
                "{} must be between 1 and 500 (the protocol's page limit)",
                groups.read_users_page
            ),
        );
    }
    if groups.read_users_share > 0.0 && (groups.count == 0 || groups.allow_group_ack_share == 0.0) {
        c.note("groups.read_users_share has no effect: no group message asks for read receipts");
    }

    let tr = &raw.traffic;
    let contact_choice = match tr.contact_choice.as_deref().unwrap_or("uniform") {
        "uniform" => ContactChoice::Uniform,
        "zipf" => ContactChoice::Zipf(c.positive("traffic.zipf_exponent", tr.zipf_exponent.unwrap_or(1.0))),
        other => {
            c.fail(
                "traffic.contact_choice",
                format!("{other:?} is not one of \"uniform\", \"zipf\""),
            );
            ContactChoice::Uniform
        }
    };
    let message_bytes = tr.message_bytes.unwrap_or(64);
    if !(16..=5 * 1024).contains(&message_bytes) {
        c.fail(
            "traffic.message_bytes",
            format!("{message_bytes} must be between 16 and 5120 (the protocol's msg limit)"),
        );
    }
    let traffic = Traffic {
        one_to_one_per_min: c.positive("traffic.one_to_one_per_min", tr.one_to_one_per_min.unwrap_or(2.0)),
        group_per_min: c.positive("traffic.group_per_min", tr.group_per_min.unwrap_or(0.5)),
        message_bytes,
        contact_choice,
        warmup: tr
            .warmup
            .as_ref()
            .map(|w| c.duration("traffic.warmup", Some(w), Duration::ZERO)),
        curve: traffic_curve(tr, c),
    };

    let rd = &raw.reading;
    let churn = rd.churn.as_ref().map(|ch| Churn {
        online: c.duration("reading.churn.online", ch.online.as_ref(), Duration::from_secs(60)),
        offline: c.duration("reading.churn.offline", ch.offline.as_ref(), Duration::from_secs(20)),
    });
    let reading = Reading {
        online_share: c.share("reading.online_share", rd.online_share, 1.0),
        always_open: rd.always_open.unwrap_or(false),
        open: c.duration("reading.open", rd.open.as_ref(), Duration::from_secs(20)),
        away: c.duration("reading.away", rd.away.as_ref(), Duration::from_secs(20)),
        read_probability: c.share("reading.read_probability", rd.read_probability, 0.9),
        read_delay: c.delay(
            "reading.read_delay",
            rd.read_delay.as_ref(),
            Delay::Exp(Duration::from_millis(800)),
        ),
        churn,
    };
    if reading.open.is_zero() {
        c.fail(
            "reading.open",
            "must be longer than 0s (use a long away time to keep conversations closed)",
        );
    }

    let a = &raw.acks;
    let s = a.strategy.as_deref().unwrap_or("hybrid");
    let strategy = Strategy::parse(s).unwrap_or_else(|| {
        c.fail(
            "acks.strategy",
            format!("{s:?} is not one of \"per_message\", \"channel\", \"hybrid\", \"debounced\""),
        );
        Strategy::Hybrid
    });
    let acks = Acks {
        strategy,
        debounce: c.duration("acks.debounce", a.debounce.as_ref(), Duration::from_secs(1)),
    };

    let slo = raw
        .slo
        .checks
        .clone()
        .unwrap_or_default()
        .iter()
        .enumerate()
        .filter_map(|(i, text)| match SloCheck::parse(text) {
            Ok(check) => Some(check),
            Err(e) => {
                c.fail(&format!("slo.checks[{i}]"), e);
                None
            }
        })
        .collect();

    let ts = &raw.tester;
    let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    let source_ips = match &ts.source_ips {
        None => Vec::new(),
        Some(list) => list
            .iter()
            .filter_map(|s| match s.parse::<Ipv4Addr>() {
                Ok(ip) if ip.is_loopback() => Some(ip),
                _ => {
                    c.fail(
                        "tester.source_ips",
                        format!("{s:?} is not a loopback IPv4 address (127.0.0.0/8)"),
                    );
                    None
                }
            })
            .collect(),
    };
    let tester = Tester {
        arbiters: ts.arbiters.unwrap_or(cores).max(1),
        source_ips,
        connect_timeout: c.duration(
            "tester.connect_timeout",
            ts.connect_timeout.as_ref(),
            Duration::from_secs(10),
        ),
        progress: ts.progress.unwrap_or(true),
        setup_timeout: c.duration(
            "tester.setup_timeout",
            ts.setup_timeout.as_ref(),
            Duration::from_secs(30),
        ),
        close_timeout: c.duration(
            "tester.close_timeout",
            ts.close_timeout.as_ref(),
            Duration::from_secs(2),
        ),
        audit_horizon: c.duration(
            "tester.audit_horizon",
            ts.audit_horizon.as_ref(),
            Duration::from_secs(60),
        ),
        metrics_listen: super::check_live::metrics_listen(c, ts.metrics_listen.as_deref()),
    };
    if tester.audit_horizon > crate::collector::MAX_HORIZON {
        c.fail(
            "tester.audit_horizon",
            format!(
                "{} is longer than {}: records are audited within an hour of their send",
                secs(tester.audit_horizon),
                secs(crate::collector::MAX_HORIZON)
            ),
        );
    }
    if tester.audit_horizon < drain {
        c.fail(
            "tester.audit_horizon",
            format!(
                "{} is shorter than run.drain ({}): a record must outlive the drain to be audited",
                secs(tester.audit_horizon),
                secs(drain)
            ),
        );
    }

    let rc = &raw.reconnect;
    let d = Reconnect::default();
    let reconnect = Reconnect {
        enabled: rc.enabled.unwrap_or(d.enabled),
        initial: c.duration("reconnect.initial", rc.initial.as_ref(), d.initial),
        max: c.duration("reconnect.max", rc.max.as_ref(), d.max),
        multiplier: rc.multiplier.unwrap_or(d.multiplier),
        jitter: c.share("reconnect.jitter", rc.jitter, d.jitter),
        outbox: rc.outbox.unwrap_or(d.outbox),
    };
    if !(reconnect.multiplier.is_finite() && reconnect.multiplier >= 1.0) {
        c.fail(
            "reconnect.multiplier",
            format!("{} must be a number >= 1 (backoffs never shrink)", reconnect.multiplier),
        );
    }
    if reconnect.initial > reconnect.max {
        c.fail(
            "reconnect.initial",
            format!(
                "{} is longer than reconnect.max ({})",
                secs(reconnect.initial),
                secs(reconnect.max)
            ),
        );
    }

    let mut plan = Plan {
        name,
        seed: r.seed.unwrap_or(1),
        ramp,
        duration,
        drain,
        results_dir: PathBuf::from(r.results_dir.clone().unwrap_or_else(|| "results".to_string())),
        target,
        label: raw.target.label.clone(),
        population,
        groups,
        traffic,
        reading,
        acks,
        slo,
        tester,
        reconnect,
        faults: Faults::default(),
        model: model(raw.model.as_ref(), c),
        notes: Vec::new(),
        launch: super::Launch::default(),
    };
    // Fault times are checked against the end of traffic, which needs a valid ramp.
    let ramp_ok = users_per_sec.is_finite() && users_per_sec > 0.0 && duration > Duration::ZERO;
    plan.faults = check_faults::faults(&raw.faults, &mut plan, ramp_ok, c);
    check_target::protocol_fit(&plan, c);
    if plan.traffic.warmup.is_some() && matches!(plan.ramp, Ramp::Steps { .. }) {
        c.fail(
            "traffic.warmup",
            "applies to a rate ramp (run.ramp.users_per_sec) only: with steps, traffic runs through them",
        );
    }
    plan.notes = std::mem::take(&mut c.notes);
    plan
}
