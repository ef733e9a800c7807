//! SLO checks: `METRIC.STAT OP VALUE` (e.g. `read_receipt.p99 < 50ms`, `errors.rate < 0.1%`,
//! `audit.lost == 0`), parsed when the profile loads and evaluated against the [`Report`].

use std::fmt;

use crate::report::{Report, SloResult};

pub use crate::report::LATENCY_METRICS;
const LATENCY_STATS: [&str; 8] = ["count", "min", "mean", "p50", "p90", "p99", "p999", "max"];
/// Non-latency values a check may name, with their unit.
const OTHER: [(&str, Unit); 13] = [
    ("errors.rate", Unit::Percent),
    ("errors.count", Unit::Count),
    ("rate_limited.count", Unit::Count),
    ("audit.lost", Unit::Count),
    ("audit.duplicated", Unit::Count),
    ("audit.unexpected", Unit::Count),
    ("throughput.messages_per_sec", Unit::Count),
    ("connections.failed", Unit::Count),
    ("connections.achieved", Unit::Count),
    ("connections.dropped", Unit::Count),
    ("ack.saving_pct", Unit::Count),
    ("ack.acks_per_read", Unit::Count),
    ("throughput.skipped_offline", Unit::Count),
];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Unit {
    /// Compared in milliseconds; written with ms, s or us.
    Millis,
    /// Compared in percent; written with %.
    Percent,
    /// A plain number.
    Count,
}

/// A comparison operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cmp {
    /// `<`
    Lt,
    /// `<=`
    Le,
    /// `>`
    Gt,
    /// `>=`
    Ge,
    /// `==`
    Eq,
}

impl Cmp {
    fn holds(self, a: f64, b: f64) -> bool {
        match self {
            Cmp::Lt => a < b,
            Cmp::Le => a <= b,
            Cmp::Gt => a > b,
            Cmp::Ge => a >= b,
            Cmp::Eq => a == b,
        }
    }
}

/// One parsed check.
#[derive(Debug, Clone, PartialEq)]
pub struct SloCheck {
    /// As written.
    pub text: String,
    /// `read_receipt.p99`, `errors.rate`, ...
    pub metric: String,
    /// Operator.
    pub cmp: Cmp,
    /// Threshold in the metric's unit (ms, %, or a number).
    pub threshold: f64,
}

impl fmt::Display for SloCheck {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

fn unit_of(metric: &str) -> Option<Unit> {
    if let Some((name, stat)) = metric.split_once('.')
        && LATENCY_METRICS.contains(&name)
        && LATENCY_STATS.contains(&stat)
    {
        return Some(if stat == "count" { Unit::Count } else { Unit::Millis });
    }
    OTHER.iter().find(|(m, _)| *m == metric).map(|(_, u)| *u)
}

fn parse_value(text: &str, unit: Unit) -> Result<f64, String> {
    let (number, factor) = match unit {
        Unit::Millis => {
            let (n, f) = if let Some(n) = text.strip_suffix("ms") {
                (n, 1.0)
            } else if let Some(n) = text.strip_suffix("us") {
                (n, 0.001)
            } else if let Some(n) = text.strip_suffix('s') {
                (n, 1000.0)
            } else {
                return Err(format!("{text:?} needs a unit: ms, s or us"));
            };
            (n, f)
        }
        Unit::Percent => match text.strip_suffix('%') {
            Some(n) => (n, 1.0),
            None => return Err(format!("{text:?} is a rate: write it in percent, e.g. 0.1%")),
        },
        Unit::Count => (text, 1.0),
    };
    number
        .trim()
        .parse::<f64>()
        .map(|v| v * factor)
        .map_err(|_| format!("{text:?} is not a number with its unit"))
}

impl SloCheck {
    /// Parses `METRIC.STAT OP VALUE`.
    pub fn parse(text: &str) -> Result<SloCheck, String> {
        let ops = [
            ("<=", Cmp::Le),
            (">=", Cmp::Ge),
            ("==", Cmp::Eq),
            ("<", Cmp::Lt),
            (">", Cmp::Gt),
        ];
        let Some((at, op, cmp)) = ops.iter().find_map(|(op, cmp)| text.find(op).map(|at| (at, *op, *cmp))) else {
            return Err(format!(
                "{text:?}: expected METRIC OP VALUE, e.g. \"read_receipt.p99 < 50ms\""
            ));
        };
        let metric = text[..at].trim().to_string();
        let value = text[at + op.len()..].trim();
        let Some(unit) = unit_of(&metric) else {
            let latency: Vec<String> = LATENCY_METRICS.iter().map(|m| format!("{m}.p99")).collect();
            let other: Vec<&str> = OTHER.iter().map(|(m, _)| *m).collect();
            return Err(format!(
                "{text:?}: unknown metric {metric:?}; use a latency ({}, with .count/.min/.mean/.p50/.p90/.p99/.p999/.max) or one of {}",
                latency.join(", "),
                other.join(", ")
            ));
        };
        let threshold = parse_value(value, unit).map_err(|e| format!("{text:?}: {e}"))?;
        Ok(SloCheck {
            text: text.trim().to_string(),
            metric,
            cmp,
            threshold,
        })
    }

