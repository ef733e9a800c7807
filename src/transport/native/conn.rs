//! One logged-in native connection as a single stream, polled by its user actor: each poll
//! moves what the user queued in its [`Outbox`] into the WebSocket, then reads, timestamps
//! and decodes what the server sent; once there is nothing more to read, what was written
//! goes out with one flush (so the acks a burst of pushes makes leave together).
//!
//! One object per connection, and nothing else: no writer task, no channel, no split of the
//! WebSocket into two halves behind a lock (together ~4 KiB per idle connection). Writing
//! goes on while a [`Stall`] stops the reading. The stream ends with [`Inbound::Closed`] at
//! the first read error or close frame. This module must not know what the frames mean:
//! [`super::encode`] and [`super::decode`] do.

use std::os::fd::RawFd;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use futures_util::{Sink, Stream};
use tokio_tungstenite::tungstenite::Message;

use super::{Ws, abort, decode, encode};
use crate::transport::{Command, FrameStats, Inbound, OutboxReader, ProtocolFault, Stall, Timed};

/// Events yielded in a row, with the socket still readable, after which what was queued is
/// flushed anyway (actix polls a stream for 16 items, then lets its actor's other work run).
const FLUSH_AFTER_EVENTS: u8 = 16;

/// Where writing is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Writing {
    /// Taking commands; `unflushed`: frames written to the WebSocket not yet flushed.
    Open { unflushed: bool },
    /// Closing politely (a `Close` command, or every sender gone).
    Closing,
    /// Closed, reset, or failed: nothing more is written.
    Done,
}

/// A logged-in connection (see the module docs).
pub(super) struct Conn {
    ws: Ws,
    outbox: OutboxReader,
    stats: Arc<FrameStats>,
    /// The socket's descriptor (owned by `ws`), for an abortive close.
    fd: RawFd,
    stall: Stall,
    /// The stall's timer, made only while stalled.
    sleep: Option<Pin<Box<tokio::time::Sleep>>>,
    writing: Writing,
    /// Events yielded since the last flush.
    since_flush: u8,
    /// `Closed` has been yielded.
    ended: bool,
}

impl Conn {
    pub(super) fn new(ws: Ws, outbox: OutboxReader, stats: Arc<FrameStats>, fd: RawFd, stall: Stall) -> Conn {
        Conn {
            ws,
            outbox,
            stats,
            fd,
            stall,
            sleep: None,
            writing: Writing::Open { unflushed: false },
            since_flush: 0,
            ended: false,
        }
    }

    /// Writing is over: the outbox takes no more commands.
    fn stop_writing(&mut self) {
        self.writing = Writing::Done;
        self.outbox.close();
    }

    /// Resets the connection (a fault): no close handshake.
    fn abort(&mut self) {
        abort(self.fd);
        self.stop_writing();
    }

    /// Moves queued commands into the WebSocket while it takes them (it writes to the socket
    /// by itself only past its write buffer size), and drives a close. With `flush`, frames
    /// written so far go out once every queued command is in. Pending states leave `cx`
    /// registered with the socket or the outbox.
    fn poll_write(&mut self, cx: &mut Context<'_>, flush: bool) {
        loop {
            match self.writing {
                Writing::Done => return,
                Writing::Closing => {
                    if Pin::new(&mut self.ws).poll_close(cx).is_ready() {
                        self.stop_writing();
                    }
                    return;
                }
                Writing::Open { unflushed } => {
                    match Pin::new(&mut self.ws).poll_ready(cx) {
                        Poll::Pending => return,
                        Poll::Ready(Err(_)) => return self.stop_writing(),
                        Poll::Ready(Ok(())) => {}
                    }
                    match self.outbox.try_recv() {
                        Some(Command::Request { req, op }) => {
                            let (op_index, text) = encode(req, &op);
                            self.stats.sent(op_index, text.len());
                            if Pin::new(&mut self.ws).start_send(Message::Text(text.into())).is_err() {
                                return self.stop_writing();
                            }
                            self.writing = Writing::Open { unflushed: true };
                        }
                        Some(Command::Close) => self.writing = Writing::Closing,
                        Some(Command::Abort) => return self.abort(),
                        None if self.outbox.senders_gone() => self.writing = Writing::Closing,
                        None => {
                            self.outbox.register(cx.waker());
                            if unflushed && flush {
                                match Pin::new(&mut self.ws).poll_flush(cx) {
                                    Poll::Pending => {}
                                    Poll::Ready(Ok(())) => self.writing = Writing::Open { unflushed: false },
                                    Poll::Ready(Err(_)) => self.stop_writing(),
                                }
                            }
                            return;
                        }
                    }
                }
            }
        }
    }

    /// The connection ended: `Closed`, once.
    fn end(&mut self) -> Poll<Option<Timed>> {
        self.ended = true;
        self.outbox.close();
        Poll::Ready(Some(Timed {
            at: Instant::now(),
            event: Inbound::Closed,
        }))
    }
}

impl Stream for Conn {
    type Item = Timed;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Timed>> {
        let this = &mut *self;
        if this.ended {
            return Poll::Ready(None);
        }
        loop {
            // What the events read so far made the user queue (acks, as a rule) goes out in
            // one write once the socket has nothing more to read, as a writer task woken
            // after its user's turn would batch it; or after a long run of events.
            let flush = this.since_flush >= FLUSH_AFTER_EVENTS;
            if flush {
                this.since_flush = 0;
            }
            this.poll_write(cx, flush);
            if this.stall.poll_stalled(&mut this.sleep, cx) {
                this.since_flush = 0;
                this.poll_write(cx, true);
                return Poll::Pending;
            }
            let msg = match Pin::new(&mut this.ws).poll_next(cx) {
                Poll::Pending => {
                    this.since_flush = 0;
                    this.poll_write(cx, true);
                    return Poll::Pending;
                }
                Poll::Ready(Some(Ok(msg))) if !msg.is_close() => msg,
                Poll::Ready(_) => return this.end(),
            };
            let at = Instant::now();
            let event = match msg {
                Message::Text(text) => decode(&text, &this.stats),
                Message::Binary(b) => {
                    this.stats.fault(ProtocolFault::Binary, b.len());
                    None
                }
                _ => None,
            };
            if let Some(event) = event {
                this.since_flush += 1;
                return Poll::Ready(Some(Timed { at, event }));
            }
        }
    }
}

