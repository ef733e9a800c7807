//! Server counters and their `/metrics` rendering (Prometheus text exposition format 0.0.4).
//!
//! Every counter is a fixed array of relaxed atomics indexed by a small enum, so counting on
//! the hot path is one atomic add with no lock and no label lookup. The renderer is written
//! here rather than taken from `prometheus-client` because that crate emits OpenMetrics
//! (`# EOF`, `_total` suffixes split from the `# TYPE` name), and PROTOCOL.md promises the
//! classic Prometheus text format that every scraper and our own driver read.

use std::fmt::Write;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering::Relaxed};

use super::store::StoreStats;
use crate::protocol::ErrorCode;
use crate::protocol::client::CLIENT_OPS;
use crate::protocol::server::SERVER_OPS;

/// Receipt kinds counted by `ackstorm_receipts_total{kind}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReceiptMetric {
    /// 1:1 delivery receipt.
    Delivery = 0,
    /// 1:1 read receipt.
    Read = 1,
    /// Group read receipt.
    GroupRead = 2,
    /// 1:1 channel ack.
    Channel = 3,
    /// Group channel ack.
    GroupChannel = 4,
}

/// Kinds of pushes counted by `ackstorm_unwritten_pushes_total{kind}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UnwrittenKind {
    /// A `message` push.
    Message = 0,
    /// A receipt push (delivery, read, channel).
    Receipt = 1,
    /// The `statistic` frame of a login replay.
    Statistic = 2,
}

const UNWRITTEN_KINDS: [&str; 3] = ["message", "receipt", "statistic"];

/// Why the server closed a connection for its health, counted by
/// `ackstorm_health_closes_total{reason}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloseReason {
    /// Slow consumer: live pushes queued past the queue bound (close 1008).
    QueueBound = 0,
    /// Slow consumer: a write made no progress for the write timeout (close 1008).
    WriteTimeout = 1,
    /// No pong to the server's pings within the idle timeout (close 1008).
    IdleTimeout = 2,
    /// No `login` within the login timeout from accept (close 1008, or dropped before the
    /// WebSocket upgrade).
    LoginTimeout = 3,
    /// Not logged in yet, and the oldest such connection when a new one needed its place
    /// (close 1013, or dropped before the WebSocket upgrade).
    HandshakeEvicted = 4,
}

const CLOSE_REASONS: [&str; 5] = [
    "queue_bound",
    "write_timeout",
    "idle_timeout",
    "login_timeout",
    "handshake_evicted",
];
const RECEIPT_KINDS: [&str; 5] = ["delivery", "read", "group_read", "channel", "group_channel"];
const CHAT_TYPES: [&str; 2] = ["singleChat", "groupChat"];
const OFFLINE_KINDS: [&str; 3] = ["message", "receipt", "group_count"];
const DROP_CAUSES: [&str; 3] = ["count", "user_bytes", "total_bytes"];
/// Label of frames that could not be parsed, counted beside the client ops.
const INVALID_OP: &str = "invalid";

fn counters<const N: usize>() -> [AtomicU64; N] {
    std::array::from_fn(|_| AtomicU64::new(0))
}

