//! The validated plan: typed values with every default filled in, and the checks that get
//! a raw profile there.

use std::collections::HashMap;
use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::slo::SloCheck;
use crate::server::ratelimit::RateLimit;

/// How many users join, and when.
#[derive(Debug, Clone, PartialEq)]
pub enum Ramp {
    /// Connect users at this rate, then hold for the run's duration.
    Rate {
        /// New users per second.
        users_per_sec: f64,
    },
    /// Grow to each step's user count (at `users_per_sec`), then hold it; the steps are the
    /// steady phase.
    Steps {
        /// Connection rate while growing.
        users_per_sec: f64,
        /// The steps, in order.
        steps: Vec<Step>,
    },
}

/// One step of a step plan.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Step {
    /// Users connected during this step.
    pub users: u64,
    /// How long the step holds once reached.
    pub hold: Duration,
}

/// Where the embedded server runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum EmbeddedMode {
    /// In this process when the connections fit the file limit with the server's own
    /// sockets, else a child process.
    Auto,
    /// In this process (two sockets per connection count against one file limit).
    InProcess,
    /// A child `ackstorm serve` process on loopback.
    ChildProcess,
}

/// How users log in to an external server.
#[derive(Debug, Clone, PartialEq)]
pub enum Auth {
    /// The server secret: tokens are computed (native protocol).
    Secret(String),
    /// Tokens per user (native) or passwords per user (XMPP), read from a file of
    /// `user token` lines.
    Tokens(HashMap<String, String>),
    /// One password for every user (XMPP).
    Password(String),
}

/// The protocol the tester speaks to an external server.
#[derive(Debug, Clone, PartialEq)]
pub enum Protocol {
    /// The receipts protocol (docs/protocol.md) over WebSocket.
    Native,
    /// XMPP over TCP (`xmpp://`) or WebSocket (RFC 7395).
    Xmpp(XmppOptions),
}

/// XMPP specifics of a target.
#[derive(Debug, Clone, PartialEq)]
pub struct XmppOptions {
    /// The server's domain: users are `user@domain`.
    pub domain: String,
    /// The multi-user chat service: groups are rooms `group@muc_domain`.
    pub muc_domain: String,
    /// STARTTLS over TCP.
    pub starttls: StartTls,
    /// The SASL mechanism: `Some(true)` PLAIN, `Some(false)` SCRAM-SHA-1, `None` SCRAM-SHA-1
    /// when offered, else PLAIN.
    pub sasl_plain: Option<bool>,
    /// Use XEP-0198 where offered (its `<a/>` is the server ack of a send).
    pub stream_management: bool,
}

/// When an `xmpp://` connection upgrades to TLS.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StartTls {
    /// Never (plain TCP; for servers on a trusted network).
    Never,
    /// When the server offers it.
    IfOffered,
    /// Always: a server that does not offer it is refused.
    Required,
}

impl StartTls {
    /// Name in profiles.
    pub fn as_str(self) -> &'static str {
        match self {
            StartTls::Never => "never",
            StartTls::IfOffered => "if_offered",
            StartTls::Required => "required",
        }
    }
}

/// The server measured.
#[derive(Debug, Clone, PartialEq)]
pub enum Target {
    /// The reference server, started by the run on loopback.
    Embedded {
        /// In this process or a child.
        mode: EmbeddedMode,
        /// Server worker threads (default: one per core).
        threads: Option<usize>,
        /// Server options.
        server: ServerOptions,
    },
    /// Any server on any host, speaking the receipts protocol or XMPP.
    External {
        /// `ws://` or `wss://HOST[:PORT]/PATH`.
        url: String,
        /// Login credentials.
        auth: Auth,
        /// `wss://`: trust only the CA certificates in this PEM file instead of the system's.
        ca_file: Option<PathBuf>,
        /// `wss://`: do not verify the server's certificate (warned about, and recorded).
        insecure: bool,
        /// The protocol spoken.
        protocol: Protocol,
    },
}

/// Options the run gives the embedded server (group receipt options live in [`Groups`]).
#[derive(Debug, Clone, PartialEq)]
pub struct ServerOptions {
    /// Per-connection token bucket; `None` turns it off.
    pub rate_limit: Option<RateLimit>,
    /// Offline 1:1 messages per user.
    pub offline_single: usize,
    /// Offline group messages per user.
    pub offline_group: usize,
    /// Group size limit.
    pub group_max_members: usize,
    /// Message records kept for receipts, at most (receipts for older ones get not_found).
    pub messages: usize,
    /// Estimated bytes of message records kept, at most.
    pub message_bytes: usize,
    /// A deliberately slowed build: delay before each frame, ms.
    pub delay_ms: u64,
    /// A deliberately slowed build: frames per second the server handles in all.
    pub throttle: Option<f64>,
}

