//! The run report as data: one serialisable [`Report`] (written as `summary.json`, checked
//! against `schema/summary.schema.json`) and the [`Comparison`] of strategies. Renderers (text,
//! HTML) read these types and nothing else.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// The latency metrics of a report (keys of [`Report::latencies`]), in the order a reader
/// follows a message: send, push, receipts, then the tester's own schedule lag. The collector
/// records them in this order, SLO checks and comparisons name them.
/// The collector's `Metric` enum names the same list (a test keeps them equal).
pub const LATENCY_METRICS: [&str; 15] = [
    "server_ack",
    "message",
    "message_offline",
    "delivery",
    "read_receipt",
    "read",
    "channel",
    "channel_sync",
    "group_read_first",
    "group_read_all",
    "read_users_page",
    "read_users",
    "reconnect",
    "schedule_lag",
    "ack_lag",
];

/// The audit's kinds (keys of [`Audit::by_kind`]), in the order a request and its message
/// travel: the reply, the message, its receipts, then the reader-list queries. The collector's
/// `Kind` enum names the same list (a test keeps them equal).
pub const AUDIT_KINDS: [&str; 9] = [
    "reply",
    "message",
    "delivery",
    "read",
    "channel",
    "channel_sync",
    "group_read",
    "statistic",
    "read_users",
];

/// Version of the `summary.json` layout; bump on incompatible changes.
pub const SCHEMA_VERSION: u32 = 1;

/// Everything a run measured.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Report {
    /// Layout version ([`SCHEMA_VERSION`]).
    pub schema_version: u32,
    /// Run name (from the profile).
    pub name: String,
    /// UTC start, RFC 3339.
    pub started_at: String,
    /// UTC end, RFC 3339.
    pub ended_at: String,
    /// Wall time of the whole run (ramp, steady, drain), seconds.
    pub elapsed_secs: f64,
    /// The effective plan in brief.
    pub plan: PlanSummary,
    /// What was measured against.
    pub target: TargetInfo,
    /// Connection counts.
    pub connections: Connections,
    /// Volume and rates.
    pub throughput: Throughput,
    /// Latency per metric (the names of [`LATENCY_METRICS`]), milliseconds.
    pub latencies: BTreeMap<String, Latency>,
    /// Frame, receipt and error counters, as the tester saw them.
    pub counters: Counters,
    /// Ack volume versus the per-message baseline.
    pub ack_economics: AckEconomics,
    /// Receipts expected versus arrived, after the drain.
    pub audit: Audit,
    /// Per-second series for the plots.
    pub timeline: Vec<TimelinePoint>,
    /// SLO checks and their outcome.
    pub slo: Vec<SloResult>,
    /// Things the reader must know to trust the numbers (e.g. the generator was the bottleneck).
    pub warnings: Vec<String>,
    /// The run was stopped early (Ctrl-C or SIGTERM): its figures cover only what ran.
    #[serde(default)]
    pub interrupted: bool,
    /// Faults the profile injected, and what they did.
    #[serde(default)]
    pub faults: Vec<FaultReport>,
    /// A run split into shards: on a shard's own report, which shard it was; on the merged
    /// report, every shard.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shards: Option<ShardSet>,
    /// A simulation's (`ackstorm simulate`): the model it ran against and what it predicts.
    /// Its latencies are the model's predictions; `None` on a run against a real server.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub simulation: Option<Simulation>,
}

/// What a simulation ran against and predicts beside the run's own figures.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Simulation {
    /// The server's cost model.
    pub model: SimModel,
    /// Wall time the simulation took, seconds.
    pub wall_secs: f64,
    /// Discrete events it handled.
    pub events: u64,
    /// Predicted server cores busy in the busiest second.
    pub peak_server_cores: f64,
    /// Predicted server cores busy, mean over the steady phase.
    pub mean_server_cores: f64,
    /// Receipt pushes routed per second, mean over the steady phase.
    pub receipts_per_sec: f64,
    /// Per second of run time.
    pub series: Vec<SimPoint>,
}

/// The cost model of a simulation, as the report shows it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SimModel {
    /// What it models.
    pub name: String,
    /// Cores.
    pub cores: u32,
    /// Client to server (and back) latency, µs (median).
    pub one_way_us: f64,
    /// Its log-normal spread.
    #[serde(default)]
    pub one_way_sigma: f64,
    /// Server CPU per frame read, µs.
    pub frame_in_us: f64,
    /// Server CPU per frame written, µs.
    pub frame_out_us: f64,
    /// Server CPU whatever the load, cores.
    #[serde(default)]
    pub server_base_cores: f64,
    /// Generator CPU whatever the load, cores (colocated).
    #[serde(default)]
    pub tester_base_cores: f64,
    /// Generator CPU per frame, µs (with `colocated`).
    pub tester_frame_us: f64,
    /// The generator shares the server's cores.
    pub colocated: bool,
    /// The clients' timer resolution, µs.
    #[serde(default)]
    pub timer_us: u64,
    /// The results folder it was calibrated from, if it was.
    pub calibrated_from: Option<String>,
}

