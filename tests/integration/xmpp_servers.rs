//! The XMPP protocol layer against real servers: Prosody and ejabberd, each started on
//! 127.0.0.1 by `scripts/xmpp-server.sh` (on ports of its own, so a server started by hand
//! keeps running) and stopped by a guard, also when the test fails.
//!
//! Without the server installed the test prints how to install it and passes, except with
//! `CI=true`, where a missing server fails it (`.ci/run` installs both). The server helpers
//! here serve `xmpp_driver` too (on ports and in a state directory of its own, so both run
//! at once).

use std::path::PathBuf;
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use ackstorm::transport::tls::TlsOptions;
use ackstorm::transport::xmpp::sasl::Mechanism;
use ackstorm::transport::xmpp::{
    CloseReason, Event, MessageType, Outbound, StartTlsPolicy, XmppConfig, XmppConn, XmppTarget, bare,
};
use futures_util::StreamExt;

/// How long a step may wait for what it expects.
pub(crate) const WAIT: Duration = Duration::from_secs(10);
pub(crate) const PASSWORD: &str = "ackstorm";

/// A server instance of `scripts/xmpp-server.sh`: which server, its ports and state.
pub(crate) struct Server {
    pub(crate) name: &'static str,
    /// The binary whose presence says the server is installed.
    binary: &'static str,
    pub(crate) c2s: u16,
    pub(crate) ws_url: String,
    env: Vec<(&'static str, String)>,
    /// The instance's state directory's parent (`XMPP_STATE`).
    state_root: PathBuf,
}

impl Server {
    fn prosody() -> Server {
        Server::prosody_on(25222, 25280, "ackstorm-xmpp-test")
    }

    fn ejabberd() -> Server {
        Server::ejabberd_on(25232, 25290, 25299, "ackstorm-xmpp-test")
    }

    /// Prosody on these ports, its state under `$TMPDIR/<state>`.
    pub(crate) fn prosody_on(c2s: u16, http: u16, state: &str) -> Server {
        Server {
            name: "prosody",
            binary: "prosody",
            c2s,
            ws_url: format!("ws://127.0.0.1:{http}/xmpp-websocket"),
            env: vec![
                ("PROSODY_C2S_PORT", c2s.to_string()),
                ("PROSODY_HTTP_PORT", http.to_string()),
            ],
            state_root: std::env::temp_dir().join(state),
        }
    }

    /// ejabberd on these ports (`dist`: its Erlang distribution), its state under
    /// `$TMPDIR/<state>`.
    pub(crate) fn ejabberd_on(c2s: u16, http: u16, dist: u16, state: &str) -> Server {
        Server {
            name: "ejabberd",
            binary: "ejabberdctl",
            c2s,
            ws_url: format!("ws://127.0.0.1:{http}/ws"),
            env: vec![
                ("EJABBERD_C2S_PORT", c2s.to_string()),
                ("EJABBERD_HTTP_PORT", http.to_string()),
                ("EJABBERD_DIST_PORT", dist.to_string()),
            ],
            state_root: std::env::temp_dir().join(state),
        }
    }

    fn script(&self, args: &[&str]) -> std::process::Output {
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/xmpp-server.sh");
        Command::new("bash")
            .arg(script)
            .args(args)
            .env("XMPP_STATE", &self.state_root)
            .envs(self.env.iter().map(|(k, v)| (*k, v.as_str())))
            .output()
            .expect("bash runs")
    }

    fn installed(&self) -> bool {
        Command::new("sh")
            .args(["-c", &format!("command -v {0} || test -x /usr/sbin/{0}", self.binary)])
            .output()
            .is_ok_and(|o| o.status.success())
    }

    /// Starts the server with accounts user1..user3 (or explains the skip); the guard stops it.
    fn start(self) -> Option<Running> {
        self.start_with(&["--users", "3"])
    }

