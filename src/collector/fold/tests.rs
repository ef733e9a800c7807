//! Folding tests: feed a known event sequence, check latencies, economics and the audit.

use super::*;
use crate::collector::{AckKind, Answer, ReceiptKind, ReqKind};
use crate::transport::{Capabilities, Chat, MsgId, Refusal};

pub(super) const ALICE: u32 = 0;
pub(super) const BOB: u32 = 1;
pub(super) const CAROL: u32 = 2;
pub(super) const DAVE: u32 = 3;

pub(super) fn ms(v: u64) -> Micros {
    v * 1000
}

pub(super) fn key(sender: u32, seq: u64) -> MsgKey {
    MsgKey {
        sender,
        seq: u32::try_from(seq).unwrap(),
    }
}

/// Four users, one group (0) of alice, bob and carol; `devices` each.
pub(super) fn state(devices: u8) -> State {
    State::new(
        std::time::SystemTime::now(),
        Settings {
            audience: Audience {
                groups: vec![[ALICE, BOB, CAROL].into()],
                users: 4,
                devices,
            },
            horizon: ms(60_000),
            hlog_path: None,
            events_path: None,
            faults: Vec::new(),
            disconnect_grace: ms(1000),
            capabilities: Capabilities::ALL,
            live_window_secs: 3,
        },
    )
}

pub(super) fn login(s: &mut State, user: u32, dev: u8, at: Micros) {
    s.fold(Event::Connected {
        user,
        dev,
        at,
        first: true,
        reconnect: None,
    });
}

pub(super) fn send(s: &mut State, k: MsgKey, chat: Chat, conv: u32, at: Micros) {
    s.fold(Event::Sent {
        key: k,
        chat,
        conv,
        scheduled: at,
        at: at + ms(2),
        waited: false,
    });
}

pub(super) fn reply(s: &mut State, user: u32, kind: ReqKind, k: Option<MsgKey>, conv: u32, answer: Answer, at: Micros) {
    s.fold(Event::Replied {
        user,
        kind,
        key: k,
        conv,
        answer,
        at,
    });
}

pub(super) fn accept(s: &mut State, k: MsgKey, conv: u32, mid: u64, at: Micros) {
    let answer = Answer::Accepted {
        mid: mid.into(),
        group_ack: Some(true),
        duplicate: false,
    };
    reply(s, k.sender, ReqKind::Send, Some(k), conv, answer, at);
}

pub(super) fn push(s: &mut State, user: u32, dev: u8, k: MsgKey, mid: u64, at: Micros) {
    s.fold(Event::MessagePush {
        user,
        dev,
        key: Some(k),
        mid: mid.into(),
        at,
    });
}

pub(super) fn ack(s: &mut State, reader: u32, kind: AckKind, k: Option<MsgKey>, conv: u32, scheduled: Micros) {
    s.fold(Event::AckSent {
        reader,
        kind,
        key: k,
        conv,
        scheduled,
        at: scheduled + ms(1),
        waited: false,
    });
    reply(s, reader, ReqKind::Ack(kind), k, conv, Answer::Ok, scheduled + ms(3));
}

#[allow(clippy::too_many_arguments)]
pub(super) fn receipt(
    s: &mut State,
    user: u32,
    dev: u8,
    kind: ReceiptKind,
    mid: u64,
    from: u32,
    count: Option<u64>,
    at: Micros,
) {
    s.fold(Event::Receipt {
        user,
        dev,
        kind,
        mid: mid.into(),
        from,
        count,
        at,
    });
}

