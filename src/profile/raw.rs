//! The profile file as written: serde mirrors of the TOML tables, unknown keys refused.
//!
//! Values keep their written form (durations as text, rates as numbers); `check` turns them
//! into the typed [`super::plan`]. Every field is optional (required keys are the checker's
//! to demand), so that a key of the wrong type can be left out and the rest still read.

use serde::{Deserialize, Serialize};

/// A whole profile file.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawProfile {
    /// `[run]`.
    #[serde(default)]
    pub run: RawRun,
    /// `[target]`.
    #[serde(default)]
    pub target: RawTarget,
    /// `[population]`.
    #[serde(default)]
    pub population: RawPopulation,
    /// `[groups]`.
    #[serde(default)]
    pub groups: RawGroups,
    /// `[traffic]`.
    #[serde(default)]
    pub traffic: RawTraffic,
    /// `[reading]`.
    #[serde(default)]
    pub reading: RawReading,
    /// `[acks]`.
    #[serde(default)]
    pub acks: RawAcks,
    /// `[slo]`.
    #[serde(default)]
    pub slo: RawSlo,
    /// `[tester]`.
    #[serde(default)]
    pub tester: RawTester,
    /// `[reconnect]`.
    #[serde(default)]
    pub reconnect: RawReconnect,
    /// `[faults]`: written only when there are faults.
    #[serde(default, skip_serializing_if = "RawFaults::is_empty")]
    pub faults: RawFaults,
    /// `[model]`: written only when given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<RawModel>,
}

/// `[run]`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRun {
    pub name: Option<String>,
    pub duration: Option<String>,
    pub drain: Option<String>,
    pub seed: Option<u64>,
    pub ramp: Option<RawRamp>,
    pub results_dir: Option<String>,
}

/// `[run.ramp]`: a connection rate, or steps.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRamp {
    pub users_per_sec: Option<f64>,
    pub steps: Option<Vec<RawStep>>,
}

/// One step of a step plan.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawStep {
    pub users: Option<u64>,
    pub hold: Option<String>,
}

/// `[target]`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTarget {
    pub protocol: Option<String>,
    pub url: Option<String>,
    pub secret: Option<String>,
    pub token_file: Option<String>,
    pub ca_file: Option<String>,
    pub insecure: Option<bool>,
    pub label: Option<String>,
    pub embedded: Option<String>,
    pub server_threads: Option<usize>,
    pub server: Option<RawServer>,
    pub xmpp: Option<RawXmpp>,
}

/// `[target.xmpp]`: how to log in to an XMPP server.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawXmpp {
    pub domain: Option<String>,
    pub muc_domain: Option<String>,
    pub password: Option<String>,
    pub starttls: Option<String>,
    pub sasl: Option<String>,
    pub stream_management: Option<bool>,
}

/// `[target.server]`: options of the embedded server.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawServer {
    pub rate_limit: Option<f64>,
    pub rate_burst: Option<u32>,
    pub offline_single: Option<usize>,
    pub offline_group: Option<usize>,
    pub group_max_members: Option<usize>,
    pub messages: Option<usize>,
    pub message_bytes: Option<usize>,
    pub delay_ms: Option<u64>,
    pub throttle: Option<f64>,
}

/// `[population]`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawPopulation {
    pub users: Option<u64>,
    pub devices_per_user: Option<u64>,
    pub delivery_share: Option<f64>,
    pub contacts: Option<u64>,
    pub user_prefix: Option<String>,
    pub partition: Option<String>,
}

/// `[groups]`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawGroups {
    pub count: Option<u64>,
    pub size_min: Option<u64>,
    pub size_max: Option<u64>,
    pub admins: Option<u64>,
    pub allow_group_ack_share: Option<f64>,
    pub server_read_ack: Option<bool>,
    pub server_ack_anyone: Option<bool>,
    pub server_ack_max_members: Option<u64>,
    pub read_users_share: Option<f64>,
    pub read_users_delay: Option<String>,
    pub read_users_page: Option<u32>,
}

/// `[traffic]`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTraffic {
    pub one_to_one_per_min: Option<f64>,
    pub group_per_min: Option<f64>,
    pub message_bytes: Option<usize>,
    pub contact_choice: Option<String>,
    pub zipf_exponent: Option<f64>,
    pub warmup: Option<String>,
    pub curve: Option<Vec<f64>>,
    pub curve_step: Option<String>,
}

/// `[reading]`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawReading {
    pub online_share: Option<f64>,
    pub always_open: Option<bool>,
    pub open: Option<String>,
    pub away: Option<String>,
    pub read_probability: Option<f64>,
    pub read_delay: Option<RawDelay>,
    pub churn: Option<RawChurn>,
}

/// A delay distribution: `{ dist = "exp", mean = "800ms" }`, `{ dist = "fixed", value = "0s" }`
/// or `{ dist = "lognormal", median = "500ms", p99 = "5s" }`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawDelay {
    pub dist: Option<String>,
    pub mean: Option<String>,
    pub value: Option<String>,
    pub median: Option<String>,
    pub p99: Option<String>,
}

/// `[reading.churn]`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawChurn {
    pub online: Option<String>,
    pub offline: Option<String>,
}

/// `[acks]`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAcks {
    pub strategy: Option<String>,
    pub debounce: Option<String>,
}

/// `[slo]`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSlo {
    pub checks: Option<Vec<String>>,
}

/// `[tester]`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTester {
    pub arbiters: Option<usize>,
    pub source_ips: Option<Vec<String>>,
    pub connect_timeout: Option<String>,
    pub progress: Option<bool>,
    pub setup_timeout: Option<String>,
    pub close_timeout: Option<String>,
    pub audit_horizon: Option<String>,
    pub metrics_listen: Option<String>,
}

/// `[reconnect]`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawReconnect {
    pub enabled: Option<bool>,
    pub initial: Option<String>,
    pub max: Option<String>,
    pub multiplier: Option<f64>,
    pub jitter: Option<f64>,
    pub outbox: Option<usize>,
}

/// `[faults]`: arrays of tables (`[[faults.drop_connections]]`, ...).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawFaults {
    pub drop_connections: Option<Vec<RawFaultWindow>>,
    pub stall_readers: Option<Vec<RawStall>>,
    pub server_restarts: Option<Vec<RawRestart>>,
}

impl RawFaults {
    /// No fault listed.
    pub fn is_empty(&self) -> bool {
        self.drop_connections.as_ref().is_none_or(Vec::is_empty)
            && self.stall_readers.as_ref().is_none_or(Vec::is_empty)
            && self.server_restarts.as_ref().is_none_or(Vec::is_empty)
    }
}

/// `[[faults.drop_connections]]`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawFaultWindow {
    pub at: Option<String>,
    pub over: Option<String>,
    pub count: Option<u64>,
}

/// `[[faults.stall_readers]]`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawStall {
    pub at: Option<String>,
    pub over: Option<String>,
    pub count: Option<u64>,
    pub stall: Option<String>,
}

/// `[[faults.server_restarts]]`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRestart {
    pub at: Option<String>,
}

/// `[model]`: the server cost model of `ackstorm simulate`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawModel {
    pub file: Option<String>,
}
