//! One task per WebSocket connection: login, then read frames, rate-limit them, ask the hub,
//! and write replies and pushes; and the connection's health: pings with an idle timeout, a
//! login deadline from accept, and a write timeout (with the hub's queue bound, the
//! slow-consumer rule).
//!
//! A reply is fed to the socket in the same loop turn as the frame it answers, before the
//! outbox is polled again, so `received` always precedes any receipt pushed for that message.
//! Writes are batched: after one event the task drains whatever else is ready (pushes first)
//! and flushes once. Every write is bounded by the write timeout, and ends early when the hub
//! closes the queue; a push whose write did not complete goes back to the queue, so that
//! logout stores it with the rest.
//!
//! With a durable store (`--data`), nothing is written before the store's changes it may
//! reflect are committed (`Hub::settled_to`). Replies and pushes are then held, in order, each
//! with the store's change count when it was made ([`held`]), and written as soon as a commit
//! covers them, while the loop goes on reading and handling frames: a connection never stalls
//! on a commit, and what it handles meanwhile joins the next one. A kick or a close first
//! waits for everything held. If a commit fails, the held replies are answered `internal`
//! instead (each frame still gets one answer), the held pushes go back to the queue, and the
//! connection closes (1011).

use std::borrow::Cow;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};

use futures_util::{FutureExt, SinkExt, StreamExt};
use thiserror::Error;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::{self, Message, Utf8Bytes};
use tokio_util::sync::CancellationToken;
use tracing::debug;

use super::admission::Ticket;
use super::hub::{Hub, Login, Session};
use super::metrics::CloseReason;
use super::outbox::{self, Outbox, Push};
use super::ratelimit::TokenBucket;
use super::store::{Store, StoreError};
use crate::protocol::{ErrorCode, Outgoing, ProtocolError, Request};

mod held;

use self::held::{Deferred, HeldFrames, MAX_HELD};

/// The op index of `error` frames (see `ServerFrame::op_index`).
const ERROR_OP: usize = 1;
/// Most events handled between two flushes.
const BATCH: usize = 64;
/// Close reason (code 1013, try again later) of a connection evicted before its login to make
/// room for a newer one.
const EVICTED: &str = "evicted: too many connections not logged in";

/// What an item read comes to, before anything is written (see [`Conn::on_item`]).
enum Step {
    /// Nothing (more) to write.
    Done(Next),
    /// Write this answer.
    Write { op: usize, text: Utf8Bytes },
    /// The read failed.
    ReadError(tungstenite::Error),
    /// A deliberately slowed server: wait, then handle this frame.
    Slowed(Utf8Bytes),
}

/// What the loop does after an event.
enum Next {
    Continue,
    Close(Option<CloseFrame>),
}

