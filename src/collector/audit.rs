//! The end-of-run audit: for every message, the receipts its sender should have seen (from
//! the acks its readers sent) against the pushes that arrived; lost, duplicated and
//! unexpected receipts are counted, never hidden.

use std::collections::BTreeMap;

use super::fold::State;
use crate::report::{Audit, AuditKind};

impl State {
    pub(super) fn audit(&self) -> Audit {
        let mut delivery = AuditKind {
            unexpected: self.unexpected.delivery,
            ..Default::default()
        };
        let mut read = AuditKind {
            unexpected: self.unexpected.read,
            ..Default::default()
        };
        let mut group = AuditKind {
            unexpected: self.unexpected.group_read,
            ..Default::default()
        };
        for m in &self.msgs {
            tally(&mut delivery, m.delivery_acked, m.delivery_pushes);
            tally(&mut read, m.read_acked, m.read_pushes);
            if m.group_acks > 0 || m.group_max > 0 {
                let expected = u64::from(m.group_acks);
                group.expected += expected;
                group.arrived += m.group_max.min(expected);
                group.lost += expected.saturating_sub(m.group_max);
                group.unexpected += m.group_max.saturating_sub(expected);
                // Each distinct reader is pushed once; more pushes than readers are repeats.
                group.duplicated += u64::from(m.group_pushes).saturating_sub(m.group_max);
            }
        }
        let channel = AuditKind {
            expected: self.channel_expected,
            arrived: self.channel_arrived,
            lost: self.channel_expected - self.channel_arrived,
            duplicated: 0,
            unexpected: self.unexpected.channel,
        };
        let by_kind: BTreeMap<String, AuditKind> = [
            ("delivery", delivery),
            ("read", read),
            ("group_read", group),
            ("channel", channel),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
        let mut total = AuditKind::default();
        for k in by_kind.values() {
            total.expected += k.expected;
            total.arrived += k.arrived;
            total.lost += k.lost;
            total.duplicated += k.duplicated;
            total.unexpected += k.unexpected;
        }
        Audit {
            total,
            by_kind,
            drain_secs: 0.0,
        }
    }
}

/// One message's per-message receipt: expected when acked, arrived once, repeats, or unasked.
fn tally(k: &mut AuditKind, acked: bool, pushes: u32) {
    let pushes = u64::from(pushes);
    if acked {
        k.expected += 1;
        if pushes == 0 {
            k.lost += 1;
        } else {
            k.arrived += 1;
            k.duplicated += pushes - 1;
        }
    } else {
        k.unexpected += pushes;
    }
}
