//! The driver's mapping without sockets: ops to stanzas, XEP-0198 acks and error stanzas to
//! replies, messages and markers to events, group readers counted once each.

use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;

use super::link::{Link, OWN_GROUP_MESSAGES, Step, Waiting, XmppCounters, condition_name, qualified, wire_id};
use super::outbound::Outbound;
use super::parser::StreamParser;
use super::session::{CloseReason, Event};
use super::stanza::Incoming;
use crate::transport::{Chat, FrameStats, Inbound, MsgId, Op, Refusal, Reply};

fn link(sm: bool) -> (Link, Arc<FrameStats>, Arc<XmppCounters>) {
    let stats = Arc::new(super::meter::frame_stats());
    let counters = Arc::new(XmppCounters::default());
    let link = Link::new(
        Arc::from("u1"),
        "localhost",
        "conference.localhost",
        sm,
        stats.clone(),
        counters.clone(),
    );
    (link, stats, counters)
}

/// A message stanza as the session would hand it over.
fn message(xml: &str) -> Event {
    let mut p = StreamParser::default();
    p.feed(b"<stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams'>");
    p.feed(xml.as_bytes());
    p.next_item().unwrap();
    match Incoming::from_item(p.next_item().unwrap().expect("one stanza")) {
        Incoming::Message(m) => Event::Message(m),
        other => panic!("{other:?}"),
    }
}

fn events(link: &mut Link, event: Event) -> Vec<Inbound> {
    let mut out = Vec::new();
    link.on_event(event, &mut out);
    out
}

/// Plans and "sends" `op` as stanza `n`; returns the stanza and any immediate answer.
fn send(link: &mut Link, req: u64, n: u32, op: Op) -> (Outbound, Option<Reply>) {
    match link.plan(req, &op) {
        Step::Send { stanza, id, waiting } => {
            let answer = link.sent(n, id, waiting);
            (stanza, answer)
        }
        Step::Answer(reply) => panic!("{op:?} answered at once: {reply:?}"),
    }
}

fn reply(req: u64, reply: Reply) -> Inbound {
    Inbound::Reply { req: Some(req), reply }
}

fn group_send(id: &str) -> Op {
    Op::Send {
        id: id.into(),
        chat: Chat::Group,
        to: Arc::from("g1"),
        body: "b".into(),
        allow_group_ack: true,
    }
}