/// Who the simulated users are.
#[derive(Debug, Clone, PartialEq)]
pub struct Population {
    /// Users.
    pub users: u64,
    /// Connections per user (devices `d0`, `d1`, ...).
    pub devices_per_user: u64,
    /// Share of users whose devices send delivery receipts.
    pub delivery_share: f64,
    /// One-to-one contacts per user.
    pub contacts: u64,
    /// User ids are `<prefix><index>`.
    pub user_prefix: String,
    /// Who talks with whom when the run is split into shards.
    pub partition: Partition,
}

/// How a sharded run's population is split (`population.partition`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Partition {
    /// Anyone talks with anyone: shards of one run share one server, and a message sent in
    /// one shard is received in another.
    None,
    /// Users talk only within their shard (contacts and groups drawn from it), so each shard
    /// can have a server of its own (`run --workers` with the embedded server).
    Shard,
}

impl Partition {
    /// Its profile spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Partition::None => "none",
            Partition::Shard => "shard",
        }
    }
}

/// Groups and the server's group-receipt options.
#[derive(Debug, Clone, PartialEq)]
pub struct Groups {
    /// Number of groups.
    pub count: u64,
    /// Smallest group (owner included).
    pub size_min: u64,
    /// Largest group (owner included).
    pub size_max: u64,
    /// Admins per group besides the owner.
    pub admins: u64,
    /// Share of owner/admin group messages sent with `allowGroupAck`.
    pub allow_group_ack_share: f64,
    /// Server: group read receipts on.
    pub server_read_ack: bool,
    /// Server: every member may ask for receipts.
    pub server_ack_anyone: bool,
    /// Server: receipts size limit.
    pub server_ack_max_members: u64,
    /// Share (0..1) of the sender's receipt-carrying group messages whose readers it queries
    /// (`getGroupMsgReadUser`), as a client showing "read by" does.
    pub read_users_share: f64,
    /// How long after the first read receipt of such a message the sender queries its readers.
    pub read_users_delay: Duration,
    /// Page limit of each readers query (1..=500).
    pub read_users_page: u32,
}

/// How contacts are chosen for a one-to-one message.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum ContactChoice {
    /// Every contact equally.
    Uniform,
    /// Favourites first: contact k with weight 1/k^s.
    Zipf(f64),
}

/// Message traffic (open model: Poisson arrivals per user).
#[derive(Debug, Clone, PartialEq)]
pub struct Traffic {
    /// One-to-one messages per user per minute.
    pub one_to_one_per_min: f64,
    /// Group messages per minute sent by each user who is in at least one group.
    pub group_per_min: f64,
    /// Message body size, bytes.
    pub message_bytes: usize,
    /// Conversation choice for one-to-one messages.
    pub contact_choice: ContactChoice,
    /// `None`: each user starts sending at its own login. `Some(d)`: nobody sends until `d`
    /// after the last user's planned login (a rate ramp only), so every user is in (and in
    /// its rooms) before the first message; the steady phase starts then.
    pub warmup: Option<Duration>,
    /// `None`: the rates are constant. `Some`: both rates are multiplied by the curve's
    /// factor at each moment of the run clock (a day's profile in hourly factors), arrivals
    /// drawn as a non-homogeneous Poisson process.
    pub curve: Option<super::Curve>,
}

/// A delay distribution.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Delay {
    /// Always the same.
    Fixed(Duration),
    /// Exponential with this mean.
    Exp(Duration),
    /// Log-normal through this median and 99th percentile.
    LogNormal {
        /// Median.
        median: Duration,
        /// 99th percentile.
        p99: Duration,
    },
}

/// Online/offline alternation.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Churn {
    /// Mean online period.
    pub online: Duration,
    /// Mean offline period.
    pub offline: Duration,
}

/// How users read.
#[derive(Debug, Clone, PartialEq)]
pub struct Reading {
    /// Share of users online at the start (and, with churn, on average).
    pub online_share: f64,
    /// Every conversation counts as open: messages are seen as they arrive (capacity runs).
    pub always_open: bool,
    /// Mean time with a conversation open.
    pub open: Duration,
    /// Mean time with no conversation open.
    pub away: Duration,
    /// Probability that a user reads a given message it sees.
    pub read_probability: f64,
    /// Time from seeing a message to reading it.
    pub read_delay: Delay,
    /// Online/offline alternation, if any.
    pub churn: Option<Churn>,
}

/// Ack strategies of PROTOCOL.md's receipts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Strategy {
    /// One read ack per message read.
    PerMessage,
    /// A channel ack when opening a conversation with unacknowledged messages; nothing while open.
    Channel,
    /// Channel ack on opening; per-message read acks while open (the SDK's advice).
    Hybrid,
    /// Channel ack on opening; reads while open coalesced into one channel ack after a quiet window.
    Debounced,
}

