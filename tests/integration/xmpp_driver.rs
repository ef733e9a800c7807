//! The XMPP driver against real servers, through the `Driver` API only: Prosody and ejabberd
//! started by `scripts/xmpp-server.sh` with the accounts a load run uses (`u0`, `u1`: the
//! default user prefix), on ports and in a state directory of their own (so this runs beside
//! `xmpp_servers`, whose start/skip rules and guard it reuses).
//!
//! Two users in one room, one over STARTTLS (`xmpp://`), one over WebSocket (`ws://`): a 1:1
//! message accepted by the server's XEP-0198 ack with its delivery and read receipts back,
//! and a group message accepted by the room's reflection with a read count of one back.

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use ackstorm::transport::xmpp::{Passwords, StartTlsPolicy, XmppDriver, XmppDriverConfig};
use ackstorm::transport::{Chat, Command, Connection, Driver, Inbound, LoginSpec, Op, Reply};
use futures_util::StreamExt;

use crate::xmpp_servers::{PASSWORD, Running, Server, WAIT};

fn driver(url: String, server: &Running) -> XmppDriver {
    XmppDriver::new(XmppDriverConfig {
        url,
        domain: "localhost".into(),
        muc_domain: "conference.localhost".into(),
        passwords: Passwords::Same(PASSWORD.into()),
        starttls: StartTlsPolicy::Required,
        tls: server.trust(),
        source_ips: vec![],
        timeout: WAIT,
        endpoint: None,
        mechanism: None,
        stream_management: true,
    })
    .unwrap_or_else(|e| panic!("{}: driver: {e}", server.0.name))
}

/// One logged-in user.
struct User {
    name: &'static str,
    conn: Connection,
}

impl User {
    async fn connect(driver: &XmppDriver, name: &'static str, room: &str) -> User {
        let login = LoginSpec {
            user: Arc::from(name),
            device: Arc::from("d0"),
            delivery: true,
            groups: Arc::from([Arc::from(room)]),
        };
        let conn = (driver.connect(login).await).unwrap_or_else(|e| panic!("{name}: connect: {e}"));
        User { name, conn }
    }

    fn request(&self, req: u64, op: Op) {
        self.conn
            .out
            .send(Command::Request { req, op })
            .expect("connection open");
    }

    /// Waits for the first event that `pick` accepts; fails with what came instead.
    async fn until<T>(&mut self, what: &str, mut pick: impl FnMut(&Inbound) -> Option<T>) -> T {
        let mut seen = Vec::new();
        let found = tokio::time::timeout(WAIT, async {
            while let Some(t) = self.conn.events.next().await {
                if let Some(found) = pick(&t.event) {
                    return Some(found);
                }
                seen.push(t.event);
            }
            None
        })
        .await;
        match found {
            Ok(Some(t)) => t,
            _ => panic!("{} never got {what}; it got: {seen:#?}", self.name),
        }
    }

    /// Waits for the reply to `req`.
    async fn reply(&mut self, req: u64) -> Reply {
        let what = format!("the reply to request {req}");
        (self.until(&what, |e| match e {
            Inbound::Reply { req: Some(r), reply } if *r == req => Some(reply.clone()),
            _ => None,
        }))
        .await
    }
}

