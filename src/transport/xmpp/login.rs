//! The login steps of [`XmppConn::connect`]: TCP connect (loopback only), stream open,
//! STARTTLS, SASL, restart, bind, legacy session, XEP-0198 enable, initial presence; then the
//! connection's [`Task`] is spawned. Each step reads typed items and fails with an
//! [`XmppError`] naming what it waited for and what came instead.

use std::cell::Cell;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::rc::Rc;
use std::time::Instant;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use futures_util::StreamExt;
use tokio::net::{TcpSocket, TcpStream};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::http::Uri;

use super::outbound::{self as out, Outbound};
use super::parser::StreamParser;
use super::sasl::{self, Mechanism, SaslError, Scram};
use super::session::{EVENT_QUEUE, Transport, XmppConfig, XmppConn, XmppError, XmppSender};
use super::stanza::{Features, Incoming, Iq, IqType};
use super::task::Task;
use super::wire::{StartTls, Wire};

/// The login-time view of a stream: send text, take the next typed item.
struct Stream {
    wire: Wire,
    parser: StreamParser,
    buf: Vec<u8>,
    domain: String,
}

impl Stream {
    async fn send(&mut self, text: &str) -> Result<(), XmppError> {
        self.wire.send(text).await.map(drop).map_err(XmppError::Io)
    }

    async fn next(&mut self) -> Result<Incoming, XmppError> {
        loop {
            if let Some(item) = self.parser.next_item()? {
                return match Incoming::from_item(item) {
                    Incoming::StreamError { condition, text } => Err(XmppError::Stream { condition, text }),
                    Incoming::Close => Err(XmppError::Closed),
                    other => Ok(other),
                };
            }
            let n = (self.wire.read_into(&mut self.parser, &mut self.buf).await).map_err(XmppError::Io)?;
            if n == 0 {
                return Err(XmppError::Closed);
            }
        }
    }

    /// Opens (or restarts) the stream and returns the features.
    async fn open(&mut self) -> Result<Features, XmppError> {
        self.parser.reset();
        let header = match self.wire.is_ws() {
            true => out::ws_open(&self.domain),
            false => out::stream_header(&self.domain),
        };
        self.send(&header).await?;
        loop {
            match self.next().await? {
                Incoming::Open { .. } => continue,
                Incoming::Features(f) => return Ok(f),
                other => return Err(unexpected("<stream:features/>", &other)),
            }
        }
    }
}

fn unexpected(wanted: &'static str, got: &Incoming) -> XmppError {
    let mut got = format!("{got:?}");
    got.truncate(200);
    XmppError::Unexpected { wanted, got }
}

/// The loopback address of a target.
fn target_addr(transport: &Transport) -> Result<SocketAddr, XmppError> {
    let bad = |target: &str, reason: &str| XmppError::BadTarget {
        target: target.to_string(),
        reason: reason.to_string(),
    };
    let addr = match transport {
        Transport::Tcp { addr, .. } => *addr,
        Transport::WebSocket { url } => {
            let uri: Uri = url.parse().map_err(|_| bad(url, "not a URL"))?;
            if uri.scheme_str() != Some("ws") {
                return Err(bad(url, "the scheme must be ws://"));
            }
            let host = uri.host().ok_or_else(|| bad(url, "no host"))?;
            let host = if host == "localhost" { "127.0.0.1" } else { host };
            let ip: IpAddr =
                (host.trim_matches(['[', ']']).parse()).map_err(|_| bad(url, "the host must be an IP address"))?;
            SocketAddr::new(ip, uri.port_u16().unwrap_or(80))
        }
    };
    if !addr.ip().is_loopback() {
        return Err(bad(
            &addr.to_string(),
            "ackstorm only drives loopback targets (127.0.0.0/8, ::1)",
        ));
    }
    Ok(addr)
}

async fn tcp_connect(addr: SocketAddr, source: Option<Ipv4Addr>) -> Result<TcpStream, XmppError> {
    let err = |error| XmppError::Connect { addr, error };
    let socket = match addr {
        SocketAddr::V4(_) => TcpSocket::new_v4(),
        SocketAddr::V6(_) => TcpSocket::new_v6(),
    }
    .map_err(err)?;
    if let (Some(ip), SocketAddr::V4(_)) = (source, addr) {
        socket.bind(SocketAddr::new(IpAddr::V4(ip), 0)).map_err(err)?;
    }
    let tcp = socket.connect(addr).await.map_err(err)?;
    let _ = tcp.set_nodelay(true);
    Ok(tcp)
}