impl Drop for Conn {
    /// The user dropped the stream with the connection still up: a reset still queued (a
    /// fault resets and drops at once) is done now; otherwise the close frame is written if
    /// the socket takes it without waiting (a user that stops closes, then goes).
    fn drop(&mut self) {
        if self.ended || self.writing == Writing::Done {
            return;
        }
        while let Some(cmd) = self.outbox.try_recv() {
            if cmd == Command::Abort {
                return self.abort();
            }
        }
        let mut cx = Context::from_waker(futures_util::task::noop_waker_ref());
        let _ = Pin::new(&mut self.ws).poll_close(&mut cx);
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use futures_util::{SinkExt, StreamExt};
    use tokio::net::{TcpListener, TcpStream};
    use tokio_tungstenite::WebSocketStream;

    use super::*;
    use crate::protocol::client::CLIENT_OPS;
    use crate::protocol::server::SERVER_OPS;
    use crate::transport::connect::Endpoint;
    use crate::transport::tls::TlsOptions;
    use crate::transport::{Chat, MsgId, Op, Outbox, Reply, outbox};

    /// A connection to a WebSocket server of the test's own.
    async fn pair() -> (Conn, Outbox, Stall, WebSocketStream<TcpStream>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("ws://{}/ws", listener.local_addr().unwrap());
        let endpoint = Endpoint::resolve(&url, &TlsOptions::default()).unwrap();
        let (client, server) = tokio::join!(endpoint.websocket(None, super::super::ws_config()), async {
            tokio_tungstenite::accept_async(listener.accept().await.unwrap().0)
                .await
                .unwrap()
        });
        let (ws, fd) = client.unwrap();
        let (out, reader) = outbox();
        let stall = Stall::default();
        let stats = Arc::new(FrameStats::new(&CLIENT_OPS, &SERVER_OPS));
        (Conn::new(ws, reader, stats, fd, stall.clone()), out, stall, server)
    }

    fn ping(req: u64) -> Command {
        Command::Request { req, op: Op::Ping }
    }

    async fn text(server: &mut WebSocketStream<TcpStream>) -> String {
        match tokio::time::timeout(Duration::from_secs(5), server.next())
            .await
            .expect("a frame in time")
        {
            Some(Ok(Message::Text(t))) => t.to_string(),
            other => panic!("expected a text frame, got {other:?}"),
        }
    }

    #[tokio::test]
    async fn a_stalled_reader_still_writes_and_reads_once_the_stall_ends() {
        let (mut conn, out, stall, mut server) = pair().await;
        stall.stall_for(Duration::from_millis(300));
        let stalled_at = Instant::now();
        server
            .send(Message::text(r#"{"op":"pong","req":"p9","time":1}"#))
            .await
            .unwrap();
        out.send(ping(1)).unwrap();
        out.send(ping(2)).unwrap();
        let early = tokio::time::timeout(Duration::from_millis(100), conn.next()).await;
        assert!(early.is_err(), "nothing is read while stalled: {early:?}");
        assert!(text(&mut server).await.contains(r#""req":"p1""#));
        assert!(text(&mut server).await.contains(r#""req":"p2""#), "in order");
        let t = conn.next().await.unwrap();
        assert!(stalled_at.elapsed() >= Duration::from_millis(300));
        assert_eq!(
            t.event,
            Inbound::Reply {
                req: Some(9),
                reply: Reply::Pong
            }
        );
    }

    #[tokio::test]
    async fn a_frame_larger_than_the_read_buffer_arrives_whole() {
        let (mut conn, _out, _, mut server) = pair().await;
        let body = "x".repeat(5120);
        let frame = format!(
            r#"{{"op":"message","mid":"5","from":"a","to":"b","chatType":"singleChat","type":"txt","msg":"{body}","time":1}}"#
        );
        server.send(Message::text(frame)).await.unwrap();
        let Inbound::Message {
            mid, chat, body: got, ..
        } = conn.next().await.unwrap().event
        else {
            panic!("expected a message");
        };
        assert_eq!((mid, chat, got), (MsgId::from(5), Chat::Single, body));
    }

    #[tokio::test]
    async fn a_close_or_reset_queued_just_before_the_stream_is_dropped_still_happens() {
        let (conn, out, _, mut server) = pair().await;
        out.send(Command::Close).unwrap();
        drop(conn);
        assert!(matches!(server.next().await, Some(Ok(Message::Close(_)))));
        assert!(out.send(ping(1)).is_err());

        let (conn, out, _, mut server) = pair().await;
        out.send(Command::Abort).unwrap();
        drop(conn);
        let end = server.next().await;
        assert!(
            matches!(end, None | Some(Err(_))),
            "reset without a close frame: {end:?}"
        );
    }

    #[tokio::test]
    async fn the_stream_ends_once_with_closed_and_sends_then_fail() {
        let (mut conn, out, _, mut server) = pair().await;
        server.close(None).await.unwrap();
        assert_eq!(conn.next().await.unwrap().event, Inbound::Closed);
        assert!(conn.next().await.is_none());
        assert!(out.send(ping(1)).is_err());
    }
}
