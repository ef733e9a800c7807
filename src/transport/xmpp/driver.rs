//! The XMPP driver: the tester's [`Driver`] over real XMPP servers (Prosody, ejabberd, any
//! RFC 6120 server with XEP-0045 rooms), on any host.
//!
//! A connection logs in as `user@domain/device` ([`XmppConn::connect`]: STARTTLS by policy,
//! SCRAM-SHA-1 or PLAIN, XEP-0198 with ack requests, initial presence), joins every room of
//! [`LoginSpec::groups`] (`group@muc_domain`, nick = the user id, no history replayed) and
//! waits for each room's self-presence; only then is it handed over, logged in at the last
//! join. Its events stream, polled by the user, turns [`Command`]s into stanzas and session
//! events into [`Inbound`]s, both through the connection's [`Link`] (see there for the
//! mapping): with the session's task, one task per connection.
//!
//! Capabilities (all but [`XmppDriver::LACKS`]): server acks (XEP-0198), delivery receipts
//! (XEP-0184), group read counts (counted by the sender's client from XEP-0333 markers) and
//! channel acks (one `displayed` for the newest message). Not: offline read statistics,
//! reader lists, channel sync (no carbons), server-side read counts, offline group messages
//! (a room delivers only to occupants), group creation (rooms are joined into being).
//!
//! Servers without XEP-0198: the capability is still claimed (it is decided once per driver,
//! and every server this targets offers it), but such a connection answers each send as soon
//! as it is queued and is counted in [`XmppCounters::without_sm`], for the run to warn.

use std::collections::{HashMap, VecDeque};
use std::net::Ipv4Addr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use futures_util::future::LocalBoxFuture;
use futures_util::{FutureExt, StreamExt};

use super::link::{Link, Step, XmppCounters, condition_name};
use super::meter;
use super::outbound::Outbound;
use super::sasl::Mechanism;
use super::session::{
    CloseReason, Event, Events as SessionEvents, Stamped, XmppConfig, XmppConn, XmppError, XmppSender,
};
use super::wire::{StartTlsPolicy, XmppTarget};
use crate::transport::connect::Endpoint;
use crate::transport::tls::TlsOptions;
use crate::transport::{
    Capabilities, Capability, Command, Connection, Driver, FrameStats, Inbound, LoginSpec, OutboxReader, Stall, Timed,
    TransportError, outbox,
};

/// The accounts' passwords.
#[derive(Clone)]
pub enum Passwords {
    /// One password for every user (test servers).
    Same(String),
    /// Each user's own (a user missing here cannot log in).
    PerUser(HashMap<String, String>),
}

/// What an [`XmppDriver`] needs.
#[derive(Clone)]
pub struct XmppDriverConfig {
    /// `xmpp://HOST[:PORT]` (TCP, RFC 6120, port 5222 by default), or a `ws://` / `wss://`
    /// WebSocket endpoint (RFC 7395).
    pub url: String,
    /// The XMPP domain: users are `user@domain`.
    pub domain: String,
    /// The rooms' service: groups are `group@muc_domain`.
    pub muc_domain: String,
    /// How users authenticate.
    pub passwords: Passwords,
    /// STARTTLS on `xmpp://` targets.
    pub starttls: StartTlsPolicy,
    /// Certificate checks for STARTTLS and `wss://`.
    pub tls: TlsOptions,
    /// Source addresses used in turn, towards loopback targets only (none: the OS chooses).
    pub source_ips: Vec<Ipv4Addr>,
    /// Limit for connect, login and room joins together.
    pub timeout: Duration,
    /// `url` resolved already (a run resolves its target once); `None`: resolved here.
    pub endpoint: Option<Arc<Endpoint>>,
    /// The SASL mechanism; `None`: SCRAM-SHA-1 when offered, else PLAIN.
    pub mechanism: Option<Mechanism>,
    /// Enable XEP-0198 where offered, with an ack request after each batch of stanzas: each
    /// send is then answered by the server's `<a/>` (`server_ack`). Off: sends are answered as
    /// they are written, and server acks are not available (less work for the server: no
    /// `<r/>`/`<a/>` per stanza either way).
    pub stream_management: bool,
}