async fn receipts_through_the_driver(server: Server) {
    let Some(server) = server.start_with(&["--users", "2", "--prefix", "u"]) else {
        return;
    };
    let name = server.0.name;
    let stamp = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_millis();
    let room = format!("g0.{:x}", stamp % 0xFFFF_FFFF);
    let tcp = driver(server.tcp_url(), &server);
    let ws = driver(server.0.ws_url.clone(), &server);
    let mut u0 = User::connect(&tcp, "u0", &room).await;
    let mut u1 = User::connect(&ws, "u1", &room).await;

    // 1:1: accepted on the server's ack; delivery and read receipts come back.
    let send = Op::Send {
        id: format!("{name}.1"),
        chat: Chat::Single,
        to: Arc::from("u1"),
        body: "hello".into(),
        allow_group_ack: false,
    };
    u0.request(1, send);
    let Reply::Accepted {
        mid, group_ack: None, ..
    } = u0.reply(1).await
    else {
        panic!("{name}: the 1:1 send was not accepted")
    };
    let pushed = (u1.until("the 1:1 message", |e| match e {
        Inbound::Message {
            mid,
            from,
            chat: Chat::Single,
            body,
            ..
        } if body == "hello" => Some((mid.clone(), from.clone())),
        _ => None,
    }))
    .await;
    assert_eq!(
        pushed,
        (mid.clone(), "u0".to_string()),
        "{name}: the receiver sees the sender's id"
    );
    let to = Arc::from("u0");
    u1.request(
        1,
        Op::Delivery {
            mid: mid.clone(),
            to: Arc::clone(&to),
        },
    );
    u1.request(
        2,
        Op::Read {
            chat: Chat::Single,
            mid: mid.clone(),
            to,
        },
    );
    assert_eq!(u1.reply(1).await, Reply::Acked, "{name}: delivery acked");
    assert_eq!(u1.reply(2).await, Reply::Acked, "{name}: read acked");
    let delivery = (u0.until("the delivery receipt", |e| match e {
        Inbound::Delivery { mid, from, live } => Some((mid.clone(), from.clone(), *live)),
        _ => None,
    }))
    .await;
    assert_eq!(delivery, (mid.clone(), "u1".to_string(), true));
    let read = (u0.until("the read receipt", |e| match e {
        Inbound::Read {
            mid,
            from,
            chat: Chat::Single,
            count,
            ..
        } => Some((mid.clone(), from.clone(), *count)),
        _ => None,
    }))
    .await;
    assert_eq!(read, (mid, "u1".to_string(), None));

    // Group: accepted on the room's reflection; the reader's marker counts one reader.
    let group = Op::Send {
        id: format!("{name}.2"),
        chat: Chat::Group,
        to: Arc::from(room.as_str()),
        body: "to the room".into(),
        allow_group_ack: true,
    };
    u0.request(2, group);
    let Reply::Accepted {
        mid,
        group_ack: Some(true),
        ..
    } = u0.reply(2).await
    else {
        panic!("{name}: the group send was not accepted")
    };
    assert!(mid.as_str().starts_with(&format!("{room}/")), "{name}: {mid}");
    let pushed = (u1.until("the group message", |e| match e {
        Inbound::Message {
            mid,
            from,
            to,
            chat: Chat::Group,
            receipts,
            ..
        } => Some((mid.clone(), from.clone(), to.clone(), *receipts)),
        _ => None,
    }))
    .await;
    assert_eq!(pushed, (mid.clone(), "u0".to_string(), room.clone(), true));
    let read = Op::Read {
        chat: Chat::Group,
        mid: mid.clone(),
        to: Arc::from(room.as_str()),
    };
    u1.request(3, read);
    assert_eq!(u1.reply(3).await, Reply::Acked);
    let count = (u0.until("the group read count", |e| match e {
        Inbound::Read {
            mid: m,
            from,
            chat: Chat::Group,
            count,
            live,
        } if *m == mid => Some((from.clone(), *count, *live)),
        _ => None,
    }))
    .await;
    assert_eq!(count, ("u1".to_string(), Some(1), true), "{name}: one reader");

    u0.request(3, Op::Ping);
    assert_eq!(u0.reply(3).await, Reply::Pong);
    // A channel ack is one marker for the newest message (here, the same reader again).
    let channel = Op::Channel {
        chat: Chat::Group,
        to: Arc::from(room.as_str()),
        newest: Some(mid),
    };
    u1.request(4, channel);
    assert_eq!(u1.reply(4).await, Reply::Acked);
    for mut user in [u0, u1] {
        user.conn.out.send(Command::Close).unwrap();
        (user.until("the close", |e| (*e == Inbound::Closed).then_some(()))).await;
    }
}

#[actix_rt::test]
async fn prosody_through_the_xmpp_driver() {
    receipts_through_the_driver(Server::prosody_on(26222, 26280, "ackstorm-xmpp-driver-test")).await;
}

#[actix_rt::test]
async fn ejabberd_through_the_xmpp_driver() {
    receipts_through_the_driver(Server::ejabberd_on(26232, 26290, 26299, "ackstorm-xmpp-driver-test")).await;
}