pub(super) async fn login(cfg: &XmppConfig) -> Result<XmppConn, XmppError> {
    let addr = target_addr(&cfg.transport)?;
    let tcp = tcp_connect(addr, cfg.source).await?;
    let wire = match &cfg.transport {
        Transport::Tcp { .. } => Wire::Tcp(tcp),
        Transport::WebSocket { url } => Wire::websocket(tcp, url).await?,
    };
    let ws = wire.is_ws();
    let mut s = Stream {
        wire,
        parser: StreamParser::default(),
        buf: vec![0; 4096],
        domain: cfg.domain.clone(),
    };
    let mut features = s.open().await?;
    if let Transport::Tcp { starttls, .. } = &cfg.transport {
        let trust = match (starttls, features.starttls) {
            (StartTls::Never, Some(true)) => return Err(XmppError::TlsRequiredByServer),
            (StartTls::Required(_), None) => return Err(XmppError::TlsNotOffered),
            (StartTls::IfOffered(t) | StartTls::Required(t), Some(_)) => Some(t),
            _ => None,
        };
        if let Some(trust) = trust {
            s.send(out::STARTTLS).await?;
            match s.next().await? {
                Incoming::TlsProceed => {}
                other => return Err(unexpected("<proceed/>", &other)),
            }
            let Stream {
                wire,
                parser,
                buf,
                domain,
            } = s;
            s = Stream {
                wire: wire.starttls(&cfg.domain, trust).await?,
                parser,
                buf,
                domain,
            };
            features = s.open().await?;
        }
    }
    authenticate(&mut s, cfg, &features).await?;
    let features = s.open().await?;
    if !features.bind {
        return Err(XmppError::Bind("the server offers no resource binding".into()));
    }
    // Stanzas that arrive before login ends (rare: nothing routes to an unavailable resource)
    // are kept for the task, so none is lost.
    let mut early = Vec::new();
    s.send(&out::bind("bind", &cfg.resource, ws)).await?;
    let jid = expect_result(&mut s, "bind", &mut early).await?.bind_jid;
    let jid = jid.ok_or_else(|| XmppError::Bind("the bind result has no JID".into()))?;
    if features.session_required {
        s.send(&out::session("sess", ws)).await?;
        expect_result(&mut s, "sess", &mut early).await?;
    }
    let mut sm = false;
    if cfg.stream_management && features.sm {
        s.send(out::SM_ENABLE).await?;
        loop {
            match s.next().await? {
                Incoming::SmEnabled { .. } => break sm = true,
                Incoming::SmFailed(_) => break,
                other if other.is_stanza() => early.push(other),
                _ => {}
            }
        }
    }
    let (tx, rx) = mpsc::unbounded_channel();
    let sender = XmppSender {
        tx,
        seq: Rc::new(Cell::new(0)),
    };
    if cfg.initial_presence {
        s.send(&Outbound::Presence.encode(ws)).await?;
        sender.seq.set(1);
    }
    let logged_in_at = Instant::now();
    let (events_tx, events_rx) = mpsc::channel(EVENT_QUEUE);
    let task = Task::new(s.wire, s.parser, s.buf, rx, &sender, events_tx, sm, cfg.ack_requests);
    actix_rt::spawn(task.run(early));
    let events = futures_util::stream::unfold(events_rx, |mut rx| async move { rx.recv().await.map(|e| (e, rx)) });
    Ok(XmppConn {
        jid,
        sender,
        events: events.boxed_local(),
        sm,
        logged_in_at,
    })
}

async fn expect_result(s: &mut Stream, id: &str, early: &mut Vec<Incoming>) -> Result<Iq, XmppError> {
    loop {
        match s.next().await? {
            Incoming::Iq(iq) if iq.id == id => {
                return match iq.kind {
                    IqType::Result => Ok(iq),
                    _ => Err(XmppError::Bind(iq.error.map_or("error".into(), |e| e.condition))),
                };
            }
            other if other.is_stanza() => early.push(other),
            _ => {}
        }
    }
}

async fn authenticate(s: &mut Stream, cfg: &XmppConfig, features: &Features) -> Result<(), XmppError> {
    let mech = Mechanism::choose(&features.mechanisms, cfg.mechanism).ok_or_else(|| XmppError::NoMechanism {
        offered: features.mechanisms.clone(),
    })?;
    let failed = |condition: String| XmppError::AuthFailed {
        user: cfg.user.clone(),
        condition,
    };
    match mech {
        Mechanism::Plain => {
            s.send(&out::auth(mech.as_str(), &sasl::plain(&cfg.user, &cfg.password)))
                .await?;
            match s.next().await? {
                Incoming::SaslSuccess(_) => Ok(()),
                Incoming::SaslFailure(c) => Err(failed(c)),
                other => Err(unexpected("<success/>", &other)),
            }
        }
        Mechanism::ScramSha1 => {
            let mut scram = Scram::new(&cfg.user, &cfg.password, &sasl::random_nonce());
            s.send(&out::auth(mech.as_str(), scram.client_first().as_bytes()))
                .await?;
            let server_first = match s.next().await? {
                Incoming::SaslChallenge(c) => decode(&c)?,
                Incoming::SaslFailure(c) => return Err(failed(c)),
                other => return Err(unexpected("<challenge/>", &other)),
            };
            let client_final = scram.client_final(&server_first)?;
            s.send(&out::response(client_final.as_bytes())).await?;
            match s.next().await? {
                Incoming::SaslSuccess(data) => Ok(scram.verify_server_final(&decode(&data)?)?),
                Incoming::SaslChallenge(data) => {
                    scram.verify_server_final(&decode(&data)?)?;
                    s.send(&out::response(b"")).await?;
                    match s.next().await? {
                        Incoming::SaslSuccess(_) => Ok(()),
                        Incoming::SaslFailure(c) => Err(failed(c)),
                        other => Err(unexpected("<success/>", &other)),
                    }
                }
                Incoming::SaslFailure(c) => Err(failed(c)),
                other => Err(unexpected("<success/>", &other)),
            }
        }
    }
}

/// A SASL payload: base64 (`=` or nothing for empty) of UTF-8 text.
fn decode(b64: &str) -> Result<String, XmppError> {
    let bad = |reason| SaslError::Malformed {
        message: b64.to_string(),
        reason,
    };
    let bytes = match b64 {
        "" | "=" => Vec::new(),
        _ => B64.decode(b64).map_err(|_| bad("not base64"))?,
    };
    Ok(String::from_utf8(bytes).map_err(|_| bad("not UTF-8"))?)
}