#[test]
fn ops_become_stanzas_with_ids_that_answers_come_back_with() {
    let (link, ..) = link(true);
    let send = Op::Send {
        id: "t.1".into(),
        chat: Chat::Single,
        to: Arc::from("u2"),
        body: "hi".into(),
        allow_group_ack: false,
    };
    let Step::Send { stanza, id, waiting } = link.plan(1, &send) else {
        panic!()
    };
    assert_eq!(
        stanza,
        Outbound::Chat {
            to: "u2@localhost".into(),
            id: "t.1".into(),
            body: "hi".into(),
            receipt: true,
            markable: true
        }
    );
    assert_eq!(id, "t.1");
    let accepted = Reply::Accepted {
        mid: MsgId::new("u1/t.1"),
        group_ack: None,
        duplicate: false,
    };
    assert_eq!(
        waiting,
        Waiting::Ack {
            req: 1,
            reply: accepted
        }
    );
    let Step::Send { stanza, waiting, .. } = link.plan(2, &group_send("t.2")) else {
        panic!()
    };
    assert_eq!(
        stanza,
        Outbound::GroupChat {
            room: "g1@conference.localhost".into(),
            id: "t.2".into(),
            body: "b".into(),
            markable: true
        }
    );
    assert_eq!(
        waiting,
        Waiting::Reflection {
            req: 2,
            allow_group_ack: true
        }
    );
    // Receipts and markers name the message by its XMPP id and carry their own.
    let delivery = Op::Delivery {
        mid: MsgId::new("u2/m.9"),
        to: Arc::from("u2"),
    };
    let Step::Send { stanza, id, .. } = link.plan(3, &delivery) else {
        panic!()
    };
    assert_eq!(
        (stanza, id.as_str()),
        (
            Outbound::Received {
                to: "u2@localhost".into(),
                id: "m.9".into(),
                own_id: Some("r3".into())
            },
            "r3"
        )
    );
    let read = Op::Read {
        chat: Chat::Group,
        mid: MsgId::new("g1/S9"),
        to: Arc::from("g1"),
    };
    let Step::Send { stanza, .. } = link.plan(4, &read) else {
        panic!()
    };
    assert_eq!(
        stanza,
        Outbound::Displayed {
            to: "g1@conference.localhost".into(),
            id: "S9".into(),
            groupchat: true,
            own_id: Some("r4".into())
        }
    );
    let channel = Op::Channel {
        chat: Chat::Single,
        to: Arc::from("u2"),
        newest: Some(MsgId::new("u2/m.12")),
    };
    let Step::Send { stanza, .. } = link.plan(5, &channel) else {
        panic!()
    };
    assert!(
        matches!(stanza, Outbound::Displayed { ref to, ref id, groupchat: false, .. } if to == "u2@localhost" && id == "m.12")
    );
    let nothing_read = Op::Channel {
        chat: Chat::Group,
        to: Arc::from("g1"),
        newest: None,
    };
    assert_eq!(link.plan(6, &nothing_read), Step::Answer(Reply::Acked));
    let create = Op::CreateGroup {
        group: Arc::from("g2"),
        members: vec![],
        admins: vec![],
    };
    assert!(matches!(
        link.plan(7, &create),
        Step::Answer(Reply::Error {
            refusal: Refusal {
                code: "feature-not-implemented",
                rate_limited: false
            },
            ..
        })
    ));
    let Step::Send { stanza, waiting, .. } = link.plan(8, &Op::Ping) else {
        panic!()
    };
    assert_eq!(
        (stanza, waiting),
        (
            Outbound::Ping {
                to: "localhost".into(),
                id: "r8".into()
            },
            Waiting::Pong { req: 8 }
        )
    );
}

#[test]
fn acks_answer_what_they_cover_in_order_even_across_the_wrap() {
    let (mut link, ..) = link(true);
    let read = |n: &str| Op::Read {
        chat: Chat::Single,
        mid: MsgId::new(&format!("u2/{n}")),
        to: Arc::from("u2"),
    };
    for (req, n) in [(1, u32::MAX - 1), (2, u32::MAX), (3, 0)] {
        assert_eq!(send(&mut link, req, n, read("m")).1, None, "waits for its ack");
    }
    assert_eq!(events(&mut link, Event::SmAck { h: u32::MAX - 2 }), []);
    assert_eq!(
        events(&mut link, Event::SmAck { h: u32::MAX }),
        [reply(1, Reply::Acked), reply(2, Reply::Acked)]
    );
    assert_eq!(events(&mut link, Event::SmAck { h: 0 }), [reply(3, Reply::Acked)]);
    assert_eq!(events(&mut link, Event::SmAck { h: 0 }), [], "answered once");
}

#[test]
fn without_stream_management_a_send_is_answered_when_sent() {
    let (mut link, ..) = link(false);
    let op = Op::Delivery {
        mid: MsgId::new("u2/m"),
        to: Arc::from("u2"),
    };
    assert_eq!(send(&mut link, 1, 2, op).1, Some(Reply::Acked));
    let (_, answer) = send(&mut link, 2, 3, group_send("t.2"));
    assert_eq!(answer, None, "a group message still waits for its reflection");
}

