//! Frames held for a durable store's commit (see the parent module): each reply or push is
//! held, in order, with the store's change count when it was made, and written once those
//! changes are durable, while the connection goes on reading and handling frames (their
//! changes join the next commit). What becomes of held frames when the commit fails or the
//! connection ends is here too. Nothing is written before its changes are durable, nothing is
//! written out of order, and a held push is never dropped (it goes back to the queue).

use std::borrow::Cow;
use std::collections::VecDeque;

use tokio::io::{AsyncRead, AsyncWrite};
use tokio_tungstenite::tungstenite::Utf8Bytes;

use super::{Conn, ConnError, ERROR_OP, Next, Step};
use crate::protocol::Outgoing;
use crate::server::hub::Reject;
use crate::server::outbox::Push;
use crate::server::store::{Store, StoreError};

/// Most frames held at once: past it the connection stops reading (and taking pushes) until
/// a commit lets it write some (a client cannot grow the held list without bound).
pub(super) const MAX_HELD: usize = 1024;

/// A frame waiting for the store's commit.
pub(super) enum Deferred {
    /// A reply: its op and text, and its `req` in case the commit fails and it must be
    /// answered `internal` instead (an `error` is written as it is).
    Reply {
        op: usize,
        text: Utf8Bytes,
        req: Option<Box<str>>,
    },
    /// A push taken from the queue (back to the queue if it is not written).
    Push(Push),
}

/// A held frame and the store's change count it waits for.
pub(super) struct Held {
    target: u64,
    frame: Deferred,
}

/// The held frames, oldest first (their targets never decrease).
pub(super) type HeldFrames = VecDeque<Held>;

impl<T, S> Conn<T, S>
where
    T: AsyncRead + AsyncWrite + Unpin,
    S: Store,
{
    /// Holds `frame` until the store's changes recorded so far are durable.
    pub(super) fn hold(&mut self, frame: Deferred) {
        let target = self.hub.recorded();
        self.held.push_back(Held { target, frame });
    }

    /// A reply: held with a durable store (done), to be written at once otherwise.
    pub(super) fn answer(&mut self, out: Outgoing<'_>) -> Step {
        if self.hub.durable() {
            self.hold(Deferred::Reply {
                op: out.frame.op_index(),
                req: out.req.as_deref().map(Box::from),
                text: out.encode().into(),
            });
            return Step::Done(Next::Continue);
        }
        Step::Write {
            op: out.frame.op_index(),
            text: out.encode().into(),
        }
    }

    /// The change count the oldest held frame waits for.
    pub(super) fn first_target(&self) -> Option<u64> {
        self.held.front().map(|h| h.target)
    }

    /// Waits until the store's changes up to `target` and those every held frame reflects
    /// are durable, then writes the held frames. If a commit failed instead, see
    /// [`Conn::store_failed`].
    pub(super) async fn settle(&mut self, target: u64) -> Result<(), ConnError> {
        let target = target.max(self.held.back().map_or(0, |h| h.target));
        if let Err(e) = self.hub.settled_to(target).await {
            return Err(self.store_failed(e).await);
        }
        self.write_held(u64::MAX).await
    }

    /// A commit failed: the held replies are answered `internal` (they reflect what will never
    /// be durable; an `error` reflects nothing and goes as it is), the held pushes go back to
    /// the queue, and the connection is to end.
    pub(super) async fn store_failed(&mut self, e: StoreError) -> ConnError {
        let mut pushes = HeldFrames::new();
        for h in std::mem::take(&mut self.held) {
            match h.frame {
                Deferred::Push(_) => pushes.push_back(h),
                Deferred::Reply { op, text, req } => {
                    let text = if op == ERROR_OP {
                        text
                    } else {
                        let frame = self.hub.error_frame(Reject::from(e.clone()));
                        let out = Outgoing {
                            frame,
                            req: req.map(|r| Cow::Owned(r.into())),
                        };
                        out.encode().into()
                    };
                    // A write error ends the connection anyway; the other replies are moot.
                    let _ = self.feed_text(ERROR_OP, text).await;
                }
            }
        }
        self.held = pushes;
        self.unhold();
        ConnError::Store(e)
    }

    /// Puts the held pushes back at the head of the queue, in order (for logout to store).
    pub(super) fn unhold(&mut self) {
        for h in std::mem::take(&mut self.held).into_iter().rev() {
            if let Deferred::Push(p) = h.frame {
                self.outbox.put_back(p);
            }
        }
    }

    /// Writes, in order, the held frames whose changes up to `durable` are on disk. A push
    /// whose write did not complete goes back to the queue with those after it.
    pub(super) async fn write_held(&mut self, durable: u64) -> Result<(), ConnError> {
        while self.held.front().is_some_and(|h| h.target <= durable) {
            let Some(h) = self.held.pop_front() else { break };
            let written = match &h.frame {
                Deferred::Reply { op, text, .. } => self.feed_text(*op, text.clone()).await,
                Deferred::Push(p) => self.feed_text(p.op(), p.text().clone()).await,
            };
            if let Err(e) = written {
                self.held.push_front(h);
                self.unhold();
                return Err(e);
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::super::ERROR_OP;
    use crate::protocol::{ErrorCode, ServerFrame};

    #[test]
    fn the_error_op_index_is_that_of_error_frames() {
        let frame = ServerFrame::Error {
            code: ErrorCode::Internal,
            message: "".into(),
        };
        assert_eq!(frame.op_index(), ERROR_OP);
    }
}