/// One second of a simulation.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SimPoint {
    /// Seconds since the run started.
    pub t: f64,
    /// Predicted server cores busy.
    pub server_cores: f64,
    /// Predicted generator cores busy (a colocated model's).
    pub tester_cores: f64,
    /// Frames the server read.
    pub frames_in: u64,
    /// Frames the server wrote.
    pub frames_out: u64,
    /// Receipt pushes routed.
    pub receipts: u64,
}

/// How a run was split over processes or machines.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ShardSet {
    /// The run id all shards share.
    pub run_id: String,
    /// Shards in the run.
    pub count: u32,
    /// This shard, on a shard's own report; `None` on the merged report.
    pub index: Option<u32>,
    /// Users talked only within their shard (`population.partition = "shard"`).
    pub partitioned: bool,
    /// Every shard (merged report).
    pub rows: Vec<ShardRow>,
    /// Which latencies span two processes' clocks, and what they depend on.
    pub clocks: String,
}

/// One shard of a merged run.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ShardRow {
    /// Its index.
    pub index: u32,
    /// Its results folder.
    pub results_dir: String,
    /// Users it ran (at the peak).
    pub users: u64,
    /// Devices logged in at its peak.
    pub connected_peak: u64,
    /// Messages it sent.
    pub messages_sent: u64,
    /// Its generator's schedule lag p99, ms.
    pub schedule_lag_p99_ms: f64,
    /// Its tester's CPU time over the run, seconds.
    pub cpu_secs: f64,
    /// Its tester's peak RSS, MiB.
    pub peak_rss_mb: f64,
    /// Its clock zero minus the merged run's, ms (0 when all started at `--start-at`).
    pub clock_offset_ms: f64,
}

/// One injected fault and its outcome.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct FaultReport {
    /// `drop_connections`, `stall_readers` or `server_restart`.
    pub kind: String,
    /// Start, seconds since the run started.
    pub at_secs: f64,
    /// Spread over this many seconds.
    pub over_secs: f64,
    /// Connections, users or restarts the profile asked for.
    pub planned: u64,
    /// How many were carried out.
    pub done: u64,
    /// Connections back in (logged in again) afterwards; for stalled readers, users reading
    /// again after their stall.
    pub recovered: u64,
    /// Time from the fault to logged in again: median, ms (0 when none recovered).
    pub recovery_p50_ms: f64,
    /// The same, slowest, ms.
    pub recovery_max_ms: f64,
    /// Lost (not excused by the protocol) of what was sent during the fault and its
    /// recovery; must be 0 where the server promises delivery.
    #[serde(default)]
    pub lost: u64,
    /// Lost with a connection that died, of what was sent then (allowed by protocol v1).
    #[serde(default)]
    pub lost_in_disconnect: u64,
}

/// The parts of the plan a reader needs beside the numbers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PlanSummary {
    /// Ack strategy.
    pub strategy: String,
    /// Simulated users.
    pub users: u64,
    /// Devices (connections) per user.
    pub devices_per_user: u64,
    /// Groups.
    pub groups: u64,
    /// Seed of the workload.
    pub seed: u64,
    /// Steady phase, seconds.
    pub duration_secs: f64,
    /// Offered one-to-one messages per second (all users).
    pub offered_one_to_one_per_sec: f64,
    /// Offered group messages per second (all users).
    pub offered_group_per_sec: f64,
    /// Hash (hex) of the workload (users, groups, traffic, reading, acks, seed, durations; not
    /// the target, labels or SLOs): equal for runs of the same workload against any build.
    pub profile_hash: String,
}

/// The server measured.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TargetInfo {
    /// `embedded` or `external`.
    pub kind: String,
    /// WebSocket URL.
    pub url: String,
    /// The server's `ackstorm_build_info` labels, when it exposes them.
    pub build_info: Option<String>,
    /// A user-supplied label of the server build.
    pub label: Option<String>,
    /// The driver's protocol (`native`, `xmpp`).
    #[serde(default = "native")]
    pub protocol: String,
    /// Latency metrics and audit kinds the protocol cannot give: absent from
    /// [`Report::latencies`] and the audit, shown as not available (never as zero).
    #[serde(default)]
    pub not_available: Vec<String>,
    /// The server's CPU time over the run, seconds (`process_cpu_seconds_total` of its
    /// `/metrics`), when the server is a process of its own that says; what `calibrate` uses.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server_cpu_secs: Option<f64>,
}

/// The protocol of reports written before drivers were named.
fn native() -> String {
    "native".to_string()
}