    /// The measured value in the check's unit, if the report has it.
    pub fn measure(&self, r: &Report) -> Option<f64> {
        metric_value(r, &self.metric)
    }

    /// Evaluates the check; a metric with no samples fails.
    pub fn evaluate(&self, r: &Report) -> SloResult {
        let value = self.measure(r);
        let latency_without_samples = self
            .metric
            .split_once('.')
            .is_some_and(|(m, s)| LATENCY_METRICS.contains(&m) && s != "count")
            && r.latencies
                .get(self.metric.split('.').next().unwrap_or(""))
                .is_none_or(|l| l.count == 0);
        let value = if latency_without_samples { None } else { value };
        SloResult {
            check: self.text.clone(),
            value,
            passed: value.is_some_and(|v| self.cmp.holds(v, self.threshold)),
        }
    }
}

/// The value of `metric` (`read_receipt.p99`, `errors.rate`, ...) in a report, in the unit an
/// SLO check uses (ms, %, or a number); `None` for unknown metrics.
pub fn metric_value(r: &Report, metric: &str) -> Option<f64> {
    if let Some((name, stat)) = metric.split_once('.')
        && LATENCY_METRICS.contains(&name)
    {
        let l = r.latencies.get(name)?;
        return Some(match stat {
            "count" => l.count as f64,
            "min" => l.min,
            "mean" => l.mean,
            "p50" => l.p50,
            "p90" => l.p90,
            "p99" => l.p99,
            "p999" => l.p999,
            _ => l.max,
        });
    }
    let a = &r.audit.total;
    Some(match metric {
        "errors.rate" => r.counters.error_rate * 100.0,
        "errors.count" => r.counters.errors_by_code.values().sum::<u64>() as f64,
        "rate_limited.count" => r.counters.rate_limited as f64,
        "audit.lost" => a.lost as f64,
        "audit.duplicated" => a.duplicated as f64,
        "audit.unexpected" => a.unexpected as f64,
        "throughput.messages_per_sec" => r.throughput.messages_per_sec,
        "throughput.skipped_offline" => r.throughput.skipped_offline as f64,
        "connections.failed" => r.connections.failed as f64,
        "connections.achieved" => r.connections.achieved as f64,
        "connections.dropped" => r.connections.dropped as f64,
        "ack.saving_pct" => r.ack_economics.total.saving_pct,
        "ack.acks_per_read" => r.ack_economics.total.acks_per_read,
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_units_and_operators() {
        let c = SloCheck::parse("read_receipt.p99 < 50ms").unwrap();
        assert_eq!(
            (c.metric.as_str(), c.cmp, c.threshold),
            ("read_receipt.p99", Cmp::Lt, 50.0)
        );
        assert_eq!(SloCheck::parse("read.p50<=1.5s").unwrap().threshold, 1500.0);
        assert_eq!(SloCheck::parse("delivery.max >= 250us").unwrap().threshold, 0.25);
        let e = SloCheck::parse("errors.rate < 0.1%").unwrap();
        assert_eq!((e.cmp, e.threshold), (Cmp::Lt, 0.1));
        assert_eq!(SloCheck::parse("audit.lost == 0").unwrap().cmp, Cmp::Eq);
    }

    #[test]
    fn refuses_what_it_cannot_check_with_a_reason() {
        for (bad, why) in [
            ("read_receipt.p99 50ms", "expected METRIC OP VALUE"),
            ("read_reciept.p99 < 50ms", "unknown metric"),
            ("read_receipt.p98 < 50ms", "unknown metric"),
            ("read_receipt.p99 < 50", "needs a unit"),
            ("errors.rate < 0.1", "in percent"),
            ("audit.lost == none", "not a number"),
        ] {
            let e = SloCheck::parse(bad).unwrap_err();
            assert!(e.contains(why), "{bad}: {e}");
        }
    }
}