/// Opens XMPP connections to one server.
pub struct XmppDriver {
    target: Arc<XmppTarget>,
    domain: String,
    muc_domain: String,
    passwords: Passwords,
    source_ips: Vec<Ipv4Addr>,
    next_ip: AtomicUsize,
    timeout: Duration,
    mechanism: Option<Mechanism>,
    stream_management: bool,
    stats: Arc<FrameStats>,
    counters: Arc<XmppCounters>,
}

impl XmppDriver {
    /// What XMPP cannot report (see the module docs).
    pub const LACKS: [Capability; 6] = [
        Capability::OfflineStatistic,
        Capability::ReadUsers,
        Capability::ChannelSync,
        Capability::ServerReadCounts,
        Capability::OfflineGroupMessages,
        Capability::CreateGroups,
    ];

    /// A driver for `cfg`: checks the URL and resolves its host once (blocking; before any user
    /// starts), builds the TLS configuration.
    pub fn new(cfg: XmppDriverConfig) -> Result<XmppDriver, TransportError> {
        for (what, domain) in [("domain", &cfg.domain), ("MUC domain", &cfg.muc_domain)] {
            if domain.is_empty() || domain.contains(['@', '/', ' ']) {
                return Err(TransportError::BadUrl {
                    url: cfg.url.clone(),
                    reason: format!("the XMPP {what} {domain:?} is not a domain name"),
                });
            }
        }
        let target = match cfg.endpoint {
            Some(endpoint) => XmppTarget::with_endpoint(endpoint, cfg.starttls, &cfg.tls)?,
            None => XmppTarget::resolve(&cfg.url, cfg.starttls, &cfg.tls)?,
        };
        Ok(XmppDriver {
            target: Arc::new(target),
            // Domains compare without case (and JIDs come back lowercased).
            domain: cfg.domain.to_ascii_lowercase(),
            muc_domain: cfg.muc_domain.to_ascii_lowercase(),
            passwords: cfg.passwords,
            source_ips: cfg.source_ips,
            next_ip: AtomicUsize::new(0),
            timeout: cfg.timeout,
            mechanism: cfg.mechanism,
            stream_management: cfg.stream_management,
            stats: Arc::new(meter::frame_stats()),
            counters: Arc::new(XmppCounters::default()),
        })
    }

    /// Where connections go (for a TLS check before the run: `target().endpoint()`).
    pub fn target(&self) -> &XmppTarget {
        &self.target
    }

    /// What connections noticed beyond frames (servers without XEP-0198, unmatched errors).
    pub fn counters(&self) -> &Arc<XmppCounters> {
        &self.counters
    }

    fn password(&self, user: &str) -> Result<String, TransportError> {
        match &self.passwords {
            Passwords::Same(p) => Ok(p.clone()),
            Passwords::PerUser(map) => map.get(user).cloned().ok_or_else(|| TransportError::LoginRefused {
                code: "not-authorized",
                message: format!("no password for user {user:?}"),
            }),
        }
    }

    fn source_ip(&self) -> Option<Ipv4Addr> {
        if self.source_ips.is_empty() {
            return None;
        }
        let i = self.next_ip.fetch_add(1, Relaxed);
        Some(self.source_ips[i % self.source_ips.len()])
    }
}

impl Driver for XmppDriver {
    fn connect(&self, login: LoginSpec) -> LocalBoxFuture<'static, Result<Connection, TransportError>> {
        let password = self.password(&login.user);
        let mut cfg = XmppConfig::new(self.target.clone(), &self.domain, &login.user, "");
        cfg.resource = login.device.to_string();
        cfg.source = self.source_ip();
        cfg.timeout = self.timeout;
        cfg.mechanism = self.mechanism;
        cfg.stream_management = self.stream_management;
        cfg.ack_requests = self.stream_management;
        cfg.stats = self.stats.clone();
        let rooms: Vec<String> = (login.groups.iter())
            .map(|g| format!("{}@{}", g.to_ascii_lowercase(), self.muc_domain))
            .collect();
        let link = (self.muc_domain.clone(), self.counters.clone());
        let timeout = self.timeout;
        async move {
            cfg.password = password?;
            match tokio::time::timeout(timeout, open(cfg, login, rooms, link)).await {
                Ok(r) => r,
                Err(_) => Err(TransportError::Timeout(timeout)),
            }
        }
        .boxed_local()
    }

    fn name(&self) -> &'static str {
        "xmpp"
    }

    fn capabilities(&self) -> Capabilities {
        match self.stream_management {
            true => Capabilities::without(&Self::LACKS),
            false => Capabilities::without(&Self::LACKS).without_one(Capability::ServerAcks),
        }
    }

    fn stats(&self) -> &Arc<FrameStats> {
        &self.stats
    }
}

