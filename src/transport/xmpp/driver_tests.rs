//! The driver against the scripted server of `session_tests` on 127.0.0.1:0, through the
//! [`Driver`] API only: sends answered by XEP-0198 acks, receipts and markers back, rooms
//! joined before the connection is handed over, group sends answered by their reflection,
//! group readers counted, failed joins, servers without XEP-0198.

use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use futures_util::StreamExt;
use tokio::net::TcpListener;

use super::driver::{Passwords, XmppDriver, XmppDriverConfig};
use super::ns;
use super::parser::{Element, Item};
use super::session_tests::Peer;
use super::wire::StartTlsPolicy;
use crate::transport::tls::TlsOptions;
use crate::transport::{
    Capability, Chat, Command, Connection, Driver, Inbound, LoginSpec, MsgId, Op, Refusal, Reply, TransportError,
};

fn driver(addr: std::net::SocketAddr) -> XmppDriver {
    XmppDriver::new(XmppDriverConfig {
        url: format!("xmpp://{addr}"),
        domain: "localhost".into(),
        muc_domain: "conference.localhost".into(),
        passwords: Passwords::Same("pw".into()),
        starttls: StartTlsPolicy::Never,
        tls: TlsOptions::default(),
        source_ips: vec![],
        timeout: Duration::from_secs(5),
        endpoint: None,
        mechanism: None,
        stream_management: true,
    })
    .unwrap()
}

fn login(groups: &[&str]) -> LoginSpec {
    LoginSpec {
        user: Arc::from("user1"),
        device: Arc::from("phone"),
        delivery: true,
        groups: groups.iter().map(|g| Arc::from(*g)).collect(),
    }
}

async fn next(conn: &mut Connection) -> Inbound {
    let t = tokio::time::timeout(Duration::from_secs(5), conn.events.next()).await;
    t.expect("an event in time").expect("events until Closed").event
}

fn request(conn: &Connection, req: u64, op: Op) {
    conn.out.send(Command::Request { req, op }).unwrap();
}

/// The next stanza the client sent, skipping its XEP-0198 ack requests.
async fn stanza(peer: &mut Peer) -> Element {
    loop {
        let e = peer.element().await;
        if !e.is("r", ns::SM) {
            return e;
        }
    }
}

/// The next item after the client's ack requests (its close, here).
async fn closing(peer: &mut Peer) -> Item {
    loop {
        match peer.read().await {
            Item::Element(e) if e.is("r", ns::SM) => continue,
            other => return other,
        }
    }
}

