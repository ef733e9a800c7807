//! Folding tests: feed a known event sequence, check latencies, economics and the audit.

use std::time::Duration;

use super::*;
use crate::protocol::ErrorCode;

fn t(start: Instant, ms: u64) -> Instant {
    start + Duration::from_millis(ms)
}

fn key(sender: u32, seq: u64) -> MsgKey {
    MsgKey { sender, seq }
}

/// alice (0) sends two 1:1 messages to bob (1); bob acks delivery of both, reads the first
/// with a read receipt and covers the second with a channel ack; one delivery push arrives
/// twice; a group message from alice gets two readers; carol (2) acks but her receipt is lost.
fn fold_scenario() -> Folded {
    let start = Instant::now();
    let mut s = State::new(start, 16);
    let sent = |s: &mut State, seq, chat, conv, ms| {
        s.fold(Event::Sent {
            key: key(0, seq),
            chat,
            conv,
            scheduled: t(start, ms),
            at: t(start, ms + 2),
            waited_login: false,
        })
    };
    sent(&mut s, 1, ChatType::Single, 1, 0);
    sent(&mut s, 2, ChatType::Single, 1, 10);
    sent(&mut s, 3, ChatType::Group, 0, 20);
    for (seq, mid, ms) in [(1, 100, 5), (2, 101, 15), (3, 102, 25)] {
        s.fold(Event::Accepted {
            key: key(0, seq),
            mid,
            at: t(start, ms),
            group_ack: (seq == 3).then_some(true),
        });
    }
    for (seq, mid) in [(1u64, 100u64), (2, 101)] {
        s.fold(Event::AckSent {
            reader: 1,
            kind: AckKind::Delivery,
            key: Some(key(0, seq)),
            conv: 0,
            at: t(start, 30),
        });
        s.fold(Event::Receipt {
            user: 0,
            kind: ReceiptKind::Delivery,
            mid,
            from: 1,
            count: None,
            at: t(start, 40),
        });
    }
    s.fold(Event::Receipt {
        user: 0,
        kind: ReceiptKind::Delivery,
        mid: 100,
        from: 1,
        count: None,
        at: t(start, 41),
    });
    s.fold(Event::Read { group: false });
    s.fold(Event::AckSent {
        reader: 1,
        kind: AckKind::Read,
        key: Some(key(0, 1)),
        conv: 0,
        at: t(start, 50),
    });
    s.fold(Event::Receipt {
        user: 0,
        kind: ReceiptKind::Read,
        mid: 100,
        from: 1,
        count: None,
        at: t(start, 53),
    });
    s.fold(Event::Read { group: false });
    s.fold(Event::AckSent {
        reader: 1,
        kind: AckKind::Channel,
        key: None,
        conv: 0,
        at: t(start, 60),
    });
    s.fold(Event::ChannelPush {
        user: 0,
        from: 1,
        id: 104,
        at: t(start, 64),
    });
    for (reader, ms) in [(1u32, 70u64), (2, 80)] {
        s.fold(Event::Read { group: true });
        s.fold(Event::AckSent {
            reader,
            kind: AckKind::GroupRead,
            key: Some(key(0, 3)),
            conv: 0,
            at: t(start, ms),
        });
    }
    s.fold(Event::Receipt {
        user: 0,
        kind: ReceiptKind::GroupRead,
        mid: 102,
        from: 1,
        count: Some(1),
        at: t(start, 75),
    });
    s.fold(Event::Receipt {
        user: 0,
        kind: ReceiptKind::Read,
        mid: 999,
        from: 1,
        count: None,
        at: t(start, 90),
    });
    s.fold(Event::Error {
        code: ErrorCode::RateLimited,
        op: None,
        at: t(start, 95),
    });
    s.finish()
}

#[test]
fn latencies_are_measured_from_the_right_starts() {
    let f = fold_scenario();
    let l = |m: &str| f.latencies[m].clone();
    assert_eq!(l("server_ack").count, 3);
    // Corrected from the scheduled time (5 ms), uncorrected from the actual send (3 ms).
    assert!((l("server_ack").min - 5.0).abs() < 0.01);
    assert!((l("server_ack").uncorrected.unwrap().min - 3.0).abs() < 0.01);
    assert_eq!(l("delivery").count, 2, "one per message, not per push");
    assert_eq!(l("read_receipt").count, 2, "the 1:1 read and alice's group read by bob");
    assert!((l("read_receipt").min - 3.0).abs() < 0.01);
    assert_eq!(
        l("read").count,
        2,
        "message 1 by its read receipt, message 2 by the channel ack"
    );
    assert!(
        (l("read").max - 54.0).abs() < 0.1,
        "message 2 scheduled at 10 ms, learned at 64 ms"
    );
    assert_eq!(l("channel").count, 1);
    assert!((l("channel").p50 - 4.0).abs() < 0.01);
    assert_eq!(l("group_read_first").count, 1);
    assert_eq!(l("group_read_all").count, 0, "carol's receipt never came");
    assert_eq!(l("schedule_lag").count, 3);
}

#[test]
fn the_audit_counts_lost_duplicated_and_unexpected() {
    let f = fold_scenario();
    let k = |name: &str| f.audit.by_kind[name].clone();
    assert_eq!(
        (k("delivery").expected, k("delivery").arrived, k("delivery").duplicated),
        (2, 2, 1)
    );
    assert_eq!((k("read").expected, k("read").arrived, k("read").unexpected), (1, 1, 1));
    assert_eq!(
        (k("group_read").expected, k("group_read").arrived, k("group_read").lost),
        (2, 1, 1)
    );
    assert_eq!(
        (k("channel").expected, k("channel").arrived, k("channel").lost),
        (1, 1, 0)
    );
    assert_eq!(f.audit.total.lost, 1);
    assert_eq!(f.rate_limited, 1);
}

#[test]
fn ack_economics_compare_with_one_ack_per_read() {
    let f = fold_scenario();
    let (one, group) = f.economics;
    assert_eq!((one.messages_read, one.read_acks, one.channel_acks), (2, 1, 1));
    assert_eq!(one.saving_pct, 0.0);
    assert_eq!((group.messages_read, group.read_acks), (2, 2));
}