async fn open(
    cfg: XmppConfig,
    login: LoginSpec,
    rooms: Vec<String>,
    (muc_domain, counters): (String, Arc<XmppCounters>),
) -> Result<Connection, TransportError> {
    let mut conn = XmppConn::connect(&cfg).await.map_err(|e| login_error(e, &cfg))?;
    if !conn.sm {
        counters.without_sm.fetch_add(1, Relaxed);
    }
    let (early, joined_at) = join(&mut conn, &rooms, &login.user).await?;
    let link = Link::new(
        login.user.clone(),
        &cfg.domain,
        &muc_domain,
        conn.sm,
        cfg.stats.clone(),
        counters,
    );
    let (out, commands) = outbox();
    let stall = Stall::default();
    let mut events = Events {
        commands,
        writing: true,
        sender: conn.sender,
        link,
        session: conn.events,
        ready: VecDeque::new(),
        stall: stall.clone(),
        sleep: None,
        ended: false,
    };
    // Those that came while joining first.
    for Stamped { at, event } in early {
        events.hear(at, event);
    }
    Ok(Connection {
        out,
        events: events.boxed_local(),
        logged_in_at: joined_at.unwrap_or(conn.logged_in_at),
        stall,
    })
}

/// A connection as the user sees it, polled by the user: each poll first turns the commands
/// queued in the outbox into stanzas for the session's task (through the [`Link`], which also
/// gives the answers due at once), then yields what the session heard, as [`Inbound`]s. One
/// object, no task or channel of its own. A [`Stall`] stops the yielding, not the sending.
/// It ends after the first [`Inbound::Closed`] (its own, should the session end without one).
struct Events {
    commands: OutboxReader,
    /// The outbox is still read (no `Close` or `Abort` yet, the session takes stanzas).
    writing: bool,
    sender: XmppSender,
    link: Link,
    session: SessionEvents,
    /// Inbounds to yield, in order.
    ready: VecDeque<Timed>,
    stall: Stall,
    /// The stall's timer, made only while stalled.
    sleep: Option<Pin<Box<tokio::time::Sleep>>>,
    ended: bool,
}

impl Events {
    /// Sends each queued command's stanza and records what answers it, in order.
    fn pump(&mut self, cx: &mut Context<'_>) {
        while self.writing {
            let (req, op) = match self.commands.poll_recv(cx) {
                Poll::Pending => return,
                Poll::Ready(Some(Command::Request { req, op })) => (req, op),
                Poll::Ready(Some(Command::Close) | None) => {
                    // `None`: every outbox is gone, so nobody can use the connection.
                    self.stop_writing();
                    return self.sender.close();
                }
                Poll::Ready(Some(Command::Abort)) => {
                    self.stop_writing();
                    return self.sender.abort();
                }
            };
            let answer = match self.link.plan(req, &op) {
                Step::Answer(reply) => Some(reply),
                Step::Send { stanza, id, waiting } => match self.sender.send(stanza) {
                    Ok(n) => self.link.sent(n, id, waiting),
                    // Closed: what went unanswered is the user's to audit.
                    Err(_) => return self.stop_writing(),
                },
            };
            if let Some(reply) = answer {
                self.ready.push_back(Timed {
                    at: Instant::now(),
                    event: Inbound::Reply { req: Some(req), reply },
                });
            }
        }
    }

    fn stop_writing(&mut self) {
        self.writing = false;
        self.commands.close();
    }

    /// A session event, as the user's inbounds.
    fn hear(&mut self, at: Instant, event: Event) {
        let mut inbound = Vec::new();
        self.link.on_event(event, &mut inbound);
        (self.ready).extend(inbound.into_iter().map(|event| Timed { at, event }));
    }
}