/// All server counters. Shared by the hub and every connection task.
#[derive(Debug)]
pub struct Metrics {
    build_info: String,
    /// WebSocket connections currently open.
    pub connections_open: AtomicI64,
    /// WebSocket connections accepted since start.
    pub connections_total: AtomicU64,
    /// Connections logged in right now.
    pub logged_in: AtomicI64,
    frames_in: [AtomicU64; CLIENT_OPS.len() + 1],
    frames_out: [AtomicU64; SERVER_OPS.len()],
    /// Payload bytes of text frames read.
    pub bytes_in: AtomicU64,
    /// Payload bytes of text frames written.
    pub bytes_out: AtomicU64,
    messages: [AtomicU64; 2],
    receipts: [AtomicU64; 5],
    receipts_repeated: [AtomicU64; 5],
    /// Frames refused by the rate limit.
    pub rate_limited: AtomicU64,
    errors: [AtomicU64; ErrorCode::ALL.len()],
    /// Connections closed by a same-device login elsewhere.
    pub kicked: AtomicU64,
    /// Repeated sends (same sender and client id) answered with the original reply.
    pub duplicate_sends: AtomicU64,
    unwritten: [AtomicU64; 3],
    closes: [AtomicU64; 5],
    /// Remembered client ids forgotten while still inside the validity window (the
    /// per-sender cap overrode it): a repeat of those would be sent again.
    pub sent_ids_forgotten_early: AtomicU64,
    /// Frames naming a message whose record was evicted for the caps (answered `not_found`).
    pub evicted_refs: AtomicU64,
    /// Store calls that failed (each frame concerned answered `internal`; pushes a closing
    /// connection left that could not be stored are lost).
    pub store_errors: AtomicU64,
    /// Devices kicked because their user logged in on one device too many.
    pub device_limit_kicks: AtomicU64,
    /// Connections accepted and not logged in yet.
    pub handshakes: AtomicI64,
}

impl Metrics {
    /// New counters; `build_info` holds the labels of `ackstorm_build_info` (already escaped).
    pub fn new(build_info: String) -> Self {
        Metrics {
            build_info,
            connections_open: AtomicI64::new(0),
            connections_total: AtomicU64::new(0),
            logged_in: AtomicI64::new(0),
            frames_in: counters(),
            frames_out: counters(),
            bytes_in: AtomicU64::new(0),
            bytes_out: AtomicU64::new(0),
            messages: counters(),
            receipts: counters(),
            receipts_repeated: counters(),
            rate_limited: AtomicU64::new(0),
            errors: counters(),
            kicked: AtomicU64::new(0),
            duplicate_sends: AtomicU64::new(0),
            unwritten: counters(),
            closes: counters(),
            sent_ids_forgotten_early: AtomicU64::new(0),
            evicted_refs: AtomicU64::new(0),
            store_errors: AtomicU64::new(0),
            device_limit_kicks: AtomicU64::new(0),
            handshakes: AtomicI64::new(0),
        }
    }

    /// A client frame of op `op_index` (`None`: unparseable) and `bytes` long was read.
    pub fn frame_in(&self, op_index: Option<usize>, bytes: usize) {
        self.frames_in[op_index.unwrap_or(CLIENT_OPS.len())].fetch_add(1, Relaxed);
        self.bytes_in.fetch_add(bytes as u64, Relaxed);
    }

    /// A server frame of op `op_index` and `bytes` long was written.
    pub fn frame_out(&self, op_index: usize, bytes: usize) {
        self.frames_out[op_index].fetch_add(1, Relaxed);
        self.bytes_out.fetch_add(bytes as u64, Relaxed);
    }

    /// A message was accepted (index: 0 one-to-one, 1 group).
    pub fn message(&self, group: bool) {
        self.messages[group as usize].fetch_add(1, Relaxed);
    }

    /// A receipt frame was accepted; `first` is false for a deduplicated repeat.
    pub fn receipt(&self, kind: ReceiptMetric, first: bool) {
        let set = if first { &self.receipts } else { &self.receipts_repeated };
        set[kind as usize].fetch_add(1, Relaxed);
    }

    /// An error frame was sent.
    pub fn error(&self, code: ErrorCode) {
        self.errors[code.index()].fetch_add(1, Relaxed);
    }

    /// A push queued for a connection that closed (or was replaced) before writing it was
    /// taken back and stored for the device's next login.
    pub fn unwritten(&self, kind: UnwrittenKind) {
        self.unwritten[kind as usize].fetch_add(1, Relaxed);
    }

    /// The server closed a connection for `reason`.
    pub fn closed(&self, reason: CloseReason) {
        self.closes[reason as usize].fetch_add(1, Relaxed);
    }