#[test]
fn error_stanzas_answer_their_request_with_the_condition() {
    let (mut link, _, counters) = link(true);
    let op = Op::Delivery {
        mid: MsgId::new("u2/m"),
        to: Arc::from("u2"),
    };
    send(&mut link, 5, 2, op);
    let bounce = message(
        "<message type='error' id='r5' from='u2@localhost'><error type='wait'>\
         <resource-constraint xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/>\
         <text xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'>slow down</text></error></message>",
    );
    let refused = Reply::Error {
        refusal: Refusal {
            code: "resource-constraint",
            rate_limited: true,
        },
        message: "slow down".into(),
    };
    assert_eq!(events(&mut link, bounce.clone()), [reply(5, refused)]);
    assert_eq!(
        events(&mut link, Event::SmAck { h: 2 }),
        [],
        "the ack after it answers nothing"
    );
    assert_eq!(events(&mut link, bounce), []);
    assert_eq!(counters.unmatched_errors.load(Relaxed), 1);
    send(&mut link, 6, 3, Op::Ping);
    let mut p = StreamParser::default();
    p.feed(b"<iq xmlns='jabber:client' type='result' id='r6'/>");
    let Incoming::Iq(iq) = Incoming::from_item(p.next_item().unwrap().unwrap()) else {
        panic!()
    };
    assert_eq!(events(&mut link, Event::Iq(iq)), [reply(6, Reply::Pong)]);
    assert_eq!(condition_name("gone"), "gone");
    assert_eq!(condition_name("made-up"), "undefined-condition");
}

#[test]
fn one_to_one_messages_receipts_and_markers() {
    let (mut link, stats, _) = link(true);
    let got = events(
        &mut link,
        message(
            "<message type='chat' id='m.1' from='u2@localhost/phone'><body>hi</body><markable xmlns='urn:xmpp:chat-markers:0'/></message>",
        ),
    );
    assert_eq!(
        got,
        [Inbound::Message {
            mid: MsgId::new("u2/m.1"),
            from: "u2".into(),
            to: "u1".into(),
            chat: Chat::Single,
            body: "hi".into(),
            receipts: false
        }]
    );
    let got = events(
        &mut link,
        message(
            "<message type='chat' from='u2@localhost/phone'><received xmlns='urn:xmpp:receipts' id='t.1'/></message>",
        ),
    );
    assert_eq!(
        got,
        [Inbound::Delivery {
            mid: MsgId::new("u1/t.1"),
            from: "u2".into(),
            live: true
        }]
    );
    let got = events(
        &mut link,
        message(
            "<message type='chat' from='u2@localhost/phone'><displayed xmlns='urn:xmpp:chat-markers:0' id='t.1'/>\
             <delay xmlns='urn:xmpp:delay' stamp='2024-01-01T00:00:00Z'/></message>",
        ),
    );
    assert_eq!(
        got,
        [Inbound::Read {
            mid: MsgId::new("u1/t.1"),
            from: "u2".into(),
            chat: Chat::Single,
            count: None,
            live: false
        }]
    );
    // The server's notices, other domains and headlines are nothing to the tester; a body
    // without an id cannot be acknowledged and is counted.
    for ignored in [
        "<message type='chat' from='localhost'><body>motd</body></message>",
        "<message type='chat' id='x' from='u2@elsewhere.org/r'><body>x</body></message>",
        "<message type='headline' id='x' from='u2@localhost/r'><body>x</body></message>",
        "<message type='chat' from='u2@localhost/r'><body>no id</body></message>",
    ] {
        assert_eq!(events(&mut link, message(ignored)), [], "{ignored}");
    }
    assert_eq!(stats.total_faults(), 1);
    let closed = Event::Closed {
        reason: CloseReason::StreamError {
            condition: "conflict".into(),
            text: None,
        },
    };
    assert_eq!(events(&mut link, closed), [Inbound::Closed]);
}