impl futures_util::Stream for Events {
    type Item = Timed;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Timed>> {
        let this = &mut *self;
        if this.ended {
            return Poll::Ready(None);
        }
        this.pump(cx);
        if this.stall.poll_stalled(&mut this.sleep, cx) {
            return Poll::Pending;
        }
        loop {
            if let Some(t) = this.ready.pop_front() {
                if t.event == Inbound::Closed {
                    this.ended = true;
                    this.stop_writing();
                    this.ready = VecDeque::new();
                }
                return Poll::Ready(Some(t));
            }
            match Pin::new(&mut this.session).poll_next(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Some(Stamped { at, event })) => this.hear(at, event),
                Poll::Ready(None) => this.ready.push_back(Timed {
                    at: Instant::now(),
                    event: Inbound::Closed,
                }),
            }
        }
    }
}

/// Joins `rooms` (all asked at once) and waits for each self-presence; returns the events
/// that came meanwhile and when the last join completed (`None`: no rooms).
async fn join(
    conn: &mut XmppConn,
    rooms: &[String],
    nick: &str,
) -> Result<(Vec<Stamped>, Option<Instant>), TransportError> {
    for room in rooms {
        let join = Outbound::Join {
            room: room.clone(),
            nick: nick.to_string(),
        };
        conn.sender.send(join).map_err(|_| TransportError::Closed)?;
    }
    let mut left: Vec<&str> = rooms.iter().map(String::as_str).collect();
    let mut early = Vec::new();
    let mut last = None;
    while !left.is_empty() {
        let Some(stamped) = conn.events.next().await else {
            return Err(TransportError::Closed);
        };
        match &stamped.event {
            Event::MucJoined { room, .. } if left.contains(&room.as_str()) => {
                left.retain(|r| r != room);
                last = Some(stamped.at);
            }
            Event::MucFailed { room, error } if left.contains(&room.as_str()) => {
                let condition = error.as_ref().map_or("undefined-condition", |e| e.condition.as_str());
                let text = (error.as_ref().and_then(|e| e.text.as_deref()))
                    .map(|t| format!(" ({t})"))
                    .unwrap_or_default();
                return Err(TransportError::LoginRefused {
                    code: condition_name(condition),
                    message: format!("joining room {room} as {nick:?} failed: {condition}{text}"),
                });
            }
            Event::Closed { reason } => return Err(closed_error(reason)),
            _ => early.push(stamped),
        }
    }
    Ok((early, last))
}

/// A connection that ended while joining.
fn closed_error(reason: &CloseReason) -> TransportError {
    match reason {
        CloseReason::StreamError { condition, text } => TransportError::LoginRefused {
            code: condition_name(condition),
            message: format!("stream error while joining rooms: {condition}{}", text_of(text)),
        },
        _ => TransportError::Closed,
    }
}

fn text_of(text: &Option<String>) -> String {
    text.as_deref().map(|t| format!(": {t}")).unwrap_or_default()
}

/// The neutral form of a login failure (the text says the step; the code is the protocol's).
fn login_error(e: XmppError, cfg: &XmppConfig) -> TransportError {
    let refused = |code: &'static str, e: &XmppError| TransportError::LoginRefused {
        code,
        message: e.to_string(),
    };
    match e {
        XmppError::Transport(e) => e,
        XmppError::Io(error) => TransportError::Connect {
            addr: cfg.target.endpoint().authority(),
            error,
        },
        XmppError::Handshake(text) => TransportError::Handshake(text),
        XmppError::Tls(_) | XmppError::TlsRequiredByServer | XmppError::TlsNotOffered => TransportError::Tls {
            host: cfg.domain.clone(),
            error: e.to_string(),
        },
        XmppError::AuthFailed { ref condition, .. } => refused(condition_name(condition), &e),
        XmppError::Stream { ref condition, .. } => refused(condition_name(condition), &e),
        XmppError::NoMechanism { .. } => refused("invalid-mechanism", &e),
        XmppError::Sasl(_) => refused("malformed-request", &e),
        XmppError::Bind(_) => refused("not-allowed", &e),
        XmppError::Parse(_) => refused("not-well-formed", &e),
        XmppError::Unexpected { .. } => refused("unexpected-request", &e),
        XmppError::Closed => TransportError::Closed,
        XmppError::Timeout(d) => TransportError::Timeout(d),
    }
}