/// alice sends bob two 1:1 messages and the group one with receipts; bob acks delivery of
/// both, reads the first with a read receipt and covers the second with a channel ack; one
/// delivery push arrives twice; bob and carol read the group message, carol's count is lost.
fn scenario() -> Folded {
    let mut s = state(1);
    for u in [ALICE, BOB, CAROL] {
        login(&mut s, u, 0, 0);
    }
    let (m1, m2, g1) = (key(ALICE, 1), key(ALICE, 2), key(ALICE, 3));
    send(&mut s, m1, Chat::Single, BOB, ms(10));
    send(&mut s, m2, Chat::Single, BOB, ms(20));
    send(&mut s, g1, Chat::Group, 0, ms(30));
    accept(&mut s, m1, BOB, 100, ms(15));
    accept(&mut s, m2, BOB, 101, ms(25));
    accept(&mut s, g1, 0, 102, ms(35));
    push(&mut s, BOB, 0, m1, 100, ms(16));
    push(&mut s, BOB, 0, m2, 101, ms(26));
    push(&mut s, BOB, 0, g1, 102, ms(36));
    push(&mut s, CAROL, 0, g1, 102, ms(36));
    for (k, mid) in [(m1, 100), (m2, 101)] {
        ack(&mut s, BOB, AckKind::Delivery, Some(k), 0, ms(40));
        receipt(&mut s, ALICE, 0, ReceiptKind::Delivery, mid, BOB, None, ms(50));
    }
    receipt(&mut s, ALICE, 0, ReceiptKind::Delivery, 100, BOB, None, ms(51));
    s.fold(Event::Read { group: false });
    ack(&mut s, BOB, AckKind::Read, Some(m1), 0, ms(60));
    receipt(&mut s, ALICE, 0, ReceiptKind::Read, 100, BOB, None, ms(66));
    s.fold(Event::Read { group: false });
    ack(&mut s, BOB, AckKind::Channel, Some(m2), ALICE, ms(70));
    s.fold(Event::ChannelPush {
        user: ALICE,
        dev: 0,
        from: BOB,
        to: ALICE,
        at: ms(74),
    });
    for reader in [BOB, CAROL] {
        s.fold(Event::Read { group: true });
        ack(&mut s, reader, AckKind::GroupRead, Some(g1), 0, ms(80));
    }
    receipt(&mut s, ALICE, 0, ReceiptKind::GroupRead, 102, BOB, Some(1), ms(85));
    // A read receipt nobody asked for, and a refused frame.
    receipt(&mut s, ALICE, 0, ReceiptKind::Read, 999, BOB, None, ms(90));
    reply(
        &mut s,
        BOB,
        ReqKind::Ack(AckKind::Read),
        None,
        0,
        Answer::Refused(Refusal {
            code: "rate_limited",
            rate_limited: true,
        }),
        ms(95),
    );
    s.finish()
}

#[test]
fn latencies_are_measured_from_the_right_starts() {
    let f = scenario();
    let l = |m: &str| f.latencies[m].clone();
    assert_eq!(l("server_ack").count, 3);
    // Corrected from the scheduled time (5 ms), uncorrected from the actual send (3 ms).
    assert!((l("server_ack").min - 5.0).abs() < 0.01);
    assert!((l("server_ack").uncorrected.unwrap().min - 3.0).abs() < 0.01);
    assert_eq!(l("message").count, 4, "one per recipient device");
    assert!((l("message").min - 6.0).abs() < 0.01);
    assert_eq!(l("delivery").count, 2, "one per message, not per push");
    assert_eq!(l("read_receipt").count, 2, "the 1:1 read and bob's group read");
    // From the reader's decision (60 ms) to the push (66 ms), not from when the ack left.
    assert!((l("read_receipt").min - 5.0).abs() < 0.01);
    assert!((l("read_receipt").max - 6.0).abs() < 0.05);
    assert_eq!(
        l("read").count,
        2,
        "message 1 by its receipt, message 2 by the channel ack"
    );
    assert!(
        (l("read").min - 54.0).abs() < 0.1,
        "message 2 scheduled at 20 ms, learned at 74 ms"
    );
    assert!(
        (l("read").max - 56.0).abs() < 0.1,
        "message 1 scheduled at 10 ms, learned at 66 ms"
    );
    assert_eq!(l("channel").count, 1);
    assert!((l("channel").p50 - 4.0).abs() < 0.01);
    assert_eq!(l("group_read_first").count, 1);
    assert_eq!(l("group_read_all").count, 0, "carol's count never came");
    assert_eq!(l("schedule_lag").count, 3);
    assert!((l("ack_lag").max - 1.0).abs() < 0.01);
}

