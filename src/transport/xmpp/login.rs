//! The login steps of [`XmppConn::connect`]: connect ([`super::wire::XmppTarget::open`]: any
//! host), stream open, STARTTLS, SASL, restart, bind, legacy session, XEP-0198 enable,
//! initial presence; then the connection's [`Task`] is spawned. Each step reads typed items
//! and fails with an [`XmppError`] naming what it waited for and what came instead. Every
//! frame and byte is counted in the config's [`FrameStats`].

use std::cell::Cell;
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Instant;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;

use super::meter::{self, Sent};
use super::outbound::{self as out, Outbound};
use super::parser::StreamParser;
use super::sasl::{self, Mechanism, SaslError, Scram};
use super::session::{Events, XmppConfig, XmppConn, XmppError, XmppSender};
use super::stanza::{Features, Incoming, Iq, IqType};
use super::task::Task;
use super::wire::{StartTlsPolicy, Wire};
use crate::transport::{FrameStats, outbox};

/// The login-time view of a stream: send text, take the next typed item.
pub(super) struct Stream {
    pub(super) wire: Wire,
    pub(super) parser: StreamParser,
    domain: String,
    pub(super) stats: Arc<FrameStats>,
}

impl Stream {
    async fn send(&mut self, kind: Sent, text: &str) -> Result<(), XmppError> {
        meter::sent(&self.stats, kind, text.len());
        self.wire.send(text).await.map(drop).map_err(XmppError::Io)
    }

    async fn next(&mut self) -> Result<Incoming, XmppError> {
        loop {
            if let Some(item) = self.parser.next_item()? {
                let incoming = Incoming::from_item(item);
                meter::received(&self.stats, &incoming);
                return match incoming {
                    Incoming::StreamError { condition, text } => Err(XmppError::Stream { condition, text }),
                    Incoming::Close => Err(XmppError::Closed),
                    other => Ok(other),
                };
            }
            let n = (self.wire.read_into(&mut self.parser).await).map_err(XmppError::Io)?;
            self.stats.bytes_received.fetch_add(n as u64, Relaxed);
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
        self.send(Sent::Stream, &header).await?;
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

pub(super) async fn login(cfg: &XmppConfig) -> Result<XmppConn, XmppError> {
    let wire = cfg.target.open(cfg.source).await?;
    let ws = wire.is_ws();
    let mut s = Stream {
        wire,
        parser: StreamParser::default(),
        domain: cfg.domain.clone(),
        stats: cfg.stats.clone(),
    };
    let mut features = s.open().await?;
    if !ws {
        let upgrade = match (cfg.target.starttls_policy(), features.starttls) {
            (StartTlsPolicy::Never, Some(true)) => return Err(XmppError::TlsRequiredByServer),
            (StartTlsPolicy::Required, None) => return Err(XmppError::TlsNotOffered),
            (StartTlsPolicy::IfOffered | StartTlsPolicy::Required, Some(_)) => true,
            _ => false,
        };
        if upgrade {
            s.send(Sent::Stream, out::STARTTLS).await?;
            match s.next().await? {
                Incoming::TlsProceed => {}
                other => return Err(unexpected("<proceed/>", &other)),
            }
            let Stream {
                wire,
                parser,
                domain,
                stats,
            } = s;
            s = Stream {
                // Boxed, as the connect is: a large future, alive only for the handshake.
                wire: Box::pin(cfg.target.starttls(wire, &cfg.domain)).await?,
                parser,
                domain,
                stats,
            };
            features = s.open().await?;
        }
    }
    // Boxed: SASL (SCRAM's state above all) is the largest step, and only this step needs it.
    Box::pin(authenticate(&mut s, cfg, &features)).await?;
    let features = s.open().await?;
    if !features.bind {
        return Err(XmppError::Bind("the server offers no resource binding".into()));
    }
    // Stanzas that arrive before login ends (rare: nothing routes to an unavailable resource)
    // are kept for the task, so none is lost.
    let mut early = Vec::new();
    s.send(Sent::Iq, &out::bind("bind", &cfg.resource, ws)).await?;
    let jid = expect_result(&mut s, "bind", &mut early).await?.bind_jid;
    let jid = jid.ok_or_else(|| XmppError::Bind("the bind result has no JID".into()))?;
    if features.session_required {
        s.send(Sent::Iq, &out::session("sess", ws)).await?;
        expect_result(&mut s, "sess", &mut early).await?;
    }
    let mut sm = false;
    if cfg.stream_management && features.sm {
        s.send(Sent::Sm, out::SM_ENABLE).await?;
        loop {
            match s.next().await? {
                Incoming::SmEnabled { .. } => break sm = true,
                Incoming::SmFailed(_) => break,
                other if other.is_stanza() => early.push(other),
                _ => {}
            }
        }
    }
    let (tx, rx) = outbox();
    let sender = XmppSender {
        tx,
        seq: Rc::new(Cell::new(0)),
    };
    if cfg.initial_presence {
        s.send(Sent::Presence, &Outbound::Presence.encode(ws)).await?;
        sender.seq.set(1);
    }
    let logged_in_at = Instant::now();
    let (events_tx, events_rx) = outbox();
    let task = Task::new(s, rx, &sender, events_tx, sm, cfg.ack_requests);
    actix_rt::spawn(task.run(early));
    Ok(XmppConn {
        jid,
        sender,
        events: Events(events_rx),
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
            s.send(
                Sent::Stream,
                &out::auth(mech.as_str(), &sasl::plain(&cfg.user, &cfg.password)),
            )
            .await?;
            match s.next().await? {
                Incoming::SaslSuccess(_) => Ok(()),
                Incoming::SaslFailure(c) => Err(failed(c)),
                other => Err(unexpected("<success/>", &other)),
            }
        }
        Mechanism::ScramSha1 => {
            let mut scram = Scram::new(&cfg.user, &cfg.password, &sasl::random_nonce());
            s.send(Sent::Stream, &out::auth(mech.as_str(), scram.client_first().as_bytes()))
                .await?;
            let server_first = match s.next().await? {
                Incoming::SaslChallenge(c) => decode(&c)?,
                Incoming::SaslFailure(c) => return Err(failed(c)),
                other => return Err(unexpected("<challenge/>", &other)),
            };
            let client_final = scram.client_final(&server_first)?;
            s.send(Sent::Stream, &out::response(client_final.as_bytes())).await?;
            match s.next().await? {
                Incoming::SaslSuccess(data) => Ok(scram.verify_server_final(&decode(&data)?)?),
                Incoming::SaslChallenge(data) => {
                    scram.verify_server_final(&decode(&data)?)?;
                    s.send(Sent::Stream, &out::response(b"")).await?;
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
