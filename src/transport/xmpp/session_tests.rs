//! The session and its task against a scripted server on 127.0.0.1:0: login steps, pings,
//! XEP-0198 counting both ways, stanzas split across TCP writes, polite close, failures.
//! (The real servers are exercised by tests/integration/xmpp_servers.rs.)

use std::time::Duration;

use futures_util::StreamExt;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use super::outbound::Outbound;
use super::parser::{Element, Item, StreamParser};
use super::session::{CloseReason, Event, Transport, XmppConfig, XmppConn, XmppError};
use super::wire::{StartTls, TlsTrust};
use super::{ns, sasl};

const HEADER: &str = "<?xml version='1.0'?><stream:stream xmlns='jabber:client' \
    xmlns:stream='http://etherx.jabber.org/streams' id='s1' from='localhost' version='1.0'>";
const PRE_AUTH: &str = "<stream:features><mechanisms xmlns='urn:ietf:params:xml:ns:xmpp-sasl'>\
    <mechanism>PLAIN</mechanism></mechanisms></stream:features>";
const POST_AUTH: &str = "<stream:features><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'/>\
    <sm xmlns='urn:xmpp:sm:3'/></stream:features>";

/// The server's side of one connection.
struct Peer {
    sock: TcpStream,
    parser: StreamParser,
}

impl Peer {
    async fn accept(listener: &TcpListener) -> Peer {
        let (sock, _) = listener.accept().await.unwrap();
        Peer {
            sock,
            parser: StreamParser::default(),
        }
    }

    async fn write(&mut self, text: &str) {
        self.sock.write_all(text.as_bytes()).await.unwrap();
    }

    /// The next item the client sent.
    async fn read(&mut self) -> Item {
        let mut buf = [0u8; 1024];
        loop {
            if let Some(item) = self.parser.next_item().unwrap() {
                return item;
            }
            let n = tokio::time::timeout(Duration::from_secs(5), self.sock.read(&mut buf))
                .await
                .expect("client writes in time")
                .unwrap();
            assert!(n > 0, "client closed early");
            self.parser.feed(&buf[..n]);
        }
    }

    async fn element(&mut self) -> Element {
        match self.read().await {
            Item::Element(e) => e,
            other => panic!("expected an element, got {other:?}"),
        }
    }

    /// Answers a stream header with ours and `features`.
    async fn open(&mut self, features: &str) {
        self.parser.reset();
        assert!(matches!(self.read().await, Item::Open(_)));
        self.write(&format!("{HEADER}{features}")).await;
    }

    /// Runs the login up to `<enabled/>` and reads the initial presence.
    async fn login(&mut self) {
        self.open(PRE_AUTH).await;
        let auth = self.element().await;
        assert!(auth.is("auth", ns::SASL) && auth.attr("mechanism") == Some("PLAIN"));
        use base64::Engine;
        let creds = base64::engine::general_purpose::STANDARD
            .decode(auth.text.trim())
            .unwrap();
        assert_eq!(creds, sasl::plain("user1", "pw"));
        self.write("<success xmlns='urn:ietf:params:xml:ns:xmpp-sasl'/>").await;
        self.open(POST_AUTH).await;
        let bind = self.element().await;
        let id = bind.attr("id").unwrap().to_string();
        let resource = &bind
            .child("bind", ns::BIND)
            .unwrap()
            .child("resource", ns::BIND)
            .unwrap()
            .text;
        assert_eq!(resource, "phone");
        self.write(&format!(
            "<iq type='result' id='{id}'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'>\
             <jid>user1@localhost/phone</jid></bind></iq>"
        ))
        .await;
        assert!(self.element().await.is("enable", ns::SM));
        self.write("<enabled xmlns='urn:xmpp:sm:3'/>").await;
        assert!(self.element().await.is("presence", ns::CLIENT));
    }
}

fn config(addr: std::net::SocketAddr) -> XmppConfig {
    let transport = Transport::Tcp {
        addr,
        starttls: StartTls::IfOffered(TlsTrust::InsecureLoopback),
    };
    let mut cfg = XmppConfig::new(transport, "localhost", "user1", "pw");
    cfg.resource = "phone".into();
    cfg.timeout = Duration::from_secs(5);
    cfg
}

async fn next_event(conn: &mut XmppConn) -> Event {
    let ev = tokio::time::timeout(Duration::from_secs(5), conn.events.next()).await;
    ev.expect("an event in time").expect("events until Closed").event
}

