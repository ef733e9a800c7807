//! The latency metrics, named by an enum rather than by positions in a string array: the
//! collector indexes its histograms with [`Metric`], reports and SLOs use [`Metric::name`].

use crate::transport::Capability;

/// One latency metric. Every one is recorded in microseconds from the moment a user would
/// see the cause (the scheduled send, the behaviour's decision to ack), so a lagging tester
/// inflates latencies instead of hiding them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Metric {
    /// Scheduled send -> `received` at the sender.
    ServerAck,
    /// Scheduled send -> the push reaches a recipient device that was online (per device).
    Message,
    /// Scheduled send -> the message is replayed to a device that logged in later.
    MessageOffline,
    /// Scheduled send -> the sender gets the delivery receipt.
    Delivery,
    /// Scheduled read (the reader's decision) -> the sender gets the read receipt.
    ReadReceipt,
    /// Scheduled send -> the sender learns it was read (read receipt or channel ack).
    Read,
    /// Scheduled conversation ack -> the peer gets the `channel` push.
    Channel,
    /// Scheduled conversation ack -> the reader's other devices get the `channel` push.
    ChannelSync,
    /// Scheduled send -> the first group read count.
    GroupReadFirst,
    /// Scheduled send -> the count reaches every reader that acked.
    GroupReadAll,
    /// One `getGroupMsgReadUser` page: request -> reply.
    ReadUsersPage,
    /// The whole reader list: first page's request -> last page's reply.
    ReadUsers,
    /// A dropped connection -> logged in again.
    Reconnect,
    /// Scheduled send -> handed to the connection (the generator's own lag).
    ScheduleLag,
    /// Scheduled ack -> handed to the connection (the ack path's own lag).
    AckLag,
}

impl Metric {
    /// Every metric, in the order a reader follows a message, the tester's own lag last.
    pub const ALL: [Metric; 15] = [
        Metric::ServerAck,
        Metric::Message,
        Metric::MessageOffline,
        Metric::Delivery,
        Metric::ReadReceipt,
        Metric::Read,
        Metric::Channel,
        Metric::ChannelSync,
        Metric::GroupReadFirst,
        Metric::GroupReadAll,
        Metric::ReadUsersPage,
        Metric::ReadUsers,
        Metric::Reconnect,
        Metric::ScheduleLag,
        Metric::AckLag,
    ];

    /// The latencies that are the server's and the network's alone (no reader's delay, no
    /// time offline): the slowest of them in a run bounds how late what is still awaited at
    /// its end may yet come (the audit's `lost_at_end`).
    pub const TRANSIT: [Metric; 5] = [
        Metric::ServerAck,
        Metric::Message,
        Metric::ReadReceipt,
        Metric::Channel,
        Metric::ChannelSync,
    ];

    /// Its name in reports, SLOs and the interval log.
    pub fn name(self) -> &'static str {
        match self {
            Metric::ServerAck => "server_ack",
            Metric::Message => "message",
            Metric::MessageOffline => "message_offline",
            Metric::Delivery => "delivery",
            Metric::ReadReceipt => "read_receipt",
            Metric::Read => "read",
            Metric::Channel => "channel",
            Metric::ChannelSync => "channel_sync",
            Metric::GroupReadFirst => "group_read_first",
            Metric::GroupReadAll => "group_read_all",
            Metric::ReadUsersPage => "read_users_page",
            Metric::ReadUsers => "read_users",
            Metric::Reconnect => "reconnect",
            Metric::ScheduleLag => "schedule_lag",
            Metric::AckLag => "ack_lag",
        }
    }

    /// The capability a protocol needs for this metric to be measured at all.
    pub fn needs(self) -> Option<Capability> {
        match self {
            Metric::ServerAck => Some(Capability::ServerAcks),
            Metric::Delivery => Some(Capability::DeliveryReceipts),
            Metric::Channel => Some(Capability::ChannelAcks),
            Metric::ChannelSync => Some(Capability::ChannelSync),
            Metric::GroupReadFirst | Metric::GroupReadAll => Some(Capability::GroupReadCounts),
            Metric::ReadUsersPage | Metric::ReadUsers => Some(Capability::ReadUsers),
            Metric::Message
            | Metric::MessageOffline
            | Metric::ReadReceipt
            | Metric::Read
            | Metric::Reconnect
            | Metric::ScheduleLag
            | Metric::AckLag => None,
        }
    }

    /// Its position in [`Metric::ALL`] (histogram arrays).
    pub fn index(self) -> usize {
        self as usize
    }

    /// The metric of this name.
    pub fn parse(name: &str) -> Option<Metric> {
        Metric::ALL.into_iter().find(|m| m.name() == name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn indexes_names_and_the_reports_list_agree() {
        for (i, m) in Metric::ALL.iter().enumerate() {
            assert_eq!(m.index(), i);
            assert_eq!(Metric::parse(m.name()), Some(*m));
        }
        let names: Vec<&str> = Metric::ALL.iter().map(|m| m.name()).collect();
        assert_eq!(names, crate::report::LATENCY_METRICS);
    }
}