#[test]
fn group_sends_are_accepted_by_their_reflection_and_readers_counted_once() {
    let (mut link, stats, _) = link(true);
    send(&mut link, 1, 2, group_send("t.1"));
    assert_eq!(
        events(&mut link, Event::SmAck { h: 2 }),
        [],
        "the ack is not the answer"
    );
    let reflection = "<message type='groupchat' id='t.1' from='g1@conference.localhost/u1'><body>b</body>\
        <markable xmlns='urn:xmpp:chat-markers:0'/>\
        <stanza-id xmlns='urn:xmpp:sid:0' id='S1' by='g1@conference.localhost'/></message>";
    let accepted = Reply::Accepted {
        mid: MsgId::new("g1/S1"),
        group_ack: Some(true),
        duplicate: false,
    };
    assert_eq!(events(&mut link, message(reflection)), [reply(1, accepted)]);
    assert_eq!(events(&mut link, message(reflection)), [], "a repeat answers nothing");
    let marker = |nick: &str, id: &str| {
        message(&format!(
            "<message type='groupchat' from='g1@conference.localhost/{nick}'>\
             <displayed xmlns='urn:xmpp:chat-markers:0' id='{id}'/></message>"
        ))
    };
    let read = |from: &str, count| Inbound::Read {
        mid: MsgId::new("g1/S1"),
        from: from.into(),
        chat: Chat::Group,
        count: Some(count),
        live: true,
    };
    assert_eq!(events(&mut link, marker("u2", "S1")), [read("u2", 1)]);
    assert_eq!(events(&mut link, marker("u2", "S1")), [], "the same reader again");
    assert_eq!(events(&mut link, marker("u1", "S1")), [], "the sender's own marker");
    assert_eq!(events(&mut link, marker("u2", "S0")), [], "someone else's message");
    assert_eq!(events(&mut link, marker("u3", "S1")), [read("u3", 2)]);
    let others = "<message type='groupchat' id='t.7' from='g1@conference.localhost/u3'><body>hey</body>\
        <markable xmlns='urn:xmpp:chat-markers:0'/>\
        <stanza-id xmlns='urn:xmpp:sid:0' id='S2' by='g1@conference.localhost'/></message>";
    assert_eq!(
        events(&mut link, message(others)),
        [Inbound::Message {
            mid: MsgId::new("g1/S2"),
            from: "u3".into(),
            to: "g1".into(),
            chat: Chat::Group,
            body: "hey".into(),
            receipts: true
        }]
    );
    let unnamed = "<message type='groupchat' id='t.8' from='g1@conference.localhost/u3'><body>x</body></message>";
    assert_eq!(events(&mut link, message(unnamed)), []);
    assert_eq!(stats.total_faults(), 1, "a group message no marker could name");
    // A room that gives no stanza-id refuses the sender's message, visibly.
    send(&mut link, 2, 3, group_send("t.2"));
    let bare = "<message type='groupchat' id='t.2' from='g1@conference.localhost/u1'><body>b</body></message>";
    let got = events(&mut link, message(bare));
    assert!(
        matches!(
            &got[..],
            [Inbound::Reply {
                req: Some(2),
                reply: Reply::Error { .. }
            }]
        ),
        "{got:?}"
    );
}

#[test]
fn readers_are_counted_for_the_newest_own_messages_only() {
    let (mut link, ..) = link(true);
    for i in 0..=OWN_GROUP_MESSAGES {
        let id = format!("t.{i}");
        send(&mut link, i as u64, i as u32, group_send(&id));
        let reflection = format!(
            "<message type='groupchat' id='{id}' from='g1@conference.localhost/u1'><body>b</body>\
             <stanza-id xmlns='urn:xmpp:sid:0' id='S{i}' by='g1@conference.localhost'/></message>"
        );
        assert_eq!(events(&mut link, message(&reflection)).len(), 1);
    }
    let marker = |id: &str| {
        message(&format!(
            "<message type='groupchat' from='g1@conference.localhost/u2'>\
             <displayed xmlns='urn:xmpp:chat-markers:0' id='{id}'/></message>"
        ))
    };
    assert_eq!(events(&mut link, marker("S0")), [], "the oldest is forgotten");
    assert_eq!(events(&mut link, marker("S1")).len(), 1);
}

#[test]
fn message_ids_are_qualified_by_their_owner() {
    let mid = qualified("u2", "t.5");
    assert_eq!(mid.as_str(), "u2/t.5");
    assert_eq!(wire_id(&mid, "u2"), "t.5");
    assert_eq!(wire_id(&mid, "u20"), "u2/t.5", "another owner's id goes out whole");
    assert_eq!(wire_id(&MsgId::new("S/9"), "g1"), "S/9");
}