/// Connection counts.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Connections {
    /// Connections the plan asked for (users x devices that were to be online).
    pub asked: u64,
    /// Connections that logged in at least once.
    pub achieved: u64,
    /// Connect or login failures.
    pub failed: u64,
    /// Most connections logged in at once.
    pub peak: u64,
    /// Connections lost unexpectedly (not closed by the simulation).
    pub dropped: u64,
    /// Logins again after a drop.
    #[serde(default)]
    pub reconnects: u64,
    /// Requests sent again on a new connection because the old one died unanswered.
    #[serde(default)]
    pub resent: u64,
}

/// Volume and rates.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Throughput {
    /// Messages sent (1:1 + group).
    pub messages_sent: u64,
    /// One-to-one messages sent.
    pub one_to_one_sent: u64,
    /// Group messages sent.
    pub group_sent: u64,
    /// Messages per second over the steady phase.
    pub messages_per_sec: f64,
    /// Sends skipped because the user was offline at the scheduled time.
    pub skipped_offline: u64,
    /// Sends dropped because the connection was down and the outbox full.
    #[serde(default)]
    pub skipped_disconnected: u64,
    /// Frames sent by the tester.
    pub frames_sent: u64,
    /// Frames received by the tester.
    pub frames_received: u64,
    /// Bytes sent (frame payloads).
    pub bytes_sent: u64,
    /// Bytes received (frame payloads).
    pub bytes_received: u64,
}

/// Percentiles of one latency metric, milliseconds.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Latency {
    /// Samples.
    pub count: u64,
    /// Smallest.
    pub min: f64,
    /// Mean.
    pub mean: f64,
    /// Median.
    pub p50: f64,
    /// 90th percentile.
    pub p90: f64,
    /// 99th percentile.
    pub p99: f64,
    /// 99.9th percentile.
    pub p999: f64,
    /// Largest.
    pub max: f64,
    /// The percentile curve: (percentile 0-100, ms), for plots.
    pub curve: Vec<(f64, f64)>,
    /// Measured from the actual send instead of the scheduled one (coordinated omission
    /// not corrected); absent for metrics that do not start at a send.
    pub uncorrected: Option<Box<Latency>>,
}

/// Counters by kind.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Counters {
    /// Client frames sent, by op.
    pub frames_sent_by_op: BTreeMap<String, u64>,
    /// Server frames received, by op.
    pub frames_received_by_op: BTreeMap<String, u64>,
    /// Receipt pushes received, by kind (`delivery`, `read`, `group_read`, `channel`, `statistic`).
    pub receipts_received: BTreeMap<String, u64>,
    /// Error replies, by code.
    pub errors_by_code: BTreeMap<String, u64>,
    /// Error replies / client frames sent.
    pub error_rate: f64,
    /// `rate_limited` replies.
    pub rate_limited: u64,
    /// Server frames that could not be parsed.
    pub unparseable: u64,
}

/// Ack volume of one kind of conversation.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct AckSplit {
    /// Messages the simulated users read.
    pub messages_read: u64,
    /// Per-message read acks sent.
    pub read_acks: u64,
    /// Channel acks sent.
    pub channel_acks: u64,
    /// (read + channel acks) / messages read.
    pub acks_per_read: f64,
    /// The per-message baseline: one ack per message read.
    pub baseline_acks: u64,
    /// 100 x (1 - acks / baseline); negative when the strategy costs more.
    pub saving_pct: f64,
}

/// Ack economics of the run.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct AckEconomics {
    /// The strategy used.
    pub strategy: String,
    /// One-to-one conversations.
    pub one_to_one: AckSplit,
    /// Group conversations.
    pub group: AckSplit,
    /// Both.
    pub total: AckSplit,
    /// Server-side frames during the run, from `/metrics` before and after (absent when the
    /// server exposes no ackstorm metrics).
    pub server_frames: Option<ServerFrames>,
}

/// Server frame counts from `/metrics` deltas.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ServerFrames {
    /// Frames the server read, by op.
    pub frames_in: BTreeMap<String, u64>,
    /// Frames the server wrote, by op.
    pub frames_out: BTreeMap<String, u64>,
    /// All frames read.
    pub total_in: u64,
    /// All frames written.
    pub total_out: u64,
}