impl Strategy {
    /// Every strategy, baseline first.
    pub const ALL: [Strategy; 4] = [
        Strategy::PerMessage,
        Strategy::Channel,
        Strategy::Hybrid,
        Strategy::Debounced,
    ];

    /// Profile spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Strategy::PerMessage => "per_message",
            Strategy::Channel => "channel",
            Strategy::Hybrid => "hybrid",
            Strategy::Debounced => "debounced",
        }
    }

    /// Parses the profile spelling.
    pub fn parse(s: &str) -> Option<Strategy> {
        Strategy::ALL.into_iter().find(|st| st.as_str() == s)
    }
}

/// Acks.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Acks {
    /// The strategy.
    pub strategy: Strategy,
    /// Quiet window of `debounced`.
    pub debounce: Duration,
}

/// The load generator itself.
#[derive(Debug, Clone, PartialEq)]
pub struct Tester {
    /// Actix arbiters (threads) running user actors; default one per core.
    pub arbiters: usize,
    /// Source addresses for connections (127.0.0.x), spread round-robin; more are needed
    /// beyond ~28,000 connections per address.
    pub source_ips: Vec<Ipv4Addr>,
    /// Connect + login timeout.
    pub connect_timeout: Duration,
    /// Live progress line on the terminal.
    pub progress: bool,
    /// How long setup waits (`createGroup` replies and the like) before the run gives up.
    pub setup_timeout: Duration,
    /// How long the close handshakes at the end may take before sockets are dropped.
    pub close_timeout: Duration,
    /// Per-message records older than this are settled and dropped (memory stays flat on
    /// long runs); at least `run.drain`, so every record outlives the drain.
    pub audit_horizon: Duration,
    /// Serve live Prometheus metrics on this address while the run goes (`None`: not).
    pub metrics_listen: Option<std::net::SocketAddr>,
}

/// Reconnecting after a connection drops, as the SDKs do: exponential backoff with jitter,
/// sends queued meanwhile.
#[derive(Debug, Clone, PartialEq)]
pub struct Reconnect {
    /// Reconnect at all; when off, a dropped connection stays down for the rest of the run.
    pub enabled: bool,
    /// Backoff before the first attempt.
    pub initial: Duration,
    /// Backoffs grow up to this cap (at least `initial`).
    pub max: Duration,
    /// Each backoff is the previous one times this (>= 1).
    pub multiplier: f64,
    /// Share (0..1) of each backoff drawn at random, so that users dropped together do not
    /// come back together.
    pub jitter: f64,
    /// Sends queued while disconnected (sent after the reconnect); sends beyond it are counted
    /// `skipped_disconnected`.
    pub outbox: usize,
}

impl Default for Reconnect {
    /// The profile's defaults: 500 ms doubling to 10 s, half of each backoff random, 100 sends
    /// queued.
    fn default() -> Reconnect {
        Reconnect {
            enabled: true,
            initial: Duration::from_millis(500),
            max: Duration::from_secs(10),
            multiplier: 2.0,
            jitter: 0.5,
            outbox: 100,
        }
    }
}

/// When a fault strikes and how many it hits.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct FaultWindow {
    /// Start, from run start (before traffic ends).
    pub at: Duration,
    /// Each hit falls at random within `at..at + over` (zero: all at `at`); the window ends
    /// before traffic does.
    pub over: Duration,
    /// Connections (drops) or users (stalls) hit, at least 1.
    pub count: u64,
}

/// Users that stop reading their sockets for a while, then resume (a frozen app or a slow
/// client: the server's send buffers fill).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Stall {
    /// When, and how many users.
    pub window: FaultWindow,
    /// How long each stops reading (> 0).
    pub stall: Duration,
}

/// Faults injected during the run; part of the workload (and of its hash).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Faults {
    /// Connections reset by the tester (socket aborted, no close handshake).
    pub drop_connections: Vec<FaultWindow>,
    /// Users that stop reading their sockets, then resume.
    pub stall_readers: Vec<Stall>,
    /// Times (from run start) at which the embedded server, then a child process, is killed
    /// (`kill -9`) and restarted on the same port.
    pub server_restarts: Vec<Duration>,
}

impl Faults {
    /// No fault at all.
    pub fn is_empty(&self) -> bool {
        self.drop_connections.is_empty() && self.stall_readers.is_empty() && self.server_restarts.is_empty()
    }
}

/// `[model]`: the cost model of the server that `ackstorm simulate` runs the workload
/// against. `run` does not use it, and the plan does not read the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelSpec {
    /// The model file (TOML), as written: a relative path is relative to the current
    /// directory, as every path in a profile is (`target.token_file`, `target.ca_file`,
    /// `run.results_dir`).
    pub file: PathBuf,
}