/// Why a connection's task stopped early.
#[derive(Debug, Error)]
enum ConnError {
    /// The WebSocket failed (reset, protocol error).
    #[error("websocket: {0}")]
    Ws(#[from] tungstenite::Error),
    /// A slow consumer: the queue passed its bound, or a write made no progress in time.
    #[error("slow consumer ({0:?})")]
    SlowConsumer(CloseReason),
    /// The store failed: what this connection would write is not durable and never will be.
    #[error("{0}")]
    Store(StoreError),
}

struct Conn<T, S> {
    ws: WebSocketStream<T>,
    hub: Arc<Hub<S>>,
    bucket: Option<TokenBucket>,
    /// This connection's push queue (the hub holds a clone while it is logged in).
    outbox: Outbox,
    write_timeout: Duration,
    /// When the client last answered a ping (or logged in).
    last_pong: tokio::time::Instant,
    /// Durable store: replies and pushes handled but not written yet, in order, each with the
    /// store's change count it waits for.
    held: HeldFrames,
}

/// Serves one upgraded WebSocket until it closes, the client is kicked, the server stops, or
/// a health rule closes it. `login_deadline` is the login timeout counted from accept; until
/// its first frame the connection can be evicted through `ticket` to make room for a newer
/// one (close 1013).
///
/// Not an `async fn`: the connection is built before the future, which then holds it once
/// (an `async fn` would keep its `ws` argument beside the `Conn` it moved into, ~330 bytes
/// more in every connection's task).
pub(super) fn serve<T, S>(
    ws: WebSocketStream<T>,
    hub: Arc<Hub<S>>,
    stop: CancellationToken,
    ticket: Arc<Ticket>,
    login_deadline: tokio::time::Instant,
) -> impl Future<Output = ()>
where
    T: AsyncRead + AsyncWrite + Unpin,
    S: Store,
{
    let config = hub.config();
    let bucket = config.rate_limit.map(|l| TokenBucket::new(l, Instant::now()));
    let outbox = Outbox::new(config.queue_bound);
    let write_timeout = config.write_timeout;
    let mut conn = Conn {
        ws,
        hub,
        bucket,
        outbox,
        write_timeout,
        last_pong: tokio::time::Instant::now(),
        held: HeldFrames::new(),
    };
    async move {
        let metrics = conn.hub.metrics().clone();
        metrics.connections_open.fetch_add(1, Relaxed);
        metrics.connections_total.fetch_add(1, Relaxed);
        conn.last_pong = tokio::time::Instant::now();
        if let Err(e) = conn.run(&stop, &ticket, login_deadline).await {
            debug!(error = %e, "connection ended with an error");
        }
        metrics.connections_open.fetch_sub(1, Relaxed);
    }
}

fn close_frame(code: CloseCode, reason: &'static str) -> Option<CloseFrame> {
    Some(CloseFrame {
        code,
        reason: reason.into(),
    })
}

impl<T, S> Conn<T, S>
where
    T: AsyncRead + AsyncWrite + Unpin,
    S: Store,
{
    async fn run(
        &mut self,
        stop: &CancellationToken,
        ticket: &Ticket,
        deadline: tokio::time::Instant,
    ) -> Result<(), ConnError> {
        let conn_id = self.hub.next_conn();
        let first = loop {
            let item = tokio::select! {
                _ = stop.cancelled() => return self.close(close_frame(CloseCode::Away, "server stopping")).await,
                _ = ticket.evicted() => return self.close(close_frame(CloseCode::Again, EVICTED)).await,
                item = tokio::time::timeout_at(deadline, self.ws.next()) => item,
            };
            // WebSocket pings and pongs are the transport's keepalive (tungstenite answers
            // pings), not protocol frames: they are not the first frame and do not extend the
            // login deadline.
            if !matches!(item, Ok(Some(Ok(Message::Ping(_) | Message::Pong(_))))) {
                break item;
            }
        };
        let session = match first {
            Err(_) => {
                self.hub.metrics().closed(CloseReason::LoginTimeout);
                return self.close(close_frame(CloseCode::Policy, "no login")).await;
            }
            Ok(None) => return Ok(()),
            // Evicted just as the frame came: it is not processed.
            Ok(Some(_)) if !ticket.promote() => return self.close(close_frame(CloseCode::Again, EVICTED)).await,
            Ok(Some(item)) => match Box::pin(self.login(item, conn_id)).await? {
                Some(session) => session,
                None => return Ok(()),
            },
        };
        let metrics = self.hub.metrics().clone();
        metrics.logged_in.fetch_add(1, Relaxed);
        self.last_pong = tokio::time::Instant::now();
        let result = match self.session_loop(&session, stop).await {
            Err(ConnError::SlowConsumer(reason)) => {
                // The hub counted a queue over its bound when it closed the queue.
                if reason != CloseReason::QueueBound {
                    metrics.closed(reason);
                }
                self.close(close_frame(CloseCode::Policy, "slow consumer")).await
            }
            Err(ConnError::Store(e)) => {
                debug!(error = %e, "closing: the store failed");
                self.close(close_frame(CloseCode::Error, "store failed")).await
            }
            other => other,
        };
        // Whatever this connection did not write is stored for the device's next login.
        self.unhold();
        self.hub.logout(&session, &self.outbox);
        metrics.logged_in.fetch_sub(1, Relaxed);
        result
    }

    /// Handles the first frame: `Some(session)` after `loginOk`, `None` after a refusal
    /// (already answered and closed).
    async fn login(
        &mut self,
        item: Result<Message, tungstenite::Error>,
        conn_id: u64,
    ) -> Result<Option<Session>, ConnError> {
        let text = match item {
            Ok(Message::Text(t)) => t,
            Ok(Message::Close(_)) => return Ok(None),
            Err(e) => {
                Box::pin(self.on_read_error(e)).await?;
                return Ok(None);
            }
            Ok(_) => Utf8Bytes::from_static(""),
        };
        let metrics = self.hub.metrics().clone();
        let parsed = Request::parse(text.as_str());
        metrics.frame_in(parsed.as_ref().ok().map(|r| r.frame.op_index()), text.len());
        let request = match parsed {
            Ok(r) => r,
            Err(e) => {
                let frame = self.hub.error_frame(super::hub::Reject {
                    code: ErrorCode::Unauthorized,
                    message: format!("the first frame must be a valid login: {e}"),
                });
                self.write(Outgoing {
                    frame,
                    req: e.req().map(|r| r.into()),
                })
                .await?;
                self.close(close_frame(CloseCode::Policy, "unauthorized")).await?;
                return Ok(None);
            }
        };
        match self.hub.login(conn_id, &self.outbox, &request) {
            Login::Accepted(session, reply) => {
                let req = reply.req.as_deref().map(|r| Cow::Owned(r.to_string()));
                let written = match self.write(reply).await {
                    Ok(()) => self.flush().await,
                    Err(e) => Err(e),
                };
                if let Err(e) = written {
                    // Registered but gone before `loginOk` went out: log out (storing the
                    // replay queued meanwhile) rather than leave the device online.
                    // (A queue over its bound was counted by the hub when it closed it.)
                    if let ConnError::SlowConsumer(reason @ CloseReason::WriteTimeout) = &e {
                        metrics.closed(*reason);
                    }
                    self.hub.logout(&session, &self.outbox);
                    if let ConnError::Store(store) = e {
                        // `loginOk` reflects a commit that failed: answered `internal` instead.
                        let frame = self.hub.error_frame(super::hub::Reject::from(store));
                        let _ = self
                            .feed_text(frame.op_index(), Outgoing { frame, req }.encode().into())
                            .await;
                        self.close(close_frame(CloseCode::Error, "store failed")).await?;
                        return Ok(None);
                    }
                    return Err(e);
                }
                Ok(Some(session))
            }
            Login::Refused(reply) => {
                let (code, reason) = match self.write(reply).await {
                    Ok(()) => (CloseCode::Policy, "unauthorized"),
                    // Refused because the store failed (the `internal` reply was written).
                    Err(ConnError::Store(_)) => (CloseCode::Error, "store failed"),
                    Err(e) => return Err(e),
                };
                self.close(close_frame(code, reason)).await?;
                Ok(None)
            }
        }
    }

    async fn session_loop(&mut self, session: &Session, stop: &CancellationToken) -> Result<(), ConnError> {
        let idle = self.hub.config().idle_timeout;
        let every = (idle / 3).max(Duration::from_millis(1));
        let mut pings = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
        pings.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let idle_check = tokio::time::sleep_until(self.last_pong + idle);
        tokio::pin!(idle_check);
        loop {
            let first = self.first_target();
            let room = self.held.len() < MAX_HELD;
            let next = tokio::select! {
                biased;
                _ = stop.cancelled() => Next::Close(close_frame(CloseCode::Away, "server stopping")),
                _ = &mut idle_check => {
                    // Checked lazily: a pong since the timer was set moves it on.
                    let due = self.last_pong + idle;
                    if tokio::time::Instant::now() >= due {
                        self.hub.metrics().closed(CloseReason::IdleTimeout);
                        Next::Close(close_frame(CloseCode::Policy, "idle timeout"))
                    } else {
                        idle_check.as_mut().reset(due);
                        Next::Continue
                    }
                }
                _ = pings.tick() => {
                    self.feed(Message::Ping(Default::default())).await?;
                    Next::Continue
                }
                // Durable store: the oldest held frames' commit completed.
                settled = self.hub.settled_to(first.unwrap_or(0)), if first.is_some() => {
                    if let Err(e) = settled {
                        return Err(Box::pin(self.store_failed(e)).await);
                    }
                    Next::Continue
                }
                // Reads before pushes here (the drain below takes pushes first): a steady
                // stream of pushes must not starve the client's frames, pongs included.
                item = self.ws.next(), if room => self.on_item(session, item).await?,
                next = self.outbox.pop(), if room => match next {
                    outbox::Next::Push(push) => self.on_push(push).await?,
                    outbox::Next::Closed => return Err(ConnError::SlowConsumer(CloseReason::QueueBound)),
                },
            };
            if let Next::Close(frame) = next {
                return self.close(frame).await;
            }
            // Drain what is ready without waiting, pushes first, then flush once.
            for _ in 0..BATCH {
                if self.held.len() >= MAX_HELD {
                    break;
                }
                let next = if let Some(push) = self.outbox.try_pop() {
                    self.on_push(push).await?
                } else if let Some(item) = self.ws.next().now_or_never() {
                    self.on_item(session, item).await?
                } else {
                    break;
                };
                if let Next::Close(frame) = next {
                    return self.close(frame).await;
                }
            }
            self.flush().await?;
        }
    }

    /// Writes one push. One whose write did not complete goes back to the head of the queue,
    /// so that logout stores it with the rest of what was not written.
    async fn on_push(&mut self, push: Push) -> Result<Next, ConnError> {
        if self.hub.durable() && !matches!(push, Push::Kick { .. }) {
            self.hold(Deferred::Push(push));
            return Ok(Next::Continue);
        }
        if let Err(e) = self.write_text(push.op(), push.text().clone()).await {
            self.outbox.put_back(push);
            return Err(e);
        }
        Ok(match push {
            Push::Kick { reason, .. } => Next::Close(close_frame(CloseCode::Policy, reason)),
            _ => Next::Continue,
        })
    }

    /// Handles one item read: everything but the write of its answer is done before the
    /// future, so the connection's state does not keep the frame, its parse and its reply
    /// beside that write (an `async fn` held them all: ~1.7 KB a connection).
    fn on_item<'s>(
        &'s mut self,
        session: &'s Session,
        item: Option<Result<Message, tungstenite::Error>>,
    ) -> impl Future<Output = Result<Next, ConnError>> + use<'s, T, S> {
        let step = self.read_step(session, item);
        async move {
            match step {
                Step::Done(next) => Ok(next),
                Step::Write { op, text } => {
                    self.write_text(op, text).await?;
                    Ok(Next::Continue)
                }
                Step::ReadError(e) => {
                    Box::pin(self.on_read_error(e)).await?;
                    Ok(Next::Close(None))
                }
                Step::Slowed(text) => {
                    Box::pin(self.slowed(session, text)).await?;
                    Ok(Next::Continue)
                }
            }
        }
    }

    /// What an item read comes to, decided without waiting: counted, rate-limited, parsed,
    /// handled, and its answer encoded (or held, with a durable store).
    fn read_step(&mut self, session: &Session, item: Option<Result<Message, tungstenite::Error>>) -> Step {
        let text = match item {
            None | Some(Ok(Message::Close(_))) => return Step::Done(Next::Close(None)),
            Some(Err(e)) => return Step::ReadError(e),
            Some(Ok(Message::Text(t))) => t,
            Some(Ok(Message::Binary(b))) => {
                self.hub.metrics().frame_in(None, b.len());
                if let Some(limited) = self.rate_limited(None) {
                    return limited;
                }
                return self.parse_error(ProtocolError::BadJson {
                    reason: "binary frame: frames are JSON text".to_string(),
                });
            }
            Some(Ok(Message::Pong(_))) => {
                self.last_pong = tokio::time::Instant::now();
                return Step::Done(Next::Continue);
            }
            Some(Ok(_)) => return Step::Done(Next::Continue), // pings: tungstenite answers them
        };
        {
            let parsed = Request::parse(text.as_str());
            self.hub
                .metrics()
                .frame_in(parsed.as_ref().ok().map(|r| r.frame.op_index()), text.len());
            // Every frame but login counts against the bucket, parseable or not.
            let req = match &parsed {
                Ok(r) => Some(Cow::Borrowed(&*r.req)),
                Err(e) => e.req().map(Cow::Borrowed),
            };
            if let Some(limited) = self.rate_limited(req) {
                return limited;
            }
            let request = match parsed {
                Ok(r) => r,
                Err(e) => return self.parse_error(e),
            };
            if self.hub.slowdown().is_none() {
                let reply = self.hub.handle(session, &request);
                return self.answer(reply);
            }
        }
        // A deliberately slowed server handles the frame after its delay.
        Step::Slowed(text)
    }

    /// A deliberately slowed server: waits its delay, then handles the frame (counted and let
    /// through the rate limit already; parsed again, which only such a server pays for).
    async fn slowed(&mut self, session: &Session, text: Utf8Bytes) -> Result<(), ConnError> {
        let hub = self.hub.clone();
        if let Some(slowdown) = hub.slowdown() {
            slowdown.wait().await;
        }
        let step = match Request::parse(text.as_str()) {
            Ok(request) => {
                let reply = self.hub.handle(session, &request);
                self.answer(reply)
            }
            Err(e) => self.parse_error(e),
        };
        if let Step::Write { op, text } = step {
            self.write_text(op, text).await?;
        }
        Ok(())
    }

    /// Takes a token of the rate limit for one frame. With none left, the frame is not
    /// processed: its answer is `rate_limited` (echoing `req` when it is readable).
    fn rate_limited(&mut self, req: Option<Cow<'_, str>>) -> Option<Step> {
        let bucket = self.bucket.as_mut()?;
        if bucket.try_take(Instant::now()) {
            return None;
        }
        let wait = bucket.wait_time();
        self.hub.metrics().rate_limited.fetch_add(1, Relaxed);
        let frame = self.hub.error_frame(super::hub::Reject {
            code: ErrorCode::RateLimited,
            message: format!("rate limit exceeded; next frame accepted in {wait:?}"),
        });
        Some(self.answer(Outgoing { frame, req }))
    }

    /// The answer to a frame that could not be parsed.
    fn parse_error(&mut self, e: ProtocolError) -> Step {
        let frame = self.hub.error_frame(super::hub::Reject {
            code: e.code(),
            message: e.to_string(),
        });
        self.answer(Outgoing {
            frame,
            req: e.req().map(|r| r.to_string().into()),
        })
    }

    /// Oversize frames get `error too_large` and close 1009; other read errors just end.
    async fn on_read_error(&mut self, e: tungstenite::Error) -> Result<(), ConnError> {
        if let tungstenite::Error::Capacity(cap) = &e {
            let frame = self.hub.error_frame(super::hub::Reject {
                code: ErrorCode::TooLarge,
                message: format!("{cap}; the limit is {} bytes", self.hub.config().max_frame_bytes),
            });
            self.write(Outgoing::push(frame)).await?;
            return self.close(close_frame(CloseCode::Size, "frame too large")).await;
        }
        debug!(error = %e, "read failed");
        Ok(())
    }

    /// Encodes `out` at once and writes it: the frame is not part of the write's state (an
    /// `async fn` would keep it to the end).
    fn write<'s>(&'s mut self, out: Outgoing<'_>) -> impl Future<Output = Result<(), ConnError>> + use<'s, T, S> {
        let op = out.frame.op_index();
        self.write_text(op, out.encode().into())
    }

    async fn write_text(&mut self, op: usize, text: Utf8Bytes) -> Result<(), ConnError> {
        // A durable store: nothing that reflects its state goes out before that is on disk,
        // and held frames go out before anything written after them. An `error` reflects
        // nothing: it is still written when the store failed (then the connection ends).
        // (Only a durable store holds frames; its wait is boxed, so that a connection to an
        // in-memory server does not carry its state.)
        if self.hub.durable()
            && let Err(e) = Box::pin(self.settle(self.hub.recorded())).await
        {
            if op == ERROR_OP {
                let _ = self.feed_text(op, text).await;
            }
            return Err(e);
        }
        self.feed_text(op, text).await
    }

    async fn feed_text(&mut self, op: usize, text: Utf8Bytes) -> Result<(), ConnError> {
        let len = text.len();
        self.feed(Message::Text(text)).await?;
        self.hub.metrics().frame_out(op, len);
        Ok(())
    }

    /// Hands one frame to the WebSocket (which writes out its buffer when it is full), within
    /// the write timeout. A feed still waiting when it gives up has not taken the frame.
    async fn feed(&mut self, message: Message) -> Result<(), ConnError> {
        tokio::select! {
            biased;
            r = tokio::time::timeout(self.write_timeout, self.ws.feed(message)) => match r {
                Ok(r) => Ok(r?),
                Err(_) => Err(ConnError::SlowConsumer(CloseReason::WriteTimeout)),
            },
            _ = self.outbox.closed() => Err(ConnError::SlowConsumer(CloseReason::QueueBound)),
        }
    }

    /// Writes out what the WebSocket buffered, within the write timeout.
    async fn flush(&mut self) -> Result<(), ConnError> {
        // Held frames already durable go now; the others when their commit completes.
        if !self.held.is_empty() {
            Box::pin(self.write_held(self.hub.durable_count())).await?;
        }
        tokio::select! {
            biased;
            r = tokio::time::timeout(self.write_timeout, self.ws.flush()) => match r {
                Ok(r) => Ok(r?),
                Err(_) => Err(ConnError::SlowConsumer(CloseReason::WriteTimeout)),
            },
            _ = self.outbox.closed() => Err(ConnError::SlowConsumer(CloseReason::QueueBound)),
        }
    }

    /// Sends a close frame (flushing what is buffered) and ends the connection. Bounded by the
    /// write timeout: a peer that reads nothing does not hold the task.
    async fn close(&mut self, frame: Option<CloseFrame>) -> Result<(), ConnError> {
        if !self.held.is_empty() {
            let _ = Box::pin(self.settle(0)).await;
        }
        match tokio::time::timeout(self.write_timeout, self.ws.close(frame)).await {
            Err(_) => Ok(()),
            Ok(Ok(()) | Err(tungstenite::Error::ConnectionClosed | tungstenite::Error::AlreadyClosed)) => Ok(()),
            Ok(Err(e)) => Err(e.into()),
        }
    }
}