    /// Errors sent so far with `code` (tests and summaries).
    pub fn errors_of(&self, code: ErrorCode) -> u64 {
        self.errors[code.index()].load(Relaxed)
    }

    /// The exposition text of these counters alone, the store's figures as zeros (for tests of
    /// the format; the server renders with [`Metrics::render_with`]).
    pub fn render(&self) -> String {
        self.render_with(&StoreStats::default())
    }

    /// The exposition text: these counters and the store's figures.
    pub fn render_with(&self, store: &StoreStats) -> String {
        let gauge = |v: &AtomicI64| v.load(Relaxed).max(0) as u64;
        let in_ops: Vec<&str> = CLIENT_OPS.iter().copied().chain([INVALID_OP]).collect();
        let codes: Vec<&str> = ErrorCode::ALL.iter().map(|c| c.as_str()).collect();
        let mut out = Exposition(String::with_capacity(8 * 1024));
        out.scalar(
            "connections",
            "gauge",
            "WebSocket connections open",
            gauge(&self.connections_open),
        );
        out.scalar(
            "connections_accepted_total",
            "counter",
            "WebSocket connections accepted",
            self.connections_total.load(Relaxed),
        );
        out.scalar("logged_in", "gauge", "Connections logged in", gauge(&self.logged_in));
        out.labelled(
            "frames_in_total",
            "Client frames read, by op",
            "op",
            &in_ops,
            &self.frames_in,
        );
        out.labelled(
            "frames_out_total",
            "Server frames written, by op",
            "op",
            &SERVER_OPS,
            &self.frames_out,
        );
        out.scalar(
            "bytes_in_total",
            "counter",
            "Text frame bytes read",
            self.bytes_in.load(Relaxed),
        );
        out.scalar(
            "bytes_out_total",
            "counter",
            "Text frame bytes written",
            self.bytes_out.load(Relaxed),
        );
        out.labelled(
            "messages_total",
            "Messages accepted, by chat type",
            "chat_type",
            &CHAT_TYPES,
            &self.messages,
        );
        out.labelled(
            "receipts_total",
            "Receipts and channel acks accepted and recorded (first of their kind), by kind",
            "kind",
            &RECEIPT_KINDS,
            &self.receipts,
        );
        out.labelled(
            "receipts_repeated_total",
            "Receipts answered but not pushed again (deduplicated repeats), by kind",
            "kind",
            &RECEIPT_KINDS,
            &self.receipts_repeated,
        );
        out.scalar(
            "rate_limited_total",
            "counter",
            "Frames refused by the per-connection rate limit",
            self.rate_limited.load(Relaxed),
        );
        out.labelled(
            "errors_total",
            "Error frames sent, by code",
            "code",
            &codes,
            &self.errors,
        );
        out.labelled_values(
            "offline_replaced_total",
            "Offline entries dropped to make room for newer ones, by kind",
            "kind",
            &OFFLINE_KINDS,
            &store.offline_dropped_kind,
        );
        out.labelled_values(
            "offline_dropped_total",
            "Offline entries dropped to make room, by the cap that required it",
            "cap",
            &DROP_CAUSES,
            &store.offline_dropped_cause,
        );
        out.scalar(
            "offline_bytes",
            "gauge",
            "Bytes charged against the total offline cap (waiting entries, and records of users who never logged in)",
            store.offline_bytes,
        );
        out.scalar("users", "gauge", "User records kept", store.users);
        out.scalar(
            "users_unseen",
            "gauge",
            "Records of users who never logged in (recipients, group members)",
            store.users_unseen,
        );
        out.scalar(
            "users_evicted_total",
            "counter",
            "Records of users who never logged in dropped, with all that waited for them, for the total offline cap",
            store.users_evicted,
        );
        out.scalar(
            "message_records",
            "gauge",
            "Message records kept for receipts",
            store.message_records,
        );
        out.scalar(
            "message_record_bytes",
            "gauge",
            "Estimated bytes of the message records kept",
            store.message_bytes,
        );
        out.scalar(
            "message_records_held",
            "gauge",
            "Message records an offline inbox refers to (kept whatever the caps)",
            store.message_records_held,
        );
        out.scalar(
            "message_records_evicted_total",
            "counter",
            "Message records evicted for the caps (the oldest settled first)",
            store.message_records_evicted,
        );
        out.scalar(
            "evicted_message_refs_total",
            "counter",
            "Frames naming a message whose record was evicted (answered not_found)",
            self.evicted_refs.load(Relaxed),
        );
        out.scalar(
            "store_errors_total",
            "counter",
            "Store calls that failed (the frame answered internal, or an unwritten push lost)",
            self.store_errors.load(Relaxed),
        );
        out.scalar("groups", "gauge", "Groups", store.groups);
        out.scalar(
            "sent_ids",
            "gauge",
            "Client ids of accepted sends remembered (idempotent sends), all senders together",
            store.sent_ids,
        );
        out.scalar(
            "conversations_dropped_total",
            "counter",
            "One-to-one conversations dropped for the per-user cap (least recently active first)",
            store.conversations_dropped,
        );
        out.scalar(
            "kicked_total",
            "counter",
            "Connections kicked: replaced by a same-device login, or past the devices per user",
            self.kicked.load(Relaxed),
        );
        out.scalar(
            "device_limit_kicks_total",
            "counter",
            "Devices kicked because their user logged in on one device more than the limit",
            self.device_limit_kicks.load(Relaxed),
        );
        out.scalar(
            "handshakes",
            "gauge",
            "Connections accepted and not logged in yet",
            gauge(&self.handshakes),
        );
        out.scalar(
            "duplicate_sends_total",
            "counter",
            "Repeated sends (same sender and client id) answered with the original reply, not sent again",
            self.duplicate_sends.load(Relaxed),
        );
        out.labelled(
            "unwritten_pushes_total",
            "Pushes queued for a connection that closed or was replaced before writing them, stored for the device's next login, by kind",
            "kind",
            &UNWRITTEN_KINDS,
            &self.unwritten,
        );
        out.labelled(
            "health_closes_total",
            "Connections the server closed for their health (slow consumer: queue_bound, write_timeout; idle_timeout; login_timeout; handshake_evicted), by reason",
            "reason",
            &CLOSE_REASONS,
            &self.closes,
        );
        out.scalar(
            "sent_ids_forgotten_early_total",
            "counter",
            "Client ids of accepted sends forgotten inside the validity window (per-sender cap reached)",
            self.sent_ids_forgotten_early.load(Relaxed),
        );
        out.header("build_info", "gauge", "Server build and options");
        let _ = writeln!(out.0, "ackstorm_build_info{{{}}} 1", self.build_info);
        // The standard process metric: what a calibration divides among the frames served
        // (the whole process's: a server sharing its process with the tester says so itself).
        if let Some(cpu) = crate::collector::process::cpu_secs() {
            let _ = writeln!(
                out.0,
                "# HELP process_cpu_seconds_total Total user and system CPU time spent in seconds.\n# TYPE process_cpu_seconds_total counter\nprocess_cpu_seconds_total {cpu}"
            );
        }
        out.0
    }
}