/// A validated profile: what `ackstorm run` executes.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    /// Run name.
    pub name: String,
    /// Workload seed.
    pub seed: u64,
    /// How users join.
    pub ramp: Ramp,
    /// Steady phase (for steps: the sum of holds).
    pub duration: Duration,
    /// Wait after traffic stops before the audit.
    pub drain: Duration,
    /// Where result folders go.
    pub results_dir: PathBuf,
    /// The server.
    pub target: Target,
    /// A label of the server build, recorded in the results.
    pub label: Option<String>,
    /// Users.
    pub population: Population,
    /// Groups.
    pub groups: Groups,
    /// Traffic.
    pub traffic: Traffic,
    /// Reading behaviour.
    pub reading: Reading,
    /// Ack strategy.
    pub acks: Acks,
    /// SLO checks.
    pub slo: Vec<SloCheck>,
    /// Generator settings.
    pub tester: Tester,
    /// Reconnecting after a drop.
    pub reconnect: Reconnect,
    /// Faults injected during the run.
    pub faults: Faults,
    /// The server cost model for `ackstorm simulate` (`None`: none given); not part of the
    /// workload, and ignored by `run`.
    pub model: Option<ModelSpec>,
    /// Things the profile asked for that the plan ignores, to tell the user.
    pub notes: Vec<String>,
    /// This process's part in the run (shards); not part of the workload.
    pub launch: super::Launch,
}

impl Plan {
    /// Users at the peak of the plan.
    pub fn peak_users(&self) -> u64 {
        match &self.ramp {
            Ramp::Rate { .. } => self.population.users,
            Ramp::Steps { steps, .. } => steps.iter().map(|s| s.users).max().unwrap_or(0),
        }
    }

    /// Users at the peak of the plan in this process's shard (all of them when unsharded).
    pub fn local_peak_users(&self) -> u64 {
        let peak = self.peak_users();
        match self.launch.shard {
            Some(s) => (peak + u64::from(s.count) - 1 - u64::from(s.index)) / u64::from(s.count),
            None => peak,
        }
    }

    /// When traffic stops, from run start: after the ramp and the steady phase (for steps:
    /// growing to each step at the connection rate, then its hold). Saturates rather than
    /// panics on absurd values, since the checker asks before it has refused them.
    pub fn traffic_end(&self) -> Duration {
        let joining = |users: u64, users_per_sec: f64| {
            Duration::try_from_secs_f64(users as f64 / users_per_sec).unwrap_or(Duration::MAX)
        };
        match &self.ramp {
            Ramp::Rate { users_per_sec } => joining(self.population.users, *users_per_sec)
                .saturating_add(self.traffic.warmup.unwrap_or_default())
                .saturating_add(self.duration),
            Ramp::Steps { users_per_sec, steps } => {
                let mut joined = 0u64;
                let mut t = Duration::ZERO;
                for s in steps {
                    t = t
                        .saturating_add(joining(s.users.saturating_sub(joined), *users_per_sec))
                        .saturating_add(s.hold);
                    joined = joined.max(s.users);
                }
                t
            }
        }
    }

    /// When ramp-up ends (the steady phase starts).
    pub fn ramp_end(&self) -> Duration {
        self.traffic_end().saturating_sub(self.duration)
    }

    /// When sending may start, from run start: at the end of the ramp and its warm-up with
    /// `traffic.warmup`, else at once (each user from its own login).
    pub fn traffic_start(&self) -> Duration {
        match self.traffic.warmup {
            Some(_) => self.ramp_end(),
            None => Duration::ZERO,
        }
    }

    /// The mean factor of `traffic.curve` over the traffic window (from
    /// [`Plan::traffic_start`] to [`Plan::traffic_end`]); 1 without a curve.
    pub fn curve_mean(&self) -> f64 {
        self.traffic
            .curve
            .as_ref()
            .map_or(1.0, |c| c.mean(self.traffic_start(), self.traffic_end()))
    }

    /// Offered one-to-one and group messages per second across all users at the peak: the
    /// base rates times the curve's mean factor over the traffic window ([`Plan::curve_mean`];
    /// the collector sizes its tables from these, so a mean rather than the peak factor).
    pub fn offered_rates(&self) -> (f64, f64) {
        let users = self.peak_users() as f64;
        let share = self.reading.online_share;
        // Members are drawn at random: a user is in no group with probability
        // (1 - mean size / users) ^ groups.
        let mean_size = (self.groups.size_min + self.groups.size_max) as f64 / 2.0;
        let outside = (1.0 - (mean_size / self.population.users as f64).min(1.0)).powf(self.groups.count as f64);
        let in_groups = if self.groups.count == 0 {
            0.0
        } else {
            users * (1.0 - outside)
        };
        let curve = self.curve_mean();
        (
            users * share * self.traffic.one_to_one_per_min * curve / 60.0,
            in_groups * share * self.traffic.group_per_min * curve / 60.0,
        )
    }
}
