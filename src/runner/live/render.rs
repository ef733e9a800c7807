//! The live metrics as Prometheus text (exposition format 0.0.4): a pure function of a
//! collector [`Snapshot`] and the run's identity, so what a scrape shows is tested without a
//! socket. Every family gets `# HELP` and `# TYPE` before its samples; counters end in
//! `_total`; names start with [`PREFIX`].

use std::fmt::Write;

use crate::collector::{Snapshot, WINDOW_QUANTILES};

/// Every family's name starts with this.
pub const PREFIX: &str = "ackstorm_tester_";

/// Who is exporting: the `ackstorm_tester_info` labels.
#[derive(Debug, Clone)]
pub struct Info {
    /// The run's tag (in group ids and message bodies).
    pub run: String,
    /// The profile's `run.name`.
    pub name: String,
    /// Seconds since the run's time zero.
    pub elapsed_secs: f64,
}

#[derive(Clone, Copy)]
enum Type {
    Counter,
    Gauge,
}

/// Text under construction, one family at a time.
struct Text {
    out: String,
}

impl Text {
    /// Starts family `name` (without the prefix).
    fn family(&mut self, name: &str, kind: Type, help: &str) {
        let kind = match kind {
            Type::Counter => "counter",
            Type::Gauge => "gauge",
        };
        let _ = writeln!(self.out, "# HELP {PREFIX}{name} {}", escape_help(help));
        let _ = writeln!(self.out, "# TYPE {PREFIX}{name} {kind}");
    }

    /// One sample of the family just started.
    fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: f64) {
        let _ = write!(self.out, "{PREFIX}{name}");
        if !labels.is_empty() {
            self.out.push('{');
            for (i, (k, v)) in labels.iter().enumerate() {
                if i > 0 {
                    self.out.push(',');
                }
                let _ = write!(self.out, "{k}=\"{}\"", escape_label(v));
            }
            self.out.push('}');
        }
        let _ = writeln!(self.out, " {value}");
    }

    /// A family of one unlabelled sample.
    fn single(&mut self, name: &str, kind: Type, help: &str, value: f64) {
        self.family(name, kind, help);
        self.sample(name, &[], value);
    }

    /// A family of one sample per `(label value, value)`.
    fn by<'a>(
        &mut self,
        name: &str,
        kind: Type,
        help: &str,
        label: &str,
        values: impl IntoIterator<Item = (&'a str, u64)>,
    ) {
        self.family(name, kind, help);
        for (v, n) in values {
            self.sample(name, &[(label, v)], n as f64);
        }
    }
}

/// A label value escaped: backslash, double quote and line feed.
fn escape_label(v: &str) -> String {
    v.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

/// Help text escaped: backslash and line feed.
fn escape_help(v: &str) -> String {
    v.replace('\\', "\\\\").replace('\n', "\\n")
}

/// A quantile as its label value (`0.99`, `1` for the maximum).
fn quantile_label(q: f64) -> String {
    format!("{q}")
}

/// The `/metrics` text of `s`.
pub fn render(s: &Snapshot, info: &Info) -> String {
    let mut t = Text { out: String::new() };
    t.family(
        "info",
        Type::Gauge,
        "The run this tester process is part of: its run tag and profile name (always 1).",
    );
    t.sample("info", &[("run", &info.run), ("name", &info.name)], 1.0);
    t.single(
        "elapsed_seconds",
        Type::Gauge,
        "Seconds since the run started (its time zero, before ramp-up).",
        info.elapsed_secs,
    );
    t.single(
        "users_connected",
        Type::Gauge,
        "Simulated devices logged in now (a user with several devices counts once per device).",
        s.connected as f64,
    );
    t.by(
        "messages_sent_total",
        Type::Counter,
        "Messages sent (first attempts; resends after a reconnect are not counted again), by chat.",
        "chat",
        [("one_to_one", s.sent.0), ("group", s.sent.1)],
    );
    t.by(
        "acks_sent_total",
        Type::Counter,
        "Acks sent by the simulated readers, by kind.",
        "kind",
        s.acks.iter().map(|(k, n)| (k.name(), *n)),
    );
    t.by(
        "receipts_received_total",
        Type::Counter,
        "Receipt pushes received by the simulated senders, by kind (channel: conversation acks; statistic: read counts replayed at login).",
        "kind",
        s.receipts.iter().map(|(k, n)| (k.as_str(), *n)),
    );
    t.by(
        "errors_total",
        Type::Counter,
        "Error replies from the server, by error code.",
        "code",
        s.errors_by_code.iter().map(|(k, n)| (k.as_str(), *n)),
    );
    t.single(
        "connection_failures_total",
        Type::Counter,
        "Connections that could not be opened or logged in.",
        s.connect_failed as f64,
    );
    t.single(
        "connection_drops_total",
        Type::Counter,
        "Connections that dropped (not closed by the simulation).",
        s.dropped as f64,
    );
    t.single(
        "reconnects_total",
        Type::Counter,
        "Logins again after a dropped connection.",
        s.reconnects as f64,
    );
    let settled = "Only records settled so far are judged: a record is settled tester.audit_horizon after it was sent (or at the end of the run), so a record not settled yet is not lost yet and a loss shows up that long after it happened.";
    t.by(
        "lost_total",
        Type::Counter,
        &format!("Expected and never arrived so far, by audit kind (the end-of-run audit's lost). {settled}"),
        "kind",
        s.lost.iter().map(|l| (l.kind, l.lost)),
    );
    t.by(
        "lost_in_disconnect_total",
        Type::Counter,
        &format!("Missing so far but due on a device whose connection dropped, by audit kind. {settled}"),
        "kind",
        s.lost.iter().map(|l| (l.kind, l.lost_in_disconnect)),
    );
    let window = format!(
        "over the last {} closed seconds (a second closes about 3 s after it ends)",
        s.window_secs
    );
    t.family(
        "latency_seconds",
        Type::Gauge,
        &format!(
            "Latency quantiles per metric {window}, from the scheduled time (quantile 1 is the maximum; 2 significant digits). Quantiles of several testers cannot be averaged: exact fleet percentiles come from ackstorm merge."
        ),
    );
    let quantiles: Vec<String> = WINDOW_QUANTILES.iter().map(|q| quantile_label(*q)).collect();
    for w in &s.window {
        for (q, us) in quantiles.iter().zip(w.quantiles_us) {
            t.sample(
                "latency_seconds",
                &[("metric", w.metric.name()), ("quantile", q)],
                us as f64 / 1e6,
            );
        }
    }
    t.by(
        "latency_samples",
        Type::Gauge,
        &format!("Latency samples per metric {window}."),
        "metric",
        s.window.iter().map(|w| (w.metric.name(), w.samples)),
    );
    t.out
}

#[cfg(test)]
#[path = "render_tests.rs"]
pub(super) mod tests;