/// Text format writer: `# HELP`/`# TYPE` then samples, every name prefixed `ackstorm_`.
struct Exposition(String);

impl Exposition {
    fn header(&mut self, name: &str, kind: &str, help: &str) {
        let _ = writeln!(self.0, "# HELP ackstorm_{name} {help}\n# TYPE ackstorm_{name} {kind}");
    }

    fn scalar(&mut self, name: &str, kind: &str, help: &str, value: u64) {
        self.header(name, kind, help);
        let _ = writeln!(self.0, "ackstorm_{name} {value}");
    }

    fn labelled(&mut self, name: &str, help: &str, label: &str, values: &[&str], counters: &[AtomicU64]) {
        let now: Vec<u64> = counters.iter().map(|c| c.load(Relaxed)).collect();
        self.labelled_values(name, help, label, values, &now);
    }

    fn labelled_values(&mut self, name: &str, help: &str, label: &str, values: &[&str], counts: &[u64]) {
        self.header(name, "counter", help);
        for (v, c) in values.iter().zip(counts) {
            let _ = writeln!(self.0, "ackstorm_{name}{{{label}=\"{v}\"}} {c}");
        }
    }
}

/// Escapes a label value for the text format.
pub fn escape_label(v: &str) -> String {
    v.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_parseable_prometheus_text() {
        let m = Metrics::new("version=\"0.1.0\",group_read_ack=\"false\"".to_string());
        m.frame_in(Some(1), 10);
        m.frame_in(None, 3);
        m.frame_out(2, 20);
        m.receipt(ReceiptMetric::GroupRead, true);
        m.receipt(ReceiptMetric::GroupRead, false);
        m.error(ErrorCode::RateLimited);
        m.duplicate_sends.fetch_add(2, Relaxed);
        m.unwritten(UnwrittenKind::Statistic);
        m.closed(CloseReason::WriteTimeout);
        let stats = StoreStats {
            offline_dropped_kind: [0, 1, 0],
            ..StoreStats::default()
        };
        let text = m.render_with(&stats);
        let lines = text.lines().map(|l| Ok(l.to_string()));
        let scrape = prometheus_parse::Scrape::parse(lines).expect("valid exposition text");
        let value = |name: &str, label: Option<(&str, &str)>| -> f64 {
            scrape
                .samples
                .iter()
                .find(|s| s.metric == name && label.is_none_or(|(k, v)| s.labels.get(k) == Some(v)))
                .map(|s| match s.value {
                    prometheus_parse::Value::Counter(v)
                    | prometheus_parse::Value::Gauge(v)
                    | prometheus_parse::Value::Untyped(v) => v,
                    _ => f64::NAN,
                })
                .unwrap_or_else(|| panic!("{name} {label:?} missing in\n{text}"))
        };
        assert_eq!(value("ackstorm_frames_in_total", Some(("op", "send"))), 1.0);
        assert_eq!(value("ackstorm_frames_in_total", Some(("op", "invalid"))), 1.0);
        assert_eq!(value("ackstorm_frames_out_total", Some(("op", "received"))), 1.0);
        assert_eq!(value("ackstorm_receipts_total", Some(("kind", "group_read"))), 1.0);
        assert_eq!(
            value("ackstorm_receipts_repeated_total", Some(("kind", "group_read"))),
            1.0
        );
        assert_eq!(value("ackstorm_errors_total", Some(("code", "rate_limited"))), 1.0);
        assert_eq!(value("ackstorm_offline_replaced_total", Some(("kind", "receipt"))), 1.0);
        assert_eq!(value("ackstorm_duplicate_sends_total", None), 2.0);
        assert_eq!(value("ackstorm_sent_ids_forgotten_early_total", None), 0.0);
        assert_eq!(
            value("ackstorm_unwritten_pushes_total", Some(("kind", "statistic"))),
            1.0
        );
        assert_eq!(
            value("ackstorm_health_closes_total", Some(("reason", "write_timeout"))),
            1.0
        );
        assert_eq!(value("ackstorm_build_info", Some(("version", "0.1.0"))), 1.0);
        assert_eq!(value("ackstorm_bytes_in_total", None), 13.0);
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            let name = line.split(['{', ' ']).next().unwrap();
            assert!(text.contains(&format!("# TYPE {name} ")), "{name} has no TYPE line");
            assert!(text.contains(&format!("# HELP {name} ")), "{name} has no HELP line");
        }
    }

    #[test]
    fn escapes_label_values() {
        assert_eq!(escape_label("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
    }
}