#[test]
fn the_audit_counts_every_kind() {
    let f = scenario();
    let k = |name: &str| f.audit.by_kind[name].clone();
    assert_eq!(
        (k("reply").expected, k("reply").arrived, k("reply").refused),
        (10, 10, 1)
    );
    assert_eq!(f.audit.refused_by_code["rate_limited"], 1);
    assert_eq!(
        (k("message").expected, k("message").arrived, k("message").lost),
        (4, 4, 0)
    );
    assert_eq!(
        (k("delivery").expected, k("delivery").arrived, k("delivery").duplicated),
        (2, 2, 1)
    );
    assert_eq!((k("read").expected, k("read").arrived, k("read").unexpected), (1, 1, 1));
    assert_eq!(
        (k("group_read").expected, k("group_read").arrived, k("group_read").lost),
        (2, 1, 1)
    );
    assert_eq!((k("channel").expected, k("channel").arrived), (1, 1));
    assert_eq!(f.audit.total.lost, 1);
    assert_eq!(f.rate_limited, 1);
    let kinds: Vec<&str> = f.audit.by_kind.keys().map(String::as_str).collect();
    assert_eq!(
        kinds,
        [
            "channel",
            "channel_sync",
            "delivery",
            "group_read",
            "message",
            "read",
            "read_users",
            "reply",
            "statistic"
        ]
    );
}

#[test]
fn ack_economics_compare_with_one_ack_per_read() {
    let f = scenario();
    let (one, group) = f.economics;
    assert_eq!((one.messages_read, one.read_acks, one.channel_acks), (2, 1, 1));
    assert_eq!(one.saving_pct, 0.0);
    assert_eq!((group.messages_read, group.read_acks), (2, 2));
}

#[test]
fn missing_pushes_are_lost_unless_their_device_dropped_or_never_came_back() {
    let mut s = state(2);
    for u in [ALICE, BOB, CAROL] {
        login(&mut s, u, 0, 0);
        login(&mut s, u, 1, 0);
    }
    // To bob: device 0 gets it, device 1 does not (lost).
    let m1 = key(ALICE, 1);
    send(&mut s, m1, Chat::Single, BOB, ms(10));
    accept(&mut s, m1, BOB, 1, ms(12));
    push(&mut s, BOB, 0, m1, 1, ms(13));
    push(&mut s, BOB, 0, m1, 1, ms(14));
    // To carol: her device 1 drops right after (lost in the disconnect).
    let m2 = key(ALICE, 2);
    send(&mut s, m2, Chat::Single, CAROL, ms(20));
    accept(&mut s, m2, CAROL, 2, ms(22));
    push(&mut s, CAROL, 0, m2, 2, ms(23));
    s.fold(Event::Disconnected {
        user: CAROL,
        dev: 1,
        at: ms(24),
        expected: false,
    });
    // To dave, offline all run: not due.
    let m3 = key(ALICE, 3);
    send(&mut s, m3, Chat::Single, DAVE, ms(30));
    accept(&mut s, m3, DAVE, 3, ms(32));
    // Never confirmed to alice: its push is counted, nothing is owed.
    let m4 = key(ALICE, 4);
    send(&mut s, m4, Chat::Single, BOB, ms(40));
    push(&mut s, BOB, 1, m4, 4, ms(43));
    // A push of a message never sent, and a stray reply.
    push(&mut s, BOB, 0, key(ALICE, 99), 99, ms(50));
    s.fold(Event::StrayReply {
        user: BOB,
        duplicated: true,
        refused: None,
    });
    s.fold(Event::Unanswered {
        user: BOB,
        kind: ReqKind::Ping,
        in_disconnect: false,
        left: 0,
    });
    let f = s.finish();
    let m = &f.audit.by_kind["message"];
    assert_eq!(m.lost, 1, "bob's device 1");
    assert_eq!(m.lost_in_disconnect, 1, "carol's device 1");
    assert_eq!(m.not_due, 1, "dave");
    assert_eq!(m.duplicated, 1, "bob's device 0 twice");
    assert_eq!(m.unexpected, 1, "never sent");
    assert_eq!(m.arrived, 3, "bob d0, carol d0, and the unconfirmed one");
    let r = &f.audit.by_kind["reply"];
    assert_eq!((r.duplicated, r.lost), (1, 1));
    assert_eq!(f.latencies["message_offline"].count, 0);
}

