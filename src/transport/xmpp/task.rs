//! The task that owns a logged-in XMPP connection (see [`super::session`] for the contract):
//! one loop that either writes everything queued or reads and handles what arrived.
//!
//! It must not block on anything but the socket and the bounded events channel, and it
//! decides nothing about the workload: it answers only what the protocol obliges a client
//! to answer (XEP-0199 pings, XEP-0198 `<r/>`, iq requests it cannot handle).

use std::cell::Cell;
use std::collections::HashMap;
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};

use super::login::Stream;
use super::meter::{self, Sent};
use super::outbound::{self as out, Outbound};
use super::parser::StreamParser;
use super::session::{CloseReason, Cmd, EVENT_QUEUE, Event, Stamped, XmppSender};
use super::stanza::{Incoming, IqType};
use super::wire::Wire;
use super::{bare, resource};
use crate::transport::{FrameStats, Outbox, OutboxReader, ProtocolFault};

/// How long a polite close waits for the server's own close.
const CLOSE_WAIT: Duration = Duration::from_secs(5);

pub(super) struct Task {
    wire: Wire,
    parser: StreamParser,
    ws: bool,
    /// What the senders queue; the task queues its pongs behind (it is not a sender: the
    /// connection closes once every sender is gone).
    rx: OutboxReader<Cmd>,
    /// The senders' XEP-0198 numbering, advanced for pongs too.
    seq: Rc<Cell<u32>>,
    /// What the task heard, for the connection's consumer (at most [`EVENT_QUEUE`]: then
    /// the socket is no longer read).
    events: Outbox<Box<Stamped>>,
    sm: bool,
    /// Stanzas received since XEP-0198 was enabled (mod 2^32).
    h_in: u32,
    ack_requests: bool,
    /// Rooms joined and not yet confirmed: room bare JID -> nick.
    joins: HashMap<String, String>,
    stats: Arc<FrameStats>,
}

/// What a batch of commands asks for after its stanzas are written.
enum After {
    Continue,
    Close,
    Abort,
}

impl Task {
    pub(super) fn new(
        stream: Stream,
        rx: OutboxReader<Cmd>,
        sender: &XmppSender,
        events: Outbox<Box<Stamped>>,
        sm: bool,
        ack_requests: bool,
    ) -> Task {
        Task {
            ws: stream.wire.is_ws(),
            wire: stream.wire,
            parser: stream.parser,
            stats: stream.stats,
            rx,
            seq: sender.seq.clone(),
            events,
            sm,
            h_in: 0,
            ack_requests: ack_requests && sm,
            joins: HashMap::new(),
        }
    }

    /// Runs until the connection ends; `early` holds stanzas read during login (before
    /// XEP-0198 counting started).
    ///
    /// An async block rather than an `async fn`, and whatever is rare boxed: this future is
    /// every connection's for as long as it lives. An `async fn` keeps its arguments twice (as
    /// given, and moved into its body), and the states of one future share room badly: it was
    /// 1,232 bytes, the loop's own state a third of that.
    #[allow(clippy::manual_async_fn)] // on purpose: see above
    pub(super) fn run(mut self, early: Vec<Incoming>) -> impl Future<Output = ()> {
        async move {
            if !early.is_empty() {
                Box::pin(self.handle_early(early)).await;
            }
            let reason = loop {
                tokio::select! {
                    cmd = self.rx.recv() => {
                        let Some(cmd) = cmd else {
                            // Every sender is gone: nobody can use this connection any more.
                            break Box::pin(self.close()).await;
                        };
                        match Box::pin(self.write_batch(cmd)).await {
                            Err(reason) => break reason,
                            Ok(After::Continue) => {}
                            Ok(After::Close) => break Box::pin(self.close()).await,
                            Ok(After::Abort) => {
                                self.wire.set_abortive();
                                break CloseReason::Aborted;
                            }
                        }
                    }
                    read = self.wire.read_into(&mut self.parser) => {
                        match read {
                            Ok(0) => break CloseReason::Eof,
                            Err(e) => break CloseReason::Io(e.to_string()),
                            Ok(n) => self.stats.bytes_received.fetch_add(n as u64, Relaxed),
                        };
                        if let Some(reason) = Box::pin(self.drain(Instant::now())).await {
                            break reason;
                        }
                    }
                }
            };
            self.rx.close();
            let closed = self.events.send_bounded(
                Box::new(Stamped {
                    at: Instant::now(),
                    event: Event::Closed { reason },
                }),
                EVENT_QUEUE,
            );
            let _ = closed.await;
        }
    }