    /// Starts the server with the script's account options `users` (or explains the skip);
    /// the guard stops it.
    pub(crate) fn start_with(self, users: &[&str]) -> Option<Running> {
        let ci = std::env::var("CI").is_ok_and(|v| v == "true");
        if !self.installed() {
            assert!(
                !ci,
                "{} is not installed, and CI=true requires it (see .ci/run)",
                self.name
            );
            eprintln!(
                "SKIPPED: {0} is not installed. To run this test: apt-get install -y prosody ejabberd \
                 (then `scripts/xmpp-server.sh start {0}` starts it by hand)",
                self.name
            );
            return None;
        }
        let out = self.script(&[&["start", self.name], users].concat());
        let stderr = String::from_utf8_lossy(&out.stderr);
        if !out.status.success() && !ci && stderr.contains("runs only as root") {
            eprintln!("SKIPPED: {stderr}");
            return None;
        }
        let running = Running(self);
        assert!(
            out.status.success(),
            "scripts/xmpp-server.sh start {} failed:\n{}\n{stderr}",
            running.0.name,
            String::from_utf8_lossy(&out.stdout)
        );
        Some(running)
    }
}

/// Stops the server when dropped (the test passed or panicked).
pub(crate) struct Running(pub(crate) Server);

impl Drop for Running {
    fn drop(&mut self) {
        let out = self.0.script(&["stop", self.0.name]);
        if !out.status.success() {
            eprintln!(
                "stopping {} failed: {}",
                self.0.name,
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }
}

impl Running {
    fn tcp(&self, user: &str, starttls: StartTlsPolicy) -> XmppConfig {
        let target = XmppTarget::resolve(&self.tcp_url(), starttls, &self.trust()).unwrap();
        let mut cfg = XmppConfig::new(Arc::new(target), "localhost", user, PASSWORD);
        cfg.timeout = WAIT;
        cfg
    }

    fn ws(&self, user: &str) -> XmppConfig {
        let target = XmppTarget::resolve(&self.0.ws_url, StartTlsPolicy::Never, &self.trust()).unwrap();
        let mut cfg = XmppConfig::new(Arc::new(target), "localhost", user, PASSWORD);
        cfg.timeout = WAIT;
        cfg
    }

    /// `xmpp://127.0.0.1:<c2s>`.
    pub(crate) fn tcp_url(&self) -> String {
        format!("xmpp://127.0.0.1:{}", self.0.c2s)
    }

    /// Trust in the script's test CA.
    pub(crate) fn trust(&self) -> TlsOptions {
        TlsOptions {
            ca_file: Some(self.0.state_root.join(self.0.name).join("ca.crt")),
            insecure: false,
        }
    }
}

/// A connection and the highest XEP-0198 `h` it has heard (acks may come while a step waits
/// for something else).
struct Client {
    conn: XmppConn,
    acked: u32,
}

impl Client {
    async fn connect(cfg: XmppConfig, what: &str) -> Client {
        let conn = XmppConn::connect(&cfg).await.unwrap_or_else(|e| panic!("{what}: {e}"));
        Client { conn, acked: 0 }
    }

    fn send(&self, stanza: Outbound) -> u32 {
        self.conn.sender.send(stanza).expect("connection open")
    }

    /// Waits for the first event that `pick` accepts; fails with what came instead.
    async fn until<T>(&mut self, what: &str, mut pick: impl FnMut(&Event) -> Option<T>) -> T {
        let mut seen = Vec::new();
        let (conn, acked) = (&mut self.conn, &mut self.acked);
        let found = tokio::time::timeout(WAIT, async {
            while let Some(ev) = conn.events.next().await {
                if let Event::SmAck { h } = ev.event {
                    *acked = (*acked).max(h);
                }
                if let Some(t) = pick(&ev.event) {
                    return Some(t);
                }
                seen.push(ev.event);
            }
            None
        })
        .await;
        match found {
            Ok(Some(t)) => t,
            _ => panic!("{} never got {what}; it got: {seen:#?}", self.conn.jid),
        }
    }
}

async fn exchange(server: Server) {
    let Some(server) = server.start() else { return };
    let name = server.0.name;
    // user1: STARTTLS trusting the script's test CA, SCRAM-SHA-1.
    let starttls = StartTlsPolicy::Required;
    let mut u1 = Client::connect(server.tcp("user1", starttls), &format!("{name}: user1 over STARTTLS")).await;
    // user2: plain TCP, PLAIN.
    let mut cfg2 = server.tcp("user2", StartTlsPolicy::Never);
    cfg2.mechanism = Some(Mechanism::Plain);
    let mut u2 = Client::connect(cfg2, &format!("{name}: user2 over TCP")).await;
    // user3: WebSocket, SCRAM-SHA-1.
    let mut u3 = Client::connect(server.ws("user3"), &format!("{name}: user3 over WebSocket")).await;
    assert_eq!(bare(&u1.conn.jid), "user1@localhost");
    assert!(u1.conn.sm && u2.conn.sm && u3.conn.sm, "{name} offers XEP-0198");

    // 1:1 with a receipt request and markable: received and displayed come back.
    let id = format!("{name}-c1");
    u1.send(Outbound::Chat {
        to: "user2@localhost".into(),
        id: id.clone(),
        body: "hello <&>".into(),
        receipt: true,
        markable: true,
    });
    let msg = (u2.until("the chat message", |e| match e {
        Event::Message(m) if m.body.is_some() => Some(m.clone()),
        _ => None,
    }))
    .await;
    assert_eq!(
        (msg.id.as_deref(), msg.body.as_deref()),
        (Some(id.as_str()), Some("hello <&>"))
    );
    assert!(msg.receipt_request && msg.markable && msg.kind == MessageType::Chat);
    let sender = msg.from.clone().unwrap();
    assert_eq!(bare(&sender), "user1@localhost");
    u2.send(Outbound::Received {
        to: sender.clone(),
        id: id.clone(),
        own_id: None,
    });
    u2.send(Outbound::Displayed {
        to: sender,
        id: id.clone(),
        groupchat: false,
        own_id: None,
    });
    (u1.until("the delivery receipt", |e| match e {
        Event::Message(m) if m.received_of.as_deref() == Some(&id) => Some(()),
        _ => None,
    }))
    .await;
    (u1.until("the displayed marker", |e| match e {
        Event::Message(m) if m.displayed_of.as_deref() == Some(&id) => Some(()),
        _ => None,
    }))
    .await;

    // The WebSocket user reaches a TCP user.
    u3.send(Outbound::Chat {
        to: "user1@localhost".into(),
        id: format!("{name}-w1"),
        body: "over ws".into(),
        receipt: true,
        markable: false,
    });
    (u1.until("the WebSocket user's message", |e| match e {
        Event::Message(m) if m.body.as_deref() == Some("over ws") => Some(()),
        _ => None,
    }))
    .await;

    // MUC: join (the self-presence confirms), a groupchat message with the room's stanza-id,
    // a displayed marker referencing it.
    let room = format!("ackstorm-{}-{}@conference.localhost", name, std::process::id());
    for (c, nick) in [(&mut u1, "user1"), (&mut u2, "user2"), (&mut u3, "user3")] {
        c.send(Outbound::Join {
            room: room.clone(),
            nick: nick.into(),
        });
        (c.until("the MUC self-presence", |e| match e {
            Event::MucJoined { room: r, .. } if *r == room => Some(()),
            Event::MucFailed { error, .. } => panic!("{name}: join failed: {error:?}"),
            _ => None,
        }))
        .await;
    }
    let gid = format!("{name}-g1");
    let seq = u1.send(Outbound::GroupChat {
        room: room.clone(),
        id: gid.clone(),
        body: "to all".into(),
        markable: true,
    });
    let mut stanza_ids = Vec::new();
    for c in [&mut u1, &mut u2, &mut u3] {
        let m = (c.until("the groupchat message", |e| match e {
            Event::Message(m) if m.kind == MessageType::GroupChat && m.body.as_deref() == Some("to all") => {
                Some(m.clone())
            }
            _ => None,
        }))
        .await;
        assert_eq!(m.id.as_deref(), Some(gid.as_str()));
        assert!(m.markable);
        let sid = m
            .stanza_id_by(&room)
            .unwrap_or_else(|| panic!("{name}: no stanza-id by the room: {m:?}"));
        stanza_ids.push(sid.to_string());
    }
    assert!(
        stanza_ids.iter().all(|s| *s == stanza_ids[0]),
        "one stanza-id for all: {stanza_ids:?}"
    );
    let sid = stanza_ids.remove(0);
    u2.send(Outbound::Displayed {
        to: room.clone(),
        id: sid.clone(),
        groupchat: true,
        own_id: None,
    });
    (u1.until("the room's displayed marker", |e| match e {
        Event::Message(m) if m.displayed_of.as_deref() == Some(&sid) => Some(()),
        _ => None,
    }))
    .await;
    // XEP-0198: the server acknowledges the groupchat message (ack requests are on), and its
    // count is exactly ours (presence, chat, join, groupchat: no ping came in this short test).
    if u1.acked < seq {
        (u1.until("an <a/> covering the groupchat message", |e| match e {
            Event::SmAck { h } if *h >= seq => Some(()),
            _ => None,
        }))
        .await;
    }
    assert_eq!((seq, u1.acked), (4, 4), "{name}: XEP-0198 numbering");

    for mut c in [u1, u2, u3] {
        c.conn.sender.close();
        let reason = (c.until("the close", |e| match e {
            Event::Closed { reason } => Some(reason.clone()),
            _ => None,
        }))
        .await;
        assert_eq!(reason, CloseReason::Requested);
    }
}

#[actix_rt::test]
async fn prosody_receipts_markers_muc_and_acks() {
    exchange(Server::prosody()).await;
}

#[actix_rt::test]
async fn ejabberd_receipts_markers_muc_and_acks() {
    exchange(Server::ejabberd()).await;
}
