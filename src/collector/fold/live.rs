//! The live figures of a snapshot beyond the progress line's: totals so far, audit losses so
//! far and the latency window, for the live metrics exporter. Answered on the collector
//! thread, so it only copies counters and the window's quantiles (worked out as each second
//! closes), never walks histograms or records.

use super::State;
use crate::collector::{AckKind, Snapshot};

impl State {
    /// The live part of a snapshot (the progress line's fields left at their defaults).
    pub(super) fn live_snapshot(&self) -> Snapshot {
        let (window_secs, window) = self.intervals.window();
        Snapshot {
            sent: self.sent,
            acks: AckKind::ALL.iter().map(|k| (*k, self.acks[k.index()])).collect(),
            receipts: self.receipts.clone(),
            errors_by_code: self.errors.clone(),
            connect_failed: self.conn.failed,
            dropped: self.conn.dropped,
            reconnects: self.conn.reconnects,
            lost: self.tally.losses_by_kind(self.capabilities),
            window_secs,
            window: window.to_vec(),
            ..Snapshot::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::collector::{Audience, Event, Metric, ReqKind, Settings};
    use crate::sim::behaviour::MsgKey;
    use crate::transport::{Capabilities, Chat};

    const SEC: u64 = 1_000_000;

    fn sent(s: &mut State, seq: u64, at: u64, lag: u64) {
        s.fold(Event::Sent {
            key: MsgKey {
                sender: 0,
                seq: u32::try_from(seq).unwrap(),
            },
            chat: if seq.is_multiple_of(2) {
                Chat::Group
            } else {
                Chat::Single
            },
            conv: 0,
            scheduled: at - lag,
            at,
            waited: false,
        });
    }

    #[test]
    fn totals_losses_and_the_window_of_closed_seconds() {
        let mut s = State::new(
            std::time::SystemTime::now(),
            Settings {
                audience: Audience {
                    groups: vec![[0, 1].into()],
                    users: 2,
                    devices: 1,
                },
                horizon: 60 * SEC,
                capabilities: Capabilities::ALL,
                live_window_secs: 2,
                ..Settings::default()
            },
        );
        sent(&mut s, 1, SEC, 1_000);
        sent(&mut s, 2, SEC + 10, 40_000);
        sent(&mut s, 3, 2 * SEC, 3_000);
        for kind in [AckKind::Read, AckKind::Read, AckKind::Channel] {
            s.fold(Event::AckSent {
                reader: 1,
                kind,
                key: None,
                conv: 0,
                scheduled: 2 * SEC,
                at: 2 * SEC,
                waited: false,
            });
        }
        s.fold(Event::ConnectFailed {
            user: 1,
            error: "refused".into(),
        });
        s.fold(Event::Unanswered {
            user: 0,
            kind: ReqKind::Ping,
            in_disconnect: false,
            left: 0,
        });
        // Nothing closed yet: no window.
        assert!(s.snapshot(6 * SEC).window.is_empty());
        // Second 6 closes seconds 1 and 2 (3 s kept open); only they are in the window.
        sent(&mut s, 4, 6 * SEC, 900_000);
        let snap = s.snapshot(6 * SEC);
        assert_eq!((snap.sent, snap.messages), ((2, 2), 4));
        let acks: Vec<(&str, u64)> = snap.acks.iter().map(|(k, n)| (k.name(), *n)).collect();
        assert_eq!(
            acks,
            [
                ("delivery", 0),
                ("read", 2),
                ("group_read", 0),
                ("channel", 1),
                ("group_channel", 0)
            ]
        );
        assert_eq!(snap.connect_failed, 1);
        let reply = snap.lost.iter().find(|l| l.kind == "reply").unwrap();
        assert_eq!((reply.lost, snap.lost.iter().map(|l| l.lost).sum::<u64>()), (1, 1));
        assert_eq!(snap.window_secs, 2);
        let lag = snap.window.iter().find(|w| w.metric == Metric::ScheduleLag).unwrap();
        assert_eq!(lag.samples, 3, "{lag:?}");
        // The max is second 1's 40 ms; second 6's 900 ms is not closed yet.
        assert!((39_000..=41_000).contains(&lag.quantiles_us[4]), "{lag:?}");
        assert!(lag.quantiles_us[0] < 3_100, "{lag:?}");
    }
}