/// Expected versus arrived of one kind (replies, messages or a kind of receipt).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct AuditKind {
    /// What should have arrived, from what the tester itself sent and was told.
    pub expected: u64,
    /// Arrived, once each (for `reply`, refusals included: an `error` is an answer).
    pub arrived: u64,
    /// Expected but never arrived (and the protocol does not excuse it).
    pub lost: u64,
    /// Arrived more than once.
    pub duplicated: u64,
    /// Arrived with nothing to match (a receipt nobody asked for, a message never sent).
    pub unexpected: u64,
    /// Requests the server answered with `error` (counted by code in
    /// [`Audit::refused_by_code`]); never counted as lost.
    #[serde(default)]
    pub refused: u64,
    /// Missing, but its connection died after it could have been written: a loss protocol v1
    /// allows (pushes are at most once on a live connection).
    #[serde(default)]
    pub lost_in_disconnect: u64,
    /// Not expected, and not in `expected`: the device or user never came online again to
    /// receive it (or was logging in or out while it was routed).
    #[serde(default)]
    pub not_due: u64,
    /// Arrived after its record was settled (older than the audit horizon).
    #[serde(default)]
    pub late: u64,
    /// Of `lost`, those still awaited when the run ended whose message was sent (a
    /// conversation ack: made; a request: written) less than the slowest transit of the run
    /// before its end: counted lost, yet they may only be late (a server with a backlog); a
    /// longer `run.drain` tells.
    #[serde(default)]
    pub lost_at_end: u64,
}

impl AuditKind {
    /// Adds `other` field by field.
    pub fn add(&mut self, other: &AuditKind) {
        self.expected += other.expected;
        self.arrived += other.arrived;
        self.lost += other.lost;
        self.duplicated += other.duplicated;
        self.unexpected += other.unexpected;
        self.refused += other.refused;
        self.lost_in_disconnect += other.lost_in_disconnect;
        self.not_due += other.not_due;
        self.late += other.late;
        self.lost_at_end += other.lost_at_end;
    }
}

/// The end-of-run audit: for every kind, what the tester expected against what arrived.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Audit {
    /// All kinds together.
    pub total: AuditKind,
    /// By kind: `reply`, `message`, `delivery`, `read`, `channel`, `channel_sync`,
    /// `group_read`, `statistic`, `read_users`.
    pub by_kind: BTreeMap<String, AuditKind>,
    /// Refused requests by error code.
    #[serde(default)]
    pub refused_by_code: BTreeMap<String, u64>,
    /// Server frames the tester could not use, by cause (`invalid_json`, `unknown_op`,
    /// `bad_frame`, `binary`).
    #[serde(default)]
    pub protocol_errors: BTreeMap<String, u64>,
    /// Seconds waited after the traffic stopped.
    pub drain_secs: f64,
}

/// One second of the run.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct TimelinePoint {
    /// Seconds since the start.
    pub t: f64,
    /// Connections logged in.
    pub connected: u64,
    /// Messages sent in this second.
    pub messages: u64,
    /// Read and channel acks sent in this second.
    pub acks: u64,
    /// Receipt pushes received in this second.
    pub receipts: u64,
    /// Errors in this second.
    pub errors: u64,
    /// p99 of schedule lag in this second, ms.
    pub schedule_lag_p99: f64,
    /// p99 of `read_receipt` in this second, ms (0 when none).
    pub read_receipt_p99: f64,
    /// The tester's resident memory, MiB (0 when unknown).
    #[serde(default)]
    pub rss_mb: f64,
    /// The tester's CPU use over the last second, % of one core.
    #[serde(default)]
    pub cpu_pct: f64,
}

/// One SLO check.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SloResult {
    /// The check as written, e.g. `read_receipt.p99 < 50ms`.
    pub check: String,
    /// The measured value in the check's unit (ms for latencies, % for rates), if available.
    pub value: Option<f64>,
    /// Whether it held (a missing value fails).
    pub passed: bool,
}

/// `ackstorm strategies`: the same workload once per strategy.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Comparison {
    /// Layout version ([`SCHEMA_VERSION`]).
    pub schema_version: u32,
    /// Profile name.
    pub name: String,
    /// Seed shared by every run.
    pub seed: u64,
    /// One row per strategy, in the order run.
    pub rows: Vec<StrategyRow>,
}

/// One strategy's run in a [`Comparison`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StrategyRow {
    /// Strategy name.
    pub strategy: String,
    /// Results folder of that run.
    pub results_dir: String,
    /// Messages sent (the same workload gives the same count, up to timing at the edges).
    pub messages_sent: u64,
    /// Messages read.
    pub messages_read: u64,
    /// Read acks sent.
    pub read_acks: u64,
    /// Channel acks sent.
    pub channel_acks: u64,
    /// Read + channel acks.
    pub ack_frames: u64,
    /// Saving versus per_message's ack frames in the same comparison, percent.
    pub saving_vs_per_message_pct: Option<f64>,
    /// `read` latency (send -> sender learns it was read): p50, ms.
    pub read_p50_ms: f64,
    /// `read` latency p99, ms.
    pub read_p99_ms: f64,
    /// Frames the server read and wrote, from `/metrics`.
    pub server_frames: Option<u64>,
    /// Lost receipts in that run's audit.
    pub lost: u64,
}