#[test]
fn conversation_acks_reach_the_peer_and_the_readers_other_devices() {
    let mut s = state(2);
    for u in [ALICE, BOB] {
        login(&mut s, u, 0, 0);
        login(&mut s, u, 1, 0);
    }
    ack(&mut s, BOB, AckKind::Channel, None, ALICE, ms(10));
    for dev in [0, 1] {
        s.fold(Event::ChannelPush {
            user: ALICE,
            dev,
            from: BOB,
            to: ALICE,
            at: ms(15),
        });
    }
    s.fold(Event::ChannelPush {
        user: BOB,
        dev: 1,
        from: BOB,
        to: ALICE,
        at: ms(16),
    });
    // A second ack whose sync push never comes.
    ack(&mut s, BOB, AckKind::Channel, None, ALICE, ms(20));
    let f = s.finish();
    let (c, sync) = (&f.audit.by_kind["channel"], &f.audit.by_kind["channel_sync"]);
    assert_eq!((c.expected, c.arrived, c.lost, c.unexpected), (2, 1, 1, 0));
    assert_eq!((sync.expected, sync.arrived, sync.lost), (2, 1, 1));
    assert!((f.latencies["channel_sync"].p50 - 6.0).abs() < 0.01);
}

#[test]
fn an_offline_sender_is_owed_the_latest_group_count_at_its_next_login() {
    let mut s = state(1);
    for u in [ALICE, BOB, CAROL] {
        login(&mut s, u, 0, 0);
    }
    let g1 = key(ALICE, 1);
    send(&mut s, g1, Chat::Group, 0, ms(10));
    accept(&mut s, g1, 0, 5, ms(12));
    s.fold(Event::Disconnected {
        user: ALICE,
        dev: 0,
        at: ms(20),
        expected: true,
    });
    ack(&mut s, BOB, AckKind::GroupRead, Some(g1), 0, ms(30));
    login(&mut s, ALICE, 0, ms(40));
    s.fold(Event::Statistic {
        user: ALICE,
        counts: vec![(MsgId::from(5), 1)],
        at: ms(41),
    });
    let f = s.finish();
    let st = &f.audit.by_kind["statistic"];
    assert_eq!((st.expected, st.arrived, st.lost), (1, 1, 0));
    let g = &f.audit.by_kind["group_read"];
    assert_eq!((g.expected, g.arrived), (1, 1));
}

#[test]
fn reader_lists_must_hold_every_accepted_reader_and_nobody_else() {
    let mut s = state(1);
    for u in [ALICE, BOB, CAROL, DAVE] {
        login(&mut s, u, 0, 0);
    }
    let g1 = key(ALICE, 1);
    send(&mut s, g1, Chat::Group, 0, ms(10));
    accept(&mut s, g1, 0, 5, ms(12));
    ack(&mut s, BOB, AckKind::GroupRead, Some(g1), 0, ms(20));
    ack(&mut s, CAROL, AckKind::GroupRead, Some(g1), 0, ms(20));
    // Queried after both reads were accepted; bob listed twice, carol missing, dave never read.
    s.fold(Event::ReadUsers {
        sender: ALICE,
        key: g1,
        sent: ms(30),
        done: ms(34),
        users: vec![BOB, BOB, DAVE],
        unknown: 1,
        pages: vec![ms(2), ms(2)],
    });
    let f = s.finish();
    let r = &f.audit.by_kind["read_users"];
    assert_eq!((r.expected, r.arrived, r.lost), (2, 1, 1));
    assert_eq!((r.duplicated, r.unexpected), (1, 2), "dave, and an id of no user");
    assert_eq!(f.latencies["read_users_page"].count, 2);
    assert!((f.latencies["read_users"].p50 - 4.0).abs() < 0.01);
}

/// A channel ack covers the newest message the reader had received and what its sender sent
/// before, not a message still on its way: the sender learns that one was read only from a
/// later ack. (No comparison of server ids: they are opaque.)
#[test]
fn a_channel_ack_covers_up_to_the_newest_message_the_reader_had() {
    let mut s = state(1);
    for u in [ALICE, BOB] {
        login(&mut s, u, 0, 0);
    }
    let (m1, m2) = (key(ALICE, 1), key(ALICE, 2));
    for (k, mid, t) in [(m1, 7, 10), (m2, 3, 20)] {
        send(&mut s, k, Chat::Single, BOB, ms(t));
        accept(&mut s, k, BOB, mid, ms(t + 2));
    }
    push(&mut s, BOB, 0, m1, 7, ms(13));
    // Bob acks having received only m1; m2 (a smaller server id) arrives later.
    ack(&mut s, BOB, AckKind::Channel, Some(m1), ALICE, ms(30));
    push(&mut s, BOB, 0, m2, 3, ms(31));
    let channel_push = |s: &mut State, at| {
        s.fold(Event::ChannelPush {
            user: ALICE,
            dev: 0,
            from: BOB,
            to: ALICE,
            at,
        })
    };
    channel_push(&mut s, ms(35));
    ack(&mut s, BOB, AckKind::Channel, Some(m2), ALICE, ms(50));
    channel_push(&mut s, ms(56));
    let f = s.finish();
    let read = &f.latencies["read"];
    assert_eq!(read.count, 2);
    assert!(
        (read.min - 25.0).abs() < 0.1,
        "m1: sent at 10 ms, learned at 35 ms: {read:?}"
    );
    assert!(
        (read.max - 36.0).abs() < 0.1,
        "m2: sent at 20 ms, learned at 56 ms: {read:?}"
    );
}