    /// Handles the stanzas login read (counted then).
    async fn handle_early(&mut self, early: Vec<Incoming>) {
        let now = Instant::now();
        for incoming in early {
            let step = self.step(incoming, now);
            self.apply(step).await;
        }
    }

    /// Writes `first` and everything else already queued, then one flush.
    async fn write_batch(&mut self, first: Cmd) -> Result<After, CloseReason> {
        let mut texts = Vec::new();
        let mut stanzas = 0;
        let mut after = After::Continue;
        let mut next = Some(first);
        while let Some(cmd) = next.take() {
            match cmd {
                Cmd::Stanza(stanza) => {
                    if let Outbound::Join { room, nick } = &stanza {
                        self.joins.insert(room.clone(), nick.clone());
                    }
                    self.push(&mut texts, meter::sent_kind(&stanza), stanza.encode(self.ws));
                    stanzas += 1;
                }
                Cmd::Answer(stanza) => self.push(&mut texts, meter::sent_kind(&stanza), stanza.encode(self.ws)),
                Cmd::RequestAck => self.push(&mut texts, Sent::Sm, out::SM_REQUEST.to_string()),
                Cmd::Close => {
                    after = After::Close;
                    break;
                }
                Cmd::Abort => return Ok(After::Abort),
            }
            next = self.rx.try_recv();
        }
        if stanzas > 0 && self.ack_requests {
            self.push(&mut texts, Sent::Sm, out::SM_REQUEST.to_string());
        }
        if !texts.is_empty() {
            (self.wire.send_all(&texts).await).map_err(|e| CloseReason::Io(e.to_string()))?;
        }
        Ok(after)
    }

    /// Adds a frame to a batch, counting it.
    fn push(&self, texts: &mut Vec<String>, kind: Sent, text: String) {
        meter::sent(&self.stats, kind, text.len());
        texts.push(text);
    }

    /// Handles every complete item in the parser.
    async fn drain(&mut self, at: Instant) -> Option<CloseReason> {
        loop {
            let item = match self.parser.next_item() {
                Ok(None) => return None,
                Ok(Some(item)) => item,
                Err(e) => {
                    // Not well-formed: the stream cannot go on (the protocol's "invalid frame").
                    self.stats.fault(ProtocolFault::InvalidJson, 0);
                    return Some(CloseReason::Malformed(e.to_string()));
                }
            };
            let incoming = Incoming::from_item(item);
            meter::received(&self.stats, &incoming);
            if incoming == Incoming::Close {
                return Some(CloseReason::ServerClosed);
            }
            if self.sm && incoming.is_stanza() {
                self.h_in = self.h_in.wrapping_add(1);
            }
            let step = self.step(incoming, at);
            if let Some(reason) = self.apply(step).await {
                return Some(reason);
            }
        }
    }

    /// Does what an item asks: answers the server, or passes an event on. Items are turned
    /// into steps first ([`Task::step`]), so this future holds a boxed event, not the item: it
    /// is part of every connection's task, for as long as the connection.
    async fn apply(&mut self, step: Step) -> Option<CloseReason> {
        match step {
            Step::Emit(stamped) => {
                // A consumer that dropped its stream does not stop the connection.
                let _ = self.events.send_bounded(stamped, EVENT_QUEUE).await;
                None
            }
            // Boxed: a write's future is larger than the rest, and answers are rare.
            Step::Answer(ack) => (Box::pin(self.wire.send(&ack)).await)
                .err()
                .map(|e| CloseReason::Io(e.to_string())),
            Step::Stop(reason) => Some(reason),
            Step::Nothing => None,
        }
    }