#[actix_rt::test]
async fn pings_acks_split_stanzas_and_a_polite_close() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = actix_rt::spawn(async move {
        let mut peer = Peer::accept(&listener).await;
        peer.login().await;
        // A ping, then a message cut mid-tag across two writes, then an ack request.
        peer.write(
            "<iq type='get' id='p1' from='localhost'><ping xmlns='urn:xmpp:ping'/></iq>\
                    <message from='user2@localhost/x' id='m1' type='chat'><bo",
        )
        .await;
        tokio::time::sleep(Duration::from_millis(20)).await;
        peer.write("dy>hi</body><request xmlns='urn:xmpp:receipts'/></message><r xmlns='urn:xmpp:sm:3'/>")
            .await;
        let pong = peer.element().await;
        assert_eq!(
            (pong.name.as_str(), pong.attr("type"), pong.attr("id")),
            ("iq", Some("result"), Some("p1"))
        );
        let ack = peer.element().await;
        assert!(ack.is("a", ns::SM) && ack.attr("h") == Some("2"), "{ack:?}");
        let receipt = peer.element().await;
        let received = receipt.child("received", ns::RECEIPTS).unwrap();
        assert_eq!(received.attr("id"), Some("m1"));
        assert!(peer.element().await.is("r", ns::SM), "an ack request follows the batch");
        // Presence 1, pong 2, receipt 3.
        peer.write("<a xmlns='urn:xmpp:sm:3' h='3'/>").await;
        assert_eq!(peer.read().await, Item::Close);
        peer.write("</stream:stream>").await;
    });
    let mut conn = XmppConn::connect(&config(addr)).await.unwrap();
    assert_eq!(conn.jid, "user1@localhost/phone");
    assert!(conn.sm);
    let Event::Message(m) = next_event(&mut conn).await else {
        panic!()
    };
    assert_eq!((m.body.as_deref(), m.receipt_request), (Some("hi"), true));
    // The ping before the message was answered, so its pong took number 2.
    let n = conn
        .sender
        .send(Outbound::Received {
            to: m.from.unwrap(),
            id: "m1".into(),
        })
        .unwrap();
    assert_eq!(n, 3);
    assert_eq!(next_event(&mut conn).await, Event::SmAck { h: 3 });
    conn.sender.close();
    assert_eq!(
        next_event(&mut conn).await,
        Event::Closed {
            reason: CloseReason::Requested
        }
    );
    assert!(conn.events.next().await.is_none(), "nothing after Closed");
    assert!(conn.sender.send(Outbound::Presence).is_err());
    server.await.unwrap();
}

#[actix_rt::test]
async fn muc_self_presence_and_stream_errors_reach_the_user() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = actix_rt::spawn(async move {
        let mut peer = Peer::accept(&listener).await;
        peer.login().await;
        let join = peer.element().await;
        assert_eq!(join.attr("to"), Some("r@conference.localhost/me"));
        peer.write(
            "<presence from='r@conference.localhost/other'/>\
                    <presence from='r@conference.localhost/me'><x xmlns='http://jabber.org/protocol/muc#user'>\
                    <item affiliation='none' role='participant'/><status code='110'/></x></presence>\
                    <stream:error><conflict xmlns='urn:ietf:params:xml:ns:xmpp-streams'/></stream:error>",
        )
        .await;
    });
    let mut conn = XmppConn::connect(&config(addr)).await.unwrap();
    let join = Outbound::Join {
        room: "r@conference.localhost".into(),
        nick: "me".into(),
    };
    conn.sender.send(join).unwrap();
    assert!(
        matches!(next_event(&mut conn).await, Event::Presence(p) if p.from.as_deref() == Some("r@conference.localhost/other"))
    );
    let joined = Event::MucJoined {
        room: "r@conference.localhost".into(),
        nick: "me".into(),
    };
    assert_eq!(next_event(&mut conn).await, joined);
    let reason = CloseReason::StreamError {
        condition: "conflict".into(),
        text: None,
    };
    assert_eq!(next_event(&mut conn).await, Event::Closed { reason });
    server.await.unwrap();
}

#[actix_rt::test]
async fn refused_credentials_and_non_loopback_targets_fail_the_connect() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = actix_rt::spawn(async move {
        let mut peer = Peer::accept(&listener).await;
        peer.open(PRE_AUTH).await;
        peer.element().await;
        peer.write("<failure xmlns='urn:ietf:params:xml:ns:xmpp-sasl'><not-authorized/></failure>")
            .await;
    });
    let err = XmppConn::connect(&config(addr)).await.err().expect("refused");
    assert!(
        matches!(&err, XmppError::AuthFailed { condition, .. } if condition == "not-authorized"),
        "{err}"
    );
    server.await.unwrap();

    let far = config("192.0.2.1:5222".parse().unwrap());
    assert!(matches!(
        XmppConn::connect(&far).await,
        Err(XmppError::BadTarget { .. })
    ));
    let mut ws = far.clone();
    ws.transport = Transport::WebSocket {
        url: "wss://127.0.0.1/ws".into(),
    };
    assert!(matches!(XmppConn::connect(&ws).await, Err(XmppError::BadTarget { .. })));
}
