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
    /// The server secret: tokens are computed.
    Secret(String),
    /// Tokens per user, read from a file of `user token` lines.
    Tokens(HashMap<String, String>),
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
    /// Any server speaking PROTOCOL.md.
    External {
        /// `ws://HOST:PORT/ws`.
        url: String,
        /// Login credentials.
        auth: Auth,
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
    /// Things the profile asked for that the plan ignores, to tell the user.
    pub notes: Vec<String>,
}

impl Plan {
    /// Users at the peak of the plan.
    pub fn peak_users(&self) -> u64 {
        match &self.ramp {
            Ramp::Rate { .. } => self.population.users,
            Ramp::Steps { steps, .. } => steps.iter().map(|s| s.users).max().unwrap_or(0),
        }
    }

    /// Offered one-to-one and group messages per second across all users.
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
        (
            users * share * self.traffic.one_to_one_per_min / 60.0,
            in_groups * share * self.traffic.group_per_min / 60.0,
        )
    }
}