    /// What `incoming` asks of the task; pings and requests are answered here.
    fn step(&mut self, incoming: Incoming, at: Instant) -> Step {
        let event = match incoming {
            Incoming::Message(m) => Event::Message(m),
            Incoming::Presence(p) => {
                let from = p.from.as_deref().unwrap_or_default();
                let room = bare(from);
                match self.joins.get(room) {
                    Some(nick)
                        if p.kind.as_deref() == Some("error") || p.is_muc_self() || resource(from) == Some(nick) =>
                    {
                        let nick = self.joins.remove(room).unwrap_or_default();
                        match p.kind.as_deref() {
                            Some("error") => Event::MucFailed {
                                room: room.to_string(),
                                error: p.error,
                            },
                            _ => Event::MucJoined {
                                room: room.to_string(),
                                nick,
                            },
                        }
                    }
                    _ => Event::Presence(p),
                }
            }
            Incoming::Iq(iq) if iq.is_ping() => {
                self.queue(Outbound::Pong { to: iq.from, id: iq.id });
                return Step::Nothing;
            }
            Incoming::Iq(iq) if matches!(iq.kind, IqType::Get | IqType::Set) => {
                self.queue(Outbound::Unsupported { to: iq.from, id: iq.id });
                return Step::Nothing;
            }
            Incoming::Iq(iq) => Event::Iq(iq),
            Incoming::SmRequest => {
                let ack = out::sm_ack(self.h_in);
                meter::sent(&self.stats, Sent::Sm, ack.len());
                return Step::Answer(ack);
            }
            Incoming::SmAck { h } => Event::SmAck { h },
            Incoming::StreamError { condition, text } => {
                return Step::Stop(CloseReason::StreamError { condition, text });
            }
            Incoming::Close => return Step::Stop(CloseReason::ServerClosed),
            // Stream headers, features, SASL and SM nonzas after login, unknown elements.
            _ => return Step::Nothing,
        };
        Step::Emit(Box::new(Stamped { at, event }))
    }

    /// Queues an answer behind what the user queued, keeping the XEP-0198 numbering.
    fn queue(&self, stanza: Outbound) {
        if self.rx.push(Cmd::Answer(stanza)) {
            self.seq.set(self.seq.get().wrapping_add(1));
        }
    }

    /// Closes the stream and waits (bounded) for the server's close; handles what arrives.
    async fn close(&mut self) -> CloseReason {
        let close = if self.ws { out::WS_CLOSE } else { out::STREAM_CLOSE };
        meter::sent(&self.stats, Sent::Stream, close.len());
        if self.wire.send(close).await.is_err() {
            return CloseReason::Requested;
        }
        let deadline = tokio::time::Instant::now() + CLOSE_WAIT;
        loop {
            let read = tokio::time::timeout_at(deadline, self.wire.read_into(&mut self.parser)).await;
            match read {
                Ok(Ok(n)) if n > 0 => {
                    self.stats.bytes_received.fetch_add(n as u64, Relaxed);
                    if self.drain(Instant::now()).await.is_some() {
                        break;
                    }
                }
                _ => break,
            }
        }
        self.wire.shutdown().await;
        CloseReason::Requested
    }
}

/// What an inbound item asks of the task.
enum Step {
    /// Pass an event on to the connection's consumer.
    Emit(Box<Stamped>),
    /// Write this answer now (a XEP-0198 ack, in its place in the stream).
    Answer(String),
    /// The stream is over.
    Stop(CloseReason),
    /// Nothing (handled, or nothing to do).
    Nothing,
}
