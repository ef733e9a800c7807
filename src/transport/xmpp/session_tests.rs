//! The session and its task against a scripted server on 127.0.0.1:0: login steps, pings,
//! XEP-0198 counting both ways, stanzas split across TCP writes, polite close, failures.
//! The scripted server ([`Peer`]) serves the driver's tests too. (The real servers are
//! exercised by tests/integration/xmpp_servers.rs and xmpp_driver.rs.)

use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use super::outbound::Outbound;
use super::parser::{Element, Item, StreamParser};
use super::session::{CloseReason, Event, XmppConfig, XmppConn, XmppError};
use super::wire::{StartTlsPolicy, XmppTarget};
use super::{ns, sasl};
use crate::transport::TransportError;
use crate::transport::tls::TlsOptions;

const HEADER: &str = "<?xml version='1.0'?><stream:stream xmlns='jabber:client' \
    xmlns:stream='http://etherx.jabber.org/streams' id='s1' from='localhost' version='1.0'>";
const PRE_AUTH: &str = "<stream:features><mechanisms xmlns='urn:ietf:params:xml:ns:xmpp-sasl'>\
    <mechanism>PLAIN</mechanism></mechanisms></stream:features>";
const POST_AUTH: &str = "<stream:features><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'/>\
    <sm xmlns='urn:xmpp:sm:3'/></stream:features>";
const POST_AUTH_NO_SM: &str = "<stream:features><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'/></stream:features>";

/// The server's side of one connection.
pub(super) struct Peer {
    sock: TcpStream,
    parser: StreamParser,
}

impl Peer {
    pub(super) async fn accept(listener: &TcpListener) -> Peer {
        let (sock, _) = listener.accept().await.unwrap();
        Peer {
            sock,
            parser: StreamParser::default(),
        }
    }

    pub(super) async fn write(&mut self, text: &str) {
        self.sock.write_all(text.as_bytes()).await.unwrap();
    }

    /// The next item the client sent.
    pub(super) async fn read(&mut self) -> Item {
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

    pub(super) async fn element(&mut self) -> Element {
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
    pub(super) async fn login(&mut self) {
        self.login_with(true).await;
    }

    /// Runs the login (offering XEP-0198 or not) and reads the initial presence.
    pub(super) async fn login_with(&mut self, sm: bool) {
        self.open(PRE_AUTH).await;
        let auth = self.element().await;
        assert!(auth.is("auth", ns::SASL) && auth.attr("mechanism") == Some("PLAIN"));
        use base64::Engine;
        let creds = base64::engine::general_purpose::STANDARD
            .decode(auth.text.trim())
            .unwrap();
        assert_eq!(creds, sasl::plain("user1", "pw"));
        self.write("<success xmlns='urn:ietf:params:xml:ns:xmpp-sasl'/>").await;
        self.open(if sm { POST_AUTH } else { POST_AUTH_NO_SM }).await;
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
        if sm {
            assert!(self.element().await.is("enable", ns::SM));
            self.write("<enabled xmlns='urn:xmpp:sm:3'/>").await;
        }
        assert!(self.element().await.is("presence", ns::CLIENT));
    }
}

/// TLS options of the scripted tests (which never get as far as a handshake).
pub(super) fn insecure() -> TlsOptions {
    TlsOptions {
        ca_file: None,
        insecure: true,
    }
}

fn config(addr: std::net::SocketAddr) -> XmppConfig {
    let target = XmppTarget::resolve(&format!("xmpp://{addr}"), StartTlsPolicy::IfOffered, &insecure()).unwrap();
    let mut cfg = XmppConfig::new(Arc::new(target), "localhost", "user1", "pw");
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
            own_id: None,
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
async fn refused_credentials_and_unreachable_targets_fail_the_connect() {
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

    // Any host is a target (the product drives remote servers): a refused port fails the
    // connect, it is not refused as a target.
    let closed = TcpListener::bind("127.0.0.1:0").await.unwrap().local_addr().unwrap();
    let e = XmppConn::connect(&config(closed)).await.err().expect("nothing listens");
    assert!(matches!(e, XmppError::Transport(TransportError::Connect { .. })), "{e}");
    let far = XmppTarget::resolve("xmpp://192.0.2.1", StartTlsPolicy::Never, &insecure());
    assert_eq!(far.unwrap().endpoint().addrs(), ["192.0.2.1:5222".parse().unwrap()]);
    let e = XmppTarget::resolve("http://127.0.0.1/ws", StartTlsPolicy::Never, &insecure()).err();
    assert!(matches!(e, Some(TransportError::BadUrl { .. })));
}
