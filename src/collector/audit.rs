//! The audit's tallies: per kind, what was expected against what arrived. Records are
//! settled into a [`Tally`] as they age out (or at the end), so the audit's memory stays flat
//! however long the run; the tally becomes the report's [`Audit`].

use std::collections::BTreeMap;

use crate::report::{Audit, AuditKind};
use crate::transport::{Capabilities, Capability};

/// What the audit checks, one row each.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Kind {
    /// Every request gets exactly one reply.
    Reply,
    /// Every accepted message reaches every device that should get it.
    Message,
    /// Delivery receipts.
    Delivery,
    /// 1:1 read receipts.
    Read,
    /// 1:1 conversation acks, at the peer.
    Channel,
    /// 1:1 conversation acks, at the reader's other devices.
    ChannelSync,
    /// Group read counts pushed live.
    GroupRead,
    /// Group read counts replayed at login.
    Statistic,
    /// Reader lists of group messages.
    ReadUsers,
}

impl Kind {
    const ALL: [Kind; 9] = [
        Kind::Reply,
        Kind::Message,
        Kind::Delivery,
        Kind::Read,
        Kind::Channel,
        Kind::ChannelSync,
        Kind::GroupRead,
        Kind::Statistic,
        Kind::ReadUsers,
    ];

    /// The capability a protocol needs for this kind to be audited at all.
    fn needs(self) -> Option<Capability> {
        match self {
            Kind::Reply => Some(Capability::ServerAcks),
            Kind::Delivery => Some(Capability::DeliveryReceipts),
            Kind::Channel => Some(Capability::ChannelAcks),
            Kind::ChannelSync => Some(Capability::ChannelSync),
            Kind::GroupRead => Some(Capability::GroupReadCounts),
            Kind::Statistic => Some(Capability::OfflineStatistic),
            Kind::ReadUsers => Some(Capability::ReadUsers),
            Kind::Message | Kind::Read => None,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Kind::Reply => "reply",
            Kind::Message => "message",
            Kind::Delivery => "delivery",
            Kind::Read => "read",
            Kind::Channel => "channel",
            Kind::ChannelSync => "channel_sync",
            Kind::GroupRead => "group_read",
            Kind::Statistic => "statistic",
            Kind::ReadUsers => "read_users",
        }
    }
}

/// The audit kinds a protocol with `caps` cannot give.
pub(super) fn unavailable(caps: Capabilities) -> impl Iterator<Item = &'static str> {
    Kind::ALL
        .into_iter()
        .filter(move |k| k.needs().is_some_and(|c| !caps.has(c)))
        .map(Kind::name)
}

/// The running audit.
#[derive(Debug, Default)]
pub(super) struct Tally {
    kinds: [AuditKind; Kind::ALL.len()],
    refused_by_code: BTreeMap<String, u64>,
}

impl Tally {
    pub(super) fn kind(&mut self, k: Kind) -> &mut AuditKind {
        &mut self.kinds[k as usize]
    }

    /// Something expected arrived.
    pub(super) fn ok(&mut self, k: Kind) {
        let a = self.kind(k);
        a.expected += 1;
        a.arrived += 1;
    }

    /// Something expected never arrived.
    pub(super) fn lost(&mut self, k: Kind) {
        let a = self.kind(k);
        a.expected += 1;
        a.lost += 1;
    }

    /// Lost and lost in a disconnect so far, every kind together.
    pub(super) fn losses(&self) -> (u64, u64) {
        self.kinds
            .iter()
            .fold((0, 0), |(l, d), k| (l + k.lost, d + k.lost_in_disconnect))
    }

    /// Lost so far, by kind.
    pub(super) fn lost_by_kind(&self) -> [u64; Kind::ALL.len()] {
        std::array::from_fn(|i| self.kinds[i].lost)
    }

    /// Marks the losses since `before` (from [`Tally::lost_by_kind`]) as still awaited at
    /// the end of the run.
    pub(super) fn lost_at_end_since(&mut self, before: &[u64; Kind::ALL.len()]) {
        for (k, b) in self.kinds.iter_mut().zip(before) {
            k.lost_at_end += k.lost - b;
        }
    }

    /// Losses so far per kind a protocol with `caps` can give.
    pub(super) fn losses_by_kind(&self, caps: Capabilities) -> Vec<super::Loss> {
        Kind::ALL
            .iter()
            .zip(&self.kinds)
            .filter(|(k, _)| k.needs().is_none_or(|c| caps.has(c)))
            .map(|(k, a)| super::Loss {
                kind: k.name(),
                lost: a.lost,
                lost_in_disconnect: a.lost_in_disconnect,
            })
            .collect()
    }

    /// A request refused with `code`.
    pub(super) fn refused(&mut self, code: &str) {
        self.kind(Kind::Reply).refused += 1;
        *self.refused_by_code.entry(code.to_string()).or_default() += 1;
    }

    /// The report's audit (protocol errors are the driver's to fill in).
    /// Kinds a protocol with `caps` cannot give are left out.
    pub(super) fn into_audit(self, caps: Capabilities) -> Audit {
        let mut total = AuditKind::default();
        let mut by_kind = BTreeMap::new();
        for (k, a) in Kind::ALL.iter().zip(self.kinds) {
            if k.needs().is_some_and(|c| !caps.has(c)) {
                continue;
            }
            total.add(&a);
            by_kind.insert(k.name().to_string(), a);
        }
        Audit {
            total,
            by_kind,
            refused_by_code: self.refused_by_code,
            protocol_errors: BTreeMap::new(),
            drain_secs: 0.0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Kind;

    #[test]
    fn kinds_are_the_reports_list_in_its_order() {
        let names: Vec<&str> = Kind::ALL.iter().map(|k| k.name()).collect();
        assert_eq!(names, crate::report::AUDIT_KINDS);
    }
}