#[actix_rt::test]
async fn sends_are_accepted_by_acks_and_receipts_come_back() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let driver = driver(listener.local_addr().unwrap());
    assert_eq!(driver.name(), "xmpp");
    let caps = driver.capabilities();
    assert!(caps.has(Capability::ServerAcks) && caps.has(Capability::GroupReadCounts));
    assert!(!caps.has(Capability::CreateGroups) && !caps.has(Capability::ChannelSync));
    let server = actix_rt::spawn(async move {
        let mut peer = Peer::accept(&listener).await;
        peer.login().await;
        // Presence was stanza 1: the message is 2.
        let msg = stanza(&mut peer).await;
        assert_eq!(
            (msg.attr("type"), msg.attr("id"), msg.attr("to")),
            (Some("chat"), Some("t.1"), Some("user2@localhost"))
        );
        assert!(msg.child("request", ns::RECEIPTS).is_some() && msg.child("markable", ns::MARKERS).is_some());
        peer.write("<a xmlns='urn:xmpp:sm:3' h='2'/>").await;
        peer.write(
            "<message type='chat' from='user2@localhost/x'><received xmlns='urn:xmpp:receipts' id='t.1'/></message>\
             <message type='chat' from='user2@localhost/x'><displayed xmlns='urn:xmpp:chat-markers:0' id='t.1'/></message>",
        )
        .await;
        // A channel ack: one displayed marker for the newest message, stanza 3.
        let channel = stanza(&mut peer).await;
        let marker = channel.child("displayed", ns::MARKERS).expect("a displayed marker");
        assert_eq!(
            (channel.attr("to"), marker.attr("id")),
            (Some("user2@localhost"), Some("m.7"))
        );
        peer.write("<a xmlns='urn:xmpp:sm:3' h='3'/>").await;
        let ping = stanza(&mut peer).await;
        assert!(ping.child("ping", ns::PING).is_some() && ping.attr("to") == Some("localhost"));
        peer.write(&format!(
            "<iq type='result' id='{}' from='localhost'/>",
            ping.attr("id").unwrap()
        ))
        .await;
        let receipt = stanza(&mut peer).await;
        assert_eq!(receipt.attr("id"), Some("r5"));
        peer.write(
            "<message type='error' id='r5' from='user3@localhost'><error type='cancel'>\
             <service-unavailable xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error></message>",
        )
        .await;
        assert_eq!(closing(&mut peer).await, Item::Close);
        peer.write("</stream:stream>").await;
    });
    let mut conn = driver.connect(login(&[])).await.unwrap();
    let send = Op::Send {
        id: "t.1".into(),
        chat: Chat::Single,
        to: Arc::from("user2"),
        body: "hi".into(),
        allow_group_ack: false,
    };
    request(&conn, 1, send);
    let mid = MsgId::new("user1/t.1");
    let accepted = Reply::Accepted {
        mid: mid.clone(),
        group_ack: None,
        duplicate: false,
    };
    let reply = |req, reply| Inbound::Reply { req: Some(req), reply };
    assert_eq!(next(&mut conn).await, reply(1, accepted));
    let delivery = Inbound::Delivery {
        mid: mid.clone(),
        from: "user2".into(),
        live: true,
    };
    assert_eq!(next(&mut conn).await, delivery);
    let read = Inbound::Read {
        mid,
        from: "user2".into(),
        chat: Chat::Single,
        count: None,
        live: true,
    };
    assert_eq!(next(&mut conn).await, read);
    let newest = Some(MsgId::new("user2/m.7"));
    let channel = |newest| Op::Channel {
        chat: Chat::Single,
        to: Arc::from("user2"),
        newest,
    };
    request(&conn, 2, channel(newest));
    assert_eq!(next(&mut conn).await, reply(2, Reply::Acked));
    request(&conn, 3, channel(None));
    assert_eq!(
        next(&mut conn).await,
        reply(3, Reply::Acked),
        "nothing read: nothing sent"
    );
    request(&conn, 4, Op::Ping);
    assert_eq!(next(&mut conn).await, reply(4, Reply::Pong));
    let delivery = Op::Delivery {
        mid: MsgId::new("user3/m.1"),
        to: Arc::from("user3"),
    };
    request(&conn, 5, delivery);
    let refused = Reply::Error {
        refusal: Refusal {
            code: "service-unavailable",
            rate_limited: false,
        },
        message: "service-unavailable".into(),
    };
    assert_eq!(next(&mut conn).await, reply(5, refused));
    conn.out.send(Command::Close).unwrap();
    assert_eq!(next(&mut conn).await, Inbound::Closed);
    assert!(conn.events.next().await.is_none(), "nothing after Closed");
    server.await.unwrap();
    let stats = driver.stats();
    let sent: std::collections::HashMap<_, _> = stats.sent_by_op().into_iter().collect();
    assert_eq!((sent["message"], sent["displayed"], sent["received"]), (1, 1, 1));
    assert!(stats.bytes_sent.load(Relaxed) > 0 && stats.bytes_received.load(Relaxed) > 0);
}

#[actix_rt::test]
async fn rooms_are_joined_first_and_group_reads_are_counted_per_reader() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let driver = driver(listener.local_addr().unwrap());
    let server = actix_rt::spawn(async move {
        let mut peer = Peer::accept(&listener).await;
        peer.login().await;
        let join = stanza(&mut peer).await;
        assert_eq!(join.attr("to"), Some("g1@conference.localhost/user1"));
        let history = (join.child("x", "http://jabber.org/protocol/muc"))
            .and_then(|x| x.child("history", "http://jabber.org/protocol/muc"));
        assert_eq!(
            history.and_then(|h| h.attr("maxstanzas")),
            Some("0"),
            "no history replayed"
        );
        // A message before the room answers: kept for after the connect.
        peer.write(
            "<message type='chat' id='m.1' from='user2@localhost/x'><body>early</body></message>\
             <presence from='g1@conference.localhost/user2'/>\
             <presence from='g1@conference.localhost/user1'><x xmlns='http://jabber.org/protocol/muc#user'>\
             <item affiliation='member' role='participant'/><status code='110'/></x></presence>",
        )
        .await;
        let group = stanza(&mut peer).await;
        assert_eq!(
            (group.attr("type"), group.attr("to"), group.attr("id")),
            (Some("groupchat"), Some("g1@conference.localhost"), Some("t.2"))
        );
        assert!(group.child("markable", ns::MARKERS).is_some());
        let marker = |nick: &str, id: &str| {
            format!(
                "<message type='groupchat' from='g1@conference.localhost/{nick}'>\
                 <displayed xmlns='urn:xmpp:chat-markers:0' id='{id}'/></message>"
            )
        };
        peer.write(&format!(
            "<message type='groupchat' id='t.2' from='g1@conference.localhost/user1'><body>all</body>\
             <markable xmlns='urn:xmpp:chat-markers:0'/>\
             <stanza-id xmlns='urn:xmpp:sid:0' id='S1' by='g1@conference.localhost'/></message>\
             {}{}{}{}{}\
             <message type='groupchat' id='t.9' from='g1@conference.localhost/user2'><body>re</body>\
             <stanza-id xmlns='urn:xmpp:sid:0' id='S2' by='g1@conference.localhost'/></message>",
            marker("user2", "S1"),
            marker("user2", "S1"),
            marker("user1", "S1"),
            marker("user3", "S0"),
            marker("user3", "S1"),
        ))
        .await;
        let read = stanza(&mut peer).await;
        let displayed = read.child("displayed", ns::MARKERS).expect("a marker");
        assert_eq!(
            (read.attr("type"), read.attr("to"), displayed.attr("id")),
            (Some("groupchat"), Some("g1@conference.localhost"), Some("S2"))
        );
        peer.write("<stream:error><conflict xmlns='urn:ietf:params:xml:ns:xmpp-streams'/></stream:error>")
            .await;
    });
    let mut conn = driver.connect(login(&["g1"])).await.unwrap();
    let early = next(&mut conn).await;
    assert!(
        matches!(&early, Inbound::Message { body, chat: Chat::Single, .. } if body == "early"),
        "{early:?}"
    );
    let send = Op::Send {
        id: "t.2".into(),
        chat: Chat::Group,
        to: Arc::from("g1"),
        body: "all".into(),
        allow_group_ack: true,
    };
    request(&conn, 1, send);
    let mid = MsgId::new("g1/S1");
    let accepted = Reply::Accepted {
        mid: mid.clone(),
        group_ack: Some(true),
        duplicate: false,
    };
    assert_eq!(
        next(&mut conn).await,
        Inbound::Reply {
            req: Some(1),
            reply: accepted
        }
    );
    let read = |from: &str, count| Inbound::Read {
        mid: mid.clone(),
        from: from.into(),
        chat: Chat::Group,
        count: Some(count),
        live: true,
    };
    assert_eq!(next(&mut conn).await, read("user2", 1));
    assert_eq!(
        next(&mut conn).await,
        read("user3", 2),
        "repeats, own and others' markers: nothing"
    );
    let message = next(&mut conn).await;
    let Inbound::Message {
        mid, from, to, chat, ..
    } = message
    else {
        panic!("{message:?}")
    };
    assert_eq!(
        (mid.as_str(), from.as_str(), to.as_str(), chat),
        ("g1/S2", "user2", "g1", Chat::Group)
    );
    let op = Op::Read {
        chat: Chat::Group,
        mid,
        to: Arc::from("g1"),
    };
    request(&conn, 2, op);
    assert_eq!(next(&mut conn).await, Inbound::Closed, "a conflict ends the connection");
    server.await.unwrap();
}