/// What a protocol cannot give is left out (reported as not available), never reported as
/// zero; the totals hold only what is audited.
#[test]
fn metrics_and_kinds_a_protocol_cannot_give_are_left_out() {
    use crate::transport::Capability;
    let caps = Capabilities::without(&[Capability::ServerAcks, Capability::ReadUsers]);
    assert_eq!(
        crate::collector::unavailable(caps),
        ["server_ack", "read_users_page", "read_users", "reply"]
    );
    let mut s = state(1);
    s.capabilities = caps;
    login(&mut s, ALICE, 0, 0);
    send(&mut s, key(ALICE, 1), Chat::Single, BOB, ms(10));
    let f = s.finish();
    for name in ["server_ack", "read_users", "read_users_page"] {
        assert!(!f.latencies.contains_key(name), "{name}");
    }
    assert!(f.latencies.contains_key("read_receipt"));
    assert!(!f.audit.by_kind.contains_key("reply") && !f.audit.by_kind.contains_key("read_users"));
    assert!(f.audit.by_kind.contains_key("message"));
}

/// A protocol without conversation acks carries one as the read receipt of the newest message
/// it covers (XMPP: one `displayed` marker): that receipt counts as the channel ack's push.
#[test]
fn a_read_receipt_of_the_newest_covered_message_is_the_channel_acks_push() {
    let mut s = state(1);
    for u in [ALICE, BOB] {
        login(&mut s, u, 0, 0);
    }
    let (m1, m2) = (key(ALICE, 1), key(ALICE, 2));
    for (k, mid, t) in [(m1, 1, 10), (m2, 2, 20)] {
        send(&mut s, k, Chat::Single, BOB, ms(t));
        accept(&mut s, k, BOB, mid, ms(t + 2));
        push(&mut s, BOB, 0, k, mid, ms(t + 3));
    }
    ack(&mut s, BOB, AckKind::Channel, Some(m2), ALICE, ms(30));
    receipt(&mut s, ALICE, 0, ReceiptKind::Read, 2, BOB, None, ms(35));
    let f = s.finish();
    assert_eq!(f.latencies["channel"].count, 1);
    assert_eq!(f.latencies["read"].count, 2, "both messages learned read");
    assert_eq!(f.latencies["read_receipt"].count, 0, "no per-message read");
    let (c, r) = (&f.audit.by_kind["channel"], &f.audit.by_kind["read"]);
    assert_eq!((c.expected, c.arrived, c.unexpected), (1, 1, 0));
    assert_eq!((r.unexpected, r.duplicated), (0, 0));
}

/// Without offline group messages (XMPP MUC), a group message is owed only to members online
/// when it was sent: one that logs in later and gets nothing has lost nothing.
#[test]
fn group_messages_are_owed_to_offline_members_only_where_the_protocol_keeps_them() {
    use crate::transport::Capability;
    for (caps, lost) in [
        (Capabilities::ALL, 1),
        (Capabilities::without(&[Capability::OfflineGroupMessages]), 0),
    ] {
        let mut s = state(1);
        s.capabilities = caps;
        for u in [ALICE, BOB] {
            login(&mut s, u, 0, 0);
        }
        let g1 = key(ALICE, 1);
        send(&mut s, g1, Chat::Group, 0, ms(10));
        accept(&mut s, g1, 0, 1, ms(12));
        push(&mut s, BOB, 0, g1, 1, ms(13));
        login(&mut s, CAROL, 0, ms(50));
        let m = &s.finish().audit.by_kind["message"];
        assert_eq!((m.arrived, m.lost), (1, lost), "{caps:?}");
    }
}