#[actix_rt::test]
async fn a_refused_join_fails_the_connect() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let driver = driver(listener.local_addr().unwrap());
    let server = actix_rt::spawn(async move {
        let mut peer = Peer::accept(&listener).await;
        peer.login().await;
        assert_eq!(
            stanza(&mut peer).await.attr("to"),
            Some("g1@conference.localhost/user1")
        );
        assert_eq!(
            stanza(&mut peer).await.attr("to"),
            Some("g2@conference.localhost/user1")
        );
        peer.write(
            "<presence from='g1@conference.localhost/user1'><x xmlns='http://jabber.org/protocol/muc#user'>\
             <status code='110'/></x></presence>\
             <presence type='error' from='g2@conference.localhost/user1'><error type='auth'>\
             <registration-required xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error></presence>",
        )
        .await;
        // The client gives up: its close.
        let _ = peer.read().await;
    });
    let e = driver.connect(login(&["g1", "g2"])).await.err().expect("refused");
    let TransportError::LoginRefused { code, message } = &e else {
        panic!("{e}")
    };
    assert_eq!(*code, "registration-required");
    assert!(message.contains("g2@conference.localhost"), "{message}");
    server.await.unwrap();
}

#[actix_rt::test]
async fn without_stream_management_sends_are_answered_when_written() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let driver = driver(listener.local_addr().unwrap());
    let server = actix_rt::spawn(async move {
        let mut peer = Peer::accept(&listener).await;
        peer.login_with(false).await;
        let msg = peer.element().await;
        assert_eq!(msg.attr("id"), Some("t.1"));
        assert_eq!(peer.read().await, Item::Close, "no ack requests without XEP-0198");
        peer.write("</stream:stream>").await;
    });
    let mut conn = driver.connect(login(&[])).await.unwrap();
    assert_eq!(driver.counters().without_sm.load(Relaxed), 1);
    let send = Op::Send {
        id: "t.1".into(),
        chat: Chat::Single,
        to: Arc::from("user2"),
        body: "hi".into(),
        allow_group_ack: false,
    };
    request(&conn, 1, send);
    let got = next(&mut conn).await;
    assert!(
        matches!(
            got,
            Inbound::Reply {
                req: Some(1),
                reply: Reply::Accepted { .. }
            }
        ),
        "{got:?}"
    );
    let Connection { out, mut events, .. } = conn;
    drop(out);
    let last = tokio::time::timeout(Duration::from_secs(5), events.next())
        .await
        .unwrap();
    assert_eq!(
        last.map(|t| t.event),
        Some(Inbound::Closed),
        "a dropped outbox closes politely"
    );
    server.await.unwrap();
}
